"""`mlpbp hessian`: the curvature of a trained model's loss on a labelled table, read from
Hessian (or Gauss-Newton) products alone: extreme eigenvalues, trace, spectral density.

This module is the API; the command line (``mlpbp hessian``) renders what it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpbp.engine.curvature import (
    COPY_VECTORS,
    CURVATURES,
    DENSE_FALLBACK,
    Curvature,
    dense_limit,
    extreme_eigenvalues,
    hutchinson,
    krylov_vectors,
    spectral_density,
)
from mlpbp.engine.graph import Network
from mlpbp.engine.memory import activation_bytes, lanczos_bytes, n_params, network_bytes, require
from mlpbp.errors import ArgumentError, DataError
from mlpbp.results import Result, asked
from mlpbp.run.distributed import SINGLE, Comm
from mlpbp.run.model_file import load_model


@dataclass
class HessianOptions:
    curvature: str = "hessian"
    top_k: int = 1
    bottom_k: int = 0
    trace: bool = False
    density: bool = False
    rows: int | None = None  # a seeded sample of this many rows; None: all
    seed: int = 0
    probes: int = 100  # trace: Hutch++ products
    slq_probes: int = 8  # density: Lanczos runs
    slq_steps: int = 60  # density: steps per run
    tol: float = 1e-6  # eigenvalues: relative residual bound
    max_steps: int = 300  # eigenvalues: Lanczos steps at most
    batch_size: int = 1000  # rows per batch of each product

    def check(self) -> None:
        if self.curvature not in CURVATURES:
            raise ArgumentError(
                f"curvature must be one of {', '.join(CURVATURES)}; got {self.curvature!r}", argument="curvature"
            )
        for name in ("top_k", "bottom_k", "seed"):
            if getattr(self, name) < 0:
                raise ArgumentError(f"{name} must be >= 0; got {getattr(self, name)}", argument=name)
        positive = ("probes", "slq_probes", "slq_steps", "max_steps", "batch_size")
        for name in positive + (("rows",) if self.rows is not None else ()):
            if getattr(self, name) < 1:
                raise ArgumentError(f"{name} must be >= 1; got {getattr(self, name)}", argument=name)
        if self.trace and self.probes < 6:
            raise ArgumentError(
                f"probes must be >= 6 for a Hutch++ trace with an error bar; got {self.probes}", argument="probes"
            )
        if not 0 < self.tol < 1:
            raise ArgumentError(f"tol must be in (0, 1); got {self.tol}", argument="tol")


@dataclass
class Skipped:
    missing_target: int
    missing_feature: int


@dataclass
class LanczosReport:
    steps: int  # products the eigenvalues took
    max_relative_residual: float  # the worst ‖Hx − θx‖ / max|θ|
    converged: bool  # every value asked for found, each residual within tol
    found: dict  # {"top": count, "bottom": count}
    shortfall: str | None  # why fewer than asked (None: all there)


@dataclass
class Trace:
    estimate: float
    std_error: float
    probes: int


@dataclass
class DensityCurve:
    grid: list[float]
    values: list[float]
    sigma: float


@dataclass
class HessianResult(Result):
    """What ``analyse`` found; its ``to_json()`` is what ``mlpbp hessian --json`` prints."""

    n_params: int
    rows: int
    curvature: str
    mode: str = "eval"  # the network as it predicts (dropout off)
    skipped: Skipped | None = asked()  # rows of the table left out (none: absent)
    top_eigenvalues: list[float] | None = asked()
    bottom_eigenvalues: list[float] | None = asked()
    lanczos: LanczosReport | None = asked()
    trace: Trace | None = asked()
    density: DensityCurve | None = asked()
    products: int = 0  # full-data curvature products
    seconds: float = 0.0
    note: str | None = asked()  # what the numbers cannot show (a loss with no curvature in its output)
    weight: str | None = asked()  # the column whose row weights weigh the loss (data.weight; none: absent)


def hessian_bytes(widths, rows: int, opts: HessianOptions) -> int:
    """What ``analyse`` adds to the model and rows it has loaded: the float64 network, the
    buffers of a curvature product over a batch (the R-operator keeps about three times a
    training step's), and the largest set of flat vectors one of its parts keeps: ARPACK's
    basis and work vectors for the largest eigenvalues (``krylov_vectors``) and its search for
    copies of a repeated one, the smallest end's Lanczos vectors and Ritz vectors (n² for the
    dense matrix of a small model), Hutch++'s sketch and basis, or the density's deflation
    basis and one run's."""
    n = n_params(widths)
    batch = min(opts.batch_size, max(rows, 1))
    vectors = [0]
    if opts.top_k or opts.bottom_k:
        k, top, bottom = max(opts.top_k, opts.bottom_k), opts.top_k, opts.bottom_k
        if n <= max(dense_limit(k), DENSE_FALLBACK):  # formed at once, or after n products
            vectors.append(n + 1)
        if n > dense_limit(k):  # the top end's ARPACK run; then the bottom end's Lanczos (its vectors and products)
            vectors.append(krylov_vectors(top) + 3 + top if top else 0)
            # the search for copies of a repeated value (k ≥ 2): the values' vectors and their
            # orthonormal basis, beside a one-value ARPACK run and the final Rayleigh-Ritz step
            vectors.append(2 * top + COPY_VECTORS + 4 if top >= 2 else 0)
            vectors.append(6 + 6 * bottom + 2 * top if bottom else 0)  # Rayleigh-Ritz: about 6 per value
    if opts.trace:
        vectors.append(5 * (opts.probes // 4) + opts.probes * (opts.probes < 6) + 2)
    if opts.density:
        vectors.append(min(20, n) + opts.slq_steps + 2)
    return (
        network_bytes(widths, "float64")
        + 3 * activation_bytes(widths, batch, "float64")
        + lanczos_bytes(widths, max(vectors))
        + rows * 8 * (widths[0] + widths[-1])  # the rows in float64 (X, and y as one-hot or values)
    )


def float64_copy(net: Network) -> Network:
    """The same network in float64 and in evaluation mode (as the model predicts), class
    weights and all: eigenvalues to 1e-6 need more than float32's 7 digits."""
    return net.astype(np.float64).eval()


def analyse(
    model_path: str | Path,
    data_path: str | Path,
    opts: HessianOptions,
    progress: Callable[[str], None] | None = None,
    comm: Comm = SINGLE,
) -> HessianResult:
    """What ``opts`` asks for (``to_json()``: what ``mlpbp hessian --json`` prints): n_params, rows,
    curvature, top/bottom eigenvalues (with the Lanczos convergence), trace, density,
    products (full-data curvature products) and seconds; and, when rows of the table were
    left out (``TrainedModel.labelled_data``: a missing target, or a missing feature cell under
    data.missing: drop_rows), skipped: {missing_target, missing_feature}, their counts.

    Under MPI every rank calls it alike: each holds its share of the rows and the products are
    summed over the ranks, so every rank runs the same Lanczos and gets the same answer."""
    opts.check()
    started = time.perf_counter()
    say = progress or (lambda message: None)
    model = load_model(model_path)
    data = model.labelled_data(data_path)
    X, y, w = data.X, data.y, data.w
    if X.shape[0] == 0:
        raise DataError(f"{data_path}: no rows")
    if opts.rows is not None and opts.rows < X.shape[0]:
        pick = np.sort(np.random.default_rng(opts.seed).choice(X.shape[0], opts.rows, replace=False))
        X, y = X[pick], y[pick]
        w = None if w is None else w[pick]
    if w is not None and not w.sum() > 0:
        raise DataError(f"{data_path}: every row has weight 0 (column '{model.weight_name}', data.weight)")
    require(
        hessian_bytes(model.net.widths, X.shape[0], opts),
        f"the {opts.curvature} analysis of {model_path} ({model.net.n_params:,} parameters)",
        argument="max_steps",
    )
    net, weight_name = float64_copy(model.net), model.weight_name
    del model  # the float32 network (its parameters and gradient buffers) is not needed again
    net.require_curvature()
    n = net.n_params
    if max(opts.top_k, opts.bottom_k) > n:
        which = "top_k" if opts.top_k > n else "bottom_k"
        raise ArgumentError(
            f"{which} {max(opts.top_k, opts.bottom_k)} is larger than the model's {n} parameters", argument=which
        )
    lo, hi = comm.share(X.shape[0])
    op = Curvature(
        net,
        X[lo:hi],
        y[lo:hi],
        opts.curvature,
        opts.batch_size,
        reduce=comm.allreduce_,
        total_rows=X.shape[0],
        sample_weight=None if w is None else w[lo:hi],
        total_weight=None if w is None else float(w.sum()),
    )
    result = HessianResult(n, int(X.shape[0]), opts.curvature)
    if w is not None:
        result.weight = weight_name
    if net.loss_fn.curvature_free:  # absolute, quantile: piecewise linear in the output
        result.note = (
            f"the {net.loss_name} loss is piecewise linear in the network's output: its Hessian there is zero "
            "almost everywhere, so the Gauss-Newton matrix is 0 and the Hessian holds only the network's own "
            "curvature (dJ/do times the second derivatives of o)"
        )
    if data.skipped.count:
        result.skipped = Skipped(data.skipped.missing_target, data.skipped.missing_feature)
    if opts.top_k or opts.bottom_k:
        say("extreme eigenvalues (Lanczos)")
        ext = extreme_eigenvalues(
            op.matvec,
            n,
            opts.top_k,
            opts.bottom_k,
            tol=opts.tol,
            max_steps=opts.max_steps,
            seed=opts.seed,
            psd=opts.curvature == "gauss_newton",  # Jᵀ H_L J with a loss convex in the output
        )
        if opts.top_k:
            result.top_eigenvalues = ext.top
        if opts.bottom_k:
            result.bottom_eigenvalues = ext.bottom
        worst = max(ext.residuals) if ext.residuals else 0.0
        result.lanczos = LanczosReport(
            ext.steps,
            worst,
            worst <= opts.tol and ext.shortfall is None,
            {"top": len(ext.top), "bottom": len(ext.bottom)},
            ext.shortfall,
        )
    if opts.trace:
        say("trace (Hutch++)")
        t = hutchinson(op.matvec, n, opts.probes, seed=opts.seed)
        result.trace = Trace(t.estimate, t.std_error, t.probes)
    if opts.density:
        say("spectral density (stochastic Lanczos quadrature)")
        d = spectral_density(op.matvec, n, probes=opts.slq_probes, steps=opts.slq_steps, seed=opts.seed)
        result.density = DensityCurve(d.grid.tolist(), d.values.tolist(), d.sigma)
    result.products = int(op.work.products)
    result.seconds = time.perf_counter() - started
    return result


def plot_density(result: HessianResult, path: str | Path, title: str) -> None:
    """The density as a PNG (log scale: a Hessian's bulk sits near 0, its outliers far out)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ArgumentError("plot needs matplotlib: install mlpbp[plot]", argument="plot") from None
    from mlpbp.io import atomic_open

    d = result.density
    grid, values = np.asarray(d.grid), np.asarray(d.values)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.semilogy(grid, np.maximum(values, 1e-12), color="tab:blue")
    ax.set_ylim(bottom=max(values.max() * 1e-8, 1e-12))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    for lam in (result.top_eigenvalues or []) + (result.bottom_eigenvalues or []):
        ax.axvline(lam, color="tab:red", lw=0.8, ls="--")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
