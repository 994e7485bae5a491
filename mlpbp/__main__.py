"""``python -m mlpbp`` and the ``mlpbp`` console script."""

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


def run() -> None:
    """Load the CLI, then run it: Ctrl-C while Typer, Rich and the commands load (before the
    CLI's own handling is there) is one line and exit 130, as at any later moment. A bare
    ``--version`` is answered before any of them loads."""
    try:
        if sys.argv[1:] == ["--version"]:  # the one answer that needs neither Typer nor the commands
            import mlpbp

            sys.stdout.write(f"mlpbp {mlpbp.__version__}\n")  # as the CLI's own --version prints it
            return
        _under_address_space_limit()
        from mlpbp.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
