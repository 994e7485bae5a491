"""Inverted dropout (Srivastava et al. 2014): in training y = u ⊙ m with m = 1/(1 − p) where a
uniform draw is ≥ p and 0 elsewhere, so E[y] = u and evaluation is the identity. The chain rule
is the same mask: ∂J/∂u = ∂J/∂y ⊙ m, R{y} = R{u} ⊙ m.

Masks come from the network's ``generator`` (``Network.generator``, seeded from the network's
seed and saved in checkpoints), so a resumed run draws the same masks. Inside
``Network.fixed_masks()`` a dropout keeps its last mask: finite differences of a training-mode
loss then differentiate one fixed function."""

from __future__ import annotations

import math
import sys

import numpy as np

from mlpbp.engine.module import MODULES, Module, check_option


def uniform_bits(generator: np.random.Generator, n: int, scratch: dict) -> np.ndarray | None:
    """The n 32-bit words ``generator.random(n, dtype=np.float32)`` would turn into floats
    (each float is (word >> 8)·2⁻²⁴), drawn as 64-bit words two at a time: the same stream, the
    same state after, at less than half the cost. PCG64 (``default_rng``'s) on a little-endian
    machine only: None otherwise. Its ``next_uint32`` hands out a 64-bit word's low half, then keeps
    the high half for the next call: a half kept from before comes first, and an odd count
    keeps one. With no half kept (every draw of an even count) the words are the 64-bit draws'
    own memory, not a copy of it: one pass over the mask's words, the draw itself."""
    bg = generator.bit_generator
    if type(bg) is not np.random.PCG64 or sys.byteorder != "little":
        return None
    if n == 0:
        return np.empty(0, np.uint32)
    st = bg.state
    kept = st["has_uint32"]
    pairs = (n - kept + 1) // 2
    if kept:
        out = scratch.get("bits")
        if out is None or out.size != n + 1:
            out = scratch["bits"] = np.empty(n + 1, np.uint32)
        out[0] = st["uinteger"]
        if pairs:
            out[1 : 1 + 2 * pairs] = bg.random_raw(pairs).view(np.uint32)  # low half, then high
        words = out
    else:
        words = bg.random_raw(pairs).view(np.uint32)
    st = bg.state  # after the draws
    # next_uint32 leaves the last high half in uinteger, kept (has_uint32) when it went unused
    st["has_uint32"] = (n - kept) % 2
    if pairs:
        st["uinteger"] = int(words[kept + 2 * pairs - 1])
    bg.state = st
    return words[:n]


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
        # Under MPI, (first row, rows) of the whole batch this rank's rows are part of: the mask
        # is drawn for the whole batch and this rank takes its rows of it, so every rank draws
        # what one process draws and 2 ranks train as 1 does (None: the rows are the batch).
        self.rows: tuple[int, int] | None = None
        self._row_shape: tuple[int, ...] | None = None  # a row's shape, from the last draw

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
        if self.rows is not None:  # this rank's rows of the whole batch's mask
            first, total = self.rows
            return self._drawn((total, *shape[1:]))[first : first + shape[0]]
        return self._drawn(shape)

    def skip(self, total: int) -> None:
        """Draw (and drop) a whole batch's mask: a rank with no rows of a batch keeps its
        generator where the other ranks' go."""
        if self.training and self.p and self.generator is not None and self._row_shape is not None:
            self._drawn((total, *self._row_shape))

    def _drawn(self, shape) -> np.ndarray:
        """The mask (0 or 1/(1 − p) per value) in three passes over its values: the draw, the
        comparison written as 0.0/1.0, the scale; ``forward`` applies it in a fourth, and
        ``backward`` in one."""
        self._row_shape = tuple(shape[1:])
        m = self._buffer("mask", shape)
        threshold = math.ceil(float(np.float32(self.p)) * 2**24) << 8
        fast = m.dtype == np.float32 and threshold < 2**32
        bits = uniform_bits(self.generator, m.size, self._buffers) if fast else None
        if bits is None:  # float64 (53-bit draws), another bit generator, or p that rounds to 1
            self.generator.random(out=m, dtype=m.dtype)
            np.greater_equal(m, self.p, out=m, casting="unsafe")
        else:  # r = (bits >> 8)·2⁻²⁴ ≥ p (p as float32) ⇔ bits ≥ ⌈p·2²⁴⌉·2⁸: no float draws at all
            np.greater_equal(bits.reshape(shape), threshold, out=m, casting="unsafe")
        m *= 1.0 / (1.0 - self.p)  # kept with probability 1 − p, scaled by 1/(1 − p)
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
