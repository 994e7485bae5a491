"""The ONNX graph of a table model with every 0.3 preprocessing step (log1p, quantile and robust
columns, rare categories in an infrequent level and an unseen one mapped to it, a time of day, a
timestamp, imputed cells, target transforms) against the model's own predictions, run by
onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pyarrow.csv as pacsv
import pytest
import yaml

from mlpbp.data.cells import seconds
from mlpbp.run.config import load_config
from mlpbp.run.trainer import train
from mlpbp.tools.export import to_onnx


def _table(path, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    lines = ["amount,debt,score,colour,time,stamp,y,label"]
    for i in range(n):
        amount = "" if i % 13 == 0 else f"{rng.lognormal(2, 1):.3f}"
        debt = f"{-rng.lognormal(1, 1):.3f}"
        score = f"{rng.standard_t(2):.3f}"
        colour = ["red", "blue", "green"][i % 3] if i % 20 else ["teal", "pink", "gold"][i % 3]
        t = f"{i % 24:02d}:{(11 * i) % 60:02d}:{i % 60:02d}"
        stamp = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {(5 * i) % 24:02d}:30:00"
        y = np.exp(0.3 * rng.normal() + (i % 24) / 24)
        label = "a" if (i % 24) < 12 else "b"
        lines.append(f"{amount},{debt},{score},{colour},{t},{stamp},{y:.4f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _feeds(session, table):
    feeds = {}
    for i in session.get_inputs():
        col = table.column(i.name)
        if i.type == "tensor(string)":
            feeds[i.name] = np.array([v if v is not None else "" for v in col.to_pylist()], dtype=object)[:, None]
        elif i.type == "tensor(double)":  # a time of day or a timestamp: seconds
            kind = "time" if i.name == "time" else "datetime"
            feeds[i.name] = seconds(col, i.name, kind, None)[:, None]
        else:
            feeds[i.name] = np.array([np.nan if v is None else v for v in col.to_pylist()], np.float32)[:, None]
    return feeds


@pytest.mark.parametrize(
    ("target", "extra"),
    [
        ("label", {}),
        ("y", {"target_transform": "quantile"}),
        ("y", {"target_transform": "log1p"}),
    ],
)
def test_onnx_of_every_table_step_matches_predict(tmp_path, target, extra):
    _table(tmp_path / "t.csv")
    drop = ["y" if target == "label" else "label"]
    data = {"path": "t.csv", "target": target, "drop": drop, "numeric": {"score": "robust"}, **extra}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": data, "train": {"epochs": 3}}))
    model = train(load_config(tmp_path / "c.yaml"), tmp_path / "run").model
    pre = model.preprocessor
    kinds = {c.name: (c.kind, c.transform.kind if c.transform else None) for c in pre.columns}
    assert kinds["amount"] == ("numeric", "log1p") and kinds["debt"] == ("numeric", "quantile")
    assert kinds["score"] == ("numeric", "robust") and kinds["time"][0] == "time" and kinds["stamp"][0] == "datetime"
    assert pre.columns[3].infrequent == "infrequent"

    rows = _table(tmp_path / "new.csv", n=80, seed=1)
    text = rows.read_text().replace("\nteal,", "\nmauve,").replace(",pink,", ",mauve,")  # unseen: infrequent
    rows.write_text(text)
    table = pacsv.read_csv(rows)
    want = model.predict_outputs(table)
    session = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, _feeds(session, table))))
    if target == "label":
        p = np.exp(want - want.max(axis=1, keepdims=True))
        np.testing.assert_allclose(got["probabilities"], p / p.sum(axis=1, keepdims=True), atol=1e-4)
        assert list(got["label"]) == [model.classes[k] for k in want.argmax(axis=1)]
    else:
        np.testing.assert_allclose(got["prediction"], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", ["label", "y"])
def test_onnx_of_a_drop_rows_model_leaves_the_rows_predict_leaves_empty(tmp_path, target):
    # Under data.missing: drop_rows predict writes empty cells for a row with a missing cell; the
    # graph gave such a row a label (ArgMax of NaN outputs: the first class), and a row whose
    # missing cell is a category a whole prediction. It now gives "" and NaN there.
    _table(tmp_path / "t.csv")
    drop = ["y" if target == "label" else "label"]
    data = {"path": "t.csv", "target": target, "drop": drop, "missing": "drop_rows"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": data, "train": {"epochs": 3}}))
    model = train(load_config(tmp_path / "c.yaml"), tmp_path / "run").model
    rows = _table(tmp_path / "new.csv", n=40, seed=1)
    lines = rows.read_text().splitlines()
    for i in (3, 7):  # an empty category cell, and a missing-value token in one
        cells = lines[i].split(",")
        cells[3] = "" if i == 3 else "NA"
        lines[i] = ",".join(cells)
    rows.write_text("\n".join(lines) + "\n")
    table = pacsv.read_csv(rows)
    want, scored = model.predict_rows(table)
    assert list(np.flatnonzero(~scored)) == [0, 2, 6, 13, 26, 39]  # 0, 13, 26, 39 lack an amount
    session = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, _feeds(session, table))))
    if target == "label":
        o = np.where(scored[:, None], want, 0.0)
        p = np.exp(o - o.max(axis=1, keepdims=True))
        p = np.where(scored[:, None], p / p.sum(axis=1, keepdims=True), np.nan)
        np.testing.assert_allclose(got["probabilities"], p, atol=1e-4)
        labels = [model.classes[k] if ok else "" for k, ok in zip(o.argmax(axis=1), scored)]
        assert list(got["label"]) == labels
    else:
        np.testing.assert_allclose(got["prediction"], want, rtol=1e-4, atol=1e-4)  # NaN where want is NaN
