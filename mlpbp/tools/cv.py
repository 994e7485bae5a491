"""K-fold cross-validation of a config: the table's rows dealt into K folds (stratified by class
for classification, whole groups of the id column together when one is set), one training run
per fold with that fold as its test rows, and each test metric's mean and standard deviation.

Each fold's preprocessing (scaling, categories, fill values, class weights) is fitted on that
fold's training rows only, as a run of ``mlpbp train`` fits it on its training split; its
validation rows (data.validation_fraction of the rest, for the validation loss and early
stopping) come from the other folds."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpbp.data.splits import split_indices
from mlpbp.errors import ArgumentError, DataError
from mlpbp.run.config import Config
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer, TrainHooks


@dataclass
class Fold:
    number: int  # 1 .. K
    test_rows: np.ndarray  # positions in the table as read (rows with a missing target dropped)
    train_rows: np.ndarray
    val_rows: np.ndarray
    metrics: dict  # the test metrics, as `mlpbp evaluate` reports them
    epochs: int
    out_dir: Path


@dataclass
class CVResult:
    task: str
    folds: list[Fold]
    metrics: list[str]  # the scalar metrics each fold reports, in their order
    mean: dict[str, float]
    std: dict[str, float]  # sample standard deviation over the folds (ddof 1)
    stratified: bool
    grouped_by: str | None  # the id column whose groups were kept together
    rows: int
    notes: list[str] = field(default_factory=list)

    def values(self, metric: str) -> list[float | None]:
        return [f.metrics.get(metric) for f in self.folds]


def fold_rows(y: np.ndarray, n_classes: int | None, groups: np.ndarray | None, k: int, seed: int) -> list[np.ndarray]:
    """The test rows of each of ``k`` folds, a partition of ``range(len(y))``. With ``groups``,
    each group lies in one fold (the largest groups first, each into the fold with the fewest
    rows so far); else with ``n_classes`` each class is dealt round the folds in a seeded order,
    so every fold gets its share of each; else a seeded shuffle cut into k near-equal parts."""
    rng = np.random.default_rng([seed, 7])
    n = len(y)
    if groups is not None:
        codes, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
        if len(codes) < k:
            raise DataError(f"{k} folds need at least {k} distinct ids in the id column (it has {len(codes)})")
        order = rng.permutation(len(codes))
        order = order[np.argsort(-sizes[order], kind="stable")]
        fold_of_group, filled = np.empty(len(codes), np.int64), np.zeros(k, np.int64)
        for g in order:
            f = int(np.argmin(filled))
            fold_of_group[g], filled[f] = f, filled[f] + sizes[g]
        fold = fold_of_group[inverse]
    elif n_classes is not None:
        fold, offset = np.empty(n, np.int64), 0
        for c in range(max(n_classes, int(y.max()) + 1 if n else 0)):
            rows = rng.permutation(np.flatnonzero(y == c))
            fold[rows] = (offset + np.arange(len(rows))) % k
            offset += len(rows)
    else:
        fold = np.empty(n, np.int64)
        for f, rows in enumerate(np.array_split(rng.permutation(n), k)):
            fold[rows] = f
    return [np.flatnonzero(fold == f) for f in range(k)]


def _validation_rows(rest, y, n_classes, groups, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions among ``rest``: whole groups when there are groups."""
    if fraction == 0:
        return rest, rest[:0]
    if groups is None:
        train, val, _ = split_indices(y[rest], n_classes, 0.0, fraction, seed)
        return rest[train], rest[val]
    codes = np.random.default_rng([seed, 8]).permutation(np.unique(groups[rest]))
    counts = np.array([np.count_nonzero(groups[rest] == g) for g in codes])
    take = codes[: max(1, int(np.searchsorted(np.cumsum(counts), fraction * len(rest))) + 1)]
    in_val = np.isin(groups[rest], take)
    if in_val.all():
        raise DataError("not enough ids: the validation rows would take every training row; lower validation_fraction")
    return rest[~in_val], rest[in_val]


def cross_validate(
    cfg: Config,
    folds: int = 5,
    out_dir: str | Path | None = None,
    hooks: TrainHooks | None = None,
    stop: threading.Event | None = None,
    on_fold=None,
) -> CVResult:
    """Train the config once per fold (each into ``out_dir``/fold-N, default output.dir/cv) and
    gather the test metrics. ``on_fold(fold)`` is called as each fold ends."""
    if folds < 2:
        raise ArgumentError(f"folds must be at least 2 (got {folds})", argument="folds")
    root = Path(out_dir if out_dir is not None else Path(cfg.output.dir) / "cv")
    seen: dict = {}

    def splitter(y, n_classes, groups):
        if "parts" not in seen:  # the same table each time: deal the folds once
            if len(y) < folds:
                raise DataError(f"{folds} folds need at least {folds} rows (the table has {len(y)})")
            seen.update(parts=fold_rows(y, n_classes, groups, folds, cfg.seed), classes=n_classes, groups=groups)
        test = seen["parts"][seen["k"]]
        rest = np.setdiff1d(np.arange(len(y)), test)
        train, val = _validation_rows(rest, y, n_classes, groups, cfg.data.validation_fraction, cfg.seed)
        seen["rows"] = (train, val, test)
        return train, val, test

    results, task, notes = [], None, []
    for k in range(folds):
        seen["k"] = k
        data = prepare(cfg, splitter=splitter)
        task = data.task
        notes += [n for n in data.notes if n not in notes]
        fold_dir = root / f"fold-{k + 1}"
        run = Trainer(cfg, data, fold_dir, hooks=hooks, stop=stop).run()
        train, val, test = seen["rows"]
        fold = Fold(k + 1, test, train, val, run.test, len(run.history), fold_dir)
        results.append(fold)
        if on_fold is not None:
            on_fold(fold)
    names = [m for m, v in results[0].metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    mean, std = {}, {}
    for m in names:
        values = [f.metrics.get(m) for f in results]
        if any(v is None for v in values):  # e.g. R² of a fold whose target is constant
            continue
        mean[m] = float(np.mean(values))
        std[m] = float(np.std(values, ddof=1))
    return CVResult(
        task,
        results,
        names,
        mean,
        std,
        stratified=seen["groups"] is None and seen["classes"] is not None,
        grouped_by=cfg.data.id if seen["groups"] is not None else None,
        rows=sum(len(f.test_rows) for f in results),
        notes=notes,
    )
