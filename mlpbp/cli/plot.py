"""`mlpbp plot`: PNGs of a finished run."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import command, err


@command
def plot(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN_DIR", help="A directory mlpbp train wrote (model.npz, history.csv)."
    ),
    out_dir: Path | None = typer.Option(None, "--out", help="Where to write the PNGs (default: RUN_DIR)."),
) -> None:
    """Draw a run (pip install 'mlpbp[plot]'): loss and accuracy curves, the confusion matrix
    or predicted vs actual on the test split, and for two-input data the decision regions with
    the training points (one input: the fitted curve)."""
    from mlpbp.tools.plot import plot_run

    written = plot_run(run_dir, out_dir)
    err.print(f"wrote {', '.join(p.name for p in written)} in {written[0].parent}", highlight=False, soft_wrap=True)
