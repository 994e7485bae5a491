"""Learning-rate schedules: α as a function of the epoch.

A schedule is ``fn(epoch, base, *, epochs, step_size, gamma, decay) -> α`` (it may ignore the
keywords it does not use), registered in ``SCHEDULES``."""

from __future__ import annotations

import math
from collections.abc import Callable

from mlpbp.engine.registry import Registry

SCHEDULES: Registry[Callable[..., float]] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(epoch: int, base: float, **_) -> float:
    return base


@SCHEDULES.register("step")
def step(epoch: int, base: float, *, step_size: int, gamma: float, **_) -> float:
    """Multiply by gamma every step_size epochs."""
    return base * gamma ** (epoch // step_size)


@SCHEDULES.register("cosine")
def cosine(epoch: int, base: float, *, epochs: int, **_) -> float:
    """From base down towards 0 over the run."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


@SCHEDULES.register("inverse_time")
def inverse_time(epoch: int, base: float, *, decay: float, **_) -> float:
    return base / (1 + decay * epoch)


@SCHEDULES.register("plateau")
def plateau(epoch: int, base: float, *, gamma: float, step_size: int, val_losses=(), **_) -> float:
    """Multiply by gamma each time the validation loss has not improved on its best for
    step_size epochs (PyTorch's ReduceLROnPlateau, mode min, threshold 0), counted again from
    each reduction. A function of the epochs' validation losses so far (None where an epoch
    had none), so a resumed run gets the same rates."""
    best, since, rate = math.inf, 0, base
    for loss in val_losses[:epoch]:
        if loss is None:
            continue
        if loss < best:
            best, since = loss, 0
        else:
            since += 1
            if since >= step_size:
                rate, since = rate * gamma, 0
    return rate


def learning_rate_at(
    epoch: int,
    base: float,
    schedule: str = "constant",
    epochs: int = 1,
    step_size: int = 10,
    gamma: float = 0.5,
    decay: float = 0.01,
    warmup: int = 0,
    val_losses=(),
) -> float:
    """The learning rate for a 0-based epoch under a schedule, after ``warmup`` epochs that
    rise linearly to it (epoch e < warmup: the rate times (e + 1) / (warmup + 1))."""
    fn = SCHEDULES.lookup(schedule)
    rate = fn(epoch, base, epochs=epochs, step_size=step_size, gamma=gamma, decay=decay, val_losses=val_losses)
    return rate * (epoch + 1) / (warmup + 1) if epoch < warmup else rate
