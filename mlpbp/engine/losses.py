"""Losses J = (1/n) Σⱼ J⁽ʲ⁾ over a batch of n rows, computed from the network's output o.

With class weights c (one per class), J = (1/n) Σⱼ c_{yⱼ} J⁽ʲ⁾: each example's loss scaled by
its class's weight, divided by the batch size as Keras' ``class_weight`` does (scikit-learn's
"balanced" weights average 1 over the training rows, so the loss keeps its scale). With per-row
weights s (``weight=``, a survey weight or scikit-learn's ``sample_weight``) J is their weighted
mean, J = Σⱼ sⱼ c_{yⱼ} J⁽ʲ⁾ / Σⱼ sⱼ: a row of weight 2 counts as that row twice, exactly. A
batch whose weights sum to 0 has J = 0 and ∂J/∂o = 0.

Like a layer, a loss keeps in ``forward`` what ``backward`` (∂J/∂o), ``output_hvp`` (its
Hessian in o applied to a vector, for Gauss-Newton products) and ``rbackward`` (R{∂J/∂o}, for
Hessian-vector products) need. ``value_and_grad`` is the training step's version: J and
s·∂J/∂o in a handful of calls, written over o itself (s = −α for a fused SGD step), keeping
nothing for ``rbackward``.

Besides ``square`` and ``cross_entropy`` (softmax), the elementwise losses J⁽ʲ⁾ = Σₖ ℓ(oₖ, yₖ),
whose Hessian in o is diagonal: ``binary_cross_entropy`` (an independent sigmoid per output,
from logits), ``poisson`` (log link: o = log μ), ``huber`` (``delta``), ``absolute`` and
``quantile`` (pinball, ``alpha``); the last two are piecewise linear, so their Hessian in o is
zero almost everywhere (``curvature_free``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import xlogy

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
    """Per-example weights: the class of each row's (``class_weight``) times the row's own
    (``weight``), and what the weighted sum is divided by (Σ weight, or the row count)."""

    class_weight: np.ndarray | None = None
    #: True where the Hessian of J in o is zero almost everywhere (piecewise-linear losses).
    curvature_free = False

    def _weights(self, y: np.ndarray, dtype, weight=None) -> tuple[np.ndarray | None, float]:
        n = y.shape[0]
        w = None
        if self.class_weight is not None and _is_labels(y):
            w = self.class_weight.astype(dtype, copy=False)[y][:, None]
        if weight is None:
            return w, float(n)
        s = np.asarray(weight, dtype=dtype).reshape(n, 1)
        total = float(s.sum(dtype=np.float64))
        return (s if w is None else s * w), (total if total > 0 else 1.0)

    @staticmethod
    def example_targets(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        """Random targets of the kind this loss takes, for gradient checks: (n, k) reals."""
        return rng.standard_normal((n, k))


class SquareLoss(_Weighted):
    """J⁽ʲ⁾ = ½‖y⁽ʲ⁾ − o⁽ʲ⁾‖²;  ∂J/∂o = (o − y)/n (times each row's weight, if any).

    Integer y (class indices) is compared against one-hot targets."""

    name = "square"

    def forward(self, o: np.ndarray, y: np.ndarray, weight=None) -> float:
        if _is_labels(y):
            t = one_hot(y, o.shape[1], o.dtype)
        else:
            t = y.reshape(o.shape) if y.ndim == 1 else y
        self.diff = diff = o - t
        self.w, self.n = w, n = self._weights(y, o.dtype, weight)
        if w is None:
            return 0.5 * float(np.vdot(diff, diff)) / n
        return 0.5 * float(np.dot(w[:, 0], np.einsum("ij,ij->i", diff, diff))) / n

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0, weight=None) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o = scale·(o − y)/n, computed in o's own memory."""
        w, n = self._weights(y, o.dtype, weight)
        if _is_labels(y):
            o[np.arange(o.shape[0]), y] -= 1
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
        grad /= self.n  # diff is ours alone and not needed again: scale it in place
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o}, the Hessian of J in o (diag(w)/n, I/n unweighted) applied to R{o}."""
        return (r_o if self.w is None else r_o * self.w) / self.n

    # ∂J/∂o depends on θ only through o, so R{∂J/∂o} = H_L·R{o}.
    rbackward = output_hvp


class CrossEntropyLoss(_Weighted):
    """Softmax cross-entropy from logits: J⁽ʲ⁾ = log Σₖ e^{oₖ} − o_y;  ∂J/∂o = (p − onehot(y))/n.

    log-sum-exp subtracts the row maximum first, so large logits cannot overflow."""

    name = "cross_entropy"

    def __init__(self) -> None:
        self._rows: dict[int, np.ndarray] = {}  # np.arange(n) per batch size, made once

    def forward(self, o: np.ndarray, y: np.ndarray, weight=None) -> float:
        if not _is_labels(y):
            raise ValueError("cross_entropy needs integer class indices as targets")
        self.y, self.rows = y, np.arange(o.shape[0])
        p = o - o.max(axis=1, keepdims=True)  # shifted logits: the largest is 0
        shifted_y = p[self.rows, y]  # o_y − m
        np.exp(p, out=p)
        s = p.sum(axis=1, keepdims=True)
        p /= s
        self.p = p
        self.w, self.n = w, n = self._weights(y, o.dtype, weight)
        # J⁽ʲ⁾ = log s − (o_y − m), summed in float64 so float32 training reports a steady loss
        if w is None:
            total = np.log(s, dtype=np.float64).sum() - shifted_y.sum(dtype=np.float64)
        else:
            per_row = np.log(s[:, 0], dtype=np.float64) - shifted_y.astype(np.float64)
            total = np.dot(w[:, 0].astype(np.float64), per_row)
        return float(total) / n

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0, weight=None) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o = scale·(p − onehot(y))/n, computed in o's own memory."""
        if not _is_labels(y):
            raise ValueError("cross_entropy needs integer class indices as targets")
        rows_n = o.shape[0]
        if rows_n == 1 and self.class_weight is None and weight is None:
            return self._one_row(o, int(y[0]), scale)
        rows = self._rows.get(rows_n)
        if rows is None:
            rows = self._rows[rows_n] = np.arange(rows_n)
        o -= o.max(axis=1, keepdims=True)  # shifted logits: the largest is 0
        shifted_y = o[rows, y]
        np.exp(o, out=o)
        s = o.sum(axis=1, keepdims=True)
        w, n = self._weights(y, o.dtype, weight)
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
        grad /= self.n
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o} = w ⊙ p ⊙ (R{o} − ⟨p, R{o}⟩)/n: the Hessian of J in o, w(diag(p) − ppᵀ)/n per
        row, the softmax Jacobian, applied to R{o}. Positive semi-definite."""
        p = self.p
        inner = np.einsum("ij,ij->i", p, r_o)[:, None]
        r = p * (r_o - inner)
        if self.w is not None:
            r *= self.w
        return r / self.n

    # ∂J/∂o depends on θ only through o, so R{∂J/∂o} = H_L·R{o}.
    rbackward = output_hvp

    @staticmethod
    def example_targets(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
        return rng.integers(0, k, size=n)


class _Elementwise(_Weighted):
    """A loss that acts on each output on its own: J⁽ʲ⁾ = Σₖ ℓ(oₖ, tₖ). So ∂J/∂oₖ = wⱼ ℓ'(oₖ)/n
    and the Hessian of J in o is diagonal, wⱼ ℓ''(oₖ)/n: ``output_hvp`` and ``rbackward`` (∂J/∂o
    depends on θ only through o) multiply R{o} by it. A subclass gives ℓ, ℓ' and ℓ'' as
    ``_value``, ``_d`` and ``_d2`` of (o, t), each a new array (ℓ summed in float64)."""

    def _target(self, o: np.ndarray, y: np.ndarray) -> np.ndarray:
        if _is_labels(y):  # class indices: one 0/1 column each (one column: the label itself)
            t = y.reshape(-1, 1) if o.shape[1] == 1 else one_hot(y, o.shape[1], np.int8)
            return t.astype(o.dtype)
        return y.reshape(o.shape) if y.ndim == 1 else y

    def _check(self, t: np.ndarray) -> None:
        """Refuse targets the loss is not defined for (ValueError)."""

    def _total(self, o, t, w, n) -> float:
        per = self._value(o, t)
        if w is None:
            return float(per.sum(dtype=np.float64)) / n
        return float(np.dot(w[:, 0].astype(np.float64), per.sum(axis=1, dtype=np.float64))) / n

    def forward(self, o: np.ndarray, y: np.ndarray, weight=None) -> float:
        t = self._target(o, y)
        self._check(t)
        self.w, self.n = w, n = self._weights(y, o.dtype, weight)
        self.o, self.t = o.copy(), t  # o is a layer's buffer, rewritten by the next pass
        return self._total(o, t, w, n)

    def value_and_grad(self, o: np.ndarray, y: np.ndarray, scale: float = 1.0, weight=None) -> tuple[float, np.ndarray]:
        """J and scale·∂J/∂o, written over o."""
        t = self._target(o, y)
        self._check(t)
        w, n = self._weights(y, o.dtype, weight)
        value = self._total(o, t, w, n)
        o[...] = self._d(o, t)
        if w is not None:
            o *= w
        o *= scale / n
        return value, o

    def backward(self) -> np.ndarray:
        grad = self._d(self.o, self.t)
        if self.w is not None:
            grad *= self.w
        grad /= self.n
        return grad

    def output_hvp(self, r_o: np.ndarray) -> np.ndarray:
        """H_L·R{o} = w ⊙ ℓ''(o) ⊙ R{o}/n: the loss's diagonal Hessian in o applied to R{o}."""
        r = self._d2(self.o, self.t) * r_o
        if self.w is not None:
            r *= self.w
        return r / self.n

    rbackward = output_hvp


def _sigmoid(o: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * o))  # no overflow for any o


class BinaryCrossEntropyLoss(_Elementwise):
    """Independent sigmoids, from logits: ℓ = log(1 + e^o) − t·o for a 0/1 target t, computed as
    max(o, 0) − t·o + log(1 + e^−|o|) so no exponential overflows; ℓ' = s(o) − t, ℓ'' = s(1 − s).
    One output per label: binary (one output) or multi-label classification."""

    name = "binary_cross_entropy"

    def _check(self, t):
        if not np.all((t == 0) | (t == 1)):
            raise ValueError("binary_cross_entropy needs 0/1 targets (one column per label)")

    def _value(self, o, t):
        o64 = o.astype(np.float64)
        return np.maximum(o64, 0) - t * o64 + np.log1p(np.exp(-np.abs(o64)))

    def _d(self, o, t):
        return _sigmoid(o) - t

    def _d2(self, o, t):
        s = _sigmoid(o)
        return s * (1 - s)

    @staticmethod
    def example_targets(rng, n, k):
        return rng.integers(0, 2, size=(n, k)).astype(np.float64)


class PoissonLoss(_Elementwise):
    """Poisson deviance with a log link, o = log μ: ℓ = e^o − t·o + t log t − t (half the unit
    deviance; 0 when μ = t), ℓ' = e^o − t, ℓ'' = e^o. Targets are counts (any t ≥ 0); the
    prediction is μ = e^o."""

    name = "poisson"

    def _check(self, t):
        if t.size and not float(t.min()) >= 0:
            raise ValueError("poisson needs non-negative targets (counts)")

    def _value(self, o, t):
        t64 = t.astype(np.float64)
        return np.exp(o.astype(np.float64)) - t64 * o + xlogy(t64, t64) - t64

    def _d(self, o, t):
        return np.exp(o) - t

    def _d2(self, o, t):
        return np.exp(o)

    @staticmethod
    def example_targets(rng, n, k):
        return rng.poisson(2.0, size=(n, k)).astype(np.float64)


class HuberLoss(_Elementwise):
    """Huber with threshold δ = ``delta``, r = o − t: ℓ = r²/2 where |r| ≤ δ, else δ(|r| − δ/2)
    (PyTorch's ``HuberLoss``); ℓ' = clip(r, −δ, δ); ℓ'' = 1 where |r| < δ, else 0."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
            raise ValueError(f"huber's delta must be a number > 0; got {delta!r}")
        self.delta = float(delta)

    def _value(self, o, t):
        a = np.abs(o.astype(np.float64) - t)
        d = self.delta
        return np.where(a <= d, 0.5 * a * a, d * (a - 0.5 * d))

    def _d(self, o, t):
        return np.clip(o - t, -self.delta, self.delta)

    def _d2(self, o, t):
        return (np.abs(o - t) < self.delta).astype(o.dtype)


class AbsoluteLoss(_Elementwise):
    """Absolute error (MAE), ℓ = |o − t|; ℓ' = sign(o − t); ℓ'' = 0 wherever it exists (at
    o = t it does not): the Hessian is zero almost everywhere."""

    name = "absolute"
    curvature_free = True

    def _value(self, o, t):
        return np.abs(o.astype(np.float64) - t)

    def _d(self, o, t):
        return np.sign(o - t)

    def _d2(self, o, t):
        return np.zeros_like(o)


class QuantileLoss(_Elementwise):
    """Pinball loss of quantile α = ``alpha``, r = t − o: ℓ = α·r for r ≥ 0, (α − 1)·r for
    r < 0 (α = 0.5 is half the absolute error); ℓ' = −α where t > o, 1 − α where t < o;
    ℓ'' = 0 almost everywhere. Its minimiser is the α-quantile of t."""

    name = "quantile"
    curvature_free = True

    def __init__(self, alpha: float = 0.5) -> None:
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise ValueError(f"quantile's alpha must be a number in (0, 1); got {alpha!r}")
        self.alpha = float(alpha)

    def _value(self, o, t):
        r = t - o.astype(np.float64)
        return np.maximum(self.alpha * r, (self.alpha - 1) * r)

    def _d(self, o, t):
        return np.where(t > o, -self.alpha, 1 - self.alpha).astype(o.dtype)

    def _d2(self, o, t):
        return np.zeros_like(o)


LOSSES: Registry[type] = Registry("loss")
#: Losses whose targets are classes (a network trained with one is a classifier by default).
CLASSIFICATION_LOSSES = {"cross_entropy", "binary_cross_entropy"}
for _cls in (SquareLoss, CrossEntropyLoss, BinaryCrossEntropyLoss, PoissonLoss, HuberLoss, AbsoluteLoss, QuantileLoss):
    LOSSES.register(_cls.name, _cls)


def get_loss(name: str, class_weight=None, **params):
    """A fresh loss object (it keeps per-batch state) of the registered class ``name``;
    ``class_weight``: one loss weight per class index, or None; ``params``: the loss's own
    settings (huber's ``delta``, quantile's ``alpha``)."""
    loss = LOSSES.lookup(name)(**params)
    if class_weight is not None:
        loss.class_weight = np.asarray(class_weight, dtype=np.float64)
    return loss
