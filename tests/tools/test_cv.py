"""mlpbp cv: folds that partition the table, stratified or grouped, metrics that are the folds'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import ROOT, one_line_error
from mlpbp.cli import app
from mlpbp.data import read_table
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import load_model
from mlpbp.tools.cv import cross_validate, fold_rows

IRIS = {
    "seed": 0,
    "data": {"dataset": "iris", "validation_fraction": 0.1},
    "model": {"hidden": [8], "activation": "tanh"},
    "train": {"epochs": 15, "batch_size": 16, "learning_rate": 0.05, "momentum": 0.9},
}


@pytest.fixture(scope="module")
def iris_cv(tmp_path_factory):
    out = tmp_path_factory.mktemp("cv")
    return cross_validate(config_from_dict(IRIS), folds=5, out_dir=out)


def test_iris_folds_partition_the_table_and_are_stratified(iris_cv):
    assert len(iris_cv.folds) == 5 and iris_cv.stratified and iris_cv.grouped_by is None
    tests = np.concatenate([f.test_rows for f in iris_cv.folds])
    assert np.array_equal(np.sort(tests), np.arange(150))
    species = np.asarray(read_table(ROOT / "datasets/iris.csv").table.column("species").to_pylist())
    for f in iris_cv.folds:
        # 50 of each species dealt round 5 folds: 10 of each in each
        assert sorted(np.unique(species[f.test_rows], return_counts=True)[1]) == [10, 10, 10]
        assert not set(f.test_rows) & set(f.train_rows) and not set(f.test_rows) & set(f.val_rows)
        assert not set(f.train_rows) & set(f.val_rows)
        assert len(f.train_rows) + len(f.val_rows) + len(f.test_rows) == 150


def test_reported_means_are_the_means_of_the_folds(iris_cv):
    assert {"loss", "accuracy", "balanced_accuracy", "macro_f1"} <= set(iris_cv.mean)
    for m in iris_cv.mean:
        values = [f.metrics[m] for f in iris_cv.folds]
        assert iris_cv.mean[m] == pytest.approx(sum(values) / 5, rel=1e-12)
        assert iris_cv.std[m] == pytest.approx(float(np.std(values, ddof=1)), rel=1e-12)
    assert iris_cv.mean["accuracy"] > 0.85


def test_each_fold_is_scored_on_its_own_test_rows(iris_cv):
    """The saved model of a fold, evaluated on that fold's rows read from the CSV, gives the
    fold's reported metrics; and its standardisation is that of the fold's training rows."""
    table = read_table(ROOT / "datasets/iris.csv").table
    for f in iris_cv.folds[:2]:
        model = load_model(f.out_dir / "model.npz")
        ev = model.evaluation(table.take(f.test_rows))
        assert ev.metrics["accuracy"] == pytest.approx(f.metrics["accuracy"], abs=1e-12)
        assert ev.metrics["loss"] == pytest.approx(f.metrics["loss"], rel=1e-5)
        col = np.asarray(table.column("sepal_length").to_pylist())
        X = model.preprocessor.transform(table.take(f.train_rows), np.float64)
        assert np.allclose(X.mean(axis=0), 0, atol=1e-9)  # fitted on exactly those rows
        assert not np.isclose(col[f.train_rows].mean(), col.mean(), rtol=1e-6)  # a real subset


def test_grouped_folds_keep_each_id_together(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.repeat([f"p{i}" for i in range(12)], rng.integers(2, 6, 12))
    x = rng.normal(size=len(ids))
    lines = ["pid,x,y", *(f"{p},{a:.6f},{2 * a + 0.1 * rng.normal():.6f}" for p, a in zip(ids, x))]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    cfg = config_from_dict(
        {
            "data": {"path": str(tmp_path / "t.csv"), "target": "y", "id": "pid", "validation_fraction": 0.2},
            "model": {"hidden": [4]},
            "train": {"epochs": 3},
        }
    )
    result = cross_validate(cfg, folds=4, out_dir=tmp_path / "cv")
    assert result.grouped_by == "pid" and not result.stratified and result.task == "regression"
    assert np.array_equal(np.sort(np.concatenate([f.test_rows for f in result.folds])), np.arange(len(ids)))
    for f in result.folds:
        for other in (f.train_rows, f.val_rows):
            assert not set(ids[f.test_rows]) & set(ids[other])
        assert not set(ids[f.train_rows]) & set(ids[f.val_rows])
    assert {"mse", "mae", "r2"} <= set(result.mean)


def test_fold_rows_regression_and_sizes():
    parts = fold_rows(np.zeros(23), None, None, 5, seed=3)
    assert sorted(map(len, parts)) == [4, 4, 5, 5, 5]  # 23 = 3 x 5 + 2 x 4
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(23))
    again = fold_rows(np.zeros(23), None, None, 5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))  # seeded


def test_bad_fold_counts_are_one_line(tmp_path):
    cfg = config_from_dict({**IRIS, "output": {"dir": str(tmp_path)}})
    assert "folds must be at least 2" in one_line_error(cross_validate, cfg, folds=1)
    assert "151 folds need at least 151 rows" in one_line_error(cross_validate, cfg, folds=151)


def test_cli_json_mean_is_the_mean_of_its_folds(tmp_path, runner):
    (tmp_path / "iris.yaml").write_text(json.dumps({**IRIS, "train": {**IRIS["train"], "epochs": 5}}))
    r = runner.invoke(app, ["cv", str(tmp_path / "iris.yaml"), "--folds", "3", "--json", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["k"] == 3 and d["rows"] == 150 and sum(f["test_rows"] for f in d["folds"]) == 150
    for m, mean in d["mean"].items():
        assert mean == pytest.approx(np.mean([f[m] for f in d["folds"]]), rel=1e-12)
    bad = runner.invoke(app, ["cv", str(tmp_path / "iris.yaml"), "--folds", "0"])
    assert bad.exit_code == 2 and "--folds" in bad.stderr and "Traceback" not in bad.stderr
