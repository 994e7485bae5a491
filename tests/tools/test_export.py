"""`mlpbp export --format onnx`: the graph run by onnxruntime matches `mlpbp predict` to 1e-5
(float32), for classifiers and regressors, with and without standardisation."""

from __future__ import annotations

import csv
import io
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from mlpbp.cli import app
from mlpbp.data import Standardizer
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.network import MLP
from mlpbp.run.model_file import TrainedModel, load_model, save_model
from mlpbp.tools.export import ACTIVATION_OPS, OPSET, to_onnx

RUNS = {
    "classifier": {"data": {"dataset": "spirals", "n_samples": 200}, "model": {"hidden": [16, 16]}},
    "classifier-square-loss": {"data": {"dataset": "moons", "n_samples": 100}, "model": {"loss": "square"}},
    "regressor": {"data": {"dataset": "sine", "n_samples": 100}, "model": {"hidden": [8], "activation": "tanh"}},
}


@pytest.fixture(scope="module", params=[(k, s) for k in RUNS for s in (True, False)], ids=lambda p: f"{p[0]}-std{p[1]}")
def trained(request, tmp_path_factory, runner):
    """(model.npz, rows CSV of fresh random rows) of a short real run."""
    kind, standardize = request.param
    tmp = tmp_path_factory.mktemp("export")
    cfg = {**RUNS[kind], "train": {"epochs": 5, "batch_size": 16}}
    cfg["data"] = {**cfg["data"], "standardize": standardize}
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(tmp / "c.yaml"), "--out", str(tmp / "run"), "-q"])
    assert res.exit_code == 0, res.output
    model = tmp / "run" / "model.npz"
    names = load_model(model).feature_names
    X = np.random.default_rng(0).normal(scale=2.0, size=(50, len(names)))  # rows the training never saw
    rows = tmp / "rows.csv"
    rows.write_text(",".join(names) + "\n" + "".join(",".join(repr(float(v)) for v in r) + "\n" for r in X))
    return model, rows, X


def _run_onnx(path, names, X) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: X[:, [j]].astype(np.float32) for j, n in enumerate(names)}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def test_onnx_matches_mlpbp_predict(runner, trained, tmp_path):
    model_path, rows, X = trained
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(model_path), "--format", "onnx", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stderr and f"opset {OPSET}" in res.stderr
    model = load_model(model_path)
    got = _run_onnx(out, model.feature_names, X)
    res = runner.invoke(app, ["predict", str(model_path), str(rows)])
    assert res.exit_code == 0, res.output
    predicted = list(csv.DictReader(io.StringIO(res.stdout)))
    if model.task == "classification":
        assert list(got["label"]) == [r["prediction"] for r in predicted]
        if model.net.loss_name == "cross_entropy":
            expected = np.array([[float(r[f"p_{c}"]) for c in model.classes] for r in predicted])
            np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)
        else:
            assert set(got) == {"label"}
    else:
        expected = np.array([[float(r[model.target_name])] for r in predicted])
        np.testing.assert_allclose(got["prediction"], expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_default_output_path_and_inputs_named_as_columns(runner, trained, tmp_path):
    model_path, _, _ = trained
    res = runner.invoke(app, ["export", str(model_path), "--json"])
    assert res.exit_code == 0, res.output
    onnx_path = model_path.with_suffix(".onnx")
    proto = onnx.load(onnx_path)
    assert [i.name for i in proto.graph.input] == load_model(model_path).feature_names
    assert proto.opset_import[0].version == OPSET
    onnx_path.unlink()


@pytest.mark.parametrize("activation", list(ACTIVATION_OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_activation_exports_exactly(activation, dtype):
    rng = np.random.default_rng(1)
    net = MLP([3, 7, 5, 4], activation, "cross_entropy", seed=2, dtype=dtype, task="classification")
    mean, scale = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
    model = TrainedModel(net, Standardizer(mean, scale), None, ["a", "b", "c", "d"], ["u", "v", "w"], "k")
    X = rng.normal(scale=3.0, size=(64, 3))
    proto = to_onnx(model)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    label, p = session.run(None, {n: X[:, [j]].astype(np.float32) for j, n in enumerate(["u", "v", "w"])})
    o = model.predict_outputs(X)
    expected = np.exp(o - o.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-5)
    assert list(label) == [model.classes[k] for k in o.argmax(axis=1)]


def test_an_activation_onnx_lacks_is_one_line_exit_2(runner, tmp_path):
    ACTIVATIONS.register("cube", ACTIVATIONS["identity"].__class__("cube", *_cube()))
    try:
        net = MLP([2, 3, 2], "cube", "cross_entropy", task="classification")
        model = TrainedModel(net, Standardizer.identity(2), None, ["p", "q"], ["x0", "x1"], "y")
        save_model(model, tmp_path / "model.npz")
        res = runner.invoke(app, ["export", str(tmp_path / "model.npz")])
    finally:
        del ACTIVATIONS["cube"]
    assert res.exit_code == 2 and "cannot export activation 'cube'" in res.stderr
    assert not (tmp_path / "model.onnx").exists()


def _cube():
    def f(z, out):
        return np.power(z, 3, out=out)

    def df(z, a, out):
        np.multiply(z, z, out=out)
        out *= 3
        return out

    def d2f(z, a, out):
        return np.multiply(z, 6, out=out)

    return f, df, d2f


def test_missing_onnx_says_what_to_install(runner, good_run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    res = runner.invoke(app, ["export", str(good_run / "model.npz"), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == ["error: ONNX export needs the onnx package: pip install 'mlpbp[onnx]'"]
    assert not (tmp_path / "m.onnx").exists()


def test_unknown_format_is_one_line_exit_2(runner, good_run):
    res = runner.invoke(app, ["export", str(good_run / "model.npz"), "--format", "pmml"])
    assert res.exit_code == 2 and "allowed: onnx" in res.stderr


def test_onnx_of_a_table_with_categories_dates_and_missing_cells_matches_predict(runner, tmp_path):
    """The shipped customers table: text categories (one with an unseen value added here), a
    boolean, a date, imputed numbers and categories. ONNX Runtime on the raw columns must give
    mlpbp predict's labels and probabilities."""
    from helpers import ROOT

    cfg = yaml.safe_load((ROOT / "configs" / "customers.yaml").read_text())
    cfg["data"]["path"] = str(ROOT / "datasets" / "customers.csv")
    cfg["train"]["epochs"] = 5
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((ROOT / "datasets" / "customers.csv").open()))[:120]
    rows[0]["region"] = "atlantis"  # never seen in training: handle_unknown ignore, all zeros
    table = tmp_path / "rows.csv"
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    model_path = tmp_path / "run" / "model.npz"
    out = tmp_path / "m.onnx"
    res = runner.invoke(app, ["export", str(model_path), "--format", "onnx", "-o", str(out)])
    assert res.exit_code == 0, res.output

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in session.get_inputs():
        cells = [r[i.name] for r in rows]
        if i.type == "tensor(string)":
            feeds[i.name] = np.array(cells, dtype=object).reshape(-1, 1)
        elif i.name == "signup":  # a date: days since 1970-01-01
            feeds[i.name] = np.array([np.datetime64(c, "D").astype(np.int64) for c in cells], np.float32)[:, None]
        else:
            feeds[i.name] = np.array([float(c) if c not in ("", "NA") else np.nan for c in cells], np.float32)[:, None]
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    res = runner.invoke(app, ["predict", str(model_path), str(table)])
    assert res.exit_code == 0, res.output
    predicted = list(csv.DictReader(io.StringIO(res.stdout)))
    model = load_model(model_path)
    assert list(got["label"]) == [r["prediction"] for r in predicted]
    expected = np.array([[float(r[f"p_{c}"]) for c in model.classes] for r in predicted])
    np.testing.assert_allclose(got["probabilities"], expected, rtol=0, atol=1e-5)
