"""mlpbp: multilayer perceptrons trained by backpropagation written out in NumPy.

The public names below are imported when first used (PEP 562's module ``__getattr__``), so
``import mlpbp`` and the CLI's ``--help`` load no NumPy; ``from mlpbp import MLP`` works as ever."""

from importlib import import_module

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
    "Network": "mlpbp.engine.graph",
    "Input": "mlpbp.engine.module",
    "Module": "mlpbp.engine.module",
    # from mlpbp.engine.graph, which imports every built-in module: engine.module's registry is
    # empty until they register, so `from mlpbp import MODULES` listed none, and a user module
    # registered as "dropout" was accepted, then made the built-in's registration raise.
    "MODULES": "mlpbp.engine.graph",
    "Add": "mlpbp.engine.combine",
    "Concat": "mlpbp.engine.combine",
    "Dropout": "mlpbp.engine.dropout",
    "Embedding": "mlpbp.engine.embedding",
    "Select": "mlpbp.engine.embedding",
    "BatchNorm": "mlpbp.engine.norm",
    "LayerNorm": "mlpbp.engine.norm",
}

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


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlpbp' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _version() -> str:
    """The one version string, pyproject.toml's; read when first asked for (importlib.metadata
    loads email and socket: a tenth of a second in which Ctrl-C could not yet be handled)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlpbp")
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"
