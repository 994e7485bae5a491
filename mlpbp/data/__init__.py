"""Data: bundled sets, generators, user tables, splits and preprocessing."""

from __future__ import annotations

from mlpbp.data.dataset import TASKS, Dataset, Splits, Task
from mlpbp.data.generators import GENERATORS, generate
from mlpbp.data.preprocessing import Preprocessor, Standardizer
from mlpbp.data.readers import BUNDLED, bundled_path
from mlpbp.data.splits import split, split_indices
from mlpbp.data.tables import RawTable, read_table
from mlpbp.data.targets import Target, infer_target

__all__ = [
    "TASKS",
    "Task",
    "Dataset",
    "Splits",
    "GENERATORS",
    "generate",
    "Preprocessor",
    "Standardizer",
    "BUNDLED",
    "bundled_path",
    "split",
    "split_indices",
    "RawTable",
    "read_table",
    "Target",
    "infer_target",
]
