"""``python -m mlpbp`` and the ``mlpbp`` console script."""

# The C module itself: signal.py would import enum, functools and collections first (10 ms, a
# window in which Ctrl-C is Python's traceback); this module installs the stop handlers first.
import _signal
import os
import sys


def _under_address_space_limit() -> None:
    """Under ulimit -v, map less: glibc gives each thread that allocates a 64 MiB arena of
    address space (the BLAS threads of NumPy's and SciPy's libraries: ~65 MB in all), and
    pyarrow's jemalloc reserves its own; one arena and the system allocator instead."""
    try:
        import resource

        if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
            return
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
    except (ImportError, OSError, AttributeError, ValueError):
        return
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def _stop_while_loading(signum, frame) -> None:
    """Ctrl-C or SIGTERM while Python loads the CLI (imports only: nothing written yet): one
    line and 128 + the signal, at once, whatever module was half-imported."""
    os.write(2, b"error: terminated\n" if signum == _signal.SIGTERM else b"error: interrupted\n")
    os._exit(128 + signum)


def run() -> None:
    """Load the CLI, then run it: Ctrl-C while Typer, Rich and the commands load (before the
    CLI's own handling is there) is one line and exit 130, as at any later moment. A bare
    ``--version`` is answered before any of them loads."""
    # First of all: from here until main() installs the CLI's handlers, a stop signal ends the
    # process with its line (Python's own SIGINT handler would raise KeyboardInterrupt wherever
    # an import happens to be, SIGTERM's default would end it without a word).
    if hasattr(_signal, "SIGTERM"):
        for s in (_signal.SIGINT, _signal.SIGTERM):
            _signal.signal(s, _stop_while_loading)
    try:
        if sys.argv[1:] == ["--version"]:  # the one answer that needs neither Typer nor the commands
            import mlpbp

            sys.stdout.write(f"mlpbp {mlpbp.__version__}\n")  # as the CLI's own --version prints it
            return
        _under_address_space_limit()
        from mlpbp.cli import main

        main()
    except KeyboardInterrupt:  # one that escaped main's own handling (between two of its lines)
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


if __name__ == "__main__":
    run()
