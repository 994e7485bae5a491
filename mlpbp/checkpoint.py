"""Checkpoints: everything needed to continue a run bit for bit, written atomically."""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import MlpbpError
from .files import save_npz

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


def save_checkpoint(path: Path, state: TrainState, params: dict, velocity: dict,
                    best_params: dict | None) -> None:
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update({f"velocity.{k}": v for k, v in velocity.items()})
    if best_params is not None:
        arrays.update({f"best.{k}": v for k, v in best_params.items()})
    meta = {"checkpoint_version": CHECKPOINT_VERSION, **asdict(state)}
    arrays["state"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def load_checkpoint(path: Path, params: dict, velocity: dict) -> tuple[TrainState, dict | None]:
    """Load into the live ``params`` and ``velocity`` arrays; return the state and best params."""
    bad = f"{path} is not a usable mlpbp checkpoint"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays["state"]))
        if meta.pop("checkpoint_version") != CHECKPOINT_VERSION:
            raise MlpbpError(f"{bad} (unsupported checkpoint version)")
        state = TrainState(**meta)
    except FileNotFoundError:
        raise MlpbpError(f"no checkpoint to resume from: {path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError):
        raise MlpbpError(f"{bad} (unreadable or truncated)") from None
    best = {} if any(k.startswith("best.") for k in arrays) else None
    for prefix, target in (("param", params), ("velocity", velocity), ("best", best)):
        if target is None:
            continue
        for k, live in (params if prefix == "best" else target).items():
            a = arrays.get(f"{prefix}.{k}")
            if a is None or a.shape != live.shape:
                raise MlpbpError(f"{bad} ({prefix}.{k} missing or of shape other than {live.shape})")
            if prefix == "best":
                best[k] = a.astype(live.dtype)
            else:
                live[...] = a
    return state, best
