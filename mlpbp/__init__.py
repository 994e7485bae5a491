"""mlpbp: multilayer perceptrons trained by backpropagation written out in NumPy."""

from .errors import MlpbpError, TrainingError
from .layers import Activation, Linear
from .losses import CrossEntropyLoss, SquareLoss
from .network import MLP
from .optim import SGD, learning_rate_at

__all__ = ["MLP", "SGD", "Linear", "Activation", "SquareLoss", "CrossEntropyLoss",
           "learning_rate_at", "MlpbpError", "TrainingError"]
__version__ = "0.1.0"
