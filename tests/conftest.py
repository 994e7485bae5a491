"""Shared fixtures: a tiny config and one real training run per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import TINY_CONFIG


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
