"""Second-order training: full-batch L-BFGS and Hessian-free truncated Newton (Martens 2010).

Unlike the first-order optimizers, these take whole-data (or large-batch) steps from the
loss, its gradient and curvature products over many rows; an epoch is one call of
``run_epoch``. Both are registered in ``OPTIMIZERS`` beside SGD and Adam, built the same way
(``cls(params, **settings)``), and keep what a checkpoint needs in ``state_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

from mlpbp.engine.curvature import CURVATURES, Curvature, Work
from mlpbp.engine.network import MLP


class FullBatchMethod:
    """Base of the methods the trainer runs an epoch at a time: ``run_epoch(net, X, y, order,
    stop)`` improves the network's parameters in place and returns the ``Work`` it did, in
    passes over all of (X, y). ``stop()`` is polled between iterations (Ctrl-C).

    Data-parallel (several processes, e.g. MPI ranks), ``split(n) -> (lo, hi)`` names this
    process's share of n rows and ``reduce(vector)`` sums a vector over the processes in place:
    every process then sees the same loss, gradient, products and stop decision, takes the
    same steps, and ends with the same parameters as one process holding every row."""

    run_keys: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], weight_decay: float = 0.0) -> None:
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        self.params, self.weight_decay = params, float(weight_decay)

    def run_epoch(
        self, net: MLP, X, y, order: np.ndarray, stop: Callable[[], bool], split=None, reduce=None, sample_weight=None
    ) -> Work:
        raise NotImplementedError

    def _objective(self, net: MLP, X, y, rows, kind: str, split, reduce, sample_weight=None) -> Curvature:
        """The objective over X[rows], y[rows] (all of them: ``rows`` None), of which this
        process computes its share; with ``sample_weight`` (one per row of X), the weighted mean."""
        n = X.shape[0] if rows is None else len(rows)
        lo, hi = split(n) if split is not None else (0, n)
        mine = slice(lo, hi) if rows is None else rows[lo:hi]
        w, total = None, None
        if sample_weight is not None:
            w = sample_weight[mine]
            total = float(np.sum(sample_weight if rows is None else sample_weight[rows]))
        return Curvature(
            net,
            X[mine],
            y[mine],
            kind,
            weight_decay=self.weight_decay,
            reduce=reduce,
            total_rows=n,
            sample_weight=w,
            total_weight=total,
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pass


def agreed(stop: Callable[[], bool], reduce) -> bool:
    """Whether any process was asked to stop (a collective when ``reduce`` is given), so that
    all stop at the same iteration."""
    flag = np.array([1.0 if stop() else 0.0])
    if reduce is not None:
        reduce(flag)
    return bool(flag[0])


class LBFGS(FullBatchMethod):
    """Limited-memory BFGS on the full-batch loss (as scikit-learn's MLP solver "lbfgs"): each
    epoch runs scipy's L-BFGS-B for up to ``max_iter`` iterations, keeping ``history_size``
    curvature pairs, stopping early once the largest gradient component is at most
    ``tolerance``.

    scipy's implementation (Byrd, Lu, Nocedal & Zhu; Moré-Thuente line search) is the
    well-tested one scikit-learn uses; its memory cannot be saved, so each epoch starts afresh
    from the current weights, which is what makes a checkpoint at an epoch's end exact."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        max_iter: int = 20,
        tolerance: float = 1e-5,
        history_size: int = 10,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, weight_decay)
        if max_iter < 1 or history_size < 1 or not tolerance > 0:
            raise ValueError("max_iter and history_size must be >= 1 and tolerance > 0")
        self.max_iter, self.tolerance, self.history_size = int(max_iter), float(tolerance), int(history_size)

    def __repr__(self) -> str:
        return f"LBFGS(max_iter={self.max_iter}, tolerance={self.tolerance}, history_size={self.history_size})"

    def run_epoch(
        self, net: MLP, X, y, order: np.ndarray, stop: Callable[[], bool], split=None, reduce=None, sample_weight=None
    ) -> Work:
        objective = self._objective(net, X, y, None, "hessian", split, reduce, sample_weight)

        def callback(intermediate_result) -> None:
            if agreed(stop, reduce):
                raise StopIteration  # scipy ends the run and returns its best point

        result = minimize(
            objective.loss_and_grad,
            net.get_flat().astype(np.float64),
            jac=True,
            method="L-BFGS-B",
            callback=callback,
            options={"maxiter": self.max_iter, "maxcor": self.history_size, "gtol": self.tolerance},
        )
        net.set_flat(result.x)
        return objective.work


class NewtonCG(FullBatchMethod):
    """Hessian-free truncated Newton (Martens 2010). Per batch of ``batch_size`` rows (all of
    them when it is at least the training set): conjugate gradient on (C + λI)p = −∇J, with C
    the Gauss-Newton matrix (default; positive semi-definite) or the Hessian, products by the
    R-operator; CG warm-started from 0.95× the previous step, stopped by Martens' relative
    progress test or after ``cg_max_iter`` products; the best of its iterates by the loss
    (backtracking along them), then an Armijo line search. λ (starting at ``damping``)
    follows Levenberg-Marquardt: ×3/2 when the reduction ratio ρ < 1/4, ×2/3 when ρ > 3/4.

    CG is written out rather than taken from scipy: Martens' stopping test, the stored
    iterates and the negative-curvature exit (for the indefinite Hessian) are not in
    scipy.sparse.linalg.cg."""

    def __init__(
        self,
        params: dict[str, np.ndarray],
        curvature: str = "gauss_newton",
        damping: float = 1.0,
        cg_max_iter: int = 50,
        batch_size: int | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, weight_decay)
        if curvature not in CURVATURES:
            raise ValueError(f"unknown curvature {curvature!r}; allowed: {', '.join(CURVATURES)}")
        if not damping > 0 or cg_max_iter < 1:
            raise ValueError("damping must be > 0 and cg_max_iter >= 1")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (all rows); got {batch_size}")
        self.curvature, self.cg_max_iter, self.batch_size = curvature, int(cg_max_iter), batch_size
        self.damping = float(damping)
        n = sum(p.size for p in params.values())
        self.previous = np.zeros(n)  # the last step: CG's warm start

    def __repr__(self) -> str:
        return f"NewtonCG(curvature={self.curvature!r}, damping={self.damping}, cg_max_iter={self.cg_max_iter})"

    def run_epoch(
        self, net: MLP, X, y, order: np.ndarray, stop: Callable[[], bool], split=None, reduce=None, sample_weight=None
    ) -> Work:
        n = X.shape[0]
        batch = n if self.batch_size is None else min(self.batch_size, n)
        work = Work()
        for start in range(0, n, batch):
            if agreed(stop, reduce):
                break
            rows = order[start : start + batch] if batch < n else None
            objective = self._objective(net, X, y, rows, self.curvature, split, reduce, sample_weight)
            self._step(net, objective)
            share = objective.rows / n
            work.gradients += share * objective.work.gradients
            work.products += share * objective.work.products
        return work

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"newton_cg.damping": np.array(self.damping), "newton_cg.previous": self.previous}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.damping = float(state["newton_cg.damping"])
        self.previous = np.array(state["newton_cg.previous"], dtype=np.float64)

    def _step(self, net: MLP, objective: Curvature) -> None:
        theta = net.get_flat().astype(np.float64)
        f0, g = objective.loss_and_grad()
        lam = self.damping

        def A(v: np.ndarray) -> np.ndarray:
            return objective.matvec(v) + lam * v

        iterates, phis = self._cg(A, g, 0.95 * self.previous)
        # Backtrack along the CG iterates: the last is best for the quadratic model, an
        # earlier one may be better for the loss itself.
        best = len(iterates) - 1
        f_best = objective.loss(theta + iterates[best])
        while best > 0:
            f_prev = objective.loss(theta + iterates[best - 1])
            if f_prev >= f_best:
                break
            best, f_best = best - 1, f_prev
        p, phi = iterates[best], phis[best]
        rho = (f_best - f0) / phi if phi < 0 else -math.inf
        if rho < 0.25:
            self.damping = lam * 1.5
        elif rho > 0.75:
            self.damping = lam * 2 / 3
        # Armijo backtracking on the step length.
        slope, alpha, f = float(g @ p), 1.0, f_best
        while f > f0 + 1e-2 * alpha * slope and alpha > 1e-4:
            alpha *= 0.8
            f = objective.loss(theta + alpha * p)
        if f > f0 + 1e-2 * alpha * slope or not math.isfinite(f):
            alpha = 0.0  # no acceptable step: stay, with a larger damping next time
            self.damping = lam * 1.5
        net.set_flat(theta + alpha * p)
        self.previous = alpha * p if alpha else p

    def _cg(self, A, g: np.ndarray, x0: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        """CG on φ(x) = ½xᵀAx + gᵀx from x0; the iterates kept at steps ⌈1.3ᵏ⌉ and the last,
        with their φ. Martens' stop: after i > k = max(10, i/10) steps, when
        φᵢ < 0 and (φᵢ − φᵢ₋ₖ)/φᵢ < k·5e-4."""
        x = x0.copy()
        Ax = A(x) if np.any(x) else np.zeros_like(x)
        r = -g - Ax
        phi = 0.5 * float(x @ Ax) + float(g @ x)
        if phi > 0:  # a warm start worse than no step: start from 0
            x, r, phi = np.zeros_like(x), -g.copy(), 0.0
        d = r.copy()
        rr = float(r @ r)
        keep = {math.ceil(1.3**k) for k in range(60)}
        iterates, phis, history = [], [], [phi]
        for i in range(1, self.cg_max_iter + 1):
            Ad = A(d)
            dAd = float(d @ Ad)
            if dAd <= 0:  # negative curvature (the Hessian, lightly damped): stop here
                break
            a = rr / dAd
            x += a * d
            r -= a * Ad
            rr_new = float(r @ r)
            phi = -0.5 * float(x @ (r - g)) + float(g @ x)  # ½xᵀAx + gᵀx with Ax = −g − r
            history.append(phi)
            if i in keep:
                iterates.append(x.copy())
                phis.append(phi)
            k = max(10, i // 10)
            if i > k and phi < 0 and (phi - history[i - k]) / phi < k * 5e-4:
                break
            d = r + (rr_new / rr) * d
            rr = rr_new
        if not iterates or not np.array_equal(iterates[-1], x):
            iterates.append(x.copy())
            phis.append(phi)
        return iterates, phis
