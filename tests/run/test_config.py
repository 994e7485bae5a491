"""Config loading: defaults, one-line error messages, --set overrides."""

from pathlib import Path

import pytest

from helpers import one_line_error
from mlpbp.run.config import (
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
)
from mlpbp.run.schema import json_schema


def _write(tmp_path, text, name="exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill(tmp_path):
    cfg = load_config(_write(tmp_path, "data:\n  dataset: digits\n"))
    assert isinstance(cfg, Config)
    assert cfg.seed == 0
    assert (cfg.data.test_fraction, cfg.data.validation_fraction, cfg.data.standardize) == (0.2, 0.1, True)
    assert cfg.model.hidden == [64] and cfg.model.activation == "relu"
    assert cfg.model.loss is None and cfg.model.init is None
    t = cfg.train
    assert (t.epochs, t.batch_size, t.learning_rate, t.momentum) == (40, 32, 0.05, 0.0)
    assert (t.weight_decay, t.schedule, t.patience, t.dtype) == (0.0, "constant", None, "float32")
    assert cfg.output.dir == "runs/exp"
    assert cfg.base_dir == tmp_path


def test_full_example_and_dict_round_trip(tmp_path):
    text = """
seed: 3
data: {path: my.csv, target: digit, task: classification, test_fraction: 0.25, standardize: false}
model: {hidden: [32, 16], activation: tanh, loss: square, init: glorot}
train: {epochs: 5, batch_size: 1, learning_rate: 1e-3, momentum: 0.9, nesterov: true,
        schedule: step, step_size: 2, gamma: 0.1, patience: 3, dtype: float64}
output: {dir: out/here}
"""
    cfg = load_config(_write(tmp_path, text))
    assert cfg.train.learning_rate == 1e-3  # PyYAML reads 1e-3 as a string; still accepted
    d = config_to_dict(cfg)
    # a relative output.dir is taken from the config file's folder, as data.path is
    assert d["model"]["hidden"] == [32, 16] and d["output"]["dir"] == str(tmp_path / "out/here")
    assert config_to_dict(config_from_dict(d)) == d


def test_generator_noise_defaults():
    assert config_from_dict({"data": {"dataset": "xor"}}).data.noise == 0.0
    assert config_from_dict({"data": {"dataset": "moons"}}).data.noise == 0.1


def test_unknown_key_did_you_mean():
    message = one_line_error(config_from_dict, {"data": {"dataset": "iris"}, "model": {"activaton": "relu"}})
    assert message == (
        "config error at model.activaton: unknown key; did you mean 'activation'?"
        # issue 20 adds dropout, layers and norm; issue 22 the losses' own delta and alpha
        " (allowed: activation, alpha, delta, dropout, hidden, init, layers, loss, norm)"
    )


def test_wrong_type_names_key_path():
    message = one_line_error(config_from_dict, {"data": {"dataset": "iris"}, "train": {"epochs": "ten"}})
    assert message.startswith("config error at train.epochs:") and "'ten'" in message


def test_bad_value_message():
    message = one_line_error(config_from_dict, {"data": {"dataset": "iris"}, "train": {"learning_rate": -1}})
    assert message == "config error at train.learning_rate: Input should be greater than 0 (got -1)"


def test_unknown_activation_lists_allowed():
    message = one_line_error(config_from_dict, {"data": {"dataset": "iris"}, "model": {"activation": "relux"}})
    assert message.startswith("config error at model.activation:")
    for name in ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "elu", "sin"]:
        assert f"'{name}'" in message


@pytest.mark.parametrize(
    "section, where",
    [
        ({"train": {"momentum": 1.0}}, "train.momentum"),
        ({"train": {"batch_size": 0}}, "train.batch_size"),
        ({"train": {"epochs": True}}, "train.epochs"),
        ({"train": {"nesterov": True}}, "train"),
        ({"model": {"hidden": [8, 0]}}, "model.hidden.1"),
        ({"data": {"dataset": "iris", "test_fraction": 0.6, "validation_fraction": 0.4}}, "data"),
        ({"data": {"dataset": "mnist"}}, "data.dataset"),
    ],
)
def test_constraints(section, where):
    d = {"data": {"dataset": "iris"}, **section}
    assert one_line_error(config_from_dict, d).startswith(f"config error at {where}:")


def test_many_errors_reports_first_and_count():
    d = {"data": {"dataset": "iris"}, "train": {"epochs": 0, "batch_size": 0, "learning_rate": 0}}
    assert one_line_error(config_from_dict, d).endswith("(and 2 more)")


def test_dataset_and_path_exclusive():
    expected = "config error at data: give exactly one of 'dataset' (a bundled name) or 'path' (a CSV/NPZ file)"
    assert one_line_error(config_from_dict, {"data": {"dataset": "iris", "path": "x.csv"}}) == expected
    assert one_line_error(config_from_dict, {"data": {}}) == expected


def test_set_overrides(tmp_path):
    path = _write(tmp_path, "data:\n  dataset: digits\ntrain:\n  epochs: 3\n")
    cfg = load_config(
        path,
        ["train.learning_rate=0.1", "model.hidden=[32, 16]", "train.patience=null", "data.standardize=false"],
    )
    assert cfg.train.learning_rate == 0.1 and cfg.model.hidden == [32, 16] and cfg.train.epochs == 3
    assert cfg.train.patience is None and cfg.data.standardize is False
    # Intermediate mappings are created when absent.
    _write(tmp_path, "data:\n  dataset: moons\n", "bare.yaml")
    cfg = load_config(tmp_path / "bare.yaml", ["data.noise=0.2", "output.dir=elsewhere"])
    assert cfg.data.noise == 0.2 and cfg.output.dir == str(tmp_path / "elsewhere")  # as if in the file


@pytest.mark.parametrize("item", ["train.learning_rate", "=3", "train..epochs=3", "train.epochs=[1"])
def test_set_bad_syntax(tmp_path, item):
    path = _write(tmp_path, "data:\n  dataset: digits\n")
    assert item in one_line_error(load_config, path, [item])


def test_set_value_validated(tmp_path):
    path = _write(tmp_path, "data:\n  dataset: digits\n")
    assert one_line_error(load_config, path, ["train.epochs=-1"]).startswith("config error at train.epochs:")
    assert "not a mapping" in one_line_error(load_config, path, ["data.dataset.x=1"])


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = _write(tmp_path, "data:\n  dataset: digits\ntrain: [1, 2\n")
    message = one_line_error(load_config, path)
    assert "exp.yaml" in message and "line 4" in message and "column" in message


def test_missing_and_non_mapping_files(tmp_path):
    assert "missing.yaml" in one_line_error(load_config, tmp_path / "missing.yaml")
    assert "mapping" in one_line_error(load_config, _write(tmp_path, "- a\n- b\n"))


def test_json_schema():
    schema = json_schema()
    assert isinstance(schema, dict) and "properties" in schema
    assert set(schema["properties"]) == {"seed", "data", "model", "train", "output", "tune"}


def test_optimizer_defaults_follow_the_optimizer():
    t = config_from_dict({"data": {"dataset": "iris"}, "train": {"optimizer": "adam"}}).train
    assert (t.learning_rate, t.beta1, t.beta2, t.eps, t.weight_decay) == (0.001, 0.9, 0.999, 1e-8, 0.0)
    t = config_from_dict({"data": {"dataset": "iris"}, "train": {"optimizer": "adamw"}}).train
    assert (t.learning_rate, t.weight_decay) == (0.001, 0.01)


@pytest.mark.parametrize(
    "optimizer, key, value, owner",
    [("sgd", "beta1", 0.8, "adam/adamw"), ("adam", "momentum", 0.9, "sgd"), ("adamw", "nesterov", True, "sgd")],
)
def test_a_key_of_another_optimizer_is_one_line(optimizer, key, value, owner):
    d = {"data": {"dataset": "iris"}, "train": {"optimizer": optimizer, key: value}}
    message = one_line_error(config_from_dict, d)
    assert message.startswith(f"config error at train: {key} is a key of optimizer {owner}, not of {optimizer}")


def test_saved_config_of_each_optimizer_loads_again():
    for optimizer in ("sgd", "adam", "adamw"):
        cfg = config_from_dict({"data": {"dataset": "iris"}, "train": {"optimizer": optimizer}})
        d = config_to_dict(cfg)
        assert config_to_dict(config_from_dict(d)) == d
        assert ("beta1" in d["train"]) == (optimizer != "sgd") and ("momentum" in d["train"]) == (optimizer == "sgd")
