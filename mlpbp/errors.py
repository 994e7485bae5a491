"""The tool's own error types: the CLI turns them into one line on stderr and an exit code."""


class MlpbpError(Exception):
    """Bad input from the user (config, data file, model file, option): exit code 2."""

    exit_code = 2


class TrainingError(MlpbpError):
    """Training could not go on (e.g. the loss became NaN): exit code 1."""

    exit_code = 1


class Interrupted(MlpbpError):
    """The user pressed Ctrl-C; a checkpoint was saved: exit code 130, as shells expect."""

    exit_code = 130
