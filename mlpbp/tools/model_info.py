"""What a model file holds, as one plain dict: layers and their cost, preprocessing, classes,
the config and final metrics of the run that wrote it, the versions that wrote it, its SHA-256.

FLOPs count a multiply-add as 2 and one per element for a bias, an activation or its
derivative; the loss (O(outputs) per row) is left out. A training step per row is its forward
pass plus its backward pass (the first layer needs no gradient for its input); the parameter
update is per batch, not per row, and is reported apart."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mlpbp.engine.module import MODULES
from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import FORMAT_VERSION, load_model


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def layer_rows(model: TrainedModel) -> list[dict]:
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
            {
                "index": index,
                "kind": "activation" if activation else m.kind,
                "activation": activation,
                "label": m.label,
                "inputs": list(srcs),
                "in": in_widths[0] if len(in_widths) == 1 else in_widths,
                "out": out,
                "param_shapes": {k: list(p.shape) for k, p in m.params.items()},
                "params": sum(p.size for p in m.params.values()),
                "flops_forward": forward,
                "flops_backward": backward,
            }
        )
    return rows


def preprocessing(model: TrainedModel) -> dict:
    def scaler(s) -> dict | None:
        if s is None:
            return None
        identity = bool(np.all(s.mean == 0) and np.all(s.scale == 1))
        return {
            "standardized": not identity,
            "mean": s.mean.tolist(),
            "scale": s.scale.tolist(),
        }

    return {"inputs": scaler(model.x_scaler), "targets": scaler(model.y_scaler)}


def model_info(path: str | Path) -> dict:
    """Everything ``mlpbp inspect`` shows; raises MlpbpError for a file that is not a model."""
    path = Path(path)
    model = load_model(path)
    net = model.net
    layers = layer_rows(model)
    forward = sum(r["flops_forward"] for r in layers)
    return {
        "path": str(path),
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "format_version": FORMAT_VERSION,
        "task": model.task,
        "widths": net.widths,
        "activation": net.activation,
        "loss": net.loss_name,
        "dtype": str(net.dtype),
        "params": net.n_params,
        "mode": "eval",  # a saved model predicts in evaluation mode
        "buffers": {k: list(b.shape) for k, b in net.buffers.items()},
        "layers": layers,
        "flops": {
            "forward_per_row": forward,
            "train_step_per_row": forward + sum(r["flops_backward"] for r in layers),
            "update_per_step": 2 * net.n_params,  # θ −= α g; momentum and decay add more
        },
        "features": model.preprocessor.feature_names,  # the network's inputs, after one-hot encoding
        "columns": model.preprocessor.to_meta()["columns"],  # the raw columns and what becomes of them
        "target": model.target_name or None,
        "classes": model.classes,
        "preprocessing": preprocessing(model),
        "config": model.config or None,
        "metrics": model.metrics,
        "written_by": model.written_by,
    }
