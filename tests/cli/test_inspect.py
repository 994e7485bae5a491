"""`mlpbp inspect`: a model file's summary, on every shipped config's model and on v0.1 files."""

from __future__ import annotations

import hashlib
import json

import pytest

from helpers import ROOT, one_line_error
from mlpbp.cli import app
from mlpbp.tools.model_info import model_info

SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def shipped_models(tmp_path_factory, runner):
    """model.npz of every shipped config, trained for one epoch (its summary, not its accuracy)."""
    root = tmp_path_factory.mktemp("shipped")
    models = {}
    for name in SHIPPED:
        out = root / name
        res = runner.invoke(
            app, ["train", str(ROOT / "configs" / f"{name}.yaml"), "--out", str(out), "-q", "--set", "train.epochs=1"]
        )
        assert res.exit_code == 0, res.output
        models[name] = out / "model.npz"
    return models


def _expected_flops(widths: list[int]) -> tuple[int, int]:
    """Forward and training-step FLOPs per row of an MLP, from its widths alone."""
    pairs = list(zip(widths[:-1], widths[1:]))
    hidden = sum(widths[1:-1])
    forward = sum(2 * i * o + o for i, o in pairs) + hidden
    # backward: ∂W and ∂b of every linear layer, ∂u of every one but the first, σ' ⊙ per hidden unit
    backward = sum(2 * i * o + o for i, o in pairs) + sum(2 * i * o for i, o in pairs[1:]) + 2 * hidden
    return forward, forward + backward


@pytest.mark.parametrize("name", SHIPPED)
def test_inspect_every_shipped_model(runner, shipped_models, name):
    path = shipped_models[name]
    res = runner.invoke(app, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    widths = info["widths"]
    assert [r["out"] for r in info["layers"] if r["kind"] == "linear"] == widths[1:]
    assert sum(r["params"] for r in info["layers"]) == info["params"]
    # issue 20: a shipped residual network (configs/digits-resnet.yaml) is no chain; chains keep
    # the chain's arithmetic
    if all(r["kind"] in ("linear", "activation") for r in info["layers"]):
        assert info["params"] == sum(i * o + o for i, o in zip(widths[:-1], widths[1:]))
        forward, step = _expected_flops(widths)
        assert (info["flops"]["forward_per_row"], info["flops"]["train_step_per_row"]) == (forward, step)
    assert info["config"]["train"]["epochs"] == 1 and info["metrics"]["epochs_trained"] == 1
    assert info["metrics"]["evaluated_on"] in ("test", "train") and info["metrics"]["loss"] > 0
    assert info["written_by"]["numpy"] and info["written_by"]["mlpbp"]
    assert len(info["features"]) == widths[0]
    if info["task"] == "classification":
        assert len(info["classes"]) == widths[-1] and 0 <= info["metrics"]["accuracy"] <= 1
    assert info["preprocessing"]["inputs"]["standardized"] == info["config"]["data"]["standardize"]

    res = runner.invoke(app, ["inspect", str(path)], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    text = res.stdout
    for needle in (info["sha256"], "Linear", "FLOP", "final metrics", "written by mlpbp", "config"):
        assert needle in text, needle
    assert f"{info['params']:,} parameters" in text


def test_inspect_digits_names_classes_and_the_forward_cost(runner, shipped_models):
    info = model_info(shipped_models["digits"])
    assert info["classes"] == [str(d) for d in range(10)] and info["widths"] == [64, 128, 10]
    assert info["flops"]["forward_per_row"] == 2 * 64 * 128 + 128 + 128 + 2 * 128 * 10 + 10


@pytest.mark.parametrize("name", ["iris", "sine"])
def test_v01_files_say_not_recorded(runner, name):
    path = FIXTURES / f"v0.1-{name}-model.npz"
    info = model_info(path)
    assert info["metrics"] is None and info["written_by"] is None
    res = runner.invoke(app, ["inspect", str(path)])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("not recorded") == 2
    if name == "sine":
        assert info["preprocessing"]["targets"]["standardized"] and info["classes"] is None


def test_inspect_bad_file_is_one_line_exit_2(runner, tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    res = runner.invoke(app, ["inspect", str(bad)])
    assert res.exit_code == 2 and "not an mlpbp model file" in res.stderr and len(res.stderr.splitlines()) == 1
    assert "model file not found" in one_line_error(model_info, tmp_path / "none.npz")
