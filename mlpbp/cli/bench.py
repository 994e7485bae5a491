"""`mlpbp bench`: the cost of a gradient and an HVP against the loss."""

from __future__ import annotations

import typer

from mlpbp.cli.app import command, echo_json, err, out
from mlpbp.cli.console import rich_console


@command
def bench(
    depth: int = typer.Option(
        32,
        "--depth",
        help="Deepest network timed: depths 1, 2, 4, ... up to DEPTH (included). "
        "Depth D is WIDTH inputs -> D hidden relu layers of WIDTH units -> 10 outputs, softmax "
        "cross-entropy (PyTorch runs the same network, weights and batch).",
    ),
    width: int = typer.Option(256, "--width", help="Input and hidden width."),
    batch: int = typer.Option(64, "--batch", help="Rows in the (random, seeded) batch."),
    dtype: str = typer.Option("float32", "--dtype", help="One of: float32, float64 (the names in mlpbp.DTYPES)."),
    repeats: int = typer.Option(
        5,
        "--repeats",
        help="Timed repeats (at least) after a warm-up, interleaved over the three calls; each time is the "
        "fastest. From 3 repeats on, more run until the fastest 3 agree within 3% (or --budget runs out).",
    ),
    budget: float = typer.Option(
        2.0, "--budget", metavar="SECONDS", help="Timing per depth before minima that will not agree are given up on."
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        help="BLAS threads while timing (PyTorch's too, with --compare). The theorem counts operations, and one "
        "thread keeps other processes off the ratios: with more, one busy process beside bench slows some "
        "products far more than others.",
    ),
    compare: str | None = typer.Option(
        None,
        "--compare",
        help="'torch': add the same columns for PyTorch (pip install 'mlpbp[compare]'); its HVP is double backward.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print only {"rows": [{"depth", "params", "loss_s", "grad_s", '
        '"hvp_s", "grad_ratio", "hvp_ratio", ...}], "blas": {...}, "threads": n, ...} on stdout.',
    ),
) -> None:
    """The cheap-gradient theorem, measured: time the loss J, J with its gradient, and a
    Hessian-vector product at each depth. The gradient should cost about 3x the loss, at
    every depth."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from mlpbp.cli.render.bench import bench_report
    from mlpbp.tools import bench as bench_api

    bench_api.check_arguments(depth, width, batch, dtype, repeats, compare, threads)  # before the progress bar
    if compare is not None:
        bench_api.import_torch()  # missing torch: one line and exit 2 before any timing
    depths = bench_api.depths_up_to(depth)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=rich_console(err), transient=True
    ) as bar:
        task = bar.add_task(f"depth {depths[0]}", total=len(depths))

        def progress(done: int, total: int, d: int) -> None:
            bar.update(task, completed=done, description=f"depth {depths[min(done, total - 1)]}")

        result = bench_api.run_bench(
            depth, width, batch, dtype, repeats, compare, progress=progress, budget_s=budget, threads=threads
        )
    if as_json:
        echo_json(result.to_json())
        return
    bench_report(out, result, width, batch, dtype, repeats, bench_api.N_CLASSES)
