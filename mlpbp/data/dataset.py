"""What every reader and generator returns: the rows, the task, and the names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

# The one list of tasks (not a registry: the metrics, the loss defaults and the file format know each).
Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = get_args(Task)


@dataclass
class Dataset:
    X: np.ndarray  # (n, d) float64
    y: np.ndarray  # classification: (n,) int64 indices into `classes`; regression: (n, m) float64
    task: Task
    classes: list[str] | None
    feature_names: list[str]
    target_name: str
    weight: np.ndarray | None = None  # data.weight: one weight per row (None: every row weighs 1)


@dataclass
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
