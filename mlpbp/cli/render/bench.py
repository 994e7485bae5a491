"""`mlpbp bench`: the cost of a gradient and an HVP against the loss, per depth."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from mlpbp.tools.bench import AGREE, SETTLED, BenchResult, LineFit, Stability


def bench_fit_line(fit: dict[str, LineFit | None], prefix: str, label: str) -> str:
    loss, grad, hvp = (fit[f"{prefix}{k}"] for k in ("loss", "grad", "hvp"))
    if loss is None:
        return f"{label}: no line fit: the loss time does not grow with the parameter count (too few depths, or noise)"

    def part(name: str, f: LineFit | None) -> str:
        if f is None:
            return f"{name} no fit"
        per = f.per_param_s * 1e9
        return f"{name} {per:.3g} ns/param ({per / (loss.per_param_s * 1e9):.2f}× loss)"

    a = ", ".join("-" if f is None else f"{f.intercept_s * 1e6:.0f}" for f in (loss, grad, hvp))
    return (
        f"{label}: time ≈ a + b·params; loss b = {loss.per_param_s * 1e9:.3g} ns/param, "
        f"{part('gradient', grad)}, {part('HVP', hvp)}; a = {a} µs"
    )


def bench_stability(out: Console, stability: Stability, repeats: int, budget_s: float | None = None) -> None:
    trustworthy = stability.trustworthy
    if stability.max_spread is None:
        out.print(f"[dim]{repeats} repeat: stability not measured (use --repeats 5 or more)[/]", soft_wrap=True)
    elif stability.unstable:
        w = stability.worst
        tail = (
            "the fastest repeats still agree, so the minima and the ratios stand."
            if trustworthy
            else "Treat the numbers as rough; rerun on a quiet machine or with more --repeats."
        )
        out.print(
            f"[bold yellow]warning:[/] unstable timings: repeats differ by up to "
            f"{stability.max_spread:.0%} of their median (depth {w.depth}, {w.call}); another "
            f"process is using the CPU. {tail}",
            highlight=False,
            soft_wrap=True,
        )
    if trustworthy is False:
        first, more = stability.unsettled[0], len(stability.unsettled) - 1
        within = f" in {budget_s:g} s" if budget_s is not None else ""
        out.print(
            f"[bold yellow]warning:[/] the machine was too busy for a trustworthy ratio: the fastest repeats of "
            f"{first.call} at depth {first.depth}{f' (and {more} more)' if more else ''} never agreed within "
            f"{SETTLED:.0%}{within}; rerun on a quieter machine or with a larger --budget.",
            highlight=False,
            soft_wrap=True,
        )


def bench_report(
    out: Console, result: BenchResult, width: int, batch: int, dtype: str, repeats: int, n_classes: int
) -> None:
    budget_s = result.network.budget_s
    budget = "no limit" if budget_s is None else f"{budget_s:g} s per depth"
    blas = result.blas
    env = ", ".join(f"{k}={v}" for k, v in blas["env"].items()) or "no OPENBLAS_* variables set"
    threads = blas["threads"]
    out.print(
        f"NumPy {np.__version__}; BLAS (SciPy's, every product): {blas['library']} {blas['version']}, kernel "
        f"{blas['kernel']}, {threads} thread{'' if threads == 1 else 's'} while timing (--threads; {env})",
        highlight=False,
        soft_wrap=True,
    )
    if threads == 1:
        out.print(
            "[dim]One thread: the theorem counts operations, and one thread keeps other processes on the machine "
            "off the ratios (--threads N times with N).[/]",
            highlight=False,
            soft_wrap=True,
        )
    if result.torch is not None:
        t = result.torch
        out.print(f"PyTorch {t.version}: {t.threads} threads; HVP by {t.hvp_method}", highlight=False, soft_wrap=True)
    out.print(
        f"Network: {width} -> depth x {width} (relu) -> {n_classes}, cross-entropy; "
        f"batch {batch}, {dtype}; each time the fastest of at least {repeats} interleaved repeats"
        f" (more, up to {budget}, until the fastest {AGREE} agree within {SETTLED:.0%})",
        highlight=False,
        soft_wrap=True,
    )
    for prefix, title in (("", "mlpbp (NumPy)"), ("torch_", "PyTorch")):
        if prefix and result.torch is None:
            break
        table = Table(title=title, title_justify="left")
        for col in ("depth", "params", "loss ms", "grad ms", "grad/loss", "HVP ms", "HVP/loss"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in result.rows:
            cell = lambda name: getattr(r, prefix + name)  # noqa: E731
            table.add_row(
                str(r.depth),
                f"{r.params:,}",
                f"{cell('loss_s') * 1e3:.3f}",
                f"{cell('grad_s') * 1e3:.3f}",
                f"{cell('grad_ratio'):.2f}",
                f"{cell('hvp_s') * 1e3:.3f}",
                f"{cell('hvp_ratio'):.2f}",
            )
        out.print(table)
    bench_stability(out, result.stability, repeats, budget_s)
    out.print(bench_fit_line(result.fit, "", "mlpbp"), highlight=False, soft_wrap=True)
    if result.torch is not None:
        out.print(bench_fit_line(result.fit, "torch_", "PyTorch"), highlight=False, soft_wrap=True)
