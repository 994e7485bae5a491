"""Metrics of a network on rows already in its units: loss, accuracy, MSE, R²."""

from __future__ import annotations

import numpy as np

from mlpbp.data import Standardizer
from mlpbp.engine.network import MLP

EVAL_CHUNK = 8192  # rows per forward pass when evaluating, so memory stays bounded


def outputs(net: MLP, X: np.ndarray) -> np.ndarray:
    """The network's outputs for many rows, computed in chunks."""
    if X.shape[0] == 0:
        return np.empty((0, net.widths[-1]), net.dtype)
    return np.concatenate([net.forward(X[i : i + EVAL_CHUNK]) for i in range(0, X.shape[0], EVAL_CHUNK)])


def compute_metrics(net: MLP, X: np.ndarray, y: np.ndarray, y_scaler: Standardizer | None = None) -> dict:
    """Loss plus accuracy (classification) or MSE and R² in the target's own units (regression).

    ``X`` is standardised; ``y`` is in the network's units (class indices, or scaled targets)."""
    if X.shape[0] == 0:
        return {}
    o = outputs(net, X)
    loss = net.loss_fn.forward(o, np.asarray(y) if y.dtype.kind in "iu" else y.astype(o.dtype))
    if net.task == "classification":
        return {"loss": loss, "accuracy": float(np.mean(o.argmax(axis=1) == y))}
    pred, true = o.astype(np.float64), y.astype(np.float64)
    if y_scaler is not None:
        pred, true = y_scaler.inverse_transform(pred), y_scaler.inverse_transform(true)
    mse = float(np.mean((pred - true) ** 2))
    ss_tot = np.sum((true - true.mean(axis=0)) ** 2, axis=0)
    ss_res = np.sum((true - pred) ** 2, axis=0)
    # R² per output, averaged (scikit-learn's "uniform_average"); a constant target has none.
    r2 = float(np.mean(1 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)))
    return {"loss": loss, "mse": mse, "r2": r2 if np.isfinite(r2) else None}
