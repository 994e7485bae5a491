"""model.delta (huber) and model.alpha (quantile): set in the config, saved in model.npz and
config.yaml, used by evaluate on the loaded model; a file without them loads with the defaults."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pyarrow as pa
import pytest

from mlpbp.engine.losses import get_loss
from mlpbp.errors import ConfigError
from mlpbp.run.config import config_from_dict, load_config
from mlpbp.run.model_file import load_model
from mlpbp.run.trainer import train


def _config(loss: str, **model) -> dict:
    return {
        "seed": 0,
        "data": {"dataset": "sine", "n_samples": 120},
        "model": {"hidden": [6], "activation": "tanh", "loss": loss, **model},
        "train": {"epochs": 3, "dtype": "float64", "learning_rate": 0.05},
    }


@pytest.mark.parametrize("loss, key, value, default", [("huber", "delta", 0.05, 1.0), ("quantile", "alpha", 0.9, 0.5)])
def test_the_loss_setting_is_saved_and_evaluate_uses_it(tmp_path, loss, key, value, default):
    r = train(config_from_dict(_config(loss, **{key: value})), tmp_path / "run")
    model = load_model(tmp_path / "run" / "model.npz")
    assert model.net.loss_params == {key: value} and getattr(model.net.loss_fn, key) == value
    assert load_config(tmp_path / "run" / "config.yaml").model.model_dump()[key] == value
    # evaluate's loss is the loss with the saved setting, not the default's
    from mlpbp.data import generate

    ds = generate("sine", seed=0, n_samples=120, noise=0.1)
    columns = {n: ds.X[:, j] for j, n in enumerate(model.feature_names)} | {model.target_names[0]: ds.y.ravel()}
    got = model.evaluate(pa.table(columns))["loss"]
    o = model.net.forward(model.preprocessor.encode_array(ds.X))
    t = model.y_scaler.transform(ds.y.reshape(len(ds.y), -1)) if model.y_scaler is not None else ds.y
    assert got == pytest.approx(get_loss(loss, **{key: value}).forward(o, t), rel=1e-12)
    assert got != pytest.approx(get_loss(loss, **{key: default}).forward(o, t), rel=1e-6)
    assert r.test["loss"] == pytest.approx(model.metrics["loss"])


def test_a_file_without_loss_params_loads_with_the_defaults(tmp_path):
    train(config_from_dict(_config("huber", delta=0.05)), tmp_path / "run")
    path = tmp_path / "run" / "model.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    del meta["loss_params"]  # as every file before them
    arrays["meta"] = np.array(json.dumps(meta))
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    assert zipfile.is_zipfile(old)
    model = load_model(old)
    assert model.net.loss_params == {} and model.net.loss_fn.delta == 1.0


def test_the_setting_of_another_loss_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="model.delta is a setting of loss huber, not of square"):
        config_from_dict(_config("square", delta=0.5))
    with pytest.raises(ConfigError, match="model.alpha is a setting of loss quantile, not of the default loss"):
        config_from_dict({"data": {"dataset": "sine"}, "model": {"alpha": 0.3}})
    with pytest.raises(ConfigError, match="model.alpha"):
        config_from_dict(_config("quantile", alpha=1.5))
    assert config_from_dict(_config("huber")).model.delta == 1.0
