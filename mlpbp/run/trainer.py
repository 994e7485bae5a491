"""Training runs: data → splits → standardisation → MLP → SGD epochs → metrics and files.

Rendering stays out: the CLI passes ``TrainHooks`` to watch a run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mlpbp.engine.network import MLP
from mlpbp.engine.optim import SGD, build_optimizer
from mlpbp.engine.schedules import learning_rate_at
from mlpbp.errors import Interrupted, MlpbpError, TrainingError
from mlpbp.io import write_text
from mlpbp.run.checkpoint import TrainState, load_checkpoint, save_checkpoint
from mlpbp.run.config import Config, config_to_dict
from mlpbp.run.metrics import compute_metrics
from mlpbp.run.model_file import TrainedModel
from mlpbp.run.prepare import build_model, prepare

# Checkpoints are fsync'ed, which costs milliseconds: with epochs of a few steps, saving after
# every one would dominate the run. Save at an epoch's end once this many seconds have passed
# since the last save, and always after the first and the final epoch, on early stopping and
# on Ctrl-C.
CHECKPOINT_INTERVAL_S = 1.0
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")


class TrainHooks:
    """Callbacks for watching a run; all optional no-ops."""

    def epoch_start(self, epoch: int, n_steps: int) -> None: ...

    def progress(self, steps_done: int, n_steps: int) -> None: ...

    def epoch_end(self, record: dict) -> None: ...


@dataclass
class RunResult:
    task: str
    history: list[dict]
    test: dict  # metrics on the test split, or on the training split when there is none
    evaluated_on: str  # "test" or "train"
    model_path: Path
    out_dir: Path
    stopped_early: bool = False
    best_epoch: int | None = None
    model: TrainedModel | None = field(default=None, repr=False)


def sgd_epoch(
    net: MLP,
    opt: SGD,
    X: np.ndarray,
    y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    first_step: int = 0,
    after_step=None,
) -> tuple[int, float]:
    """SGD over the rows of (X, y) taken in ``order``, ``batch_size`` at a time from batch
    ``first_step``, one ``net.train_step`` per batch: θ := θ − α ∇J(batch) per step (batch_size 1: per-example SGD,
    θ := θ − α ∇J⁽ʲ⁾).

    Each batch is gathered into one reused buffer, so an epoch never copies the whole data set.
    Stops early at a non-finite loss (before its update) or when ``after_step(s)`` returns
    True. Returns (steps done, last loss)."""
    n_steps = math.ceil(order.shape[0] / batch_size)
    Xb = np.empty((batch_size, *X.shape[1:]), X.dtype)
    yb = np.empty((batch_size, *y.shape[1:]), y.dtype)
    loss, s = 0.0, first_step
    while s < n_steps:
        rows = order[s * batch_size : (s + 1) * batch_size]
        k = rows.shape[0]
        # mode="clip": with the default "raise", take() copies into a temporary first.
        np.take(X, rows, axis=0, out=Xb[:k], mode="clip")
        np.take(y, rows, axis=0, out=yb[:k], mode="clip")
        loss = net.train_step(Xb[:k], yb[:k], opt)  # no update when the loss is not finite
        if not math.isfinite(loss):
            return s + 1, loss
        s += 1
        if after_step is not None and after_step(s - 1):
            break
    return s, loss


def _fingerprint(cfg: Config) -> dict:
    """What must match for a checkpoint to be resumed by this config (output may move)."""
    d = config_to_dict(cfg)
    d.pop("output", None)
    return d


def _diff(a: dict, b: dict, prefix: str = "") -> str | None:
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = _diff(va, vb, f"{prefix}{k}.")
            if found:
                return found
        elif va != vb:
            return f"{prefix}{k}: {va!r} in the checkpoint, {vb!r} now"
    return None


@contextlib.contextmanager
def _catch_sigint():
    """Turn Ctrl-C into a flag the loop checks between steps, so an interrupt never lands in
    the middle of a parameter update and the checkpoint is always a consistent state."""
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["set"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    """One training run of a config, with checkpoints in ``out_dir``."""

    def __init__(self, cfg: Config, out_dir: str | Path | None = None, hooks: TrainHooks | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir if out_dir is not None else cfg.output.dir)
        self.hooks = hooks or TrainHooks()
        self.data = prepare(cfg)
        self.task = self.data.dataset.task
        self.net = build_model(cfg, self.data.train[0].shape[1], self.data.n_outputs, self.task)
        self.opt = build_optimizer(cfg.train.optimizer, self.net.params, **cfg.train.model_dump())
        self.rng = np.random.default_rng([cfg.seed, 2])  # shuffling: a stream apart from split and init
        self.state = TrainState(rng_state=self.rng.bit_generator.state, config=_fingerprint(cfg))
        self.best_params: dict | None = None
        self._saved_at: float | None = None  # when this run last saved a checkpoint

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.npz"

    # ---- the loop -------------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunResult:
        if resume:
            self._resume()
        # Ctrl-C is caught from before config.yaml appears (a sign the run has started), and
        # overflow warnings are silenced: a non-finite loss is reported once, as divergence.
        with _catch_sigint() as interrupted, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.out_dir / "config.yaml", yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))
            while self.state.epoch < self.cfg.train.epochs and not self.state.stopped_early:
                self._epoch(interrupted)
        return self._finish()

    def _epoch(self, interrupted: dict) -> None:
        t, st, net, opt = self.cfg.train, self.state, self.net, self.opt
        started = time.perf_counter()
        epoch = st.epoch
        opt.learning_rate = learning_rate_at(
            epoch, t.learning_rate, t.schedule, t.epochs, t.step_size, t.gamma, t.decay
        )
        self.rng.bit_generator.state = st.rng_state
        X, y = self.data.train
        order = self.rng.permutation(X.shape[0])  # a fresh random order each epoch
        n_steps = math.ceil(X.shape[0] / t.batch_size)
        every = max(1, n_steps // 50)
        self.hooks.epoch_start(epoch + 1, n_steps)

        def after_step(s: int) -> bool:
            if interrupted["set"]:
                return True
            if (s + 1) % every == 0:
                self.hooks.progress(s + 1, n_steps)
            return False

        done, loss = sgd_epoch(net, opt, X, y, order, t.batch_size, st.step, after_step)
        if not math.isfinite(loss):
            self._diverged(epoch, done - 1, loss)
        if done < n_steps:  # Ctrl-C: save where we are, between two whole steps
            st.step = done
            self._save_checkpoint()
            raise Interrupted(
                f"interrupted at epoch {epoch + 1}, step {done}; checkpoint saved to {self.checkpoint_path}"
            )
        if not all(np.isfinite(p).all() for p in net.params.values()):
            self._diverged(epoch, n_steps - 1, float("nan"), "a parameter is not finite")

        record = self._record(epoch + 1, opt.learning_rate)
        if not math.isfinite(record["train_loss"]):  # finite but huge weights: the logits overflow
            self._diverged(epoch, n_steps - 1, record["train_loss"], "the epoch's training loss is not finite")
        record["seconds"] = time.perf_counter() - started
        st.history.append(record)
        self._early_stopping(record)
        st.epoch, st.step = epoch + 1, 0
        st.rng_state = self.rng.bit_generator.state
        last = st.epoch == t.epochs or st.stopped_early
        if last or self._saved_at is None or time.monotonic() - self._saved_at >= CHECKPOINT_INTERVAL_S:
            self._save_checkpoint()
            self._write_history()
        self.hooks.epoch_end(record)

    def _record(self, epoch: int, lr: float) -> dict:
        train = compute_metrics(self.net, *self.data.train, self.data.y_scaler)
        val = compute_metrics(self.net, *self.data.val, self.data.y_scaler)
        record = {"epoch": epoch, "train_loss": train["loss"], "val_loss": val.get("loss")}
        if self.task == "classification":
            record["train_accuracy"] = train["accuracy"]
            record["val_accuracy"] = val.get("accuracy")
        record["learning_rate"] = lr
        return record

    def _early_stopping(self, record: dict) -> None:
        st, patience = self.state, self.cfg.train.patience
        if patience is None or record["val_loss"] is None:
            return
        if st.best_val is None or record["val_loss"] < st.best_val:
            st.best_val, st.best_epoch, st.bad_epochs = record["val_loss"], record["epoch"], 0
            self.best_params = {k: p.copy() for k, p in self.net.params.items()}
        else:
            st.bad_epochs += 1
            st.stopped_early = st.bad_epochs >= patience

    def _diverged(self, epoch: int, step: int, loss: float, cause: str = "") -> None:
        # Only this run's own checkpoint is "good" (an older run's may sit in the same folder).
        kept = f"; the last good checkpoint is {self.checkpoint_path}" if self._saved_at is not None else ""
        cause = f", {cause}" if cause else ""
        raise TrainingError(
            f"diverged at epoch {epoch + 1}, step {step + 1} (loss={loss}{cause}); try a smaller learning rate{kept}"
        )

    # ---- files ----------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        self._saved_at = time.monotonic()
        save_checkpoint(self.checkpoint_path, self.state, self.net.params, self.opt.state_dict(), self.best_params)

    def _resume(self) -> None:
        opt_state = self.opt.state_dict()
        state, best = load_checkpoint(self.checkpoint_path, self.net.params, opt_state)
        self.opt.load_state_dict(opt_state)
        mismatch = _diff(state.config, self.state.config)
        if mismatch:
            raise MlpbpError(
                f"cannot resume from {self.checkpoint_path}: it was written by another config "
                f"({mismatch}); use that config or another --out"
            )
        self.state, self.best_params = state, best
        self._saved_at = time.monotonic()  # the checkpoint resumed from is this run's last good one

    def _write_history(self) -> None:
        columns = [c for c in HISTORY_COLUMNS if self.task == "classification" or "accuracy" not in c]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in self.state.history:
            w.writerow(["" if r.get(c) is None else repr(r[c]) for c in columns])
        write_text(self.out_dir / "history.csv", buf.getvalue())

    def _finish(self) -> RunResult:
        st = self.state
        if self.best_params is not None:  # early stopping keeps the best weights
            for k, p in self.net.params.items():
                p[...] = self.best_params[k]
        ds = self.data.dataset
        model = TrainedModel(
            self.net,
            self.data.x_scaler,
            self.data.y_scaler,
            ds.classes,
            ds.feature_names,
            ds.target_name,
            config_to_dict(self.cfg),
        )
        model_path = self.out_dir / "model.npz"
        model.save(model_path)
        self._write_history()
        on = "test" if self.data.test[0].shape[0] else "train"
        metrics = compute_metrics(self.net, *getattr(self.data, on), self.data.y_scaler)
        return RunResult(
            self.task, st.history, metrics, on, model_path, self.out_dir, st.stopped_early, st.best_epoch, model
        )


def train(
    cfg: Config, out_dir: str | Path | None = None, resume: bool = False, hooks: TrainHooks | None = None
) -> RunResult:
    """Train the network a config describes; write model.npz, history.csv and config.yaml."""
    return Trainer(cfg, out_dir, hooks).run(resume=resume)
