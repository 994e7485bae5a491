"""mlpbp: multilayer perceptrons trained by backpropagation written out in NumPy."""

from importlib.metadata import PackageNotFoundError, version

from mlpbp.engine.layers import Activation, Linear
from mlpbp.engine.losses import CrossEntropyLoss, SquareLoss
from mlpbp.engine.network import MLP
from mlpbp.engine.optim import SGD
from mlpbp.engine.schedules import learning_rate_at
from mlpbp.errors import MlpbpError, TrainingError

__all__ = [
    "MLP",
    "SGD",
    "Linear",
    "Activation",
    "SquareLoss",
    "CrossEntropyLoss",
    "learning_rate_at",
    "MlpbpError",
    "TrainingError",
]

try:
    __version__ = version("mlpbp")  # the one version string: pyproject.toml's
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
