"""`mlpbp data`, and the lines that open `mlpbp train`: the columns, the task and why."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlpbp.cli.console import note
from mlpbp.results import ABSENT
from mlpbp.run.summary import DataSummary


def _one_line(text: str) -> str:
    # A quoted CSV cell may hold line breaks; printed raw, one category spans rows of the table.
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def data_summary(console: Console, s: DataSummary, verbose: bool = True, task_line: bool = True) -> None:
    """What `mlpbp data` shows, and what opens `mlpbp train`: the task and why (unless the
    caller has said it), notes, and the columns one per line when ``verbose``."""
    used = f"{s.rows_used:,} of {s.rows:,}" if s.rows_used != s.rows else f"{s.rows:,}"
    if task_line:
        console.print(
            f"[bold]{escape(s.why)}[/]; {used} rows, input width {s.input_width}",
            highlight=False,
            soft_wrap=True,
        )
    for message in s.notes:
        note(console, message)
    if not verbose:
        return
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in ("column", "role", "kind", "missing", "values"):
        t.add_column(c, justify="right" if c == "missing" else "left", overflow="fold")
    for c in s.columns:
        if c.categories is not None:
            cats = c.categories
            values = f"{len(cats)}: " + ", ".join(map(_one_line, cats[:6])) + (", ..." if len(cats) > 6 else "")
        elif c.min is not ABSENT:
            values = f"{c.min} .. {c.max}"
        else:
            values = ""
        t.add_row(escape(_one_line(c.name)), c.role, c.kind, str(c.missing), escape(values))
    console.print(t)
    if s.classes is not None:
        weights = any(c.weight is not None for c in s.classes)
        parts = [
            f"{escape(_one_line(c.label))}: {c.count:,}" + (f" (weight {c.weight:.3g})" if weights else "")
            for c in s.classes
        ]
        console.print("classes  " + ", ".join(parts), highlight=False, soft_wrap=True)
