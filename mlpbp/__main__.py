"""``python -m mlpbp`` and the ``mlpbp`` console script."""

import sys


def run() -> None:
    """Load the CLI, then run it: Ctrl-C while Typer, Rich and the commands load (before the
    CLI's own handling is there) is one line and exit 130, as at any later moment."""
    try:
        from mlpbp.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
