"""Data: bundled sets, generators, user files, splits and preprocessing."""

from __future__ import annotations

from mlpbp.data.dataset import TASKS, Dataset, Splits, Task
from mlpbp.data.generators import GENERATORS, generate
from mlpbp.data.preprocessing import Standardizer
from mlpbp.data.readers import (
    BUNDLED,
    bundled_path,
    read_csv,
    read_features_csv,
    read_npz,
)
from mlpbp.data.splits import split

__all__ = [
    "TASKS",
    "Task",
    "Dataset",
    "Splits",
    "GENERATORS",
    "generate",
    "Standardizer",
    "BUNDLED",
    "bundled_path",
    "read_csv",
    "read_features_csv",
    "read_npz",
    "split",
]
