"""The command line: a thin Typer layer over the Python API, with Rich for what people see.

The CLI owns the process: it maps the library's exception types to exit codes, turns any other
exception into one line, and installs the SIGINT and SIGTERM handlers (the library only offers
a stop request)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import signal
import sys
import threading

import typer

from mlpbp.cli.console import LazyConsole, escape
from mlpbp.errors import Interrupted, MlpbpError, TrainingError


class _FlagsAsFlags:
    """Typer lists a boolean flag with a `<bool>` placeholder, as if it took a value (yet
    `--json=true` is refused): show flags bare. A flag left unset is False, not None: Typer
    coerces a None through pydantic, which `mlpbp COMMAND --help` would otherwise import only
    for the group's own --help and completion flags."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False):
                if p.metavar is None:
                    p.metavar = ""
                if p.default is None:
                    p.default = False
        return params


class _Command(_FlagsAsFlags, typer.core.TyperCommand):
    pass


class _Group(_FlagsAsFlags, typer.core.TyperGroup):
    def format_commands(self, ctx, formatter) -> None:
        """Each command with the whole first paragraph of its docstring (Click's own list cuts
        it at the first sentence or the line's end)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                text = inspect.cleandoc(cmd.short_help or cmd.help or "").split("\n\n")[0]
                rows.append((name, " ".join(text.split())))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# Help is Click's plain text, not Typer's Rich panels: rendering those loads Rich's markdown,
# syntax and traceback modules, about twice Typer's own import, into every --help (the ratio is
# in benchmarks/README.md). Click rewraps each paragraph to the terminal, up to this width.
HELP_WIDTH = 120


app = typer.Typer(
    cls=_Group,
    help="Train multilayer perceptrons with backpropagation written out in NumPy.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help text, without Rich (see HELP_WIDTH)
    context_settings={"max_content_width": HELP_WIDTH},
)
out = LazyConsole()  # results: tables, JSON
err = LazyConsole(stderr=True)  # progress and messages, so stdout stays clean for --json


def echo_json(obj) -> None:
    """One JSON object on stdout. A number that is not finite (a diverged loss, say) is written
    as null: NaN and Infinity are not JSON, and other tools refuse them."""
    typer.echo(json.dumps(_json_safe(obj), allow_nan=False))


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


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


# Exit codes: 0 success, 1 the work failed, 2 bad input, 130 interrupted by Ctrl-C and 143 by
# SIGTERM (128 + the signal, as shells report a process the signal ended).
EXIT_CODES: tuple[tuple[type[MlpbpError], int], ...] = ((Interrupted, 130), (TrainingError, 1), (MlpbpError, 2))
BUG_HINT = "this is a bug in mlpbp; please report it (MLPBP_DEBUG=1 shows the traceback)"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stopped_by: list[int] = []  # the stop signals received, in order


def stopped_by_sigterm() -> bool:
    return bool(_stopped_by) and _stopped_by[-1] == signal.SIGTERM


def _interrupted_code() -> int:
    return 128 + (_stopped_by[-1] if _stopped_by else signal.SIGINT)


def exit_code(e: MlpbpError) -> int:
    if isinstance(e, Interrupted):
        return _interrupted_code()
    return next(code for kind, code in EXIT_CODES if isinstance(e, kind))


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: handled wherever Ctrl-C is (a file being read is
    named, nothing half-written is left), and exit 143."""


def _raise_terminated(signum, frame) -> None:
    _stopped_by.append(signum)
    raise Terminated()


def _raise_interrupt(signum, frame) -> None:
    _stopped_by.append(signum)
    raise KeyboardInterrupt()


def install_stop_handlers() -> None:
    """SIGTERM (kill, timeout, Slurm's time limit, docker stop) acts as Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _raise_interrupt)
        signal.signal(signal.SIGTERM, _raise_terminated)


_errors_printed: list[str] = []  # the error lines printed (main() checks an interrupted exit said one)


def _print_error(message: str) -> None:
    _errors_printed.append(message)
    # Escaped: messages quote user text (values, column names) that may look like markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and an exit code: how every user error leaves the tool."""
    _print_error(message)
    raise typer.Exit(code)


def _flags(fn) -> dict[str, str]:
    """A command's long flag for each of its parameters: {"overrides": "--set", ...}."""
    flags = {}
    for name, param in inspect.signature(fn).parameters.items():
        decls = [d for d in getattr(param.default, "param_decls", None) or () if d.startswith("--")]
        if decls:
            flags[name] = decls[0]
    return flags


def _with_flag(e: MlpbpError, flags: dict[str, str]) -> str:
    """The message with the command's flag in place of the library's words for the argument
    it is about ("bad override" -> "bad --set", "depth" -> "--depth")."""
    flag = flags.get(e.argument or "")
    return str(e).replace(e.label, flag, 1) if flag and e.label else str(e)


def report(e: BaseException, flags: dict[str, str] | None = None) -> int:
    """Print one line for an exception that ends a command and return its exit code."""
    if isinstance(e, MlpbpError):
        _print_error(_with_flag(e, flags or {}))
        return exit_code(e)
    if isinstance(e, KeyboardInterrupt):  # Ctrl-C or SIGTERM outside the training loop
        _print_error("terminated" if isinstance(e, Terminated) else "interrupted")
        return _interrupted_code()
    detail = " ".join(str(e).split())
    if isinstance(e, MemoryError) or (isinstance(e, ImportError) and "failed to map segment" in detail):
        # Out of memory outside any estimate: loading the libraries themselves (ulimit -v).
        _print_error(f"not enough memory to go on ({type(e).__name__}{': ' + detail if detail else ''}){_limit()}")
        return 2
    where = _user_module_frame(e)
    if where:  # a module a user wrote and registered raised it: not mlpbp's bug to report
        kind, place = where
        _print_error(
            f"unexpected {type(e).__name__}{': ' + detail if detail else ''} in module {kind!r} ({place}),"
            " registered from outside mlpbp; MLPBP_DEBUG=1 shows the traceback"
        )
    else:
        _print_error(f"unexpected {type(e).__name__}{': ' + detail if detail else ''}; {BUG_HINT}")
    if "mpi4py" in sys.modules:  # (importing it now could itself fail)
        from mlpbp.run.distributed import abort_job

        abort_job(1)  # a bug on one MPI rank: end the job rather than leave the others waiting
    return 1


def _user_module_frame(e: BaseException) -> tuple[str, str] | None:
    """(kind, file:line) of the innermost traceback frame running a method of a graph module
    whose class lives outside mlpbp (``MODULES.register`` from a user's script), else None."""
    module = sys.modules.get("mlpbp.engine.module")  # no graph was built if it was never imported
    found, tb = None, e.__traceback__
    while module is not None and tb is not None:
        obj = tb.tb_frame.f_locals.get("self")
        if isinstance(obj, module.Module) and not type(obj).__module__.startswith("mlpbp."):
            found = (obj.kind, f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}")
        tb = tb.tb_next
    return found


# What NumPy, SciPy, pyarrow and pydantic map once loaded (VmSize, measured ~480 MB with their
# BLAS threads on a 2-core machine): under a smaller ulimit -v their own loading fails, some
# of it as a C++ abort no handler sees, so a command is refused before it starts loading them.
LIBRARIES_ADDRESS_SPACE = 512 * 2**20


def _address_space_limit() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if limit in (resource.RLIM_INFINITY, -1) else limit


def _limit() -> str:
    limit = _address_space_limit()
    return f"; the address space limit (ulimit -v) is {limit / 1e6:.1f} MB" if limit else ""


def check_address_space() -> None:
    """Refuse, in one line, to start loading the libraries under an address space limit they do
    not fit in."""
    limit = _address_space_limit()
    if limit is not None and limit < LIBRARIES_ADDRESS_SPACE:
        from mlpbp.errors import ResourceError

        raise ResourceError(
            f"mlpbp's libraries (NumPy, SciPy, pyarrow) need about {LIBRARIES_ADDRESS_SPACE / 1e6:.0f} MB of"
            f" address space, more than the {limit / 1e6:.1f} MB ulimit -v (RLIMIT_AS) allows; raise it"
        )


def _debug() -> bool:
    return os.environ.get("MLPBP_DEBUG", "") not in ("", "0")


def command(fn):
    """Register a command whose exceptions each become one line on stderr and an exit code,
    also under typer.testing.CliRunner (which bypasses main())."""

    flags = _flags(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _stopped_by.clear()  # one command's signals (CliRunner runs many in one process)
        try:
            check_address_space()
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise  # the command chose its exit
        except Exception as e:
            if _debug() and not isinstance(e, MlpbpError):
                raise
            raise typer.Exit(report(e, flags)) from None
        except KeyboardInterrupt as e:
            raise typer.Exit(report(e)) from None

    return app.command(cls=_Command)(wrapper)


@contextlib.contextmanager
def sigint_requests_stop(stop: threading.Event | None = None):
    """Inside: Ctrl-C and SIGTERM set ``stop`` (the library's stop request) instead of raising
    KeyboardInterrupt, so training ends between two steps with a checkpoint saved; the exit
    code then says which signal it was (130 or 143)."""
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield stop
        return

    def request(signum, frame) -> None:
        _stopped_by.append(signum)
        stop.set()

    previous = {s: signal.signal(s, request) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# Options several commands share.
CONFIG_ARG = typer.Argument(
    ...,
    metavar="CONFIG",
    help="YAML run config: sections data, model, train, output. Every key is in the docs site's config"
    " reference (Reference > Config file, docs/reference/config.md: `mkdocs serve`); `mlpbp schema` prints"
    " the same as a JSON Schema.",
    show_default=False,
)
SET_OPT = typer.Option(
    None, "--set", metavar="KEY=VALUE", help="Override any config key, e.g. --set train.learning_rate=0.1 (repeatable)."
)
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there.")


def main() -> None:
    """The console script: what commands raise is handled in ``command``; this catches what
    escapes outside one (option callbacks, Ctrl-C while Python starts a command)."""
    _errors_printed.clear()
    try:
        install_stop_handlers()
        app()
    except SystemExit as e:
        # Typer turns a Ctrl-C while it parses the command line or starts a command (outside
        # ``command``'s handling) into a silent exit 130, SIGTERM's too: say it, with its code.
        if e.code in (130, 143) and not _errors_printed:
            _print_error("terminated" if stopped_by_sigterm() else "interrupted")
            sys.exit(_interrupted_code())
        raise
    except (Exception, KeyboardInterrupt) as e:
        if _debug() and not isinstance(e, (MlpbpError, KeyboardInterrupt)):
            raise
        sys.exit(report(e))
