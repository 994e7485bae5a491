"""Checkpoints: everything needed to continue a run bit for bit, written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mlpbp.errors import ModelFileError
from mlpbp.io import ARCHIVE_ERRORS, save_npz

CHECKPOINT_VERSION = 1


@dataclass
class TrainState:
    """Where a run stands. ``rng_state`` is the shuffling generator's state at the start of
    epoch ``epoch``, so a resumed run draws the same permutation and skips ``step`` batches."""

    epoch: int = 0  # next epoch to run, 0-based
    step: int = 0  # next batch within that epoch
    rng_state: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    best_val: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    config: dict = field(default_factory=dict)
    threads: int | None = None  # BLAS threads the run trained with (None: a checkpoint from before)
    gradients: float = 0.0  # full-data gradient passes so far
    products: float = 0.0  # full-data curvature products so far


def save_checkpoint(
    path: Path, state: TrainState, params: dict, optimizer_state: dict, best_params: dict | None
) -> None:
    """``optimizer_state`` is the optimizer's ``state_dict()`` (SGD: velocity.W1, …; Adam:
    exp_avg.W1, …, step), stored under its own names. ``best_params``: early stopping's best
    parameters by name, and its buffers as ``buffer.{name}`` (stored as ``best.buffer.{name}``)."""
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update(optimizer_state)
    if best_params is not None:
        arrays.update({f"best.{k}": v for k, v in best_params.items()})
    meta = {"checkpoint_version": CHECKPOINT_VERSION, **asdict(state)}
    arrays["state"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def load_checkpoint(
    path: Path, params: dict, optimizer_state: dict, buffers: dict | None = None
) -> tuple[TrainState, dict | None]:
    """Load into the live ``params`` and the live arrays of ``optimizer_state`` (an optimizer's
    ``state_dict()``, whose names, shapes and kinds of number the checkpoint must match);
    return the state and best params, with the best buffers (``buffer.{name}``, for the names
    of ``buffers``) where the checkpoint kept them (one written before it kept none)."""
    bad = f"{path} is not a usable mlpbp checkpoint"
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array, not an archive
            raise ValueError("not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["state"]))
        if meta.pop("checkpoint_version") != CHECKPOINT_VERSION:
            raise ModelFileError(f"{bad} (unsupported checkpoint version)")
        state = TrainState(**meta)
        _check_state(state)
    except FileNotFoundError:
        raise ModelFileError(f"no checkpoint to resume from: {path} does not exist") from None
    except (*ARCHIVE_ERRORS, KeyError, TypeError, AttributeError):
        raise ModelFileError(f"{bad} (unreadable, truncated or malformed)") from None
    has_best = any(k.startswith("best.") for k in arrays)
    wanted = {f"param.{k}": p for k, p in params.items()}
    wanted.update(optimizer_state)
    best_buffers = {}
    if has_best:
        wanted.update({f"best.{k}": p for k, p in params.items()})
        best_buffers = {k: b for k, b in (buffers or {}).items() if f"best.buffer.{k}" in arrays}
        wanted.update({f"best.buffer.{k}": b for k, b in best_buffers.items()})
    for name, live in wanted.items():
        a = arrays.get(name)
        if a is None or a.shape != live.shape or a.dtype.kind != live.dtype.kind:
            kind = "floating point" if live.dtype.kind == "f" else "integer"
            raise ModelFileError(f"{bad} ({name} missing, not {kind} or of shape other than {live.shape})")
    # Everything checked: only now overwrite the live arrays.
    for name, live in wanted.items():
        if not name.startswith("best."):
            live[...] = arrays[name]
    best = {k: arrays[f"best.{k}"].astype(p.dtype) for k, p in params.items()} if has_best else None
    if best is not None:
        best |= {f"buffer.{k}": arrays[f"best.buffer.{k}"].astype(b.dtype) for k, b in best_buffers.items()}
    return state, best


def _check_state(st: TrainState) -> None:
    """Raise TypeError/ValueError unless the state has the types a run relies on, so a forged
    or damaged checkpoint is an error message here, not a traceback mid-run."""
    nat = lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0  # noqa: E731
    if not (
        nat(st.epoch)
        and nat(st.step)
        and nat(st.bad_epochs)
        and isinstance(st.stopped_early, bool)
        and isinstance(st.history, list)
        and all(_record_ok(r) for r in st.history)
        and isinstance(st.config, dict)
        and isinstance(st.rng_state, dict)
        and (st.best_epoch is None or nat(st.best_epoch))
        and (st.best_val is None or isinstance(st.best_val, (int, float)))
        and (st.threads is None or (nat(st.threads) and st.threads > 0))
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in (st.gradients, st.products))
    ):
        raise ValueError("malformed training state")
    np.random.PCG64().state = st.rng_state  # raises on a malformed generator state


def _record_ok(r) -> bool:
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    return (
        isinstance(r, dict)
        and num(r.get("epoch"))
        and num(r.get("train_loss"))
        and all(r.get(k) is None or num(r[k]) for k in ("val_loss", "learning_rate"))
    )
