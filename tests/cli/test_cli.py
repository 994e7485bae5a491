"""The train / predict / evaluate / schema commands, through Typer's runner and the console script."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from helpers import ROOT
from mlpbp.cli import app
from mlpbp.cli.render.train import sparkline

runner = CliRunner()


def _config(tmp_path, **train):
    cfg = {
        "seed": 1,
        "data": {"dataset": "iris", "test_fraction": 0.2, "validation_fraction": 0.1},
        "model": {"hidden": [8], "activation": "tanh"},
        "train": {"epochs": 30, "batch_size": 8, "learning_rate": 0.05, "momentum": 0.9, **train},
        "output": {"dir": str(tmp_path / "run")},
    }
    path = tmp_path / "iris.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    res = runner.invoke(app, ["train", str(_config(tmp)), "--json"])
    assert res.exit_code == 0, res.output
    return tmp, json.loads(res.stdout)


def test_train_json_is_one_object_with_the_documented_fields(trained):
    tmp, d = trained
    assert d["task"] == "classification"
    assert len(d["epochs"]) == 30
    assert {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate"} <= set(d["epochs"][0])
    assert set(d["test"]) == {"loss", "accuracy", "balanced_accuracy", "macro_f1", "per_class"}
    assert d["test"]["accuracy"] > 0.8
    assert set(d["test"]["per_class"][0]) == {"label", "precision", "recall", "f1", "support"}
    assert Path(d["model"]) == tmp / "run" / "model.npz"
    for name in ("model.npz", "history.csv", "config.yaml", "checkpoint.npz"):
        assert (tmp / "run" / name).is_file()
    rows = list(csv.DictReader((tmp / "run" / "history.csv").open()))
    assert len(rows) == 30 and float(rows[-1]["train_loss"]) == pytest.approx(d["epochs"][-1]["train_loss"])
    # the resolved config is written back, defaults filled in
    saved = yaml.safe_load((tmp / "run" / "config.yaml").read_text())
    assert saved["train"]["weight_decay"] == 0.0 and saved["model"]["hidden"] == [8]


def test_train_table_and_summary(tmp_path):
    res = runner.invoke(app, ["train", str(_config(tmp_path, epochs=3)), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    for text in ("epoch", "train loss", "val acc", "test metrics", "accuracy", "loss curve"):
        assert text in res.stdout
    assert (tmp_path / "o" / "model.npz").is_file() and not (tmp_path / "run").exists()


def test_set_overrides_any_key(tmp_path):
    res = runner.invoke(
        app,
        [
            "train",
            str(_config(tmp_path)),
            "--json",
            "--set",
            "train.epochs=2",
            "--set",
            "model.hidden=[3, 3]",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert len(d["epochs"]) == 2
    assert yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())["model"]["hidden"] == [3, 3]


@pytest.mark.parametrize(
    "override, where",
    [
        ("model.activaton=relu", "model.activaton"),
        ("train.epochs=many", "train.epochs"),
        ("model.activation=swish", "model.activation"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, override, where):
    res = runner.invoke(app, ["train", str(_config(tmp_path)), "--set", override])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and where in lines[0] and "Traceback" not in res.output


def test_predict_writes_labels_and_probabilities(trained, tmp_path):
    tmp, d = trained
    out = tmp_path / "pred.csv"
    res = runner.invoke(app, ["predict", d["model"], str(ROOT / "datasets" / "iris.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 150
    assert set(rows[0]) == {"prediction", "p_setosa", "p_versicolor", "p_virginica"}
    truth = [r["species"] for r in csv.DictReader((ROOT / "datasets" / "iris.csv").open())]
    assert np.mean([r["prediction"] == t for r, t in zip(rows, truth)]) > 0.9
    assert all(abs(sum(float(r[f"p_{c}"]) for c in ("setosa", "versicolor", "virginica")) - 1) < 1e-5 for r in rows)


def test_evaluate_reports_metrics(trained):
    tmp, d = trained
    res = runner.invoke(app, ["evaluate", d["model"], str(ROOT / "datasets" / "iris.csv"), "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["rows"] == 150 and 0.9 < m["accuracy"] <= 1 and m["loss"] > 0


def test_regression_predict_and_evaluate_in_target_units(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = 1000 + 50 * X[:, 0] - 20 * X[:, 1]  # large units: targets are standardised for training
    data = tmp_path / "lin.csv"
    data.write_text("a,b,price\n" + "".join(f"{a},{b},{t}\n" for (a, b), t in zip(X, y)))
    cfg = tmp_path / "lin.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"path": "lin.csv", "target": "price"},
                "model": {"hidden": [8], "activation": "identity"},
                # no weight decay: it would shrink this exact linear fit (the default recipe has some)
                "train": {"epochs": 50, "learning_rate": 0.05, "weight_decay": 0.0},
            }
        )
    )
    res = runner.invoke(app, ["train", str(cfg), "--json", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["test"]["r2"] > 0.999
    res = runner.invoke(app, ["predict", str(tmp_path / "o/model.npz"), str(data)])
    pred = [float(r["price"]) for r in csv.DictReader(res.stdout.splitlines())]
    np.testing.assert_allclose(pred, y, atol=2.0)


def test_schema_is_a_json_schema_of_the_config():
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    assert {"seed", "data", "model", "train", "output"} <= set(schema["properties"])


def test_sparkline_falls_with_the_loss():
    line = sparkline([1.0, 0.1, 0.01, 0.001])
    assert line == "█▆▃▁"


def test_installed_console_script_trains_and_exits_cleanly(tmp_path):
    exe = shutil.which("mlpbp")
    assert exe, "the mlpbp console script is not installed: pip install '.[test]'"
    cfg = _config(tmp_path, epochs=2)
    proc = subprocess.run([exe, "train", str(cfg), "--json", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["task"] == "classification"
    bad = subprocess.run([exe, "train", str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope.yaml" in bad.stderr and "Traceback" not in bad.stderr


def test_python_dash_m_runs_the_same_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mlpbp", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout and "gradcheck" in proc.stdout


def test_the_engine_imports_no_cli_or_rendering_code():
    code = (
        "import sys, mlpbp, mlpbp.run.trainer, mlpbp.tools.gradcheck, mlpbp.tools.bench; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'typer', 'click')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"mlpbp {version('mlpbp')}"


def test_train_with_adam_and_a_foreign_optimizer_key(tmp_path):
    cfg = _config(tmp_path, epochs=3)
    out = tmp_path / "adam"
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q", "--set", "train.optimizer=adam"])
    assert res.exit_code == 2  # the config sets momentum: 0.9, an sgd key
    assert res.stderr.count("\n") == 1 and "momentum is a key of optimizer sgd, not of adam" in res.stderr
    assert not out.exists()
    d = yaml.safe_load(cfg.read_text())
    del d["train"]["momentum"]
    cfg.write_text(yaml.safe_dump(d))
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "-q", "--set", "train.optimizer=adam", "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["test"]["accuracy"] > 0.5
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert saved["optimizer"] == "adam" and saved["beta2"] == 0.999 and "momentum" not in saved


def test_json_output_writes_numbers_that_are_not_finite_as_null(capsys):
    from mlpbp.cli.app import echo_json

    echo_json({"loss": float("nan"), "epochs": [{"train_loss": float("inf"), "n": 3}], "ok": (1.5, -float("inf"))})
    assert json.loads(capsys.readouterr().out) == {
        "loss": None,
        "epochs": [{"train_loss": None, "n": 3}],
        "ok": [1.5, None],
    }


def _trained(tmp_path, lines: list[str]) -> str:
    """The model.npz of a 2-epoch default run on the CSV ``lines`` (header first, target y)."""
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"path": "t.csv", "target": "y"}, "train": {"epochs": 2}}))
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "-q", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    return str(tmp_path / "o/model.npz")


def test_a_date_missing_in_every_row_predicted_is_imputed_as_in_a_larger_file(tmp_path):
    # A file whose date cells are all empty (one request of one row, often) is read as a column
    # of type null; it once failed with "column 'day' of type null cannot be read as dates"
    # where the same row among others was imputed.
    rng = np.random.default_rng(0)
    lines = ["x,day,y"]
    for i in range(120):
        day = "" if i % 10 == 0 else f"2024-01-{1 + i % 28:02d}"
        lines.append(f"{rng.normal():.4f},{day},{rng.normal() + (i % 28) / 10:.4f}")
    model = _trained(tmp_path, lines)
    (tmp_path / "one.csv").write_text("x,day\n0.5,\n")
    (tmp_path / "two.csv").write_text("x,day\n0.5,\n0.1,2024-01-09\n")
    one = runner.invoke(app, ["predict", model, str(tmp_path / "one.csv")])
    two = runner.invoke(app, ["predict", model, str(tmp_path / "two.csv")])
    assert one.exit_code == 0 and two.exit_code == 0, one.output
    # the same row and imputed date; float32 matrix products of 1 and 2 rows may differ in the last bit
    np.testing.assert_allclose(float(one.stdout.splitlines()[1]), float(two.stdout.splitlines()[1]), rtol=1e-6)


def test_times_given_as_text_predict_as_the_csv_reader_typed_them(tmp_path):
    # The CSV reader types 13:45:00 cells itself, so the model stores no format for the column;
    # the same times as text (a Parquet string column, a CSV with one '1:45:00 PM' cell) were
    # refused, naming the column's first cell, a valid one.
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    lines = ["x,at,stamp,y"]
    for i in range(120):
        at, stamp = f"{i % 24:02d}:{(7 * i) % 60:02d}:00", f"2024-02-{1 + i % 28:02d} {i % 24:02d}:30:00"
        lines.append(f"{rng.normal():.4f},{at},{stamp},{np.sin(i % 24) + rng.normal() / 10:.4f}")
    model = _trained(tmp_path, lines)
    rows = {"x": [0.5, -0.2, 0.1], "at": ["13:45:00", "07:05:00", "23:59:00"]}
    rows["stamp"] = ["2024-02-03 10:30:00", "2024-02-04 11:30:00", "2024-02-05 12:30:00"]
    (tmp_path / "new.csv").write_text("x,at,stamp\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(*rows.values())))
    pq.write_table(pa.table(rows), tmp_path / "new.parquet")  # every column text but x
    (tmp_path / "pm.csv").write_text((tmp_path / "new.csv").read_text().replace("13:45:00", "1:45:00 PM"))
    want = runner.invoke(app, ["predict", model, str(tmp_path / "new.csv")])
    assert want.exit_code == 0, want.output
    for other in ("new.parquet", "pm.csv"):
        got = runner.invoke(app, ["predict", model, str(tmp_path / other)])
        assert got.exit_code == 0, got.output
        assert got.stdout == want.stdout
    (tmp_path / "bad.csv").write_text((tmp_path / "new.csv").read_text().replace("23:59:00", "1:45:00 XM"))
    res = runner.invoke(app, ["predict", model, str(tmp_path / "bad.csv")])
    assert res.exit_code == 2
    # data.date_format is a training key: a model's reader names the forms it reads instead
    assert res.output.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'bad.csv'}: row 4, column 'at': '1:45:00 XM' is not a time of day (such as 13:45:00,"
        " 13:45 or 1:45 PM)"
    )
    (tmp_path / "bad.csv").write_text((tmp_path / "new.csv").read_text().replace("2024-02-05 12:30:00", "05/02/2024"))
    res = runner.invoke(app, ["predict", model, str(tmp_path / "bad.csv")])
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'bad.csv'}: row 4, column 'stamp': '05/02/2024' is not an ISO-8601 date or timestamp"
        " (such as 2024-01-31 or 2024-01-31 13:45:00), the form this column is read in"
    )


def test_data_shows_a_quoted_cell_with_line_breaks_on_one_line(tmp_path):
    rows = "".join(f'{i},"{"ab"[i % 2]}\nsecond\tline",{i % 2}\n' for i in range(20))
    (tmp_path / "t.csv").write_text("x,note,y\n" + rows)
    (tmp_path / "c.yaml").write_text("data: {path: t.csv, target: y}\n")
    res = runner.invoke(app, ["data", str(tmp_path / "c.yaml")])
    assert res.exit_code == 0, res.output
    (line,) = [row for row in res.stdout.splitlines() if row.startswith("note")]
    assert line.split() == ["note", "feature", "categorical", "0", "2:", "a\\nsecond\\tline,", "b\\nsecond\\tline"]


def test_predict_and_evaluate_note_the_cells_they_fill_in(tmp_path):
    # Training notes its imputed cells and unseen categories; predict and evaluate said nothing of
    # theirs, so a feed that broke (a column arriving empty, a renamed level) went unseen.
    rng = np.random.default_rng(0)
    lines = ["x,kind,y"] + [f"{rng.normal():.4f},{'ab'[i % 2]},{i % 3}" for i in range(90)]
    model = _trained(tmp_path, lines)
    from mlpbp.run.model_file import load_model

    (x,) = [c for c in load_model(model).preprocessor.columns if c.name == "x"]
    (tmp_path / "new.csv").write_text("x,kind,y\n0.5,a,1\n,b,2\n,z,0\n-0.1,,1\n")
    res = runner.invoke(app, ["predict", model, str(tmp_path / "new.csv")])
    assert res.exit_code == 0, res.output
    notes = [" ".join(n.split()) for n in res.stderr.split("note: ")[1:]]
    assert len(notes) == 3 and notes[0] == (
        f"new.csv: column 'x': 2 missing cell(s) filled with the training median {x.fill:.6g} (first at row 3;"
        " data.missing: impute)"
    )
    assert notes[1] == "new.csv: column 'kind': 1 missing cell(s) filed under the category 'missing' (first at row 5;" \
        " data.missing: impute)"  # fmt: skip
    assert notes[2] == (
        "new.csv: column 'kind': 2 row(s) with a category the training split lacks ('z', first at row 4): encoded"
        " as all zeros (data.handle_unknown: infrequent; the column has no infrequent level)"
    )
    assert len(res.stdout.strip().splitlines()) == 5  # header and one line per row
    res = runner.invoke(app, ["evaluate", model, str(tmp_path / "new.csv")])
    assert res.exit_code == 0, res.output
    assert [" ".join(n.split()) for n in res.stderr.split("note: ")[1:]] == notes
    (tmp_path / "full.csv").write_text("x,kind,y\n0.5,a,1\n0.2,b,2\n")
    res = runner.invoke(app, ["predict", model, str(tmp_path / "full.csv")])
    assert res.exit_code == 0 and "note" not in res.stderr
