"""`mlpbp init`: a commented starter config for a table."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import command, err


@command
def init(
    data: Path = typer.Argument(..., help="The table (CSV/TSV, Parquet, NPZ, NPY) to write a config for."),
    target: str = typer.Option(..., "--target", help="The column to predict."),
    out: Path | None = typer.Option(
        None,
        "-o",
        "--out",
        help="The config file to write (default: DATA's name with .yaml, in the working directory).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists."),
) -> None:
    """Write a complete, commented starter config for DATA: every column's kind, the missing-cell
    and category handling, the task and the default recipe, each with a comment saying why.
    It trains as written (`mlpbp train CONFIG`); an existing file is kept unless --force."""
    from mlpbp.tools.init_config import write_starter_config

    path = out or Path(data.stem + ".yaml")
    starter = write_starter_config(data, target, path, force)
    err.print(f"{starter.why}; {starter.rows:,} rows", highlight=False, soft_wrap=True)
    err.print(f"wrote {path}; train it with: mlpbp train {path}", highlight=False, soft_wrap=True)
