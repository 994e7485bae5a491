"""`mlpbp tune` as it runs: the live table of trials under a progress bar, or a line per trial."""

from __future__ import annotations

import json
import threading
import time

from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlpbp.cli.console import fmt
from mlpbp.tools import tune as tune_api

SHOWN_TRIALS = 20  # rows of the live table: the running trials and the latest finished ones


def cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, list) else str(v)


class TuneView(tune_api.TuneHooks):
    """The live table (number, parameters, value, state, best so far) under a progress bar
    against the trials or the timeout; one line per finished trial when not on a terminal."""

    def __init__(self, console, trials: int | None, timeout: float | None, quiet: bool) -> None:
        self.console, self.trials, self.timeout, self.quiet = console, trials, timeout, quiet
        self.rows: dict[int, dict] = {}
        self.keys: list[str] = []
        self.lock = threading.Lock()
        self.best_value: float | None = None
        self.started_at = time.monotonic()
        self.stopping = ""
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn() if trials is not None else TextColumn(""),
            TimeElapsedColumn(),
            console=console,
        )
        total = trials if trials is not None else timeout
        self.task = self.progress.add_task("trials" if trials is not None else "seconds", total=total)
        self.live = None
        if console.is_terminal and not quiet:
            self.live = Live(self, console=console, refresh_per_second=4, transient=False)
            self.live.start()
            if trials is None:  # a bar against the timeout moves with the clock
                threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while self.live is not None:
            self.progress.update(self.task, completed=min(self.timeout, time.monotonic() - self.started_at))
            time.sleep(0.5)

    def started(self, study, storage, finished, trials, timeout) -> None:
        if finished and not self.quiet:
            self.console.print(
                f"resuming study {study!r} in {escape(storage)}: {finished} finished trial(s) so far",
                highlight=False,
                soft_wrap=True,
            )
        if trials is not None:
            self.progress.update(self.task, completed=min(finished, trials))

    def trial_start(self, number: int, params: dict) -> None:
        with self.lock:
            self.keys += [k for k in params if k not in self.keys]
            self.rows[number] = {"params": params, "state": "running", "value": None, "best": None, "epoch": ""}

    def epoch(self, number: int, epoch: int, epochs: int, value: float) -> None:
        with self.lock:
            if number in self.rows:
                self.rows[number]["epoch"] = f"epoch {epoch}/{epochs}"

    def trial_end(self, record, best, finished: int) -> None:
        with self.lock:
            self.best_value = best.value if best is not None else None
            row = self.rows.setdefault(number := record.number, {"params": record.params})
            n = record.epochs
            row.update(state=record.state, value=record.value, best=self.best_value, epoch=f"{n} epoch{'s' * (n != 1)}")
        if self.trials is not None:
            self.progress.update(self.task, completed=min(finished, self.trials))
        if self.live is None and not self.quiet:
            params = " ".join(f"{k}={cell(v)}" for k, v in record.params.items())
            self.console.print(
                f"trial {number} {record.state} {fmt(record.value)} ({row['epoch']}) {escape(params)};"
                f" best {fmt(self.best_value)}",
                highlight=False,
                soft_wrap=True,
            )

    def __rich__(self):
        table = Table(box=None, pad_edge=False)
        for h in ("trial", *(k.rsplit(".", 1)[-1] for k in self.keys), "value", "state", "best so far"):
            table.add_column(h, justify="right" if h in ("trial", "value", "best so far") else "left")
        with self.lock:
            numbers = sorted(self.rows)
            running = [n for n in numbers if self.rows[n]["state"] == "running"]
            shown = sorted({*running, *numbers[-SHOWN_TRIALS:]})[-SHOWN_TRIALS:]
            for n in shown:
                r = self.rows[n]
                state = r["state"] + (f" ({r['epoch']})" if r.get("epoch") else "")
                cells = [cell(r["params"][k]) if k in r["params"] else "-" for k in self.keys]
                table.add_row(str(n), *cells, fmt(r["value"]), state, fmt(r["best"]))
        parts = [table, self.progress]
        if self.stopping:
            parts.append(self.stopping)
        return Group(*parts)

    def close(self) -> None:
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()
