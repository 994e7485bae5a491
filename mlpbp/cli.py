"""The command line: a thin Typer layer over the Python API, with Rich for what people see."""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console

from .errors import MlpbpError

app = typer.Typer(
    help="Train multilayer perceptrons with backpropagation written out in NumPy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()  # results: tables, JSON
err = Console(stderr=True)  # progress and messages, so stdout stays clean for --json


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and an exit code: how every user error leaves the tool."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command(fn):
    """Register a command whose MlpbpError becomes one line on stderr and its exit code,
    also under typer.testing.CliRunner (which bypasses main())."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlpbpError as e:
            fail(str(e), e.exit_code)

    return app.command()(wrapper)


# ---- train / predict / evaluate ------------------------------------------------------------

# ---- gradcheck -------------------------------------------------------------------------------

# ---- bench -----------------------------------------------------------------------------------


def main() -> None:
    try:
        app()
    except MlpbpError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
