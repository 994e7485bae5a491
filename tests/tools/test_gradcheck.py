"""gradcheck: the API, the CLI, and proof that it catches real backprop bugs.

Each injected bug (monkeypatched into the engine) must make gradcheck fail *and name the
broken piece*, while the pieces the bug does not touch keep passing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mlpbp.cli import app
from mlpbp.engine import activations
from mlpbp.engine.layers import Linear
from mlpbp.engine.losses import LOSSES, CrossEntropyLoss
from mlpbp.engine.network import MLP
from mlpbp.errors import MlpbpError
from mlpbp.run.config import config_from_dict
from mlpbp.tools import gradcheck as gc

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


# Every activation function once (an alias such as logistic is sigmoid again) times every loss:
# 8 × 7 networks of 15 checks each (6 parameters, 5 inputs, 3 HVP directions, 1 symmetry).
UNIQUE_ACTIVATIONS = [name for name, fn in activations.ACTIVATIONS.items() if fn.name == name]
BUILTIN_CHECKS = 15 * len(UNIQUE_ACTIVATIONS) * len(LOSSES)


def _cli(args):
    """Invoke `mlpbp gradcheck ARGS`. While gradcheck is the app's only command, Typer runs it
    as a single-command app, which takes no command name."""
    if len(app.registered_commands) > 1 or app.registered_callback is not None:
        args = ["gradcheck", *args]
    return CliRunner().invoke(app, args)


def _failed(report) -> set[str]:
    return {c.full_name for c in report.failures}


def _tanh_square():
    return gc.builtin_network("tanh", "square", seed=0)  # widths 3-4-4-3: layer 3 is square


# ---------------------------------------------------------------------------------------------
# Healthy engine


def test_builtin_suite_passes_and_covers_everything():
    report = gc.check_builtin()
    assert report.ok, [(c.full_name, c.max_rel_err) for c in report.failures]
    assert report.max_rel_err < 1e-6
    groups = {c.group for c in report.checks}
    assert groups == {f"{a}/{l}" for a in UNIQUE_ACTIVATIONS for l in LOSSES}
    one = [c for c in report.checks if c.group == "tanh/square"]
    assert [c.kind for c in one].count("param") == 6
    assert [c.kind for c in one].count("input") == 5  # Linear, tanh, Linear, tanh, Linear
    assert [c.kind for c in one].count("hvp") == gc.DEFAULT_DIRECTIONS
    assert [c.kind for c in one].count("symmetry") == 1
    # Small tensors are checked entry by entry.
    w2 = next(c for c in one if c.param == "W2")
    assert w2.checked == 16 and w2.shape == (4, 4) and w2.name == "W2 (layer 3 Linear 4->4)"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_passes(path):
    from mlpbp.run.config import load_config

    report = gc.check_config(load_config(path))
    assert report.ok and report.max_rel_err < 1e-6, [(c.name, c.max_rel_err) for c in report.failures]


def test_config_mode_builds_widths_from_data_and_samples_large_tensors():
    cfg = config_from_dict({"data": {"dataset": "digits"}, "model": {"hidden": [32], "activation": "relu"}})
    net, X, y = gc.network_for_config(cfg, batch=16, seed=0)
    assert net.widths == [64, 32, 10] and net.dtype == np.float64 and net.loss_name == "cross_entropy"
    assert X.shape == (16, 64) and y.shape == (16,) and y.dtype.kind == "i"
    assert abs(X.mean()) < 1.0  # standardised (on the whole set)
    report = gc.check_network(net, X, y, samples=7)
    w1 = next(c for c in report.checks if c.param == "W1")
    assert w1.checked == 7  # 32x64 > FULL_MAX entries: sampled
    b2 = next(c for c in report.checks if c.param == "b2")
    assert b2.checked == 10  # small: every entry
    cfg = config_from_dict({"data": {"dataset": "sine"}, "model": {"hidden": [5, 4], "activation": "sin"}})
    net, X, y = gc.network_for_config(cfg)
    assert net.widths == [1, 5, 4, 1] and net.loss_name == "square" and y.shape == (16, 1)


def test_config_regression_with_cross_entropy_is_bad_input():
    cfg = config_from_dict({"data": {"dataset": "sine"}, "model": {"loss": "cross_entropy"}})
    with pytest.raises(MlpbpError, match="model.loss"):
        gc.check_config(cfg)


def test_float32_network_is_checked_in_float64_and_left_untouched():
    net = MLP([3, 5, 2], "sigmoid", "cross_entropy", seed=3, dtype="float32")
    before = net.get_flat().copy()
    X = np.random.default_rng(0).standard_normal((4, 3))
    report = gc.check_network(net, X, np.array([0, 1, 1, 0]))
    assert report.ok and report.max_rel_err < 1e-6  # float32 differences could never get there
    np.testing.assert_array_equal(net.get_flat(), before)
    assert net.dtype == np.float32


def test_error_metric_is_relative_to_the_tensor_scale_with_a_floor():
    a = np.array([1.0, 1e-9, -0.5])
    n = np.array([1.0 + 1e-7, 2e-9, -0.5])
    max_abs, max_rel = gc.errors(a, n)
    assert max_abs == pytest.approx(1e-7) and max_rel == pytest.approx(1e-7, rel=1e-6)
    # An all-zero gradient: exact agreement is 0, round-off is judged against the floor.
    assert gc.errors(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert gc.errors(np.zeros(3), np.full(3, 1e-11), floor=1e-2)[1] == pytest.approx(1e-9)
    assert np.isnan(gc.errors(np.ones(2), np.array([1.0, np.nan]))[1])


def test_bad_settings_are_user_errors():
    net, X, y = _tanh_square()
    for kwargs in ({"eps": 0.0}, {"rtol": -1.0}, {"atol": -1.0}, {"samples": 0}):
        with pytest.raises(MlpbpError):
            gc.check_network(net, X, y, **kwargs)


def test_report_json_shape():
    net, X, y = _tanh_square()
    d = gc.check_network(net, X, y).to_dict()
    json.dumps(d)
    assert d["ok"] is True
    for c in d["checks"]:
        assert {"name", "shape", "max_abs_err", "max_rel_err", "ok"} <= set(c)
        assert isinstance(c["shape"], list)


# ---------------------------------------------------------------------------------------------
# ReLU-family kinks: resampled or reported apart, never failures


def _at_kink():
    # Zero biases and an all-zero row: every first-layer pre-activation of row 0 is exactly 0.
    net = MLP([2, 3, 2], "relu", "square", seed=1)
    X = np.array([[0.0, 0.0], [1.0, -1.0], [0.5, 2.0]])
    return net, X, np.ones((3, 2))


def test_kink_is_reported_apart_when_not_resampled():
    net, X, y = _at_kink()
    report = gc.check_network(net, X, y, resample=0)
    assert report.ok and report.skipped > 0
    b1 = next(c for c in report.checks if c.param == "b1")
    assert b1.skipped == 3 and b1.checked == 0 and b1.status == "skip"
    relu_in = next(c for c in report.checks if c.name == "layer 2 (Activation 'relu') input")
    assert relu_in.skipped == 3 and relu_in.checked == 6 and relu_in.status == "pass"


def test_kink_is_resampled_away():
    net, X, y = _at_kink()
    report = gc.check_network(net, X, y)  # default: nudge θ off the kink
    assert report.ok and report.skipped == 0
    assert all(c.checked > 0 for c in report.checks)


def test_kinks_never_fail_the_cli_on_relu_family(tmp_path):
    cfg = tmp_path / "xor.yaml"  # xor, zero biases, standardize off: inputs of exactly 0
    cfg.write_text("data: {dataset: xor, noise: 0.0, standardize: false}\nmodel: {hidden: [3], activation: relu}\n")
    for act in ("relu", "leaky_relu", "elu"):
        result = _cli([str(cfg), "--set", f"model.activation={act}", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["ok"] is True


# ---------------------------------------------------------------------------------------------
# Injected bugs: gradcheck must fail and name the broken piece


def _linear_backward(transpose_W=False, transpose_u=False, drop_b=False):
    """Linear.backward with one deliberate mistake (shapes still fit: square layers only)."""

    def backward(self, grad_z, need_input_grad=True, need_param_grad=True):
        self.grad_z = grad_z
        square = self.W.shape[0] == self.W.shape[1]
        if need_param_grad:
            gW = self.u.T @ grad_z if (transpose_W and square) else grad_z.T @ self.u
            self.grads["W"][...] = gW
            self.grads["b"][...] = 0.0 if drop_b else grad_z.sum(axis=0)
        if not need_input_grad:
            return None
        return grad_z @ self.W.T if (transpose_u and square) else grad_z @ self.W

    return backward


def _patch_tanh(monkeypatch, **changes):
    fn = activations.ACTIVATIONS["tanh"]
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", dataclasses.replace(fn, **changes))


def _wrong_tanh_d(z, a, out):  # 1 − a instead of 1 − a²
    np.subtract(1, a, out=out)
    return out


def _no_tanh_d2(z, a, out):  # σ'' dropped from the HVP
    out.fill(0)
    return out


def test_wrong_transpose_in_weight_gradient(monkeypatch):
    monkeypatch.setattr(Linear, "backward", _linear_backward(transpose_W=True))
    report = gc.check_network(*_tanh_square())
    assert not report.ok
    # The square layer's W2 and nothing else among gradients (H v is differenced from them).
    assert {c.name for c in report.failures if c.kind != "hvp"} == {"W2 (layer 3 Linear 4->4)"}
    w2 = report.failures[0]
    assert w2.param == "W2" and w2.layer == 3 and w2.max_rel_err > 1e-3
    assert w2.details and {"analytical", "numerical", "index"} <= set(w2.details[0])


def test_wrong_transpose_in_input_gradient(monkeypatch):
    monkeypatch.setattr(Linear, "backward", _linear_backward(transpose_u=True))
    report = gc.check_network(*_tanh_square())
    failed = _failed(report)
    assert "layer 3 (Linear 4->4) input" in failed
    assert "layer 1 (Linear 3->4) input" not in failed and "layer 5 (Linear 4->3) input" not in failed
    # Gradients below the broken layer are wrong too; those above it are not.
    assert {"W1 (layer 1 Linear 3->4)", "b1 (layer 1 Linear 3->4)"} <= failed
    assert not failed & {"W2 (layer 3 Linear 4->4)", "W3 (layer 5 Linear 4->3)", "b3 (layer 5 Linear 4->3)"}


def test_missing_bias_gradient(monkeypatch):
    monkeypatch.setattr(Linear, "backward", _linear_backward(drop_b=True))
    report = gc.check_network(*_tanh_square())
    assert {c.param for c in report.failures if c.kind == "param"} == {"b1", "b2", "b3"}
    assert all(c.ok for c in report.checks if c.kind == "input")


def test_wrong_activation_derivative(monkeypatch):
    _patch_tanh(monkeypatch, df=_wrong_tanh_d)
    report = gc.check_network(*_tanh_square())
    failed = _failed(report)
    assert {"layer 2 (Activation 'tanh') input", "layer 4 (Activation 'tanh') input"} <= failed
    assert not failed & {"layer 1 (Linear 3->4) input", "W3 (layer 5 Linear 4->3)"}


def test_second_derivative_dropped_from_hvp(monkeypatch):
    _patch_tanh(monkeypatch, d2f=_no_tanh_d2)
    report = gc.check_network(*_tanh_square())
    assert not report.ok
    assert {c.kind for c in report.failures} == {"hvp"}  # gradients are fine; only H v is wrong
    assert len(report.failures) == gc.DEFAULT_DIRECTIONS


def test_wrong_softmax_cross_entropy_gradient(monkeypatch):
    def backward(self):  # p − onehot(y), but the 1/n of the mean forgotten
        grad = self.p.copy()
        grad[np.arange(grad.shape[0]), self.y] -= 1
        return grad

    monkeypatch.setattr(CrossEntropyLoss, "backward", backward)
    report = gc.check_builtin(activations=["tanh", "relu"])
    assert {c.group for c in report.failures} == {"tanh/cross_entropy", "relu/cross_entropy"}
    assert {c.param for c in report.failures if c.group == "tanh/cross_entropy"} >= {"W3", "b3"}


def test_wrong_linear_rbackward(monkeypatch):
    original = Linear.rbackward

    def rbackward(self, r_grad_z, V, out=None, need_input_grad=True):  # the ∂J/∂z R{u}ᵀ term dropped
        saved, self.r_u = self.r_u, None
        try:
            return original(self, r_grad_z, V, out, need_input_grad)
        finally:
            self.r_u = saved

    monkeypatch.setattr(Linear, "rbackward", rbackward)
    report = gc.check_network(*_tanh_square())
    assert {c.kind for c in report.failures} >= {"hvp"}
    assert all(c.ok for c in report.checks if c.kind in ("param", "input"))


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_no_config_passes_with_table():
    result = _cli([])
    assert result.exit_code == 0, result.output
    assert f"All {BUILTIN_CHECKS} checks passed" in result.stdout
    for text in ("tanh/cross_entropy", "W1 (layer 1 Linear 3->4)", "HVP direction 1", "PASS"):
        assert text in result.stdout


def test_cli_json_only_json():
    result = _cli(["--json", "--seed", "3"])
    assert result.exit_code == 0
    d = json.loads(result.stdout)
    assert d["ok"] is True and len(d["checks"]) == BUILTIN_CHECKS
    assert all({"name", "shape", "max_abs_err", "max_rel_err", "ok"} <= set(c) for c in d["checks"])
    assert max(c["max_rel_err"] for c in d["checks"]) < 1e-6


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_cli_shipped_config(path):
    result = _cli([str(path), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["ok"] and max(c["max_rel_err"] for c in d["checks"]) < 1e-6


def test_cli_injected_bug_exits_1_and_names_the_parameter(monkeypatch, tmp_path):
    monkeypatch.setattr(Linear, "backward", _linear_backward(drop_b=True))
    cfg = tmp_path / "iris.yaml"
    cfg.write_text("data: {dataset: iris}\nmodel: {hidden: [6], activation: tanh}\n")
    result = _cli([str(cfg)])
    assert result.exit_code == 1, result.output
    out = result.stdout
    assert "FAIL parameter b1 of layer 1 Linear 4->6" in out
    assert "FAIL parameter b2 of layer 3 Linear 6->3" in out
    assert "FAIL parameter W1" not in out
    # numerical beside analytical: the broken analytical bias gradient is 0 for each entry shown
    assert "analytical" in out and "numerical" in out and "b1[0]" in out
    result = _cli([str(cfg), "--json"])
    assert result.exit_code == 1
    bad = {c["name"] for c in json.loads(result.stdout)["checks"] if not c["ok"] and c["kind"] != "hvp"}
    assert bad == {"b1 (layer 1 Linear 4->6)", "b2 (layer 3 Linear 6->3)"}


@pytest.mark.parametrize("bug", ["transpose", "sigma_prime", "sigma_second"])
def test_cli_builtin_catches_bugs(monkeypatch, bug):
    if bug == "transpose":
        monkeypatch.setattr(Linear, "backward", _linear_backward(transpose_W=True))
        expect = "parameter W2 of layer 3 Linear 4->4"
    elif bug == "sigma_prime":
        _patch_tanh(monkeypatch, df=_wrong_tanh_d)
        expect = "tanh/square: layer 2 (Activation 'tanh') input"
    else:
        _patch_tanh(monkeypatch, d2f=_no_tanh_d2)
        expect = "tanh/square: HVP direction 1"
    result = _cli([])
    assert result.exit_code == 1, result.output
    assert expect in result.stdout
    assert "checks FAILED" in result.stdout
    d = json.loads(_cli(["--json"]).stdout)
    assert d["ok"] is False
    if bug != "transpose":  # only tanh networks are broken
        assert {c["network"] for c in d["checks"] if not c["ok"]} == {f"tanh/{loss}" for loss in LOSSES}


@pytest.mark.parametrize(
    "args",
    [
        ["does-not-exist.yaml"],
        ["--eps", "0"],
        ["--eps", "-1e-6"],
        ["--samples", "0"],
        ["--rtol", "0"],
        ["--set", "model.activation=tanh"],
    ],
)
def test_cli_bad_input_exits_2(args):
    result = _cli(args)
    assert result.exit_code == 2, result.output


def test_cli_bad_config_exits_2(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data: {dataset: iris}\nmodel: {activaton: tanh}\n")
    result = _cli([str(cfg)])
    assert result.exit_code == 2
    assert "activaton" in result.stderr


# ---------------------------------------------------------------------------------------------
# Networks whose evaluation mode computes another function: checked in both modes

MODES_CONFIG = "seed: 0\ndata: {dataset: moons, n_samples: 60}\nmodel: {hidden: [5], dropout: 0.2, norm: batch}\n"


def test_dropout_and_batch_norm_are_checked_in_both_modes(tmp_path):
    cfg = tmp_path / "modes.yaml"
    cfg.write_text(MODES_CONFIG)
    result = _cli([str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["settings"]["modes"] == ["train", "eval"]
    assert d["settings"]["eval_changes"] == ["batch_norm's running statistics", "dropout off"]
    # each check once per mode, named after it
    train = [c["name"].split(": ", 1) for c in d["checks"] if c["mode"] == "train"]
    evaluation = [c["name"].split(": ", 1) for c in d["checks"] if c["mode"] == "eval"]
    assert {m for m, _ in train} == {"training mode (fixed dropout masks, batch statistics)"}
    assert {m for m, _ in evaluation} == {"evaluation mode"}
    assert [n for _, n in train] == [n for _, n in evaluation] and len(train) + len(evaluation) == len(d["checks"])
    assert "gamma1 (layer 2 batch_norm(momentum=0.1, eps=1e-05))" in [n for _, n in train]
    assert any(c["kind"] == "hvp" for c in d["checks"] if c["mode"] == "eval")
    text = _cli([str(cfg)]).stdout
    sections = [line.strip("│ ").rstrip() for line in text.splitlines() if "mode" in line and "│" in line]
    assert sections == ["training mode (fixed dropout masks, batch statistics)", "evaluation mode"]
    assert f"All {len(d['checks'])} checks passed" in text
    # a chain of linear and activation layers (or layer_norm, the same in both modes): one mode
    cfg.write_text(MODES_CONFIG.replace("dropout: 0.2, norm: batch", "norm: layer"))
    d = json.loads(_cli([str(cfg), "--json"]).stdout)
    assert d["settings"]["modes"] == ["train"] and {c["mode"] for c in d["checks"]} == {None}


def test_a_bug_in_evaluation_mode_alone_fails_its_checks_alone(monkeypatch, tmp_path):
    from mlpbp.engine.norm import BatchNorm

    right = BatchNorm.backward

    def wrong_in_eval(self, g, **kw):  # ∂J/∂x twice what it is, in evaluation mode only
        dx = right(self, g, **kw)
        return dx if self.training or dx is None else 2 * dx

    monkeypatch.setattr(BatchNorm, "backward", wrong_in_eval)
    cfg = tmp_path / "modes.yaml"
    cfg.write_text(MODES_CONFIG)
    result = _cli([str(cfg), "--json"])
    assert result.exit_code == 1, result.output
    checks = json.loads(result.stdout)["checks"]
    assert all(c["ok"] for c in checks if c["mode"] == "train")
    bad = {c["name"] for c in checks if not c["ok"] and c["kind"] != "hvp"}
    assert bad == {
        "evaluation mode: W1 (layer 1 Linear 2->5)",
        "evaluation mode: b1 (layer 1 Linear 2->5)",
        "evaluation mode: layer 2 (batch_norm(momentum=0.1, eps=1e-05)) input",
    }
    assert all(c["mode"] == "eval" for c in checks if not c["ok"])
    text = _cli([str(cfg)]).stdout
    assert "FAIL evaluation mode: parameter W1 of layer 1 Linear 2->5" in text


def test_a_config_with_a_module_without_r_passes_says_its_hvps_were_not_checked(tmp_path, monkeypatch):
    import yaml

    from mlpbp import MODULES, Module

    class Twice(Module):  # y = 2u: forward and backward only
        kind = "twice"

        def forward(self, u):
            return 2 * u

        def backward(self, g, *, need_input_grad=True, need_param_grad=True):
            return 2 * g if need_input_grad else None

    monkeypatch.setitem(MODULES, "twice", Twice)
    cfg = {"seed": 0, "data": {"dataset": "moons", "n_samples": 40}, "model": {"layers": [{"linear": 4}, "twice"]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = _cli([str(tmp_path / "c.yaml")])
    assert res.exit_code == 0, res.output
    # "All 6 checks passed" alone read as if Hessian-vector products were among them
    assert "No Hessian-vector product checks: no R-operator passes (rforward, rbackward) in 'twice'." in res.stdout
    res = _cli([str(tmp_path / "c.yaml"), "--json"])
    assert json.loads(res.stdout)["settings"]["no_hvp"] == ["twice"]
    assert "no_hvp" not in gc.check_network(*_tanh_square()).settings  # a network with R-passes everywhere


def test_a_batch_of_one_row_for_a_network_with_batch_norm_is_bad_input(tmp_path):
    import yaml

    cfg = {"seed": 0, "data": {"dataset": "moons", "n_samples": 40}, "model": {"layers": [{"linear": 4}, "batch_norm"]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = _cli([str(tmp_path / "c.yaml"), "--batch", "1"])
    # it was the engine's ValueError, reported as "unexpected ... a bug in mlpbp", exit 1
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        "error: --batch must be >= 2 for a network with batch_norm (it normalises by the batch's statistics); got 1"
    )
    assert _cli([str(tmp_path / "c.yaml"), "--batch", "2"]).exit_code == 0
