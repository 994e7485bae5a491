"""First-order optimizers, θ := θ − α·(a rule of ∇J), updating the parameter arrays in place.

Every first-order optimizer derives from :class:`Optimizer`: ``step(grads)`` advances any
per-step state once (``begin_step``) and then calls ``update(name, p, g)`` for each parameter.
The fused training step (``MLP.train_step``) calls the same ``update`` for a layer's parameters
right after that layer's backward pass, while they are still in cache, so the reference path
(``loss_and_grad`` + ``step``) and the fused one compute the same numbers.

Optimizers are registered in ``OPTIMIZERS``. One is built as ``cls(params, learning_rate, **its
own settings)``; its settings are keyword arguments named like the ``train:`` config keys, so
``build_optimizer`` hands each one what it declares and nothing else.
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy.linalg import blas

from mlpbp.engine.registry import Registry


class Optimizer:
    """Base of the first-order optimizers: per-parameter, in-place updates.

    Subclasses implement ``update(name, p, g)`` (read ``g``, never write it: on the reference
    path it is the network's own gradient array) and, when they keep per-step state such as a
    step counter, ``begin_step``. ``fused_scale`` is a number s when the whole rule is
    θ += s·∇J (plain SGD: s = −α), which lets a network fold s into its backward pass and add
    each parameter's gradient straight into the parameter; None otherwise.
    """

    def __init__(self, params: dict[str, np.ndarray], learning_rate: float) -> None:
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
        self.params = params
        self.learning_rate = float(learning_rate)

    @property
    def fused_scale(self) -> float | None:
        return None

    def begin_step(self) -> None:
        """Advance per-step state (e.g. a step counter), once per step, before any update."""

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.begin_step()
        for name, p in self.params.items():
            self.update(name, p, grads[name])

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pass


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """y += a·x in one pass over contiguous arrays of one dtype (BLAS axpy; NumPy would need a
    temporary for a·x)."""
    flat = y.reshape(-1)  # a view: the parameters are contiguous arrays
    fn = blas.daxpy if y.dtype == np.float64 else blas.saxpy
    out = fn(np.asarray(x, y.dtype).reshape(-1), flat, a=a)
    if out is not flat:  # f2py copied y (another dtype or layout): write the result back
        y[...] = out.reshape(y.shape)


class SGD(Optimizer):
    """θ := θ − α g, updating the parameter arrays in place.

    g is ∇J plus ``weight_decay``·θ (L2 decay of every parameter handed in, as in PyTorch's
    SGD). With ``momentum`` μ > 0, heavy-ball momentum:
    v := μ v + g, θ := θ − α v; with ``nesterov``, θ := θ − α (g + μ v).
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        learning_rate: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, learning_rate)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}
        # Nesterov with weight decay needs g + λθ twice: one scratch array per parameter.
        self._tmp = {k: np.empty_like(p) for k, p in params.items()} if nesterov and weight_decay else {}

    def __repr__(self) -> str:
        return (
            f"SGD(learning_rate={self.learning_rate}, momentum={self.momentum}, "
            f"nesterov={self.nesterov}, weight_decay={self.weight_decay})"
        )

    @property
    def fused_scale(self) -> float | None:
        return None if self.momentum or self.weight_decay else -self.learning_rate

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        # One BLAS axpy per read-modify-write: each rule touches θ (and v) as few times as it allows.
        lr, mu, wd = self.learning_rate, self.momentum, self.weight_decay
        if not mu:
            if wd:  # θ − α(g + λθ) = (1 − αλ)θ − αg
                p *= 1.0 - lr * wd
            axpy(-lr, g, p)
            return
        v = self.velocity[name]
        v *= mu
        v += g
        if wd:
            if self.nesterov:
                tmp = self._tmp[name]
                np.multiply(p, wd, out=tmp)
                tmp += g
                g = tmp
            axpy(wd, p, v)  # v := μv + g + λθ
        if self.nesterov:  # θ −= α (g + μ v)
            axpy(-lr, g, p)
            axpy(-lr * mu, v, p)
        else:
            axpy(-lr, v, p)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"velocity.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k, v in self.velocity.items():
            v[...] = state[f"velocity.{k}"]


OPTIMIZERS: Registry[type] = Registry("optimizer")
OPTIMIZERS.register("sgd", SGD)


def build_optimizer(name: str, params: dict[str, np.ndarray], **settings):
    """The optimizer registered as ``name`` over ``params``, given those of ``settings`` (e.g.
    every ``train:`` config key) that its constructor declares."""
    cls = OPTIMIZERS.lookup(name)
    accepted = inspect.signature(cls).parameters
    return cls(params, **{k: v for k, v in settings.items() if k in accepted and k != "params"})
