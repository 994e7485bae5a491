"""The command line: Typer commands over the Python API, Rich rendering, and the exit codes."""

from mlpbp.cli.app import app, main

__all__ = ["app", "main"]
