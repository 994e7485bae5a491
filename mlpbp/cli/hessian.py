"""`mlpbp hessian`: eigenvalues, trace and spectral density of a trained model's curvature."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import JSON_OPT, command, echo_json, err, out
from mlpbp.errors import MlpbpError


@command
def hessian(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(
        ..., metavar="DATA.csv", help="Labelled CSV with the model's feature and target columns."
    ),
    top_k: int = typer.Option(1, "--top-k", help="How many of the largest eigenvalues (Lanczos)."),
    bottom_k: int = typer.Option(0, "--bottom-k", help="How many of the smallest eigenvalues (Lanczos)."),
    trace: bool = typer.Option(False, "--trace", help="Estimate the trace (Hutch++, Rademacher probes)."),
    density: bool = typer.Option(
        False, "--density", help="Spectral density by stochastic Lanczos quadrature (a terminal histogram)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", metavar="FILE.png", help="Also draw the density to a PNG (implies --density)."
    ),
    curvature: str = typer.Option(
        "hessian", "--curvature", help="hessian (∇²J, indefinite) or gauss_newton (Jᵀ H_L J, PSD)."
    ),
    rows: int | None = typer.Option(None, "--rows", help="Use a seeded random sample of this many rows."),
    seed: int = typer.Option(0, "--seed", help="Seed of the row sample and of every random probe."),
    probes: int = typer.Option(100, "--probes", help="Curvature products for the trace."),
    slq_probes: int = typer.Option(8, "--slq-probes", help="Lanczos runs for the density."),
    slq_steps: int = typer.Option(60, "--slq-steps", help="Lanczos steps per density run."),
    tol: float = typer.Option(
        1e-6, "--tol", help="Eigenvalues: stop when each Ritz residual ‖Hx − θx‖ is at most tol·max|θ|."
    ),
    max_steps: int = typer.Option(300, "--max-steps", help="Eigenvalues: Lanczos steps (products) at most."),
    batch_size: int = typer.Option(1000, "--batch-size", help="Rows per batch of each product (memory)."),
    as_json: bool = JSON_OPT,
) -> None:
    """The curvature of a trained model's loss on a labelled table, from Hessian-vector
    products alone (the Hessian is never formed): extreme eigenvalues, trace and spectral
    density, of the exact Hessian or its Gauss-Newton part. The model's own standardisation
    is applied to the rows, and everything is computed in float64."""
    from mlpbp.cli.render.hessian import hessian_report
    from mlpbp.cli.render.metrics import skipped_notes
    from mlpbp.run.distributed import world
    from mlpbp.tools import hessian as hessian_api

    comm = world()  # under mpiexec: the rows are shared among the ranks, rank 0 prints
    if comm.rank:
        out.quiet = err.quiet = True
    opts = hessian_api.HessianOptions(
        curvature=curvature,
        top_k=top_k,
        bottom_k=bottom_k,
        trace=trace,
        density=density or plot is not None,
        rows=rows,
        seed=seed,
        probes=probes,
        slq_probes=slq_probes,
        slq_steps=slq_steps,
        tol=tol,
        max_steps=max_steps,
        batch_size=batch_size,
    )
    if plot is not None and plot.suffix.lower() != ".png":
        raise MlpbpError(f"--plot writes a PNG: give a FILE.png, not {plot}")
    with err.status("computing", spinner="dots") as status:
        result = comm.agree(lambda: hessian_api.analyse(model_path, data, opts, lambda m: status.update(m), comm))
    if comm.rank:
        return
    if result.skipped is not None:
        skipped_notes(err, data.name, result.skipped.missing_target, result.skipped.missing_feature)
    if result.note is not None:
        err.print(f"note: {result.note}", highlight=False)
    if plot is not None:
        title = f"{model_path.parent.name}/{model_path.name} on {data.name}: {curvature} ({result.rows} rows)"
        hessian_api.plot_density(result, plot, title)
    if as_json:
        echo_json(result.to_json())
        return
    hessian_report(out, result, str(model_path), str(data))
    if plot is not None:
        err.print(f"wrote {plot}", highlight=False)
