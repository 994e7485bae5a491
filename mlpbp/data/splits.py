"""Train/validation/test splits: stratified by class for classification, seeded."""

from __future__ import annotations

import math

import numpy as np

from mlpbp.data.dataset import Dataset, Splits
from mlpbp.errors import DataError


def _round(x: float) -> int:
    # Half-up, unlike Python's round(): 2.5 -> 3 for every class alike.
    return int(math.floor(x + 0.5))


def split(ds: Dataset, test_fraction: float, validation_fraction: float, seed: int) -> Splits:
    """Train/validation/test split; stratified by class for classification. Deterministic per seed."""
    n_classes = len(ds.classes or []) if ds.task == "classification" else None
    train, val, test = split_indices(ds.y, n_classes, test_fraction, validation_fraction, seed)

    def take(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ds.X[idx], ds.y[idx]

    return Splits(train=take(train), val=take(val), test=take(test))


def _asked(test_fraction: float, validation_fraction: float, counts: tuple[int, int] | None = None):
    """What a split asks for besides training rows, and the keys that ask for it: only the
    splits whose fraction is above 0 (a split no one asked for is never named)."""
    parts, keys = [], []
    for name, frac, key, k in (
        ("test", test_fraction, "data.test_fraction", counts[0] if counts else None),
        ("validation", validation_fraction, "data.validation_fraction", counts[1] if counts else None),
    ):
        if frac > 0:
            parts.append(f"a {name}" if k is None else f"{k} {name} row{'s' * (k != 1)}")
            keys.append(key)
    return parts, " / ".join(keys)


def split_indices(
    y: np.ndarray, n_classes: int | None, test_fraction: float, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, validation and test splits. ``n_classes``: y holds class
    indices and each split is stratified by class; None: a plain random split."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if n_classes is not None:
        return _stratified(y, n_classes, test_fraction, validation_fraction, rng)
    order = rng.permutation(n)
    n_test = _round(test_fraction * n)
    n_val = _round(validation_fraction * n)
    # A split that was asked for is never silently empty.
    n_test = max(n_test, 1) if test_fraction > 0 else 0
    n_val = max(n_val, 1) if validation_fraction > 0 else 0
    if n_test + n_val >= n:
        parts, keys = _asked(test_fraction, validation_fraction, (n_test, n_val))
        raise DataError(
            f"not enough rows: {n} rows cannot give {', '.join(parts)} and at least 1 training row;"
            f" lower {keys} or add data"
        )
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]


def _stratified(y: np.ndarray, k: int, tf: float, vf: float, rng: np.random.Generator):
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(max(k, int(y.max()) + 1))]
    per_class = [idx for idx in per_class if len(idx)]
    counts = []  # [n_test, n_val] per class
    for idx in per_class:
        n_c = len(idx)
        n_test, n_val = _round(tf * n_c), _round(vf * n_c)
        # Every class keeps a training example; give up validation rows first, then test rows.
        while n_test + n_val > n_c - 1:
            if n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        counts.append([n_test, n_val])
    # Small classes can round every share to zero; a requested split still gets one row,
    # taken from the class with the most training rows to spare.
    for which, frac in ((0, tf), (1, vf)):
        if frac > 0 and sum(c[which] for c in counts) == 0:
            spare = [len(idx) - sum(c) - 1 for idx, c in zip(per_class, counts)]
            best = int(np.argmax(spare))
            if spare[best] < 1:
                parts, keys = _asked(tf, vf)
                raise DataError(
                    f"not enough rows: {len(y)} rows in {len(per_class)} classes cannot give every class a"
                    f" training row plus {' and '.join(parts)} row; lower {keys} or add data"
                )
            counts[best][which] += 1
    test, val, train = [], [], []
    for idx, (n_test, n_val) in zip(per_class, counts):
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    # Shuffle across classes so no split is ordered by class.
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))
