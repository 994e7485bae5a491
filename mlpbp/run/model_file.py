"""A trained model: the network plus what turns raw rows into its inputs and its outputs into
answers (standardisation, class labels); metrics; and the ``model.npz`` file format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pyarrow as pa

from mlpbp.data import Standardizer
from mlpbp.data.preprocessing import Preprocessor, RowNumbers, rows_from
from mlpbp.data.tables import read_table
from mlpbp.data.targets import Target
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.dtypes import DTYPES
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.network import MLP
from mlpbp.errors import DataError, MlpbpError, ModelFileError
from mlpbp.io import ARCHIVE_ERRORS, save_npz
from mlpbp.run.metrics import compute_metrics, outputs

# 2: the preprocessing of tables (column kinds, categories, fill values) and target names join
# the metadata; format 1 files (all-numeric features, one Standardizer) still load.
FORMAT_VERSION = 2
READS = (1, 2)
PREDICT_CHUNK = 65536  # raw rows encoded and run through the network at a time


@dataclass
class TrainedModel:
    net: MLP
    preprocessor: Preprocessor | Standardizer  # a Standardizer: every feature numeric (format 1)
    y_scaler: Standardizer | None = None  # regression targets, when standardised
    classes: list[str] | None = None
    feature_names: list[str] = field(default_factory=list)  # the raw columns a table must have
    target_name: str | list[str] = ""
    config: dict = field(default_factory=dict)
    metrics: dict | None = None  # the final metrics of the run that wrote it (None: not recorded)
    written_by: dict | None = None  # {"mlpbp": version, "numpy": version} (None: not recorded)
    id_name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.preprocessor, Standardizer):
            self.preprocessor = Preprocessor.numeric(list(self.feature_names), self.preprocessor)
        if not self.feature_names:
            self.feature_names = self.preprocessor.inputs

    @property
    def task(self) -> str:
        return self.net.task

    @property
    def x_scaler(self) -> Preprocessor:  # the name earlier versions used
        return self.preprocessor

    @property
    def target_names(self) -> list[str]:
        if isinstance(self.target_name, list):
            return self.target_name
        return [self.target_name] if self.target_name else []

    @property
    def output_names(self) -> list[str]:
        """Names of the regression outputs: the target columns (or output_0, ...)."""
        m = self.net.widths[-1]
        names = self.target_names
        return names if len(names) == m else [f"output_{j}" for j in range(m)]

    def target(self) -> Target:
        return Target(self.target_names, self.task, self.classes, "")

    def predict_outputs(self, rows: pa.Table | np.ndarray, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
        """Outputs for raw rows (a table with the training columns, or a numeric array of the
        network's input columns before standardisation: the raw columns themselves when all are
        numeric): class scores, or regression values in the target's units."""
        pre, parts = self.preprocessor, []
        if isinstance(rows, np.ndarray):  # the network's columns, unscaled (what inverse_transform gives)
            if rows.ndim != 2 or rows.shape[1] != pre.width:
                raise DataError(f"expected {pre.width} input columns, got an array of shape {rows.shape}")
            parts.append(outputs(self.net, (np.asarray(rows, np.float64) - pre.mean) / pre.scale).astype(np.float64))
        for start in range(0, 0 if isinstance(rows, np.ndarray) else rows.num_rows, PREDICT_CHUNK):
            X = pre.transform(rows.slice(start, PREDICT_CHUNK), np.float64, rows_from(first_row, start), source)
            parts.append(outputs(self.net, X).astype(np.float64))
        o = np.concatenate(parts) if parts else np.empty((0, self.net.widths[-1]))
        if self.task == "regression" and self.y_scaler is not None:
            o = self.y_scaler.inverse_transform(o)
        return o

    def encode_targets(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
        """The target columns of raw rows, in the network's units; unknown classes are an error."""
        y = self.target().encode(table, first_row, source)
        if self.task == "regression" and self.y_scaler is not None:
            y = self.y_scaler.transform(y)
        return y

    def labelled_rows(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """A labelled table as the network sees it: the model's feature columns (by name)
        encoded as in training, and its targets encoded (class indices, or scaled values), as
        ``mlpbp evaluate`` reads them."""
        raw = read_table(path)
        X = self.preprocessor.transform(raw.table, np.float64, raw.first_row, str(path))  # features first
        absent = [t for t in self.target_names if t not in raw.table.column_names]
        if absent:
            raise DataError(
                f"{path}: target column '{absent[0]}' not found (columns: {', '.join(raw.table.column_names)})"
            )
        return X, self.encode_targets(raw.table, raw.first_row, str(path))

    def evaluate(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> dict:
        y = self.encode_targets(table, first_row, source)
        X = self.preprocessor.transform(table, np.float64, first_row, source)
        return compute_metrics(self.net, X, y, self.y_scaler, classes=self.classes, names=self.output_names)

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

    def evaluate_arrays(self, X_raw, y_raw: np.ndarray) -> dict:
        """Metrics on rows read lazily (a folder of .npy or Parquet files: numeric columns) and
        their target array."""
        y = self.encode_target_array(y_raw)
        X = X_raw.transformed(Standardizer(self.preprocessor.mean, self.preprocessor.scale), self.net.dtype)
        return compute_metrics(self.net, X, y, self.y_scaler, classes=self.classes, names=self.output_names)

    # ---- the file format ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {f"param.{k}": v for k, v in self.net.params.items()}
        weights = self.net.loss_fn.class_weight
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
            "id": self.id_name,
            "class_weight": None if weights is None else [float(w) for w in weights],
            "preprocessing": self.preprocessor.to_meta(),
            "config": self.config,
            "metrics": self.metrics,
            "written_by": {"mlpbp": _mlpbp_version(), "numpy": np.__version__},
        }
        arrays["meta"] = np.array(json.dumps(meta))  # a unicode scalar: no pickle needed
        arrays["x_mean"], arrays["x_scale"] = self.preprocessor.mean, self.preprocessor.scale
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
        raise ModelFileError(
            f"{bad} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unreadable'})"
        ) from None
    if "meta" not in arrays or arrays["meta"].dtype.kind != "U" or arrays["meta"].shape != ():
        raise ModelFileError(f"{bad} (no 'meta' record)")
    try:
        meta = json.loads(str(arrays["meta"]))
        version = meta["format_version"]
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{bad} (unreadable 'meta' record)") from None
    if version not in READS or isinstance(version, bool):
        raise ModelFileError(
            f"{path}: model format version {version!r} is not supported (this mlpbp reads {', '.join(map(str, READS))})"
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
        or task not in ("classification", "regression")
        or dtype not in DTYPES
        or len(widths) < 2
        or min(widths) < 1
    ):
        raise ModelFileError(f"{bad} (invalid architecture in meta)")
    n_inputs = len(features) if version == 1 else None
    if (n_inputs is not None and n_inputs != widths[0]) or (
        task == "classification" and (not classes or len(classes) != widths[-1])
    ):
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
    if version == 1:
        pre = Preprocessor.numeric(features, x_scaler)
        target, id_name = str(meta.get("target_name", "")), None
    else:
        try:
            pre = Preprocessor.from_meta(meta["preprocessing"], x_scaler.mean, x_scaler.scale)
            target, id_name = meta["target_name"], meta.get("id")
            weights = meta.get("class_weight")
            if weights is not None:
                weights = np.array([float(w) for w in weights])
                if weights.shape != (widths[-1],) or not np.all(np.isfinite(weights) & (weights > 0)):
                    raise ValueError("class_weight")
                net.loss_fn.class_weight = weights
        except (KeyError, TypeError, ValueError, MlpbpError, AttributeError) as e:
            raise ModelFileError(f"{bad} (invalid preprocessing record: {e})") from None
        if pre.inputs != features or not (
            isinstance(target, str) or (isinstance(target, list) and all(isinstance(t, str) for t in target))
        ):
            raise ModelFileError(f"{bad} (feature or target names do not match the preprocessing record)")
    return TrainedModel(
        net,
        pre,
        scaler("y", widths[-1]),
        classes,
        features,
        target,
        meta.get("config") or {},
        _dict_or_none(meta.get("metrics")),
        _dict_or_none(meta.get("written_by")),
        id_name,
    )


def _dict_or_none(value) -> dict | None:
    # Files before 0.2 have neither record; a damaged one is "not recorded", not an error.
    return value if isinstance(value, dict) else None


def _mlpbp_version() -> str:
    try:
        return version("mlpbp")
    except PackageNotFoundError:
        return "0+unknown"
