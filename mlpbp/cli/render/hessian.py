"""`mlpbp hessian`: eigenvalues, trace and the spectral density as a terminal histogram."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlpbp.tools.hessian import HessianResult


def _eig(v: float) -> str:
    return f"{v:.6g}"


def density_histogram(grid: np.ndarray, values: np.ndarray, bins: int = 16, width: int = 40) -> list[str]:
    """The density's mass in ``bins`` equal intervals, as bars on a log scale (a Hessian's
    bulk near 0 holds almost all the mass; its outliers would not show on a linear one)."""
    edges = np.linspace(grid[0], grid[-1], bins + 1)
    cdf = np.concatenate([[0.0], np.cumsum((values[1:] + values[:-1]) / 2 * np.diff(grid))])
    mass = np.diff(np.interp(edges, grid, cdf))
    floor = 1e-6
    lines = []
    for lo, hi, m in zip(edges[:-1], edges[1:], mass):
        n = 0 if m <= floor else max(1, round((np.log10(m) - np.log10(floor)) / -np.log10(floor) * width))
        lines.append(f"{lo:>11.4g} … {hi:<11.4g} {'█' * n:<{width}} {m:.2e}")
    return lines


def hessian_report(out: Console, r: HessianResult, model: str, data: str) -> None:
    out.print(
        f"[bold]{model}[/] on {data}: {r.curvature}, {r.n_params:,} parameters, {r.rows} rows",
        highlight=False,
        soft_wrap=True,
    )
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    if r.top_eigenvalues is not None:
        t.add_row("top eigenvalues", ", ".join(_eig(v) for v in r.top_eigenvalues))
    if r.bottom_eigenvalues is not None:
        t.add_row("bottom eigenvalues", ", ".join(_eig(v) for v in r.bottom_eigenvalues))
    if r.lanczos is not None:
        lz = r.lanczos
        state = "converged" if lz.converged else "[yellow]NOT converged[/] (raise --max-steps)"
        if lz.shortfall:
            top, bottom = lz.found["top"], lz.found["bottom"]
            state = f"[yellow]NOT all found[/] ({top} top, {bottom} bottom: {escape(lz.shortfall)})"
        t.add_row("Lanczos", f"{lz.steps} steps, max relative residual {lz.max_relative_residual:.1e}, {state}")
    if r.trace is not None:
        tr = r.trace
        t.add_row("trace", f"{tr.estimate:.6g} ± {tr.std_error:.2g} (Hutch++, {tr.probes} products)")
        t.add_row("mean eigenvalue", f"{tr.estimate / r.n_params:.4g}")
    t.add_row("products", f"{r.products} full-data products, {r.seconds:.2f} s")
    out.print(t)
    if r.density is not None:
        d = r.density
        out.print(f"\n[bold]spectral density[/] (mass per interval, log scale; σ = {d.sigma:.3g})")
        for line in density_histogram(np.asarray(d.grid), np.asarray(d.values)):
            out.print(line, highlight=False)
