"""`mlpbp export`: the file written, its inputs and outputs, and what the graph does otherwise
than predict."""

from __future__ import annotations

from rich.console import Console

from mlpbp.cli.console import note
from mlpbp.tools.export import ExportResult


def export_report(console: Console, result: ExportResult) -> None:
    # an input named with spaces around it (as the training file's header wrote it) is quoted
    names = ", ".join(repr(n) if n != n.strip() else n for n in result.inputs)
    console.print(
        f"wrote {result.path} ({result.bytes:,} bytes, ONNX opset {result.opset}): inputs {names}"
        f" ([N, 1] each); outputs {', '.join(result.outputs)}",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
    for line in result.notes or []:
        note(console, line)
