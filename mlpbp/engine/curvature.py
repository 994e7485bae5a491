"""Curvature of the loss over a whole data set, and what is read from it without forming it.

``Curvature`` turns a network and a table into the objective J(θ) = mean over all rows (plus
½·weight_decay·‖θ‖²), its gradient, and products with its Hessian or Gauss-Newton matrix,
each computed batch by batch and weighted by the batch's share of the rows, so no answer
depends on the batch size. It counts the work done in full-data passes, and is a
``scipy.sparse.linalg.LinearOperator`` for any solver that takes one.

From products alone: extreme eigenvalues by implicitly restarted Lanczos (ARPACK, a fixed
handful of vectors however many steps), the trace by Hutchinson / Hutch++ with Rademacher
probes, and the spectral density by stochastic Lanczos quadrature with full
reorthogonalisation (Ubaru, Chen & Saad 2017; as in PyHessian, Yao et al. 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from mlpbp.engine.network import MLP

CURVATURES = ("hessian", "gauss_newton")


@dataclass
class Work:
    """Work done, in full-data passes: a gradient (or loss) over every row counts 1."""

    gradients: float = 0.0
    products: float = 0.0


class Curvature(LinearOperator):
    """J, ∇J and curvature products of ``net`` over all rows of (X, y), ``batch_size`` rows at a
    time (None: all at once). ``kind`` is "hessian" (∇²J, by the R-operator) or
    "gauss_newton" (Jᵀ H_L J, positive semi-definite). Products count in ``work.products``,
    gradients and losses in ``work.gradients``, as full-data passes. Vectors are flat, in the
    order of ``net.params``; the network's parameters are read where they stand."""

    def __init__(
        self,
        net: MLP,
        X: np.ndarray,
        y: np.ndarray,
        kind: str = "hessian",
        batch_size: int | None = None,
        weight_decay: float = 0.0,
        reduce=None,
        total_rows: int | None = None,
        sample_weight: np.ndarray | None = None,
        total_weight: float | None = None,
    ) -> None:
        if kind not in CURVATURES:
            raise ValueError(f"unknown curvature {kind!r}; allowed: {', '.join(CURVATURES)}")
        # Data-parallel (MPI): (X, y) is this process's share of ``total_rows`` rows, and
        # ``reduce(vector)`` sums a vector over the processes in place, so every process gets
        # the same J, ∇J and products as one process holding every row.
        self.reduce, self.total = reduce, X.shape[0] if total_rows is None else int(total_rows)
        if self.total == 0:
            raise ValueError("curvature needs at least one row")
        self.net, self.X, self.y, self.kind = net, X, y, kind
        self.weight_decay = float(weight_decay)
        n = X.shape[0]
        step = max(n, 1) if batch_size is None else max(1, int(batch_size))
        self.batches = [slice(i, min(i + step, n)) for i in range(0, n, step)]
        # batch_norm over every process's rows (``net.whole_batch``): each pass is a collective,
        # so a process with no rows still runs one, on none
        self.whole = getattr(net, "whole_batch", None)
        if self.whole is not None and not self.batches:
            self.batches = [slice(0, 0)]
        # Per-row weights (data.weight): J is the weighted mean over all rows, each batch
        # counting by its weight; ``total_weight``, that of every process's rows (default: ours).
        self.w = None if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
        if self.w is not None:
            if self.w.shape[0] != n:
                raise ValueError(f"sample_weight needs one weight per row ({n}); got {self.w.shape[0]}")
            total = float(self.w.sum()) if total_weight is None else float(total_weight)
            self.total_weight = total if total > 0 else 1.0
        self.work = Work()
        super().__init__(np.dtype(np.float64), (net.n_params, net.n_params))

    @property
    def rows(self) -> int:
        return self.total

    def _summed(self, local: np.ndarray) -> np.ndarray:
        if self.reduce is not None:
            self.reduce(local)
        return local

    def _share(self, b: slice) -> float:
        """The batch's part of J: its loss's denominator (rows, or weights: 1 when they are 0,
        as the loss takes it) over all rows'. Also the scale batch_norm's whole-batch gradient
        sums take (``WholeBatch.scale``)."""
        if self.w is not None:
            mass = float(self.w[b].sum())
            share = (mass if mass > 0 else 1.0) / self.total_weight
        else:
            share = max(b.stop - b.start, 1) / self.rows
        if self.whole is not None:
            self.whole.scale = share
        return share

    def _weight(self, b: slice) -> np.ndarray | None:
        return None if self.w is None else self.w[b]

    def loss(self, theta: np.ndarray | None = None) -> float:
        if theta is not None:
            self.net.set_flat(theta)
        total = sum(self._share(b) * self.net.loss(self.X[b], self.y[b], self._weight(b)) for b in self.batches)
        self.work.gradients += 1
        return float(self._summed(np.array([total], np.float64))[0]) + self._decay_value()

    def loss_and_grad(self, theta: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """J and ∇J (float64) at ``theta`` (set into the network), or where the network stands."""
        if theta is not None:
            self.net.set_flat(theta)
        both = np.zeros(self.net.n_params + 1)  # ∇J and J, summed over the processes at once
        grad = both[:-1]
        for b in self.batches:
            share = self._share(b)  # before the pass: batch_norm's gradient sums take it
            value, g = self.net.flat_grad(self.X[b], self.y[b], self._weight(b))
            both[-1] += share * value
            grad += share * g
        self._summed(both)
        total = float(both[-1])
        self.work.gradients += 1
        if self.weight_decay:
            grad += self.weight_decay * self.net.get_flat()
        return total + self._decay_value(), grad

    def _decay_value(self) -> float:
        if not self.weight_decay:
            return 0.0
        theta = self.net.get_flat().astype(np.float64)
        return 0.5 * self.weight_decay * float(theta @ theta)

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float64).reshape(-1)
        product = self.net.flat_hvp if self.kind == "hessian" else self.net.flat_gnvp
        out = None
        for b in self.batches:
            # each batch's product is a new vector: scaled in place, and the first one is the
            # sum (no zeros and no scaled copy beside it: 2 vectors of n fewer at the peak)
            share = self._share(b)
            part = np.asarray(product(self.X[b], self.y[b], v, self._weight(b)), np.float64)
            part *= share
            if out is None:
                out = part
            else:
                out += part
        if out is None:  # no rows here (an MPI rank's share can be empty): the sum still takes part
            out = np.zeros(self.net.n_params)
        self._summed(out)
        self.work.products += 1
        if self.weight_decay:
            out += self.weight_decay * v
        return out

    def _rmatvec(self, v: np.ndarray) -> np.ndarray:  # symmetric
        return self._matvec(v)


# ---- Lanczos ---------------------------------------------------------------------------------


@dataclass
class Lanczos:
    """m steps of Lanczos on a symmetric operator A from q₁ = v/‖v‖: the tridiagonal
    T = QᵀAQ (``alpha`` on its diagonal, ``beta`` beside it) and the basis Q (rows)."""

    alpha: np.ndarray
    beta: np.ndarray
    Q: np.ndarray
    residual: float  # β_{m}: ‖A qₘ − αₘqₘ − βₘ₋₁qₘ₋₁‖, zero when the Krylov space is invariant

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and eigenvectors of T (columns)."""
        if self.alpha.size == 1:
            return self.alpha.copy(), np.ones((1, 1))
        return eigh_tridiagonal(self.alpha, self.beta)


def lanczos(
    matvec,
    v0: np.ndarray,
    steps: int,
    converged=None,
) -> Lanczos:
    """Lanczos with full reorthogonalisation (twice, classical Gram-Schmidt against every basis
    vector so far): in floating point, plain three-term Lanczos loses orthogonality as Ritz
    values converge and then reports ghost copies of them, which would corrupt both the
    eigenvalues and the quadrature weights. ``converged(run)`` is asked after each step and
    stops early when it returns True."""
    n = v0.size
    steps = min(steps, n)
    Q = np.zeros((steps, n))
    alpha, beta = np.zeros(steps), np.zeros(steps)
    Q[0] = v0 / np.linalg.norm(v0)
    residual = 0.0
    for j in range(steps):
        w = matvec(Q[j])
        alpha[j] = Q[j] @ w
        for _ in range(2):
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        residual = float(np.linalg.norm(w))
        run = Lanczos(alpha[: j + 1], beta[:j], Q[: j + 1], residual)
        if j + 1 == steps or residual <= 1e-12 * max(1.0, np.abs(alpha[: j + 1]).max()):
            return run  # the whole space, or an invariant subspace: T's eigenvalues are exact
        if converged is not None and converged(run):
            return run
        beta[j] = residual
        Q[j + 1] = w / residual
    return run  # pragma: no cover - the loop always returns


@dataclass
class Extremes:
    """Extreme eigenvalues and how well they converged."""

    top: list[float]
    bottom: list[float]
    steps: int  # products used
    residuals: list[float] = field(default_factory=list)  # ‖A x − θx‖/max|θ| for each value
    # Why fewer values than asked for: None when every value asked for is there.
    shortfall: str | None = None


def krylov_vectors(k: int) -> int:
    """The Lanczos vectors ``extreme_eigenvalues`` keeps for the ``k`` largest eigenvalues
    (ARPACK's ncv): its memory is this many float64 vectors of n. SciPy's default is
    max(2k + 1, 20); 10 halves the basis of a 4M-parameter network (635 to 318 MB) for about
    the same products: 18-41 against 21-38 for the top two of four networks' Hessians and
    Gauss-Newton matrices (benchmarks/README.md, "`mlpbp hessian` memory, after the cuts")."""
    return max(2 * k + 1, 10)


# ARPACK's basis when the search for copies of a repeated value finds one value on the deflated
# operator. Beside it lie the k vectors found and their orthonormal basis, so with 6 the search
# holds no more vectors than the first run's krylov_vectors(k) + k (for k = 2: 14 against 15),
# and the top pair of a 4M-parameter model fits under 1.5 GB as it did before the search.
COPY_VECTORS = 6


def dense_limit(k: int) -> int:
    """The largest operator ``extreme_eigenvalues`` forms and diagonalises densely for ``k``
    eigenvalues at an end: n products, about what two or three ARPACK cycles of SciPy's
    default 20 vectors cost."""
    return 3 * max(2 * k + 1, 20)


def extreme_eigenvalues(
    matvec,
    n: int,
    top_k: int = 1,
    bottom_k: int = 0,
    tol: float = 1e-6,
    max_steps: int = 300,
    seed: int = 0,
    psd: bool = False,
) -> Extremes:
    """The ``top_k`` largest and ``bottom_k`` smallest eigenvalues of a symmetric n×n operator
    (``psd``: one known to be positive semi-definite, as a Gauss-Newton matrix is).

    The largest by implicitly restarted Lanczos (ARPACK through ``scipy.sparse.linalg.eigsh``),
    keeping ``krylov_vectors(k)`` vectors whatever the number of steps; ARPACK stops when each
    Ritz value's residual is at most ``tol`` times its size. The smallest by ``_bottom``: Lanczos
    that is never restarted and keeps no basis (a handful of vectors), then a second pass for
    the Ritz vectors. A restart throws away what a Krylov space knew about a cluster, and the
    smallest end of a Gauss-Newton matrix is one: a large null space (eigenvalue 0) with many
    eigenvalues just above it. On one with 800 of 1,573 eigenvalues nonzero, from 1.3e-6 up to
    1.09, ARPACK (20 vectors) had not converged on the smallest after 3,000 products, on σI − G
    as well (the Krylov space is the same); Lanczos met the same test in 153 steps.

    The residuals reported are measured, ‖Ax − θx‖ relative to the largest |θ| found (about
    ‖A‖), one product per eigenvalue: each bounds the distance from θ to an eigenvalue. For the
    smallest values of a ``psd`` operator the bound is θ itself where that is smaller: θ is a
    Rayleigh-Ritz value, so the eigenvalue it stands for lies in [0, θ]. ``max_steps`` bounds
    the products of each end (about: ARPACK restarts whole cycles, and the smallest end's second
    pass repeats its steps); what has not converged within it is left out, and ``shortfall``
    says so.

    For k ≥ 2 at an end, ``_with_copies`` then searches the operator deflated by the values
    found, so that a repeated eigenvalue is listed as often as it occurs among the k; a search
    that does not settle is a ``shortfall`` too.

    An operator of at most ``dense_limit`` dimensions is formed from n products and
    diagonalised densely: exact, for about the products of two or three ARPACK cycles. One of at
    most ``DENSE_FALLBACK`` is formed too once the iterative search has used n products."""
    if top_k + bottom_k < 1:
        raise ValueError("ask for at least one eigenvalue")
    if max(top_k, bottom_k) > n:
        raise ValueError(f"cannot ask for {max(top_k, bottom_k)} eigenvalues of a {n}×{n} matrix")
    products = 0
    cap = n if n <= DENSE_FALLBACK else None  # past n products, the dense matrix is cheaper

    def counted(v: np.ndarray) -> np.ndarray:
        nonlocal products
        if cap is not None and products >= cap:
            raise _DenseIsCheaper
        products += 1
        return np.asarray(matvec(v), np.float64).reshape(-1)

    def dense_ends():
        theta, vectors = np.linalg.eigh(np.column_stack([counted(e) for e in np.eye(n)]))
        return (theta[::-1][:top_k], vectors[:, ::-1][:, :top_k]), (theta[:bottom_k], vectors[:, :bottom_k]), False

    if n <= dense_limit(max(top_k, bottom_k)):
        cap = None
        top, bottom, unchecked = dense_ends()
    else:
        try:
            top, bottom, unchecked = _iterative_ends(counted, n, top_k, bottom_k, tol, max_steps, seed, psd)
            cap = None  # the residuals below are measured whatever they cost
        except _DenseIsCheaper:
            cap = None
            top, bottom, unchecked = dense_ends()
    values = np.concatenate([top[0], bottom[0]])
    found = np.isfinite(values)
    scale = max(float(np.abs(values[found]).max()) if found.any() else 0.0, 1e-300)
    if len(top) == 3:  # measured by _with_copies
        errors = [float(e) for t, e in zip(top[0], top[2]) if np.isfinite(t)]
    else:
        errors = [float(np.linalg.norm(counted(x) - t * x)) for t, x in zip(top[0], top[1].T) if np.isfinite(t)]
    if len(bottom) == 3:  # measured by _bottom or _with_copies
        errors += [float(e) for t, e in zip(bottom[0], bottom[2]) if np.isfinite(t)]
    else:
        errors += [float(np.linalg.norm(counted(x) - t * x)) for t, x in zip(bottom[0], bottom[1].T) if np.isfinite(t)]
    residuals = [e / scale for e in errors]
    missing = int((~found).sum())
    shortfall = None
    if missing:
        shortfall = f"{missing} of the values asked for did not converge in about {max_steps} steps; raise max_steps"
    elif unchecked:
        shortfall = (
            f"the search for further copies of a repeated eigenvalue did not converge in about {max_steps}"
            " steps, so one may be listed fewer times than it occurs; raise max_steps"
        )
    return Extremes(
        top=[float(t) for t in top[0] if np.isfinite(t)],
        bottom=[float(t) for t in bottom[0] if np.isfinite(t)],
        steps=products,
        residuals=residuals,
        shortfall=shortfall,
    )


class _DenseIsCheaper(Exception):
    """Raised by ``extreme_eigenvalues``'s product counter once the iterative search has used n
    products of an operator small enough to form."""


# Parameters up to which ``extreme_eigenvalues`` forms the operator densely (n products, n²
# float64: 32 MB) once Lanczos and the search for repeated values have used n products: a small
# model with a large null space and --bottom-k 7 took 339 products of its 123 parameters.
DENSE_FALLBACK = 2000


def _iterative_ends(counted, n, top_k, bottom_k, tol, max_steps, seed, psd):
    """Both ends by ARPACK and Lanczos, each with its search for copies of repeated values."""
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(n)

    def top_end(mv, start, k=top_k):
        ncv = krylov_vectors(k) if k == top_k else COPY_VECTORS
        return _arpack(LinearOperator((n, n), matvec=mv, dtype=np.float64), k, "LA", tol, max_steps, start, ncv)

    top, unchecked_top = _with_copies(top_end, counted, n, top_k, +1, tol, max_steps, v0, rng, psd=False)
    known = float(np.abs(top[0][np.isfinite(top[0])]).max(initial=0.0))

    def bottom_end(mv, start, k=bottom_k):
        return _bottom(mv, n, k, tol, max_steps, start, known, psd)

    bottom, unchecked_bottom = _with_copies(bottom_end, counted, n, bottom_k, -1, tol, max_steps, v0, rng, psd)
    unchecked = unchecked_top or unchecked_bottom
    return top, bottom, unchecked


def _with_copies(solve, matvec, n: int, k: int, sign: int, tol: float, steps: int, v0, rng, psd: bool):
    """The ``k`` most extreme eigenpairs at one end (``sign`` +1: the largest, -1: the
    smallest), each eigenvalue as many times as it occurs among them.

    A Krylov space grown from one vector holds one direction of each eigenspace, so Lanczos
    (``_bottom``) finds a multiple eigenvalue once, and ARPACK's restarts find its copies only
    by chance (a 5-fold largest eigenvalue came back 4 times among the top 6). So once ``solve``
    has ``k`` values, it runs again on the operator deflated by their vectors X (orthonormal):
    (I − XXᵀ)A(I − XXᵀ) + σXXᵀ, with σ beyond the k-th value on the far side, from a start
    orthogonal to X. Its eigenvalues are A's with X's moved out of the way (Cauchy interlacing:
    none is more extreme than A's). A plain Lanczos run that keeps no basis (``_beyond``) asks
    whether it has one beyond the k-th by more than ``tol`` of the operator's size; if so, that
    is a copy, or a value, that the first run missed: ``solve`` finds it with its vector, it
    joins, and the search repeats. Most searches find nothing, and that answer costs a fraction
    of a run. For a single value (k = 1), or the smallest of a PSD operator once the k-th is 0,
    none is needed. The final values are then a Rayleigh-Ritz step over the vectors found (k
    products), their residuals measured on A itself. Returns (``solve``'s own answer, or values,
    vectors and residual norms; whether a search did not settle within ``steps``, so that a
    multiple eigenvalue may be listed fewer times than it occurs)."""
    first = solve(matvec, v0)
    theta, X = first[0], first[1]
    if k < 2 or not np.isfinite(theta).all():
        return first, False
    merged = False
    for _ in range(k):  # each round that goes on adds one value
        basis, _r = np.linalg.qr(X)
        kth = float(theta[k - 1])
        size = max(float(np.abs(theta).max()), 1e-300)
        sigma = kth - sign * (abs(kth) + size)

        def deflated(v, basis=basis, sigma=sigma):
            c = basis.T @ v
            w = matvec(v - basis @ c)
            return w - basis @ (basis.T @ w) + sigma * (basis @ c)

        start = rng.standard_normal(n)
        start -= basis @ (basis.T @ start)
        margin = tol * size
        if psd and sign < 0 and kth <= margin:
            break  # nothing of a PSD operator lies below 0 by more than the margin
        beyond = _beyond(lambda v: sign * deflated(v), n, start, sign * kth + margin, margin, steps)
        if beyond is None:  # the deflated run did not settle: further copies unchecked
            return (_rayleigh_ritz(matvec, X, sign, psd) if merged else first), True
        if not beyond:
            break
        t2, X2 = solve(deflated, start, 1)[:2]  # the value beyond the k-th, with its vector
        if not np.isfinite(t2[0]) or sign * (t2[0] - kth) <= margin:
            return (_rayleigh_ritz(matvec, X, sign, psd) if merged else first), True
        theta, X = _keep_most_extreme(theta, X, t2[0], X2[:, 0], sign, k)
        # the first run's vectors and this round's are held by nothing else: dropped before the
        # next round's solve, which would otherwise keep them beside its own basis
        first = t2 = X2 = None
        merged = True
    return (_rayleigh_ritz(matvec, X, sign, psd) if merged else first), False


def _keep_most_extreme(theta, X, value: float, vector, sign: int, k: int):
    """The ``k`` most extreme of the values ``theta`` and ``value``, with their vectors."""
    values, vectors = np.append(theta, value), np.column_stack([X, vector])
    order = np.argsort(-sign * values, kind="stable")[:k]
    return values[order], vectors[:, order]


def _lanczos_step(matvec, q: np.ndarray, q_prev: np.ndarray, b_prev: float) -> tuple[np.ndarray, float, float]:
    """One step of the three-term recurrence without a basis: w = Aq − αq − βq_prev with
    α = qᵀAq, and β' = ‖w‖ (the next q is w / β')."""
    w = matvec(q)
    a = float(q @ w)
    w -= a * q
    w -= b_prev * q_prev
    return w, a, float(np.linalg.norm(w))


def _beyond(matvec, n: int, v0: np.ndarray, threshold: float, bound: float, steps: int) -> bool | None:
    """Whether ``sign``·A (``matvec`` already carries the sign) has an eigenvalue above
    ``threshold``, by plain Lanczos from ``v0`` that keeps no basis and forms no Ritz vector: its
    largest Ritz value only grows towards the largest eigenvalue, so True as soon as it passes
    the threshold, False once it has settled below it (its residual bound βₘ·|sₘ| at most
    ``bound`` or a quarter of its distance to the threshold, after 10 steps at least), None if neither within ``steps``
    products. A cheap no: most searches for a copy find
    none, and this costs a fraction of the products that finding a value and its vector does."""
    alpha, beta = [], []
    q_prev, q, b_prev = np.zeros(n), v0 / np.linalg.norm(v0), 0.0
    for _ in range(min(steps, n)):
        w, a, b = _lanczos_step(matvec, q, q_prev, b_prev)
        alpha.append(a)
        m = len(alpha)
        if m == 1:
            theta, s_last = a, 1.0
        else:
            t, S = eigh_tridiagonal(np.array(alpha), np.array(beta), select="i", select_range=(m - 1, m - 1))
            theta, s_last = float(t[0]), float(S[-1, 0])
        if theta > threshold:
            return True
        # settled: after a few steps (the largest Ritz value has had time to reach the largest
        # eigenvalue), its residual bound r is within ``bound`` or a quarter of its distance to
        # the threshold, so the eigenvalue it stands for is within about r²/gap ≤ gap/16 of it
        r = b * abs(s_last)
        if b <= 1e-12 * max(abs(theta), 1e-300) or m >= min(10, n) and r <= max(bound, (threshold - theta) / 4):
            return False
        beta.append(b)
        q_prev, q, b_prev = q, w / b, b
    return None


def _rayleigh_ritz(matvec, X: np.ndarray, sign: int, psd: bool):
    """Values, vectors and residual norms ‖Ax − μx‖ of A over span(X), most extreme first (for
    the smallest of a ``psd`` A the bound is μ itself where that is smaller: 0 ≤ λᵢ ≤ μᵢ)."""
    Q, _r = np.linalg.qr(X)
    AQ = np.column_stack([matvec(q) for q in Q.T])
    mu, C = np.linalg.eigh((Q.T @ AQ + AQ.T @ Q) / 2)
    order = np.argsort(-sign * mu, kind="stable")
    mu, C = mu[order], C[:, order]
    Q, AQ = Q @ C, AQ @ C
    err = np.linalg.norm(AQ - Q * mu, axis=0)
    if psd and sign < 0:
        err = np.minimum(err, np.maximum(mu, 0.0))
    return mu, Q, err


def _bottom(matvec, n: int, k: int, tol: float, steps: int, v0: np.ndarray, scale: float = 0.0, psd: bool = False):
    """The ``k`` smallest eigenpairs of a symmetric operator, and a bound on each one's error,
    by plain three-term Lanczos from ``v0``, never restarted and keeping no basis: at most
    ``steps`` steps, stopped once each of the ``k`` smallest Ritz values has a residual bound
    βₘ·|sₘ| of at most ``tol`` times the operator's size (the largest |Ritz value|, or
    ``scale`` when larger), as the Lanczos this replaced did with a basis of ``steps`` vectors;
    for a ``psd`` operator also once each is itself below half that (its eigenvalue is then
    between 0 and it). Then the same recurrence again, from the same coefficients, sums each
    Ritz vector x = Σⱼ sⱼ qⱼ, and a Rayleigh-Ritz step over those vectors (k products) gives
    the values, their vectors and their measured residuals: 2·steps + k products at most, and
    a handful of vectors of n however many steps.

    Without reorthogonalisation, converged Ritz values come back as copies ("ghosts"); a value
    of T that is also one of T with its first row and column deleted, and has no copy in T, is
    such a spurious one (Cullum & Willoughby) and is left out, and copies count once. So a
    multiple eigenvalue is found once here (with a null space, the smallest is 0 and the next
    one found is the next distinct value); ``_with_copies`` finds its other copies. NaN (a
    zero vector, an infinite error) for those that did not converge."""
    out, vectors, errors = np.full(k, np.nan), np.zeros((n, k)), np.full(k, np.inf)
    if k == 0:
        return out, vectors, errors
    alpha, beta = [], []
    q_prev, q = np.zeros(n), v0 / np.linalg.norm(v0)
    b_prev = 0.0
    for j in range(min(steps, n)):
        w, a, b = _lanczos_step(matvec, q, q_prev, b_prev)
        alpha.append(a)
        size = max(scale, float(np.abs(alpha).max()), 1e-300)
        invariant = b <= 1e-12 * size  # the Krylov space is invariant: T's values are exact
        last = invariant or j + 1 == min(steps, n)
        if last or (j + 1) % max(5, (j + 1) // 20) == 0 and j + 1 > k:  # about 20 checks per doubling
            (theta, S), done = _good_ritz(np.array(alpha), np.array(beta), b, k, tol * size, psd, invariant)
            if done or last:
                break
        beta.append(b)
        q_prev, q, b_prev = q, w / b, b
    if not theta.size:
        return out, vectors, errors
    X = np.zeros((n, theta.size))  # the second pass: the same qⱼ, from the same α and β
    q_prev, q = np.zeros(n), v0 / np.linalg.norm(v0)
    for j in range(len(alpha)):
        X += np.outer(q, S[j])
        if j + 1 < len(alpha):
            w = matvec(q) - alpha[j] * q - (beta[j - 1] * q_prev if j else 0.0)
            q_prev, q = q, w / beta[j]
    # Rayleigh-Ritz over span(X) (X need not be orthonormal: the qⱼ lost orthogonality)
    X, _ = np.linalg.qr(X)
    AX = np.column_stack([matvec(x) for x in X.T])
    mu, C = np.linalg.eigh((X.T @ AX + AX.T @ X) / 2)
    X, AX = X @ C, AX @ C
    err = np.linalg.norm(AX - X * mu, axis=0)
    if psd:  # 0 ≤ λᵢ ≤ μᵢ (Courant-Fischer over span(X)): μᵢ bounds the error too
        err = np.minimum(err, np.maximum(mu, 0.0))
    m = mu.size
    out[:m], vectors[:, :m], errors[:m] = mu, X, err
    return out, vectors, errors


def _good_ritz(
    alpha: np.ndarray, beta: np.ndarray, b: float, k: int, bound: float, psd: bool = False, exact: bool = False
):
    """The smallest distinct, non-spurious Ritz values of the tridiagonal T (``alpha``,
    ``beta``), up to ``k`` and up to the first whose residual bound b·|sₘ| exceeds ``bound``
    (for ``psd``: and that is above bound / 2 itself), with their eigenvectors of T (columns),
    and whether all ``k`` are there."""
    m = alpha.size
    # every value (O(m²)), the vectors of only the smallest few (copies and ghosts among them)
    r = min(m, 3 * k + 20)
    if m == 1:
        theta, S = alpha.copy(), np.ones((1, 1))
    else:
        theta = eigh_tridiagonal(alpha, beta, eigvals_only=True)
        S = eigh_tridiagonal(alpha, beta, select="i", select_range=(0, r - 1))[1]
    gap = 1e-10 * max(float(np.abs(theta).max()), 1e-300)
    hat = eigh_tridiagonal(alpha[1:], beta[1:], eigvals_only=True) if m > 2 else alpha[1:]
    keep = []
    for i in range(r):
        if keep and theta[i] - theta[keep[-1]] <= gap:  # a copy of the last one kept: counts once
            continue
        copies = i + 1 < m and theta[i + 1] - theta[i] <= gap
        if not copies and hat.size and np.abs(hat - theta[i]).min() <= gap:
            continue  # spurious: a value of T-hat too, with no copy in T
        ok = exact or abs(b * S[-1, i]) <= bound or psd and theta[i] <= bound / 2
        if not ok:
            break  # the smallest first: a later one is no answer before this one is
        keep.append(i)
        if len(keep) == k:
            break
    keep = np.array(keep, int)
    return (theta[keep], S[:, keep]), keep.size == k


def _arpack(op: LinearOperator, k: int, which: str, tol: float, max_steps: int, v0: np.ndarray, ncv: int | None = None):
    """The ``k`` eigenpairs of ``op`` at one end ("LA": largest, "SA": smallest, "LM": of
    largest magnitude), the most extreme first, from a basis of ``ncv`` vectors
    (``krylov_vectors(k)`` unless given); NaN (and a zero vector) for those that did not
    converge."""
    n = op.shape[0]
    if k == 0:
        return np.zeros(0), np.zeros((n, 0))
    ncv = min(max(ncv or krylov_vectors(k), k + 2), n - 1)
    restarts = max(1, math.ceil(max(max_steps - ncv, 0) / max(ncv - k, 1)) + 1)
    try:
        theta, vectors = eigsh(op, k, which=which, tol=tol, v0=v0, ncv=ncv, maxiter=restarts)
    except ArpackNoConvergence as e:
        theta, vectors = e.eigenvalues, e.eigenvectors
    order = np.argsort(-theta if which == "LA" else theta)
    if which == "LM":
        order = np.argsort(-np.abs(theta))
    out, X = np.full(k, np.nan), np.zeros((n, k))
    m = min(order.size, k)
    out[:m], X[:, :m] = theta[order[:m]], vectors[:, order[:m]]
    return out, X


# ---- trace -----------------------------------------------------------------------------------


@dataclass
class TraceEstimate:
    estimate: float
    std_error: float
    probes: int  # products used


def rademacher(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0


def hutchinson(matvec, n: int, probes: int, seed: int = 0, method: str = "hutchpp") -> TraceEstimate:
    """tr(A) from ``probes`` products with Rademacher vectors z (E[zᵀAz] = tr A).

    "hutchinson": the mean of zᵀAz, with the standard error of that mean.
    "hutchpp" (Hutch++, Meyer, Musco, Musco & Woodruff 2021): a quarter of the products sketch
    A's dominant range Q (from A·S), a quarter take tr(QᵀAQ) exactly, and the other half run
    Hutchinson on the deflated (I−QQᵀ)A(I−QQᵀ), whose variance is far smaller when a few
    eigenvalues dominate, as they do in a network's Hessian. The standard error is that of
    the deflated part (the exact part has none)."""
    rng = np.random.default_rng(seed)
    if method == "hutchinson" or probes < 6:
        if probes < 2:
            raise ValueError("a trace estimate with a standard error needs at least 2 probes")
        samples = np.array([z @ matvec(z) for z in rademacher(rng, (probes, n))])
        return TraceEstimate(float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(probes)), probes)
    if method != "hutchpp":
        raise ValueError(f"unknown trace method {method!r}; allowed: hutchinson, hutchpp")
    k = probes // 4  # half the products go to the Hutchinson part, so its error bar is sound
    m = probes - 2 * k
    S = rademacher(rng, (k, n))
    Q, _ = np.linalg.qr(np.array([matvec(s) for s in S]).T)  # n × k, orthonormal columns
    exact = float(sum(q @ matvec(q) for q in Q.T))
    samples = []
    for z in rademacher(rng, (m, n)):
        z = z - Q @ (Q.T @ z)
        samples.append(z @ matvec(z))
    samples = np.array(samples)
    return TraceEstimate(exact + float(samples.mean()), float(samples.std(ddof=1) / math.sqrt(m)), probes)


# ---- spectral density ------------------------------------------------------------------------


@dataclass
class Density:
    grid: np.ndarray
    values: np.ndarray
    nodes: np.ndarray  # every quadrature node (Ritz value)
    weights: np.ndarray  # its weight; all sum to 1
    sigma: float
    products: int

    @property
    def mean(self) -> float:
        """∫ t φ(t) dt, exactly (the Gaussians keep their centres): tr(A)/n, estimated."""
        return float(self.nodes @ self.weights)


def spectral_density(
    matvec,
    n: int,
    probes: int = 8,
    steps: int = 60,
    deflate: int = 20,
    points: int = 400,
    sigma: float | None = None,
    seed: int = 0,
) -> Density:
    """The density of A's eigenvalues, φ(t) = (1/n) Σᵢ δ(t − λᵢ) smoothed by a Gaussian, by
    stochastic Lanczos quadrature: for a probe q, ``steps`` Lanczos steps give nodes θₖ (Ritz
    values) and weights τₖ = (first component of the k-th eigenvector of T)², and
    qᵀf(A)q ≈ Σ τₖ f(θₖ).

    Deflated, as Hutch++ deflates the trace: a first Lanczos run of ``deflate`` steps gives an
    orthonormal basis Q where the largest eigenvalues live (QᵀAQ = T exactly, with full
    reorthogonalisation); its eigenvalues enter with weight 1/n each, and the ``probes``
    Rademacher probes run on P A P (P = I − QQᵀ) over the other n − deflate dimensions. The
    outliers of a network's Hessian then cost no variance: the density's mean,
    (tr T + (n − k)·mean qᵀAq)/n, is Hutch++'s trace estimate over n.

    ``sigma`` defaults to 1% of the spread of the nodes; the grid reaches 5σ past the
    outermost nodes, so the density integrates to 1 on it."""
    rng = np.random.default_rng(seed)
    k = min(deflate, n - 1) if n > 1 else 0
    nodes, weights, products = [], [], 0
    project = matvec
    if k > 0:
        head = lanczos(matvec, rademacher(rng, n), k)
        theta, _ = head.ritz()
        k = theta.size  # fewer when an invariant subspace ends the run
        products += k
        nodes.append(theta)
        weights.append(np.full(k, 1.0 / n))
        Q = head.Q

        def project(v: np.ndarray) -> np.ndarray:
            w = matvec(v - Q.T @ (Q @ v))
            return w - Q.T @ (Q @ w)

    if k < n:
        for _ in range(probes):
            z = rademacher(rng, n)
            if k:
                z -= Q.T @ (Q @ z)
            run = lanczos(project, z, min(steps, n - k))
            theta, S = run.ritz()
            products += theta.size
            nodes.append(theta)
            weights.append(S[0] ** 2 * (n - k) / (n * probes))
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = max(hi - lo, abs(hi), 1e-12) * 0.01
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)
    values = np.zeros(points)
    for t, w in zip(nodes, weights):
        values += w * np.exp(-0.5 * ((grid - t) / sigma) ** 2)
    values /= sigma * math.sqrt(2 * math.pi)
    return Density(grid, values, nodes, weights, float(sigma), products)
