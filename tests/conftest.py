"""Shared fixtures: a tiny config and one real training run per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent

# Two moons, 60 rows, a 4-unit hidden layer, 2 epochs: trains in milliseconds.
TINY_CONFIG = """\
seed: 0
data: {dataset: moons, n_samples: 60}
model: {hidden: [4]}
train: {epochs: 2, batch_size: 16, momentum: 0.5}
"""


def subprocess_env() -> dict:
    """Environment for `python -m mlpbp` subprocesses: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("COLUMNS", "80")
    return env


PYTHON = sys.executable


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="session")
def good_run(tmp_path_factory, runner) -> Path:
    """Output dir of one real `mlpbp train` of TINY_CONFIG: model.npz, history.csv,
    config.yaml, checkpoint.npz (plus tiny.yaml, the config itself). Copy, never modify."""
    from mlpbp.cli import app

    root = tmp_path_factory.mktemp("good_run")
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    out = root / "out"
    result = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.stderr
    for name in ("model.npz", "history.csv", "config.yaml", "checkpoint.npz"):
        assert (out / name).is_file(), name
    return out


@pytest.fixture(scope="session")
def good_regression_model(tmp_path_factory, runner) -> Path:
    """model.npz of a tiny regression run (sine); copy, never modify."""
    from mlpbp.cli import app

    root = tmp_path_factory.mktemp("good_regression")
    cfg = root / "sine.yaml"
    cfg.write_text("data: {dataset: sine, n_samples: 40}\nmodel: {hidden: [3]}\ntrain: {epochs: 1}\n")
    result = runner.invoke(app, ["train", str(cfg), "--out", str(root / "out"), "-q"])
    assert result.exit_code == 0, result.stderr
    return root / "out" / "model.npz"
