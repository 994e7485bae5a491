"""A run folder is one unit: refused unless --overwrite or --resume, replaced whole (never a mix
of two runs, whenever the writer is killed), locked against a second writer, and SIGTERM is a
stop that checkpoints like Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers import PYTHON, ROOT, TINY_CONFIG, subprocess_env
from mlpbp.cli import app
from mlpbp.errors import ArgumentError, OutputError
from mlpbp.run.config import load_config
from mlpbp.run.folder import LOCK_NAME, RunFolder
from mlpbp.run.model_file import load_model
from mlpbp.run.trainer import TrainHooks, train
from mlpbp.tools.plot import load_run


def _cfg(tmp: Path, name: str = "tiny.yaml", text: str = TINY_CONFIG) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _one_error_line(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_a_second_run_into_a_folder_that_holds_one_is_refused_and_nothing_changes(tmp_path, runner):
    cfg, out = _cfg(tmp_path), tmp_path / "out"
    assert runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q"]).exit_code == 0
    before = _snapshot(out)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q"])
    assert res.exit_code == 2
    assert _one_error_line(res) == (
        f"error: output directory {out} already holds a run (config.yaml, checkpoint.npz, history.csv,"
        " model.npz); pass --overwrite to replace it, --resume to continue it, or choose another output directory"
    )
    assert _snapshot(out) == before
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q", "--overwrite", "--resume"])
    assert res.exit_code == 2 and "give one" in _one_error_line(res)


def test_the_python_api_refuses_it_too(tmp_path):
    cfg = load_config(_cfg(tmp_path))
    train(cfg, tmp_path / "out")
    with pytest.raises(OutputError, match="already holds a run"):
        train(cfg, tmp_path / "out")
    with pytest.raises(ArgumentError):
        RunFolder.open(tmp_path / "out", resume=True, overwrite=True)


def test_overwrite_replaces_the_run_whole_and_keeps_the_users_other_files(tmp_path, runner):
    cfg, out = _cfg(tmp_path), tmp_path / "out"
    assert runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q", "--plot"]).exit_code == 0
    assert (out / "curves.png").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "a.txt").write_text("also mine")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q", "--overwrite", "--set", "seed=5"])
    assert res.exit_code == 0, res.stderr
    assert f"in {out}" in res.stdout  # the run folder is named, never the folder it was built in
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "a.txt").read_text() == "also mine"
    assert not (out / "curves.png").exists()  # the old run's plot is not this run's
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == 5
    assert load_model(out / "model.npz").config["seed"] == 5
    assert not (out / LOCK_NAME).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.yaml"]  # no build folder left


def test_a_failed_overwrite_leaves_the_old_run_as_it_was(tmp_path, runner):
    cfg, out = _cfg(tmp_path), tmp_path / "out"
    assert runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q"]).exit_code == 0
    before = _snapshot(out)
    bad = _cfg(tmp_path, "bad.yaml", "data: {path: nowhere.csv}\n")
    res = runner.invoke(app, ["train", str(bad), "--out", str(out), "-q", "--overwrite"])
    assert res.exit_code == 2 and "nowhere.csv" in _one_error_line(res)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out", "tiny.yaml"]


def test_output_paths_that_are_inputs_or_not_folders_are_refused(tmp_path, runner, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, "config.yaml")
    res = runner.invoke(app, ["train", "config.yaml", "--out", "."])
    assert res.exit_code == 2
    assert _one_error_line(res) == (
        "error: output directory . would replace the config file config.yaml with the run's config.yaml;"
        " choose another output directory"
    )
    (tmp_path / "afile").write_text("x")
    res = runner.invoke(app, ["train", "config.yaml", "--out", "afile"])
    assert res.exit_code == 2
    assert (
        _one_error_line(res) == "error: output directory afile is a file, not a folder; choose another output directory"
    )
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    res = runner.invoke(app, ["train", "config.yaml", "--out", "dangling"])
    assert res.exit_code == 2
    assert _one_error_line(res) == (
        f"error: output directory dangling is a symbolic link to {tmp_path / 'gone'}, which does not exist"
    )
    assert cfg.read_text() == TINY_CONFIG and (tmp_path / "afile").read_text() == "x"


def test_training_into_the_working_directory_replaces_the_run_file_by_file(tmp_path, runner, monkeypatch):
    # A shell inside the folder must keep seeing it: the folder is not swapped, its files are.
    cfg = _cfg(tmp_path, "t.yaml")
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["train", "t.yaml", "--out", ".", "-q"]).exit_code == 0
    inode = os.stat(tmp_path).st_ino
    res = runner.invoke(app, ["train", "t.yaml", "--out", ".", "-q", "--overwrite", "--set", "seed=2"])
    assert res.exit_code == 0, res.stderr
    assert os.stat(tmp_path).st_ino == inode and cfg.read_text() == TINY_CONFIG
    assert load_model(tmp_path / "model.npz").config["seed"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---- the lock ------------------------------------------------------------------------------------

HOLDER = """\
import sys, time
from mlpbp.run.folder import RunFolder
folder = RunFolder.open(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_writers_lock_is_not_stale(tmp_path, runner):
    cfg, out = _cfg(tmp_path), tmp_path / "out"
    holder = subprocess.Popen([PYTHON, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q"])
        assert res.exit_code == 2
        assert _one_error_line(res) == (
            f"error: output directory {out} is in use by another run (PID {holder.pid}, lock {out / LOCK_NAME});"
            " wait for it to end or choose another output directory"
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert (out / LOCK_NAME).read_text().strip() == str(holder.pid)  # the killed writer's lock file is left
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.stderr
    assert not (out / LOCK_NAME).exists()


def test_two_concurrent_trains_into_one_folder_one_refused(tmp_path):
    cfg, out = _cfg(tmp_path, text=TINY_CONFIG.replace("epochs: 2", "epochs: 3000")), tmp_path / "out"
    cmd = [PYTHON, "-m", "mlpbp", "train", str(cfg), "--out", str(out), "-q"]
    a = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=subprocess_env())
    try:
        deadline = time.monotonic() + 60
        while not (out / LOCK_NAME).exists():
            assert a.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        b = subprocess.run([*cmd, "--overwrite"], capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert b.returncode == 2 and f"in use by another run (PID {a.pid}" in b.stderr, b.stderr
    finally:
        a.wait(120)
    assert a.returncode == 0, a.stderr
    assert len(list(csv.DictReader((out / "history.csv").open()))) == 3000


# ---- SIGKILL at each moment of an --overwrite -------------------------------------------------------

# 300 steps an epoch (batch 1): a run takes about a second, with checkpoints on the way.
KILL_CONFIG = """\
seed: {seed}
data: {{dataset: moons, n_samples: 400}}
model: {{hidden: [6]}}
train: {{epochs: {epochs}, batch_size: 1, learning_rate: 0.02}}
"""


def _consistent(out: Path) -> int:
    """The folder holds one run, whose config, history, checkpoint and model agree; its seed."""
    config = yaml.safe_load((out / "config.yaml").read_text())
    history = list(csv.DictReader((out / "history.csv").open()))
    with np.load(out / "checkpoint.npz") as z:
        state = json.loads(str(z["state"]))
    assert state["config"]["seed"] == config["seed"]
    assert [float(r["train_loss"]) for r in history] == [r["train_loss"] for r in state["history"]]
    if (out / "model.npz").exists():
        model = load_model(out / "model.npz")
        assert model.config == config and len(history) == config["train"]["epochs"]
        run = load_run(out)  # what mlpbp plot draws: this history, and the model's test metrics
        assert [r["train_loss"] for r in run.history] == [float(r["train_loss"]) for r in history]
        X, y = run.test  # the test split, rebuilt from the model's config: what evaluate scores
        accuracy = float(np.mean(model.predict_outputs(X).argmax(axis=1) == y))
        assert accuracy == pytest.approx(run.metrics["accuracy"], abs=1e-12)
    return config["seed"]


# The moments of an --overwrite, as its own writes show them, in the order it reaches them: its
# build folder made beside the run folder, the config written in it, the first epoch's history
# and checkpoint, the second epoch's checkpoint (a new file renamed over the first), the model;
# then the swap (the run folder is the build folder now) and the old run's folder removed.
BEFORE_SWAP = ("build", "config", "history", "checkpoint", "checkpoint 2", "model")
AFTER_SWAP = ("swap", "old run removed")


class _Writes:
    """What one ``mlpbp train --overwrite`` into ``out`` (process ``pid``) has written so far."""

    def __init__(self, out: Path, pid: int) -> None:
        self.out, self.prefix = out, f".{out.name}.{pid}."
        self.folder_id = out.stat().st_ino
        self.build: Path | None = None
        self.checkpoint: int | None = None  # the first checkpoint's inode
        self.seen: set[str] = set()

    def _moments(self) -> set[str]:
        if self.build is None:
            found = [p for p in self.out.parent.iterdir() if p.name.startswith(self.prefix) and p.name.endswith(".run")]
            self.build = found[0] if found else None
        now = set()
        if self.build is not None:
            now.add("build")
            for name, moment in (("config.yaml", "config"), ("history.csv", "history"), ("model.npz", "model")):
                if (self.build / name).exists():
                    now.add(moment)
            try:
                inode = (self.build / "checkpoint.npz").stat().st_ino
            except FileNotFoundError:
                inode = None
            if inode is not None:
                now.add("checkpoint")
                self.checkpoint = inode if self.checkpoint is None else self.checkpoint
                if inode != self.checkpoint:
                    now.add("checkpoint 2")
            try:
                swapped = self.out.stat().st_ino != self.folder_id
            except FileNotFoundError:  # between the two renames where renameat2 is missing
                swapped = False
            if swapped:
                now |= {"swap", *BEFORE_SWAP}  # the build folder's files are the run folder's now
                if not self.build.exists():
                    now.add("old run removed")
        return now

    def reached(self, moment: str) -> bool:
        self.seen |= self._moments()
        return moment in self.seen


@pytest.mark.slow
def test_sigkill_at_each_moment_of_an_overwrite_leaves_one_complete_run(tmp_path, runner):
    """20 kills, each right after the run's own writes show one of its moments (no clock: a
    kill comes after its moment however loaded the machine is). Before the swap the folder
    holds the old run or, had the kill landed after it, the new one; from the swap on, the new
    one: whole each time, as plot and evaluate read it."""
    out = tmp_path / "out"
    first = _cfg(tmp_path, "run0.yaml", KILL_CONFIG.format(seed=100, epochs=3))
    assert runner.invoke(app, ["train", str(first), "--out", str(out), "-q"]).exit_code == 0
    moments = [*BEFORE_SWAP, *AFTER_SWAP]
    kills = {m: 0 for m in moments}
    for trial in range(20):
        moment = moments[trial % len(moments)]
        cfg = _cfg(tmp_path, "run.yaml", KILL_CONFIG.format(seed=trial, epochs=3))
        before = _consistent(out)
        proc = subprocess.Popen(
            [PYTHON, "-m", "mlpbp", "train", str(cfg), "--out", str(out), "-q", "--overwrite"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=subprocess_env(),
        )
        try:
            writes = _Writes(out, proc.pid)
            while proc.poll() is None and not writes.reached(moment):
                time.sleep(0.0002)
            proc.send_signal(signal.SIGKILL)
            _, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
        assert writes.reached(moment), (moment, proc.returncode, stderr)  # it ended there, or was killed
        kills[moment] += proc.returncode == -signal.SIGKILL
        after = _consistent(out)
        if moment in AFTER_SWAP:
            assert after == trial, (moment, before, after, trial)  # the new run, whole
        else:
            assert after in (before, trial), (moment, before, after, trial)  # the old run or the new one, whole
    # the kills before the swap landed while the run was still going
    assert all(kills[m] > 0 for m in BEFORE_SWAP), kills
    # the hidden build folders the kills left go with the next run into the folder
    cfg = _cfg(tmp_path, "run.yaml", KILL_CONFIG.format(seed=99, epochs=1))
    assert runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q", "--overwrite"]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---- SIGTERM -------------------------------------------------------------------------------------

SIGTERM_CONFIG = """\
seed: 3
data: {dataset: moons, n_samples: 300, noise: 0.2}
model: {hidden: [8], activation: tanh}
train: {epochs: 30, batch_size: 1, learning_rate: 0.05, momentum: 0.9, schedule: step, step_size: 3,
        gamma: 0.9, patience: 200}
"""


def _params(path: Path) -> dict[str, bytes]:
    with np.load(path) as z:
        return {k: z[k].tobytes() for k in z.files if k.startswith("param.") or k[0] in "Wb"}


def test_sigterm_mid_epoch_checkpoints_exits_143_and_resume_is_bit_identical(tmp_path, runner):
    cfg = _cfg(tmp_path, "term.yaml", SIGTERM_CONFIG)
    ref = tmp_path / "ref"
    assert runner.invoke(app, ["train", str(cfg), "--out", str(ref), "-q"]).exit_code == 0
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
        deadline = time.monotonic() + 60
        while not (out / "history.csv").exists():  # past the first epoch: mid-run
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    line = _one_error_line(subprocess.CompletedProcess([], 143, "", stderr))
    assert line.startswith("error: SIGTERM: interrupted at epoch ") and "checkpoint saved to" in line
    assert line.endswith(f"resume with: mlpbp train {cfg} --out {out} --resume")
    assert not (out / "model.npz").exists()
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--resume", "-q"])
    assert res.exit_code == 0, res.stderr
    assert (out / "history.csv").read_bytes() == (ref / "history.csv").read_bytes()
    assert _params(out / "model.npz") == _params(ref / "model.npz")


def _wait_until_mlpbp_runs(proc: subprocess.Popen) -> None:
    """Until mlpbp's start-up code runs in ``proc``: its first act is to catch SIGTERM (the
    SigCgt mask of /proc/PID/status; where there is no /proc, 0.15 s). Before that, a Ctrl-C is
    the interpreter's own traceback while it starts (0.1 s, several times that under load),
    which no code of ours can catch."""
    status = Path(f"/proc/{proc.pid}/status")
    if not status.exists():
        time.sleep(0.15)
        return
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            line = next(t for t in status.read_text().splitlines() if t.startswith("SigCgt:"))
        except (OSError, StopIteration):
            return  # it has ended
        if int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.0005)


# Slow and timing-bound: a Ctrl-C from mlpbp's first line on, at a random moment of the imports
# (Typer, Rich, NumPy, ...) or of the run that follows.
# The window once missed (exit 130, nothing on stderr, 1 trial in 20): Typer's own silent exit 130
# for a KeyboardInterrupt while it parses the command line, which main() now says.
@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_startup_is_one_line_and_exit_130(tmp_path):
    cfg = _cfg(tmp_path)
    rng = random.Random(7)
    for trial in range(20):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from mlpbp.__main__ import run; run()",
                "train",
                str(cfg),
                "-q",
                "--out",
                str(tmp_path / f"o{trial}"),
            ],
            env=subprocess_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_until_mlpbp_runs(proc)
        time.sleep(rng.uniform(0.0, 0.45))  # anywhere from mlpbp's first line through the imports, into the run
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        if proc.returncode == 0:  # it finished first
            continue
        assert proc.returncode == 130, stderr
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "interrupted" in lines[0], stderr


@pytest.mark.parametrize(
    "signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_stop_while_typer_parses_the_command_line_is_one_line(monkeypatch, capsys, signum, code, word):
    """Typer ends a KeyboardInterrupt raised while it parses (before a command's own handling)
    with a silent exit 130: main() says it, with the signal's code. The window the start-up
    test above hit once in 20 trials, made certain here."""
    import importlib

    cli = importlib.import_module("mlpbp.cli.app")  # the module (mlpbp.cli.app is also the Typer app's name)

    def stopped(*args, **kwargs):
        cli._stopped_by.append(signum)  # as the handlers do
        raise cli.Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys, "argv", ["mlpbp", "train", "c.yaml"])
    monkeypatch.setattr(cli._Command, "parse_args", stopped)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main()
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    assert e.value.code == code
    assert capsys.readouterr().err == f"error: {word}\n"


# ---- resuming with another thread count ------------------------------------------------------------


class _StopAfterFirstEpoch(TrainHooks):
    def __init__(self, stop) -> None:
        self.stop, self.notes = stop, []

    def epoch_end(self, record: dict) -> None:
        self.stop.set()

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_resuming_with_another_thread_count_says_the_last_bits_change(tmp_path):
    import threading

    from mlpbp.errors import Interrupted
    from mlpbp.run.prepare import prepare
    from mlpbp.run.trainer import Trainer

    cfg = load_config(_cfg(tmp_path, text=TINY_CONFIG.replace("epochs: 2", "epochs: 3, threads: 1")))
    stop = threading.Event()
    with pytest.raises(Interrupted):
        Trainer(cfg, prepare(cfg), tmp_path / "out", _StopAfterFirstEpoch(stop), stop).run()
    same = _StopAfterFirstEpoch(threading.Event())
    same.epoch_end = lambda record: None
    cfg.train.threads = 2
    Trainer(cfg, prepare(cfg), tmp_path / "out", same).run(resume=True)
    assert same.notes == [
        "this run started with 1 BLAS thread and goes on with 2: sums in another order change the result in"
        " the last bits (--threads 1 resumes it bit for bit)"
    ]
