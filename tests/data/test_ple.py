"""The piecewise-linear encoding of numeric columns (data.numeric: ple, data.ple_bins): its exact
inverse and quantile bins, the columns it makes, gradcheck on its network, the model file and
the ONNX graph in onnxruntime."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mlpbp.data.transforms import PiecewiseLinear
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import format_version, load_model
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer
from mlpbp.tools.gradcheck import check_config


def test_encoding_values_and_its_exact_inverse():
    ple = PiecewiseLinear([0.0, 1.0, 3.0, 4.0])
    x = np.array([-2.0, 0.0, 0.5, 1.0, 2.0, 3.5, 4.0, 10.0])
    e = ple.encode(x)
    want = [
        [-2.0, 0.0, 0.0],  # below the first edge: the first column keeps its slope
        [0.0, 0.0, 0.0],
        [0.5, 0.0, 0.0],
        [1.0, 0.0, 0.0],
        [1.0, 0.5, 0.0],
        [1.0, 1.0, 0.5],
        [1.0, 1.0, 1.0],
        [1.0, 1.0, 7.0],  # above the last edge: the last column keeps its slope
    ]
    np.testing.assert_array_equal(e, want)
    # x = b0 + sum_t e_t (b_t - b_{t-1}), everywhere
    np.testing.assert_allclose(ple.edges[0] + e @ np.diff(ple.edges), x, rtol=0, atol=1e-12)


def test_bins_are_the_training_quantiles():
    x = np.random.default_rng(0).uniform(0, 1, 16001)
    ple = PiecewiseLinear.fit(x, 16)
    np.testing.assert_array_equal(ple.edges, np.quantile(x, np.linspace(0, 1, 17)))
    # each bin holds 1/16 of the rows: a column's mean over the rows is 1 - (t - 1/2)/16
    np.testing.assert_allclose(ple.encode(x).mean(axis=0), 1 - (np.arange(16) + 0.5) / 16, atol=2e-3)
    # repeated values: fewer bins (quantiles 0, 0, 0.5, 1, 1); a constant column: one
    assert PiecewiseLinear.fit(np.repeat([0.0, 1.0], 10), 4).edges.tolist() == [0.0, 0.5, 1.0]
    assert PiecewiseLinear.fit(np.full(10, 3.0)).edges.tolist() == [3.0, 4.0]


def _table(path, n: int = 800, seed: int = 0):
    rng = np.random.default_rng(seed)
    lat, size = rng.uniform(40, 50, n), rng.lognormal(3, 0.5, n)
    price = np.sin(2 * lat) * 3 + np.log(size) + rng.normal(0, 0.1, n)
    lines = ["lat,size,price"] + [
        f"{'' if i % 40 == 0 else f'{a:.4f}'},{s:.3f},{p:.4f}" for i, (a, s, p) in enumerate(zip(lat, size, price))
    ]
    path.write_text("\n".join(lines) + "\n")


def _config(tmp_path, **train):
    return config_from_dict(
        {
            "seed": 0,
            "data": {"path": "t.csv", "target": "price", "numeric": {"lat": "ple"}, "ple_bins": 8},
            "model": {"dropout": 0.0},  # a plain MLP (format 3), whatever the recipe chooses
            "train": {"threads": 1, **train},
        },
        base_dir=tmp_path,
        name="ple",
    )


def test_a_ple_column_trains_saves_predicts_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mlpbp.tools.export import to_onnx

    _table(tmp_path / "t.csv")
    cfg = _config(tmp_path, epochs=20)
    p = prepare(cfg, dtype="float64")
    pre = p.preprocessor
    assert pre.feature_names == [f"lat.ple{t}" for t in range(1, 9)] + ["size"]
    lat = pre.columns[0]
    assert lat.ple.width == 8 and lat.fill is not None  # missing cells: the median, then encoded
    X = p.train[0][:, :8]
    assert X.min() >= 0 and X.max() <= 1 and np.all(np.diff(X, axis=1) <= 0)  # (1, ..., 1, fraction, 0, ...)
    assert check_config(cfg).ok
    model = Trainer(cfg, prepare(cfg), tmp_path / "run").run().model
    assert format_version(model) == 3  # an MLP with a piecewise-linear column
    loaded = load_model(tmp_path / "run" / "model.npz")
    assert loaded.preprocessor.to_meta() == model.preprocessor.to_meta()
    new = pa.table({"lat": [39.0, 41.5, None, 49.99, 55.0], "size": [20.0, 10.0, 30.0, 5.0, 40.0]})
    want = model.predict_outputs(new)
    np.testing.assert_array_equal(loaded.predict_outputs(new), want)
    session = ort.InferenceSession(to_onnx(loaded).SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "lat": np.array([np.nan if v is None else v for v in new.column("lat").to_pylist()], np.float32)[:, None],
        "size": np.array(new.column("size").to_pylist(), np.float32)[:, None],
    }
    (got,) = session.run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_ple_fits_a_wavy_latitude_that_standardising_cannot(tmp_path):
    """price = 3 sin(2 lat) + log(size) + noise (sd 0.1), lat in [40, 50]: three periods, which
    one hidden layer on a standardised lat misses (RMSE 1.94); 16 quantile bins follow them (0.35)."""
    _table(tmp_path / "t.csv", n=2000)
    rmse = {}
    for how in ("auto", "ple"):
        cfg = config_from_dict(
            {"seed": 0, "data": {"path": "t.csv", "target": "price", "numeric": {"lat": how}}, "train": {"threads": 1}},
            base_dir=tmp_path,
            name="ple",
        )
        rmse[how] = Trainer(cfg, prepare(cfg), tmp_path / how).run().test["rmse"]
    assert rmse["ple"] < 0.5 and rmse["auto"] > 1.5, rmse


def test_ple_embedding_is_a_learned_linear_and_relu_per_column(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mlpbp.tools.export import to_onnx

    _table(tmp_path / "t.csv", n=2000)
    cfg = config_from_dict(
        {
            "seed": 0,
            "data": {"path": "t.csv", "target": "price", "numeric": {"lat": "ple"}, "ple_embedding": 4},
            "train": {"threads": 1},
        },
        base_dir=tmp_path,
        name="ple",
    )
    p = prepare(cfg, dtype="float64")
    pre = p.preprocessor
    assert pre.ple_embeddings == [(list(range(16)), 4)] and pre.plain_columns == [16] and pre.encoded_width == 5
    report = check_config(cfg)  # gradients, module input gradients and HVPs against finite differences
    assert report.ok, [c.to_dict() for c in report.failures]
    result = Trainer(cfg, prepare(cfg), tmp_path / "run").run()
    net = result.model.net
    kinds = [m.kind for m in net.layers]
    assert kinds[:5] == ["select", "select", "linear", "relu", "concat"] and net.params["W1"].shape == (4, 16)
    assert result.test["rmse"] < 0.5, result.test
    loaded = load_model(tmp_path / "run" / "model.npz")
    assert format_version(loaded) == 4 and loaded.preprocessor.to_meta() == result.model.preprocessor.to_meta()
    new = pa.table({"lat": [39.0, 41.5, None, 49.99, 55.0], "size": [20.0, 10.0, 30.0, 5.0, 40.0]})
    want = result.model.predict_outputs(new)
    np.testing.assert_array_equal(loaded.predict_outputs(new), want)
    session = ort.InferenceSession(to_onnx(loaded).SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {
        "lat": np.array([np.nan if v is None else v for v in new.column("lat").to_pylist()], np.float32)[:, None],
        "size": np.array(new.column("size").to_pylist(), np.float32)[:, None],
    }
    (got,) = session.run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
