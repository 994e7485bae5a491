"""mlpbp: multilayer perceptrons trained by backpropagation written out in NumPy.

The public names below are imported when first used (PEP 562's module ``__getattr__``), so
``import mlpbp`` and the CLI's ``--help`` load no NumPy; ``from mlpbp import MLP`` works as ever."""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

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

# Each public name of the engine, and the module that defines it.
_LAZY = {
    "MLP": "mlpbp.engine.network",
    "SGD": "mlpbp.engine.optim",
    "Adam": "mlpbp.engine.optim",
    "AdamW": "mlpbp.engine.optim",
    "OPTIMIZERS": "mlpbp.engine.optim",
    "Linear": "mlpbp.engine.layers",
    "Activation": "mlpbp.engine.layers",
    "SquareLoss": "mlpbp.engine.losses",
    "CrossEntropyLoss": "mlpbp.engine.losses",
    "LOSSES": "mlpbp.engine.losses",
    "learning_rate_at": "mlpbp.engine.schedules",
    "SCHEDULES": "mlpbp.engine.schedules",
    "ACTIVATIONS": "mlpbp.engine.activations",
    "ActivationFn": "mlpbp.engine.activations",
    "INITS": "mlpbp.engine.init",
    "DTYPES": "mlpbp.engine.dtypes",
    "Registry": "mlpbp.engine.registry",
}

__all__ = [
    "MLP",
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


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlpbp' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


try:
    __version__ = version("mlpbp")  # the one version string: pyproject.toml's
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
