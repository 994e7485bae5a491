"""What a model file holds, as one typed result (``ModelInfo``; ``mlpbp inspect --json`` is its
JSON form): layers and their cost, preprocessing, classes, the config and final metrics of the
run that wrote it, the versions that wrote it, its SHA-256.

FLOPs count a multiply-add as 2 and one per element for a bias, an activation or its
derivative; the loss (O(outputs) per row) is left out. A training step per row is its forward
pass plus its backward pass (the first layer needs no gradient for its input); the parameter
update is per batch, not per row, and is reported apart."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpbp.engine.module import MODULES
from mlpbp.results import Result, key
from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import FORMAT_VERSION, load_model


@dataclass
class LayerRow(Result):
    """One module of the network, input to output."""

    index: int
    kind: str  # "activation" for an activation function, else the module's kind
    activation: str | None  # the activation's name (None: not an activation)
    label: str
    inputs: list[int]  # 0: the network's input; i: the i-th row's output
    in_width: int | list[int] = key("in")  # one input's width, or each input's
    out: int = 0
    param_shapes: dict[str, list[int]] | None = None
    params: int = 0
    flops_forward: int = 0
    flops_backward: int = 0


@dataclass
class Flops(Result):
    forward_per_row: int
    train_step_per_row: int  # forward + backward
    update_per_step: int  # θ −= α g; momentum and decay add more


@dataclass
class Scaling(Result):
    standardized: bool
    mean: list[float]
    scale: list[float]


@dataclass
class Preprocessing(Result):
    inputs: Scaling | None
    targets: Scaling | None  # None: targets as they are (or a classifier)


@dataclass
class ModelInfo(Result):
    """Everything ``mlpbp inspect`` shows."""

    path: str
    sha256: str
    bytes: int
    format_version: int
    task: str
    widths: list[int]
    activation: str
    loss: str
    dtype: str
    params: int
    mode: str  # "eval": a saved model predicts in evaluation mode
    buffers: dict[str, list[int]]
    layers: list[LayerRow]
    flops: Flops
    features: list[str]  # the network's inputs, after one-hot encoding
    columns: list[dict]  # the raw columns and what becomes of them (the model file's own records)
    target: str | list[str] | None
    classes: list[str] | None
    preprocessing: Preprocessing
    config: dict | None
    metrics: dict | None
    written_by: dict | None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def layer_rows(model: TrainedModel) -> list[LayerRow]:
    """One row per module, input to output (the graph's order), with its inputs (0 the network's
    input, i the i-th row's output), shape, parameters and FLOPs per row."""
    net, rows = model.net, []
    for index, (m, srcs) in enumerate(zip(net.layers, net.sources), start=1):
        in_widths, out = net.widths_in[index - 1], net.width_out[index - 1]
        forward, backward = m.flops(in_widths, out)
        if m.kind == "linear" and not net._need_in[index - 1]:
            backward -= 2 * in_widths[0] * out  # the network's input needs no ∂J/∂u
        activation = m.kind if m.kind not in MODULES else None
        rows.append(
            LayerRow(
                index,
                "activation" if activation else m.kind,
                activation,
                m.label,
                list(srcs),
                in_widths[0] if len(in_widths) == 1 else in_widths,
                out,
                {k: list(p.shape) for k, p in m.params.items()},
                sum(p.size for p in m.params.values()),
                forward,
                backward,
            )
        )
    return rows


def preprocessing(model: TrainedModel) -> Preprocessing:
    def scaler(s) -> Scaling | None:
        if s is None:
            return None
        identity = bool(np.all(s.mean == 0) and np.all(s.scale == 1))
        return Scaling(not identity, s.mean.tolist(), s.scale.tolist())

    return Preprocessing(scaler(model.x_scaler), scaler(model.y_scaler))


def model_info(path: str | Path) -> ModelInfo:
    """Everything ``mlpbp inspect`` shows; raises MlpbpError for a file that is not a model."""
    path = Path(path)
    model = load_model(path)
    net = model.net
    layers = layer_rows(model)
    forward = sum(r.flops_forward for r in layers)
    return ModelInfo(
        path=str(path),
        sha256=sha256(path),
        bytes=path.stat().st_size,
        format_version=FORMAT_VERSION,
        task=model.task,
        widths=net.widths,
        activation=net.activation,
        loss=net.loss_name,
        dtype=str(net.dtype),
        params=net.n_params,
        mode="eval",
        buffers={k: list(b.shape) for k, b in net.buffers.items()},
        layers=layers,
        flops=Flops(forward, forward + sum(r.flops_backward for r in layers), 2 * net.n_params),
        features=model.preprocessor.feature_names,
        columns=model.preprocessor.to_meta()["columns"],
        target=model.target_name or None,
        classes=model.classes,
        preprocessing=preprocessing(model),
        config=model.config or None,
        metrics=model.metrics,
        written_by=model.written_by,
    )
