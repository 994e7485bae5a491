"""`mlpbp export`: a model file in a format other runtimes load."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import JSON_OPT, command, echo_json, err
from mlpbp.errors import ArgumentError

FORMATS = ("onnx",)


@command
def export(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    fmt: str = typer.Option("onnx", "--format", help="Output format: onnx (pip install 'mlpbp[onnx]')."),
    out_file: Path | None = typer.Option(
        None, "-o", "--out", help="Where to write (default: MODEL with the format's suffix, e.g. model.onnx)."
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Export a trained model, preprocessing included, as one graph: ONNX with one named
    [N, 1] input per raw column; classifiers output `label` and `probabilities`,
    regressors `prediction` in the target's units."""
    from mlpbp.tools import export as export_api

    if fmt not in FORMATS:
        raise ArgumentError(f"--format {fmt!r} is not supported (allowed: {', '.join(FORMATS)})")
    from mlpbp.run.folder import refuse_same_path

    target = out_file or model_path.with_suffix(f".{fmt}")
    refuse_same_path(target, {"model file": model_path}, "--out" if out_file else "the output")
    result = export_api.export_onnx(model_path, target)
    if as_json:
        echo_json(result.to_json())
    else:
        from mlpbp.cli.render.export import export_report

        export_report(err, result)
