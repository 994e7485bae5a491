"""What people see: Rich tables, progress bars and loss curves. The numerics never import this."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mlpbp.run.trainer import RunResult, TrainHooks

SPARKS = "▁▂▃▄▅▆▇█"
MAX_ROWS = 60  # epochs shown in the live table; every epoch is in history.csv


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def sparkline(values: list[float], width: int = 60) -> str:
    """A loss curve in one line of block characters, on a log scale (losses span decades)."""
    vals = np.log10(np.maximum(np.asarray(values, dtype=np.float64), 1e-300))
    if vals.size > width:  # average into `width` bins
        vals = np.array([b.mean() for b in np.array_split(vals, width)])
    lo, hi = vals.min(), vals.max()
    idx = np.zeros(vals.size, int) if hi - lo < 1e-12 else np.round((vals - lo) / (hi - lo) * 7).astype(int)
    return "".join(SPARKS[i] for i in idx)


class RichTrainHooks(TrainHooks):
    """Rows of a table as epochs end, and a progress bar inside long epochs."""

    def __init__(self, console: Console, task: str, epochs: int, ranks: int = 1) -> None:
        self.console, self.task = console, task
        self.every = max(1, -(-epochs // MAX_ROWS))
        self.epochs = epochs
        self.columns = ["epoch", "train loss", "val loss"]
        if task == "classification":
            self.columns += ["train acc", "val acc"]
        self.columns += ["lr", "seconds"]
        self.ranks = ranks
        if ranks > 1:  # of the seconds, how many the ranks spent exchanging gradients and metrics
            self.columns += ["comm s"]
        self.bars = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.bar = None
        self.header_done = False

    def _row(self, cells, header: bool = False) -> Table:
        t = Table(box=None, show_header=header, pad_edge=False, header_style="bold")
        for c in self.columns:
            t.add_column(c, justify="right", width=max(len(c), 10))
        if cells is not None:
            t.add_row(*cells)
        return t

    def threads(self, description: str) -> None:
        self.console.print(f"[dim]{description}[/]", highlight=False, soft_wrap=True)

    def epoch_start(self, epoch: int, n_steps: int) -> None:
        if not self.header_done:
            if self.every > 1:
                self.console.print(f"[dim]one row every {self.every} epochs; all are in history.csv[/]")
            self.console.print(self._row(None, header=True))
            self.bars.start()
            self.header_done = True
        if n_steps >= 200:  # short epochs would only flicker
            if self.bar is None:
                self.bar = self.bars.add_task("", total=n_steps, epoch=epoch)
            self.bars.update(self.bar, completed=0, total=n_steps, epoch=epoch, visible=True)

    def progress(self, steps_done: int, n_steps: int) -> None:
        if self.bar is not None:
            self.bars.update(self.bar, completed=steps_done)

    def epoch_end(self, r: dict) -> None:
        if self.bar is not None:
            self.bars.update(self.bar, visible=False)
        if r["epoch"] % self.every and r["epoch"] != self.epochs:
            return
        cells = [str(r["epoch"]), fmt(r["train_loss"]), fmt(r["val_loss"])]
        if self.task == "classification":
            cells += [fmt(r["train_accuracy"]), fmt(r["val_accuracy"])]
        cells += [f"{r['learning_rate']:.4g}", f"{r['seconds']:.2f}"]
        if self.ranks > 1:
            cells.append(f"{r['comm_seconds']:.2f}")
        self.console.print(self._row(cells))

    def close(self) -> None:
        self.bars.stop()


def metrics_table(metrics: dict, n_rows: int | None = None) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    if n_rows is not None:
        t.add_row("rows", str(n_rows))
    names = {"loss": "loss", "accuracy": "accuracy", "mse": "MSE", "r2": "R²"}
    for k, label in names.items():
        if k in metrics:
            t.add_row(label, fmt(metrics[k]))
    return t


def train_summary(console: Console, result: RunResult) -> None:
    where = "test" if result.evaluated_on == "test" else "training (no test split)"
    console.print(f"\n[bold]{where} metrics[/]")
    console.print(metrics_table(result.test))
    if result.stopped_early:
        console.print(f"stopped early; kept the weights of epoch {result.best_epoch} (best validation loss)")
    losses = [r["train_loss"] for r in result.history]
    if len(losses) > 1:
        console.print(f"\n[bold]loss curve[/] (log scale, {losses[0]:.3g} → {losses[-1]:.3g})")
        console.print(f"  train {sparkline(losses)}", highlight=False)
        val = [r["val_loss"] for r in result.history]
        if all(v is not None for v in val):
            console.print(f"  val   {sparkline(val)}", highlight=False)
    console.print(f"\nwrote {result.model_path}, history.csv, config.yaml in {result.out_dir}", highlight=False)


# ---- gradcheck ----------------------------------------------------------------------------


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
        if grouped and c.group != last:  # one section per built-in network, its name on top
            if last is not None:
                table.add_section()
            table.add_row(f"[bold cyan]{escape(c.group)}[/]", "", "", "", "")
            last = c.group
        table.add_row(*cells)
    out.print(table)
    for c in report.failures:
        where = f"{c.group}: " if c.group else ""
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
    n, bad = len(report.checks), len(report.failures)
    if bad:
        out.print(f"[bold red]{bad} of {n} checks FAILED[/] ({seconds:.2f} s)", soft_wrap=True)
    else:
        out.print(
            f"[bold green]All {n} checks passed[/]: max rel err {report.max_rel_err:.2e}"
            f" <= rtol {report.settings['rtol']:g} ({seconds:.2f} s)",
            soft_wrap=True,
        )


# ---- bench --------------------------------------------------------------------------------


def bench_fit_line(fit: dict, prefix: str, label: str) -> str:
    loss, grad, hvp = (fit[f"{prefix}{k}"] for k in ("loss", "grad", "hvp"))
    per = lambda f: f["per_param_s"] * 1e9  # noqa: E731
    ratio = lambda f: per(f) / per(loss) if per(loss) > 0 else float("nan")  # noqa: E731
    return (
        f"{label}: time ≈ a + b·params; loss b = {per(loss):.3g} ns/param, gradient "
        f"{per(grad):.3g} ns/param ({ratio(grad):.2f}× loss), HVP {per(hvp):.3g} ns/param "
        f"({ratio(hvp):.2f}× loss); a = {loss['intercept_s'] * 1e6:.0f}, "
        f"{grad['intercept_s'] * 1e6:.0f}, {hvp['intercept_s'] * 1e6:.0f} µs"
    )


def bench_report(out: Console, result: dict, width: int, batch: int, dtype: str, repeats: int, n_classes: int) -> None:
    blas = result["blas"]
    env = ", ".join(f"{k}={v}" for k, v in blas["env"].items()) or "no OPENBLAS_* variables set"
    out.print(
        f"NumPy {np.__version__} BLAS: {blas['library']} {blas['version']}, kernel "
        f"{blas['kernel']}, {blas['threads']} threads ({env})",
        highlight=False,
        soft_wrap=True,
    )
    if "torch" in result:
        t = result["torch"]
        out.print(
            f"PyTorch {t['version']}: {t['threads']} threads; HVP by {t['hvp_method']}", highlight=False, soft_wrap=True
        )
    out.print(
        f"Network: {width} -> depth x {width} (relu) -> {n_classes}, cross-entropy; "
        f"batch {batch}, {dtype}; median of {repeats}",
        highlight=False,
        soft_wrap=True,
    )
    for prefix, title in (("", "mlpbp (NumPy)"), ("torch_", "PyTorch")):
        if prefix and "torch" not in result:
            break
        table = Table(title=title, title_justify="left")
        for col in ("depth", "params", "loss ms", "grad ms", "grad/loss", "HVP ms", "HVP/loss"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in result["rows"]:
            table.add_row(
                str(r["depth"]),
                f"{r['params']:,}",
                f"{r[prefix + 'loss_s'] * 1e3:.3f}",
                f"{r[prefix + 'grad_s'] * 1e3:.3f}",
                f"{r[prefix + 'grad_ratio']:.2f}",
                f"{r[prefix + 'hvp_s'] * 1e3:.3f}",
                f"{r[prefix + 'hvp_ratio']:.2f}",
            )
        out.print(table)
    out.print(bench_fit_line(result["fit"], "", "mlpbp"), highlight=False, soft_wrap=True)
    if "torch" in result:
        out.print(bench_fit_line(result["fit"], "torch_", "PyTorch"), highlight=False, soft_wrap=True)
