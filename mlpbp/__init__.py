"""mlpbp: multilayer perceptrons trained by backpropagation written out in NumPy."""

from importlib.metadata import PackageNotFoundError, version

from mlpbp.engine.activations import ACTIVATIONS, ActivationFn
from mlpbp.engine.combine import Add, Concat
from mlpbp.engine.dropout import Dropout
from mlpbp.engine.dtypes import DTYPES
from mlpbp.engine.embedding import Embedding, Select
from mlpbp.engine.graph import Network
from mlpbp.engine.init import INITS
from mlpbp.engine.layers import Activation, Linear
from mlpbp.engine.losses import LOSSES, CrossEntropyLoss, SquareLoss
from mlpbp.engine.module import MODULES, Input, Module
from mlpbp.engine.network import MLP
from mlpbp.engine.norm import BatchNorm, LayerNorm
from mlpbp.engine.optim import OPTIMIZERS, SGD, Adam, AdamW
from mlpbp.engine.registry import Registry
from mlpbp.engine.schedules import SCHEDULES, learning_rate_at
from mlpbp.errors import (
    ArgumentError,
    ConfigError,
    DataError,
    Interrupted,
    MlpbpError,
    ModelFileError,
    OutputError,
    ResourceError,
    TrainingError,
)

__all__ = [
    "MLP",
    "Network",
    "Input",
    "Module",
    "Add",
    "Concat",
    "Dropout",
    "Embedding",
    "Select",
    "BatchNorm",
    "LayerNorm",
    "SGD",
    "Adam",
    "AdamW",
    "Linear",
    "Activation",
    "SquareLoss",
    "CrossEntropyLoss",
    "learning_rate_at",
    # One registry per kind: register a new one and configs, the schema and the CLI accept it.
    "ACTIVATIONS",
    "MODULES",
    "ActivationFn",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
    "INITS",
    "DTYPES",
    "Registry",
    "MlpbpError",
    "ConfigError",
    "DataError",
    "ModelFileError",
    "ArgumentError",
    "OutputError",
    "ResourceError",
    "TrainingError",
    "Interrupted",
]

try:
    __version__ = version("mlpbp")  # the one version string: pyproject.toml's
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
