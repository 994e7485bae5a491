"""lbfgs and newton_cg training, the work counters of every optimizer, sharpness during
training, and their bad inputs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.optimize import minimize

from helpers import one_line_error
from mlpbp import MLP
from mlpbp.engine.curvature import Curvature
from mlpbp.engine.second_order import LBFGS, NewtonCG
from mlpbp.errors import Interrupted
from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer, TrainHooks

SMALL = {"seed": 2, "data": {"dataset": "moons", "n_samples": 120, "noise": 0.2}, "model": {"hidden": [6]}}


def _cfg(tmp_path, **train):
    return config_from_dict({**SMALL, "train": {"dtype": "float64", **train}, "output": {"dir": str(tmp_path)}})


def _history(out) -> list[dict]:
    return list(csv.DictReader((out / "history.csv").open()))


def test_lbfgs_epoch_is_scipy_lbfgsb_on_the_full_batch_loss():
    rng = np.random.default_rng(0)
    net = MLP([3, 5, 2], "tanh", "cross_entropy", seed=1)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    ref = MLP([3, 5, 2], "tanh", "cross_entropy", seed=1)
    expected = minimize(
        lambda t: ref.set_flat(t) or ref.flat_grad(X, y),
        ref.get_flat(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 15, "maxcor": 4, "gtol": 1e-8},
    )
    work = LBFGS(net.params, max_iter=15, tolerance=1e-8, history_size=4).run_epoch(
        net, X, y, np.arange(40), lambda: False
    )
    np.testing.assert_array_equal(net.get_flat(), expected.x)
    assert work.gradients == expected.nfev and work.products == 0


@pytest.mark.parametrize("curvature", ["gauss_newton", "hessian"])
def test_newton_cg_steps_never_raise_the_loss_and_count_their_products(curvature):
    rng = np.random.default_rng(1)
    net = MLP([2, 8, 1], "tanh", "square", seed=3)
    X = rng.uniform(-3, 3, size=(60, 2))
    y = np.sin(X[:, :1]) * np.cos(X[:, 1:])
    method = NewtonCG(net.params, curvature=curvature, damping=0.1, cg_max_iter=30)
    losses = [net.loss(X, y)]
    products = 0.0
    for _ in range(8):
        work = method.run_epoch(net, X, y, np.arange(60), lambda: False)
        losses.append(net.loss(X, y))
        assert 1 <= work.products <= 30 and work.gradients >= 2  # a gradient and the chosen iterate's loss
        products += work.products
    assert all(b <= a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.3 * losses[0], losses


def test_newton_cg_mini_batches_weigh_work_by_their_rows():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(50, 2)), rng.integers(0, 2, 50)
    order = rng.permutation(50)
    nets = [MLP([2, 4, 2], "relu", "cross_entropy", seed=0) for _ in range(3)]
    works = [
        NewtonCG(net.params, batch_size=b, cg_max_iter=5).run_epoch(net, X, y, order, lambda: False)
        for net, b in zip(nets, (None, 50, 20))
    ]
    assert works[0] == works[1]  # a batch of every row is the full batch
    np.testing.assert_array_equal(nets[0].get_flat(), nets[1].get_flat())
    # batches of 20, 20 and 10 rows, each at most 5 CG products (+1 for a warm start):
    # every product counts its batch's share of the 50 rows
    assert 0.4 + 0.4 + 0.2 <= works[2].products <= 6.0 and works[2].gradients >= 2.0


@pytest.mark.parametrize(
    "train",
    [
        {"optimizer": "sgd", "epochs": 3},
        {"optimizer": "lbfgs", "epochs": 3, "max_iter": 5},
        {"optimizer": "newton_cg", "epochs": 3},
    ],
)
def test_every_optimizer_counts_gradient_and_curvature_passes(tmp_path, train):
    result = _trainer(_cfg(tmp_path, **train)).run()
    rows = _history(tmp_path)
    grads = [float(r["gradients"]) for r in rows]
    products = [float(r["products"]) for r in rows]
    assert grads == [r["gradients"] for r in result.history] and all(b > a for a, b in zip(grads, grads[1:]))
    if train["optimizer"] == "sgd":
        assert grads == [1.0, 2.0, 3.0] and products == [0.0, 0.0, 0.0]
    elif train["optimizer"] == "lbfgs":
        assert products == [0.0, 0.0, 0.0] and grads[-1] >= 3
    else:
        assert all(b > a for a, b in zip(products, products[1:]))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def _trainer(cfg, out=None, **kwargs) -> Trainer:
    return Trainer(cfg, prepare(cfg), out, **kwargs)


class _StopInEpoch(TrainHooks):
    """Request a stop as epoch ``epoch`` starts: the method sees it mid-epoch."""

    def __init__(self, epoch: int) -> None:
        self.at, self.trainer = epoch, None

    def epoch_start(self, epoch: int, n_steps: int) -> None:
        if epoch == self.at:
            self.trainer.stop.set()


@pytest.mark.parametrize("train", [{"optimizer": "lbfgs", "max_iter": 4}, {"optimizer": "newton_cg", "batch_size": 40}])
def test_full_batch_methods_interrupted_and_resumed_are_bit_identical(tmp_path, train):
    cfg = _cfg(tmp_path / "ref", epochs=5, **train)
    _trainer(cfg).run()
    out = tmp_path / "out"
    hooks = _StopInEpoch(3)
    hooks.trainer = trainer = _trainer(cfg, out, hooks=hooks)
    with pytest.raises(Interrupted, match="interrupted in epoch 3"):
        trainer.run()
    _trainer(cfg, out).run(resume=True)
    assert (out / "history.csv").read_text().splitlines()[1:] != []
    ref, got = _history(tmp_path / "ref"), _history(out)
    assert [(r["train_loss"], r["gradients"], r["products"]) for r in got] == [
        (r["train_loss"], r["gradients"], r["products"]) for r in ref
    ]
    with np.load(out / "model.npz") as a, np.load(tmp_path / "ref" / "model.npz") as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("param."))


def test_sharpness_is_the_top_hessian_eigenvalue_beside_two_over_the_learning_rate(tmp_path):
    cfg = _cfg(tmp_path, epochs=4, learning_rate=0.1, sharpness_every=2, sharpness_rows=50)
    trainer = _trainer(cfg)
    result = trainer.run()
    rows = _history(tmp_path)
    assert [r["sharpness"] == "" for r in rows] == [True, False, True, False]
    assert all(float(r["stability_limit"]) == pytest.approx(20.0) for r in rows)
    X, y = trainer.sharpness_sample
    assert X.shape[0] == 50
    op = Curvature(trainer.net, X, y, "hessian")
    top = np.linalg.eigvalsh(np.column_stack([op.matvec(e) for e in np.eye(op.shape[0])]))[-1]
    assert result.history[-1]["sharpness"] == pytest.approx(top, rel=1e-5)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"optimizer": "lbfgs", "beta1": 0.8}, "beta1 is a key of optimizer adam/adamw, not of lbfgs"),
        (
            {"optimizer": "lbfgs", "batch_size": 10},
            "batch_size is a key of optimizer sgd/adam/adamw/newton_cg, not of lbfgs",
        ),
        ({"optimizer": "newton_cg", "learning_rate": 0.1}, "learning_rate is a key of optimizer sgd/adam/adamw, not"),
        ({"optimizer": "sgd", "max_iter": 5}, "max_iter is a key of optimizer lbfgs, not of sgd"),
        ({"optimizer": "adam", "damping": 1.0}, "damping is a key of optimizer newton_cg, not of adam"),
        ({"sharpness_rows": 0}, "train.sharpness_rows: Input should be greater than or equal to 1"),
        ({"sharpness_every": 0}, "train.sharpness_every: Input should be greater than or equal to 1"),
    ],
)
def test_bad_optimizer_keys_are_one_line(train, message):
    assert message in one_line_error(config_from_dict, {**SMALL, "train": train})


def test_sharpness_with_no_training_rows_is_one_line(tmp_path):
    d = {"seed": 0, "data": {"dataset": "moons", "n_samples": 2, "test_fraction": 0.5, "validation_fraction": 0.45}}
    cfg = config_from_dict({**d, "train": {"sharpness_every": 1}, "output": {"dir": str(tmp_path)}})
    # the split refuses first: no split leaves the training part empty
    assert "training row" in one_line_error(prepare, cfg)


@pytest.mark.parametrize(
    "train", [{"optimizer": "lbfgs", "max_iter": 8}, {"optimizer": "newton_cg", "batch_size": 40, "cg_max_iter": 10}]
)
def test_full_batch_methods_leave_the_data_statistics_in_batch_norm(tmp_path, train):
    """Evaluation mode after lbfgs / newton_cg normalises by the training data's batch
    statistics at the final weights (mean, unbiased variance), not by the initial 0 and 1."""
    cfg = config_from_dict(
        {
            **SMALL,
            "model": {"hidden": [6], "activation": "tanh", "norm": "batch"},
            "train": {"dtype": "float64", "epochs": 2, **train},
            "output": {"dir": str(tmp_path)},
        }
    )
    data = prepare(cfg)
    net = Trainer(cfg, data, tmp_path).run().model.net
    X = data.train[0]
    p = net.params
    z = X @ p["W1"].T + p["b1"]
    mean, var = z.mean(axis=0), z.var(axis=0, ddof=1)
    np.testing.assert_allclose(net.buffers["running_mean1"], mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(net.buffers["running_var1"], var, rtol=1e-12, atol=0)
    a = np.tanh(p["gamma1"] * (z - mean) / np.sqrt(var + 1e-5) + p["beta1"])
    expected = a @ p["W2"].T + p["b2"]
    assert not net.training
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-12)
    assert np.abs(var - 1).max() > 0.05  # the test can tell these statistics from the initial ones
