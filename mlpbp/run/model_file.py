"""A trained model: the network plus what turns raw rows into its inputs and its outputs into
answers (standardisation, class labels); metrics; and the ``model.npz`` file format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from mlpbp.data import TASKS, Standardizer, read_features_csv
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.dtypes import DTYPES
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.network import MLP
from mlpbp.errors import DataError, ModelFileError
from mlpbp.io import ARCHIVE_ERRORS, save_npz
from mlpbp.run.metrics import compute_metrics, outputs

FORMAT_VERSION = 1


@dataclass
class TrainedModel:
    net: MLP
    x_scaler: Standardizer
    y_scaler: Standardizer | None = None  # regression targets, when standardised
    classes: list[str] | None = None
    feature_names: list[str] = field(default_factory=list)
    target_name: str = ""
    config: dict = field(default_factory=dict)
    metrics: dict | None = None  # the final metrics of the run that wrote it (None: not recorded)
    written_by: dict | None = None  # {"mlpbp": version, "numpy": version} (None: not recorded)

    @property
    def task(self) -> str:
        return self.net.task

    def predict_outputs(self, X_raw: np.ndarray) -> np.ndarray:
        """Outputs for raw rows: class scores, or regression values in the target's units."""
        o = outputs(self.net, self.x_scaler.transform(X_raw)).astype(np.float64)
        if self.task == "regression" and self.y_scaler is not None:
            o = self.y_scaler.inverse_transform(o)
        return o

    def encode_targets(self, raw: list[str]) -> np.ndarray:
        """Targets as read from a CSV, in the network's units; unknown classes are an error."""
        if self.task == "classification":
            find = self._class_index()
            out = []
            for row, v in enumerate(raw, start=2):
                i = find(v)
                if i is None:
                    raise DataError(self._unknown_class(f"row {row}", v))
                out.append(i)
            return np.asarray(out, dtype=np.int64)
        values = []
        for row, v in enumerate(raw, start=2):
            try:
                values.append(float(v))
            except ValueError:
                values.append(float("nan"))
            if not np.isfinite(values[-1]):
                raise DataError(
                    f"row {row}, column {self.target_name!r}: {v.strip()!r} is not a finite number"
                    " (a regression model needs numeric targets)"
                )
        y = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        return self.y_scaler.transform(y) if self.y_scaler is not None else y

    def labelled_rows(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """A labelled table as the network sees it: the model's feature columns (by name)
        standardised as in training, and its targets encoded (class indices, or scaled
        values), as ``mlpbp evaluate`` reads them."""
        X, targets = read_features_csv(path, self.feature_names, self.target_name, require_target=True)
        try:
            y = self.encode_targets(targets)
        except DataError as e:  # a bad target cell: name the file, as the other data errors do
            raise DataError(f"{path}: {e}") from None
        return self.x_scaler.transform(X), y

    def _class_index(self):
        """label -> class index, or None; integer labels may be written as "3" or "3.0"."""
        index = {c: i for i, c in enumerate(self.classes)}
        norm = {_norm_label(c): i for i, c in enumerate(self.classes)}
        return lambda v: index.get(v.strip(), norm.get(_norm_label(v)))

    def _unknown_class(self, where, v: str) -> str:
        return f"{where}: class {v!r} was not seen in training (known: {', '.join(self.classes)})"

    def encode_target_array(self, y: np.ndarray) -> np.ndarray:
        """Targets stored as an array (an .npy file, a Parquet column), in the network's units:
        each distinct value is encoded once, so millions of rows cost no Python loop."""
        if self.task == "classification":
            values, inverse = np.unique(y.reshape(-1), return_inverse=True)
            find = self._class_index()
            codes = [find(str(v)) for v in values]
            for v, i in zip(values, codes):
                if i is None:
                    raise DataError(self._unknown_class(f"target {int(np.flatnonzero(y.reshape(-1) == v)[0])}", str(v)))
            codes = np.asarray(codes, dtype=np.int64)
            return codes[inverse]
        y = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
        if not np.isfinite(y).all():
            bad = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
            raise DataError(f"target {bad} is not a finite number (a regression model needs numeric targets)")
        return self.y_scaler.transform(y) if self.y_scaler is not None else y

    def evaluate(self, X_raw, raw_targets) -> dict:
        """Metrics on raw rows (an array, or rows read lazily, in chunks) and raw targets (the
        strings of a CSV column, or an array)."""
        if isinstance(raw_targets, np.ndarray):
            y = self.encode_target_array(raw_targets)
        else:
            y = self.encode_targets(raw_targets)
        if isinstance(X_raw, np.ndarray):
            X = self.x_scaler.transform(X_raw)
        else:
            X = X_raw.transformed(self.x_scaler, self.net.dtype)
        return compute_metrics(self.net, X, y, self.y_scaler)

    # ---- the file format ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {f"param.{k}": v for k, v in self.net.params.items()}
        meta = {
            "format_version": FORMAT_VERSION,
            "widths": self.net.widths,
            "activation": self.net.activation,
            "loss": self.net.loss_name,
            "task": self.task,
            "dtype": str(self.net.dtype),
            "classes": self.classes,
            "feature_names": self.feature_names,
            "target_name": self.target_name,
            "config": self.config,
            "metrics": self.metrics,
            "written_by": {"mlpbp": _mlpbp_version(), "numpy": np.__version__},
        }
        arrays["meta"] = np.array(json.dumps(meta))  # a unicode scalar: no pickle needed
        arrays["x_mean"], arrays["x_scale"] = self.x_scaler.mean, self.x_scaler.scale
        if self.y_scaler is not None:
            arrays["y_mean"], arrays["y_scale"] = self.y_scaler.mean, self.y_scaler.scale
        save_npz(path, arrays)


def _norm_label(v: str) -> str:
    v = v.strip()
    try:
        f = float(v)
    except ValueError:
        return v
    return str(int(f)) if f.is_integer() else v


def load_model(path: str | Path) -> TrainedModel:
    """Read and validate a ``model.npz`` written by ``TrainedModel.save``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    bad = f"{path} is not an mlpbp model file"
    try:
        with path.open("rb") as f:
            if f.read(2) != b"PK":  # np.load would try anything else as a pickle, and say so
                raise ValueError("not a zip archive")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ARCHIVE_ERRORS as e:
        detail = str(e).splitlines()[0] if str(e) else "unreadable"
        raise ModelFileError(f"{bad} ({type(e).__name__}: {detail})") from None
    if "meta" not in arrays or arrays["meta"].dtype.kind != "U" or arrays["meta"].shape != ():
        raise ModelFileError(f"{bad} (no 'meta' record)")
    try:
        meta = json.loads(str(arrays["meta"]))
        version = meta["format_version"]
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{bad} (unreadable 'meta' record)") from None
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version!r} is not supported (this mlpbp reads {FORMAT_VERSION})"
        )
    try:
        widths = [int(w) for w in meta["widths"]]
        activation, loss, task = meta["activation"], meta["loss"], meta["task"]
        dtype = meta["dtype"]
        classes, features = meta["classes"], list(meta["feature_names"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{bad} (meta lacks or garbles {e})") from None
    if (
        not all(isinstance(v, str) for v in (activation, loss, task, dtype))
        or activation not in ACTIVATIONS
        or loss not in LOSSES
        or task not in TASKS
        or dtype not in DTYPES
        or len(widths) < 2
        or min(widths) < 1
    ):
        raise ModelFileError(f"{bad} (invalid architecture in meta)")
    if len(features) != widths[0] or (task == "classification" and (not classes or len(classes) != widths[-1])):
        raise ModelFileError(f"{bad} (feature names or classes do not match the layer widths)")
    if not (classes is None or isinstance(classes, list)) or not all(
        isinstance(n, str) for n in features + (classes or [])
    ):
        raise ModelFileError(f"{bad} (feature names and classes must be strings)")
    # Check the stored arrays against the widths before building the network, so forged widths
    # cannot make it allocate gigabytes.
    for r, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
        for name, shape in ((f"W{r}", (fan_out, fan_in)), (f"b{r}", (fan_out,))):
            a = arrays.get(f"param.{name}")
            if a is None or a.shape != shape or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
                raise ModelFileError(
                    f"{bad} (parameter {name} missing, of the wrong shape or not finite; expected {shape})"
                )
    net = MLP(widths, activation, loss, dtype=dtype, task=task)
    for name, p in net.params.items():
        p[...] = arrays[f"param.{name}"]

    def scaler(prefix, d):
        mean, scale = arrays.get(f"{prefix}_mean"), arrays.get(f"{prefix}_scale")
        if mean is None and scale is None:
            return None
        if (
            mean is None
            or scale is None
            or mean.shape != (d,)
            or scale.shape != (d,)
            or mean.dtype.kind != "f"
            or scale.dtype.kind != "f"
            or not np.all(np.isfinite(mean))
            or not np.all(np.isfinite(scale))
            or not np.all(scale > 0)
        ):
            raise ModelFileError(f"{bad} ({prefix}_mean/{prefix}_scale invalid; expected {d} values, scales > 0)")
        return Standardizer(mean, scale)

    x_scaler = scaler("x", widths[0])
    if x_scaler is None:
        raise ModelFileError(f"{bad} (no x_mean/x_scale)")
    return TrainedModel(
        net,
        x_scaler,
        scaler("y", widths[-1]),
        classes,
        features,
        str(meta.get("target_name", "")),
        meta.get("config") or {},
        _dict_or_none(meta.get("metrics")),
        _dict_or_none(meta.get("written_by")),
    )


def _dict_or_none(value) -> dict | None:
    # Files before 0.2 have neither record; a damaged one is "not recorded", not an error.
    return value if isinstance(value, dict) else None


def _mlpbp_version() -> str:
    try:
        return version("mlpbp")
    except PackageNotFoundError:
        return "0+unknown"
