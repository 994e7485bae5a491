"""The ``model.npz`` file format: a trained model saved as NumPy arrays plus one JSON record (no
pickle), read back with every field checked, in each format version this mlpbp reads.

What the model does with raw rows (predict, evaluate) is run/model.py."""

from __future__ import annotations

import json
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from mlpbp.data import Standardizer
from mlpbp.data.preprocessing import Preprocessor
from mlpbp.data.transforms import TargetScaler, Transform
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.dtypes import DTYPES
from mlpbp.engine.graph import Network, layer_names
from mlpbp.engine.init import INITS
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.network import MLP
from mlpbp.errors import ConfigError, MlpbpError, ModelFileError
from mlpbp.io import ARCHIVE_ERRORS, save_npz
from mlpbp.run.model import TrainedModel

__all__ = ["FORMAT_VERSION", "READS", "TrainedModel", "load_model", "save_model"]

# 2: the preprocessing of tables (column kinds, categories, fill values) and target names join
# the metadata; format 1 files (all-numeric features, one Standardizer) still load.
# 3: per-column numeric transforms, date formats, infrequent levels, times of day and target
# transforms (mlpbp 0.3), piecewise-linear encodings (data.numeric: ple); a model that uses none
# of them is written as format 2, which 0.2 reads.
# 4: a network that is not a plain MLP: its graph of modules (``Network.graph()``: each module's
# registered name, options and inputs) and its buffers (batch_norm's running statistics).
FORMAT_VERSION = 4
READS = (1, 2, 3, 4)


def format_version(model: TrainedModel) -> int:
    """The oldest format that holds everything ``model`` needs."""
    if not isinstance(model.net, MLP):
        return 4
    new_keys = {"transform", "format", "infrequent", "ple", "encoding"}
    columns = model.preprocessor.to_meta()["columns"]
    if isinstance(model.y_scaler, TargetScaler) or any(
        new_keys & set(c) or c["kind"] in ("time", "datetime") for c in columns
    ):
        return 3
    return 2


def save_model(model: TrainedModel, path: str | Path) -> None:
    """Write ``model`` to ``path`` (atomically: a temporary file, then a rename)."""
    arrays = {f"param.{k}": v for k, v in model.net.params.items()}
    arrays |= {f"buffer.{k}": v for k, v in model.net.buffers.items()}
    weights = model.net.loss_fn.class_weight
    meta = {
        "format_version": format_version(model),
        "widths": model.net.widths,
        "activation": model.net.activation,
        "loss": model.net.loss_name,
        "task": model.task,
        "dtype": str(model.net.dtype),
        "classes": model.classes,
        "feature_names": model.feature_names,
        "target_name": model.target_name,
        "id": model.id_name,
        "class_weight": None if weights is None else [float(w) for w in weights],
        "preprocessing": model.preprocessor.to_meta(),
        "config": model.config,
        "metrics": model.metrics,
        "written_by": {"mlpbp": _mlpbp_version(), "numpy": np.__version__},
    }
    if isinstance(model.y_scaler, TargetScaler):
        meta["target_transform"] = model.y_scaler.to_meta()
    if meta["format_version"] >= 4:
        meta["graph"], meta["init"] = model.net.graph(), model.net.init
    arrays["meta"] = np.array(json.dumps(meta))  # a unicode scalar: no pickle needed
    arrays["x_mean"], arrays["x_scale"] = model.preprocessor.mean, model.preprocessor.scale
    if model.y_scaler is not None:
        arrays["y_mean"], arrays["y_scale"] = model.y_scaler.mean, model.y_scaler.scale
    save_npz(path, arrays)


def load_model(path: str | Path) -> TrainedModel:
    """Read and validate a ``model.npz`` written by ``TrainedModel.save``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    bad = f"{path} is not an mlpbp model file"
    try:
        # np.load would try anything but a zip archive (a truncated one too) as a pickle, and say so
        if not zipfile.is_zipfile(path):
            raise ValueError("not a zip archive: truncated, damaged or another kind of file")
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
    net = _network(path, bad, meta, arrays, widths, activation, loss, dtype, task, version)

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
    y_scaler = scaler("y", widths[-1])
    if "target_transform" in meta and y_scaler is not None:
        try:
            ts = [Transform.from_meta(t) for t in meta["target_transform"]["transforms"]]
            if len(ts) != widths[-1]:
                raise ValueError("one transform per output")
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{bad} (invalid target transform record: {e})") from None
        y_scaler = TargetScaler(ts, y_scaler.mean, y_scaler.scale)
    return TrainedModel(
        net,
        pre,
        y_scaler,
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


def _network(path, bad, meta, arrays, widths, activation, loss, dtype, task, version):
    """The network a model file describes, its stored parameters (and buffers) in place."""
    if version < 4:
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
    else:
        net = _graph_network(path, bad, meta, arrays, loss, dtype, task, activation)
    for name, p in net.params.items():
        a = arrays.get(f"param.{name}")
        if a is None or a.shape != p.shape or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
            raise ModelFileError(
                f"{bad} (parameter {name} missing, of the wrong shape or not finite; expected {p.shape})"
            )
        p[...] = a
    for name, b in net.buffers.items():
        a = arrays.get(f"buffer.{name}")
        if a is None or a.shape != b.shape or a.dtype.kind != "f" or not np.all(np.isfinite(a)):
            raise ModelFileError(f"{bad} (buffer {name} missing, of the wrong shape or not finite)")
        b[...] = a
    return net.eval()  # a saved model predicts: running statistics, no dropout


def _graph_network(path, bad, meta, arrays, loss, dtype, task, activation):
    graph = meta.get("graph")
    try:
        nodes = graph["nodes"]
        names = [n["module"] for n in nodes]
        ok = isinstance(graph["inputs"], int) and all(
            isinstance(k, str) and isinstance(n.get("options", {}), dict) and isinstance(n["inputs"], list)
            for k, n in zip(names, nodes)
        )
    except (TypeError, KeyError):
        ok = False
    if not ok:
        raise ModelFileError(f"{bad} (no readable graph of modules in meta)")
    unknown = [k for k in names if k not in layer_names()]
    if unknown:
        raise ModelFileError(
            f"{path}: the model uses module {unknown[0]!r}, which is not registered in mlpbp.MODULES"
            f" (register it before loading; registered: {', '.join(layer_names())})"
        )
    init = meta.get("init") if meta.get("init") in INITS else None
    try:
        return Network.from_graph(graph, loss=loss, dtype=dtype, task=task, init=init, activation=activation)
    except (ConfigError, ValueError, TypeError, IndexError, KeyError) as e:
        raise ModelFileError(f"{bad} (its graph of modules does not build: {e})") from None
