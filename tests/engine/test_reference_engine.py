"""The fast engine against the plain reference engine (mlpbp.engine.reference): the same graph,
the same parameters and running statistics after many training steps, for every module, with
the fused SGD step, momentum and AdamW, in float64 (1e-12) and float32 (1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp import SGD, AdamW, Network
from mlpbp.engine.reference import ReferenceNetwork

NETWORKS = {
    "chain": [{"linear": 6}, "tanh", {"linear": 5}, "sigmoid"],
    "batch_norm": [
        {"linear": {"width": 6, "bias": False}},
        "batch_norm",
        "relu",
        {"linear": {"width": 5, "bias": False}},
        "elu",
    ],
    "layer_norm": [{"linear": 6}, {"layer_norm": {"eps": 1e-3}}, "softplus"],
    "dropout": [{"linear": 8}, "elu", {"dropout": 0.3}, {"linear": 6}, "sin", {"dropout": 0.5}],
    "residual": [
        {"linear": 6},
        {"residual": ["batch_norm", {"linear": 6}, "relu", {"dropout": 0.2}, {"linear": 6}]},
        "layer_norm",
        "leaky_relu",
    ],
    "add_concat": [
        {"linear": 5},
        {"add": [[], [{"linear": 5}, "tanh"]]},
        {"concat": [[], ["layer_norm", "sigmoid"]]},
        "identity",
    ],
    "embedding": [
        {
            "concat": [
                {"select": {"columns": [0, 1]}},
                {"embedding": {"column": 2, "categories": 4, "dim": 3}},
                {"embedding": {"column": 3, "categories": 2, "dim": 2}},
            ]
        },
        {"linear": 6},
        "tanh",
    ],
}
OPTIMIZERS = {
    "sgd": lambda params: SGD(params, 0.05, weight_decay=0.01),  # fused into backward
    "momentum": lambda params: SGD(params, 0.02, momentum=0.8, nesterov=True),
    "adamw": lambda params: AdamW(params, 0.01),
}
TOL = {"float64": 1e-12, "float32": 1e-5}


def _data(rng, rows):
    X = rng.normal(size=(rows, 4))
    X[:, 2] = rng.integers(-1, 5, rows)  # codes 0..3 and two unseen ones (-1, 4)
    X[:, 3] = rng.integers(0, 2, rows)
    return X, rng.integers(0, 3, rows)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("name", list(NETWORKS))
def test_fast_engine_trains_as_the_reference_engine(name, opt_name, dtype):
    rng = np.random.default_rng(11)
    weights = np.array([1.0, 5.0, 0.2]) if name == "chain" else None
    net = Network.from_layers(NETWORKS[name], 4, 3, loss="cross_entropy", seed=4, dtype=dtype, class_weight=weights)
    ref = ReferenceNetwork(net)
    opt, opt_ref = OPTIMIZERS[opt_name](net.params), OPTIMIZERS[opt_name](ref.params)
    for step in range(40):
        X, y = _data(rng, 7 + step % 3)
        X = X.astype(dtype)
        J = net.train_step(X, y, opt)
        J_ref, grads = ref.loss_and_grad(X, y, update_buffers=True)
        opt_ref.step(grads)
        assert J == pytest.approx(J_ref, rel=100 * TOL[dtype])
    for k, p in net.params.items():
        scale = max(1.0, float(np.abs(ref.params[k]).max()))
        np.testing.assert_allclose(p, ref.params[k], rtol=0, atol=TOL[dtype] * scale, err_msg=k)
    for k, b in net.buffers.items():
        np.testing.assert_allclose(b, ref.buffers[k], rtol=TOL[dtype], atol=TOL[dtype], err_msg=k)
    net.eval()
    ref.training = False
    X, _ = _data(rng, 5)
    np.testing.assert_allclose(net.forward(X), ref.forward(X), rtol=TOL[dtype], atol=TOL[dtype])


def test_the_embedding_table_reserves_its_last_row_for_unseen_codes():
    net = Network.from_layers([{"embedding": {"column": 0, "categories": 3, "dim": 2}}], 1, 2)
    E = net.params["E1"]
    assert E.shape == (4, 2) and not E[3].any() and E[:3].any()
    rows = net.layers[0].codes(np.array([[0.0], [2.0], [3.0], [-1.0], [1.5], [np.nan]]))
    assert rows.tolist() == [0, 2, 3, 3, 3, 3]
