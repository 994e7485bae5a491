"""data.weight: a column of per-row weights read from the table, used by train, evaluate,
gradcheck and hessian through the engine's ``sample_weight``.

- Training on integer weights equals training on the table with each row repeated that many
  times (full-batch L-BFGS and full-batch SGD, float64, 1e-9), from a CSV and from a Parquet
  folder read lazily; the epoch table's losses too.
- Every metric is scikit-learn's with ``sample_weight`` (accuracy, balanced accuracy, F1 per
  class, MSE, MAE, R²), and equals the metric on repeated rows.
- The weight column is never a feature; evaluate weighs by it; hessian and gradcheck use the
  weighted loss (against repeated rows and finite differences).
- Bad cells (negative, missing, nan, text) are one line naming file, row and column, exit 2.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import PYTHON, one_line_error, subprocess_env
from mlpbp.run.config import config_from_dict
from mlpbp.run.metrics import compute_metrics
from mlpbp.run.model_file import load_model
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import train


def _table(rng, n=90, task="classification"):
    X = rng.standard_normal((n, 3))
    w = rng.integers(0, 4, n)
    w[:3] = (1, 2, 3)  # every weight present, some rows weigh 0
    if task == "classification":
        y = np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no")
    else:
        y = X @ np.array([1.0, -0.5, 0.25]) + 0.1 * rng.standard_normal(n)
    return X, y, w


def _write_csv(path, X, y, w=None):
    with path.open("w") as f:
        f.write("a,b,c," + ("w," if w is not None else "") + "label\n")
        for i in range(X.shape[0]):
            cells = [repr(float(v)) for v in X[i]] + ([str(int(w[i]))] if w is not None else []) + [str(y[i])]
            f.write(",".join(cells) + "\n")
    return path


def _config(path, optimizer: str, weighted: bool, task="classification", **data) -> dict:
    train_keys = {"epochs": 3, "dtype": "float64", "optimizer": optimizer, "weight_decay": 0.001}
    if optimizer == "sgd":
        train_keys |= {"batch_size": 100000, "learning_rate": 0.3}  # one full-batch step an epoch
    else:
        train_keys |= {"max_iter": 10}
    d = {
        "path": str(path),
        "target": "label",
        "task": task,
        "test_fraction": 0.0,
        "validation_fraction": 0.0,
        "standardize": False,
        "numeric": "none",
        **data,
    }
    if weighted:
        d["weight"] = "w"
    return {"seed": 3, "data": d, "model": {"hidden": [5], "activation": "tanh"}, "train": train_keys}


def _repeated(X, y, w):
    idx = np.repeat(np.arange(len(w)), w)
    return X[idx], y[idx]


def _params(result):
    return {k: p.copy() for k, p in result.model.net.params.items()}


def _assert_close(p1, p2, tol):
    assert p1.keys() == p2.keys()
    for k in p1:
        assert np.max(np.abs(p1[k] - p2[k])) <= tol * max(1.0, np.max(np.abs(p1[k]))), k


@pytest.mark.parametrize("optimizer", ["lbfgs", "sgd"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_weighted_csv_trains_as_the_table_with_rows_repeated(tmp_path, optimizer, task):
    rng = np.random.default_rng(11)
    X, y, w = _table(rng, task=task)
    weighted = _write_csv(tmp_path / "w.csv", X, y, w)
    repeated = _write_csv(tmp_path / "r.csv", *_repeated(X, y, w))
    a = train(config_from_dict(_config(weighted, optimizer, True, task)), tmp_path / "a")
    b = train(config_from_dict(_config(repeated, optimizer, False, task)), tmp_path / "b")
    assert a.model.net.widths[0] == 3  # the weight column is not a feature
    _assert_close(_params(a), _params(b), 1e-9)
    for ra, rb in zip(a.history, b.history):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-9)
    for k in ("loss", "accuracy", "mse", "r2"):
        if k in b.test:
            assert a.test[k] == pytest.approx(b.test[k], rel=1e-9), k


def test_lazy_parquet_folder_weights_as_repeated_rows(tmp_path):
    rng = np.random.default_rng(5)
    X, y, w = _table(rng, n=80, task="regression")
    (tmp_path / "wf").mkdir()
    (tmp_path / "rf").mkdir()
    cols = {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]}
    # The weight column in the middle, the target last: the default target is the last column that is not the weight.
    pq.write_table(pa.table({**cols, "w": w, "label": y}), tmp_path / "wf" / "part-0.parquet", row_group_size=25)
    Xr, yr = _repeated(X, y, w)
    cols_r = {"a": Xr[:, 0], "b": Xr[:, 1], "c": Xr[:, 2]}
    pq.write_table(pa.table({**cols_r, "label": yr}), tmp_path / "rf" / "part-0.parquet")
    base = _config(tmp_path / "wf", "lbfgs", True, "regression")
    del base["data"]["numeric"], base["data"]["target"]  # a folder: numeric columns, standardize only
    a = train(config_from_dict(base), tmp_path / "a")
    other = _config(tmp_path / "rf", "lbfgs", False, "regression")
    del other["data"]["numeric"]
    b = train(config_from_dict(other), tmp_path / "b")
    assert a.model.net.widths[0] == 3
    _assert_close(_params(a), _params(b), 1e-9)
    # evaluate on the folder weighs by its column, as on the repeated rows
    ev_a = _evaluate(tmp_path / "a" / "model.npz", tmp_path / "wf")
    ev_b = _evaluate(tmp_path / "b" / "model.npz", tmp_path / "rf")
    assert ev_a["weight"] == "w" and "weight" not in ev_b
    for k in ("loss", "mse", "mae", "r2"):
        assert ev_a[k] == pytest.approx(ev_b[k], rel=1e-8), k


def _evaluate(model, data) -> dict:
    r = subprocess.run(
        [PYTHON, "-m", "mlpbp", "evaluate", str(model), str(data), "--json"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_weighted_metrics_are_scikit_learns_with_sample_weight(monkeypatch):
    metrics = pytest.importorskip("sklearn.metrics")
    from mlpbp import MLP

    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 4))
    w = rng.uniform(0, 3, 300)
    net = MLP([4, 6, 3], "tanh", "cross_entropy", seed=1, dtype="float64", task="classification")
    y = rng.integers(0, 3, 300)
    got = compute_metrics(net, X, y, sample_weight=w, classes=["a", "b", "c"])
    pred = net.predict(X)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred, sample_weight=w), rel=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(
        metrics.balanced_accuracy_score(y, pred, sample_weight=w), rel=1e-12
    )
    assert got["macro_f1"] == pytest.approx(
        metrics.f1_score(y, pred, average="macro", sample_weight=w, labels=np.unique(np.r_[y, pred])), rel=1e-12
    )
    p, r, f, s = metrics.precision_recall_fscore_support(y, pred, sample_weight=w, labels=[0, 1, 2], zero_division=0)
    for i, rec in enumerate(got["per_class"]):
        assert (rec["precision"], rec["recall"], rec["f1"], rec["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert got["loss"] == pytest.approx(net.loss(X, y, w), rel=1e-12)

    reg = MLP([4, 5, 2], "tanh", "square", seed=2, dtype="float64", task="regression")
    t = rng.standard_normal((300, 2))
    got = compute_metrics(reg, X, t, sample_weight=w)
    o = reg.forward(X)
    assert got["mse"] == pytest.approx(metrics.mean_squared_error(t, o, sample_weight=w), rel=1e-12)
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(t, o, sample_weight=w), rel=1e-12)
    assert got["r2"] == pytest.approx(metrics.r2_score(t, o, sample_weight=w), rel=1e-10)
    # chunked sums merge to the same numbers: every chunk of 7 rows
    import mlpbp.run.metrics as m

    monkeypatch.setattr(m.chunks, "__defaults__", (0, None, 7, False, False))
    chunked = compute_metrics(reg, X, t, sample_weight=w)
    for k in ("loss", "mse", "mae", "r2"):
        assert chunked[k] == pytest.approx(got[k], rel=1e-12), k


def test_evaluate_and_hessian_weigh_by_the_column_and_predict_ignores_it(tmp_path):
    rng = np.random.default_rng(7)
    X, y, w = _table(rng, n=60)
    weighted = _write_csv(tmp_path / "w.csv", X, y, w)
    repeated = _write_csv(tmp_path / "r.csv", *_repeated(X, y, w))
    train(config_from_dict(_config(weighted, "lbfgs", True)), tmp_path / "a")
    model = tmp_path / "a" / "model.npz"
    ev_w, ev_r = _evaluate(model, weighted), _evaluate(model, repeated)
    assert ev_w["weight"] == "w" and ev_r["weight"] is None and ev_w["rows"] == 60
    for k in ("loss", "accuracy", "balanced_accuracy", "macro_f1"):
        assert ev_w[k] == pytest.approx(ev_r[k], rel=1e-10), k
    assert [c["support"] for c in ev_w["per_class"]] == [c["support"] for c in ev_r["per_class"]]

    def hessian(data):
        r = subprocess.run(
            [PYTHON, "-m", "mlpbp", "hessian", str(model), str(data), "--top-k", "2", "--trace", "--json"],
            capture_output=True,
            text=True,
            env=subprocess_env(),
        )
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    h_w, h_r = hessian(weighted), hessian(repeated)
    assert h_w["weight"] == "w" and "weight" not in h_r
    assert h_w["top_eigenvalues"] == pytest.approx(h_r["top_eigenvalues"], rel=1e-6)

    p = subprocess.run(
        [PYTHON, "-m", "mlpbp", "predict", str(model), str(weighted), "--strict"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 61


def test_gradcheck_checks_the_weighted_loss(tmp_path):
    from mlpbp.tools.gradcheck import check_config, network_for_config

    rng = np.random.default_rng(9)
    X, y, w = _table(rng, n=40)
    cfg = config_from_dict(_config(_write_csv(tmp_path / "w.csv", X, y, w), "lbfgs", True))
    net, Xb, yb, wb = network_for_config(cfg, batch=12, weights=True)
    assert wb is not None and wb.shape == (12,)
    report = check_config(cfg, batch=12)
    assert report.ok and report.settings["weighted"] is True
    # the weighted gradient is not the unweighted one on this batch
    g_w = net.flat_grad(Xb, yb, wb)[1]
    g_1 = net.flat_grad(Xb, yb)[1]
    assert np.max(np.abs(g_w - g_1)) > 1e-6


def test_prepare_splits_carry_their_weights(tmp_path):
    rng = np.random.default_rng(1)
    X, y, w = _table(rng, n=100)
    w = w + 1  # no zero-weight split
    cfg = _config(_write_csv(tmp_path / "w.csv", X, y, w), "lbfgs", True)
    cfg["data"] |= {"test_fraction": 0.2, "validation_fraction": 0.1}
    data = prepare(config_from_dict(cfg))
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        np.testing.assert_array_equal(data.weights(split), w[data.split_rows[name]])
    assert data.summary["weight"] == "w"
    assert [c["role"] for c in data.summary["columns"]] == ["feature", "feature", "feature", "weight", "target"]


@pytest.mark.parametrize(
    "cell, row, why",
    [("-1", 4, "weight -1.0 is negative"), ("", 4, "the weight is missing"), ("nan", 4, "the weight is missing")],
)
def test_a_bad_weight_cell_is_one_line_naming_file_row_and_column(tmp_path, cell, row, why):
    rng = np.random.default_rng(0)
    X, y, w = _table(rng, n=20)
    path = _write_csv(tmp_path / "w.csv", X, y, w)
    lines = path.read_text().splitlines()
    parts = lines[row - 1].split(",")
    parts[3] = cell
    lines[row - 1] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    msg = one_line_error(prepare, config_from_dict(_config(path, "lbfgs", True)))
    assert msg.startswith("w.csv: ") and f"row {row}, column 'w'" in msg and why in msg, msg


def test_a_text_weight_cell_and_other_bad_weights_exit_2_in_one_line(tmp_path):
    rng = np.random.default_rng(0)
    X, y, w = _table(rng, n=20)
    path = _write_csv(tmp_path / "w.csv", X, y, w)
    lines = path.read_text().splitlines()
    parts = lines[6].split(",")
    parts[3] = "heavy"
    lines[6] = ",".join(parts)
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "c.yaml").write_text(json.dumps(_config(path, "lbfgs", True)))
    r = subprocess.run(
        [PYTHON, "-m", "mlpbp", "train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "w.csv" in r.stderr and "row 7, column 'w'" in r.stderr and "'heavy' is not a number" in r.stderr

    zero = _write_csv(tmp_path / "z.csv", X, y, np.zeros(20, int))
    msg = one_line_error(prepare, config_from_dict(_config(zero, "lbfgs", True)))
    assert "has weight 0 in column 'w'" in msg
    bad = _config(path, "lbfgs", True)
    bad["data"]["weight"] = "label"
    with pytest.raises(Exception, match="both the weight and a target"):
        config_from_dict(bad)
    missing = _config(path, "lbfgs", True)
    missing["data"]["weight"] = "nope"
    assert "has no column 'nope'" in one_line_error(prepare, config_from_dict(missing))
    # in a Parquet folder: the row (from 0 across the folder) and the column
    (tmp_path / "pf").mkdir()
    wf = w.astype(float)
    wf[13] = -2.0
    pq.write_table(
        pa.table({"a": X[:, 0], "b": X[:, 1], "w": wf, "label": y}), tmp_path / "pf" / "p.parquet", row_group_size=5
    )
    cfg = _config(tmp_path / "pf", "lbfgs", True)
    del cfg["data"]["numeric"]
    msg = one_line_error(prepare, config_from_dict(cfg))
    assert "pf: row 13, column 'w': weight -2.0 is negative" in msg, msg


def test_old_models_and_configs_without_a_weight_are_unchanged(tmp_path):
    rng = np.random.default_rng(4)
    X, y, _ = _table(rng, n=40)
    path = _write_csv(tmp_path / "u.csv", X, y)
    r = train(config_from_dict(_config(path, "lbfgs", False)), tmp_path / "u")
    model = load_model(tmp_path / "u" / "model.npz")
    assert model.weight_name is None
    assert "weight" not in _evaluate(tmp_path / "u" / "model.npz", path)
    assert r.test["per_class"][0]["support"] == int(r.test["per_class"][0]["support"])


def test_an_npy_folder_takes_its_weights_from_name_npy(tmp_path):
    from mlpbp.data.lazy import read_lazy

    rng = np.random.default_rng(6)
    X, y, w = _table(rng, n=50, task="regression")
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    np.save(folder / "w.npy", w.astype(float))
    ds = read_lazy(folder, weight="w")
    np.testing.assert_array_equal(ds.weight, w)
    assert ds.X.shape == (50, 3)
    cfg = _config(folder, "lbfgs", True, "regression")
    del cfg["data"]["numeric"], cfg["data"]["target"]
    data = prepare(config_from_dict(cfg))
    np.testing.assert_array_equal(data.weights("train"), w[data.train[0].index])
    bad = w.astype(float)
    bad[4] = np.nan
    np.save(folder / "w.npy", bad)
    assert "w.npy: row 4, column 'w': weight nan is missing" in one_line_error(read_lazy, folder, weight="w")
    np.save(folder / "w.npy", w[:10])
    assert "10 weights for the 50 rows of X.npy" in one_line_error(read_lazy, folder, weight="w")
    (folder / "w.npy").unlink()
    assert "no w.npy beside X.npy" in one_line_error(read_lazy, folder, weight="w")
