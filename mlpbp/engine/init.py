"""Weight initialisations: ``fn(rng, fan_in, fan_out) -> W`` of shape (fan_out, fan_in), in
float64 (the network casts), registered in ``INITS``. Biases start at zero."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mlpbp.engine.registry import Registry

INITS: Registry[Callable[[np.random.Generator, int, int], np.ndarray]] = Registry("init")


@INITS.register("he")
def he(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Normal with variance 2/fan_in: keeps the variance of ReLU activations steady with depth."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))


@INITS.register("glorot")
def glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    """Glorot/Xavier uniform: balances forward and backward variance."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_out, fan_in))
