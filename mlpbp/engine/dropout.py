"""Inverted dropout (Srivastava et al. 2014): in training y = u ⊙ m with m = 1/(1 − p) where a
uniform draw is ≥ p and 0 elsewhere, so E[y] = u and evaluation is the identity. The chain rule
is the same mask: ∂J/∂u = ∂J/∂y ⊙ m, R{y} = R{u} ⊙ m.

Masks come from the network's ``generator`` (``Network.generator``, seeded from the network's
seed and saved in checkpoints), so a resumed run draws the same masks. Inside
``Network.fixed_masks()`` a dropout keeps its last mask: finite differences of a training-mode
loss then differentiate one fixed function."""

from __future__ import annotations

import numpy as np

from mlpbp.engine.module import MODULES, Module, check_option


class Dropout(Module):
    kind = "dropout"
    shorthand = "p"

    in_place_backward = True

    def __init__(self, p=0.5) -> None:
        super().__init__()
        check_option(self.kind, "p", p, (int, float), "a number")
        if not 0 <= p < 1:
            raise ValueError(f"dropout option p must be in [0, 1); got {p}")
        self.p = float(p)
        self.generator: np.random.Generator | None = None  # the network's, set when it is built
        self.fixed = False
        self.mask: np.ndarray | None = None

    def options(self) -> dict:
        return {"p": self.p}

    @property
    def eval_changes(self) -> str | None:
        return "dropout off" if self.p else None

    def _draw(self, shape) -> np.ndarray | None:
        if not self.training or self.p == 0:
            return None
        if self.fixed and self.mask is not None and self.mask.shape == shape:
            return self.mask
        if self.generator is None:
            raise ValueError("a dropout module needs a generator: build it into a Network")
        m = self._buffer("mask", shape)
        self.generator.random(out=m, dtype=m.dtype)
        np.greater_equal(m, self.p, out=m, casting="unsafe")  # kept with probability 1 − p
        m *= 1.0 / (1.0 - self.p)
        return m

    def forward(self, u):
        self.mask = m = self._draw(u.shape)
        return u if m is None else np.multiply(u, m, out=self._buffer("y", u.shape))

    def backward(self, g, *, need_input_grad=True, need_param_grad=True, in_place=False):
        if self.mask is None or not need_input_grad:
            return g if need_input_grad else None
        return np.multiply(g, self.mask, out=g if in_place else self._buffer("grad_u", g.shape))

    def rforward(self, r_u, V):
        if r_u is None or self.mask is None:
            return r_u
        return np.multiply(r_u, self.mask, out=self._buffer("r_y", r_u.shape))

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        if self.mask is None:
            return r_g, {}
        return np.multiply(r_g, self.mask, out=self._buffer("r_grad_u", r_g.shape)), {}


MODULES.register("dropout", Dropout)
