"""The CLI owns the process: exit codes, signal handling and one-line errors live in mlpbp/cli;
the library raises typed exceptions, offers a stop request and changes no process state."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading

import pytest

import mlpbp.errors as errors
from helpers import PYTHON, TINY_CONFIG, subprocess_env
from mlpbp.cli import app
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
from mlpbp.io import atomic_open, remove_stale_tmp, write_text
from mlpbp.run.checkpoint import load_checkpoint
from mlpbp.run.config import config_from_dict, load_config
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer, TrainHooks

LIBRARY_ERRORS = [ConfigError, DataError, ModelFileError, ArgumentError, OutputError, ResourceError, TrainingError]


def test_importing_every_module_changes_no_process_state():
    # Third-party libraries are imported first: some set variables at import (threadpoolctl
    # sets KMP_DUPLICATE_LIB_OK); what is checked is that mlpbp's own modules change nothing.
    script = """
import ast, contextlib, importlib, os, pathlib, pkgutil, signal, sys
import mlpbp

modules = [m.name for m in pkgutil.walk_packages(mlpbp.__path__, "mlpbp.") if m.name != "mlpbp.__main__"]
for name in modules:
    tree = ast.parse(pathlib.Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        names += [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for n in names:
            if n.split(".")[0] != "mlpbp":
                with contextlib.suppress(ImportError):
                    importlib.import_module(n)

def state():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask, signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), dict(os.environ)

before = state()
for name in modules:
    importlib.import_module(name)
print(before == state())
"""
    res = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "True"


def test_library_errors_are_typed_and_carry_no_exit_codes():
    for cls in [*LIBRARY_ERRORS, Interrupted]:
        assert issubclass(cls, MlpbpError)
        assert not hasattr(cls, "exit_code")
    assert not any(
        hasattr(getattr(errors, n), "exit_code") for n in dir(errors) if isinstance(getattr(errors, n), type)
    )


@pytest.mark.parametrize(
    "exc, code, needles",
    [
        (ConfigError("config error at train.epochs: bad"), 2, ("train.epochs",)),
        (DataError("data.csv: row 3, column 'x': 'a' is not a number"), 2, ("row 3",)),
        (ResourceError("too big"), 2, ("too big",)),
        (OutputError("cannot write out/model.npz: Permission denied"), 2, ("cannot write",)),
        (TrainingError("diverged at epoch 1"), 1, ("diverged",)),
        (Interrupted("interrupted while reading data.csv"), 130, ("interrupted while reading data.csv",)),
        (KeyboardInterrupt(), 130, ("interrupted",)),
        (RuntimeError("boom\nsecond line"), 1, ("unexpected RuntimeError: boom second line", "report")),
        (MemoryError(), 2, ("not enough memory", "MemoryError")),  # memory is input (issue 19)
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_the_cli_maps_exception_types_to_exit_codes(runner, monkeypatch, tmp_path, exc, code, needles):
    def raiser(*args, **kwargs):
        raise exc

    monkeypatch.delenv("MLPBP_DEBUG", raising=False)
    monkeypatch.setattr("mlpbp.run.config.load_config", raiser)
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml")])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == code, res.stderr
    assert isinstance(res.exception, SystemExit), res.exception
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0]


def test_the_cli_puts_its_flags_in_library_messages(runner, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_CONFIG)
    message = str(pytest.raises(ConfigError, load_config, cfg, ["train.epochs"]).value)
    assert message.startswith("bad override 'train.epochs'") and "--" not in message
    res = runner.invoke(app, ["train", str(cfg), "--set", "train.epochs"])
    assert res.exit_code == 2 and "bad --set 'train.epochs'" in res.stderr


UNEXPECTED = """
import sys
import mlpbp.run.config as t
from mlpbp.cli import main

def boom(*args, **kwargs):
    raise ZeroDivisionError("an internal mistake")

t.load_config = boom
sys.argv = ["mlpbp", "train", "whatever.yaml"]
main()
"""


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_exception_is_one_line_unless_mlpbp_debug(debug):
    env = subprocess_env()
    env.pop("MLPBP_DEBUG", None)
    if debug:
        env["MLPBP_DEBUG"] = "1"
    res = subprocess.run([PYTHON, "-c", UNEXPECTED], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1
    if debug:
        assert "Traceback" in res.stderr and "ZeroDivisionError: an internal mistake" in res.stderr
    else:
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert "unexpected ZeroDivisionError: an internal mistake" in lines[0] and "report" in lines[0]


def test_mlpbp_debug_lets_the_traceback_out_under_clirunner(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("MLPBP_DEBUG", "1")
    monkeypatch.setattr("mlpbp.run.config.load_config", lambda *a: 1 / 0)
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml")])
    assert res.exit_code == 1 and isinstance(res.exception, ZeroDivisionError)


# ---- the stop request ------------------------------------------------------------------------------


class _StopAt(TrainHooks):
    def __init__(self, stop: threading.Event, epoch: int, step: int) -> None:
        self.stop, self.at, self.epoch = stop, (epoch, step), 0
        self.handlers = []

    def epoch_start(self, epoch: int, n_steps: int) -> None:
        self.epoch = epoch

    def progress(self, steps_done: int, n_steps: int) -> None:
        self.handlers.append(signal.getsignal(signal.SIGINT))
        if (self.epoch, steps_done) >= self.at:
            self.stop.set()


def test_a_stop_request_ends_training_between_steps_with_a_checkpoint(tmp_path):
    cfg = config_from_dict(
        {
            "data": {"dataset": "moons", "n_samples": 200},
            "model": {"hidden": [4]},
            "train": {"epochs": 5, "batch_size": 1},
        }
    )
    stop = threading.Event()
    hooks = _StopAt(stop, 2, 30)
    trainer = Trainer(cfg, prepare(cfg), tmp_path, hooks=hooks, stop=stop)
    with pytest.raises(Interrupted, match=r"interrupted at epoch 2, step 3\d; checkpoint saved"):
        trainer.run()
    # the library never touched the process's SIGINT handler
    assert set(hooks.handlers) == {signal.getsignal(signal.SIGINT)}
    state, _ = load_checkpoint(trainer.checkpoint_path, trainer.net.params, trainer.opt.state_dict())
    assert (state.epoch, state.step) == (1, trainer.state.step) and state.step >= 30
    assert (tmp_path / "config.yaml").is_file() and not (tmp_path / "model.npz").exists()


def test_the_trainer_is_handed_its_data_and_never_loads_any(tmp_path, monkeypatch):
    cfg = config_from_dict({"data": {"dataset": "moons", "n_samples": 60}, "train": {"epochs": 1}})
    data = prepare(cfg)

    def no_loading(*args, **kwargs):
        raise AssertionError("the trainer loaded data")

    monkeypatch.setattr("mlpbp.run.prepare.load_table", no_loading)
    monkeypatch.setattr("mlpbp.run.trainer.prepare", no_loading)
    result = Trainer(cfg, data, tmp_path).run()
    assert result.history[0]["epoch"] == 1 and result.model_path.is_file()


# ---- files --------------------------------------------------------------------------------------------


def test_written_files_get_the_umask_of_the_process(tmp_path):
    previous = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


def _dead_pid() -> int:
    proc = subprocess.Popen([PYTHON, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_write_removes_only_the_leftovers_of_dead_writers(tmp_path):
    live = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".model.npz.{_dead_pid()}.0123abcd.tmp"
        mine = tmp_path / f".model.npz.{os.getpid()}.0123abcd.tmp"  # another thread's write
        running = tmp_path / f".history.csv.{live.pid}.89abcdef.tmp"  # a concurrent writer's
        abandoned = tmp_path / f".config.yaml.{live.pid}.00000000.tmp"  # pid reused long after
        foreign = [tmp_path / "notes.tmp", tmp_path / ".model.npz.tmp", tmp_path / f".x.{_dead_pid()}.zz.tmp"]
        for p in [dead, mine, running, abandoned, *foreign]:
            p.write_text("partial")
        two_hours_ago = abandoned.stat().st_mtime - 7200
        os.utime(abandoned, (two_hours_ago, two_hours_ago))
        write_text(tmp_path / "model.npz", "new")
        assert not dead.exists() and not abandoned.exists()
        assert mine.exists() and running.exists() and all(p.exists() for p in foreign)
    finally:
        live.kill()
        live.wait()


KILLED_WRITER = """
import os, signal, sys
from mlpbp.io import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write("half a file")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_leftover_of_a_killed_write_goes_at_the_next_write_to_that_folder(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("old\n")
    res = subprocess.run([PYTHON, "-c", KILLED_WRITER, str(target)], env=subprocess_env(), timeout=60)
    assert res.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".history.csv.*.tmp"))
    assert len(leftovers) == 1 and target.read_text() == "old\n"
    write_text(tmp_path / "other.txt", "x")
    assert not leftovers[0].exists() and target.read_text() == "old\n"
    assert remove_stale_tmp(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError), atomic_open(target, "wb") as f:
        f.write(b"new")
        _ = 1 / 0
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_data_written_by_a_run_keeps_the_leftover_rule(tmp_path):
    # a run's own writes (checkpoint, history, config, model) clean their folder as well
    cfg = config_from_dict({"data": {"dataset": "moons", "n_samples": 60}, "train": {"epochs": 1}})
    leftover = tmp_path / f".checkpoint.npz.{_dead_pid()}.0123abcd.tmp"
    leftover.write_bytes(b"partial")
    Trainer(cfg, prepare(cfg), tmp_path).run()
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.npz",
        "config.yaml",
        "history.csv",
        "model.npz",
    ]
