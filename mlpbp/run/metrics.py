"""Metrics of a network on rows already in its units: loss, accuracy, MSE, R².

Computed in chunks as sums that merge (rows, loss sum, correct count; for regression per-output
mean and squared deviations, merged by Chan et al.'s formula), so memory stays bounded, rows
may come from a file (anything with ``take(rows, axis=0)``), and under MPI each rank scores
only its share of the rows and the ranks' sums merge in rank order: the same numbers on every
rank."""

from __future__ import annotations

import numpy as np

from mlpbp.data import Standardizer
from mlpbp.data.preprocessing import Moments
from mlpbp.engine.network import MLP
from mlpbp.run.distributed import SINGLE, Comm

EVAL_CHUNK = 8192  # rows per forward pass when evaluating, so memory stays bounded


def chunks(X, lo: int = 0, hi: int | None = None, size: int = EVAL_CHUNK):
    """(start, rows) for rows [lo, hi) of an array or a lazy row source, ``size`` at a time."""
    hi = X.shape[0] if hi is None else hi
    for i in range(lo, hi, size):
        j = min(i + size, hi)
        yield i, X[i:j] if isinstance(X, np.ndarray) else X.take(np.arange(i, j), axis=0)


def outputs(net: MLP, X: np.ndarray) -> np.ndarray:
    """The network's outputs for many rows, computed in chunks."""
    if X.shape[0] == 0:
        return np.empty((0, net.widths[-1]), net.dtype)
    return np.concatenate([net.forward(c) for _, c in chunks(X)])


def _partial(net: MLP, X, y: np.ndarray, y_scaler: Standardizer | None, lo: int, hi: int) -> dict:
    """Sums over rows [lo, hi) that merge with other rows' (``_merge``)."""
    part = {"n": 0, "loss": 0.0, "correct": 0, "sse": 0.0, "targets": Moments()}
    for i, Xc in chunks(X, lo, hi):
        o = net.forward(Xc)
        yc = y[i : i + o.shape[0]]
        chunk = {"n": o.shape[0], "loss": net.loss_fn.forward(o, yc if yc.dtype.kind in "iu" else yc.astype(o.dtype))}
        chunk["loss"] *= chunk["n"]  # the loss is a mean over rows
        if net.task == "classification":
            chunk["correct"] = int(np.sum(o.argmax(axis=1) == yc))
        else:
            pred, true = o.astype(np.float64), yc.astype(np.float64)
            if y_scaler is not None:
                pred, true = y_scaler.inverse_transform(pred), y_scaler.inverse_transform(true)
            chunk["sse"] = np.sum((true - pred) ** 2, axis=0)
            chunk["targets"] = Moments.of(true)
        part = _merge(part, chunk)
    return part


def _merge(a: dict, b: dict) -> dict:
    return {
        "n": a["n"] + b["n"],
        "loss": a["loss"] + b["loss"],
        "correct": a["correct"] + b.get("correct", 0),
        "sse": a["sse"] + b.get("sse", 0.0),
        "targets": a["targets"].merge(b.get("targets", Moments())),
    }


def compute_metrics(net: MLP, X, y: np.ndarray, y_scaler: Standardizer | None = None, comm: Comm = SINGLE) -> dict:
    """Loss plus accuracy (classification) or MSE and R² in the target's own units (regression).

    ``X`` is standardised; ``y`` is in the network's units (class indices, or scaled targets).
    Under MPI every rank must call it (a collective); each scores its share of the rows."""
    if X.shape[0] == 0:
        return {}
    parts = comm.allgather(_partial(net, X, y, y_scaler, *comm.share(X.shape[0])))
    total = parts[0]
    for part in parts[1:]:  # in rank order: the same sums on every rank
        total = _merge(total, part)
    n, loss = total["n"], float(total["loss"] / total["n"])
    if net.task == "classification":
        return {"loss": loss, "accuracy": total["correct"] / n}
    sse, ss_tot = np.atleast_1d(total["sse"]), np.atleast_1d(total["targets"].m2)
    mse = float(np.sum(sse) / (n * sse.size))
    # R² per output, averaged (scikit-learn's "uniform_average"); a constant target has none.
    r2 = float(np.mean(1 - sse / np.where(ss_tot > 0, ss_tot, np.nan)))
    return {"loss": loss, "mse": mse, "r2": r2 if np.isfinite(r2) else None}
