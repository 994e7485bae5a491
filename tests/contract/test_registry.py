"""One registry per kind: registering a new entry through the public API is the only edit needed
for configs, the JSON Schema, training, model files and gradcheck to accept it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import mlpbp
from helpers import one_line_error
from mlpbp import ACTIVATIONS, DTYPES, INITS, LOSSES, OPTIMIZERS, SCHEDULES, ActivationFn
from mlpbp.cli import app
from mlpbp.engine.registry import Registry, UnknownName
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import load_model
from mlpbp.run.schema import json_schema

runner = CliRunner()


# swish: a = z·s(z) with s the logistic sigmoid; written with `out` as every activation is.
def _s(z):
    return 0.5 * (1 + np.tanh(0.5 * z))  # the logistic function, without overflow


def _swish(z, out):
    return np.multiply(z, _s(z), out=out)


def _swish_d(z, a, out):  # s + z s (1 − s)
    s = _s(z)
    return np.add(s, z * s * (1 - s), out=out)


def _swish_d2(z, a, out):  # s (1 − s) (2 + z (1 − 2 s))
    s = _s(z)
    return np.multiply(s * (1 - s), 2 + z * (1 - 2 * s), out=out)


@pytest.fixture
def swish():
    ACTIVATIONS.register("swish", ActivationFn("swish", _swish, _swish_d, _swish_d2))
    try:
        yield "swish"
    finally:
        del ACTIVATIONS["swish"]


def test_swish_derivatives_match_finite_differences():
    z = np.linspace(-6, 6, 101)
    h = 1e-6
    a = _swish(z, np.empty_like(z))
    numeric_d = (_swish(z + h, np.empty_like(z)) - _swish(z - h, np.empty_like(z))) / (2 * h)
    numeric_d2 = (_swish_d(z + h, None, np.empty_like(z)) - _swish_d(z - h, None, np.empty_like(z))) / (2 * h)
    np.testing.assert_allclose(_swish_d(z, a, np.empty_like(z)), numeric_d, atol=1e-8)
    np.testing.assert_allclose(_swish_d2(z, a, np.empty_like(z)), numeric_d2, atol=1e-7)


def test_a_registered_activation_trains_from_a_yaml_config_and_passes_gradcheck(swish, tmp_path):
    cfg = tmp_path / "moons-swish.yaml"
    cfg.write_text(
        "seed: 0\ndata: {dataset: moons, n_samples: 300}\nmodel: {hidden: [16], activation: swish}\n"
        "train: {epochs: 40, batch_size: 16, learning_rate: 0.1, momentum: 0.9}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n"
    )
    res = runner.invoke(app, ["train", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["test"]["accuracy"] >= 0.95  # moons are not linearly separable: the hidden layer works
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["activation"] == "swish"
    model = load_model(tmp_path / "run" / "model.npz")  # the model file accepts it too
    assert model.net.activation == "swish"

    res = runner.invoke(app, ["gradcheck", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] and report["checks"]
    assert all(c["max_rel_err"] < 1e-6 for c in report["checks"])


def test_the_schema_and_validation_read_the_registry_when_they_run(swish):
    enum = json_schema()["$defs"]["ModelConfig"]["properties"]["activation"]["enum"]
    assert enum == list(ACTIVATIONS) and "swish" in enum
    cfg = config_from_dict({"data": {"dataset": "iris"}, "model": {"activation": "swish"}})
    assert cfg.model.activation == "swish"


def test_an_unregistered_name_is_refused_with_every_allowed_name():
    message = one_line_error(config_from_dict, {"data": {"dataset": "iris"}, "model": {"activation": "swish"}})
    assert message.startswith("config error at model.activation:")
    assert all(repr(name) in message for name in ACTIVATIONS)
    assert "swish" not in json_schema()["$defs"]["ModelConfig"]["properties"]["activation"]["enum"]


@pytest.mark.parametrize(
    ("registry", "key"),
    [
        (LOSSES, ("ModelConfig", "loss")),
        (INITS, ("ModelConfig", "init")),
        (OPTIMIZERS, ("TrainConfig", "optimizer")),
        (SCHEDULES, ("TrainConfig", "schedule")),
        (DTYPES, ("TrainConfig", "dtype")),
    ],
)
def test_each_config_enum_is_its_registry(registry, key):
    prop = json_schema()["$defs"][key[0]]["properties"][key[1]]
    enums = [prop.get("enum")] + [alt.get("enum") for alt in prop.get("anyOf", [])]
    assert list(registry) in enums


def test_registry_refuses_duplicates_and_names_the_allowed_on_lookup():
    reg: Registry[int] = Registry("colour")
    reg.register("red", 1)

    @reg.register("green")
    def green():
        return 2

    assert reg.lookup("green") is green and reg.names() == ("red", "green")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("red", 3)
    reg.register("red", 3, replace=True)
    with pytest.raises(UnknownName, match=r"unknown colour 'gren'; did you mean 'green'\? allowed: 'red', 'green'"):
        reg.lookup("gren")
    with pytest.raises(UnknownName):
        reg.lookup(["red"])  # unhashable, as YAML can produce


def test_the_public_api_exports_every_registry():
    for name in ("ACTIVATIONS", "LOSSES", "OPTIMIZERS", "SCHEDULES", "INITS", "DTYPES"):
        assert isinstance(getattr(mlpbp, name), Registry)
