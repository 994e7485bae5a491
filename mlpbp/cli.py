"""The command line: a thin Typer layer over the Python API, with Rich for what people see."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from .errors import MlpbpError

app = typer.Typer(
    help="Train multilayer perceptrons with backpropagation written out in NumPy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()  # results: tables, JSON
err = Console(stderr=True)  # progress and messages, so stdout stays clean for --json


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and an exit code: how every user error leaves the tool."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command(fn):
    """Register a command whose MlpbpError becomes one line on stderr and its exit code,
    also under typer.testing.CliRunner (which bypasses main())."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlpbpError as e:
            fail(str(e), e.exit_code)

    return app.command()(wrapper)


# ---- train / predict / evaluate ------------------------------------------------------------

# ---- gradcheck -------------------------------------------------------------------------------

import json as _json  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import List as _List, Optional as _Optional  # noqa: E402

from rich.markup import escape as _escape  # noqa: E402
from rich.table import Table as _Table  # noqa: E402

from . import gradcheck as _gc  # noqa: E402


def _gc_num(x: float) -> str:
    return "nan" if x != x else f"{x:.2e}"


def _gc_result(c) -> str:
    if c.status == "fail":
        return "[bold red]FAIL[/]"
    if c.status == "skip":
        return "[yellow]SKIP[/] [dim](at kink)[/]"
    return "[green]PASS[/]" + (f" [dim]({c.skipped} at kink)[/]" if c.skipped else "")


def _gc_render(report, title: str, grouped: bool, seconds: float) -> None:
    table = _Table(title=title, title_justify="left")
    table.add_column("Check")
    table.add_column("Shape", justify="right")
    table.add_column("Max abs err", justify="right")
    table.add_column("Max rel err", justify="right")
    table.add_column("Result")
    last = None
    for c in report.checks:
        cells = [_escape(c.name), "x".join(map(str, c.shape)) or "scalar",
                 _gc_num(c.max_abs_err), _gc_num(c.max_rel_err), _gc_result(c)]
        if grouped and c.group != last:  # one section per built-in network, its name on top
            if last is not None:
                table.add_section()
            table.add_row(f"[bold cyan]{_escape(c.group)}[/]", "", "", "", "")
            last = c.group
        table.add_row(*cells)
    out.print(table)
    for c in report.failures:
        where = f"{c.group}: " if c.group else ""
        if c.kind == "param":
            what = f"parameter {c.param} of {c.name.split('(', 1)[1].rstrip(')')}"
        else:
            what = c.name
        out.print(f"[bold red]FAIL[/] {_escape(where + what)}: max abs err {_gc_num(c.max_abs_err)},"
                  f" max rel err {_gc_num(c.max_rel_err)} (rtol {report.settings['rtol']:g})",
                  highlight=False, soft_wrap=True)
        detail = _Table(box=None, padding=(0, 2), show_edge=False)
        for col in ("entry", "analytical", "numerical", "abs err"):
            detail.add_column(col, justify="left" if col == "entry" else "right")
        for d in c.details:
            index = d["index"]
            entry = index if isinstance(index, str) else (
                f"{c.param}[{', '.join(map(str, index))}]" if c.param else f"u[{', '.join(map(str, index))}]")
            detail.add_row(_escape(entry), f"{d['analytical']:.8e}", f"{d['numerical']:.8e}",
                           _gc_num(d["abs_err"]))
        out.print(detail)
    kinds = {c.kind for c in report.failures}
    if "hvp" in kinds and kinds & {"param", "input"}:
        out.print("[dim]HVP checks difference the gradient itself: fix the gradient failures"
                  " first.[/]", soft_wrap=True)
    if report.skipped:
        out.print(f"[yellow]{report.skipped} difference(s) straddled a ReLU-family kink and were left"
                  " out (reported apart, not failures).[/]", soft_wrap=True)
    n, bad = len(report.checks), len(report.failures)
    if bad:
        out.print(f"[bold red]{bad} of {n} checks FAILED[/] ({seconds:.2f} s)", soft_wrap=True)
    else:
        out.print(f"[bold green]All {n} checks passed[/]: max rel err {report.max_rel_err:.2e}"
                  f" <= rtol {report.settings['rtol']:g} ({seconds:.2f} s)", soft_wrap=True)


@command
def gradcheck(
    config: _Optional[_Path] = typer.Argument(
        None, help="YAML run config: check its network (float64) on a small batch of its data. "
        "Without it: every activation x every loss on a small built-in network (3-4-4-3, batch 6)."),
    eps: float = typer.Option(
        _gc.DEFAULT_EPS, "--eps", help="Central-difference step. In float64, 1e-6 balances "
        "truncation error (~eps^2) against round-off (~1e-16/eps): both ~1e-10."),
    rtol: float = typer.Option(
        _gc.DEFAULT_RTOL, "--rtol", help="Pass when max|analytical - numerical| over a tensor <= "
        "rtol x max(max|analytical|, max|numerical|, atol/rtol). Correct code gives ~1e-8; "
        "a wrong backward gives ~1e-2 or more."),
    atol: float = typer.Option(
        _gc.DEFAULT_ATOL, "--atol", help="Absolute floor for tensors whose gradient is ~0 "
        "(e.g. zero by symmetry): central differences leave ~2e-10 x |J| of round-off."),
    samples: int = typer.Option(
        _gc.DEFAULT_SAMPLES, "--samples", help=f"Entries checked per tensor of more than "
        f"{_gc.FULL_MAX} entries, drawn at random; smaller tensors are checked entry by entry."),
    seed: int = typer.Option(
        _gc.DEFAULT_SEED, "--seed", help="Seeds the batch rows, sampled entries, upstream "
        "gradients and HVP directions."),
    batch: int = typer.Option(
        _gc.DEFAULT_BATCH, "--batch", help="Rows of the config's data to check on."),
    overrides: _Optional[_List[str]] = typer.Option(
        None, "--set", help="Override a config key, e.g. --set model.activation=tanh (repeatable)."),
    as_json: bool = typer.Option(
        False, "--json", help='Print only {"ok": ..., "checks": [{"name", "shape", "max_abs_err", '
        '"max_rel_err", "ok", ...}]} on stdout.'),
) -> None:
    """Check backprop against central finite differences: each parameter's gradient, each
    layer's input gradient, and Hessian-vector products (vs differences of gradients, and
    symmetry). Exit 0 if all pass, 1 if any fails, 2 for bad input."""
    import time

    start = time.perf_counter()
    if config is None:
        if overrides:
            raise MlpbpError("--set needs a CONFIG to override")
        report = _gc.check_builtin(eps, rtol, atol, samples, seed)
        title = (f"gradcheck: built-in network {'-'.join(map(str, _gc.BUILTIN_WIDTHS))}, batch "
                 f"{_gc.BUILTIN_BATCH}, every activation x loss (eps {eps:g})")
    else:
        from .config import load_config

        cfg = load_config(config, overrides or ())
        report = _gc.check_config(cfg, eps, rtol, atol, samples, seed, batch)
        title = f"gradcheck: {config} (float64, batch of {batch}, eps {eps:g})"
    seconds = time.perf_counter() - start
    if as_json:
        typer.echo(_json.dumps(report.to_dict()))
    else:
        _gc_render(report, title, grouped=config is None, seconds=seconds)
    raise typer.Exit(0 if report.ok else 1)



# ---- bench -----------------------------------------------------------------------------------

from . import bench as _bench  # noqa: E402


def _bench_fit_line(fit: dict, prefix: str, label: str) -> str:
    loss, grad, hvp = (fit[f"{prefix}{k}"] for k in ("loss", "grad", "hvp"))
    per = lambda f: f["per_param_s"] * 1e9  # noqa: E731
    ratio = lambda f: per(f) / per(loss) if per(loss) > 0 else float("nan")  # noqa: E731
    return (f"{label}: time ≈ a + b·params; loss b = {per(loss):.3g} ns/param, gradient "
            f"{per(grad):.3g} ns/param ({ratio(grad):.2f}× loss), HVP {per(hvp):.3g} ns/param "
            f"({ratio(hvp):.2f}× loss); a = {loss['intercept_s'] * 1e6:.0f}, "
            f"{grad['intercept_s'] * 1e6:.0f}, {hvp['intercept_s'] * 1e6:.0f} µs")


@command
def bench(
    depth: int = typer.Option(
        32, "--depth", help="Deepest network timed: depths 1, 2, 4, ... up to DEPTH (included). "
        "Depth D is WIDTH inputs -> D hidden relu layers of WIDTH units -> 10 outputs, softmax "
        "cross-entropy (PyTorch runs the same network, weights and batch)."),
    width: int = typer.Option(256, "--width", help="Input and hidden width."),
    batch: int = typer.Option(64, "--batch", help="Rows in the (random, seeded) batch."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64."),
    repeats: int = typer.Option(
        5, "--repeats", help="Timed repeats after a warm-up; each time is the median."),
    compare: _Optional[str] = typer.Option(
        None, "--compare", help="'torch': add the same columns for PyTorch "
        "(pip install 'mlpbp[compare]'); its HVP is double backward."),
    as_json: bool = typer.Option(
        False, "--json", help='Print only {"rows": [{"depth", "params", "loss_s", "grad_s", '
        '"hvp_s", "grad_ratio", "hvp_ratio", ...}], "blas": {...}, "threads": n, ...} on stdout.'),
) -> None:
    """The cheap-gradient theorem, measured: time the loss J, J with its gradient, and a
    Hessian-vector product at each depth. The gradient should cost about 3x the loss, at
    every depth."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    try:  # messages name 'mlpbp[compare]': escaped, or Rich would read [compare] as markup
        if compare is not None:
            _bench.import_torch()  # missing torch: one line and exit 2 before any timing
        depths = _bench.depths_up_to(depth)
    except MlpbpError as e:
        fail(_escape(str(e)), e.exit_code)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(f"depth {depths[0]}", total=len(depths))

        def progress(done: int, total: int, d: int) -> None:
            bar.update(task, completed=done,
                       description=f"depth {depths[min(done, total - 1)]}")

        result = _bench.run_bench(depth, width, batch, dtype, repeats, compare, progress=progress)
    if as_json:
        typer.echo(_json.dumps(result))
        return
    blas = result["blas"]
    env = ", ".join(f"{k}={v}" for k, v in blas["env"].items()) or "no OPENBLAS_* variables set"
    out.print(f"NumPy {_bench.np.__version__} BLAS: {blas['library']} {blas['version']}, kernel "
              f"{blas['kernel']}, {blas['threads']} threads ({env})", highlight=False, soft_wrap=True)
    if "torch" in result:
        t = result["torch"]
        out.print(f"PyTorch {t['version']}: {t['threads']} threads; HVP by {t['hvp_method']}",
                  highlight=False, soft_wrap=True)
    out.print(f"Network: {width} -> depth x {width} (relu) -> {_bench.N_CLASSES}, cross-entropy; "
              f"batch {batch}, {dtype}; median of {repeats}", highlight=False, soft_wrap=True)
    for prefix, title in (("", "mlpbp (NumPy)"), ("torch_", "PyTorch")):
        if prefix and "torch" not in result:
            break
        table = _Table(title=title, title_justify="left")
        for col in ("depth", "params", "loss ms", "grad ms", "grad/loss", "HVP ms", "HVP/loss"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in result["rows"]:
            table.add_row(str(r["depth"]), f"{r['params']:,}", f"{r[prefix + 'loss_s'] * 1e3:.3f}",
                          f"{r[prefix + 'grad_s'] * 1e3:.3f}", f"{r[prefix + 'grad_ratio']:.2f}",
                          f"{r[prefix + 'hvp_s'] * 1e3:.3f}", f"{r[prefix + 'hvp_ratio']:.2f}")
        out.print(table)
    out.print(_bench_fit_line(result["fit"], "", "mlpbp"), highlight=False, soft_wrap=True)
    if "torch" in result:
        out.print(_bench_fit_line(result["fit"], "torch_", "PyTorch"), highlight=False,
                  soft_wrap=True)


def main() -> None:
    try:
        app()
    except MlpbpError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
