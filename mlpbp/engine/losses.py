"""Losses J = (1/n) Σⱼ J⁽ʲ⁾ over a batch of n rows, computed from the network's output o.

Like a layer, a loss keeps in ``forward`` what ``backward`` (∂J/∂o), ``output_hvp`` (its
Hessian in o applied to a vector, for Gauss-Newton products) and ``rbackward`` (R{∂J/∂o}, for
Hessian-vector products) need. ``value_and_grad`` is the training step's version: J and
s·∂J/∂o in a handful of calls, written over o itself (s = −α for a fused SGD step), keeping
nothing for ``rbackward``.
"""

from __future__ import annotations

import numpy as np

from mlpbp.engine.registry import Registry


def one_hot(y: np.ndarray, k: int, dtype) -> np.ndarray:
    t = np.zeros((y.shape[0], k), dtype)
    t[np.arange(y.shape[0]), y] = 1
    return t


def softmax(o: np.ndarray) -> np.ndarray:
    """Row-wise softmax as a new array, shifted by the row maximum so e^o cannot overflow."""
    p = o - o.max(axis=1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=1, keepdims=True)
    return p


def _is_labels(y: np.ndarray) -> bool:
    return y.dtype.kind in "iu"


class SquareLoss:
    """J⁽ʲ⁾ = ½‖y⁽ʲ⁾ − o⁽ʲ⁾‖²;  ∂J/∂o = (o − y)/n.

    Integer y (class indices) is compared against one-hot targets."""

    name = "square"

    def forward(self, o: np.ndarray, y: np.ndarray) -> float:
        if _is_labels(y):
            t = one_hot(y, o.shape[1], o.dtype)
        else:
            t = y.reshape(o.shape) if y.ndim == 1 else y
        self.diff = diff = o - t
        return 0.5 * float(np.vdot(diff, diff)) / o.shape[0]

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o = scale·(o − y)/n, computed in o's own memory."""
        n = o.shape[0]
        if _is_labels(y):
            o[np.arange(n), y] -= 1
        else:
            o -= y.reshape(o.shape) if y.ndim == 1 else y
        value = 0.5 * float(np.vdot(o, o)) / n
        o *= scale / n
        return value, o

    def backward(self) -> np.ndarray:
        grad = self.diff
        grad /= grad.shape[0]  # diff is ours alone and not needed again: scale it in place
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o}, the Hessian of J in o (I/n) applied to R{o}: R{o}/n."""
        return r_o / r_o.shape[0]

    # ∂J/∂o depends on θ only through o, so R{∂J/∂o} = H_L·R{o}.
    rbackward = output_hvp


class CrossEntropyLoss:
    """Softmax cross-entropy from logits: J⁽ʲ⁾ = log Σₖ e^{oₖ} − o_y;  ∂J/∂o = (p − onehot(y))/n.

    log-sum-exp subtracts the row maximum first, so large logits cannot overflow."""

    name = "cross_entropy"

    def __init__(self) -> None:
        self._rows: dict[int, np.ndarray] = {}  # np.arange(n) per batch size, made once

    def forward(self, o: np.ndarray, y: np.ndarray) -> float:
        if not _is_labels(y):
            raise ValueError("cross_entropy needs integer class indices as targets")
        self.y, self.rows = y, np.arange(o.shape[0])
        p = o - o.max(axis=1, keepdims=True)  # shifted logits: the largest is 0
        shifted_y = p[self.rows, y]  # o_y − m
        np.exp(p, out=p)
        s = p.sum(axis=1, keepdims=True)
        p /= s
        self.p = p
        # J⁽ʲ⁾ = log s − (o_y − m), summed in float64 so float32 training reports a steady loss
        total = np.log(s, dtype=np.float64).sum() - shifted_y.sum(dtype=np.float64)
        return float(total) / o.shape[0]

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o = scale·(p − onehot(y))/n, computed in o's own memory."""
        if not _is_labels(y):
            raise ValueError("cross_entropy needs integer class indices as targets")
        n = o.shape[0]
        rows = self._rows.get(n)
        if rows is None:
            rows = self._rows[n] = np.arange(n)
        o -= o.max(axis=1, keepdims=True)  # shifted logits: the largest is 0
        shifted_y = o[rows, y]
        np.exp(o, out=o)
        s = o.sum(axis=1, keepdims=True)
        total = np.log(s, dtype=np.float64).sum() - shifted_y.sum(dtype=np.float64)
        np.divide(scale / n, s, out=s)  # o ⊙ s/(n Σ) is s·p/n: one multiply instead of two
        o *= s
        o[rows, y] -= scale / n
        return float(total) / n, o

    def backward(self) -> np.ndarray:
        grad = self.p.copy()  # p stays intact for rbackward
        grad[self.rows, self.y] -= 1
        grad /= grad.shape[0]
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o} = p ⊙ (R{o} − ⟨p, R{o}⟩)/n: the Hessian of J in o, (diag(p) − ppᵀ)/n per
        row, the softmax Jacobian, applied to R{o}. Positive semi-definite."""
        p = self.p
        inner = np.einsum("ij,ij->i", p, r_o)[:, None]
        return p * (r_o - inner) / r_o.shape[0]

    # ∂J/∂o depends on θ only through o, so R{∂J/∂o} = H_L·R{o}.
    rbackward = output_hvp


LOSSES: Registry[type] = Registry("loss")
LOSSES.register(SquareLoss.name, SquareLoss)
LOSSES.register(CrossEntropyLoss.name, CrossEntropyLoss)


def get_loss(name: str):
    """A fresh loss object (it keeps per-batch state) of the registered class ``name``."""
    return LOSSES.lookup(name)()
