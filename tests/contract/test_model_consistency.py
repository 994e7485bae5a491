"""Model files re-saved with valid checksums but inconsistent or absurd contents (issue 19): each
is refused when loaded, in one line naming the file, the array or record and what is allowed,
exit 2, by every command that loads a model (predict, evaluate, inspect, export), and no file
changes. Files as training writes them, and the old format 1 files, keep loading."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mlpbp.cli import app
from mlpbp.run.model_file import load_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROWS = "x0,x1,y\n0.5,0.2,0\n-0.3,0.9,1\n1.2,-0.4,1\n"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _arrays(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _set(key: str, index, value) -> Callable[[dict], None]:
    def mutate(a: dict) -> None:
        a[key] = a[key].copy()
        a[key][index] = value

    return mutate


def _meta(**changes) -> Callable[[dict], None]:
    def mutate(a: dict) -> None:
        meta = json.loads(str(a["meta"]))
        meta.update(changes)
        a["meta"] = np.array(json.dumps(meta))

    return mutate


def _drop_column(a: dict) -> None:  # one column fewer in the records than the first layer takes
    meta = json.loads(str(a["meta"]))
    meta["preprocessing"]["columns"] = meta["preprocessing"]["columns"][:1]
    meta["feature_names"] = ["x0"]
    a["meta"] = np.array(json.dumps(meta))


ALLOWED_SCALE = "allowed: 1 (training leaves a constant column unscaled), or a scale above {floor} (the round-off of"

# (id, the model it starts from ("good": the tiny run, or a fixture), mutation, the line after "error: {path}: ")
CASES = [
    (
        "weight-3e38",
        "good",
        _set("param.W2", (0, 0), 3e38),
        "invalid model file: parameter W2 holds 3e+38 at [0, 0]; allowed: finite values within ±1.8e+19 for a"
        " float32 model (larger ones overflow its products)",
    ),
    (
        "weight-inf",
        "good",
        _set("param.b1", 2, np.inf),
        "invalid model file: parameter b1 holds inf at [2] (not finite); allowed: finite values within ±1.8e+19 for a"
        " float32 model (larger ones overflow its products)",
    ),
    (
        "weight-nan",
        "good",
        _set("param.W1", (1, 0), np.nan),
        "invalid model file: parameter W1 holds nan at [1, 0] (not finite); allowed: finite values within ±1.8e+19"
        " for a float32 model (larger ones overflow its products)",
    ),
    (
        "x-scale-1e-300",
        "good",
        _set("x_scale", 0, 1e-300),
        "invalid model file: x_scale[0] is 1e-300; "
        + ALLOWED_SCALE.format(floor="2.2e-16")
        + " x_mean[0]) and at most 3.4e+38 (the model's float32)",
    ),
    (
        "x-scale-0",
        "good",
        _set("x_scale", 1, 0.0),
        "invalid model file: x_scale[1] is 0; "
        + ALLOWED_SCALE.format(floor="2.2e-16")
        + " x_mean[1]) and at most 3.4e+38 (the model's float32)",
    ),
    (
        "x-scale-negative",
        "good",
        _set("x_scale", 0, -2.0),
        "invalid model file: x_scale[0] is -2; "
        + ALLOWED_SCALE.format(floor="2.2e-16")
        + " x_mean[0]) and at most 3.4e+38 (the model's float32)",
    ),
    (
        "x-scale-beyond-float32",
        "good",
        _set("x_scale", 0, 1e300),
        "invalid model file: x_scale[0] is 1e+300; "
        + ALLOWED_SCALE.format(floor="2.2e-16")
        + " x_mean[0]) and at most 3.4e+38 (the model's float32)",
    ),
    (
        "x-mean-beyond-float32",
        "good",
        _set("x_mean", 1, -1e300),
        "invalid model file: x_mean[1] is -1e+300; allowed: finite means within ±3.4e+38 (the model's float32)",
    ),
    (
        "x-mean-nan",
        "good",
        _set("x_mean", 0, np.nan),
        "invalid model file: x_mean[0] is nan; allowed: finite means within ±3.4e+38 (the model's float32)",
    ),
    (
        "y-scale-1e-300",  # a format 1 regressor in float64
        "v0.1-sine-model.npz",
        _set("y_scale", 0, 1e-300),
        "invalid model file: y_scale[0] is 1e-300; "
        + ALLOWED_SCALE.format(floor="2.2e-16")
        + " y_mean[0]) and at most 1.8e+308 (the model's float64)",
    ),
    (
        "shapes-do-not-chain",
        "good",
        lambda a: a.update({"param.W2": np.zeros((2, 5), np.float32)}),
        "invalid model file: parameter W2 has the wrong shape (2, 5); widths [2, 4, 2] need (2, 4)",
    ),
    (
        "widths-do-not-match-the-arrays",
        "good",
        _meta(widths=[2, 5, 2]),
        "invalid model file: parameter W1 has the wrong shape (4, 2); widths [2, 5, 2] need (5, 2)",
    ),
    (
        "weights-of-integers",
        "good",
        lambda a: a.update({"param.b2": a["param.b2"].astype(np.int32)}),
        "invalid model file: parameter b2 holds int32 values; allowed: floating point, of shape (2,)",
    ),
    (
        "feature-names-count-v1",
        "v0.1-sine-model.npz",
        _meta(feature_names=["x", "z"]),
        "invalid model file: feature_names has 2 names, but the first layer (widths[0]) takes 1 inputs",
    ),
    (
        "feature-names-not-the-records",
        "good",
        _meta(feature_names=["x0", "x1", "x2"]),
        "invalid model file: feature_names (3 names: 'x0', 'x1', 'x2') differ from the columns of the"
        " preprocessing record (2 names: 'x0', 'x1'); they must be the same names in the same order",
    ),
    (
        "columns-fewer-than-the-inputs",
        "good",
        _drop_column,
        "is not an mlpbp model file (invalid preprocessing record: preprocessing: expected 1 means and scales,"
        " got (2,))",
    ),
    (
        "feature-names-repeated",
        "v0.1-iris-model.npz",
        _meta(feature_names=["a", "b", "a", "c"]),
        "invalid model file: feature_names repeats 'a'; each name must be distinct",
    ),
    (
        "classes-count",
        "good",
        _meta(classes=["0", "1", "2"]),
        "invalid model file: classes has 3 labels, but the output layer (widths[-1]) has 2 units; a classifier has"
        " one label per output unit",
    ),
    (
        "classes-repeated",
        "good",
        _meta(classes=["0", "0"]),
        "invalid model file: classes repeats '0'; each name must be distinct",
    ),
    (
        "task-regression-with-classes",
        "good",
        _meta(task="regression"),
        "invalid model file: classes holds 2 labels, but the task is regression (allowed: null)",
    ),
    (
        "task-regression-with-a-classification-loss",
        "good",
        _meta(task="regression", classes=None),
        "invalid model file: loss 'cross_entropy' is a classification loss, but the task is regression (allowed"
        " for regression: square, binary_cross_entropy, poisson, huber, absolute, quantile)",
    ),
    (
        "target-names-for-a-classifier",
        "good",
        _meta(target_name=["a", "b"]),
        "invalid model file: target_name is ['a', 'b']; a classifier has one target column (a string)",
    ),
    (
        "class-weight-count",
        "good",
        _meta(class_weight=[1.0, 2.0, 3.0]),
        "invalid model file: class_weight is [1.0, 2.0, 3.0]; allowed: null or 2 finite weights > 0, one per class",
    ),
    (
        "unknown-loss",
        "good",
        _meta(loss="hinge"),
        "is not an mlpbp model file (invalid architecture in meta: loss is 'hinge'; allowed: square, cross_entropy,"
        " binary_cross_entropy, poisson, huber, absolute, quantile)",
    ),
]


def _command(name: str, model: Path, rows: Path, tmp: Path) -> list[str]:
    return {
        "predict": ["predict", str(model), str(rows)],
        "evaluate": ["evaluate", str(model), str(rows)],
        "inspect": ["inspect", str(model)],
        "export": ["export", str(model), "-o", str(tmp / "out.onnx")],
    }[name]


@pytest.mark.parametrize("command", ["predict", "evaluate", "inspect", "export"])
@pytest.mark.parametrize("source, mutate, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_inconsistent_model_file_is_one_line(tmp_path, runner, good_run, command, source, mutate, expected):
    start = good_run / "model.npz" if source == "good" else FIXTURES / source
    arrays = _arrays(start)
    mutate(arrays)
    model = tmp_path / "bad.npz"
    np.savez(model, **arrays)  # valid checksums: NumPy wrote it
    rows = tmp_path / "rows.csv"
    rows.write_text(ROWS)
    before = _files(tmp_path)
    res = runner.invoke(app, _command(command, model, rows, tmp_path))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2, res.stderr
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.stderr + res.stdout
    assert lines == [f"error: {model}: {expected}" if expected.startswith("invalid") else f"error: {model} {expected}"]
    assert _files(tmp_path) == before


def test_the_table_covers_the_campaign():
    ids = {c[0] for c in CASES}
    assert len(ids) == len(CASES)
    assert {"weight-3e38", "x-scale-1e-300", "shapes-do-not-chain", "feature-names-count-v1"} <= ids
    assert {"task-regression-with-a-classification-loss", "classes-count", "target-names-for-a-classifier"} <= ids


@pytest.mark.parametrize("name", ["v0.1-iris-model.npz", "v0.1-sine-model.npz"])
def test_old_format_files_still_load(name):
    model = load_model(FIXTURES / name)
    assert model.net.widths[0] == len(model.feature_names)


def test_limits_follow_the_dtype(tmp_path, good_run):
    """3e38 overflows float32's products but not float64's: a float64 model holding it loads,
    and predicts finite values; a constant column's scale of 1 loads whatever its mean."""
    arrays = _arrays(good_run / "model.npz")
    _meta(dtype="float64")(arrays)
    arrays["param.W2"] = arrays["param.W2"].astype(np.float64)
    arrays["param.W2"][0, 0] = 3e38
    arrays["x_mean"], arrays["x_scale"] = np.array([1e20, 0.0]), np.array([1.0, 1.0])
    np.savez(tmp_path / "m.npz", **arrays)
    model = load_model(tmp_path / "m.npz")
    assert model.net.dtype == np.float64 and model.net.params["W2"][0, 0] == 3e38
    out = model.predict_outputs(np.array([[1e20, 0.5], [1e20, -0.5]]))
    assert np.isfinite(out).all()


def test_a_multi_output_regressor_keeps_its_target_list(tmp_path, runner):
    """A target list as training writes it (one name per output) loads, inspects and exports;
    one of another length is refused."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    data = tmp_path / "two.csv"
    data.write_text("a,b,y1,y2\n" + "".join(f"{a},{b},{a + b},{a - b}\n" for a, b in X))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"seed: 0\ndata: {{path: {data}, target: [y1, y2]}}\nmodel: {{hidden: [3]}}\ntrain: {{epochs: 1}}\n")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.stderr
    good = tmp_path / "run" / "model.npz"
    assert load_model(good).target_name == ["y1", "y2"]
    for argv in (["inspect", str(good)], ["export", str(good), "-o", str(tmp_path / "m.onnx")]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 0, res.stderr
    arrays = _arrays(good)
    _meta(target_name=["y1", "y2", "y3"])(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    res = runner.invoke(app, ["inspect", str(tmp_path / "bad.npz")])
    assert res.exit_code == 2
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'bad.npz'}: invalid model file: target_name is ['y1', 'y2', 'y3']; a regression"
        " model with 2 outputs has a string or a list of 2 strings"
    )


def test_a_target_transforms_scale_may_be_any_positive_spread(tmp_path, runner):
    """data.target_transform's scale is its transformed targets' spread (TargetScaler: any
    positive value): a tiny one loads; 0 is refused, naming what is allowed."""
    rng = np.random.default_rng(1)
    data = tmp_path / "pos.csv"
    data.write_text("x,y\n" + "".join(f"{x:.4f},{abs(x) * 3 + 0.5:.4f}\n" for x in rng.normal(size=60)))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"seed: 0\ndata: {{path: {data}, target: y, target_transform: log1p}}\nmodel: {{hidden: [3]}}\n"
        "train: {epochs: 1}\n"
    )
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 0, res.stderr
    arrays = _arrays(tmp_path / "run" / "model.npz")
    assert "target_transform" in json.loads(str(arrays["meta"]))
    _set("y_scale", 0, 1e-20)(arrays)
    np.savez(tmp_path / "tiny.npz", **arrays)
    assert load_model(tmp_path / "tiny.npz").y_scaler.scale[0] == 1e-20
    _set("y_scale", 0, 0.0)(arrays)
    np.savez(tmp_path / "zero.npz", **arrays)
    res = runner.invoke(app, ["inspect", str(tmp_path / "zero.npz")])
    assert res.exit_code == 2 and res.stderr.strip() == (
        f"error: {tmp_path / 'zero.npz'}: invalid model file: y_scale[0] is 0; allowed: a positive scale (its"
        " target transform's spread) at most 1.8e+308"
    )
