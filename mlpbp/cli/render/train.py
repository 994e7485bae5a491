"""`mlpbp train` as it runs and when it ends: the epoch table (live), the summary and the loss
curve."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from mlpbp.cli.console import fmt, note, rich_console
from mlpbp.cli.render.metrics import metrics_report
from mlpbp.run.trainer import RunResult, TrainHooks

SPARKS = "▁▂▃▄▅▆▇█"
MAX_ROWS = 60  # epochs shown in the live table; every epoch is in history.csv


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
    ("val_hamming_loss", "val hamming"),  # multi-label runs only
    ("val_macro_f1", "val F1"),
    ("learning_rate", "lr"),
    ("gradients", "grads"),  # full-data gradient passes so far
    ("products", "products"),  # full-data curvature products so far
    ("sharpness", "sharpness"),  # top Hessian eigenvalue (train.sharpness_every)
    ("stability_limit", "2/lr"),
    ("seconds", "seconds"),
    ("comm_seconds", "comm s"),  # of the seconds, those the MPI ranks spent exchanging (ranks > 1)
)
DROP_ORDER = (
    "comm_seconds",
    "val_macro_f1",
    "products",
    "seconds",
    "gradients",
    "learning_rate",
    "train_accuracy",
    "val_loss",
)
CELL = 8  # the widest value a cell shows: "1.23e-05"


def epoch_table_layout(
    task: str, epochs: int, width: int, ranks: int = 1, sharpness: bool = False, multilabel: bool = False
) -> list[tuple[str, str, int]]:
    """(key, header, cell width) of the columns that fit ``width`` without wrapping: every
    column at a roomy width when there is space, then narrower, then fewer columns."""
    keys = [
        k
        for k, _ in EPOCH_COLUMNS
        if (task == "classification" or "accuracy" not in k)
        and (ranks > 1 or k != "comm_seconds")
        and (sharpness or k not in ("sharpness", "stability_limit"))
        and (multilabel or k not in ("val_hamming_loss", "val_macro_f1"))
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
        self,
        console: Console,
        task: str,
        epochs: int,
        ranks: int = 1,
        table: bool = True,
        sharpness: bool = False,
        multilabel: bool = False,
    ) -> None:
        self.console, self.task, self.table = console, task, table
        self.every = max(1, -(-epochs // MAX_ROWS))
        self.epochs = epochs
        self.layout = epoch_table_layout(task, epochs, console.width, ranks, sharpness, multilabel)
        self.records: dict[int, dict] = {}
        self.shown: set[int] = set()
        self.bars = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeRemainingColumn(),
            console=rich_console(console),
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

    def note(self, message: str) -> None:
        note(self.console, message)  # the module's function: shown under --quiet too

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
