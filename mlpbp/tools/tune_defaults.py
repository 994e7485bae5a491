"""Defaults of `mlpbp tune` that its --help shows: here, so the help needs no NumPy or Optuna."""

DEFAULT_TRIALS = 20  # when neither trials nor a timeout is given
