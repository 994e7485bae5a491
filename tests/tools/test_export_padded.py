"""Defect 2 of issue 18: a table written as the raw UCI Adult table is (header names and cells
with spaces around them, missing-value tokens with spaces too), exported to ONNX and fed the
file's own rows by its own header names, gives `mlpbp predict`'s labels, and its probabilities
to 1e-5."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from mlpbp.cli import app
from mlpbp.data.cells import NA_VALUES
from mlpbp.tools.export import STRING_OPSET, WHITESPACE

PAD = ["", " ", "  ", "\t", " \u00a0", "\u3000"]  # what may sit around a text cell: spaces, a tab, no-break spaces
NUMBER_PAD = ["", " ", "  ", "\t"]  # around a number (the reader reads a number with ASCII spaces around it)
COLOURS = ["red", "blue", "green", "light grey"]
CITIES = ["Oslo", "Lima", "Kyoto", "Accra", "Quito", "Minsk", "Hanoi"]


def _cell(rng, text: str, pad=PAD) -> str:
    return f"{pad[rng.integers(len(pad))]}{text}{pad[rng.integers(len(pad))]}"


def _table(path, n: int, seed: int, unseen: bool = False) -> None:
    """Columns ' age ' (numbers), ' colour' (categories, some missing), 'city ' (rare ones in
    the infrequent level), ' grade ' (integers read as categories), ' member' (booleans) and
    ' label ' (the target); every cell but the booleans padded at random."""
    rng = np.random.default_rng(seed)
    lines = [" age , colour,city , grade , member, label "]
    for i in range(n):
        age = rng.integers(18, 80)
        colour = COLOURS[rng.integers(4)] if i % 11 else ["", "NA", " ?"][i % 3]
        city = CITIES[rng.integers(3)] if i % 9 else CITIES[3 + i % 4]
        if unseen and i % 17 == 0:
            city = "Paris"
        grade = rng.integers(1, 4)
        member = bool(rng.integers(2))
        score = (age - 45) / 15 + (colour == "red") - (colour == "") + 0.5 * (grade - 2) + member - 0.3
        label = "high" if score + rng.normal(scale=0.5) > 0 else "low"
        cells = [str(age), colour, city, str(grade), str(member), label]
        # booleans as written (pyarrow reads a padded one as text)
        padded = [_cell(rng, c, NUMBER_PAD if k == 0 else PAD) for k, c in enumerate(cells[:4])]
        lines.append(",".join([*padded, cells[4], _cell(rng, label)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def padded(tmp_path_factory, runner):
    tmp = tmp_path_factory.mktemp("padded")
    _table(tmp / "train.csv", 400, 0)
    cfg = {
        "data": {
            "path": "train.csv",
            "target": "label",
            "missing": "impute",
            "na_values": ["?"],
            "columns": {"grade": "categorical"},
            "min_frequency": 20,
            "handle_unknown": "infrequent",
        },
        "model": {"hidden": [8]},
        "train": {"epochs": 20, "batch_size": 16},
    }
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", str(tmp / "c.yaml"), "--out", str(tmp / "run"), "-q"])
    assert res.exit_code == 0, res.output
    model = tmp / "run" / "model.npz"
    res = runner.invoke(app, ["export", str(model), "--json"])
    assert res.exit_code == 0, res.output
    return tmp, model, json.loads(res.stdout)


def _feeds(session, path) -> dict:
    """The file's own cells, by its own header names: text as written, numbers parsed as a
    deployment would (NaN for a missing-value token)."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    header, body = rows[0], rows[1:]
    feeds = {}
    for i in session.get_inputs():
        cells = [r[header.index(i.name)] for r in body]
        if i.type == "tensor(string)":
            feeds[i.name] = np.array(cells, dtype=object)[:, None]
        else:
            values = [np.nan if c.strip() in NA_VALUES else float(c) for c in cells]
            feeds[i.name] = np.array(values, np.float32)[:, None]
    return feeds


def test_inputs_are_the_files_own_header_names(padded):
    tmp, model, info = padded
    assert info["inputs"] == [" age ", " colour", "city ", " grade ", " member"]
    assert info["opset"] == STRING_OPSET
    proto = onnx.load(model.with_suffix(".onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["columns"]) == {
        " age ": "age",
        " colour": "colour",
        "city ": "city",
        " grade ": "grade",
        " member": "member",
    }
    # grade and member: categories read from integers and booleans, said in one line each
    assert len(info["notes"]) == 2 and "'grade'" in info["notes"][0] and "'member'" in info["notes"][1]
    assert props["notes"].split("\n") == info["notes"]


@pytest.mark.parametrize("unseen", [False, True], ids=["known", "unseen"])
def test_onnx_fed_the_files_own_rows_matches_predict(padded, runner, unseen):
    tmp, model, _ = padded
    rows = tmp / f"new-{unseen}.csv"
    _table(rows, 200, 1 + unseen, unseen=unseen)  # other paddings than training's
    res = runner.invoke(app, ["predict", str(model), str(rows)])
    assert res.exit_code == 0, res.output
    predicted = list(csv.DictReader(io.StringIO(res.stdout)))
    session = ort.InferenceSession(str(model.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    label, p = session.run(None, _feeds(session, rows))
    assert list(label) == [r["prediction"] for r in predicted]
    expected = np.array([[float(r["p_high"]), float(r["p_low"])] for r in predicted])
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-5)
    assert len(set(label)) == 2  # both classes: a real comparison


def test_whitespace_is_what_the_reader_strips():
    """The graph's set of spaces equals what pyarrow's utf8_trim_whitespace (cells) and
    str.strip (header names) strip, over every code point."""
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    trimmed = pc.utf8_trim_whitespace(pa.array([chr(c) for c in points])).to_pylist()
    assert [c for c, t in zip(points, trimmed) if t == ""] == list(WHITESPACE)
    assert [c for c in points if chr(c).strip() == ""] == list(WHITESPACE)


def test_a_column_named_as_a_value_inside_the_graph_is_one_line(runner, tmp_path):
    rows = "".join(f"{i % 7},{(3 * i) % 5},{'ab'[i % 2]}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("features,x,y\n" + rows)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"path": "t.csv", "target": "y"}, "train": {"epochs": 1}}))
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["export", str(tmp_path / "run" / "model.npz")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "column 'features' has the name of a value inside the ONNX graph" in res.stderr
