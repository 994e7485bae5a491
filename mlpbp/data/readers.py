"""Where the bundled CSVs are installed, and a Dataset from numeric arrays (the lazy readers').

Tables themselves (CSV, TSV, Parquet, NPZ, NPY) are read by mlpbp.data.tables."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from mlpbp.data.dataset import Dataset
from mlpbp.errors import DataError

# Bundled CSV datasets and their target columns.
BUNDLED = {"digits": "digit", "iris": "species"}


def bundled_path(name: str) -> Path:
    """The installed copy of a bundled CSV (package data mlpbp/datasets, from datasets/)."""
    path = Path(str(resources.files("mlpbp.datasets").joinpath(f"{name}.csv")))
    if not path.is_file():
        raise DataError(f"bundled dataset '{name}' not found at {path}; reinstall mlpbp or use data.path")
    return path


def dataset_from_arrays(path: Path, X, y: np.ndarray, task: str | None, features: list[str], target: str) -> Dataset:
    """A Dataset from checked features ``X`` (an array, or rows read lazily) and raw targets
    ``y``: the task inferred (float targets mean regression), class labels encoded."""
    n = X.shape[0]
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise DataError(f"{path}: y must have shape ({n},) or ({n}, m) to match X, got {y.shape}")
    if task is None:
        task = "regression" if y.dtype.kind == "f" else "classification"
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise DataError(f"{path}: task regression needs numeric y, got dtype {y.dtype}")
        y = y.astype(np.float64).reshape(n, -1)
        if not np.all(np.isfinite(y)):
            raise DataError(f"{path}: y has non-finite values; all values must be finite")
        return Dataset(X, y, "regression", None, features, target)

    if y.ndim == 2:
        if y.shape[1] != 1:
            raise DataError(f"{path}: classification needs y of shape ({n},), got {y.shape}")
        y = y[:, 0]
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{path}: classification needs integer or string labels in y, got non-integer floats")
        y = y.astype(np.int64)
    if y.dtype.kind not in "biuUS":
        raise DataError(f"{path}: y must hold integer or string class labels, got dtype {y.dtype}")
    values, index = np.unique(y, return_inverse=True)  # sorted numerically / lexicographically
    classes = [str(int(v)) if y.dtype.kind in "biu" else str(v) for v in values]
    if len(classes) < 2:
        raise DataError(f"{path}: y has only one class ({classes[0]!r}); classification needs at least 2")
    return Dataset(X, index.astype(np.int64).reshape(n), "classification", classes, features, target)


def _one_line(text: str) -> str:
    return " ".join(text.split())
