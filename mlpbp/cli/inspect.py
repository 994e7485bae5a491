"""`mlpbp inspect`: what a model file holds."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import JSON_OPT, command, echo_json, out


@command
def inspect(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    as_json: bool = JSON_OPT,
) -> None:
    """Summarise a model file: layers (shapes, parameters, FLOPs), preprocessing, classes, the
    config and final metrics of its run, the versions that wrote it, and its SHA-256."""
    from mlpbp.cli.render.inspect import model_summary
    from mlpbp.tools.model_info import model_info

    info = model_info(model_path)
    if as_json:
        echo_json(info.to_json())
    else:
        model_summary(out, info)
