"""`mlpbp gradcheck`: one row per check, and each failure's worst entries."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _gc_num(x: float) -> str:
    return "nan" if x != x else f"{x:.2e}"


def _gc_result(c) -> str:
    if c.status == "fail":
        return "[bold red]FAIL[/]"
    if c.status == "skip":
        return "[yellow]SKIP[/] [dim](at kink)[/]"
    return "[green]PASS[/]" + (f" [dim]({c.skipped} at kink)[/]" if c.skipped else "")


def gradcheck_report(out: Console, report, title: str, grouped: bool, seconds: float) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("Check")
    table.add_column("Shape", justify="right")
    table.add_column("Max abs err", justify="right")
    table.add_column("Max rel err", justify="right")
    table.add_column("Result")
    last = None
    for c in report.checks:
        cells = [
            escape(c.name),
            "x".join(map(str, c.shape)) or "scalar",
            _gc_num(c.max_abs_err),
            _gc_num(c.max_rel_err),
            _gc_result(c),
        ]
        # one section per built-in network, or per mode of a network checked in both, named on top
        if (grouped or c.mode) and c.section != last:
            if last is not None:
                table.add_section()
            table.add_row(f"[bold cyan]{escape(c.section)}[/]", "", "", "", "")
            last = c.section
        table.add_row(*cells)
    out.print(table)
    for c in report.failures:
        where = f"{c.section}: " if c.section else ""
        if c.kind == "param":
            what = f"parameter {c.param} of {c.name.split('(', 1)[1].rstrip(')')}"
        else:
            what = c.name
        out.print(
            f"[bold red]FAIL[/] {escape(where + what)}: max abs err {_gc_num(c.max_abs_err)},"
            f" max rel err {_gc_num(c.max_rel_err)} (rtol {report.settings['rtol']:g})",
            highlight=False,
            soft_wrap=True,
        )
        detail = Table(box=None, padding=(0, 2), show_edge=False)
        for col in ("entry", "analytical", "numerical", "abs err"):
            detail.add_column(col, justify="left" if col == "entry" else "right")
        for d in c.details:
            index = d["index"]
            entry = (
                index
                if isinstance(index, str)
                else (f"{c.param}[{', '.join(map(str, index))}]" if c.param else f"u[{', '.join(map(str, index))}]")
            )
            detail.add_row(escape(entry), f"{d['analytical']:.8e}", f"{d['numerical']:.8e}", _gc_num(d["abs_err"]))
        out.print(detail)
    kinds = {c.kind for c in report.failures}
    if "hvp" in kinds and kinds & {"param", "input"}:
        out.print("[dim]HVP checks difference the gradient itself: fix the gradient failures first.[/]", soft_wrap=True)
    if report.skipped:
        out.print(
            f"[yellow]{report.skipped} difference(s) straddled a ReLU-family kink and were left"
            " out (reported apart, not failures).[/]",
            soft_wrap=True,
        )
    modes = report.settings.get("modes", [])
    if len(modes) > 1:
        out.print(
            f"[dim]Checked in training mode (every dropout keeps one mask) and in evaluation mode"
            f" ({escape(', '.join(report.settings.get('eval_changes', [])))}).[/]",
            soft_wrap=True,
        )
    no_hvp = report.settings.get("no_hvp")
    if no_hvp:
        out.print(
            "[dim]No Hessian-vector product checks: no R-operator passes (rforward, rbackward) in"
            f" {escape(', '.join(map(repr, no_hvp)))}.[/]",
            soft_wrap=True,
        )
    n, bad = len(report.checks), len(report.failures)
    if bad:
        out.print(f"[bold red]{bad} of {n} checks FAILED[/] ({seconds:.2f} s)", soft_wrap=True)
    else:
        out.print(
            f"[bold green]All {n} checks passed[/]: max rel err {report.max_rel_err:.2e}"
            f" <= rtol {report.settings['rtol']:g} ({seconds:.2f} s)",
            soft_wrap=True,
        )
