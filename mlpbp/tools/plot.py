"""Pictures of a run: loss and accuracy curves, the confusion matrix or predicted vs actual, and
for two-input classification the decision regions with the training points (one-input
regression: the fitted curve). PNGs through matplotlib's Figure API on the Agg canvas, so no
display and no global pyplot state; each file is written atomically.

The run's data is rebuilt from the config stored in its model.npz (the same seed gives the
same split), so the pictures show exactly the rows the run trained and was tested on."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpbp.errors import MlpbpError
from mlpbp.io import atomic_open
from mlpbp.run.config import config_from_dict
from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import load_model
from mlpbp.run.prepare import prepare

DPI = 100
GRID = 300  # decision-region resolution per axis


def import_matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MlpbpError("plots need matplotlib: pip install 'mlpbp[plot]'") from None
    return Figure


@dataclass
class RunData:
    name: str
    model: TrainedModel
    history: list[dict]
    train: tuple[np.ndarray, np.ndarray]  # raw inputs; class indices or targets in their units
    test: tuple[np.ndarray, np.ndarray]
    evaluated_on: str  # "test", or "training" when the run had no test split
    metrics: dict


def _read_history(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]
    except FileNotFoundError:
        raise MlpbpError(f"{path.parent} has no history.csv: is it an mlpbp run directory?") from None
    except (ValueError, OSError) as e:
        raise MlpbpError(f"cannot read {path}: {e}") from None


def load_run(run_dir: str | Path, name: str | None = None) -> RunData:
    """The run's model, history and data splits (rebuilt from the stored config)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MlpbpError(f"run directory not found: {run_dir}")
    model = load_model(run_dir / "model.npz")
    history = _read_history(run_dir / "history.csv")
    if not model.config:
        raise MlpbpError(f"{run_dir / 'model.npz'} stores no config, so its data cannot be rebuilt")
    cfg = config_from_dict(model.config)
    data = prepare(cfg, dtype="float64")

    def raw(part):
        X, y = part
        X = data.x_scaler.inverse_transform(X)
        if model.task == "regression" and data.y_scaler is not None:
            y = data.y_scaler.inverse_transform(y)
        return X, y

    train, test = raw(data.train), raw(data.test)
    on = "test"
    if test[0].shape[0] == 0:
        test, on = train, "training"
    metrics = model.metrics or {}
    if not metrics:  # an older file: measure them now
        o = model.predict_outputs(test[0])
        metrics = _metrics(model, o, test[1])
    return RunData(name or run_dir.name, model, history, train, test, on, metrics)


def _metrics(model: TrainedModel, o: np.ndarray, y: np.ndarray) -> dict:
    if model.multilabel:  # subset accuracy: every label of the row right
        return {"accuracy": float(np.mean(((o > 0) == (y > 0.5)).all(axis=1)))}
    if model.task == "classification":
        return {"accuracy": float(np.mean(o.argmax(axis=1) == y))}
    return {"r2": float(1 - ((y - o) ** 2).sum() / max(((y - y.mean(axis=0)) ** 2).sum(), 1e-300))}


def _headline(run: RunData) -> str:
    m = run.metrics
    if "subset_accuracy" in m:  # multi-label
        return f"{run.evaluated_on} subset accuracy {m['subset_accuracy']:.3f}, Hamming loss {m['hamming_loss']:.3f}"
    if "accuracy" in m:
        return f"{run.evaluated_on} accuracy {m['accuracy']:.3f}" + (f", loss {m['loss']:.3g}" if "loss" in m else "")
    return f"{run.evaluated_on} R² {m['r2']:.3f}" + (f", MSE {m['mse']:.3g}" if "mse" in m else "")


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    with atomic_open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def _log_helps(*series) -> bool:
    values = np.array([v for s in series for v in s if v is not None and v > 0])
    return values.size > 1 and values.max() / values.min() > 20


def plot_curves(run: RunData, path: Path) -> Path:
    Figure = import_matplotlib()
    h = run.history
    epochs = [r["epoch"] for r in h]
    classify = run.model.task == "classification"
    fig = Figure(figsize=(10 if classify else 6, 4), layout="constrained")
    axes = fig.subplots(1, 2 if classify else 1, squeeze=False)[0]
    panels = [("loss", "train_loss", "val_loss")]
    val_losses = [(r["val_loss"], r["epoch"]) for r in h if r.get("val_loss") is not None]
    early = (run.model.config.get("train") or {}).get("patience") is not None
    kept = int(min(val_losses)[1]) if early and val_losses else None  # early stopping keeps the best
    if classify:
        panels.append(("accuracy", "train_accuracy", "val_accuracy"))
    for ax, (what, tr, va) in zip(axes, panels):
        ax.plot(epochs, [r.get(tr) for r in h], label="train", color="C0", lw=1.8)
        val = [r.get(va) for r in h]
        if any(v is not None for v in val):
            ax.plot(epochs, [np.nan if v is None else v for v in val], label="validation", color="C1", lw=1.8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        if what == "loss" and _log_helps([r.get(tr) for r in h], val):
            ax.set_yscale("log")
            ax.set_ylabel("loss (log scale)")
        if what == "accuracy":
            seen = [v for v in [r.get(tr) for r in h] + val if v is not None]
            ax.set_ylim(max(0.0, min(seen) - 0.05 * (1.0 - min(seen)) - 0.01), 1.005)
        if kept is not None:
            ax.axvline(kept, color="0.35", ls=":", lw=1.2, label=f"kept weights (epoch {kept})")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend()
        ax.set_title(f"{what} per epoch")
    fig.suptitle(f"{run.name}: training curves ({len(h)} epochs; {_headline(run)})")
    return _save(fig, path)


def plot_label_confusion(run: RunData, path: Path) -> Path:
    """A multi-label model: one 2×2 confusion matrix per label (true 0/1 against predicted, a
    sigmoid above 1/2), each row as a share of its true value."""
    Figure = import_matplotlib()
    X, y = run.test
    labels = run.model.classes
    pred = run.model.predict_outputs(X) > 0
    true = np.asarray(y) > 0.5
    k = len(labels)
    cols = min(k, 4)
    fig = Figure(figsize=(2.6 * cols + 1.0, 2.6 * -(-k // cols) + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(-(-k // cols), cols, squeeze=False)).ravel()
    im = None
    for j, ax in enumerate(axes):
        if j >= k:
            ax.set_axis_off()
            continue
        counts = np.array([[np.sum(~true[:, j] & (pred[:, j] == p)) for p in (False, True)],
                           [np.sum(true[:, j] & (pred[:, j] == p)) for p in (False, True)]])  # fmt: skip
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks([0, 1], ["no", "yes"])
        ax.set_yticks([0, 1], ["no", "yes"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(labels[j])
        for r in range(2):
            for c in range(2):
                ax.text(c, r, str(counts[r, c]), ha="center", va="center", fontsize=9,
                        color="white" if share[r, c] > 0.6 else "black")  # fmt: skip
    if im is not None:
        fig.colorbar(im, ax=list(axes[:k]), label="share of the true value", shrink=0.8)
    fig.suptitle(f"{run.name}: confusion per label, {run.evaluated_on} split ({len(y)} rows)\n{_headline(run)}")
    return _save(fig, path)


def plot_confusion(run: RunData, path: Path) -> Path:
    if run.model.multilabel:
        return plot_label_confusion(run, path)
    Figure = import_matplotlib()
    X, y = run.test
    classes = run.model.classes
    k = len(classes)
    pred = run.model.predict_outputs(X).argmax(axis=1)
    counts = np.zeros((k, k), int)
    np.add.at(counts, (y.astype(int), pred), 1)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(3.5 + 0.3 * k, 8)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class", shrink=0.8)
    ax.set_xticks(
        range(k), classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right" if k > 3 else "center"
    )
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9,
                            color="white" if share[i, j] > 0.6 else "black")  # fmt: skip
    ax.set_title(f"{run.name}: confusion matrix, {run.evaluated_on} split ({len(y)} rows)\n{_headline(run)}")
    return _save(fig, path)


def plot_predicted(run: RunData, path: Path) -> Path:
    Figure = import_matplotlib()
    X, y = run.test
    o = run.model.predict_outputs(X)
    target = run.model.target_name or "target"
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    for j in range(y.shape[1]):
        label = target if y.shape[1] == 1 else f"output {j}"
        ax.scatter(y[:, j], o[:, j], s=14, alpha=0.7, label=label if y.shape[1] > 1 else None)
    lo, hi = float(min(y.min(), o.min())), float(max(y.max(), o.max()))
    pad = 0.05 * (hi - lo or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=1, ls="--", label="predicted = actual")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(f"{run.name}: predicted vs actual, {run.evaluated_on} split ({len(y)} rows)\n{_headline(run)}")
    return _save(fig, path)


def _grid(X: np.ndarray, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = margin * np.maximum(hi - lo, 1e-9)
    return lo - pad, hi + pad


def plot_regions(run: RunData, path: Path) -> Path:
    """Two-input classification: the predicted class over the plane, the training points on it."""
    Figure = import_matplotlib()
    from matplotlib.colors import ListedColormap

    X, y = run.train
    classes = run.model.classes
    k = len(classes)
    lo, hi = _grid(np.vstack([X, run.test[0]]))
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], GRID), np.linspace(lo[1], hi[1], GRID))
    pred = run.model.predict_outputs(np.column_stack([gx.ravel(), gy.ravel()])).argmax(axis=1).reshape(gx.shape)
    colors = [f"C{i % 10}" for i in range(k)]
    dot = float(np.clip(4000 / len(y), 16, 120))  # four XOR points must still be seen
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.contourf(gx, gy, pred, levels=np.arange(k + 1) - 0.5, cmap=ListedColormap(colors), alpha=0.25)
    ax.contour(gx, gy, pred, levels=np.arange(k) + 0.5, colors="0.25", linewidths=0.8)
    for c in range(k):
        pts = X[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=dot, color=colors[c], edgecolors="white", linewidths=0.6, label=classes[c])
    names = run.model.feature_names
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.legend(title="class (training points)", loc="best", fontsize=8, title_fontsize=8)
    ax.set_title(f"{run.name}: decision regions and {len(y)} training points\n{_headline(run)}")
    return _save(fig, path)


def plot_fit(run: RunData, path: Path) -> Path:
    """One-input regression: the network's curve over the training points."""
    Figure = import_matplotlib()
    X, y = run.train
    lo, hi = _grid(np.vstack([X, run.test[0]]), margin=0.05)
    grid = np.linspace(lo[0], hi[0], 400).reshape(-1, 1)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(X[:, 0], y[:, 0], s=12, alpha=0.6, color="C0", label=f"training rows ({len(y)})")
    if run.evaluated_on == "test":
        ax.scatter(run.test[0][:, 0], run.test[1][:, 0], s=14, marker="x", color="C3", label="test rows")
    ax.plot(grid[:, 0], run.model.predict_outputs(grid)[:, 0], color="C1", lw=2, label="network")
    ax.set_xlabel(run.model.feature_names[0])
    ax.set_ylabel(run.model.target_name or "target")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{run.name}: the fitted curve\n{_headline(run)}")
    return _save(fig, path)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None, name: str | None = None) -> list[Path]:
    """Write every picture that fits the run into ``out_dir`` (default: the run directory)."""
    import_matplotlib()  # before any work: a missing extra is one line
    run = load_run(run_dir, name)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    written = [plot_curves(run, out / "curves.png")]
    n_inputs = run.model.net.widths[0]
    if run.model.preprocessor.embeddings:  # a column of level codes is no axis to sweep
        n_inputs = 0
    if run.model.task == "classification":
        written.append(plot_confusion(run, out / "confusion.png"))
        if n_inputs == 2:
            written.append(plot_regions(run, out / "regions.png"))
    else:
        written.append(plot_predicted(run, out / "predicted.png"))
        if n_inputs == 1:
            written.append(plot_fit(run, out / "fit.png"))
    return written
