"""ONNX export of graphs of modules (BatchNormalization, LayerNormalization, Dropout as the
identity, Sum, Concat, Gather for select and embedding): onnxruntime equals the model's own
predictions (evaluation mode) to 1e-5, and after a save and reload."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from mlpbp import SGD, Network
from mlpbp.data import Standardizer
from mlpbp.run.model_file import TrainedModel, load_model, save_model
from mlpbp.tools.export import to_onnx

GRAPHS = {
    "residual-batch-norm": [
        {"linear": 8},
        {"residual": ["batch_norm", {"linear": 8}, "relu", {"dropout": 0.3}, {"linear": 8}]},
        "layer_norm",
        "tanh",
        {"dropout": 0.2},
    ],
    "branches": [
        {"add": [[], [{"linear": 4}, "sigmoid", {"linear": {"width": 4, "bias": False}}]]},
        {"concat": [[], ["batch_norm", "elu"], [{"linear": 3}, "softplus"]]},
        "leaky_relu",
    ],
    "tabular": [
        {"concat": [{"select": {"columns": [0, 1]}}, {"embedding": {"column": 2, "categories": 3, "dim": 2}},
                    {"embedding": {"column": 3, "categories": 2, "dim": 3}}]},
        {"linear": 6},
        "sin",
    ],
}  # fmt: skip


def _model(name, rng, standardize):
    net = Network.from_layers(GRAPHS[name], 4, 3, loss="cross_entropy", seed=1, task="classification")
    opt = SGD(net.params, 0.05)
    for _ in range(20):  # move the running statistics and γ, β away from their start
        X = rng.normal(size=(16, 4)) * 2 + 1
        X[:, 2], X[:, 3] = rng.integers(0, 3, 16), rng.integers(0, 2, 16)
        net.train_step(X, rng.integers(0, 3, 16), opt)
    mean, scale = (np.zeros(4), np.ones(4)) if not standardize else (rng.normal(size=4) * 0.1, rng.uniform(1, 2, 4))
    if name == "tabular":  # the code columns stay codes
        mean[2:], scale[2:] = 0.0, 1.0
    return TrainedModel(net.eval(), Standardizer(mean, scale), None, ["a", "b", "c"], ["u", "v", "w", "x"], "k")


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("name", list(GRAPHS))
def test_onnx_of_a_graph_equals_predict(name, standardize, tmp_path):
    rng = np.random.default_rng(5)
    model = _model(name, rng, standardize)
    save_model(model, tmp_path / "m.npz")
    model = load_model(tmp_path / "m.npz")  # the graph, weights and running statistics from the file
    X = rng.normal(scale=2.0, size=(40, 4))
    X[:, 2] = rng.integers(-1, 5, 40)  # codes outside the categories take the reserved row
    X[:, 3] = rng.integers(0, 2, 40)
    session = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    label, p = session.run(None, {n: X[:, [j]].astype(np.float32) for j, n in enumerate(["u", "v", "w", "x"])})
    o = model.predict_outputs(X)
    expected = np.exp(o - o.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-5)
    assert list(label) == [model.classes[k] for k in o.argmax(axis=1)]
