"""The command line: Typer commands over the Python API, Rich rendering, and the exit codes.

Each command lives in a module of its own; importing it registers it on ``app``, in the order
``--help`` lists them."""

from importlib import import_module

from mlpbp.cli.app import app, main

COMMAND_MODULES = (
    "init",
    "train",
    "predict",
    "data",
    "gradcheck",
    "bench",
    "hessian",
    "schema",
    "inspect",
    "export",
    "plot",
    "tune",
    "cv",
    "playground",
)
for _name in COMMAND_MODULES:
    import_module(f"mlpbp.cli.{_name}")

__all__ = ["app", "main"]
