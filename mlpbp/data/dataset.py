"""What every reader and generator returns: the rows, the task, and the names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass
class Dataset:
    X: np.ndarray  # (n, d) float64
    y: np.ndarray  # classification: (n,) int64 indices into `classes`; regression: (n, m) float64
    task: Literal["classification", "regression"]
    classes: list[str] | None
    feature_names: list[str]
    target_name: str


@dataclass
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
