"""One epoch of minibatch SGD: θ := θ − α ∇J(batch) for each batch of rows in a given order.

It imports only NumPy and the engine, so NumPy-only callers (``mlpbp.sklearn``) load neither
pyarrow, pydantic nor the trainer's files. MPI enters through ``sync`` (a
``run.distributed.GradientSync``), read-ahead through ``X`` (``data.lazy.LazyRows``)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlpbp.engine.dropout import Dropout
from mlpbp.engine.network import MLP
from mlpbp.engine.optim import SGD

if TYPE_CHECKING:  # annotations only: importing it would load MPI's module for every caller
    from mlpbp.run.distributed import GradientSync

Share = Callable[[int], tuple[int, int]]  # a rank's rows [lo, hi) of a batch of n (Comm.share)


def _alone(n):
    return n * 0, n  # one process takes every row (n may be an array of batch sizes)


@dataclass(frozen=True)
class Batches:
    """The batches of an epoch: the rows of ``order``, ``size`` at a time, from batch ``first``
    on (a resumed epoch starts past the batches already done)."""

    order: np.ndarray
    size: int
    first: int = 0

    @property
    def count(self) -> int:
        """Batches in the whole epoch, the last one maybe smaller."""
        return math.ceil(self.order.shape[0] / self.size)

    def rows(self, s: int) -> np.ndarray:
        return self.order[s * self.size : (s + 1) * self.size]

    def shares(self, share: Share = _alone) -> tuple[np.ndarray, np.ndarray]:
        """The rows this rank takes at each step from ``first`` on, as ``_steps`` takes them:
        step i's are ``rows[bounds[i]:bounds[i + 1]]``. Two flat arrays, built without a loop:
        at batch 1 an epoch has a step per row, too many for a list of arrays."""
        start = np.arange(self.first * self.size, self.order.shape[0], self.size)
        lo, hi = share(np.minimum(self.size, self.order.shape[0] - start))
        sizes = hi - lo
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        return self.order[np.arange(bounds[-1]) + np.repeat(start + lo - bounds[:-1], sizes)], bounds


@contextlib.contextmanager
def _sharing(drops: list[Dropout]):
    """Dropouts that take their rows of the whole batch's mask for the loop's time only."""
    try:
        yield
    finally:
        for d in drops:
            d.rows = None


def sgd_epoch(
    net: MLP,
    opt: SGD,
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    first_step: int = 0,
    after_step: Callable[[int], bool] | None = None,
    sync: GradientSync | None = None,
    stop_requested: Callable[[], bool] | None = None,
    read_ahead: bool = False,
    sample_weight: np.ndarray | None = None,
) -> tuple[int, float]:
    """SGD over the rows of (X, y) taken in ``order``, ``batch_size`` at a time from batch
    ``first_step``, one ``net.train_step`` per batch: θ := θ − α ∇J(batch) per step
    (batch_size 1: per-example SGD, θ := θ − α ∇J⁽ʲ⁾).

    Each batch is gathered into one reused buffer, so an epoch never copies the whole data set;
    ``X`` may be an array or rows read from files on demand (anything with ndarray's ``take``).
    With ``sync`` over several MPI ranks, each rank computes the gradient on its share of each
    batch and ``sync`` sums them, so every rank makes the same update as one process would;
    with batch_norm (``sync.whole_batch``) every rank runs every step's passes, on no rows if
    it has none of a batch, since the statistics are the whole batch's.
    Stops early at a non-finite loss (before its update), after the step where
    ``stop_requested()`` was true (on any rank), or when ``after_step(s)`` returns True.
    With ``read_ahead``, rows read from files (``LazyRows``) are read a few batches ahead by a
    second process (for a core the BLAS threads leave free). ``sample_weight`` (one weight
    per row of X, data.weight): each step's J is the batch's weighted mean, and under MPI the
    ranks' gradients are summed by their shares of the batch's weight, not of its rows.
    Returns (steps done, last loss)."""
    batches = Batches(order, batch_size, first_step)
    fused = sync is None or sync.fused
    deferring = net.deferred_updates(batch_size) if fused else contextlib.nullcontext(1)
    ahead = contextlib.nullcontext(X)
    if read_ahead and hasattr(X, "read_ahead"):
        ahead = X.read_ahead(*batches.shares(_alone if sync is None else sync.comm.share))
    with deferring as group, ahead as X:
        return _steps(
            net, opt, X, y, batches, sync=sync, group=group, after_step=after_step, stop=stop_requested, w=sample_weight
        )


def _steps(
    net: MLP,
    opt: SGD,
    X,
    y: np.ndarray,
    batches: Batches,
    *,
    sync: GradientSync | None,
    group: int,
    after_step: Callable[[int], bool] | None,
    stop: Callable[[], bool] | None,
    w: np.ndarray | None = None,
) -> tuple[int, float]:
    """``sgd_epoch``'s loop. A stop is taken only after a multiple of ``group`` steps, where
    deferred updates are applied, so a run resumed there rounds as the uninterrupted one."""
    fused = sync is None or sync.fused
    share, ranks = (_alone, 1) if sync is None else (sync.comm.share, sync.comm.size)
    Xb = np.empty((-(-batches.size // ranks), *X.shape[1:]), X.dtype)
    yb = np.empty((Xb.shape[0], *y.shape[1:]), y.dtype)
    wb = None if w is None else np.empty(Xb.shape[0], np.float64)
    loss, s, stopping = 0.0, batches.first, False
    # Under MPI each dropout draws the whole batch's mask and takes this rank's rows of it.
    drops = [] if fused else [m for m in getattr(net, "layers", ()) if isinstance(m, Dropout)]
    with _sharing(drops):
        while s < batches.count:
            batch = batches.rows(s)
            lo, hi = share(batch.shape[0])
            rows, k = batch[lo:hi], hi - lo
            if k:  # the last batch of an epoch can be smaller than the number of ranks
                # mode="clip": with the default "raise", take() copies into a temporary first.
                X.take(rows, axis=0, out=Xb[:k], mode="clip")
                y.take(rows, axis=0, out=yb[:k], mode="clip")
                if wb is not None:
                    w.take(rows, axis=0, out=wb[:k], mode="clip")
            sw = None if wb is None else wb[:k]
            stopping = stopping or (stop is not None and stop())
            if fused:  # one process: forward, backward and update in one pass
                loss = net.train_step(Xb[:k], yb[:k], opt, sw)  # no update when the loss is not finite
            else:  # several: each rank's gradient, summed over the ranks, the same update on each
                mass = None if sw is None else float(sw.sum())
                whole = sync.whole_batch  # batch_norm's statistics: every rank joins every pass
                for d in drops:
                    d.rows = (lo, batch.shape[0])
                    if not k and whole is None:
                        d.skip(batch.shape[0])
                if whole is not None:
                    whole.share(k if w is None else mass, batch.shape[0] if w is None else float(w[batch].sum()))
                loss = net.step_loss_and_grad(Xb[:k], yb[:k], sw) if k or whole is not None else 0.0
                loss, stopping = sync.step(loss, k, batch.shape[0], stopping, mass)
                if math.isfinite(loss):
                    opt.step(sync.grads)
            if not math.isfinite(loss):
                return s + 1, loss
            s += 1
            if (stopping and s % group == 0) or (after_step is not None and after_step(s - 1)):
                break
    return s, loss
