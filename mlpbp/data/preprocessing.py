"""Preprocessing fitted on the training split and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlpbp.errors import DataError


@dataclass
class Moments:
    """Row count, per-column mean and sum of squared deviations; two merge exactly as if their
    rows had been together (Chan, Golub & LeVeque), so chunks and MPI ranks can each add theirs."""

    n: int = 0
    mean: np.ndarray | float = 0.0
    m2: np.ndarray | float = 0.0

    @classmethod
    def of(cls, X: np.ndarray) -> Moments:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return cls()
        mean = X.mean(axis=0)
        return cls(X.shape[0], mean, np.sum((X - mean) ** 2, axis=0))

    def merge(self, other: Moments) -> Moments:
        if not self.n or not other.n:
            return other if not self.n else self
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * (other.n / n), self.m2 + other.m2 + delta**2 * (self.n * other.n / n))


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
        return self._set(X.mean(axis=0), X.std(axis=0))

    @classmethod
    def from_moments(cls, m: Moments) -> Standardizer:
        """Fitted from moments gathered a chunk at a time (rows that never all sit in memory)."""
        return cls()._set(np.asarray(m.mean, np.float64), np.sqrt(np.asarray(m.m2, np.float64) / m.n))

    def _set(self, mean: np.ndarray, std: np.ndarray) -> Standardizer:
        self.mean = mean
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
