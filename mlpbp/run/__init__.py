"""Training runs: the config and its schema, data preparation (prepare), the epoch loop (epoch),
the trainer and its run folder, checkpoints, history.csv, metrics, the trained model (model)
and its file format (model_file), BLAS threads and MPI (distributed)."""
