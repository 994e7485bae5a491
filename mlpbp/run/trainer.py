"""Training runs: data → splits → standardisation → MLP → SGD epochs → metrics and files.

The epoch loop itself is run/epoch.py (``sgd_epoch``, still importable from here); history.csv
is run/history.py. Rendering stays out: the CLI passes ``TrainHooks`` to watch a run.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from mlpbp.engine.curvature import Curvature, extreme_eigenvalues
from mlpbp.engine.norm import BatchNorm
from mlpbp.engine.optim import Optimizer, build_optimizer
from mlpbp.engine.schedules import learning_rate_at
from mlpbp.engine.second_order import NewtonCG
from mlpbp.errors import ArgumentError, ConfigError, Interrupted, TrainingError
from mlpbp.io import write_text
from mlpbp.run.checkpoint import TrainState, load_checkpoint, save_checkpoint
from mlpbp.run.config import Config, config_to_dict
from mlpbp.run.distributed import SINGLE, Comm, GradientSync, first_difference
from mlpbp.run.epoch import sgd_epoch
from mlpbp.run.folder import RunFolder, run_in
from mlpbp.run.history import write_history
from mlpbp.run.metrics import compute_metrics
from mlpbp.run.model import TrainedModel
from mlpbp.run.model_file import save_model
from mlpbp.run.prepare import Prepared, build_model, prepare
from mlpbp.run.recipe import apply_recipe
from mlpbp.run.threads import (
    ThreadChoice,
    blas_thread_limit,
    blas_threads,
    choose_threads,
    env_threads,
    step_timer,
    usable_cores,
)

# Checkpoints are fsync'ed, which costs milliseconds: with epochs of a few steps, saving after
# every one would dominate the run. Save at an epoch's end once this many seconds have passed
# since the last save, and always after the first and the final epoch, on early stopping and
# on Ctrl-C.
CHECKPOINT_INTERVAL_S = 1.0


class TrainHooks:
    """Callbacks for watching a run; all optional no-ops."""

    def resumed(self, epoch: int, step: int, path: Path, complete: bool) -> None:
        """A run continues from a checkpoint: 1-based ``epoch``, ``step`` batches of it done
        (``complete``: the checkpoint's run had already ended)."""

    def epoch_start(self, epoch: int, n_steps: int) -> None: ...

    def progress(self, steps_done: int, n_steps: int) -> None: ...

    def epoch_end(self, record: dict) -> None: ...

    def threads(self, description: str) -> None:
        """The BLAS thread count the run uses, and why (see mlpbp.run.threads)."""

    def note(self, message: str) -> None:
        """Something the user should know about the run (one line), shown even when quiet."""


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
    threads: int | None = None  # BLAS threads the run used


def _fingerprint(cfg: Config) -> dict:
    """What must match for a checkpoint to be resumed by this config (output may move)."""
    d = config_to_dict(cfg)
    d.pop("output", None)
    d["train"].pop("threads", None)  # speed only: the checkpoint records the count a run used
    return d


class Trainer:
    """One training run of a config on data already prepared from it (``prepare(cfg)``), with
    checkpoints in ``out_dir``.

    ``stop`` is a stop request: once it is set (by a signal handler, another thread, a UI), the
    run stops after the step in progress, saves a checkpoint and raises ``Interrupted``. The
    check falls between two whole steps, so the checkpoint is always a consistent state.

    With ``comm`` over several MPI ranks (``mpiexec``), every rank runs its own Trainer on the
    same config; they share each batch's work, and only rank 0 writes files."""

    def __init__(
        self,
        cfg: Config,
        data: Prepared,
        out_dir: str | Path | None = None,
        hooks: TrainHooks | None = None,
        stop: threading.Event | None = None,
        comm: Comm = SINGLE,
    ) -> None:
        self.cfg, self.comm = cfg, comm
        self.out_dir = Path(out_dir if out_dir is not None else cfg.output.dir)
        self.hooks = hooks or TrainHooks()
        self.stop = stop if stop is not None else threading.Event()
        if cfg.train.batch_size is not None and cfg.train.batch_size < comm.size:
            raise ConfigError(
                f"config error at train.batch_size: {cfg.train.batch_size} is smaller than the {comm.size} MPI"
                " ranks (batch_size is the global batch, shared among the ranks); raise it or use fewer ranks"
            )
        self.data = data
        self.task = data.task
        # unset keys of a table's config: the default recipe (run/recipe.py), chosen before
        # anything is built from them
        self.recipe = apply_recipe(cfg, data.train[0].shape[0], data.preprocessor.encoded_width)
        if cfg.train.patience is not None and cfg.data.validation_fraction == 0:
            raise ConfigError("config error at train.patience: early stopping needs data.validation_fraction > 0")
        eval_rows = max(len(part[0]) for part in (data.train, data.val, data.test))
        self.net = build_model(
            cfg,
            data.train[0].shape[1],
            data.n_outputs,
            self.task,
            eval_rows=eval_rows,
            class_weight=data.class_weight,
            preprocessor=data.preprocessor,
        )
        # the saved config (and `mlpbp inspect`) shows the loss and init the network resolved
        cfg.model.loss, cfg.model.init = self.net.loss_name, self.net.init
        if cfg.model.layers is not None:  # with a layer list, the activation it resolved (build_model)
            cfg.model.activation = self.net.activation
        for p in self.net.params.values():  # every rank starts from rank 0's parameters
            comm.bcast_(p)
        self.sync = GradientSync(self.net, comm)
        self.opt = build_optimizer(cfg.train.optimizer, self.net.params, **cfg.train.model_dump())
        self.rng = np.random.default_rng([cfg.seed, 2])  # shuffling: a stream apart from split and init
        self.state = TrainState(rng_state=self.rng.bit_generator.state, config=_fingerprint(cfg))
        self.best_params: dict | None = None
        self._saved_at: float | None = None  # when this run last saved a checkpoint
        self.threads: ThreadChoice | None = None
        self.first_order = isinstance(self.opt, Optimizer)
        self._check_batch_statistics()
        self._check_curvature()
        self.sharpness_sample = None
        if cfg.train.sharpness_every is not None:
            if self.data.train[0].shape[0] == 0:
                raise ConfigError("config error at train.sharpness_every: there are no training rows to measure it on")
            self.sharpness_sample = self._training_sample()
        self.board = None  # the TensorBoard writer, while a run with output.tensorboard is running

    def _check_batch_statistics(self) -> None:
        """batch_norm in training takes the statistics of at least 2 rows: refuse, before
        anything is written, a batch size whose epochs end in a batch of one row."""
        if not any(isinstance(m, BatchNorm) for m in self.net.layers):
            return
        n = self.data.train[0].shape[0]
        b = min(self.cfg.train.batch_size or n, n) if self.first_order else n
        last = n - b * (math.ceil(n / b) - 1) if n else 0
        if last == 1:
            raise ConfigError(
                "config error at train.batch_size: batch_norm in training needs at least 2 rows per batch, and"
                f" {n} training row{'s' * (n != 1)} in batches of {b} leave{'s' * (n == 1)} one row in the last"
                " batch of each epoch; choose another batch size",
                argument="train.batch_size",
            )

    def _check_curvature(self) -> None:
        """newton_cg and train.sharpness_every need R-passes from every module: refused here,
        before the run's header and folder, not at the first product."""
        if isinstance(self.opt, NewtonCG):
            key, why = "train.optimizer", "newton_cg steps by them"
        elif self.cfg.train.sharpness_every is not None:
            key, why = "train.sharpness_every", "the sharpness is the Hessian's top eigenvalue, found by them"
        else:
            return
        try:
            self.net.require_curvature()
        except ArgumentError as e:
            raise ConfigError(f"config error at {key}: {e}; {why}") from None

    def _training_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """A fixed seeded sample of train.sharpness_rows training rows (sharpness, gradient histograms)."""
        X, y = self.data.train
        k = min(self.cfg.train.sharpness_rows, X.shape[0])
        rows = np.sort(np.random.default_rng([self.cfg.seed, 3]).choice(X.shape[0], k, replace=False))
        self.sharpness_weight = None if self.data.weights("train") is None else self.data.weights("train")[rows]
        return X[rows], y[rows]

    sharpness_weight: np.ndarray | None = None  # the sample's row weights (data.weight)

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.npz"

    # ---- the loop -------------------------------------------------------------------------
    def run(self, resume: bool = False) -> RunResult:
        if resume:
            self._resume()
        self.threads = choice = self._choose_threads()
        self.hooks.threads(choice.describe())
        out = self.cfg.output
        if out.tensorboard and self.comm.rank == 0:
            from mlpbp.run.tensorboard import TensorBoardWriter

            sample = self._training_sample() if out.histogram_every is not None else None
            self.board = TensorBoardWriter(self.out_dir, out.histogram_every, sample, self.state.epoch + 1)
        # Overflow warnings are silenced: a non-finite loss is reported once, as divergence.
        started_with = self.state.threads  # a resumed run's count, from its checkpoint
        try:
            with blas_thread_limit(choice.threads), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                self.state.threads = blas_threads()
                if started_with is not None and started_with != self.state.threads:
                    self.hooks.note(
                        f"this run started with {started_with} BLAS thread{'s' * (started_with != 1)} and goes on"
                        f" with {self.state.threads}: sums in another order change the result in the last bits"
                        f" (--threads {started_with} resumes it bit for bit)"
                    )
                while self.state.epoch < self.cfg.train.epochs and not self.state.stopped_early:
                    self._epoch()
                return self._finish()
        finally:
            if self.board is not None:
                self.board.close()
                self.board = None

    def _read_ahead(self) -> bool:
        """Whether rows read from files are read ahead by a second process: when the BLAS
        threads leave this process a core of its own for it."""
        return usable_cores(self.comm.ranks_on_node) > (self.state.threads or blas_threads())

    def _choose_threads(self) -> ThreadChoice:
        """train.threads, the environment, or auto; a resumed auto run keeps the count it ran
        with (results depend on it in the last bits), unless the user now sets one."""
        requested, recorded = self.cfg.train.threads, self.state.threads
        if requested == "auto" and recorded is not None and env_threads() is None:
            return ThreadChoice(recorded, "auto: the count this run started with, from its checkpoint")
        X, y = self.data.train
        if not self.first_order:  # whole-data passes: the rule alone (no step to time)
            return choose_threads(requested, self.net.widths, X.shape[0], self.comm.ranks_on_node)
        batch = -(-min(self.cfg.train.batch_size, X.shape[0]) // self.comm.size)  # this rank's share
        rows = np.arange(batch)
        choice = choose_threads(
            requested,
            self.net.widths,
            batch,
            self.comm.ranks_on_node,
            measure=step_timer(self.net, self.opt, X.take(rows, axis=0), y.take(rows, axis=0), batch),
        )
        return self.comm.bcast(choice)  # under MPI every rank runs with rank 0's choice

    def _epoch(self) -> None:
        t, st, net, opt = self.cfg.train, self.state, self.net, self.opt
        started, comm_before = time.perf_counter(), self.comm.comm_seconds
        epoch = st.epoch
        self.rng.bit_generator.state = st.rng_state
        X, y = self.data.train
        order = self.rng.permutation(X.shape[0])  # a fresh random order each epoch
        if not self.first_order:
            return self._full_batch_epoch(order, started)
        opt.learning_rate = learning_rate_at(
            epoch,
            t.learning_rate,
            t.schedule,
            t.epochs,
            t.step_size,
            t.gamma,
            t.decay,
            t.warmup,
            [r.get("val_loss") for r in st.history],
        )
        n_steps = math.ceil(X.shape[0] / t.batch_size)
        every = max(1, n_steps // 50)
        self.hooks.epoch_start(epoch + 1, n_steps)

        def after_step(s: int) -> bool:
            if (s + 1) % every == 0:
                self.hooks.progress(s + 1, n_steps)
            return False

        ahead = self._read_ahead()
        done, loss = sgd_epoch(
            net,
            opt,
            X,
            y,
            order,
            t.batch_size,
            st.step,
            after_step,
            self.sync,
            self.stop.is_set,
            ahead,
            sample_weight=self.data.weights("train"),
        )
        if not math.isfinite(loss):
            self._diverged(epoch, done - 1, loss)
        if done < n_steps:  # Ctrl-C: save where we are, between two whole steps
            st.step = done
            self._save_checkpoint()
            raise Interrupted(
                f"interrupted at epoch {epoch + 1}, step {done}; checkpoint saved to {self.checkpoint_path}"
            )
        st.gradients += 1.0
        self._end_epoch(epoch, n_steps, opt.learning_rate, started, comm_before)

    def _full_batch_epoch(self, order: np.ndarray, started: float) -> None:
        """An epoch of lbfgs or newton_cg. Ctrl-C inside it puts back the weights and state the
        epoch started from, so the checkpoint is an epoch boundary and a resume exact."""
        st, net, opt = self.state, self.net, self.opt
        epoch = st.epoch
        self.hooks.epoch_start(epoch + 1, 1)
        X, y = self.data.train
        saved = {k: p.copy() for k, p in net.params.items()}
        saved_opt = {k: np.array(v, copy=True) for k, v in opt.state_dict().items()}
        parallel = self.comm.size > 1
        split, reduce = (self.comm.share, self.comm.allreduce_) if parallel else (None, None)
        w = self.data.weights("train")
        work = opt.run_epoch(
            net, X, y, order, self.stop.is_set, split, reduce, **({"sample_weight": w} if w is not None else {})
        )
        if self.stop.is_set():
            for k, p in net.params.items():
                p[...] = saved[k]
            opt.load_state_dict(saved_opt)
            self._save_checkpoint()
            raise Interrupted(f"interrupted in epoch {epoch + 1}; checkpoint saved to {self.checkpoint_path}")
        self._keep_batch_statistics()
        st.gradients += work.gradients
        st.products += work.products
        self._end_epoch(epoch, 1, None, started, self.comm.comm_seconds)

    def _keep_batch_statistics(self) -> None:
        """After an epoch of lbfgs or newton_cg: batch_norm's running statistics become the
        whole training data's batch statistics at the epoch's final weights (its training
        passes normalise by them; momentum plays no part), so evaluation mode predicts with
        them. Each rank passes its share of the rows."""
        X = self.data.train[0]
        lo, hi = self.comm.share(X.shape[0])
        self.net.keep_batch_statistics(X[lo:hi])

    def _end_epoch(self, epoch: int, n_steps: int, lr: float | None, started: float, comm_before: float) -> None:
        net = self.net
        net.eval()  # losses, metrics and sharpness as the model will predict; training goes on in train mode
        try:
            self._epoch_record(epoch, n_steps, lr, started, comm_before)
        finally:
            net.train()

    def _epoch_record(self, epoch: int, n_steps: int, lr: float | None, started: float, comm_before: float) -> None:
        t, st, net = self.cfg.train, self.state, self.net
        if not all(np.isfinite(p).all() for p in net.params.values()):
            self._diverged(epoch, n_steps - 1, float("nan"), "a parameter is not finite")

        record = self._record(epoch + 1, lr)
        if not math.isfinite(record["train_loss"]):  # finite but huge weights: the logits overflow
            self._diverged(epoch, n_steps - 1, record["train_loss"], "the epoch's training loss is not finite")
        record["gradients"], record["products"] = st.gradients, st.products
        if t.sharpness_every is not None:
            measured = (epoch + 1) % t.sharpness_every == 0 or epoch + 1 == t.epochs
            record["sharpness"] = self._sharpness() if measured else None
            record["stability_limit"] = 2.0 / lr if lr else None
        record["seconds"] = time.perf_counter() - started
        record["comm_seconds"] = self.comm.comm_seconds - comm_before
        st.history.append(record)
        self._early_stopping(record)
        st.epoch, st.step = epoch + 1, 0
        st.rng_state = self.rng.bit_generator.state
        last = st.epoch == t.epochs or st.stopped_early
        if last or self._saved_at is None or time.monotonic() - self._saved_at >= CHECKPOINT_INTERVAL_S:
            self._save_checkpoint()
        if self.board is not None:
            self.board.epoch(record, net, last=last)
        self.hooks.epoch_end(record)

    def _sharpness(self) -> float:
        """The top eigenvalue of the training loss's Hessian on the fixed sample (Lanczos to a
        relative residual of 1e-3; its products are not counted as training work)."""
        X, y = self.sharpness_sample
        op = Curvature(self.net, X, y, "hessian", sample_weight=self.sharpness_weight)
        return extreme_eigenvalues(op.matvec, op.shape[0], top_k=1, tol=1e-3, max_steps=100, seed=0).top[0]

    def _record(self, epoch: int, lr: float | None) -> dict:
        ahead = self._read_ahead()
        d = self.data
        train = compute_metrics(
            self.net, *d.train, d.y_scaler, self.comm, read_ahead=ahead, sample_weight=d.weights("train")
        )
        val = compute_metrics(self.net, *d.val, d.y_scaler, self.comm, read_ahead=ahead, sample_weight=d.weights("val"))
        record = {"epoch": epoch, "train_loss": train["loss"], "val_loss": val.get("loss")}
        if self.task == "classification":
            record["train_accuracy"] = train["accuracy"]
            record["val_accuracy"] = val.get("accuracy")  # multi-label: the subset accuracy
        if self.data.multilabel:  # and the share of wrong labels, and the validation macro F1
            record["train_hamming_loss"] = train["hamming_loss"]
            record["val_hamming_loss"] = val.get("hamming_loss")
            record["val_macro_f1"] = val.get("macro_f1")
        record["learning_rate"] = lr
        return record

    def _early_stopping(self, record: dict) -> None:
        st, patience = self.state, self.cfg.train.patience
        if patience is None or record["val_loss"] is None:
            return
        if st.best_val is None or record["val_loss"] < st.best_val:
            st.best_val, st.best_epoch, st.bad_epochs = record["val_loss"], record["epoch"], 0
            # the weights and the running statistics the best validation loss was measured with
            self.best_params = {k: p.copy() for k, p in self.net.params.items()}
            self.best_params |= {f"buffer.{k}": b.copy() for k, b in self.net.buffers.items()}
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
        """The checkpoint and history.csv, always together, so the file on disk lists exactly the
        epochs the checkpoint has done."""
        if self._saved_at is None:
            # config.yaml describes the run whose checkpoint is in the folder: written with
            # this run's first one, so a run that fails before it leaves the old one as it was.
            self._write_config()
        self._saved_at = time.monotonic()
        if self.comm.rank == 0:
            state = self.opt.state_dict() | self.net.state_dict()  # buffers and the dropout generator too
            save_checkpoint(self.checkpoint_path, self.state, self.net.params, state, self.best_params)
        self._write_history()

    def _write_config(self) -> None:
        if self.comm.rank == 0:
            write_text(self.out_dir / "config.yaml", yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))

    def _resume(self) -> None:
        def load():  # on rank 0, whose output directory holds the checkpoint
            opt_state, net_state = self.opt.state_dict(), self.net.state_dict()
            state, best = load_checkpoint(
                self.checkpoint_path, self.net.params, opt_state | net_state, self.net.buffers
            )
            self.opt.load_state_dict(opt_state)
            self.net.load_state_dict(net_state)
            mismatch = first_difference(state.config, self.state.config, "in the checkpoint", "now")
            if mismatch:
                raise ConfigError(
                    f"cannot resume from {self.checkpoint_path}: it was written by another config "
                    f"({mismatch}); use that config or another output directory",
                    argument="out_dir",
                    label="output directory",
                )
            return state, best

        self.state, self.best_params = self.comm.bcast(self.comm.agree(load, root_only=True))
        if self.comm.size > 1:  # the other ranks continue from rank 0's checkpoint
            for p in self.net.params.values():
                self.comm.bcast_(p)
            self.opt.load_state_dict(self.comm.bcast(self.opt.state_dict()))
        self._saved_at = time.monotonic()  # the checkpoint resumed from is this run's last good one
        self._write_config()
        st = self.state
        complete = st.epoch >= self.cfg.train.epochs or st.stopped_early
        self.hooks.resumed(st.epoch + 1, st.step, self.checkpoint_path, complete)

    def _write_history(self) -> None:
        if self.comm.rank == 0:
            classification, sharpness = self.task == "classification", self.cfg.train.sharpness_every is not None
            write_history(
                self.out_dir / "history.csv", self.state.history, classification, sharpness, self.data.multilabel
            )

    def _finish(self) -> RunResult:
        st = self.state
        self.net.eval()  # the test metrics and the saved model: evaluation mode
        if self.best_params is not None:  # early stopping keeps the best weights and buffers
            for k, p in self.net.params.items():
                p[...] = self.best_params[k]
            for k, b in self.net.buffers.items():
                if f"buffer.{k}" in self.best_params:  # a checkpoint from before kept none
                    b[...] = self.best_params[f"buffer.{k}"]
        d = self.data
        target = d.target_names[0] if len(d.target_names) == 1 else d.target_names
        on = "test" if d.test[0].shape[0] else "train"
        names = (d.target_names if len(d.target_names) == d.n_outputs else None) if self.task == "regression" else None
        metrics = compute_metrics(
            self.net,
            *getattr(d, on),
            d.y_scaler,
            self.comm,
            classes=d.classes,
            names=names,
            sample_weight=d.weights(on),
        )
        model = TrainedModel(
            self.net,
            d.preprocessor,
            d.y_scaler,
            d.classes,
            d.preprocessor.inputs,
            target,
            config_to_dict(self.cfg),
            metrics={
                "evaluated_on": on,
                "epochs_trained": len(st.history),
                # the epoch whose weights the model keeps (early stopping: the best one)
                "weights_from_epoch": st.best_epoch if self.best_params is not None else len(st.history),
                **metrics,
            },
            id_name=d.id_name,
            multilabel=d.multilabel,
            label_separator=d.label_separator,
        )
        model_path = self.out_dir / "model.npz"
        self._check_ranks_agree()
        if self.comm.rank == 0:
            save_model(model, model_path)
        return RunResult(
            self.task,
            st.history,
            metrics,
            on,
            model_path,
            self.out_dir,
            st.stopped_early,
            st.best_epoch,
            model,
            st.threads,
        )

    def _check_ranks_agree(self) -> None:
        """Every rank applied the same updates, so their parameters (and batch_norm's running
        statistics, taken over the whole batch) must be bit-identical."""
        arrays = [*self.net.params.values(), *self.net.buffers.values()]
        digest = hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()
        digests = self.comm.allgather(digest)
        if len(set(digests)) > 1:
            raise TrainingError(
                "the MPI ranks' parameters differ at the end (SHA-256 by rank: "
                f"{', '.join(d[:12] for d in digests)}); the model was not saved"
            )


def train(
    cfg: Config,
    out_dir: str | Path | None = None,
    resume: bool = False,
    hooks: TrainHooks | None = None,
    stop: threading.Event | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Train the network a config describes; write model.npz, history.csv and config.yaml into
    ``out_dir`` (default output.dir) as one unit (``mlpbp.run.folder``): a folder that already
    holds a run is refused unless ``overwrite`` or ``resume``."""
    folder = RunFolder.open(out_dir if out_dir is not None else cfg.output.dir, resume=resume, overwrite=overwrite)
    try:
        data = prepare(cfg)
        return run_in(folder, lambda: Trainer(cfg, data, folder.work, hooks, stop).run(resume=resume))
    finally:
        folder.discard()
        folder.close()
