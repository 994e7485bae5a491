"""Tables larger than memory: `data.path` naming a folder with an .npy pair or Parquet files.

- The same rows as an in-memory .npz train to the same parameters (1e-12 relative, float64:
  only the streamed standardisation's rounding differs), and Parquet to the very same bits as
  the .npy pair.
- Views read only the rows asked for; resident pages are released as rows are read.
- Bad folders: row counts that differ, schemas that differ, a non-finite value: one line.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from helpers import one_line_error
from mlpbp.data import lazy
from mlpbp.data.preprocessing import Moments, Standardizer
from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import train

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def make_table(n: int = 900, d: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * rng.uniform(0.5, 5, d) + rng.uniform(-3, 3, d)).astype(np.float32)
    y = np.argmax(X @ rng.normal(size=(d, 3)) + rng.normal(size=(n, 3)), axis=1)
    return X, y


def write_npy_pair(folder, X, y):
    folder.mkdir()
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return folder


def write_parquet(folder, X, y, parts: int = 3, row_group: int = 100):
    folder.mkdir()
    for k in range(parts):
        sl = slice(k * len(X) // parts, (k + 1) * len(X) // parts)
        table = pa.table({**{f"x{j}": X[sl, j] for j in range(X.shape[1])}, "y": y[sl]})
        pq.write_table(table, folder / f"part{k}.parquet", row_group_size=row_group)
    return folder


def run(tmp_path, path, name: str, dtype: str = "float64"):
    cfg = config_from_dict(
        {
            "seed": 2,
            "data": {"path": str(path)},
            "model": {"hidden": [10]},
            "train": {"epochs": 3, "batch_size": 32, "momentum": 0.5, "dtype": dtype},
        }
    )
    return train(cfg, tmp_path / name)


def test_npy_pair_and_parquet_train_as_the_in_memory_table_does(tmp_path):
    X, y = make_table()
    np.savez(tmp_path / "mem.npz", X=X, y=y)
    mem = run(tmp_path, tmp_path / "mem.npz", "mem")
    npy = run(tmp_path, write_npy_pair(tmp_path / "npy", X, y), "npy")
    par = run(tmp_path, write_parquet(tmp_path / "pq", X, y), "pq")
    for k, p in mem.model.net.params.items():
        np.testing.assert_allclose(npy.model.net.params[k], p, rtol=0, atol=1e-12 * np.abs(p).max())
        assert par.model.net.params[k].tobytes() == npy.model.net.params[k].tobytes()
    for a, b in zip(mem.history, npy.history):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-12)
        assert b["val_accuracy"] == a["val_accuracy"]
    scalars = {k: v for k, v in mem.test.items() if k != "per_class"}
    assert {k: v for k, v in npy.test.items() if k != "per_class"} == pytest.approx(scalars, rel=1e-12)
    for a, b in zip(mem.test["per_class"], npy.test["per_class"]):
        assert b == {**a, **{k: pytest.approx(a[k], rel=1e-12) for k in ("precision", "recall", "f1")}}
    # the model keeps the streamed standardisation, equal to the in-memory one
    np.testing.assert_allclose(npy.model.x_scaler.mean, mem.model.x_scaler.mean, rtol=1e-13)
    np.testing.assert_allclose(npy.model.x_scaler.scale, mem.model.x_scaler.scale, rtol=1e-13)


def test_moments_merge_as_if_the_rows_were_together():
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, size=(1000, 4))
    m = Moments()
    for lo, hi in ((0, 1), (1, 333), (333, 334), (334, 1000)):
        m = m.merge(Moments.of(X[lo:hi]))
    s = Standardizer.from_moments(m)
    np.testing.assert_allclose(s.mean, X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(s.scale, X.std(axis=0), rtol=1e-13)


def test_views_read_only_their_rows(tmp_path):
    X, y = make_table(n=500)
    ds = lazy.read_lazy(write_npy_pair(tmp_path / "npy", X, y))
    view = ds.X[np.array([7, 3, 400])][1:]  # rows 3 and 400
    assert view.shape == (2, X.shape[1])
    out = np.empty((2, X.shape[1]), np.float32)
    assert view.take([1, 0], axis=0, out=out) is out
    np.testing.assert_array_equal(out, X[[400, 3]])
    np.testing.assert_array_equal(np.asarray(view), X[[3, 400]].astype(np.float64))


def test_rows_in_any_order_repeats_and_runs_read_as_the_array_gives_them(tmp_path):
    # Rows close together are read as one span (gap rows dropped), far apart one read each.
    X, _ = make_table(n=3000, d=300)  # 1,200-byte rows: 13 apart still share one read
    source = lazy.NpySource(write_npy_pair(tmp_path / "npy", X, np.zeros(3000)) / "X.npy")
    rng = np.random.default_rng(1)
    for rows in (
        rng.permutation(3000)[:256],  # spread: one read per row
        rng.integers(0, 3000, 500),  # with repeats
        np.r_[2999, 0, 5, 5, 6, 7, 20, 21, 1000, 999, 2998],  # runs, gaps, both ends
        np.r_[399, 0, 5, 5, 6, 7, 20, 21, 200, 199, 398, 100:134],  # the same, enough rows to merge
        np.arange(3000)[::-1],  # everything, backwards: one span
        np.array([42]),
        np.array([], dtype=np.int64),
    ):
        np.testing.assert_array_equal(source.read(rows), X[rows].astype(np.float64))


def test_rows_spread_thinly_are_read_one_call_each_in_the_batch_order(tmp_path, monkeypatch):
    X, _ = make_table(n=3000, d=300)  # 1,200-byte rows
    source = lazy.NpySource(write_npy_pair(tmp_path / "npy", X, np.zeros(3000)) / "X.npy")
    calls = []
    pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, o: calls.append(o) or pread(fd, n, o))
    rows = np.array([2999, 5, 1700, 5, 900, 40])  # spread over 3.6 MB, a repeat, not sorted
    np.testing.assert_array_equal(source.read(rows), X[rows].astype(np.float64))
    assert calls == [source.offset + r * source.row_bytes for r in rows]
    with open(source.path, "r+b") as f:  # a short read: the careful path names the problem
        f.truncate(source.offset + 100 * source.row_bytes)
    assert "the file ended early (truncated?)" in one_line_error(source.read, rows)


def test_a_file_cut_short_after_opening_is_one_line(tmp_path):
    X, y = make_table(n=500)
    folder = write_npy_pair(tmp_path / "npy", X, y)
    source = lazy.NpySource(folder / "X.npy")
    with open(folder / "X.npy", "r+b") as f:
        f.truncate(source.offset + 100 * source.row_bytes)
    msg = one_line_error(source.read, np.array([3, 450]))
    assert "the file ended early (truncated?)" in msg


def test_parquet_spilled_into_a_shared_folder_is_opened_there_not_spilled_again(tmp_path):
    # What the first MPI rank on a machine writes, the others open (mlpbp.run.prepare).
    X, y = make_table(n=300)
    folder = write_parquet(tmp_path / "pq", X, y)
    shared = tmp_path / "spill"
    shared.mkdir()
    first = lazy.read_lazy(folder, spill_dir=shared)
    assert sorted(p.name for p in shared.iterdir()) == ["X.npy", "y.npy"]
    np.testing.assert_array_equal(np.asarray(first.X), X.astype(np.float64))
    np.save(shared / "X.npy", X + 1)  # what a later reader sees is the shared file's content
    later = lazy.read_lazy(folder, spill_dir=shared)
    np.testing.assert_array_equal(np.asarray(later.X), (X + 1).astype(np.float64))
    np.testing.assert_array_equal(later.y, first.y)


def test_a_row_count_mismatch_is_one_line(tmp_path):
    X, y = make_table()
    folder = write_npy_pair(tmp_path / "npy", X, y[:-1])
    msg = one_line_error(lazy.read_lazy, folder)
    assert "X.npy has 900 rows but y.npy has 899 rows" in msg


def test_a_parquet_schema_mismatch_is_one_line(tmp_path):
    X, y = make_table()
    folder = write_parquet(tmp_path / "pq", X, y)
    pq.write_table(pa.table({"x0": X[:5, 0].astype(np.float64), "y": y[:5]}), folder / "zz.parquet")
    msg = one_line_error(lazy.read_lazy, folder)
    assert "zz.parquet has another schema than part0.parquet" in msg and "columns" in msg


def test_a_non_finite_value_is_one_line_naming_its_row(tmp_path):
    X, y = make_table()
    X[617, 2] = np.nan
    folder = write_npy_pair(tmp_path / "npy", X, y)
    cfg = config_from_dict({"data": {"path": str(folder)}})
    msg = one_line_error(prepare, cfg)
    assert "row 617, column 2 is nan" in msg


def test_a_folder_with_neither_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hi")
    msg = one_line_error(lazy.read_lazy, tmp_path / "d")
    assert "must hold X.npy and y.npy, or .parquet files" in msg and "notes.txt" in msg


def test_predict_and_evaluate_read_folders_as_they_read_the_same_csv(tmp_path, runner):
    from mlpbp.cli import app

    X, y = make_table(n=300)
    folder = write_npy_pair(tmp_path / "npy", X, y)
    model = run(tmp_path, folder, "run", dtype="float32").model_path
    header = ",".join([f"x{j}" for j in range(X.shape[1])] + ["y"])
    rows = [",".join([*map(repr, map(float, r)), str(t)]) for r, t in zip(X, y)]
    (tmp_path / "same.csv").write_text("\n".join([header, *rows]) + "\n")
    par = write_parquet(tmp_path / "pq", X, y)
    got = {}
    for name, data in (("csv", tmp_path / "same.csv"), ("npy", folder), ("pq", par)):
        pred = runner.invoke(app, ["predict", str(model), str(data)])
        ev = runner.invoke(app, ["evaluate", str(model), str(data), "--json"])
        assert pred.exit_code == 0 and ev.exit_code == 0, pred.stderr + ev.stderr
        got[name] = (pred.stdout, ev.stdout)
    assert got["npy"] == got["csv"] == got["pq"]
    assert len(got["npy"][0].splitlines()) == 301

    (folder / "y.npy").unlink()  # predict needs no targets
    assert runner.invoke(app, ["predict", str(model), str(folder)]).stdout == got["csv"][0]
    res = runner.invoke(app, ["evaluate", str(model), str(folder)])
    assert res.exit_code == 2 and "no y.npy beside it" in res.stderr

    pq.write_table(pa.table({"x0": [1.0], "y": [0]}), tmp_path / "bad.parquet")
    (tmp_path / "narrow").mkdir()
    (tmp_path / "bad.parquet").rename(tmp_path / "narrow" / "a.parquet")
    res = runner.invoke(app, ["predict", str(model), str(tmp_path / "narrow")])
    assert res.exit_code == 2 and "missing feature columns x1, x2" in res.stderr, res.stderr


def test_a_folder_row_with_nan_is_refused_or_left_empty_as_the_model_says(tmp_path, runner):
    from mlpbp.cli import app

    X, y = make_table(n=300)
    header = ",".join([f"x{j}" for j in range(X.shape[1])] + ["y"])
    rows = [",".join([*map(repr, map(float, r)), str(t)]) for r, t in zip(X, y)]
    rows[5] = "," + rows[5].split(",", 1)[1]  # one missing cell, so drop_rows has a row to drop
    (tmp_path / "t.csv").write_text("\n".join([header, *rows]) + "\n")
    models = {}
    for missing in ("error", "drop_rows"):
        cfg = {"data": {"path": str(tmp_path / "t.csv"), "missing": missing}, "model": {"hidden": [6]}}
        if missing == "error":
            cfg["data"]["path"] = str(write_npy_pair(tmp_path / "clean", X, y))
        models[missing] = str(train(config_from_dict(cfg), tmp_path / missing).model_path)
    X[[3, 200], [1, 4]] = [np.nan, np.inf]
    folder = str(write_npy_pair(tmp_path / "npy", X, y))

    for command in ("predict", "evaluate"):
        res = runner.invoke(app, [command, models["error"], folder])
        assert res.exit_code == 2 and "row 3, column 'x1' is nan; all values must be finite" in res.stderr

    pred = runner.invoke(app, ["predict", models["drop_rows"], folder])
    assert pred.exit_code == 0 and "2 row(s) with a value that is not finite get an empty prediction" in pred.stderr
    lines = pred.stdout.splitlines()
    assert len(lines) == 301 and lines[4] == lines[201] == "," * (len(lines[0].split(",")) - 1)
    keep = np.setdiff1d(np.arange(300), [3, 200])
    clean = str(write_npy_pair(tmp_path / "kept", X[keep], y[keep]))
    expected = runner.invoke(app, ["predict", models["drop_rows"], clean]).stdout.splitlines()
    assert [line for i, line in enumerate(lines[1:]) if i not in (3, 200)] == expected[1:]
    ev = runner.invoke(app, ["evaluate", models["drop_rows"], folder, "--json"])
    assert ev.exit_code == 0 and "2 row(s) with a value that is not finite are not scored" in ev.stderr
    got, want = (
        json.loads(ev.stdout),
        json.loads(runner.invoke(app, ["evaluate", models["drop_rows"], clean, "--json"]).stdout),
    )
    assert got == want and got["rows"] == 298
