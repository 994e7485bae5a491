"""`mlpbp plot` and `train --plot`: valid PNGs of sensible size for every shipped config, drawn
from the run's own data; a missing matplotlib is one line and exit 2."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
import yaml

from helpers import ROOT, TINY_CONFIG
from mlpbp.cli import app
from mlpbp.tools.plot import load_run

SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
TWO_INPUTS, ONE_INPUT_REGRESSION = {"xor", "moons", "circles", "spirals"}, {"sine"}


def expected_pngs(name: str) -> set[str]:
    """What a run of a shipped config draws, from its dataset: every run its curves; a classifier
    its confusion matrix (and regions with two inputs), a regressor predicted vs actual (and its
    curve with one input)."""
    dataset = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["data"].get(
        "dataset"
    )  # a table (data.path): no dataset name
    if dataset in ONE_INPUT_REGRESSION:
        return {"curves.png", "predicted.png", "fit.png"}
    return {"curves.png", "confusion.png"} | ({"regions.png"} if dataset in TWO_INPUTS else set())


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and chunk order."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND" or b"IEND" in data[-12:], f"{path.name} is truncated"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def shipped_runs(tmp_path_factory, runner):
    """Short runs of every shipped config (few epochs: pictures, not accuracy)."""
    root = tmp_path_factory.mktemp("plots")
    runs = {}
    for name in SHIPPED:
        epochs = "1" if name == "digits-per-example" else "20"
        config = str(ROOT / "configs" / f"{name}.yaml")
        res = runner.invoke(app, ["train", config, "--out", str(root / name), "-q", "--set", f"train.epochs={epochs}"])
        assert res.exit_code == 0, res.output
        runs[name] = root / name
    return runs


@pytest.mark.parametrize("name", SHIPPED)
def test_plot_every_shipped_config(runner, shipped_runs, name, tmp_path):
    out = tmp_path / "pngs"
    res = runner.invoke(app, ["plot", str(shipped_runs[name]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = {p.name for p in out.iterdir()}
    assert written == expected_pngs(name), written
    assert res.stderr.startswith("wrote curves.png") and all(n in res.stderr for n in written)
    for png in out.iterdir():
        width, height = png_size(png)
        assert 400 <= width <= 1400 and 300 <= height <= 1100, (png.name, width, height)
        assert 10_000 < png.stat().st_size < 400_000, png.name  # a drawn picture, not a blank canvas


def test_pictures_use_the_runs_own_test_rows(shipped_runs):
    for name in ("iris", "spirals", "sine"):
        run = load_run(shipped_runs[name])
        X, y = run.test
        o = run.model.predict_outputs(X)
        if run.model.task == "classification":
            assert np.mean(o.argmax(axis=1) == y) == pytest.approx(run.model.metrics["accuracy"], abs=1e-12)
        else:
            mse = float(np.mean((o - y) ** 2))
            assert mse == pytest.approx(run.model.metrics["mse"], rel=1e-6)


def test_train_plot_draws_into_the_run(runner, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY_CONFIG)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "o"), "--plot", "-q"])
    assert res.exit_code == 0, res.output
    for name in ("curves.png", "confusion.png", "regions.png"):
        png_size(tmp_path / "o" / name)
    assert "drew curves.png, confusion.png, regions.png" in res.stderr


@pytest.mark.parametrize("command", ["plot", "train"])
def test_without_matplotlib_one_line_and_exit_2(runner, good_run, tmp_path, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    if command == "plot":
        args = ["plot", str(good_run), "--out", str(tmp_path / "p")]
    else:
        cfg = tmp_path / "tiny.yaml"
        cfg.write_text(TINY_CONFIG)
        args = ["train", str(cfg), "--out", str(tmp_path / "p"), "--plot"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == ["error: plots need matplotlib: pip install 'mlpbp[plot]'"]
    assert not (tmp_path / "p").exists()  # nothing drawn, nothing trained


def test_plot_of_a_directory_that_is_not_a_run(runner, tmp_path):
    res = runner.invoke(app, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "model file not found" in res.stderr
    res = runner.invoke(app, ["plot", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "run directory not found" in res.stderr
