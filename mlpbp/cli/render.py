"""What people see: Rich tables, progress bars and loss curves. The numerics never import this."""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console, ConsoleDimensions
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
PIPE_WIDTH = 10_000  # "never wrap": wider than any line we print
MAX_ROWS = 60  # epochs shown in the live table; every epoch is in history.csv


class PipeAwareConsole(Console):
    """A Console whose width follows the terminal at each print (COLUMNS included), and that
    never wraps when its output is not a terminal: a file or a pipe gets whole lines, so paths
    and table rows are never split at an arbitrary 80 columns."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._width = None  # Console reads COLUMNS once, at construction; read it per print

    @property
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)
        return dims if self.is_terminal else ConsoleDimensions(PIPE_WIDTH, dims.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)


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


# The epoch table's columns: (history key, header). Narrow terminals drop them in DROP_ORDER.
EPOCH_COLUMNS = (
    ("epoch", "epoch"),
    ("train_loss", "train loss"),
    ("val_loss", "val loss"),
    ("train_accuracy", "train acc"),
    ("val_accuracy", "val acc"),
    ("learning_rate", "lr"),
    ("gradients", "grads"),  # full-data gradient passes so far
    ("products", "products"),  # full-data curvature products so far
    ("sharpness", "sharpness"),  # top Hessian eigenvalue (train.sharpness_every)
    ("stability_limit", "2/lr"),
    ("seconds", "seconds"),
    ("comm_seconds", "comm s"),  # of the seconds, those the MPI ranks spent exchanging (ranks > 1)
)
DROP_ORDER = ("comm_seconds", "products", "seconds", "gradients", "learning_rate", "train_accuracy", "val_loss")
CELL = 8  # the widest value a cell shows: "1.23e-05"


def epoch_table_layout(
    task: str, epochs: int, width: int, ranks: int = 1, sharpness: bool = False
) -> list[tuple[str, str, int]]:
    """(key, header, cell width) of the columns that fit ``width`` without wrapping: every
    column at a roomy width when there is space, then narrower, then fewer columns."""
    keys = [
        k
        for k, _ in EPOCH_COLUMNS
        if (task == "classification" or "accuracy" not in k)
        and (ranks > 1 or k != "comm_seconds")
        and (sharpness or k not in ("sharpness", "stability_limit"))
    ]
    headers = dict(EPOCH_COLUMNS)
    epoch_w = max(len("epoch"), len(str(epochs)) + 1)  # +1: the best-epoch mark
    for drop in range(len(DROP_ORDER) + 1):
        shown = [k for k in keys if k not in DROP_ORDER[:drop]]
        for cell in (10, CELL):
            cols = [(k, headers[k], epoch_w if k == "epoch" else max(len(headers[k]), cell)) for k in shown]
            if sum(w for *_, w in cols) + 2 * (len(cols) - 1) <= width:
                return cols
    return cols


class RichTrainHooks(TrainHooks):
    """Rows of a table as epochs end, and a progress bar inside long epochs. Long runs show
    every k-th epoch, and always the first, the best and the last."""

    def __init__(
        self, console: Console, task: str, epochs: int, ranks: int = 1, table: bool = True, sharpness: bool = False
    ) -> None:
        self.console, self.task, self.table = console, task, table
        self.every = max(1, -(-epochs // MAX_ROWS))
        self.epochs = epochs
        self.layout = epoch_table_layout(task, epochs, console.width, ranks, sharpness)
        self.records: dict[int, dict] = {}
        self.shown: set[int] = set()
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
        for _, name, width in self.layout:
            t.add_column(name, justify="right", width=width, no_wrap=True)
        if cells is not None:
            t.add_row(*cells)
        return t

    def threads(self, description: str) -> None:
        if self.table:  # --quiet keeps only the resume line
            self.console.print(f"[dim]{description}[/]", highlight=False, soft_wrap=True)

    def _print_record(self, r: dict, mark: str = "") -> None:
        values = {
            "epoch": f"{r['epoch']}{mark}",
            "learning_rate": "-" if r["learning_rate"] is None else f"{r['learning_rate']:.3g}",
            "gradients": f"{r.get('gradients', 0.0):.4g}",
            "products": f"{r.get('products', 0.0):.4g}",
            "seconds": f"{r['seconds']:.2f}",
            "comm_seconds": f"{r.get('comm_seconds', 0.0):.2f}",
        }
        cells = [values[k] if k in values else fmt(r.get(k)) for k, *_ in self.layout]
        self.console.print(self._row(cells))
        self.shown.add(r["epoch"])

    def resumed(self, epoch: int, step: int, path, complete: bool) -> None:
        if complete:
            where = f"the checkpoint's run is complete (after epoch {epoch - 1}); writing its results"
        else:
            where = f"resuming at epoch {epoch}, step {step}"
        self.console.print(f"{where} (from {path})", highlight=False, soft_wrap=True)

    def epoch_start(self, epoch: int, n_steps: int) -> None:
        if not self.table:
            return
        if not self.header_done:
            if self.every > 1:
                self.console.print(
                    f"[dim]one row every {self.every} epochs, and the first, best and last; all are in history.csv[/]",
                    soft_wrap=True,
                )
            self.console.print(self._row(None, header=True))
            if self.console.is_terminal:  # a pipe gets rows only (a stopped bar leaves a blank line)
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
        if not self.table:
            return
        if self.bar is not None:
            self.bars.update(self.bar, visible=False)
        first = not self.records
        self.records[r["epoch"]] = r
        if first or r["epoch"] % self.every == 0 or r["epoch"] == self.epochs:
            self._print_record(r)

    def finish(self, best_epoch: int | None) -> None:
        """After the run: the last epoch and the best one, if the every-k-th rows skipped them."""
        if not self.table or not self.records:
            return
        last = max(self.records)
        if last not in self.shown:
            self._print_record(self.records[last])
        if best_epoch in self.records and best_epoch not in self.shown:
            self._print_record(self.records[best_epoch], mark="*")
            self.console.print("[dim]* the best validation loss[/]", soft_wrap=True)

    def close(self) -> None:
        if self.bars.live.is_started:
            self.bars.stop()


def metrics_table(metrics: dict, n_rows: int | None = None) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    if n_rows is not None:
        t.add_row("rows", str(n_rows))
    names = {
        "loss": "loss",
        "accuracy": "accuracy",
        "balanced_accuracy": "balanced accuracy",
        "macro_f1": "macro F1",
        "mse": "MSE",
        "mae": "MAE",
        "r2": "R²",
    }
    for k, label in names.items():
        if k in metrics:
            t.add_row(label, fmt(metrics[k]))
    return t


def metrics_report(console: Console, metrics: dict, n_rows: int | None = None) -> None:
    """The summary metrics, then one row per class (or per output, when there are several)."""
    console.print(metrics_table(metrics, n_rows))
    per_class, per_output = metrics.get("per_class"), metrics.get("outputs")
    if per_class:
        t = Table(box=None, pad_edge=False, header_style="bold")
        for c in ("class", "precision", "recall", "F1", "support"):
            t.add_column(c, justify="left" if c == "class" else "right")
        for r in per_class:
            t.add_row(escape(r["label"]), fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]), str(r["support"]))
        console.print(t)
    elif per_output and len(per_output) > 1:
        t = Table(box=None, pad_edge=False, header_style="bold")
        for c in ("output", "MSE", "MAE", "R²"):
            t.add_column(c, justify="left" if c == "output" else "right")
        for r in per_output:
            t.add_row(escape(r["name"]), fmt(r["mse"]), fmt(r["mae"]), fmt(r["r2"]))
        console.print(t)


class LoadProgress:
    """Rows read so far, on one transient line, for loads that take more than a moment."""

    DELAY_S = 0.5

    def __init__(self, console: Console, path) -> None:
        self.console, self.path = console, path
        self.bar = Progress(
            TextColumn(f"reading {escape(str(path))}"),
            BarColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = None
        self.started = None

    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __call__(self, rows: int, fraction: float) -> None:
        if self.task is None:
            if time.monotonic() - self.started < self.DELAY_S or fraction >= 1.0:
                return
            self.bar.start()
            self.task = self.bar.add_task("", total=1.0, rows="0")
        self.bar.update(self.task, completed=fraction, rows=f"{'~' if fraction < 1 else ''}{rows:,}")

    def __exit__(self, *exc) -> None:
        if self.task is not None:
            self.bar.stop()


def note(console: Console, message: str) -> None:
    console.print(f"[dim]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


DROP_ROWS = " (the model was trained with data.missing: drop_rows)"


def skipped_notes(console: Console, name: str, missing_target: int = 0, missing_feature: int = 0) -> None:
    """The notes for the rows of a labelled table (named ``name``) that are not scored:
    ``SkippedRows`` counts (what `evaluate` and `hessian` skip)."""
    if missing_target:
        note(console, f"{name}: skipping {missing_target} row(s) whose target is missing")
    if missing_feature:
        note(console, f"{name}: skipping {missing_feature} row(s) with a missing feature cell{DROP_ROWS}")


def data_summary(console: Console, s: dict, verbose: bool = True, task_line: bool = True) -> None:
    """What `mlpbp data` shows, and what opens `mlpbp train`: notes, the task and why (unless the
    caller has said it), and the columns one per line when ``verbose``."""
    for message in s["notes"]:
        note(console, message)
    used = f"{s['rows_used']:,} of {s['rows']:,}" if s["rows_used"] != s["rows"] else f"{s['rows']:,}"
    if task_line:
        console.print(
            f"[bold]{escape(s['why'])}[/]; {used} rows, input width {s['input_width']}",
            highlight=False,
            soft_wrap=True,
        )
    if not verbose:
        return
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in ("column", "role", "kind", "missing", "values"):
        t.add_column(c, justify="right" if c == "missing" else "left", overflow="fold")
    for c in s["columns"]:
        if "categories" in c:
            cats = c["categories"]
            values = f"{len(cats)}: " + ", ".join(cats[:6]) + (", ..." if len(cats) > 6 else "")
        elif "min" in c:
            values = f"{c['min']} .. {c['max']}"
        else:
            values = ""
        t.add_row(escape(c["name"]), c["role"], c["kind"], str(c["missing"]), escape(values))
    console.print(t)
    if "classes" in s:
        weights = any("weight" in c for c in s["classes"])
        parts = [
            f"{escape(c['label'])}: {c['count']:,}" + (f" (weight {c['weight']:.3g})" if weights else "")
            for c in s["classes"]
        ]
        console.print("classes  " + ", ".join(parts), highlight=False, soft_wrap=True)


def train_summary(console: Console, result: RunResult) -> None:
    where = "test" if result.evaluated_on == "test" else "training (no test split)"
    console.print(f"\n[bold]{where} metrics[/]")
    metrics_report(console, result.test)
    if result.stopped_early:
        console.print(
            f"stopped early; kept the weights of epoch {result.best_epoch} (best validation loss)", soft_wrap=True
        )
    losses = [r["train_loss"] for r in result.history]
    if len(losses) > 1:
        console.print(f"\n[bold]loss curve[/] (log scale, {losses[0]:.3g} → {losses[-1]:.3g})")
        console.print(f"  train {sparkline(losses)}", highlight=False)
        val = [r["val_loss"] for r in result.history]
        if all(v is not None for v in val):
            console.print(f"  val   {sparkline(val)}", highlight=False)
    console.print(
        f"\nwrote {result.model_path}, history.csv, config.yaml in {result.out_dir}", highlight=False, soft_wrap=True
    )


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
    if loss is None:
        return f"{label}: no line fit: the loss time does not grow with the parameter count (too few depths, or noise)"

    def part(name: str, f: dict | None) -> str:
        if f is None:
            return f"{name} no fit"
        per = f["per_param_s"] * 1e9
        return f"{name} {per:.3g} ns/param ({per / (loss['per_param_s'] * 1e9):.2f}× loss)"

    a = ", ".join("-" if f is None else f"{f['intercept_s'] * 1e6:.0f}" for f in (loss, grad, hvp))
    return (
        f"{label}: time ≈ a + b·params; loss b = {loss['per_param_s'] * 1e9:.3g} ns/param, "
        f"{part('gradient', grad)}, {part('HVP', hvp)}; a = {a} µs"
    )


def bench_stability(out: Console, stability: dict, repeats: int) -> None:
    if stability["max_spread"] is None:
        out.print(f"[dim]{repeats} repeat: stability not measured (use --repeats 5 or more)[/]", soft_wrap=True)
    elif stability["unstable"]:
        w = stability["worst"]
        out.print(
            f"[bold yellow]warning:[/] unstable timings: repeats differ by up to "
            f"{stability['max_spread']:.0%} of their median (depth {w['depth']}, {w['call']}); another "
            "process is using the CPU. Treat the numbers as rough; rerun on a quiet machine or with more --repeats.",
            highlight=False,
            soft_wrap=True,
        )


def bench_report(out: Console, result: dict, width: int, batch: int, dtype: str, repeats: int, n_classes: int) -> None:
    blas = result["blas"]
    env = ", ".join(f"{k}={v}" for k, v in blas["env"].items()) or "no OPENBLAS_* variables set"
    out.print(
        f"NumPy {np.__version__}; BLAS (SciPy's, every product): {blas['library']} {blas['version']}, kernel "
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
    bench_stability(out, result["stability"], repeats)
    out.print(bench_fit_line(result["fit"], "", "mlpbp"), highlight=False, soft_wrap=True)
    if "torch" in result:
        out.print(bench_fit_line(result["fit"], "torch_", "PyTorch"), highlight=False, soft_wrap=True)


# ---- inspect ------------------------------------------------------------------------------

NOT_RECORDED = "[dim]not recorded[/] (an older model file)"


def _flops(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}FLOP"
    return f"{n} FLOP"


def _join_short(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


def model_summary(out: Console, info: dict) -> None:
    say = lambda text: out.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    say(f"[bold]{escape(info['path'])}[/]  ({info['bytes']:,} bytes, model format {info['format_version']})")
    say(f"sha256  {info['sha256']}")
    say(
        f"{info['task']}: {'-'.join(map(str, info['widths']))} {info['activation']} network, "
        f"{info['params']:,} parameters, {info['loss']} loss, {info['dtype']}"
    )
    table = Table(title="layers", title_justify="left", box=None, pad_edge=False, header_style="bold")
    for col in ("#", "layer", "output", "params", "FLOPs/row fwd", "FLOPs/row bwd"):
        table.add_column(col, justify="left" if col == "layer" else "right", no_wrap=True)
    for r in info["layers"]:
        if r["kind"] == "linear":
            shapes = ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in r["param_shapes"].items())
            what = f"Linear {r['in']}→{r['out']} ({shapes})"
        else:
            what = f"{r['activation']}"
        table.add_row(
            str(r["index"]),
            what,
            f"(n, {r['out']})",
            f"{r['params']:,}",
            f"{r['flops_forward']:,}",
            f"{r['flops_backward']:,}",
        )
    out.print()
    out.print(table)
    f = info["flops"]
    say(
        f"per row: forward {_flops(f['forward_per_row'])}, training step {_flops(f['train_step_per_row'])} "
        f"(forward + backward); the update adds {_flops(f['update_per_step'])} per batch"
    )
    out.print()
    say(f"[bold]inputs[/]   {len(info['features'])} features: {escape(_join_short(info['features']))}")
    pre = info["preprocessing"]
    inputs = pre["inputs"]
    scaled = "standardised (mean, scale of the training split)" if inputs["standardized"] else "as they are"
    say(f"[bold]scaling[/]  inputs {scaled}")
    if pre["targets"] is not None:
        say("         targets standardised; predictions are in the target's own units")
    if info["classes"] is not None:
        say(f"[bold]classes[/]  {len(info['classes'])}: {escape(_join_short(info['classes']))}")
    if info["target"]:
        say(f"[bold]target[/]   {escape(info['target'])}")
    out.print()
    m = info["metrics"]
    if m is None:
        say(f"[bold]final metrics[/] {NOT_RECORDED}")
    else:
        on = "test" if m.get("evaluated_on") == "test" else "training (no test split)"
        say(f"[bold]final metrics[/] on the {on} split, after {m.get('epochs_trained', '?')} epochs")
        out.print(metrics_table(m))
    w = info["written_by"]
    if w is None:
        say(f"[bold]written by[/] {NOT_RECORDED}")
    else:
        say(f"[bold]written by[/] mlpbp {w.get('mlpbp', '?')}, NumPy {w.get('numpy', '?')}")
    cfg = info["config"]
    if cfg:
        import yaml

        out.print()
        say("[bold]config[/] (as trained, every default filled in)")
        for key, value in cfg.items():
            flow = yaml.safe_dump(value, default_flow_style=True, width=PIPE_WIDTH, sort_keys=False).strip()
            say(f"  {key}: {escape(flow.removesuffix('...').strip())}")


# ---- hessian ------------------------------------------------------------------------------


def _eig(v: float) -> str:
    return f"{v:.6g}"


def density_histogram(grid: np.ndarray, values: np.ndarray, bins: int = 16, width: int = 40) -> list[str]:
    """The density's mass in ``bins`` equal intervals, as bars on a log scale (a Hessian's
    bulk near 0 holds almost all the mass; its outliers would not show on a linear one)."""
    edges = np.linspace(grid[0], grid[-1], bins + 1)
    cdf = np.concatenate([[0.0], np.cumsum((values[1:] + values[:-1]) / 2 * np.diff(grid))])
    mass = np.diff(np.interp(edges, grid, cdf))
    floor = 1e-6
    lines = []
    for lo, hi, m in zip(edges[:-1], edges[1:], mass):
        n = 0 if m <= floor else max(1, round((np.log10(m) - np.log10(floor)) / -np.log10(floor) * width))
        lines.append(f"{lo:>11.4g} … {hi:<11.4g} {'█' * n:<{width}} {m:.2e}")
    return lines


def hessian_report(out: Console, r: dict, model: str, data: str) -> None:
    out.print(
        f"[bold]{model}[/] on {data}: {r['curvature']}, {r['n_params']:,} parameters, {r['rows']} rows",
        highlight=False,
        soft_wrap=True,
    )
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    if "top_eigenvalues" in r:
        t.add_row("top eigenvalues", ", ".join(_eig(v) for v in r["top_eigenvalues"]))
    if "bottom_eigenvalues" in r:
        t.add_row("bottom eigenvalues", ", ".join(_eig(v) for v in r["bottom_eigenvalues"]))
    if "lanczos" in r:
        lz = r["lanczos"]
        state = "converged" if lz["converged"] else "[yellow]NOT converged[/] (raise --max-steps)"
        if lz.get("shortfall"):
            top, bottom = lz["found"]["top"], lz["found"]["bottom"]
            state = f"[yellow]NOT all found[/] ({top} top, {bottom} bottom: {escape(lz['shortfall'])})"
        t.add_row("Lanczos", f"{lz['steps']} steps, max relative residual {lz['max_relative_residual']:.1e}, {state}")
    if "trace" in r:
        tr = r["trace"]
        t.add_row("trace", f"{tr['estimate']:.6g} ± {tr['std_error']:.2g} (Hutch++, {tr['probes']} products)")
        t.add_row("mean eigenvalue", f"{tr['estimate'] / r['n_params']:.4g}")
    t.add_row("products", f"{r['products']} full-data products, {r['seconds']:.2f} s")
    out.print(t)
    if "density" in r:
        d = r["density"]
        out.print(f"\n[bold]spectral density[/] (mass per interval, log scale; σ = {d['sigma']:.3g})")
        for line in density_histogram(np.asarray(d["grid"]), np.asarray(d["values"])):
            out.print(line, highlight=False)
