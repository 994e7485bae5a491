"""The command line: a thin Typer layer over the Python API, with Rich for what people see."""

from __future__ import annotations

import functools
import sys
import traceback

import typer
from rich.markup import escape

from mlpbp.cli.render import PipeAwareConsole
from mlpbp.errors import MlpbpError


class _FlagsAsFlags:
    """Typer lists a boolean flag with a `<bool>` placeholder, as if it took a value (yet
    `--json=true` is refused): show flags bare."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class _Command(_FlagsAsFlags, typer.core.TyperCommand):
    pass


class _Group(_FlagsAsFlags, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    help="Train multilayer perceptrons with backpropagation written out in NumPy.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings wrap as paragraphs, not at their line breaks
)
out = PipeAwareConsole()  # results: tables, JSON
err = PipeAwareConsole(stderr=True)  # progress and messages, so stdout stays clean for --json


def _print_version(value: bool) -> None:
    if value:
        import mlpbp

        typer.echo(f"mlpbp {mlpbp.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train multilayer perceptrons with backpropagation written out in NumPy."""


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
            # Escaped: messages quote user text (values, column names) that may look like markup.
            fail(escape(str(e)), e.exit_code)

    return app.command(cls=_Command)(wrapper)


# Options several commands share.
CONFIG_ARG = typer.Argument(
    ..., metavar="CONFIG", help="YAML run config (see README: data, model, train, output).", show_default=False
)
SET_OPT = typer.Option(
    None, "--set", metavar="KEY=VALUE", help="Override any config key, e.g. --set train.learning_rate=0.1 (repeatable)."
)
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there.")


def main() -> None:
    try:
        app()
    except MlpbpError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading data, writing files)
        err.print("[bold red]error:[/] interrupted", highlight=False, soft_wrap=True)
        sys.exit(130)
    except Exception:
        from mlpbp.run.distributed import abort_job

        traceback.print_exc()  # a bug on one MPI rank: end the job rather than leave the others waiting
        abort_job(1)
        sys.exit(1)
