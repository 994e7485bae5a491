"""The fused training step, ``MLP.train_step``, against the transparent reference path
``loss_and_grad`` + ``opt.step``: the same parameters after many steps for every first-order
optimizer and every activation, in float64 (1e-12) and float32 (1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp import MLP, SGD
from mlpbp.engine import optim
from mlpbp.engine.activations import ACTIVATIONS

STEPS = 40
TOL = {"float64": 1e-12, "float32": 1e-5}


def _optimizers():
    """Every first-order optimizer the package registers: SGD in each of its modes, every other
    one with its defaults and with weight decay."""
    sgd = [
        ("sgd", lambda p: SGD(p, 0.02)),
        ("momentum", lambda p: SGD(p, 0.02, momentum=0.9)),
        ("nesterov+decay", lambda p: SGD(p, 0.02, momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("decay", lambda p: SGD(p, 0.02, weight_decay=0.05)),
        ("momentum+decay", lambda p: SGD(p, 0.02, momentum=0.5, weight_decay=0.1)),
    ]
    others = [
        (
            f"{name}+decay" if wd else name,
            lambda p, n=name, wd=wd: optim.build_optimizer(n, p, learning_rate=0.01, weight_decay=wd),
        )
        for name, cls in optim.OPTIMIZERS.items()
        if cls is not SGD and issubclass(cls, optim.Optimizer)  # lbfgs, newton_cg take no per-step updates
        for wd in (0.0, 0.1)
    ]
    return sgd + others


OPTIMIZERS = _optimizers()


def _data(rng, n, loss):
    X = rng.standard_normal((n, 5))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.standard_normal((n, 3))
    return X, y


def _pair(activation, loss, dtype, make_opt):
    nets = [MLP([5, 8, 6, 3], activation, loss, seed=3, dtype=dtype) for _ in range(2)]
    return nets, [make_opt(net.params) for net in nets]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,make_opt", OPTIMIZERS, ids=[n for n, _ in OPTIMIZERS])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_fused_step_matches_the_reference_path(activation, name, make_opt, dtype):
    for loss, batch in (("cross_entropy", 1), ("square", 7)):  # batch 1: the rank-1 update
        (fused, ref), (opt_f, opt_r) = _pair(activation, loss, dtype, make_opt)
        X, y = _data(np.random.default_rng(1), STEPS * batch, loss)
        for s in range(STEPS):
            rows = slice(s * batch, (s + 1) * batch)
            before = ref.loss(X[rows], y[rows])
            J = fused.train_step(X[rows], y[rows], opt_f)
            J_ref, g = ref.loss_and_grad(X[rows], y[rows])
            opt_r.step(g)
            assert J == pytest.approx(J_ref, rel=TOL[dtype]) and J_ref == pytest.approx(before, rel=TOL[dtype])
        moved = 0.0
        for k, p in ref.params.items():
            assert np.isfinite(p).all()
            scale = max(1.0, float(np.abs(p).max()))
            np.testing.assert_allclose(fused.params[k], p, rtol=0, atol=TOL[dtype] * scale, err_msg=k)
            moved = max(moved, float(np.abs(p - MLP([5, 8, 6, 3], activation, loss, seed=3).params[k]).max()))
        assert moved > 100 * TOL[dtype]  # the runs trained: the comparison is not of two untouched nets


def test_train_step_returns_the_loss_before_the_update_and_trains():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)  # separable: training must fit it
    net = MLP([4, 16, 2], "tanh", "cross_entropy", seed=1)
    opt = SGD(net.params, 0.5)
    first = net.loss(X, y)
    assert net.train_step(X, y, opt) == pytest.approx(first, rel=1e-15)
    for _ in range(100):
        net.train_step(X, y, opt)
    assert net.loss(X, y) < 0.2 * first


@pytest.mark.parametrize("make_opt", [lambda p: SGD(p, 0.1), lambda p: SGD(p, 0.1, momentum=0.9)])
def test_a_non_finite_loss_updates_nothing(make_opt):
    net = MLP([3, 4, 1], "relu", "square", seed=0)
    opt = make_opt(net.params)
    before = {k: p.copy() for k, p in net.params.items()}
    J = net.train_step(np.array([[1.0, np.inf, 0.0]]), np.array([1.0]), opt)
    assert not np.isfinite(J)
    for k, p in net.params.items():
        np.testing.assert_array_equal(p, before[k])


class _Counting(optim.Optimizer):
    """θ −= α g with a per-step counter, to check the contract the fused step relies on."""

    def __init__(self, params, learning_rate):
        super().__init__(params, learning_rate)
        self.steps, self.updates = 0, []

    def begin_step(self):
        self.steps += 1

    def update(self, name, p, g):
        self.updates.append((self.steps, name))
        p -= self.learning_rate * g


def test_other_optimizers_update_each_layer_once_per_step_after_one_begin_step():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    fused, ref = (MLP([3, 5, 4, 2], "sigmoid", "square", seed=4) for _ in range(2))
    opt_f, opt_r = _Counting(fused.params, 0.1), _Counting(ref.params, 0.1)
    for _ in range(3):
        fused.train_step(X, y, opt_f)
        opt_r.step(ref.loss_and_grad(X, y)[1])
    assert opt_f.steps == opt_r.steps == 3
    # backward order: the last layer's parameters first, each exactly once per step
    assert opt_f.updates[:6] == [(1, n) for n in ("W3", "b3", "W2", "b2", "W1", "b1")]
    assert sorted(opt_f.updates) == sorted(opt_r.updates)
    for k, p in ref.params.items():
        np.testing.assert_allclose(fused.params[k], p, rtol=1e-13, atol=1e-15)


def test_fused_sgd_updates_fortran_ordered_parameters_too():
    # A user may hand in parameters in any memory order; BLAS then writes a copy, which the
    # layer must copy back, or the update is silently lost.
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    fused, ref = (MLP([3, 4, 2], "relu", "cross_entropy", seed=5) for _ in range(2))
    for lin in fused.linears:
        lin.W = lin.params["W"] = np.asfortranarray(lin.W)
    opt_f = SGD(fused.linears[0].params | {}, 0.1)  # the optimizer only supplies −α here
    opt_r = SGD(ref.params, 0.1)
    for batch in (slice(0, 1), slice(0, 6)):
        fused.train_step(X[batch], y[batch], opt_f)
        opt_r.step(ref.loss_and_grad(X[batch], y[batch])[1])
    for lin_f, lin_r in zip(fused.linears, ref.linears):
        np.testing.assert_allclose(lin_f.W, lin_r.W, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(lin_f.b, lin_r.b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("loss", ["cross_entropy", "square"])
@pytest.mark.parametrize("batch", [1, 7])
def test_fused_step_with_class_weights_matches_the_reference_path(loss, batch):
    # train.class_weight: the fused path weighs each row's loss as the reference losses do.
    weights = np.array([0.3, 2.5, 1.2])
    nets = [MLP([5, 8, 3], "tanh", loss, seed=3, dtype="float64", class_weight=weights) for _ in range(2)]
    fused, ref = nets
    opt_f, opt_r = SGD(fused.params, 0.05, momentum=0.9), SGD(ref.params, 0.05, momentum=0.9)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((STEPS * batch, 5)), rng.integers(0, 3, STEPS * batch)
    for s in range(STEPS):
        rows = slice(s * batch, (s + 1) * batch)
        J = fused.train_step(X[rows], y[rows], opt_f)
        J_ref, g = ref.loss_and_grad(X[rows], y[rows])
        opt_r.step(g)
        assert J == pytest.approx(J_ref, rel=1e-12)
    for k, p in ref.params.items():
        np.testing.assert_allclose(fused.params[k], p, rtol=0, atol=1e-12 * max(1.0, float(np.abs(p).max())))
    unweighted = MLP([5, 8, 3], "tanh", loss, seed=3, dtype="float64")
    assert unweighted.loss(X, y) != pytest.approx(ref.loss(X, y), rel=1e-3)  # the weights did something


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("make_opt", [lambda p: SGD(p, 0.05), lambda p: SGD(p, 0.05, weight_decay=0.1)])
def test_deferred_first_layer_updates_match_the_reference_path(monkeypatch, dtype, make_opt):
    """At batch 1 the first layer's rank-1 updates are applied 4 at a time (a forced small
    group): every step's loss, computed while updates are pending, and the parameters after the
    block are those of the reference path. (With weight decay nothing is deferred.)"""
    import mlpbp.engine.network as network

    monkeypatch.setattr(network, "DEFER_MIN_SIZE", 0)
    monkeypatch.setattr(network, "DEFER_STEPS", 4)
    (fused, ref), (opt_f, opt_r) = _pair("tanh", "cross_entropy", dtype, make_opt)
    X, y = _data(np.random.default_rng(2), STEPS + 2, "cross_entropy")  # 42: ends mid-group
    pending = 0
    with fused.deferred_updates(1) as group:
        assert group == 4
        for s in range(X.shape[0]):
            J = fused.train_step(X[s : s + 1], y[s : s + 1], opt_f)
            J_ref, g = ref.loss_and_grad(X[s : s + 1], y[s : s + 1])
            opt_r.step(g)
            assert J == pytest.approx(J_ref, rel=TOL[dtype])
            pending = max(pending, fused.layers[0]._k)
            if s % 5 == 2:  # outputs while updates are pending, at batch 1 and at batch 5
                for rows in (slice(0, 1), slice(0, 5)):
                    o = ref.forward(X[rows])
                    np.testing.assert_allclose(fused.forward(X[rows]), o, rtol=0, atol=TOL[dtype] * np.abs(o).max())
    assert pending == (3 if opt_f.fused_decay == 1.0 else 0)
    for k, p in ref.params.items():
        np.testing.assert_allclose(fused.params[k], p, rtol=0, atol=TOL[dtype] * max(1.0, np.abs(p).max()), err_msg=k)


def test_updates_are_deferred_only_at_batch_1_for_a_large_first_layer():
    import mlpbp.engine.network as network

    big = MLP([600, 256, 3], "relu", "cross_entropy", seed=0)  # 153,600 weights in W1
    small = MLP([5, 8, 3], "relu", "cross_entropy", seed=0)
    with big.deferred_updates(1) as a, big.deferred_updates(2) as b, small.deferred_updates(1) as c:
        assert (a, b, c) == (network.DEFER_STEPS, 1, 1)
