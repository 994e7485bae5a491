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
from mlpbp.engine.losses import LOSSES, get_loss
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
        # the loss's own settings (huber's delta, quantile's alpha); a file without them: the defaults
        **({"loss_params": model.net.loss_params} if model.net.loss_params else {}),
        # a multi-label model: its label list is "classes"; the label sets' separator, if any
        **({"multilabel": True, "label_separator": model.label_separator} if model.multilabel else {}),
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
    _check_meta(path, bad, version, widths, activation, loss, task, dtype, classes, features)
    net = _network(path, bad, meta, arrays, widths, activation, loss, dtype, task, version)
    _set_loss_params(net, meta.get("loss_params"), bad)

    def scaler(prefix, d, dt, transformed=False):
        return _scaler(path, arrays, prefix, d, dt, transformed)

    x_scaler = scaler("x", widths[0], net.dtype)
    if x_scaler is None:
        raise ModelFileError(f"{bad} (no x_mean/x_scale)")
    if version == 1:
        pre = Preprocessor.numeric(features, x_scaler)
        target, id_name = str(meta.get("target_name", "")), None
    else:
        try:
            pre = Preprocessor.from_meta(meta["preprocessing"], x_scaler.mean, x_scaler.scale)
            target, id_name = meta["target_name"], meta.get("id")
        except (KeyError, TypeError, ValueError, MlpbpError, AttributeError) as e:
            raise ModelFileError(f"{bad} (invalid preprocessing record: {e})") from None
        if pre.inputs != features:
            raise _invalid(
                path,
                f"feature_names ({_names(features)}) differ from the columns of the preprocessing record"
                f" ({_names(pre.inputs)}); they must be the same names in the same order",
            )
        weights = meta.get("class_weight")
        if weights is not None:
            net.loss_fn.class_weight = _class_weight(path, weights, widths[-1])
    _check_names(path, task, widths[-1], target, id_name, meta.get("multilabel") is True)
    y_scaler = scaler("y", widths[-1], np.dtype(np.float64), "target_transform" in meta)
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
        *_multilabel(meta, bad),
    )


def _invalid(path: Path, what: str) -> ModelFileError:
    """A model file whose records and arrays do not fit together, or hold absurd values."""
    return ModelFileError(f"{path}: invalid model file: {what}")


def _names(names: list[str], most: int = 4) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return f"{len(names)} {'name' if len(names) == 1 else 'names'}: {shown}{', ...' if len(names) > most else ''}"


def _check_meta(path, bad, version, widths, activation, loss, task, dtype, classes, features) -> None:
    """The scalar records of ``meta``: each a value mlpbp knows, and the task, loss, classes and
    feature names consistent with the layer widths."""
    for key, value, allowed in (
        ("activation", activation, ACTIVATIONS),
        ("loss", loss, LOSSES),
        ("task", task, ("classification", "regression")),
        ("dtype", dtype, DTYPES),
    ):
        if not isinstance(value, str) or value not in allowed:
            raise ModelFileError(
                f"{bad} (invalid architecture in meta: {key} is {value!r}; allowed: {', '.join(allowed)})"
            )
    if len(widths) < 2 or min(widths) < 1:
        raise ModelFileError(
            f"{bad} (invalid architecture in meta: widths {widths}; allowed: two or more layer widths, each >= 1)"
        )
    if not all(isinstance(n, str) for n in features) or not (
        classes is None or (isinstance(classes, list) and all(isinstance(c, str) for c in classes))
    ):
        raise ModelFileError(f"{bad} (feature names and classes must be strings)")
    if version == 1 and len(features) != widths[0]:
        raise _invalid(
            path, f"feature_names has {len(features)} names, but the first layer (widths[0]) takes {widths[0]} inputs"
        )
    for key, names in (("feature_names", features), ("classes", classes or [])):
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise _invalid(path, f"{key} repeats {n!r}; each name must be distinct")
            seen.add(n)
    if task == "classification":
        if not classes or len(classes) != widths[-1]:
            raise _invalid(
                path,
                f"classes has {len(classes or [])} labels, but the output layer (widths[-1]) has {widths[-1]}"
                " units; a classifier has one label per output unit",
            )
    else:
        if classes is not None:
            raise _invalid(path, f"classes holds {len(classes)} labels, but the task is regression (allowed: null)")
        if loss in ("cross_entropy",):
            regression = [n for n in LOSSES if n != "cross_entropy"]
            raise _invalid(
                path,
                f"loss {loss!r} is a classification loss, but the task is regression"
                f" (allowed for regression: {', '.join(regression)})",
            )


def _check_names(path, task, outputs, target, id_name, multilabel: bool = False) -> None:
    """The target name(s) and id column fit the task and the output layer (a multi-label
    model's targets: one column of label sets, or one 0/1 column per label)."""
    if multilabel and isinstance(target, list):
        if len(target) != outputs or not all(isinstance(t, str) for t in target):
            raise _invalid(
                path,
                f"target_name is {target!r}; a multi-label model with {outputs} labels has a"
                f" string or a list of {outputs} strings",
            )
    elif task == "classification" and not isinstance(target, str):
        raise _invalid(path, f"target_name is {target!r}; a classifier has one target column (a string)")
    if task == "regression" and not (
        isinstance(target, str)
        or (isinstance(target, list) and len(target) == outputs and all(isinstance(t, str) for t in target))
    ):
        raise _invalid(
            path,
            f"target_name is {target!r}; a regression model with {outputs} outputs has a string"
            f" or a list of {outputs} strings",
        )
    if isinstance(target, list) and len(set(target)) != len(target):
        raise _invalid(path, f"target_name repeats a name ({target!r}); each name must be distinct")
    if id_name is not None and not isinstance(id_name, str):
        raise _invalid(path, f"id is {id_name!r}; allowed: a column name (a string) or null")


def _class_weight(path, weights, outputs: int) -> np.ndarray:
    try:
        w = np.array([float(v) for v in weights])
    except (TypeError, ValueError):
        w = np.zeros(0)
    if w.shape != (outputs,) or not np.all(np.isfinite(w) & (w > 0)):
        raise _invalid(
            path, f"class_weight is {weights!r}; allowed: null or {outputs} finite weights > 0, one per class"
        )
    return w


def _scaler(
    path: Path, arrays: dict, prefix: str, d: int, dtype: np.dtype, transformed: bool = False
) -> Standardizer | None:
    """``{prefix}_mean`` and ``{prefix}_scale``: both absent (None), or ``d`` floats each, every
    mean within the range of ``dtype`` and every scale one that training writes: 1, or above
    round-off of the mean (``Standardizer`` never divides by less) and within that range."""
    mean, scale = arrays.get(f"{prefix}_mean"), arrays.get(f"{prefix}_scale")
    if mean is None and scale is None:
        return None
    top = float(np.finfo(dtype).max)
    for key, a in ((f"{prefix}_mean", mean), (f"{prefix}_scale", scale)):
        if a is None or a.shape != (d,) or a.dtype.kind != "f":
            got = "missing" if a is None else f"{a.dtype} of shape {a.shape}"
            raise _invalid(path, f"{key} is {got}; allowed: {d} floating-point values")
    mean, scale = mean.astype(np.float64), scale.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(mean) <= top)
    if bad.any():
        i = int(np.argmax(bad))
        raise _invalid(
            path, f"{prefix}_mean[{i}] is {mean[i]:.4g}; allowed: finite means within ±{top:.2g} (the model's {dtype})"
        )
    # A target transform's scale is its transformed values' spread, which may be any positive
    # number (TargetScaler); a plain Standardizer's is above the round-off of its mean, or 1.
    floor = np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
    if transformed:
        floor = np.zeros_like(mean)
    with np.errstate(invalid="ignore"):
        bad = ~(((scale > floor) | (scale == 1.0)) & (scale <= top))
    if bad.any():
        i = int(np.argmax(bad))
        allowed = (
            f"a positive scale (its target transform's spread) at most {top:.2g}"
            if transformed
            else f"1 (training leaves a constant column unscaled), or a scale above {floor[i]:.2g} (the round-off"
            f" of {prefix}_mean[{i}]) and at most {top:.2g} (the model's {dtype})"
        )
        raise _invalid(path, f"{prefix}_scale[{i}] is {scale[i]:.4g}; allowed: {allowed}")
    return Standardizer(mean, scale)


def _check_array(path: Path, kind: str, name: str, a, shape: tuple, dtype: np.dtype, needs: str) -> None:
    """A parameter or buffer the network needs: present, floating point, of ``shape``, finite and
    small enough that the network's products cannot overflow ``dtype`` on ordinary inputs
    (|value| <= sqrt of its largest value: 1.8e19 in float32, 1.3e154 in float64)."""
    if a is None:
        raise _invalid(path, f"{kind} {name} is missing; {needs} one of shape {shape}")
    if a.dtype.kind != "f":
        raise _invalid(path, f"{kind} {name} holds {a.dtype} values; allowed: floating point, of shape {shape}")
    if a.shape != shape:
        raise _invalid(path, f"{kind} {name} has the wrong shape {a.shape}; {needs} {shape}")
    limit = float(np.sqrt(np.finfo(dtype).max))
    with np.errstate(invalid="ignore"):
        # (a float32 array in a float64 model: within its limit if finite; no float64 copy of it)
        off = ~(np.abs(a) <= limit) if limit < float(np.finfo(a.dtype).max) else ~np.isfinite(a)
    if name.rsplit(".", 1)[-1].startswith("running_var"):
        off |= a < 0
    if off.any():
        at = np.unravel_index(int(np.argmax(off)), a.shape)
        v = a[at]
        where = f"[{', '.join(map(str, at))}]{'' if np.isfinite(v) else ' (not finite)'}"
        sign = "finite values >= 0" if v < 0 and np.isfinite(v) else "finite values"
        raise _invalid(
            path,
            f"{kind} {name} holds {v:.4g} at {where}; allowed: {sign} within ±{limit:.2g} for a {dtype} model"
            " (larger ones overflow its products)",
        )


def _multilabel(meta: dict, bad: str) -> tuple[bool, str | None]:
    """(multilabel, label_separator): (False, None) in a file without them."""
    multi, sep = meta.get("multilabel", False), meta.get("label_separator")
    if not isinstance(multi, bool) or not (sep is None or (isinstance(sep, str) and sep)):
        raise ModelFileError(f"{bad} (invalid multilabel record)")
    if multi and (meta.get("task") != "classification" or meta.get("loss") != "binary_cross_entropy"):
        raise ModelFileError(f"{bad} (a multi-label model is a classification with binary_cross_entropy)")
    return multi, sep


def _set_loss_params(net, params, bad: str) -> None:
    """The loss's stored settings (huber's delta, quantile's alpha), checked as the loss checks
    them; none stored (every file before them): the loss's defaults."""
    if params is None:
        return
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise ModelFileError(f"{bad} (invalid loss_params record)")
    try:
        net.loss_fn = get_loss(net.loss_name, None, **params)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{bad} (invalid loss_params record: {' '.join(str(e).split())})") from None
    net.loss_params = dict(params)


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
    dt = DTYPES.lookup(dtype)
    if version < 4:
        # Check the stored arrays against the widths before building the network, so forged widths
        # cannot make it allocate gigabytes.
        for r, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            for name, shape in ((f"W{r}", (fan_out, fan_in)), (f"b{r}", (fan_out,))):
                needs = f"widths {widths} need"
                _check_array(path, "parameter", name, arrays.get(f"param.{name}"), shape, dt, needs)
        net = MLP(widths, activation, loss, dtype=dtype, task=task)
    else:
        net = _graph_network(path, bad, meta, arrays, loss, dtype, task, activation)
        # _check_meta held the classes and features to widths; the graph must give those widths,
        # else a parameter-free last node (select, say) would predict over too few classes.
        if (net.n_inputs, net.n_outputs) != (widths[0], widths[-1]):
            raise _invalid(
                path,
                f"its graph of modules maps {net.n_inputs} inputs to {net.n_outputs} outputs, but widths"
                f" {widths} say {widths[0]} to {widths[-1]}",
            )
    needs = "the graph of modules needs"
    for name, p in net.params.items():
        _check_array(path, "parameter", name, arrays.get(f"param.{name}"), p.shape, dt, needs)
        p[...] = arrays[f"param.{name}"]
    for name, b in net.buffers.items():
        _check_array(path, "buffer", name, arrays.get(f"buffer.{name}"), b.shape, dt, needs)
        b[...] = arrays[f"buffer.{name}"]
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
