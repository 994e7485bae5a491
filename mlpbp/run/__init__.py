"""Training runs: the config, data preparation, the trainer, checkpoints, history, metrics
and the model file."""
