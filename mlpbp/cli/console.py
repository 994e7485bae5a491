"""The two consoles every command prints to, and the few pieces of presentation they share.

Imports Rich's console only: every command module and ``--help`` load it, so it stays light
(progress bars load rich.progress when a command makes one)."""

from __future__ import annotations

import time

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

PIPE_WIDTH = 10_000  # "never wrap": wider than any line we print
# Said of the rows a model trained with drop_rows has no prediction for, or does not score.
DROP_ROWS = " (the model was trained with data.missing: drop_rows)"


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


def note(console: Console, message: str) -> None:
    console.print(f"[dim]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


class LoadProgress:
    """Rows read so far, on one transient line, for loads that take more than a moment."""

    DELAY_S = 0.5

    def __init__(self, console: Console, path) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # not at --help

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
