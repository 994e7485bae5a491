"""`mlpbp tune`'s defaults, apart from its Optuna and pydantic code so that `mlpbp tune --help`
shows them without loading either (tools/tune.py uses and re-exports them)."""

DEFAULT_TRIALS = 20  # when neither trials nor a timeout is given
