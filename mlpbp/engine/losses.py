"""Losses J = (1/n) Σⱼ J⁽ʲ⁾ over a batch of n rows, computed from the network's output o.

With class weights c (one per class), J = (1/n) Σⱼ c_{yⱼ} J⁽ʲ⁾: each example's loss scaled by
its class's weight, divided by the batch size as Keras' ``class_weight`` does (scikit-learn's
"balanced" weights average 1 over the training rows, so the loss keeps its scale).

Like a layer, a loss keeps in ``forward`` what ``backward`` (∂J/∂o), ``output_hvp`` (its
Hessian in o applied to a vector, for Gauss-Newton products) and ``rbackward`` (R{∂J/∂o}, for
Hessian-vector products) need. ``value_and_grad`` is the training step's version: J and
s·∂J/∂o in a handful of calls, written over o itself (s = −α for a fused SGD step), keeping
nothing for ``rbackward``.
"""

from __future__ import annotations

import math

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


class _Weighted:
    """Per-example weights from the class of each row (None: every row weighs 1)."""

    class_weight: np.ndarray | None = None

    def _weights(self, y: np.ndarray, dtype) -> np.ndarray | None:
        if self.class_weight is None or not _is_labels(y):
            return None
        return self.class_weight.astype(dtype, copy=False)[y][:, None]


class SquareLoss(_Weighted):
    """J⁽ʲ⁾ = ½‖y⁽ʲ⁾ − o⁽ʲ⁾‖²;  ∂J/∂o = (o − y)/n (times each row's weight, if any).

    Integer y (class indices) is compared against one-hot targets."""

    name = "square"

    def forward(self, o: np.ndarray, y: np.ndarray) -> float:
        if _is_labels(y):
            t = one_hot(y, o.shape[1], o.dtype)
        else:
            t = y.reshape(o.shape) if y.ndim == 1 else y
        self.diff = diff = o - t
        self.w = w = self._weights(y, o.dtype)
        if w is None:
            return 0.5 * float(np.vdot(diff, diff)) / o.shape[0]
        return 0.5 * float(np.dot(w[:, 0], np.einsum("ij,ij->i", diff, diff))) / o.shape[0]

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o = scale·(o − y)/n, computed in o's own memory."""
        n = o.shape[0]
        w = self._weights(y, o.dtype)
        if _is_labels(y):
            o[np.arange(n), y] -= 1
        else:
            o -= y.reshape(o.shape) if y.ndim == 1 else y
        if w is None:
            value = 0.5 * float(np.vdot(o, o)) / n
        else:
            value = 0.5 * float(np.dot(w[:, 0], np.einsum("ij,ij->i", o, o))) / n
            o *= w
        o *= scale / n
        return value, o

    def backward(self) -> np.ndarray:
        grad = self.diff
        if self.w is not None:
            grad *= self.w
        grad /= grad.shape[0]  # diff is ours alone and not needed again: scale it in place
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o}, the Hessian of J in o (diag(w)/n, I/n unweighted) applied to R{o}."""
        return (r_o if self.w is None else r_o * self.w) / r_o.shape[0]

    # ∂J/∂o depends on θ only through o, so R{∂J/∂o} = H_L·R{o}.
    rbackward = output_hvp


class CrossEntropyLoss(_Weighted):
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
        self.w = w = self._weights(y, o.dtype)
        # J⁽ʲ⁾ = log s − (o_y − m), summed in float64 so float32 training reports a steady loss
        if w is None:
            total = np.log(s, dtype=np.float64).sum() - shifted_y.sum(dtype=np.float64)
        else:
            per_row = np.log(s[:, 0], dtype=np.float64) - shifted_y.astype(np.float64)
            total = np.dot(w[:, 0].astype(np.float64), per_row)
        return float(total) / o.shape[0]

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o = scale·(p − onehot(y))/n, computed in o's own memory."""
        if not _is_labels(y):
            raise ValueError("cross_entropy needs integer class indices as targets")
        n = o.shape[0]
        if n == 1 and self.class_weight is None:
            return self._one_row(o, int(y[0]), scale)
        rows = self._rows.get(n)
        if rows is None:
            rows = self._rows[n] = np.arange(n)
        o -= o.max(axis=1, keepdims=True)  # shifted logits: the largest is 0
        shifted_y = o[rows, y]
        np.exp(o, out=o)
        s = o.sum(axis=1, keepdims=True)
        w = self._weights(y, o.dtype)
        if w is None:
            total = np.log(s, dtype=np.float64).sum() - shifted_y.sum(dtype=np.float64)
        else:
            per_row = np.log(s[:, 0], dtype=np.float64) - shifted_y.astype(np.float64)
            total = np.dot(w[:, 0].astype(np.float64), per_row)
        np.divide(scale / n, s, out=s)  # o ⊙ s/(n Σ) is s·p/n: one multiply instead of two
        o *= s
        o[rows, y] -= scale / n
        if w is not None:
            o *= w
        return float(total) / n, o

    @staticmethod
    def _one_row(o: np.ndarray, j: int, scale: float) -> tuple[float, np.ndarray]:
        """``value_and_grad`` for per-example SGD, the very same numbers from Python scalars:
        at one row each NumPy reduction costs more than the arithmetic it does."""
        row, t = o[0], o.dtype.type
        row -= row.max()
        shifted = float(row[j])
        np.exp(row, out=row)
        s = row.sum()
        row *= t(scale) / s
        row[j] -= scale
        return math.log(s) - shifted, o

    def backward(self) -> np.ndarray:
        grad = self.p.copy()  # p stays intact for rbackward
        grad[self.rows, self.y] -= 1
        if self.w is not None:
            grad *= self.w
        grad /= grad.shape[0]
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o} = w ⊙ p ⊙ (R{o} − ⟨p, R{o}⟩)/n: the Hessian of J in o, w(diag(p) − ppᵀ)/n per
        row, the softmax Jacobian, applied to R{o}. Positive semi-definite."""
        p = self.p
        inner = np.einsum("ij,ij->i", p, r_o)[:, None]
        r = p * (r_o - inner)
        if self.w is not None:
            r *= self.w
        return r / r_o.shape[0]

    # ∂J/∂o depends on θ only through o, so R{∂J/∂o} = H_L·R{o}.
    rbackward = output_hvp


LOSSES: Registry[type] = Registry("loss")
LOSSES.register(SquareLoss.name, SquareLoss)
LOSSES.register(CrossEntropyLoss.name, CrossEntropyLoss)


def get_loss(name: str, class_weight=None):
    """A fresh loss object (it keeps per-batch state) of the registered class ``name``;
    ``class_weight``: one loss weight per class index, or None."""
    loss = LOSSES.lookup(name)()
    if class_weight is not None:
        loss.class_weight = np.asarray(class_weight, dtype=np.float64)
    return loss
