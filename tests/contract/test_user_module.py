"""A module written here, a gated linear unit with its own forward, backward and R-passes,
registered in MODULES: trained from YAML, gradchecked, saved and reloaded, refused by ONNX
export in one line, and analysed with `mlpbp hessian` (its top eigenvalue against the dense
Hessian built from its own Hessian-vector products and finite differences of gradients)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import mlpbp
from helpers import ScaledTanh
from mlpbp import MODULES, Module
from mlpbp.cli import app
from mlpbp.engine.graph import Network
from mlpbp.engine.module import check_option
from mlpbp.errors import ArgumentError
from mlpbp.run.model_file import load_model


def _sigmoid(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


class GLU(Module):
    """y = (W u + b) ⊙ s(V u + c), s the logistic function (Dauphin et al. 2017)."""

    kind = "glu"
    shorthand = "width"

    def __init__(self, width=8):
        super().__init__()
        self.width = check_option("glu", "width", width, (int,), "an integer")

    def options(self):
        return {"width": self.width}

    def output_width(self, in_widths):
        return self.width

    def param_shapes(self, in_widths):
        d, k = in_widths[0], self.width
        return {"W": (k, d), "b": (k,), "V": (k, d), "c": (k,)}

    def build(self, in_widths, ctx):
        super().build(in_widths, ctx)
        d, k = in_widths[0], self.width
        self.params = {
            "W": ctx.init(ctx.rng, d, k).astype(ctx.dtype),
            "b": np.zeros(k, ctx.dtype),
            "V": ctx.init(ctx.rng, d, k).astype(ctx.dtype),
            "c": np.zeros(k, ctx.dtype),
        }
        self.grads = {n: np.zeros_like(p) for n, p in self.params.items()}

    def forward(self, u):
        p = self.params
        self.u, self.z1, self.s = u, u @ p["W"].T + p["b"], _sigmoid(u @ p["V"].T + p["c"])
        return self.z1 * self.s

    def backward(self, g, *, need_input_grad=True, need_param_grad=True):
        p, ds = self.params, self.s * (1 - self.s)
        self.g, self.g1, self.g2 = g, g * self.s, g * self.z1 * ds
        if need_param_grad:
            self.grads["W"][...], self.grads["b"][...] = self.g1.T @ self.u, self.g1.sum(0)
            self.grads["V"][...], self.grads["c"][...] = self.g2.T @ self.u, self.g2.sum(0)
        return self.g1 @ p["W"] + self.g2 @ p["V"] if need_input_grad else None

    def rforward(self, r_u, V):
        p, u, ds = self.params, self.u, self.s * (1 - self.s)
        self.r_u = r_u
        self.r1 = u @ V["W"].T + V["b"] + (0 if r_u is None else r_u @ p["W"].T)
        self.r2 = u @ V["V"].T + V["c"] + (0 if r_u is None else r_u @ p["V"].T)
        return self.r1 * self.s + self.z1 * ds * self.r2

    def rbackward(self, r_g, V, out=None, need_input_grad=True):
        p, u, s, g = self.params, self.u, self.s, self.g
        ds = s * (1 - s)
        r_g1 = r_g * s + g * ds * self.r2
        r_g2 = (r_g * self.z1 + g * self.r1) * ds + g * self.z1 * ds * (1 - 2 * s) * self.r2
        out = {} if out is None else out
        extra = (lambda a: 0) if self.r_u is None else (lambda a: a.T @ self.r_u)  # noqa: E731
        for k, val in (("W", r_g1.T @ u + extra(self.g1)), ("b", r_g1.sum(0)),
                       ("V", r_g2.T @ u + extra(self.g2)), ("c", r_g2.sum(0))):  # fmt: skip
            if k in out:
                out[k][...] = val
            else:
                out[k] = val
        if not need_input_grad:
            return None, out
        return r_g1 @ p["W"] + self.g1 @ V["W"] + r_g2 @ p["V"] + self.g2 @ V["V"], out


@pytest.fixture
def glu(monkeypatch):
    monkeypatch.setitem(MODULES, "glu", GLU)


def _config(tmp_path):
    cfg = {
        "seed": 0,
        "data": {"dataset": "moons", "n_samples": 160},
        "model": {"layers": [{"glu": 8}, "tanh", {"residual": [{"glu": {"width": 8}}]}]},
        "train": {"epochs": 40, "batch_size": 16, "optimizer": "adam", "learning_rate": 0.01},
    }
    path = tmp_path / "glu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_registered_module_trains_checks_saves_and_is_analysed(glu, runner, tmp_path):
    cfg = _config(tmp_path)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    model = load_model(tmp_path / "run" / "model.npz")
    assert [m.kind for m in model.net.layers][:2] == ["glu", "tanh"]
    assert {"glu1.W", "glu2.c", "W1", "b1"} <= set(model.net.params)
    assert model.metrics["accuracy"] >= 0.85

    res = runner.invoke(app, ["gradcheck", str(cfg)])
    assert res.exit_code == 0, res.output

    res = runner.invoke(app, ["export", str(tmp_path / "run" / "model.npz"), "--format", "onnx",
                              "-o", str(tmp_path / "m.onnx")])  # fmt: skip
    assert res.exit_code == 2 and "cannot export module 'glu' to ONNX" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()

    rows = tmp_path / "rows.csv"
    X, y = np.random.default_rng(3).normal(size=(30, 2)), np.arange(30) % 2
    names = model.feature_names
    rows.write_text(",".join(names) + f",{model.target_name}\n" + "".join(
        ",".join(repr(float(v)) for v in r) + f",{model.classes[c]}\n" for r, c in zip(X, y)))  # fmt: skip
    res = runner.invoke(app, ["hessian", str(tmp_path / "run" / "model.npz"), str(rows), "--top-k", "1", "--json"])
    assert res.exit_code == 0, res.output
    top = json.loads(res.stdout)["top_eigenvalues"][0]
    net = model.net.astype("float64").eval()
    Xe, ye = model.labelled_rows(rows)
    theta, h = net.get_flat(), 1e-5
    H = np.empty((theta.size, theta.size))
    for j in range(theta.size):  # the Hessian from central differences of the gradient
        e = np.zeros_like(theta)
        e[j] = h
        net.set_flat(theta + e)
        gp = net.flat_grad(Xe, ye)[1]
        net.set_flat(theta - e)
        H[:, j] = (gp - net.flat_grad(Xe, ye)[1]) / (2 * h)
    assert top == pytest.approx(np.linalg.eigvalsh((H + H.T) / 2)[-1], rel=1e-5)


def test_a_model_file_naming_an_unregistered_module_is_one_line(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(MODULES, "glu", GLU)
    cfg = _config(tmp_path)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run"), "-q", "--set", "train.epochs=1"])
    assert res.exit_code == 0, res.output
    monkeypatch.delitem(MODULES, "glu")
    res = runner.invoke(app, ["inspect", str(tmp_path / "run" / "model.npz")])
    assert res.exit_code == 2
    assert "uses module 'glu', which is not registered in mlpbp.MODULES" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


class BrokenGLU(GLU):
    """A user's mistake inside forward: the error is the module's, not a bug in mlpbp."""

    kind = "broken_glu"

    def forward(self, u):
        return u @ self.params["W"]  # (n, d) @ (k, d): the transpose forgotten


def test_an_error_in_a_registered_modules_code_names_the_module_not_mlpbp(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(MODULES, "broken_glu", BrokenGLU)
    monkeypatch.delenv("MLPBP_DEBUG", raising=False)
    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg["model"]["layers"] = [{"broken_glu": 5}, "tanh"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "-q"])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.stderr
    line = " ".join(lines[0].split())
    assert line.startswith("error: unexpected ValueError: matmul: Input operand 1 has a mismatch")
    assert f"in module 'broken_glu' ({__file__}:" in line and "registered from outside mlpbp" in line
    assert "a bug in mlpbp" not in line


@pytest.mark.parametrize(
    "train, message",
    [
        (
            {"optimizer": "newton_cg"},
            "config error at train.optimizer: module 'scaled_tanh' has no R-operator passes (rforward, rbackward):"
            " Hessian and Gauss-Newton products need them; newton_cg steps by them",
        ),
        (
            {"sharpness_every": 5},
            "config error at train.sharpness_every: module 'scaled_tanh' has no R-operator passes (rforward,"
            " rbackward): Hessian and Gauss-Newton products need them; the sharpness is the Hessian's top"
            " eigenvalue, found by them",
        ),
    ],
    ids=["newton_cg", "sharpness_every"],
)
def test_training_that_needs_curvature_refuses_a_module_without_r_passes_before_it_starts(
    runner, tmp_path, monkeypatch, train, message
):
    monkeypatch.setitem(MODULES, "scaled_tanh", ScaledTanh)
    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg["model"]["layers"] = [{"linear": 8}, "scaled_tanh"]
    cfg["train"] = {"epochs": 2, **train}
    path = tmp_path / "scaled_tanh.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and " ".join(res.stderr.split()) == f"error: {message}"
    assert not (tmp_path / "run").exists()
    del cfg["train"][next(iter(train))]  # without the key it trains
    path.write_text(yaml.safe_dump(cfg))
    assert runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "-q"]).exit_code == 0


class Scaled(Module):
    """y = scale · u, its option forgotten by options(): a model file would reload it as 2."""

    kind = "scaled"
    shorthand = "scale"

    def __init__(self, scale=2.0):
        super().__init__()
        self.scale = scale

    def forward(self, u):
        return self.scale * u

    def backward(self, g, *, need_input_grad=True, need_param_grad=True):
        return self.scale * g if need_input_grad else None


def test_a_module_whose_options_do_not_rebuild_it_is_refused_before_it_trains(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(MODULES, "scaled", Scaled)
    x = mlpbp.Input(3)
    with pytest.raises(ArgumentError) as e:
        Network(x, mlpbp.Linear(2)(Scaled(0.5)(x)), loss="cross_entropy")
    assert str(e.value) == (
        "module 'scaled' has scale=0.5, but its options() {} rebuild it with scale=2.0: return 'scale' from"
        " options() (model files rebuild a module from them)"
    )
    x = mlpbp.Input(3)
    Network(x, mlpbp.Linear(2)(Scaled()(x)), loss="cross_entropy")  # at its default it rebuilds the same
    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cfg["model"]["layers"] = [{"linear": 8}, {"scaled": 0.5}]
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and not (tmp_path / "run").exists(), res.output
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1 and "return 'scale' from" in res.stderr
    monkeypatch.setattr(Scaled, "options", lambda self: {"scale": self.scale})  # the fix: it trains
    assert runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "run"), "-q"]).exit_code == 0
