"""Checkpoints, interruption, resume, divergence and determinism.

- SIGKILL at random moments while checkpoints are being written: the checkpoint on disk
  always loads (or does not exist yet).
- SIGINT mid-epoch: exit 130 and a line saying how to resume; `--resume` then finishes with
  weights and history bit-identical to an uninterrupted run. Also in-process, interrupting
  at chosen steps several times over.
- A huge learning rate: exit 1, "diverged at epoch E, step S", the last good checkpoint loads.
- The same config and seed twice: byte-identical history.csv and weights.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import mlpbp.run.trainer as train_mod
from helpers import PYTHON, ROOT, TINY_CONFIG, InterruptAt, subprocess_env
from mlpbp.cli import app
from mlpbp.cli.app import sigint_requests_stop
from mlpbp.errors import Interrupted
from mlpbp.run.checkpoint import load_checkpoint
from mlpbp.run.config import load_config
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals")


def _params(model_path: Path) -> dict[str, bytes]:
    with np.load(model_path) as z:
        return {
            k: z[k].tobytes() + str(z[k].dtype).encode() + str(z[k].shape).encode()
            for k in z.files
            if k.startswith("param.")
        }


def _same_run(a: Path, b: Path) -> None:
    """Bit-identical weights (every parameter array) and history.csv bytes."""
    assert (a / "history.csv").read_bytes() == (b / "history.csv").read_bytes()
    pa, pb = _params(a / "model.npz"), _params(b / "model.npz")
    assert pa and pa == pb


def _trainer(cfg, out: Path, **kwargs) -> Trainer:
    return Trainer(cfg, prepare(cfg), out, **kwargs)


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.005)


# ---- SIGKILL during checkpoint writes ------------------------------------------------------------

# One step per epoch and no metrics splits: the loop is mostly checkpoint writing.
KILL_CONFIG = """\
seed: 1
data: {dataset: moons, n_samples: 40, test_fraction: 0, validation_fraction: 0}
model: {hidden: [6]}
train: {epochs: 10000000, batch_size: 64, momentum: 0.9}
"""

# A test-only driver: the Trainer with checkpoints after every epoch (no 1 s rate limit),
# resuming when a checkpoint is there, as a user would after a crash.
DRIVER = """\
import sys
import mlpbp.run.trainer as T
from mlpbp.run.config import load_config
T.CHECKPOINT_INTERVAL_S = 0
cfg_path, out = sys.argv[1], sys.argv[2]
cfg = load_config(cfg_path)
T.Trainer(cfg, T.prepare(cfg), out).run(resume=(T.Path(out) / "checkpoint.npz").exists())
"""


def test_sigkill_during_checkpoint_writes_never_leaves_a_broken_checkpoint(tmp_path):
    cfg_path = _write(tmp_path, "kill.yaml", KILL_CONFIG)
    out = tmp_path / "out"
    ck = out / "checkpoint.npz"
    rng = random.Random(5)
    epochs_seen = []
    for _ in range(10):
        (out / "config.yaml").unlink(missing_ok=True)
        proc = subprocess.Popen(
            [PYTHON, "-c", DRIVER, str(cfg_path), str(out)],
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(out / "config.yaml", proc)  # the training loop is starting
            time.sleep(rng.uniform(0.0, 0.15))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, stderr.decode()
        if not ck.exists():  # killed before the first checkpoint: allowed, nothing to load
            epochs_seen.append(0)
            continue
        trainer = _trainer(load_config(cfg_path), out)
        state, best = load_checkpoint(ck, trainer.net.params, trainer.opt.state_dict())
        assert all(np.isfinite(p).all() for p in trainer.net.params.values())
        assert state.step == 0 and len(state.history) == state.epoch and best is None
        epochs_seen.append(state.epoch)
    # each run resumed from the previous one's checkpoint and got further
    assert epochs_seen == sorted(epochs_seen) and epochs_seen[-1] > 0, epochs_seen
    # whatever temporary files the kills left, the next resume still works
    trainer = _trainer(load_config(cfg_path), out)
    trainer._resume()
    assert trainer.state.epoch == epochs_seen[-1]


# ---- SIGINT and --resume ---------------------------------------------------------------------------

# batch_size 1 on 210 training rows: 210 steps an epoch, ~1 s of training in all. Momentum, a
# step schedule and early-stopping bookkeeping all have state the checkpoint must carry.
SIGINT_CONFIG = """\
seed: 3
data: {dataset: moons, n_samples: 300, noise: 0.2}
model: {hidden: [8], activation: tanh}
train: {epochs: 80, batch_size: 1, learning_rate: 0.05, momentum: 0.9, schedule: step, step_size: 3,
        gamma: 0.9, patience: 200}
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of SIGINT_CONFIG (in-process)."""
    from typer.testing import CliRunner

    tmp = tmp_path_factory.mktemp("reference")
    cfg = _write(tmp, "sig.yaml", SIGINT_CONFIG)
    res = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp / "out"), "-q"])
    assert res.exit_code == 0, res.stderr
    return tmp / "out"


def test_sigint_mid_epoch_then_resume_is_bit_identical(tmp_path, runner, reference):
    cfg = _write(tmp_path, "sig.yaml", SIGINT_CONFIG)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlpbp", "train", str(cfg), "--out", str(out), "-q"],
        env=subprocess_env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(out / "config.yaml", proc)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert "interrupted at epoch" in lines[0] and "--resume" in lines[0]
    assert f"--out {out}" in lines[0]
    assert not (out / "model.npz").exists()

    # the checkpoint holds a mid-epoch position (the interrupt is acted on after a whole step)
    trainer = _trainer(load_config(cfg), out)
    state, _ = load_checkpoint(trainer.checkpoint_path, trainer.net.params, trainer.opt.state_dict())
    assert state.step >= 1 and state.epoch < 80

    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--resume", "-q"])
    assert res.exit_code == 0, res.stderr
    _same_run(out, reference)


@pytest.mark.parametrize(
    "stops",
    [
        [(1, 4)],  # in the first epoch, before any epoch-end checkpoint
        [(2, 208), (5, 100)],  # near an epoch's end; then again mid-epoch
        [(3, 8), (3, 12), (40, 50)],  # twice within one epoch, then late in the run
    ],
)
def test_repeated_interrupts_and_resumes_are_bit_identical(tmp_path, reference, stops):
    cfg = load_config(_write(tmp_path, "sig.yaml", SIGINT_CONFIG))
    out = tmp_path / "out"
    for i, (epoch, step) in enumerate(stops):
        trainer = _trainer(cfg, out, hooks=InterruptAt(epoch, step))
        # the CLI's handler turns SIGINT into the trainer's stop request
        with sigint_requests_stop(trainer.stop), pytest.raises(Interrupted, match="interrupted at epoch"):
            trainer.run(resume=i > 0)
        assert trainer.state.epoch + 1 == epoch  # stopped in the epoch it was asked to
    _trainer(cfg, out).run(resume=True)
    _same_run(out, reference)


# ---- divergence -------------------------------------------------------------------------------------


def test_divergence_exit_1_and_last_good_checkpoint_loads(tmp_path, runner, monkeypatch):
    monkeypatch.setattr(train_mod, "CHECKPOINT_INTERVAL_S", 0)  # a checkpoint after every epoch
    cfg = _write(tmp_path, "tiny.yaml", TINY_CONFIG)
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        ["train", str(cfg), "--out", str(out), "-q", "--set", "train.learning_rate=1000", "--set", "train.epochs=50"],
    )
    assert res.exit_code == 1, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr  # no NumPy overflow warnings
    assert "diverged at epoch" in lines[0] and "try a smaller learning rate" in lines[0]
    assert "loss=nan" in lines[0] or "loss=inf" in lines[0]
    diverged_epoch = int(lines[0].split("diverged at epoch ")[1].split(",")[0])
    assert diverged_epoch >= 2, lines[0]  # so some epoch ended well and was checkpointed
    assert "checkpoint.npz" in lines[0]  # the message points at the last good checkpoint
    assert not (out / "model.npz").exists()

    trainer = _trainer(load_config(cfg, ["train.learning_rate=1000", "train.epochs=50"]), out)
    state, _ = load_checkpoint(trainer.checkpoint_path, trainer.net.params, trainer.opt.state_dict())
    assert state.epoch == diverged_epoch - 1 and state.step == 0
    assert all(np.isfinite(p).all() for p in trainer.net.params.values())
    assert all(np.isfinite(r["train_loss"]) for r in state.history)


# ---- determinism ------------------------------------------------------------------------------------


def test_same_config_and_seed_give_identical_history_and_weights(tmp_path, runner):
    cfg = _write(tmp_path, "tiny.yaml", TINY_CONFIG.replace("epochs: 2", "epochs: 6"))
    for name in ("a", "b"):
        res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / name), "-q"])
        assert res.exit_code == 0, res.stderr
    _same_run(tmp_path / "a", tmp_path / "b")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "c"), "-q", "--set", "seed=1"])
    assert res.exit_code == 0
    assert _params(tmp_path / "c" / "model.npz") != _params(tmp_path / "a" / "model.npz")


ADAM_CONFIG = """\
seed: 4
data: {dataset: moons, n_samples: 200, noise: 0.2}
model: {hidden: [8], activation: tanh}
train: {optimizer: OPT, epochs: 6, batch_size: 2, learning_rate: 0.01, weight_decay: 0.05, schedule: cosine}
"""


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_interrupted_and_resumed_is_bit_identical(tmp_path, optimizer):
    """Adam's moments and step count travel in the checkpoint: stop mid-epoch twice, resume,
    and the weights and history equal an uninterrupted run's, bit for bit."""
    cfg = load_config(_write(tmp_path, "adam.yaml", ADAM_CONFIG.replace("OPT", optimizer)))
    _trainer(cfg, tmp_path / "ref").run()
    out = tmp_path / "out"
    for i, (epoch, step) in enumerate([(1, 30), (4, 10)]):
        trainer = _trainer(cfg, out, hooks=InterruptAt(epoch, step))
        with sigint_requests_stop(trainer.stop), pytest.raises(Interrupted):
            trainer.run(resume=i > 0)
    resumed = _trainer(cfg, out)
    resumed.run(resume=True)
    assert resumed.opt.steps == 6 * 70  # 140 training rows, batches of 2
    _same_run(out, tmp_path / "ref")


# Plain SGD at batch 1: the first layer's updates are deferred (here in groups of 4, on any
# first layer), so a stop is taken only where a group was applied.
DEFERRED_CONFIG = """\
seed: 5
data: {dataset: moons, n_samples: 300, noise: 0.2}
model: {hidden: [8], activation: tanh}
train: {epochs: 6, batch_size: 1, learning_rate: 0.05}
"""


def test_interrupts_with_deferred_first_layer_updates_resume_bit_identically(tmp_path, monkeypatch):
    import mlpbp.engine.network as network

    monkeypatch.setattr(network, "DEFER_MIN_SIZE", 0)
    monkeypatch.setattr(network, "DEFER_STEPS", 4)
    cfg = load_config(_write(tmp_path, "d.yaml", DEFERRED_CONFIG))
    _trainer(cfg, tmp_path / "ref").run()
    out = tmp_path / "out"
    for i, (epoch, step) in enumerate([(1, 5), (3, 150)]):  # neither step is a multiple of 4
        trainer = _trainer(cfg, out, hooks=InterruptAt(epoch, step))
        with sigint_requests_stop(trainer.stop), pytest.raises(Interrupted, match="interrupted at epoch"):
            trainer.run(resume=i > 0)
        assert trainer.state.step % 4 == 0 and trainer.state.step >= step
    _trainer(cfg, out).run(resume=True)
    _same_run(out, tmp_path / "ref")
