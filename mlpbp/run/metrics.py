"""Metrics of a network on rows already in its units: loss; accuracy, balanced accuracy, macro F1
and per class; MSE, MAE and R², on average and per output.

Computed in chunks as sums that merge (rows, loss sum, the confusion matrix; for regression
per-output squared and absolute errors, mean and squared deviations, merged by Chan et al.'s
formula), so memory stays bounded, rows may come from a file (anything with
``take(rows, axis=0)``), and under MPI each rank scores only its share of the rows and the
ranks' sums merge in rank order: the same numbers on every rank."""

from __future__ import annotations

import numpy as np

from mlpbp.data import Standardizer
from mlpbp.engine.network import MLP
from mlpbp.errors import DataError
from mlpbp.run.distributed import SINGLE, Comm

EVAL_CHUNK = 8192  # rows per forward pass when evaluating, so memory stays bounded


def chunks(X, lo: int = 0, hi: int | None = None, size: int = EVAL_CHUNK, any_order: bool = False, ahead=False):
    """(which, X[which]) for the rows at positions [lo, hi) of an array or a lazy row source,
    ``size`` at a time, in order; ``which`` is a slice or an index array. With ``any_order``
    (for sums, which do not care), a lazy source's rows come in the order they lie in its
    file, so each chunk is a few large reads rather than one read per row; with ``ahead``
    too, a second process reads the next chunks while this one computes (``read_ahead``)."""
    hi = X.shape[0] if hi is None else hi
    bounds = [(i, min(i + size, hi)) for i in range(lo, hi, size)]
    if isinstance(X, np.ndarray):
        for i, j in bounds:
            yield slice(i, j), X[i:j]
        return
    order = X.file_order() if any_order else None
    if not (ahead and order is not None):
        for i, j in bounds:
            which = np.arange(i, j) if order is None else order[i:j]
            yield which, X.take(which, axis=0)
        return
    edges = np.array([lo] + [j for _, j in bounds]) - lo
    with X.read_ahead(order[lo:hi], edges) as source:
        for i, j in bounds:
            yield order[i:j], source.take(order[i:j], axis=0)


def outputs(net: MLP, X: np.ndarray) -> np.ndarray:
    """The network's outputs for many rows, computed in chunks."""
    if X.shape[0] == 0:
        return np.empty((0, net.widths[-1]), net.dtype)
    return np.concatenate([net.forward(c) for _, c in chunks(X)])


def _partial(net: MLP, X, y: np.ndarray, y_scaler: Standardizer | None, lo: int, hi: int, ahead: bool, w=None) -> dict:
    """The sums of rows [lo, hi); with per-row weights ``w``, each row counts w times: "n" is
    then the chunk's weight, the loss sum and every count and sum weighted."""
    part = {"n": 0}
    for which, Xc in chunks(X, lo, hi, any_order=True, ahead=ahead):
        o = net.forward(Xc)
        yc = y[which]
        wc = None if w is None else w[which]
        k = o.shape[0] if wc is None else float(wc.sum())
        loss = net.loss_fn.forward(o, yc if yc.dtype.kind in "iu" else yc.astype(o.dtype), wc) * k
        if net.task == "classification" and yc.ndim == 2:  # multi-label: a sigmoid > 1/2 per label
            chunk = {"n": k, "loss": loss, **_label_sums(yc > 0.5, o > 0, wc)}
        elif net.task == "classification":
            chunk = {"n": k, "loss": loss, "confusion": _confusion(yc, o.argmax(axis=1), o.shape[1], wc)}
        else:
            pred, true = o.astype(np.float64), yc.astype(np.float64).reshape(o.shape)
            if y_scaler is not None:
                pred, true = y_scaler.inverse_transform(pred), y_scaler.inverse_transform(true)
            chunk = {"n": k, "loss": loss, **_regression_sums(true, pred, wc)}
        part = _merge(part, chunk)
    return part


def _confusion(y: np.ndarray, pred: np.ndarray, k: int, w: np.ndarray | None = None) -> np.ndarray:
    """Counts (with ``w``: summed weights) of (true class, predicted class)."""
    return np.bincount(y.astype(np.int64) * k + pred, weights=w, minlength=k * k).reshape(k, k)


def _label_sums(true: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> dict:
    """Multi-label sums (weighted by ``w``): per label true and false positives and false
    negatives; rows whose every label is right; wrong labels over the label count, per row."""
    weighted = w is not None
    w = np.ones(true.shape[0]) if w is None else np.asarray(w, np.float64)
    ww = w[:, None]
    return {
        "weighted": weighted,
        "tp": np.sum(ww * (true & pred), axis=0),
        "fp": np.sum(ww * (~true & pred), axis=0),
        "fn": np.sum(ww * (true & ~pred), axis=0),
        "exact": float(np.dot(w, (true == pred).all(axis=1))),
        "wrong": float(np.dot(w, (true != pred).mean(axis=1))),
    }


def _regression_sums(true: np.ndarray, pred: np.ndarray, w: np.ndarray | None = None) -> dict:
    err = true - pred
    if w is None:
        mean = true.mean(axis=0)
        return {
            "sse": np.sum(err**2, axis=0),
            "sae": np.sum(np.abs(err), axis=0),
            "mean": mean,
            "m2": np.sum((true - mean) ** 2, axis=0),
        }
    w = np.asarray(w, np.float64)[:, None]
    total = float(w.sum())
    mean = (w * true).sum(axis=0) / total if total > 0 else np.zeros(true.shape[1])
    return {
        "sse": np.sum(w * err**2, axis=0),
        "sae": np.sum(w * np.abs(err), axis=0),
        "mean": mean,
        "m2": np.sum(w * (true - mean) ** 2, axis=0),
    }


def _merge(a: dict, b: dict) -> dict:
    if not a["n"] or not b["n"]:
        return dict(a if a["n"] else b)
    n = a["n"] + b["n"]
    out = {"n": n, "loss": a.get("loss", 0.0) + b.get("loss", 0.0)}
    if "confusion" in a:
        out["confusion"] = a["confusion"] + b["confusion"]
    elif "tp" in a:
        out |= {k: a[k] + b[k] for k in ("tp", "fp", "fn", "exact", "wrong")}
        out["weighted"] = a["weighted"] or b["weighted"]
    else:
        delta = b["mean"] - a["mean"]
        out["sse"] = a["sse"] + b["sse"]
        out["sae"] = a["sae"] + b["sae"]
        out["mean"] = a["mean"] + delta * (b["n"] / n)
        out["m2"] = a["m2"] + b["m2"] + delta**2 * (a["n"] * b["n"] / n)
    return out


def compute_metrics(
    net: MLP,
    X,
    y: np.ndarray,
    y_scaler: Standardizer | None = None,
    comm: Comm = SINGLE,
    classes: list[str] | None = None,
    names: list[str] | None = None,
    read_ahead: bool = False,
    sample_weight: np.ndarray | None = None,
) -> dict:
    """Loss plus, for classification, accuracy, balanced accuracy, macro F1 and a per-class
    table; for regression, MSE, RMSE, MAE and R² in the target's own units (their mean over
    the outputs, and each output's).

    ``X`` is encoded; ``y`` is in the network's units (class indices, or scaled targets);
    ``classes`` / ``names`` label the per-class and per-output records. Under MPI every rank
    must call it (a collective); each scores its share of the rows. With ``read_ahead``,
    rows from files are read by a second process while this one computes.

    ``sample_weight`` (one weight >= 0 per row, data.weight): every metric is the weighted
    one, as scikit-learn's with ``sample_weight`` (a row of weight 2 counts as two rows; a
    class's support is its weight)."""
    if X.shape[0] == 0:
        return {}
    total = {"n": 0}
    lo, hi = comm.share(X.shape[0])
    for part in comm.allgather(_partial(net, X, y, y_scaler, lo, hi, read_ahead, sample_weight)):
        total = _merge(total, part)
    if not total["n"] > 0:
        raise DataError("every row has weight 0 (data.weight); a weighted metric needs some weight")
    loss = float(total["loss"] / total["n"])
    if "tp" in total:
        return {"loss": loss, **_from_label_sums(total, classes)}
    if net.task == "classification":
        return {"loss": loss, **_from_confusion(total["confusion"], classes)}
    return {"loss": loss, **_from_sums(total, names)}


def classification_metrics(y: np.ndarray, pred: np.ndarray, k: int, classes: list[str] | None = None) -> dict:
    return _from_confusion(_confusion(y, pred, k), classes)


def _from_confusion(confusion: np.ndarray, classes: list[str] | None = None) -> dict:
    """As scikit-learn computes them: balanced accuracy is the mean recall over the classes
    present in y; macro F1 the mean F1 over the classes in y or in the predictions (0 where
    undefined). The per-class table lists every class."""
    k = confusion.shape[0]
    classes = classes or [str(i) for i in range(k)]
    tp = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    weighted = support.dtype.kind == "f"  # summed weights (data.weight), not row counts
    predicted = confusion.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    seen = present | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / support.sum()),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[seen].mean()),
        "per_class": [
            {
                "label": c,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": float(support[i]) if weighted else int(support[i]),
            }
            for i, c in enumerate(classes)
        ],
    }


def _from_label_sums(total: dict, labels: list[str] | None = None) -> dict:
    """Multi-label metrics, as scikit-learn computes them (0 where undefined): subset accuracy
    (``accuracy`` too: every label of the row right), Hamming loss (the share of wrong labels),
    macro F1 (the mean over every label) and micro F1 (of the summed counts), and per label
    precision, recall, F1 and support (its rows, or their weight)."""
    n, tp, fp, fn = total["n"], total["tp"], total["fp"], total["fn"]
    labels = labels or [str(i) for i in range(tp.size)]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    micro = 2 * tp.sum() + fp.sum() + fn.sum()
    support = tp + fn
    weighted = total["weighted"]
    return {
        "accuracy": float(total["exact"] / n),
        "subset_accuracy": float(total["exact"] / n),
        "hamming_loss": float(total["wrong"] / n),
        "macro_f1": float(f1.mean()),
        "micro_f1": float(2 * tp.sum() / micro) if micro > 0 else 0.0,
        "per_label": [
            {
                "label": c,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": float(support[i]) if weighted else int(support[i]),
            }
            for i, c in enumerate(labels)
        ],
    }


def regression_metrics(true: np.ndarray, pred: np.ndarray, names: list[str] | None = None) -> dict:
    return _from_sums({"n": true.shape[0], **_regression_sums(true, pred)}, names)


def _from_sums(total: dict, names: list[str] | None = None) -> dict:
    n = total["n"]
    sse, sae, ss_tot = (np.atleast_1d(total[k]) for k in ("sse", "sae", "m2"))
    names = names or [f"output_{j}" for j in range(sse.size)]
    mse, mae = sse / n, sae / n
    # R² per output, averaged (scikit-learn's "uniform_average"); a constant target has none.
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1 - sse / np.where(ss_tot > 0, ss_tot, np.nan)

    def num(v) -> float | None:
        return float(v) if np.isfinite(v) else None

    rmse = np.sqrt(mse)  # per output, then averaged (scikit-learn's root_mean_squared_error)
    return {
        "mse": float(mse.mean()),
        "rmse": float(rmse.mean()),
        "mae": float(mae.mean()),
        "r2": num(r2.mean()),
        "outputs": [
            {"name": name, "mse": float(a), "rmse": float(e), "mae": float(b), "r2": num(c)}
            for name, a, e, b, c in zip(names, mse, rmse, mae, r2)
        ],
    }
