"""Stochastic gradient descent, θ := θ − α∇J."""

from __future__ import annotations

import numpy as np


class SGD:
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
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        self.params = params
        self.learning_rate = float(learning_rate)
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}
        self._tmp = {k: np.empty_like(p) for k, p in params.items()}

    def __repr__(self) -> str:
        return (
            f"SGD(learning_rate={self.learning_rate}, momentum={self.momentum}, "
            f"nesterov={self.nesterov}, weight_decay={self.weight_decay})"
        )

    def step(self, grads: dict[str, np.ndarray]) -> None:
        lr, mu = self.learning_rate, self.momentum
        for name, p in self.params.items():
            g, tmp = grads[name], self._tmp[name]
            if self.weight_decay:
                np.multiply(p, self.weight_decay, out=tmp)
                tmp += g
                g = tmp
            if mu:
                v = self.velocity[name]
                v *= mu
                v += g
                if self.nesterov:  # θ −= α g, then θ −= α μ v
                    np.multiply(g, lr, out=tmp)
                    p -= tmp
                    g, lr_v = v, lr * mu
                else:
                    g, lr_v = v, lr
            else:
                lr_v = lr
            np.multiply(g, lr_v, out=tmp)
            p -= tmp

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"velocity.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k, v in self.velocity.items():
            v[...] = state[f"velocity.{k}"]
