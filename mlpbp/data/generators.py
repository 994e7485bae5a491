"""Synthetic data sets for teaching: xor, quadrants, moons, circles, spirals, gaussians, sine (seeded)."""

from __future__ import annotations

import numpy as np

from mlpbp.data.dataset import Dataset
from mlpbp.errors import DataError

GENERATORS = ("xor", "quadrants", "moons", "circles", "spirals", "gaussians", "sine")


def generate(name: str, seed: int, n_samples: int = 400, noise: float | None = None) -> Dataset:
    rng = np.random.default_rng(seed)
    if noise is None:
        noise = 0.0 if name == "xor" else 0.1
    if name == "sine":
        x = rng.uniform(-np.pi, np.pi, size=(n_samples, 1))
        y = np.sin(x) + noise * rng.standard_normal((n_samples, 1))
        return Dataset(x, y, "regression", None, ["x"], "y")
    if name == "xor":
        X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        y = np.array([0, 1, 1, 0], dtype=np.int64)
        if noise > 0:
            X = X + noise * rng.standard_normal(X.shape)
        return Dataset(X, y, "classification", ["0", "1"], ["x0", "x1"], "y")
    if name == "quadrants":  # xor as a cloud (TensorFlow Playground's): class 1 where x0 and x1 differ in sign
        X = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
        y = (X[:, 0] * X[:, 1] < 0).astype(np.int64)
        if noise > 0:
            X = X + noise * rng.standard_normal(X.shape)
        return Dataset(X, y, "classification", ["0", "1"], ["x0", "x1"], "y")
    n0 = n_samples // 2
    n1 = n_samples - n0
    if name == "moons":  # as sklearn's make_moons
        t0 = np.linspace(0.0, np.pi, n0)
        t1 = np.linspace(0.0, np.pi, n1)
        a = np.column_stack([np.cos(t0), np.sin(t0)])
        b = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    elif name == "circles":  # as sklearn's make_circles(factor=0.5)
        t0 = np.linspace(0.0, 2 * np.pi, n0, endpoint=False)
        t1 = np.linspace(0.0, 2 * np.pi, n1, endpoint=False)
        a = np.column_stack([np.cos(t0), np.sin(t0)])
        b = 0.5 * np.column_stack([np.cos(t1), np.sin(t1)])
    elif name == "spirals":
        # Two 1.5-turn Archimedean arms r = t, angle = 3*pi*t, the second rotated by pi, so
        # neighbouring arms are 1/3 apart. The jitter std is noise/2: at noise 0.1 the half gap
        # (1/6) is over 3 std, so a small MLP can separate them. sqrt(u) spreads points evenly by
        # area instead of crowding the centre, where the arms meet.
        def arm(n: int, phase: float) -> np.ndarray:
            t = np.sqrt(rng.uniform(0.0, 1.0, n))
            angle = 3 * np.pi * t + phase
            return np.column_stack([t * np.cos(angle), t * np.sin(angle)])

        a, b = arm(n0, 0.0), arm(n1, np.pi)
        noise = noise / 2
    elif name == "gaussians":
        # Two round blobs of std 0.5 at (-1, -1) and (1, 1); noise widens both (std sqrt(0.25 + noise²)),
        # so noise near 1 makes them overlap.
        a = rng.normal(-1.0, 0.5, (n0, 2))
        b = rng.normal(1.0, 0.5, (n1, 2))
    else:
        raise DataError(f"unknown dataset {name!r} (generators: {', '.join(GENERATORS)})")
    X = np.concatenate([a, b])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    if noise > 0:
        X = X + noise * rng.standard_normal(X.shape)
    order = rng.permutation(n_samples)
    return Dataset(X[order], y[order], "classification", ["0", "1"], ["x0", "x1"], "y")
