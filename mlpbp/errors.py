"""The tool's own error types. They say what went wrong in the library's terms (config keys,
files, rows, columns, function arguments) and carry no exit codes: the CLI (mlpbp/cli/app.py)
maps each type to one, and `except MlpbpError` catches them all."""

from __future__ import annotations


class MlpbpError(Exception):
    """Bad input from the user: a config, a data or model file, an argument.

    ``argument`` names the API argument the problem is in (e.g. ``"overrides"``, ``"depth"``)
    and ``label`` the words the message uses for it (e.g. ``"override"``), so a front end can
    put its own name for it (a command-line flag) in their place."""

    def __init__(self, message: str, *, argument: str | None = None, label: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument
        self.label = label if label is not None else argument


class ConfigError(MlpbpError):
    """A config file or key is missing, malformed or has a value that is not allowed."""


class DataError(MlpbpError):
    """A data file cannot be read or does not hold a usable data set (names file, row, column)."""


class ModelFileError(MlpbpError):
    """A model.npz or checkpoint.npz is missing, foreign, damaged or does not fit."""


class ArgumentError(MlpbpError):
    """An argument of an API call (not a config key) has a value that is not allowed."""


class OutputError(MlpbpError):
    """An output file cannot be written."""


class ResourceError(MlpbpError):
    """The work would need more memory (or another resource) than the machine has."""


class TrainingError(MlpbpError):
    """Training could not go on (e.g. the loss became NaN)."""


class Interrupted(MlpbpError):
    """The user asked the work to stop (Ctrl-C); whatever could be saved was saved."""
