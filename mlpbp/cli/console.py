"""The two consoles every command prints to, and the few pieces of presentation they share.

Rich loads at the first print, not at import: ``--help``, ``--version`` and shell completion
print through Click alone, and every command module imports this one (Rich's console and markup
modules cost about a third of Typer's own import)."""

from __future__ import annotations

import time

PIPE_WIDTH = 10_000  # "never wrap": wider than any line we print
# Said of the rows a model trained with drop_rows has no prediction for, or does not score.
DROP_ROWS = " (the model was trained with data.missing: drop_rows)"


def escape(text: str) -> str:
    """rich.markup.escape, loading Rich only when a message is printed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


_console_class = None


def pipe_aware_console_class():
    """A Console whose width follows the terminal at each print (COLUMNS included), and that
    never wraps when its output is not a terminal: a file or a pipe gets whole lines, so paths
    and table rows are never split at an arbitrary 80 columns. (A class made on first use, so
    that defining it does not load Rich.)"""
    global _console_class
    if _console_class is None:
        from rich.console import Console, ConsoleDimensions

        class PipeAwareConsole(Console):
            __doc__ = pipe_aware_console_class.__doc__

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

        _console_class = PipeAwareConsole
    return _console_class


class LazyConsole:
    """Stands for a PipeAwareConsole made (and Rich loaded) at its first use: every attribute,
    ``with`` included, is the real console's. ``console`` is that console, for code that needs
    the object itself."""

    def __init__(self, **kwargs) -> None:
        object.__setattr__(self, "_kwargs", kwargs)
        object.__setattr__(self, "_console", None)

    @property
    def console(self):
        if self._console is None:
            object.__setattr__(self, "_console", pipe_aware_console_class()(**self._kwargs))
        return self._console

    def __getattr__(self, name):
        return getattr(self.console, name)

    def __setattr__(self, name, value) -> None:
        setattr(self.console, name, value)

    def __enter__(self):
        return self.console.__enter__()

    def __exit__(self, *exc):
        return self.console.__exit__(*exc)


def rich_console(console):
    """The Rich console itself, for Rich's own objects (progress bars, live displays)."""
    return console.console if isinstance(console, LazyConsole) else console


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def note(console, message: str) -> None:
    console.print(f"[dim]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


class LoadProgress:
    """Rows read so far, on one transient line, for loads that take more than a moment."""

    DELAY_S = 0.5

    def __init__(self, console, path) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # not at --help

        self.console, self.path = console, path
        self.bar = Progress(
            TextColumn(f"reading {escape(str(path))}"),
            BarColumn(),
            TextColumn("{task.fields[rows]} rows"),
            TimeRemainingColumn(),
            console=rich_console(console),
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
