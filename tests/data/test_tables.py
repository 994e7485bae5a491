"""Real tables: mixed column kinds, missing cells, categories, ids, several targets, class
weights; CSV/TSV/Parquet/NPZ/NPY; the preprocessing stored in model.npz. Every table is built
here, seeded, in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import one_line_error
from mlpbp.cli import app
from mlpbp.data import read_table
from mlpbp.errors import DataError
from mlpbp.run.config import config_from_dict
from mlpbp.run.model_file import load_model
from mlpbp.run.prepare import prepare


def mixed_rows(n: int = 120, seed: int = 0, missing: bool = True) -> list[dict]:
    """Text categories, a boolean, a date, numbers, an id; some cells empty or NA."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        colour = ["red", "green", "blue"][rng.integers(3)]
        size = float(np.round(rng.normal(10, 3), 2))
        flag = bool(rng.random() < 0.5)
        day = f"2020-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        label = "big" if size + 3 * (colour == "red") + 2 * flag > 12 else "small"
        row = {"id": f"r{i}", "colour": colour, "size": size, "flag": "true" if flag else "false", "day": day}
        row["label"] = label
        if missing and i % 10 == 3:
            row["size"] = "NA"
        if missing and i % 15 == 4:
            row["colour"] = ""
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def write_config(tmp_path: Path, data: dict, train: dict | None = None, name: str = "c.yaml") -> Path:
    cfg = {
        "seed": 0,
        "data": data,
        "model": {"hidden": [8]},
        "train": {"epochs": 30, "learning_rate": 0.05, "momentum": 0.9, **(train or {})},
        "output": {"dir": str(tmp_path / "run")},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def prepared(tmp_path: Path, **data):
    return prepare(config_from_dict({"data": data}, base_dir=tmp_path), dtype="float64")


def invoke_ok(runner, *argv):
    res = runner.invoke(app, [str(a) for a in argv])
    assert res.exit_code == 0, res.stderr
    return res


def invoke_bad(runner, *argv) -> str:
    """A bad input: exit 2, one line on stderr."""
    res = runner.invoke(app, [str(a) for a in argv])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2, (res.exit_code, res.stderr, res.exception)
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]


# ---- the whole path: train, evaluate, predict from raw files ---------------------------------


def test_mixed_table_trains_evaluates_and_predicts_from_raw_rows(tmp_path, runner):
    write_csv(tmp_path / "train.csv", mixed_rows(160, seed=0))
    test_rows = mixed_rows(40, seed=1)
    write_csv(tmp_path / "new.csv", [{k: v for k, v in r.items() if k != "label"} for r in test_rows])
    write_csv(tmp_path / "labelled.csv", test_rows)
    cfg = write_config(tmp_path, {"path": "train.csv", "target": "label", "id": "id", "missing": "impute"})
    res = invoke_ok(runner, "train", "--overwrite", cfg, "--json")
    d = json.loads(res.stdout)
    assert d["task"] == "classification" and d["test"]["accuracy"] > 0.75
    # The task line is on stderr under --json too.
    assert "classification: target 'label' holds labels (2 classes)" in res.stderr
    model = tmp_path / "run" / "model.npz"
    pred = invoke_ok(runner, "predict", model, tmp_path / "new.csv").stdout.splitlines()
    assert pred[0] == "id,prediction,p_big,p_small"
    assert [line.split(",")[0] for line in pred[1:]] == [r["id"] for r in test_rows]
    ev = json.loads(invoke_ok(runner, "evaluate", model, tmp_path / "labelled.csv", "--json").stdout)
    assert ev["rows"] == 40 and ev["accuracy"] > 0.75
    # The same predictions as the labels evaluate scored.
    labels = [line.split(",")[1] for line in pred[1:]]
    assert ev["accuracy"] == pytest.approx(np.mean([a == r["label"] for a, r in zip(labels, test_rows)]))


def test_preprocessing_round_trips_through_model_npz(tmp_path, runner):
    write_csv(tmp_path / "train.csv", mixed_rows(100))
    cfg = write_config(
        tmp_path, {"path": "train.csv", "target": "label", "id": "id", "missing": "impute"}, {"epochs": 3}
    )
    from mlpbp.run.config import load_config
    from mlpbp.run.trainer import train

    result = train(load_config(cfg))
    raw = read_table(tmp_path / "train.csv")
    before = result.model.predict_outputs(raw.table)
    again = load_model(result.model_path)
    np.testing.assert_array_equal(again.predict_outputs(raw.table), before)
    pre, pre2 = result.model.preprocessor, again.preprocessor
    assert pre.to_meta() == pre2.to_meta()
    np.testing.assert_array_equal(pre.mean, pre2.mean)
    # What was stored: kinds, sorted categories (with the imputed 'missing'), the fill median.
    kinds = {c.name: c for c in pre2.columns}
    assert kinds["colour"].kind == "categorical" and kinds["colour"].categories == ["blue", "green", "missing", "red"]
    assert kinds["flag"].categories == ["false", "true"] and kinds["day"].kind == "date"
    assert kinds["size"].fill is not None
    with np.load(result.model_path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
    assert meta["format_version"] == 2 and meta["preprocessing"]["missing"] == "impute"


def test_impute_fills_with_the_training_median_and_a_missing_category(tmp_path):
    rows = [{"a": "1", "c": "x", "y": "0"}, {"a": "2", "c": "", "y": "1"}, {"a": "", "c": "y", "y": "0"}]
    rows += [{"a": "10", "c": "x", "y": "1"}]
    write_csv(tmp_path / "t.csv", rows)
    p = prepared(tmp_path, path="t.csv", missing="impute", test_fraction=0, validation_fraction=0, standardize=False)
    a, c = p.preprocessor.columns
    assert a.fill == 2.0  # median of 1, 2, 10: missing cells are not counted
    assert c.categories == ["missing", "x", "y"]
    X = p.preprocessor.transform(pa.table({"a": pa.array([None], pa.float64()), "c": pa.array([None], pa.string())}))
    assert X.tolist() == [[2.0, 1.0, 0.0, 0.0]]


def test_missing_error_names_the_column_count_and_key(tmp_path):
    write_csv(tmp_path / "t.csv", mixed_rows(30))
    message = one_line_error(prepared, tmp_path, path="t.csv", target="label", id="id", missing="error")
    # colour: rows 4 and 19 of the data (lines 6 and 21); size: 3 more cells
    assert "column 'colour' has 2 missing cells (and 1 more column(s)), the first at row 6" in message
    assert "data.missing: impute" in message and "drop_rows" in message


def test_drop_rows_drops_rows_with_a_missing_cell(tmp_path):
    write_csv(tmp_path / "t.csv", mixed_rows(60))
    p = prepared(tmp_path, path="t.csv", target="label", missing="drop_rows", id="id")
    assert p.summary["rows"] == 60 and p.summary["rows_used"] == 60 - 6 - 4  # rows 3, 13, ... and 4, 19, ...
    assert any("drop_rows" in n for n in p.notes)


def test_rows_with_a_missing_target_are_dropped_with_a_note(tmp_path):
    rows = mixed_rows(40, missing=False)
    rows[5]["label"] = ""
    rows[7]["label"] = "NA"
    write_csv(tmp_path / "t.csv", rows)
    p = prepared(tmp_path, path="t.csv", target="label", id="id")
    assert p.summary["rows_used"] == 38 and "dropped 2 row(s) whose target is missing" in p.notes


def test_a_drop_rows_model_predicts_empty_and_evaluates_without_rows_with_a_missing_cell(tmp_path, runner):
    write_csv(tmp_path / "train.csv", mixed_rows(120))
    cfg = write_config(tmp_path, {"path": "train.csv", "target": "label", "id": "id", "missing": "drop_rows"})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    model = tmp_path / "run" / "model.npz"
    rows = mixed_rows(20, seed=5)  # size missing on rows 3 and 13, colour on rows 4 and 19
    complete = [r for i, r in enumerate(rows) if i not in (3, 4, 13, 19)]
    write_csv(tmp_path / "labelled.csv", rows)
    write_csv(tmp_path / "complete.csv", complete)
    res = invoke_ok(runner, "predict", model, tmp_path / "labelled.csv")
    assert res.stderr.splitlines() == [
        "note: labelled.csv: 4 row(s) with a missing feature cell get an empty prediction (the model was"
        " trained with data.missing: drop_rows)",
    ]
    lines = res.stdout.splitlines()
    assert lines[0] == "id,prediction,p_big,p_small" and len(lines) == 21  # one line per row, in order
    assert [line.split(",")[0] for line in lines[1:]] == [r["id"] for r in rows]
    assert [lines[1 + i] for i in (3, 4, 13, 19)] == ["r3,,,", "r4,,,", "r13,,,", "r19,,,"]
    kept = invoke_ok(runner, "predict", model, tmp_path / "complete.csv").stdout.splitlines()
    assert [line for line in lines if not line.endswith(",,,")] == kept
    # evaluate needs a value per row: the 4 rows are skipped with a note, as training dropped them.
    res = invoke_ok(runner, "evaluate", model, tmp_path / "labelled.csv", "--json")
    assert res.stderr.splitlines() == [
        "note: labelled.csv: skipping 4 row(s) with a missing feature cell (the model was trained with"
        " data.missing: drop_rows)"
    ]
    ev = json.loads(res.stdout)
    assert ev["rows"] == 16
    assert ev == json.loads(invoke_ok(runner, "evaluate", model, tmp_path / "complete.csv", "--json").stdout)
    # Nothing left to score is one line, exit 2.
    write_csv(tmp_path / "holes.csv", [rows[3], rows[4]])
    res = runner.invoke(app, ["evaluate", str(model), str(tmp_path / "holes.csv")])
    assert res.exit_code == 2 and res.stderr.splitlines()[-1].startswith("error: "), res.stderr
    assert "holes.csv: every row has a missing feature cell" in res.stderr


def test_a_drop_rows_regression_model_predicts_empty_cells(tmp_path, runner):
    rng = np.random.default_rng(0)
    rows = [{"a": f"{v:.3f}", "b": f"{w:.3f}", "y": f"{v - w:.3f}"} for v, w in rng.normal(size=(60, 2))]
    rows[5]["a"] = ""
    write_csv(tmp_path / "t.csv", rows)
    cfg = write_config(tmp_path, {"path": "t.csv", "target": "y", "missing": "drop_rows"}, {"epochs": 2})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    write_csv(tmp_path / "new.csv", [{"a": "1", "b": ""}, {"a": "0.5", "b": "0.25"}, {"a": "NA", "b": "2"}])
    res = invoke_ok(
        runner, "predict", tmp_path / "run" / "model.npz", tmp_path / "new.csv", "--out", tmp_path / "p.csv"
    )
    assert "2 row(s) with a missing feature cell get an empty prediction" in res.stderr
    assert f"wrote 3 predictions (2 empty) to {tmp_path / 'p.csv'}" in res.stderr
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "y" and lines[1] == "" and lines[3] == "" and np.isfinite(float(lines[2]))


# ---- the library skips the rows a model cannot score, as the CLI does ----------------------


def _trained(tmp_path: Path, data: dict, train: dict | None = None, name: str = "c.yaml"):
    from mlpbp.run.config import load_config
    from mlpbp.run.trainer import train as run_training

    # --overwrite: a test trains again into the same folder (a new run is otherwise refused)
    return run_training(load_config(write_config(tmp_path, data, train, name)), overwrite=True).model


def test_library_skips_the_rows_a_drop_rows_model_cannot_score(tmp_path):
    write_csv(tmp_path / "train.csv", mixed_rows(120))
    data = {"path": "train.csv", "target": "label", "id": "id", "missing": "drop_rows", "handle_unknown": "error"}
    model = _trained(tmp_path, data)
    rows = mixed_rows(20, seed=5)  # size missing on rows 3 and 13, colour on rows 4 and 19
    rows[7]["label"] = ""  # and a missing target on row 7
    holes = [3, 4, 13, 19]
    write_csv(tmp_path / "labelled.csv", rows)
    write_csv(tmp_path / "scored.csv", [r for i, r in enumerate(rows) if i not in (*holes, 7)])
    raw, scored = read_table(tmp_path / "labelled.csv"), read_table(tmp_path / "scored.csv")

    # predict_rows: a row per row given; NaN and has_prediction false where a feature is missing.
    o, has = model.predict_rows(raw.table, raw.first_row, "labelled.csv")
    assert o.shape == (20, 2) and np.flatnonzero(~has).tolist() == holes
    assert np.isnan(o[holes]).all() and np.isfinite(o[has]).all()
    complete = [i for i in range(20) if i not in holes]
    want = model.predict_outputs(raw.table.take(complete))
    np.testing.assert_array_equal(o[has], want)
    np.testing.assert_array_equal(model.predict_outputs(raw.table), o)  # same outputs, NaN rows

    # evaluation: the metrics of the table without those rows, and what was skipped.
    ev = model.evaluation(raw.table, raw.first_row, "labelled.csv")
    assert (ev.rows, ev.skipped.missing_target, ev.skipped.missing_feature) == (15, 1, 4)
    assert np.flatnonzero(ev.skipped.mask).tolist() == [3, 4, 7, 13, 19]
    assert ev.metrics == model.evaluate(scored.table) == model.evaluate(raw.table)
    assert ev.metrics["accuracy"] == pytest.approx(
        np.mean(model.predict_outputs(scored.table).argmax(axis=1) == model.encode_targets(scored.table))
    )

    # labelled_data / labelled_rows: the rows of the file without them, encoded.
    data = model.labelled_data(tmp_path / "labelled.csv")
    X, y = model.labelled_rows(tmp_path / "scored.csv")
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)
    assert X.shape[0] == 15 and (data.skipped.missing_target, data.skipped.missing_feature) == (1, 4)
    np.testing.assert_array_equal(model.labelled_rows(tmp_path / "labelled.csv")[0], X)

    # Errors after skipped rows still name the row of the file: row 9 is data line 10.
    rows[8]["colour"] = "purple"
    write_csv(tmp_path / "bad.csv", rows)
    bad = read_table(tmp_path / "bad.csv")
    for call in (model.evaluate, model.predict_rows):
        with pytest.raises(DataError, match=r"bad.csv: row 10, column 'colour': category 'purple'"):
            call(bad.table, bad.first_row, "bad.csv")
    # No row left is an error, naming why.
    write_csv(tmp_path / "holes.csv", [rows[3], rows[4], rows[7]])
    with pytest.raises(DataError, match="holes.csv: every row has a missing feature cell"):
        model.labelled_data(tmp_path / "holes.csv")
    write_csv(tmp_path / "unlabelled.csv", [{**r, "label": ""} for r in rows])
    with pytest.raises(DataError, match="no rows with a target value"):
        model.evaluate(read_table(tmp_path / "unlabelled.csv").table)


def test_library_skips_missing_targets_and_refuses_missing_cells_for_other_models(tmp_path):
    write_csv(tmp_path / "train.csv", mixed_rows(120, missing=False))
    model = _trained(tmp_path, {"path": "train.csv", "target": "label", "id": "id", "missing": "error"}, {"epochs": 3})
    rows = mixed_rows(10, seed=2, missing=False)
    rows[2]["label"] = "NA"
    write_csv(tmp_path / "t.csv", rows)
    write_csv(tmp_path / "kept.csv", rows[:2] + rows[3:])
    ev = model.evaluation(read_table(tmp_path / "t.csv").table)
    assert (ev.rows, ev.skipped.missing_target, ev.skipped.missing_feature) == (9, 1, 0)
    assert ev.metrics == model.evaluate(read_table(tmp_path / "kept.csv").table)
    np.testing.assert_array_equal(
        model.labelled_rows(tmp_path / "t.csv")[1], model.labelled_rows(tmp_path / "kept.csv")[1]
    )
    # Not trained with drop_rows: a missing feature cell is refused, as in training.
    rows[4]["size"] = ""
    write_csv(tmp_path / "hole.csv", rows)
    with pytest.raises(DataError, match="column 'size' has 1 missing cell .first at row 6.; .* data.missing: error"):
        model.predict_rows(read_table(tmp_path / "hole.csv").table, 2, "hole.csv")


def test_predict_rows_on_arrays_gives_nan_or_refuses_as_the_model_says(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"a": f"{v:.3f}", "b": f"{w:.3f}", "y": f"{v - w:.3f}"} for v, w in rng.normal(size=(60, 2))]
    rows[5]["a"] = ""
    write_csv(tmp_path / "t.csv", rows)
    models = {
        m: _trained(tmp_path, {"path": "t.csv", "target": "y", "missing": m}, {"epochs": 2}, f"{m}.yaml")
        for m in ("drop_rows", "impute")
    }
    X = rng.normal(size=(5, 2))
    X[[1, 3], [0, 1]] = [np.nan, np.inf]
    o, has = models["drop_rows"].predict_rows(X)
    assert has.tolist() == [True, False, True, False, True] and np.isnan(o[~has]).all()
    np.testing.assert_array_equal(o[has], models["drop_rows"].predict_outputs(X[has]))
    with pytest.raises(DataError, match=r"x.npy: row 1, column 'a' is nan; all values must be finite"):
        models["impute"].predict_rows(X, 0, "x.npy")


# ---- row numbers: messages count the rows of the file, also once some are dropped ------------


def test_row_numbers_count_rows_dropped_for_a_missing_target(tmp_path):
    # CSV rows are numbered by file line (line 1 is the header): the empty 'a' is on line 4,
    # after a row whose target is missing (line 2) was dropped.
    (tmp_path / "t.csv").write_text("a,c,y\n1,x,\n2,y,1\n,x,0\n4,y,1\n5,x,0\n6,y,1\n7,x,0\n8,y,1\n")
    message = one_line_error(prepared, tmp_path, path="t.csv", missing="error")
    assert "column 'a' has 1 missing cell, the first at row 4;" in message
    (tmp_path / "t.csv").write_text("a,y\n1,\n2,1\ninf,0\n4,1\n5,0\n")
    assert "row 4, column 'a': inf is not a finite number" in one_line_error(prepared, tmp_path, path="t.csv")


def test_row_numbers_count_rows_dropped_by_drop_rows(tmp_path):
    # Lines 2 and 3 have a missing cell and go; the target that is not finite is on line 5.
    (tmp_path / "t.csv").write_text("a,b,y\n1,,1.5\n,3,2.5\n3,4,0.5\n4,5,inf\n5,6,2.0\n6,7,3.0\n")
    message = one_line_error(prepared, tmp_path, path="t.csv", missing="drop_rows", task="regression")
    assert message.endswith("row 5, column 'y': inf is not a finite number"), message
    # Parquet rows are numbered from 1.
    pq.write_table(pa.table({"a": [1.0, None, 3.0, 4.0], "y": [1.0, 2.0, np.inf, 3.0]}), tmp_path / "t.parquet")
    message = one_line_error(prepared, tmp_path, path="t.parquet", missing="drop_rows", task="regression")
    assert message.endswith("row 3, column 'y': inf is not a finite number"), message


def test_evaluate_row_numbers_count_the_rows_skipped_for_a_missing_target(tmp_path, runner):
    write_csv(tmp_path / "train.csv", mixed_rows(60, missing=False))
    data = {"path": "train.csv", "target": "label", "id": "id", "handle_unknown": "error"}
    cfg = write_config(tmp_path, data, {"epochs": 1})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    rows = mixed_rows(6, seed=3, missing=False)
    rows[0]["label"] = ""
    rows[3]["colour"] = "purple"  # data row 4: line 5
    write_csv(tmp_path / "new.csv", rows)
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run" / "model.npz"), str(tmp_path / "new.csv")])
    assert res.exit_code == 2, res.stderr
    note, line = res.stderr.splitlines()  # the skipped row's note, then the error
    assert note == "note: new.csv: skipping 1 row(s) whose target is missing"
    assert "new.csv: row 5, column 'colour': category 'purple' was not seen in training" in line, line


# ---- column keys ---------------------------------------------------------------------------


def test_features_drop_and_id(tmp_path):
    write_csv(tmp_path / "t.csv", mixed_rows(40, missing=False))
    p = prepared(tmp_path, path="t.csv", target="label", features=["size", "colour"])
    assert p.preprocessor.inputs == ["size", "colour"] and p.preprocessor.width == 4
    p = prepared(tmp_path, path="t.csv", target="label", drop=["day", "flag"], id="id")
    assert p.preprocessor.inputs == ["colour", "size"] and p.id_name == "id"
    roles = {c["name"]: c["role"] for c in p.summary["columns"]}
    assert roles == {"id": "id", "colour": "feature", "size": "feature", "flag": "dropped", "day": "dropped",
                     "label": "target"}  # fmt: skip


def test_columns_overrides_kinds(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"code": str(rng.integers(1, 4)), "when": "2021-03-04", "x": str(i), "y": str(i % 2)} for i in range(30)]
    write_csv(tmp_path / "t.csv", rows)
    p = prepared(tmp_path, path="t.csv", columns={"code": "categorical", "x": "drop"})
    code, when = p.preprocessor.columns
    assert code.kind == "categorical" and code.categories == ["1", "2", "3"] and when.kind == "date"
    assert p.preprocessor.inputs == ["code", "when"]
    # A date is days since 1970-01-01.
    X = p.preprocessor.transform(pa.table({"code": ["2"], "when": ["1970-01-11"]}))
    assert X[0, :3].tolist() == [0, 1, 0] and X[0, 3] * code_scale(p) + code_mean(p) == pytest.approx(10.0)


def code_mean(p) -> float:
    return float(p.preprocessor.mean[-1])


def code_scale(p) -> float:
    return float(p.preprocessor.scale[-1])


def test_date_column_as_numeric_days(tmp_path):
    rows = [{"d": f"2020-01-{i + 1:02d}", "y": str(i % 2)} for i in range(20)]
    write_csv(tmp_path / "t.csv", rows)
    p = prepared(tmp_path, path="t.csv", standardize=False, test_fraction=0, validation_fraction=0)
    days = np.sort(p.train[0][:, 0])
    assert days[0] == 18262.0 and np.array_equal(np.diff(days), np.ones(19))  # 2020-01-01 is day 18262


def test_max_categories_refuses_an_id_like_column(tmp_path, runner):
    rows = mixed_rows(80, missing=False)
    write_csv(tmp_path / "t.csv", rows)
    cfg = write_config(tmp_path, {"path": "t.csv", "target": "label"})  # 'id' is a feature here
    line = invoke_bad(runner, "train", cfg)
    assert "'id'" in line and "max_categories 50" in line and "data.drop" in line and "data.id" in line
    assert not (tmp_path / "run").exists()
    p = prepared(tmp_path, path="t.csv", target="label", id="id", max_categories=3)
    assert [c.name for c in p.preprocessor.columns if c.kind == "categorical"] == ["colour", "flag"]


def test_task_inference_and_max_classes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = np.round(50 + 40 * x).astype(int)  # integer-valued, many distinct values
    write_csv(tmp_path / "r.csv", [{"x": a, "y": b} for a, b in zip(x, y)])
    p = prepared(tmp_path, path="r.csv")
    assert p.task == "regression" and "distinct numeric values" in p.why and "max_classes 50" in p.why
    p = prepared(tmp_path, path="r.csv", max_classes=1000)
    assert p.task == "classification" and "distinct integer values" in p.why
    write_csv(tmp_path / "f.csv", [{"x": a, "y": f"{b % 2}.0"} for a, b in zip(x, y)])  # 0.0/1.0 labels
    p = prepared(tmp_path, path="f.csv")
    assert p.task == "classification" and p.classes == ["0", "1"]
    write_csv(tmp_path / "g.csv", [{"x": a, "y": a * 2.5} for a in x])
    assert "non-integer" in prepared(tmp_path, path="g.csv").why


def test_multi_output_regression(tmp_path, runner):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    rows = [{"a": r[0], "b": r[1], "c": r[2], "s": r[0] + r[1], "d": r[1] - 2 * r[2]} for r in X]
    write_csv(tmp_path / "t.csv", rows)
    cfg = write_config(tmp_path, {"path": "t.csv", "target": ["s", "d"]}, {"epochs": 40})
    d = json.loads(invoke_ok(runner, "train", "--overwrite", cfg, "--json").stdout)
    assert d["task"] == "regression" and [o["name"] for o in d["test"]["outputs"]] == ["s", "d"]
    assert set(d["test"]) >= {"loss", "mse", "mae", "r2", "outputs"} and d["test"]["r2"] > 0.9
    assert d["test"]["mse"] == pytest.approx(np.mean([o["mse"] for o in d["test"]["outputs"]]))
    model = tmp_path / "run" / "model.npz"
    assert invoke_ok(runner, "predict", model, tmp_path / "t.csv").stdout.splitlines()[0] == "s,d"


def test_handle_unknown(tmp_path, runner):
    write_csv(tmp_path / "train.csv", mixed_rows(100, missing=False))
    new = mixed_rows(5, seed=3, missing=False)
    new[2]["colour"] = "purple"
    write_csv(tmp_path / "new.csv", new)
    data = {"path": "train.csv", "target": "label", "id": "id", "handle_unknown": "error"}
    cfg = write_config(tmp_path, data, {"epochs": 2})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    model = tmp_path / "run" / "model.npz"
    line = invoke_bad(runner, "predict", model, tmp_path / "new.csv")
    assert "row 4" in line and "column 'colour'" in line and "'purple'" in line and "handle_unknown" in line
    cfg = write_config(tmp_path, {"path": "train.csv", "target": "label", "id": "id", "handle_unknown": "ignore"})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    m = load_model(model)
    raw = read_table(tmp_path / "new.csv")
    X = m.preprocessor.transform(raw.table)
    colour = [i for i, n in enumerate(m.preprocessor.feature_names) if n.startswith("colour=")]
    assert np.all(X[2, colour] == 0) and np.all(X[[0, 1, 3, 4]][:, colour].sum(axis=1) == 1)


def _rare_category_rows() -> list[dict]:
    """40 rows, colour 'purple' on one row only; with seed 0 it falls outside the training split."""
    rows = mixed_rows(40, missing=False)
    rows[7]["colour"] = "purple"  # data row 8: line 9
    return rows


def test_a_category_only_validation_or_test_rows_have_is_refused_under_error(tmp_path, runner):
    # data.handle_unknown: error was the default before 0.3; now an opt-in
    write_csv(tmp_path / "t.csv", _rare_category_rows())
    data = {"path": "t.csv", "target": "label", "id": "id", "validation_fraction": 0.25, "test_fraction": 0.25}
    p = prepared(tmp_path, **data, handle_unknown="ignore")
    data["handle_unknown"] = "error"
    assert "purple" not in p.preprocessor.columns[0].categories  # the seed puts row 8 outside training
    message = one_line_error(prepared, tmp_path, **data)
    assert message.startswith(str(tmp_path / "t.csv") + ": row 9, column 'colour': category 'purple'"), message
    assert "not in the training split" in message and "data.handle_unknown: ignore" in message
    # The same line from `mlpbp data` and `mlpbp train`, exit 2, before anything is written.
    assert invoke_bad(runner, "data", write_config(tmp_path, data)) == f"error: {message}"
    assert _bad_train(tmp_path, runner, data) == f"error: {message}"


def test_a_category_only_validation_or_test_rows_have_is_zeros_with_a_note_under_ignore(tmp_path, runner):
    write_csv(tmp_path / "t.csv", _rare_category_rows())
    data = {"path": "t.csv", "target": "label", "id": "id", "validation_fraction": 0.25, "test_fraction": 0.25}
    p = prepared(tmp_path, **data, handle_unknown="ignore")
    note = (
        "column 'colour': 1 validation/test row(s) with a category the training split lacks ('purple', first at row 9)"
    )
    assert f"{note}: encoded as all zeros (data.handle_unknown: ignore)" in p.notes
    # Encoded as zeros: exactly one of the 20 validation and test rows has no colour.
    colour = [i for i, n in enumerate(p.preprocessor.feature_names) if n.startswith("colour=")]
    hot = np.concatenate([p.val[0], p.test[0]])[:, colour].sum(axis=1)
    assert sorted(hot.tolist()) == [0.0] + [1.0] * 19
    res = invoke_ok(runner, "data", write_config(tmp_path, {**data, "handle_unknown": "ignore"}))
    assert f"note: {note}" in res.stdout


@pytest.mark.parametrize("val, test, held", [(0.0, 0.5, "test"), (0.5, 0.0, "validation")])
def test_a_category_outside_training_names_only_the_splits_that_have_rows(tmp_path, val, test, held):
    """With validation_fraction (or test_fraction) 0 the rows outside training are test
    (validation) rows only, and the note says so."""
    write_csv(tmp_path / "t.csv", _rare_category_rows())
    data = {"path": "t.csv", "target": "label", "id": "id", "validation_fraction": val, "test_fraction": test}
    p = prepared(tmp_path, **data, handle_unknown="ignore")
    notes = [n for n in p.notes if "the training split lacks" in n]
    assert "purple" not in p.preprocessor.columns[0].categories  # the seed puts row 8 outside training
    assert len(notes) == 1 and notes[0].startswith(f"column 'colour': 1 {held} row(s) with a category"), notes


def test_an_imputed_missing_cell_only_validation_or_test_rows_have(tmp_path, monkeypatch):
    rows = _rare_category_rows()
    rows[7]["colour"] = ""  # the only empty colour: no 'missing' category in the training split
    write_csv(tmp_path / "t.csv", rows)
    data = {"path": "t.csv", "target": "label", "id": "id", "validation_fraction": 0.25, "test_fraction": 0.25}
    message = one_line_error(prepared, tmp_path, **data, missing="impute", handle_unknown="error")
    assert (
        "row 9, column 'colour': 1 validation/test row(s) have a missing cell but the training split has none"
        in message
    )
    monkeypatch.setattr("mlpbp.data.preprocessing.CHUNK_ROWS", 7)  # row 8 in the second chunk: the same
    p = prepared(tmp_path, **data, missing="impute", handle_unknown="ignore")
    assert p.notes == [
        "column 'colour': 1 missing cell(s) filed under the category 'missing' (data.missing: impute)",
        "column 'colour': 1 validation/test row(s) with a category the training split lacks (a missing cell,"
        " first at row 9): encoded as all zeros (data.handle_unknown: ignore)",
    ]


def test_an_imputed_missing_cell_training_never_had_is_named_as_a_missing_cell(tmp_path, runner):
    # Training's colour column has no empty cell, so the imputing model has no 'missing' category.
    write_csv(tmp_path / "train.csv", mixed_rows(60, missing=False))
    data = {"path": "train.csv", "target": "label", "id": "id", "missing": "impute", "handle_unknown": "error"}
    cfg = write_config(tmp_path, data)
    invoke_ok(runner, "train", "--overwrite", cfg, "-q", "--set", "train.epochs=1")
    new = mixed_rows(3, seed=3, missing=False)
    new[1]["colour"] = ""
    write_csv(tmp_path / "new.csv", new)
    line = invoke_bad(runner, "predict", tmp_path / "run" / "model.npz", tmp_path / "new.csv")
    assert "new.csv: row 3, column 'colour': a missing cell, and the training split had none in this column" in line
    assert "(no 'missing' category; known: blue, green, red)" in line and "data.handle_unknown: ignore" in line


def test_class_weight_balanced_and_by_label(tmp_path):
    rows = [{"x": i, "y": "rare" if i % 5 == 0 else "common"} for i in range(100)]
    write_csv(tmp_path / "t.csv", rows)
    cfg = {"data": {"path": "t.csv", "test_fraction": 0, "validation_fraction": 0}}
    p = prepare(config_from_dict({**cfg, "train": {"class_weight": "balanced"}}, base_dir=tmp_path))
    # scikit-learn's n / (k * count): 100 / (2 * 80), 100 / (2 * 20)
    np.testing.assert_allclose(p.class_weight, [100 / 160, 100 / 40])
    assert p.classes == ["common", "rare"]
    p = prepare(config_from_dict({**cfg, "train": {"class_weight": {"rare": 4}}}, base_dir=tmp_path))
    np.testing.assert_allclose(p.class_weight, [1.0, 4.0])
    message = one_line_error(
        prepare, config_from_dict({**cfg, "train": {"class_weight": {"often": 2}}}, base_dir=tmp_path)
    )
    assert "train.class_weight" in message and "'often'" in message and "common, rare" in message


def test_class_weight_raises_recall_of_a_rare_class(tmp_path, runner):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    rare = (x[:, 0] + 0.5 * rng.normal(size=600)) > 1.3  # about 1 in 10, and noisy
    write_csv(tmp_path / "t.csv", [{"a": r[0], "b": r[1], "y": int(k)} for r, k in zip(x, rare)])
    recall = {}
    for weight in (None, "balanced"):
        cfg = write_config(tmp_path, {"path": "t.csv"}, {"epochs": 20, "class_weight": weight})
        d = json.loads(invoke_ok(runner, "train", "--overwrite", cfg, "--json").stdout)
        recall[weight] = d["test"]["per_class"][1]["recall"]
    assert recall["balanced"] > recall[None]


# ---- file formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter, name", [(";", "t.csv"), ("\t", "t.tsv"), ("|", "t.csv"), ("\t", "t.csv")])
def test_delimiters_are_sniffed(tmp_path, delimiter, name):
    write_csv(tmp_path / name, mixed_rows(30, missing=False), delimiter)
    p = prepared(tmp_path, path=name, target="label", id="id")
    assert p.preprocessor.inputs == ["colour", "size", "flag", "day"]


def test_delimiter_key(tmp_path):
    (tmp_path / "t.csv").write_text("a;b,c\n1;2,0\n3;4,1\n5;6,0\n7;8,1\n9;9,1\n")
    # '2,0' reads as a decimal comma, refused unless the task says the cells are labels
    p = prepared(tmp_path, path="t.csv", delimiter=";", task="classification", test_fraction=0, validation_fraction=0)
    assert p.preprocessor.inputs == ["a"] and p.target_names == ["b,c"]


def test_pandas_index_column_is_ignored_with_a_note(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"a": np.arange(20.0), "y": np.arange(20) % 2})
    df.to_csv(tmp_path / "t.csv")  # ",a,y" header: the index has no name
    p = prepared(tmp_path, path="t.csv")
    assert p.preprocessor.inputs == ["a"] and any("pandas index" in n for n in p.notes)


def test_a_delimiter_ending_every_line_is_an_empty_nameless_column_ignored_with_a_note(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\ty\t\n" + "".join(f"{i}\tx{i % 3}\t{i % 2}\t\n" for i in range(20)))
    p = prepared(tmp_path, path="t.tsv", target="y")
    assert p.preprocessor.inputs == ["a", "b"]
    assert "t.tsv: the last column has no name and no value (a delimiter ends each line): ignored" in p.notes
    # a nameless last column that holds a value is still refused: it is data without a name
    (tmp_path / "t.tsv").write_text("a\tb\ty\t\n" + "".join(f"{i}\tx{i % 3}\t{i % 2}\t{i}\n" for i in range(20)))
    assert one_line_error(prepared, tmp_path, path="t.tsv", target="y") == (
        f"{tmp_path / 't.tsv'}: header column 4 has no name"
    )


def test_a_parquet_column_of_nulls_with_a_type_is_ignored_like_an_empty_csv_column(tmp_path):
    n = 20
    t = pa.table({"a": np.arange(n) * 1.0, "z": pa.nulls(n, pa.float64()), "y": np.arange(n) % 2})
    pq.write_table(t, tmp_path / "t.parquet")
    p = prepared(tmp_path, path="t.parquet", target="y")
    # before: a numeric feature of zeros, its cells "filled with the training median 0"
    assert p.preprocessor.inputs == ["a"]
    assert "column z has no value at all: ignored" in p.notes


def test_parquet_and_npy_pairs(tmp_path, runner):
    import pandas as pd

    df = pd.DataFrame(mixed_rows(50, missing=False))
    df["day"], df["flag"] = pd.to_datetime(df["day"]), df["flag"] == "true"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "t.parquet", row_group_size=16)
    p = prepared(tmp_path, path="t.parquet", target="label", id="id")
    assert p.preprocessor.inputs == ["colour", "size", "flag", "day"] and p.summary["rows"] == 50
    assert [c.kind for c in p.preprocessor.columns] == ["categorical", "numeric", "categorical", "date"]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), np.arange(40) % 2
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "X.npy", X)
    np.save(tmp_path / "npy" / "y.npy", y)
    np.save(tmp_path / "train_X.npy", X)
    np.save(tmp_path / "train_y.npy", y)
    for path in ("npy", "train_X.npy"):
        p = prepared(tmp_path, path=path)
        assert p.task == "classification" and p.preprocessor.inputs == ["x0", "x1", "x2"]
    # evaluate reads Parquet and NPZ too.
    cfg = write_config(tmp_path, {"path": "t.parquet", "target": "label", "id": "id"}, {"epochs": 2})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    ev = json.loads(
        invoke_ok(runner, "evaluate", tmp_path / "run" / "model.npz", tmp_path / "t.parquet", "--json").stdout
    )
    assert ev["rows"] == 50


def test_progress_callback_reports_rows(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 8))
    path = tmp_path / "big.csv"
    np.savetxt(path, X, delimiter=",", header=",".join(f"c{j}" for j in range(8)), comments="", fmt="%.5f")
    calls = []
    raw = read_table(path, progress=lambda rows, fraction: calls.append((rows, fraction)))
    assert raw.table.num_rows == 20000
    assert calls[-1] == (20000, 1.0) and len(calls) > 1
    assert all(0 <= f <= 1 for _, f in calls) and [f for _, f in calls] == sorted(f for _, f in calls)


def test_float32_reading_keeps_targets_wide(tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"a": v, "y": v * 1e-9 + 1.0} for v in rng.normal(size=6000)]
    write_csv(tmp_path / "t.csv", rows)
    raw = read_table(tmp_path / "t.csv", float32=True, keep64=["y"])
    assert raw.table.schema.field("a").type == pa.float32() and raw.table.schema.field("y").type == pa.float64()
    assert raw.table.num_rows == 6000


# ---- predict / evaluate --------------------------------------------------------------------


def test_predict_ignores_extra_columns_with_a_note_and_strict_refuses(tmp_path, runner):
    write_csv(tmp_path / "train.csv", mixed_rows(60, missing=False))
    cfg = write_config(tmp_path, {"path": "train.csv", "target": "label", "drop": ["id", "day"]}, {"epochs": 2})
    invoke_ok(runner, "train", "--overwrite", cfg, "-q")
    model = tmp_path / "run" / "model.npz"
    res = invoke_ok(runner, "predict", model, tmp_path / "train.csv")
    assert "ignoring columns the model does not use: id, day" in res.stderr
    line = invoke_bad(runner, "predict", model, tmp_path / "train.csv", "--strict")
    assert "unexpected columns id, day" in line
    line = invoke_bad(runner, "evaluate", model, tmp_path / "train.csv", "--strict")
    assert "unexpected columns id, day" in line
    # Any column order.
    reordered = [{k: r[k] for k in ("label", "size", "flag", "colour")} for r in mixed_rows(60, missing=False)]
    write_csv(tmp_path / "re.csv", reordered)
    a = invoke_ok(runner, "predict", model, tmp_path / "re.csv").stdout
    b = invoke_ok(runner, "predict", model, tmp_path / "train.csv").stdout
    assert a == b


def test_evaluate_metrics_by_hand(tmp_path):
    from mlpbp.run.metrics import classification_metrics, regression_metrics

    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 1, 1])
    m = classification_metrics(y, pred, 3, ["a", "b", "c"])
    # recalls 2/3, 1, 0 -> balanced 5/9; precisions 1, 2/4, 0; F1 0.8, 2/3, 0
    assert m["accuracy"] == pytest.approx(4 / 6) and m["balanced_accuracy"] == pytest.approx(5 / 9)
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert m["per_class"][1] == {
        "label": "b",
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    true = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 3.0]])
    r = regression_metrics(true, true + np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, -3.0]]), ["u", "v"])
    u = {"name": "u", "mse": pytest.approx(2 / 3), "mae": pytest.approx(2 / 3), "r2": 0.0}
    assert r["outputs"][0] == {**u, "rmse": pytest.approx(np.sqrt(2 / 3))}  # RMSE beside MSE since 0.3
    assert r["outputs"][1]["mae"] == 1.0 and r["mae"] == pytest.approx((2 / 3 + 1) / 2)
    assert r["rmse"] == pytest.approx((np.sqrt(2 / 3) + np.sqrt(3)) / 2)  # each output's RMSE, averaged


# ---- mlpbp data ------------------------------------------------------------------------------


def test_data_command(tmp_path, runner):
    write_csv(tmp_path / "t.csv", mixed_rows(100))
    cfg = write_config(tmp_path, {"path": "t.csv", "target": "label", "id": "id", "missing": "impute"})
    d = json.loads(invoke_ok(runner, "data", cfg, "--json").stdout)
    assert d["task"] == "classification" and d["input_width"] == 1 + 4 + 2 + 1  # size, colour+missing, flag, day
    cols = {c["name"]: c for c in d["columns"]}
    assert cols["size"]["missing"] == 10 and cols["colour"]["missing"] == 7 and cols["id"]["role"] == "id"
    assert cols["day"]["kind"] == "date" and cols["flag"]["categories"] == ["false", "true"]
    assert sum(c["count"] for c in d["classes"]) == 100
    text = invoke_ok(runner, "data", cfg).stdout
    assert "classification: target 'label'" in text and "input width 8" in text and "colour" in text
    assert not (tmp_path / "run").exists()  # nothing written
    # train --verbose shows the columns; --quiet still the task line.
    res = invoke_ok(runner, "train", "--overwrite", cfg, "-q", "--set", "train.epochs=1")
    # the task line first; no column table (the notes about imputed columns follow it since 0.3)
    assert res.stdout.startswith("classification: target 'label'") and " role " not in res.stdout
    res = invoke_ok(runner, "train", "--overwrite", cfg, "-q", "--verbose", "--set", "train.epochs=1")
    assert "colour" in res.stdout and "feature" in res.stdout


# ---- bad input: one line, exit 2, nothing written -------------------------------------------


def _bad_train(tmp_path, runner, data: dict, train: dict | None = None) -> str:
    line = invoke_bad(runner, "train", write_config(tmp_path, data, train))
    assert not (tmp_path / "run").exists()
    return line


@pytest.mark.parametrize(
    "data, needles",
    [
        ({"features": ["size", "nope"]}, ["data.features", "'nope'", "colour"]),
        ({"drop": ["nope"]}, ["data.drop", "'nope'"]),
        ({"columns": {"nope": "numeric"}}, ["data.columns", "'nope'"]),
        ({"id": "nope"}, ["data.id", "'nope'"]),
        ({"features": ["size", "label"]}, ["'label'", "both in features and a target"]),
        ({"drop": ["label"]}, ["'label'", "both in drop and a target"]),
        ({"task": "regression"}, ["'label'", "categorical", "regression"]),
        ({"columns": {"colour": "numeric"}}, ["column 'colour'", "is not a number"]),
        ({"columns": {"colour": "date"}}, ["column 'colour'", "not a date or time in a recognised format"]),
        ({"max_categories": 2, "drop": ["day", "flag"]}, ["'colour'", "max_categories 2"]),
    ],
)
def test_bad_column_configs(tmp_path, runner, data, needles):
    write_csv(tmp_path / "t.csv", mixed_rows(40, missing=False))
    line = _bad_train(tmp_path, runner, {"path": "t.csv", "target": "label", "id": "id", **data})
    for n in needles:
        assert n in line, line


def test_bad_class_weight(tmp_path, runner):
    write_csv(tmp_path / "t.csv", mixed_rows(40, missing=False))
    line = _bad_train(tmp_path, runner, {"path": "t.csv", "target": "label", "id": "id"}, {"class_weight": {"huge": 2}})
    assert "train.class_weight" in line and "'huge'" in line and "big, small" in line
    line = _bad_train(tmp_path, runner, {"path": "t.csv", "target": "size", "id": "id"}, {"class_weight": "balanced"})
    assert "classification" in line


def test_bad_files(tmp_path, runner):
    (tmp_path / "t.xlsx").write_bytes(b"PK\x03\x04")
    line = _bad_train(tmp_path, runner, {"path": "t.xlsx"})
    assert "unknown file extension '.xlsx'" in line and ".parquet" in line
    pq.write_table(pa.Table.from_pylist(mixed_rows(40, missing=False)), tmp_path / "full.parquet")
    (tmp_path / "t.parquet").write_bytes((tmp_path / "full.parquet").read_bytes()[:300])
    line = _bad_train(tmp_path, runner, {"path": "t.parquet", "target": "label"})
    assert "t.parquet" in line and "cannot read as Parquet" in line
    (tmp_path / "t.csv").write_text("a;b,c\n1;2\n3,4\n5;6;7,8,9\n")
    line = _bad_train(tmp_path, runner, {"path": "t.csv"})
    assert "cannot determine the delimiter" in line and "data.delimiter" in line
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "X.npy", np.zeros((5, 2)))
    np.save(tmp_path / "npy" / "y.npy", np.zeros(4))
    line = _bad_train(tmp_path, runner, {"path": "npy"})
    assert "5 rows" in line and "has 4" in line


def test_config_rejects_bad_values():
    for data, needle in (
        ({"path": "t.csv", "missing": "fill"}, "data.missing"),
        ({"path": "t.csv", "handle_unknown": "skip"}, "data.handle_unknown"),
        ({"path": "t.csv", "columns": {"a": "text"}}, "data.columns.a"),
        ({"path": "t.csv", "delimiter": ";;"}, "data.delimiter"),
        ({"path": "t.csv", "max_classes": 1}, "data.max_classes"),
        ({"path": "t.csv", "target": "y", "id": "y"}, "both the id and a target"),
        ({"path": "t.csv", "features": ["a"], "drop": ["a"]}, "both in features and in drop"),
    ):
        assert needle in one_line_error(config_from_dict, {"data": data})
    assert "train.class_weight" in one_line_error(
        config_from_dict, {"data": {"path": "t.csv"}, "train": {"class_weight": {"a": 0}}}
    )
    cfg = config_from_dict({"data": {"path": "t.csv"}, "train": {"class_weight": {0: 1, 2: 3.5, True: 2}}})
    assert cfg.train.class_weight == {"0": 1.0, "2": 3.5, "true": 2.0}


# ---- large CSVs: parsed in parts, one per core -------------------------------------------------


@pytest.fixture
def in_parts(monkeypatch):
    """Read every CSV in `parts` parts, however small (normally from 64 MiB, one per core)."""
    from mlpbp.data import tables

    def set_parts(parts: int):
        monkeypatch.setattr(tables, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(tables, "_usable_cores", lambda: parts)

    return set_parts


def _mixed_csv(path: Path, rows: int = 3000, newline: str = "\n") -> Path:
    rng = np.random.default_rng(5)
    lines = ["id,x,when,colour,note,y"]
    for i in range(rows):
        x = "" if i % 97 == 0 else f"{rng.normal():.6g}"
        colour = ["red", "green", '"blue, dark"'][i % 3]
        lines.append(f"r{i},{x},2024-01-{1 + i % 28:02d},{colour},{'NA' if i % 5 else 'ok'},{i % 2}")
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    return path


@pytest.mark.parametrize("parts", [2, 3, 7])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_csv_read_in_parts_is_the_table_read_in_one(tmp_path, in_parts, parts, newline):
    path = _mixed_csv(tmp_path / "t.csv", newline=newline)
    whole = read_table(path).table
    in_parts(parts)
    assert read_table(path).table.equals(whole)
    assert read_table(path, float32=True).table.num_rows == 3000


def test_a_csv_with_quoted_cells_spanning_lines_is_read_in_one_part(tmp_path, in_parts, monkeypatch):
    from mlpbp.data import csv_parts

    rows = [f'{i},"first line\n{i},0",{i % 2}' for i in range(400)]  # inner lines look like rows
    path = tmp_path / "q.csv"
    path.write_text("id,note,y\n" + "\n".join(rows) + "\n")
    whole = read_table(path).table
    in_parts(3)
    asked, real = [], csv_parts.line_cuts
    monkeypatch.setattr(csv_parts, "line_cuts", lambda f, size, parts: asked.append(parts) or real(f, size, parts))
    assert read_table(path).table.equals(whole) and whole.num_rows == 400
    assert asked == [1]


def test_a_problem_in_a_later_part_is_named_by_its_line(tmp_path, in_parts):
    path = _mixed_csv(tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    in_parts(2)
    lines[2500] += ",extra"  # line 2501: a row with one field too many, in the second half
    path.write_text("\n".join(lines) + "\n")
    msg = one_line_error(read_table, path)
    assert "row 2501 has 7 fields, header has 6" in msg
    lines[2500] = lines[2500].removesuffix(",extra")
    lines[2800] = lines[2800].replace(",0", ",zero").replace(",1", ",one")  # text below numbers in y
    path.write_text("\n".join(lines) + "\n")
    table = read_table(path).table  # the whole file's types, as a one-part read gives them
    assert table.schema.field("y").type == pa.string() and table.num_rows == 3000
