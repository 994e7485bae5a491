"""Tools over the engine: the gradient checker and the benchmark."""
