"""`mlpbp cv`: K-fold cross-validation of a config, each metric's mean ± sd and a table per fold."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import CONFIG_ARG, JSON_OPT, SET_OPT, command, echo_json, err, fail, out, sigint_requests_stop
from mlpbp.cli.console import fmt, note


@command
def cv(
    config: Path = CONFIG_ARG,
    folds: int = typer.Option(5, "--folds", metavar="K", help="Number of folds (at least 2)."),
    overrides: list[str] | None = SET_OPT,
    out_dir: Path | None = typer.Option(
        None, "--out", metavar="DIR", help="Where each fold's run goes, as fold-1 ... fold-K (default: output.dir/cv)."
    ),
    as_json: bool = JSON_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No line per fold while it runs; only the summary."),
) -> None:
    """Cross-validate a config: K training runs, each with one fold as its test rows (stratified by
    class for classification; whole ids together when data.id is set), preprocessing fitted on
    each run's training rows; every test metric's mean ± standard deviation and a table per fold."""
    from rich.table import Table

    from mlpbp.run.config import load_config
    from mlpbp.run.distributed import launched_ranks
    from mlpbp.tools import cv as cv_api

    if launched_ranks() > 1:
        fail("mlpbp cv runs as one process, not under mpiexec; run it without mpiexec")
    cfg = load_config(config, overrides or ())
    console = err if as_json else out

    def on_fold(fold) -> None:  # a cv_api.Fold
        if not quiet:
            shown = ", ".join(f"{k} {fmt(v)}" for k, v in fold.metrics.items() if _scalar(v))
            console.print(
                f"fold {fold.number}/{folds}: {len(fold.test_rows)} test rows, {fold.epochs} epochs; {shown}",
                highlight=False,
                soft_wrap=True,
            )

    with sigint_requests_stop() as stop:
        result = cv_api.cross_validate(cfg, folds, out_dir, stop=stop, on_fold=on_fold)
    if as_json:
        echo_json(
            {
                "task": result.task,
                "k": len(result.folds),
                "rows": result.rows,
                "stratified": result.stratified,
                "grouped_by": result.grouped_by,
                "mean": result.mean,
                "std": result.std,
                "folds": [
                    {
                        "fold": f.number,
                        "test_rows": len(f.test_rows),
                        "train_rows": len(f.train_rows),
                        "val_rows": len(f.val_rows),
                        "epochs": f.epochs,
                        "out_dir": str(f.out_dir),
                        **{k: v for k, v in f.metrics.items() if _scalar(v) or v is None},
                    }
                    for f in result.folds
                ],
            }
        )
        return
    how = "stratified by class" if result.stratified else f"grouped by {result.grouped_by}" if result.grouped_by else ""
    console.print(
        f"{len(result.folds)}-fold cross-validation of {config} ({result.task}, {result.rows} rows"
        f"{', ' + how if how else ''})",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(box=None, pad_edge=False)
    for h in ("fold", "train", "val", "test", "epochs", *result.metrics):
        table.add_column(h, justify="right")
    for f in result.folds:
        cells = [fmt(f.metrics.get(m)) for m in result.metrics]
        table.add_row(
            str(f.number), *map(str, (len(f.train_rows), len(f.val_rows), len(f.test_rows), f.epochs)), *cells
        )
    console.print(table)
    console.print()
    summary = Table(box=None, pad_edge=False)
    summary.add_column("metric")
    summary.add_column("mean ± sd", justify="right")
    for m in result.metrics:
        if m in result.mean:
            summary.add_row(m, f"{fmt(result.mean[m])} ± {fmt(result.std[m])}")
    console.print(summary)
    for line in result.notes:
        note(console, line)
    console.print(f"wrote fold-1 … fold-{len(result.folds)} in {result.folds[0].out_dir.parent}", highlight=False)


def _scalar(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
