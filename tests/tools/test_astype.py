"""``net.astype(dtype)``: one way to change a network's dtype that keeps everything defining its
loss (class weights, buffers, mode, the dropout generator), which gradcheck and the Hessian
tools use; and what those tools then compute for a class-weighted model."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp import MLP, Network
from mlpbp.engine.curvature import Curvature
from mlpbp.tools import gradcheck as gc
from mlpbp.tools.hessian import float64_copy

WEIGHTS = np.array([1.0, 5.0, 0.2])


def _weighted_loss(net, theta, X, y):
    """J = (1/n) Σⱼ c_{yⱼ} J⁽ʲ⁾ written out from the network's outputs, row by row."""
    net.set_flat(theta)
    o = net.forward(X)
    z = o - o.max(axis=1, keepdims=True)
    per_row = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
    return float(WEIGHTS[y] @ per_row) / len(y)


def _problem(dtype="float32"):
    rng = np.random.default_rng(0)
    net = MLP([4, 6, 3], "tanh", "cross_entropy", seed=1, dtype=dtype, class_weight=WEIGHTS)
    return net, rng.normal(size=(12, 4)), np.array([0, 1, 2] * 4)


def test_astype_keeps_weights_buffers_mode_and_generator():
    layers = [{"linear": 5}, "batch_norm", "relu", {"dropout": 0.3}]
    net = Network.from_layers(layers, 4, 3, loss="cross_entropy", dtype="float32", class_weight=WEIGHTS, seed=3)
    X, y = np.random.default_rng(1).normal(size=(6, 4)), np.arange(6) % 3
    net.step_loss_and_grad(X.astype(np.float32), y)  # moves the running statistics
    net.eval()
    copy = net.astype("float64")
    assert copy.dtype == np.float64 and not copy.training
    np.testing.assert_array_equal(copy.loss_fn.class_weight, WEIGHTS)
    for k, b in net.buffers.items():
        assert copy.buffers[k] is not b and np.array_equal(copy.buffers[k], b.astype(np.float64))
    assert copy.loss(X, y) == pytest.approx(net.loss(X, y), rel=1e-5)
    assert copy.generator.bit_generator.state == net.generator.bit_generator.state
    assert copy.graph() == net.graph()
    same = MLP([4, 6, 3], "tanh", "cross_entropy", seed=1, class_weight=WEIGHTS).astype("float32")
    assert isinstance(same, MLP) and same.dtype == np.float32


def test_gradcheck_of_a_class_weighted_model_differences_the_weighted_loss():
    net, X, y = _problem()
    report = gc.check_network(net, X, y)
    assert report.ok
    theta = net.astype("float64").get_flat()
    probe = net.astype("float64")
    index = gc._flat_index_name(probe)
    names = [index(j) for j in range(theta.size)]
    for c in report.checks:
        if c.kind != "param":
            continue
        for d in c.details:  # the analytical values checked are the weighted loss's differences
            j = names.index(f"{c.param}[{', '.join(map(str, d['index']))}]")
            e = np.zeros_like(theta)
            e[j] = 1e-6
            fd = (_weighted_loss(probe, theta + e, X, y) - _weighted_loss(probe, theta - e, X, y)) / 2e-6
            assert d["analytical"] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_the_hessian_of_a_class_weighted_model_is_the_weighted_loss_hessian():
    net, X, y = _problem()
    op = Curvature(float64_copy(net), X, y, "hessian", batch_size=5)
    H = np.column_stack([op.matvec(e) for e in np.eye(op.shape[0])])
    probe = net.astype("float64")
    theta, h = probe.get_flat(), 1e-4
    dense = np.empty_like(H)
    for j in range(theta.size):  # second differences of the weighted loss written out by hand
        e = np.zeros_like(theta)
        e[j] = h
        grad = lambda t: np.array(  # noqa: E731
            [
                (_weighted_loss(probe, t + d, X, y) - _weighted_loss(probe, t - d, X, y)) / (2 * h)
                for d in np.eye(theta.size) * h
            ]
        )
        dense[:, j] = (grad(theta + e) - grad(theta - e)) / (2 * h)
    np.testing.assert_allclose(H, (dense + dense.T) / 2, rtol=0, atol=1e-6 * np.abs(H).max())
