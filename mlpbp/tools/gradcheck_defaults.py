"""The gradient checker's defaults, apart from its NumPy code so that `mlpbp gradcheck --help`
shows them without loading NumPy (tools/gradcheck.py uses and re-exports them)."""

DEFAULT_EPS = 1e-6
DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-8
DEFAULT_SAMPLES = 20
DEFAULT_SEED = 0
DEFAULT_DIRECTIONS = 3
DEFAULT_BATCH = 16
FULL_MAX = 64  # a tensor with at most this many entries is checked entry by entry
