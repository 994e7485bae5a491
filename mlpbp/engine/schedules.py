"""Learning-rate schedules: α as a function of the epoch."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "inverse_time")


def learning_rate_at(
    epoch: int,
    base: float,
    schedule: str = "constant",
    epochs: int = 1,
    step_size: int = 10,
    gamma: float = 0.5,
    decay: float = 0.01,
) -> float:
    """The learning rate for a 0-based epoch under a schedule."""
    if schedule == "constant":
        return base
    if schedule == "step":  # multiply by gamma every step_size epochs
        return base * gamma ** (epoch // step_size)
    if schedule == "cosine":  # from base down towards 0 over the run
        return base * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    if schedule == "inverse_time":
        return base / (1 + decay * epoch)
    raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
