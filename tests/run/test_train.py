"""Training end to end: every shipped config reaches what it promises, with its own seed."""

from pathlib import Path

import numpy as np
import pytest

from mlpbp import MLP, SGD
from mlpbp.run.config import config_from_dict, load_config
from mlpbp.run.trainer import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "name, metric, target",
    [
        ("digits", "accuracy", 0.97),
        ("iris", "accuracy", 0.93),
        ("spirals", "accuracy", 0.95),
        ("sine", "r2", 0.98),
        ("digits-per-example", "accuracy", 0.95),
    ],
)
def test_shipped_config_reaches_its_target(name, metric, target, tmp_path):
    result = train(load_config(CONFIGS / f"{name}.yaml"), out_dir=tmp_path)
    assert result.evaluated_on == "test"
    assert result.test[metric] >= target, result.test
    assert (tmp_path / "model.npz").is_file() and (tmp_path / "history.csv").is_file()


def test_xor_learns_the_four_points(tmp_path):
    cfg = load_config(CONFIGS / "xor.yaml")
    assert cfg.model.hidden == [2] and cfg.data.test_fraction == 0 == cfg.data.validation_fraction
    result = train(cfg, out_dir=tmp_path)
    assert result.evaluated_on == "train"  # nothing held out: the summary reports training metrics
    assert result.history[-1]["train_loss"] < 1e-3
    assert result.test["accuracy"] == 1.0
    assert result.history[-1]["val_loss"] is None


def _tiny(**train_keys):
    return config_from_dict(
        {
            "seed": 3,
            "data": {"dataset": "moons", "n_samples": 200, "noise": 0.1},
            "model": {"hidden": [8], "activation": "tanh"},
            "train": {"epochs": 5, "batch_size": 16, "learning_rate": 0.1, "momentum": 0.9, **train_keys},
        }
    )


def test_same_seed_gives_identical_history_and_weights(tmp_path):
    a = train(_tiny(), out_dir=tmp_path / "a")
    b = train(_tiny(), out_dir=tmp_path / "b")
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert (tmp_path / "a/history.csv").read_bytes() == (tmp_path / "b/history.csv").read_bytes()
    for k, p in a.model.net.params.items():
        assert np.array_equal(p, b.model.net.params[k])


def test_another_seed_gives_another_run(tmp_path):
    a = train(_tiny(), out_dir=tmp_path / "a")
    cfg = _tiny()
    cfg.seed = 4
    b = train(cfg, out_dir=tmp_path / "b")
    assert a.history[-1]["train_loss"] != b.history[-1]["train_loss"]


def test_early_stopping_keeps_the_best_weights(tmp_path):
    cfg = config_from_dict(
        {
            "seed": 0,
            "data": {"dataset": "moons", "n_samples": 200, "noise": 0.3, "validation_fraction": 0.3},
            "model": {"hidden": [64, 64]},
            "train": {"epochs": 400, "batch_size": 8, "learning_rate": 0.1, "momentum": 0.9, "patience": 5},
        }
    )
    r = train(cfg, out_dir=tmp_path)
    assert r.stopped_early and len(r.history) < 400
    best = min(h["val_loss"] for h in r.history)
    assert r.history[r.best_epoch - 1]["val_loss"] == best
    assert len(r.history) == r.best_epoch + 5  # patience epochs without improvement
    # the saved model is the best epoch's: its validation loss is the best one
    from mlpbp.run.metrics import compute_metrics
    from mlpbp.run.prepare import prepare

    data = prepare(cfg)
    assert compute_metrics(r.model.net, *data.val)["loss"] == pytest.approx(best, rel=1e-6)


def test_per_example_sgd_is_theta_minus_alpha_grad_of_one_example():
    """batch_size 1: each step is θ := θ − α ∇J⁽ʲ⁾ for one example j."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(5, 3)), rng.integers(0, 2, 5)
    net = MLP([3, 4, 2], "tanh", "cross_entropy", seed=1)
    before = {k: p.copy() for k, p in net.params.items()}
    _, g = net.loss_and_grad(X[2:3], y[2:3])
    SGD(net.params, 0.3).step(g)
    for k in before:
        np.testing.assert_allclose(net.params[k], before[k] - 0.3 * g[k], rtol=0, atol=1e-15)


def test_regression_metrics_are_in_the_targets_units(tmp_path):
    cfg = config_from_dict(
        {
            "seed": 0,
            "data": {"dataset": "sine", "n_samples": 300, "noise": 0.05},
            "model": {"hidden": [16], "activation": "tanh"},
            "train": {"epochs": 60, "batch_size": 16, "learning_rate": 0.05, "momentum": 0.9},
        }
    )
    r = train(cfg, out_dir=tmp_path)
    # targets were standardised for training; MSE is reported back in the target's units
    from mlpbp.run.prepare import prepare

    data = prepare(cfg)
    pred = r.model.y_scaler.inverse_transform(r.model.net.forward(data.test[0]).astype(float))
    true = data.y_scaler.inverse_transform(data.test[1].astype(float))
    assert r.test["mse"] == pytest.approx(np.mean((pred - true) ** 2), rel=1e-6)
    assert r.test["r2"] > 0.9


def test_divergence_names_only_this_runs_checkpoint(tmp_path):
    from mlpbp.errors import TrainingError

    train(_tiny(), out_dir=tmp_path)  # an earlier, good run leaves its checkpoint here
    cfg = _tiny(learning_rate=1e30)
    cfg.model.activation = "relu"
    with pytest.raises(TrainingError, match=r"diverged at epoch 1, step \d+ \(loss=") as e:
        train(cfg, out_dir=tmp_path, overwrite=True)
    assert "checkpoint" not in str(e.value)  # the earlier run's checkpoint is not this run's
