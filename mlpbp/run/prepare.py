"""From a config to what the trainer needs: the data read, split, standardised and cast, and the
network built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpbp.data import BUNDLED, GENERATORS, Dataset, Standardizer, bundled_path, generate, read_csv, read_npz, split
from mlpbp.data.lazy import LazyRows, fit_moments, is_lazy, read_lazy
from mlpbp.data.preprocessing import Moments
from mlpbp.engine.memory import (
    STEP_BUFFERS,
    activation_bytes,
    describe_widths,
    fits,
    n_params,
    network_bytes,
    require,
)
from mlpbp.engine.network import MLP
from mlpbp.errors import ConfigError
from mlpbp.run.config import Config, DataConfig
from mlpbp.run.distributed import SINGLE, Comm
from mlpbp.run.metrics import EVAL_CHUNK


def load_data(cfg: DataConfig, seed: int, base_dir: Path) -> Dataset:
    """Load the dataset a `data:` config section names; relative paths are taken from base_dir."""
    if cfg.dataset in BUNDLED:
        ds = read_csv(bundled_path(cfg.dataset), cfg.target or BUNDLED[cfg.dataset], cfg.task)
    elif cfg.dataset in GENERATORS:
        # the rows, split, standardised and cast: a few copies of n_samples × (2 features + target)
        require(cfg.n_samples * 3 * 8 * 4, f"generating {cfg.n_samples:,} rows", key="data.n_samples")
        ds = generate(cfg.dataset, seed=seed, n_samples=cfg.n_samples, noise=cfg.noise)
        if cfg.task is not None and cfg.task != ds.task:
            raise ConfigError(
                f"config error at data.task: dataset '{cfg.dataset}' is a {ds.task} problem, not {cfg.task}"
            )
    elif cfg.path is not None:
        path = Path(cfg.path)
        if not path.is_absolute():
            path = Path(base_dir) / path
        if is_lazy(path):  # a folder: rows read from its files as batches need them
            ds = read_lazy(path, cfg.target, cfg.task)
        elif path.suffix.lower() == ".npz":
            ds = read_npz(path, cfg.task)
        else:
            ds = read_csv(path, cfg.target, cfg.task)
    else:
        raise ConfigError(f"config error at data.dataset: unknown dataset {cfg.dataset!r}")
    return ds


@dataclass
class Prepared:
    """The data in the network's units, and what maps raw rows into them."""

    dataset: Dataset
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    x_scaler: Standardizer
    y_scaler: Standardizer | None
    n_outputs: int


def default_loss(cfg: Config, task: str) -> str:
    return cfg.model.loss or ("cross_entropy" if task == "classification" else "square")


def prepare(cfg: Config, dtype: str | None = None, comm: Comm = SINGLE) -> Prepared:
    """Load, split and standardise the config's data, cast to ``dtype`` (default train.dtype).

    Under MPI (a collective), a bad file stops every rank with the same error, and a table in
    files is scanned once for the standardisation with each rank reading only its share."""
    ds = comm.agree(lambda: load_data(cfg.data, cfg.seed, cfg.base_dir))
    loss = default_loss(cfg, ds.task)
    if ds.task == "regression" and loss == "cross_entropy":
        raise ConfigError("config error at model.loss: cross_entropy needs a classification task; use square")
    if cfg.train.patience is not None and cfg.data.validation_fraction == 0:
        raise ConfigError("config error at train.patience: early stopping needs data.validation_fraction > 0")
    sp = split(ds, cfg.data.test_fraction, cfg.data.validation_fraction, cfg.seed)
    d = ds.X.shape[1]
    if isinstance(ds.X, LazyRows):
        lo, hi = comm.share(ds.X.shape[0])
        moments = comm.agree(lambda: fit_moments(ds.X, sp.train[0].index, lo, hi))
        total = Moments()
        for m in comm.allgather(moments):  # in rank order: the same scaler on every rank
            total = total.merge(m)
        x_scaler = Standardizer.from_moments(total) if cfg.data.standardize else Standardizer.identity(d)
    else:
        x_scaler = Standardizer().fit(sp.train[0]) if cfg.data.standardize else Standardizer.identity(d)
    y_scaler = None
    if ds.task == "regression" and cfg.data.standardize:
        # Scaled targets keep one learning rate sensible whatever the target's units.
        y_scaler = Standardizer().fit(sp.train[1])
    dtype = np.dtype(dtype or cfg.train.dtype)

    def encode(part):  # cast once here, so the hot loop never converts
        X, y = part
        if isinstance(X, LazyRows):  # standardised and cast as batches are read
            X = X.transformed(x_scaler, dtype)
        else:
            X = np.ascontiguousarray(x_scaler.transform(X), dtype=dtype)
        if ds.task == "regression":
            y = y_scaler.transform(y) if y_scaler is not None else y
            y = np.ascontiguousarray(y, dtype=dtype)
        return X, y

    n_out = len(ds.classes) if ds.task == "classification" else ds.y.shape[1]
    return Prepared(ds, encode(sp.train), encode(sp.val), encode(sp.test), x_scaler, y_scaler, n_out)


def check_training_memory(cfg: Config, widths: list[int], dtype, eval_rows: int = 0) -> None:
    """Refuse, before allocating anything, a network that with its training would not fit in
    memory, naming the config key to change: train.batch_size when the network fits and a
    training batch's activations are what overflows, else model.hidden."""
    itemsize = np.dtype(dtype).itemsize
    extra_copies = 2 + (cfg.train.patience is not None)  # optimizer state (Adam: 2), best weights
    model = network_bytes(widths, dtype) + extra_copies * n_params(widths) * itemsize
    # metrics run forward passes of up to EVAL_CHUNK rows, keeping 2 buffers a layer
    model += activation_bytes(widths, min(eval_rows, EVAL_CHUNK), dtype) // STEP_BUFFERS * 2
    # batch_size None (newton_cg, lbfgs): the whole training set is one batch
    batch = activation_bytes(widths, cfg.train.batch_size or max(eval_rows, 1), dtype)
    require(
        model + batch,
        f"training a {describe_widths(widths)} network ({n_params(widths):,} parameters: their gradients,"
        " optimizer state and a batch's activations)",
        key="train.batch_size" if fits(model) and batch > model else "model.hidden",
    )


def build_model(
    cfg: Config, n_inputs: int, n_outputs: int, task: str, dtype: str | None = None, eval_rows: int = 0
) -> MLP:
    """The config's network, once its memory is checked (``eval_rows``: the most rows metrics
    are computed on)."""
    widths = [n_inputs, *cfg.model.hidden, n_outputs]
    dtype = dtype or cfg.train.dtype
    check_training_memory(cfg, widths, dtype, eval_rows)
    return MLP(
        widths,
        cfg.model.activation,
        default_loss(cfg, task),
        seed=cfg.seed,
        dtype=dtype,
        init=cfg.model.init,
        task=task,
    )
