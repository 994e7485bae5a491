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

from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import FORMAT_VERSION, load_model


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def layer_rows(model: TrainedModel) -> list[dict]:
    """One row per layer, input to output, with its shape, parameters and FLOPs per row."""
    rows = []
    first_linear = True
    for index, layer in enumerate(model.net.layers, start=1):
        params = sum(p.size for p in layer.params.values())
        if params:  # Linear: z = W u + b
            fan_out, fan_in = layer.params["W"].shape
            forward = 2 * fan_in * fan_out + fan_out
            # ∂J/∂W (2·in·out), ∂J/∂b (out), ∂J/∂u (2·in·out, not for the network's input)
            backward = 2 * fan_in * fan_out + fan_out + (0 if first_linear else 2 * fan_in * fan_out)
            kind, activation, first_linear = "linear", None, False
        else:  # Activation: a = σ(z), elementwise; backward ∂J/∂z = ∂J/∂a ⊙ σ'(z)
            fan_in = fan_out = rows[-1]["out"]
            forward, backward = fan_out, 2 * fan_out
            kind, activation = "activation", model.net.activation
        rows.append(
            {
                "index": index,
                "kind": kind,
                "activation": activation,
                "in": fan_in,
                "out": fan_out,
                "param_shapes": {k: list(p.shape) for k, p in layer.params.items()},
                "params": params,
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
