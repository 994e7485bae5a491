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
    CURVATURES,
    Curvature,
    extreme_eigenvalues,
    hutchinson,
    krylov_vectors,
    spectral_density,
)
from mlpbp.engine.memory import activation_bytes, describe_widths, n_params, network_bytes, require
from mlpbp.engine.network import MLP
from mlpbp.errors import ArgumentError, DataError
from mlpbp.results import Result, asked
from mlpbp.run.distributed import SINGLE, Comm
from mlpbp.run.model_file import load_model

DEFLATE = 20  # the spectral density's deflation: Lanczos vectors kept beside each probe's run


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
        for name in ("top_k", "bottom_k"):
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
    converged: bool  # every residual within tol


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
    skipped: Skipped | None = asked()  # rows of the table left out (none: absent)
    top_eigenvalues: list[float] | None = asked()
    bottom_eigenvalues: list[float] | None = asked()
    lanczos: LanczosReport | None = asked()
    trace: Trace | None = asked()
    density: DensityCurve | None = asked()
    products: int = 0  # full-data curvature products
    seconds: float = 0.0


def memory_needed(widths: list[int], opts: HessianOptions) -> int:
    """Bytes ``analyse`` takes beyond the model and its rows: the float64 copy of the network,
    one batch's passes (the R-operator keeps about twice a training step's buffers), and the
    float64 vectors of n that the largest of the computations asked for keeps at once."""
    n = n_params(widths)
    vectors = 0
    if opts.top_k or opts.bottom_k:
        k = max(opts.top_k, opts.bottom_k)
        # ARPACK's basis, its three work vectors, the eigenvectors; small operators are dense
        vectors = n if n <= 3 * krylov_vectors(k) else krylov_vectors(k) + 3 + opts.top_k + opts.bottom_k
    if opts.trace:
        vectors = max(vectors, 3 * (opts.probes // 4) + 2)  # Hutch++: the sketch, its products, Q
    if opts.density:
        vectors = max(vectors, DEFLATE + min(opts.slq_steps, n) + 3)
    batch = 2 * activation_bytes(widths, opts.batch_size, np.float64)
    return network_bytes(widths, np.float64) + batch + (vectors + 2) * n * 8


def float64_copy(net: MLP) -> MLP:
    """The same network in float64: eigenvalues to 1e-6 need more than float32's 7 digits."""
    copy = MLP(net.widths, net.activation, net.loss_name, dtype="float64", init=net.init, task=net.task)
    copy.set_flat(net.get_flat().astype(np.float64))
    return copy


def analyse(
    model_path: str | Path,
    data_path: str | Path,
    opts: HessianOptions,
    progress: Callable[[str], None] | None = None,
    comm: Comm = SINGLE,
) -> HessianResult:
    """What ``opts`` asks for (its ``to_json()`` is what ``mlpbp hessian --json`` prints): n_params, rows,
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
    widths = model.net.widths
    require(
        memory_needed(widths, opts),
        f"analysing the curvature of the {describe_widths(widths)} network ({model.net.n_params:,} parameters)",
        argument="batch_size",
    )
    data = model.labelled_data(data_path)
    X, y = data.X, data.y
    if X.shape[0] == 0:
        raise DataError(f"{data_path}: no rows")
    if opts.rows is not None and opts.rows < X.shape[0]:
        pick = np.sort(np.random.default_rng(opts.seed).choice(X.shape[0], opts.rows, replace=False))
        X, y = X[pick], y[pick]
    net = float64_copy(model.net)
    n = net.n_params
    if max(opts.top_k, opts.bottom_k) > n:
        which = "top_k" if opts.top_k > n else "bottom_k"
        raise ArgumentError(
            f"{which} {max(opts.top_k, opts.bottom_k)} is larger than the model's {n} parameters", argument=which
        )
    lo, hi = comm.share(X.shape[0])
    op = Curvature(
        net, X[lo:hi], y[lo:hi], opts.curvature, opts.batch_size, reduce=comm.allreduce_, total_rows=X.shape[0]
    )
    result = HessianResult(n, int(X.shape[0]), opts.curvature)
    if data.skipped.count:
        result.skipped = Skipped(data.skipped.missing_target, data.skipped.missing_feature)
    if opts.top_k or opts.bottom_k:
        say("extreme eigenvalues (Lanczos)")
        ext = extreme_eigenvalues(
            op.matvec, n, opts.top_k, opts.bottom_k, tol=opts.tol, max_steps=opts.max_steps, seed=opts.seed
        )
        if opts.top_k:
            result.top_eigenvalues = ext.top
        if opts.bottom_k:
            result.bottom_eigenvalues = ext.bottom
        worst = max(ext.residuals) if ext.residuals else 0.0
        result.lanczos = LanczosReport(ext.steps, worst, worst <= opts.tol)
    if opts.trace:
        say("trace (Hutch++)")
        t = hutchinson(op.matvec, n, opts.probes, seed=opts.seed)
        result.trace = Trace(t.estimate, t.std_error, t.probes)
    if opts.density:
        say("spectral density (stochastic Lanczos quadrature)")
        d = spectral_density(
            op.matvec, n, probes=opts.slq_probes, steps=opts.slq_steps, deflate=DEFLATE, seed=opts.seed
        )
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
