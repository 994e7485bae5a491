"""`mlpbp hessian` on a saved model and a labelled CSV: its numbers against the dense Hessian
of the same rows, the JSON it documents, the PNG, and one-line errors for bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from helpers import ROOT
from mlpbp.cli import app
from mlpbp.engine.curvature import Curvature
from mlpbp.run.model_file import load_model
from mlpbp.tools.hessian import float64_copy

FIXTURES = ROOT / "tests" / "fixtures"
MODEL, ROWS = FIXTURES / "v0.1-iris-model.npz", FIXTURES / "iris-rows.csv"


def _dense(kind: str, rows: np.ndarray | None = None) -> np.ndarray:
    model = load_model(MODEL)
    X, y = model.labelled_rows(ROWS)
    if rows is not None:
        X, y = X[rows], y[rows]
    op = Curvature(float64_copy(model.net), X, y, kind)
    return np.column_stack([op.matvec(e) for e in np.eye(op.shape[0])])


def _run(runner, *args):
    res = runner.invoke(app, ["hessian", str(MODEL), str(ROWS), *args])
    return res


@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_json_eigenvalues_and_trace_match_the_dense_matrix(runner, kind):
    res = _run(runner, "--curvature", kind, "--top-k", "3", "--bottom-k", "1", "--trace", "--density", "--json")
    assert res.exit_code == 0, res.stderr
    r = json.loads(res.stdout)
    H = _dense(kind)
    eig = np.linalg.eigvalsh(H)
    assert (r["n_params"], r["rows"], r["curvature"]) == (43, 15, kind)
    np.testing.assert_allclose(r["top_eigenvalues"], eig[::-1][:3], rtol=1e-6)
    if kind == "hessian":
        np.testing.assert_allclose(r["bottom_eigenvalues"], eig[:1], rtol=1e-6)
    assert r["lanczos"]["converged"] and r["lanczos"]["max_relative_residual"] <= 1e-6
    t = r["trace"]
    assert abs(t["estimate"] - np.trace(H)) <= 3 * t["std_error"] and t["probes"] == 100
    grid, values = np.array(r["density"]["grid"]), np.array(r["density"]["values"])
    assert np.trapezoid(values, grid) == pytest.approx(1.0, abs=1e-4)
    assert set(r) == {
        "n_params", "rows", "curvature", "top_eigenvalues", "bottom_eigenvalues", "lanczos", "trace",
        "density", "products", "seconds", "mode",
    }  # fmt: skip
    assert r["mode"] == "eval"  # issue 20: the Hessian tools analyse the model as it predicts
    assert r["products"] >= r["lanczos"]["steps"] + 100


def test_only_what_was_asked_and_a_seeded_row_sample(runner):
    a = json.loads(_run(runner, "--rows", "8", "--seed", "3", "--json").stdout)
    b = json.loads(_run(runner, "--rows", "8", "--seed", "3", "--json").stdout)
    assert set(a) == {"n_params", "rows", "curvature", "mode", "top_eigenvalues", "lanczos", "products", "seconds"}
    assert a["rows"] == 8 and a["top_eigenvalues"] == b["top_eigenvalues"]
    rows = np.sort(np.random.default_rng(3).choice(15, 8, replace=False))
    assert a["top_eigenvalues"][0] == pytest.approx(np.linalg.eigvalsh(_dense("hessian", rows))[-1], rel=1e-6)


def test_terminal_report_and_png(runner, tmp_path):
    png = tmp_path / "density.png"
    res = _run(runner, "--trace", "--plot", str(png))
    assert res.exit_code == 0, res.stderr
    for text in ("top eigenvalues", "trace", "Hutch++", "spectral density", "converged"):
        assert text in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_one_line(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = _run(runner, "--plot", str(tmp_path / "d.png"))
    assert res.exit_code == 2 and res.stderr.strip() == "error: --plot needs matplotlib: install mlpbp[plot]"
    assert not (tmp_path / "d.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "44"], "--top-k 44 is larger than the model's 43 parameters"),
        (["--bottom-k", "50"], "--bottom-k 50 is larger than the model's 43 parameters"),
        (["--curvature", "fisher"], "--curvature must be one of hessian, gauss_newton"),
        (["--rows", "0"], "--rows must be >= 1"),
        (["--plot", "d.pdf"], "--plot writes a PNG"),
        (["--trace", "--probes", "3"], "--probes must be >= 6"),
    ],
)
def test_bad_options_are_one_line_exit_2(runner, args, message):
    res = _run(runner, *args)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


def test_a_table_that_does_not_match_the_model_is_one_line_exit_2(runner):
    res = runner.invoke(app, ["hessian", str(MODEL), str(FIXTURES / "sine-rows.csv")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "missing feature columns" in res.stderr
    res = runner.invoke(app, ["hessian", str(FIXTURES / "v0.1-sine-model.npz"), str(ROWS)])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr


def test_a_row_whose_target_is_missing_is_skipped_with_a_note(runner, tmp_path):
    lines = ROWS.read_text().splitlines()
    cells = lines[4].split(",")
    lines[4] = ",".join([*cells[:-1], ""])  # data row 4 (line 5): no species
    (tmp_path / "holes.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "kept.csv").write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    args = ["--top-k", "2", "--bottom-k", "1", "--trace", "--json"]
    res = runner.invoke(app, ["hessian", str(MODEL), str(tmp_path / "holes.csv"), *args])
    assert res.exit_code == 0, res.stderr
    assert res.stderr.splitlines() == ["note: holes.csv: skipping 1 row(s) whose target is missing"]
    got = json.loads(res.stdout)
    want = json.loads(runner.invoke(app, ["hessian", str(MODEL), str(tmp_path / "kept.csv"), *args]).stdout)
    assert got["rows"] == want["rows"] == 14
    assert got["skipped"] == {"missing_target": 1, "missing_feature": 0} and "skipped" not in want
    np.testing.assert_allclose(got["top_eigenvalues"], want["top_eigenvalues"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got["bottom_eigenvalues"], want["bottom_eigenvalues"], rtol=0, atol=1e-10)
    assert got["trace"]["estimate"] == pytest.approx(want["trace"]["estimate"], abs=1e-10)
    # ... and the dense Hessian of the 14 rows agrees with both.
    keep = np.setdiff1d(np.arange(15), [3])
    assert got["top_eigenvalues"][0] == pytest.approx(np.linalg.eigvalsh(_dense("hessian", keep))[-1], rel=1e-6)
    # The text report says the same on stderr.
    res = runner.invoke(app, ["hessian", str(MODEL), str(tmp_path / "holes.csv")])
    assert res.exit_code == 0 and "skipping 1 row(s) whose target is missing" in res.stderr


def test_repeated_eigenvalues_are_listed_as_often_as_they_occur(runner, tmp_path):
    """Issue 18/19: `--bottom-k K` on a Hessian with a null space reported 0 once, then the next
    distinct values, all marked converged. A model with no hidden layer and 3 square-loss outputs,
    analysed on 10 rows of 40 inputs, has every eigenvalue 3 times and 93 of 123 at 0 (too many
    parameters for the dense path at K = 4): both ends equal the dense Hessian's, copies included."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 40))
    Y = X[:, :3] + 0.1 * rng.standard_normal((40, 3))
    header = ",".join([f"x{i}" for i in range(40)] + ["y0", "y1", "y2"])
    for name, rows in (("train.csv", slice(None)), ("few.csv", slice(0, 10))):
        lines = [",".join(f"{v:.6f}" for v in row) for row in np.hstack([X, Y])[rows]]
        (tmp_path / name).write_text("\n".join([header, *lines]) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {path: train.csv, target: [y0, y1, y2]}\nmodel: {hidden: [], loss: square}\n"
        "train: {epochs: 3}\noutput: {dir: out}\n"
    )
    res = runner.invoke(app, ["train", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    model_path, rows = tmp_path / "out" / "model.npz", tmp_path / "few.csv"
    res = runner.invoke(app, ["hessian", str(model_path), str(rows), "--top-k", "4", "--bottom-k", "4", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    model = load_model(model_path)
    Xs, ys = model.labelled_rows(rows)
    op = Curvature(float64_copy(model.net), Xs, ys, "hessian")
    eig = np.linalg.eigvalsh(np.column_stack([op.matvec(e) for e in np.eye(op.shape[0])]))
    assert r["n_params"] == 123 and (np.abs(eig) < 1e-12 * eig[-1]).sum() == 93
    assert r["lanczos"]["converged"] is True
    np.testing.assert_allclose(r["top_eigenvalues"], eig[::-1][:4], rtol=1e-6)
    np.testing.assert_allclose(r["bottom_eigenvalues"], eig[:4], rtol=0, atol=1e-6 * eig[-1])
