"""Preprocessing fitted on the training split and stored with the model."""

from __future__ import annotations

import numpy as np

from mlpbp.errors import DataError


class Standardizer:
    """Per-column (x - mean) / scale, fitted on the training split only."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        # Both None until fit(); or pass stored arrays (e.g. from model.npz) directly.
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)

    @classmethod
    def identity(cls, d: int) -> Standardizer:
        return cls(np.zeros(d), np.ones(d))

    def fit(self, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise DataError(f"cannot standardize: need a non-empty 2-D array, got shape {X.shape}")
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        # A constant column (std 0, or float round-off of 0) would divide by ~0; leave it unscaled.
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1.0)
        self.scale = np.where(std > tiny, std, 1.0)
        return self

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.mean is None:
            raise RuntimeError("Standardizer used before fit()")
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise DataError(f"expected {self.mean.shape[0]} feature columns, got an array of shape {X.shape}")
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self._check(X) - self.mean) / self.scale

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        return self._check(X) * self.scale + self.mean
