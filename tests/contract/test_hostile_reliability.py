"""The cases of issue 19's fault campaign: each is exactly one line on stderr with its exit code,
and no file in the scratch folder changes (the run folder, the inputs)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpbp.cli import app

M = "data: {dataset: moons, n_samples: 60}\n"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tmp(tmp_path, good_run) -> Path:
    shutil.copytree(good_run, tmp_path / "run")
    (tmp_path / "rows.csv").write_text("x0,x1,y\n1e39,0.5,0\n0.2,0.3,1\n")
    return tmp_path


def _write(tmp: Path, name: str, text: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text)
    return p


def _nested_parquet(tmp: Path) -> Path:
    path = tmp / "nested.parquet"
    pq.write_table(pa.table({"x": [[1.0, 2.0]] * 20, "s": [{"a": 1}] * 20, "y": [0, 1] * 10}), path)
    return path


def _huge_cell_csv(tmp: Path) -> Path:
    rows = "".join(f"{i},{i % 2}\n" for i in range(20))
    return _write(tmp, "huge.csv", "x,y\n" + rows + "a" * (6 * 2**20) + ",1\n")


def _config_for(tmp: Path, name: str, rows: str) -> Path:
    _write(tmp, name, rows)
    return _write(tmp, "c.yaml", f"data: {{path: {tmp / name}}}\noutput: {{dir: {tmp / 'new'}}}\n")


# (id, argv builder, exit code, the exact line: a function of the scratch folder)
CASES: list[tuple[str, Callable[[Path], list[str]], int, Callable[[Path], str]]] = [
    (
        "predict-out-is-input",
        lambda t: ["predict", str(t / "run/model.npz"), str(t / "rows.csv"), "--out", str(t / "rows.csv")],
        2,
        lambda t: (
            f"--out {t / 'rows.csv'} is the input table: writing it would replace the input table; choose another path"
        ),
    ),
    (
        "export-out-is-model",
        lambda t: ["export", str(t / "run/model.npz"), "-o", str(t / "run/model.npz")],
        2,
        lambda t: (
            f"--out {t / 'run/model.npz'} is the model file: writing it would replace the model file; choose"
            " another path"
        ),
    ),
    (
        "second-run-into-a-run",
        lambda t: ["train", str(_write(t, "c.yaml", M)), "--out", str(t / "run"), "-q"],
        2,
        lambda t: (
            f"output directory {t / 'run'} already holds a run (config.yaml, checkpoint.npz, history.csv,"
            " model.npz); pass --overwrite to replace it, --resume to continue it, or choose another output directory"
        ),
    ),
    (
        "out-is-a-file",
        lambda t: ["train", str(_write(t, "c.yaml", M)), "--out", str(t / "rows.csv"), "-q"],
        2,
        lambda t: f"output directory {t / 'rows.csv'} is a file, not a folder; choose another output directory",
    ),
    (
        "predict-cell-beyond-float32",
        lambda t: ["predict", str(t / "run/model.npz"), str(t / "rows.csv")],
        2,
        lambda t: (
            f"{t / 'rows.csv'}: row 2, column 'x0': 1e+39 is beyond the range of the model's float32 (largest"
            " 3.4e+38 after standardising)"
        ),
    ),
    (
        "evaluate-cell-beyond-float32",
        lambda t: ["evaluate", str(t / "run/model.npz"), str(t / "rows.csv")],
        2,
        lambda t: (
            f"{t / 'rows.csv'}: row 2, column 'x0': 1e+39 is beyond the range of the model's float32 (largest"
            " 3.4e+38 after standardising)"
        ),
    ),
    (
        "train-cell-beyond-float32",
        lambda t: ["train", str(_config_for(t, "big.csv", "x0,x1,y\n1e308,0.5,0\n" + "0.1,0.2,1\n" * 20)), "-q"],
        2,
        lambda t: (
            f"{t / 'big.csv'}: row 2, column 'x0': 1e+308 is beyond the range of float32 (largest 3.4e+38);"
            " set train.dtype: float64"
        ),
    ),
    (
        "yaml-nested-1000-deep",
        lambda t: ["train", str(_write(t, "c.yaml", M + "model: " + "[" * 1000 + "]" * 1000 + "\n")), "-q"],
        2,
        lambda t: f"{t / 'c.yaml'}: nested too deeply (a config needs a few levels)",
    ),
    (
        "yaml-nested-100-deep",
        lambda t: ["train", str(_write(t, "c.yaml", M + "model: " + "[" * 100 + "]" * 100 + "\n")), "-q"],
        2,
        lambda t: f"{t / 'c.yaml'}: nested more than 32 levels deep (a config has 3)",
    ),
    (
        "negative-seed",
        lambda t: ["train", str(_write(t, "c.yaml", "seed: -1\n" + M)), "--out", str(t / "new"), "-q"],
        2,
        lambda t: "config error at seed: Input should be greater than or equal to 0 (got -1)",
    ),
    (
        "negative-seed-hessian",
        lambda t: ["hessian", str(t / "run/model.npz"), str(t / "rows.csv"), "--seed", "-1"],
        2,
        lambda t: "--seed must be >= 0; got -1",
    ),
    (
        "negative-seed-gradcheck",
        lambda t: ["gradcheck", str(_write(t, "c.yaml", M)), "--seed", "-3"],
        2,
        lambda t: "--seed must be an integer >= 0; got -3",
    ),
    (
        "negative-seed-gradcheck-builtin",
        lambda t: ["gradcheck", "--seed", "-1"],
        2,
        lambda t: "--seed must be an integer >= 0; got -1",
    ),
    (
        "parquet-nested-columns",
        lambda t: [
            "train",
            str(_write(t, "c.yaml", f"data: {{path: {_nested_parquet(t)}, target: y}}\n")),
            "--out",
            str(t / "new"),
            "-q",
        ],
        2,
        lambda t: (
            f"{t / 'nested.parquet'}: column 'x' holds nested values (list<element: double>); mlpbp reads"
            " columns of numbers, text, booleans and dates: flatten it into columns, or write the file without it"
        ),
    ),
    (
        "parquet-nested-columns-data",
        lambda t: ["data", str(_write(t, "c.yaml", f"data: {{path: {_nested_parquet(t)}, target: y}}\n"))],
        2,
        lambda t: (
            f"{t / 'nested.parquet'}: column 'x' holds nested values (list<element: double>); mlpbp reads"
            " columns of numbers, text, booleans and dates: flatten it into columns, or write the file without it"
        ),
    ),
    (
        "model-truncated-to-pk",
        lambda t: ["predict", str(_write(t, "pk.npz", b"PK")), str(t / "rows.csv")],
        2,
        lambda t: (
            f"{t / 'pk.npz'} is not an mlpbp model file (ValueError: not a zip archive: truncated, damaged or"
            " another kind of file)"
        ),
    ),
    (
        "cell-of-6-mib",  # read with pyarrow blocks grown to fit; then an ordinary one-line refusal
        lambda t: [
            "train",
            str(_write(t, "c.yaml", f"data: {{path: {_huge_cell_csv(t)}, target: y}}\n")),
            "--out",
            str(t / "new"),
            "-q",
        ],
        2,
        lambda t: "",  # any one line but the block-size one (checked below)
    ),
]


def test_the_table_covers_the_campaign():
    assert len(CASES) >= 14 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("build, code, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_case(tmp, runner, build, code, expected):
    argv = build(tmp)
    before = _files(tmp)
    res = runner.invoke(app, argv)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == code, res.stderr
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.stderr + res.stdout
    assert len(lines) == 1, res.stderr
    want = expected(tmp)
    if want:
        assert lines[0] == f"error: {want}"
    else:
        assert lines[0].startswith("error: ") and "straddl" not in lines[0] and "block size" not in lines[0]
    assert _files(tmp) == before, "a file changed"
    assert not (tmp / "new").exists()


def test_hessian_returns_every_value_asked_for_on_a_repeated_eigenvalue():
    from mlpbp.engine.curvature import extreme_eigenvalues

    rng = np.random.default_rng(0)
    lam = np.concatenate([np.zeros(9), rng.normal(size=41) * 3])  # a 9-fold zero, as in the campaign
    Q, _ = np.linalg.qr(rng.normal(size=(50, 50)))
    A = (Q * lam) @ Q.T
    ext = extreme_eigenvalues(lambda v: A @ v, 50, top_k=50, bottom_k=50, max_steps=300)
    exact = np.sort(lam)
    assert ext.shortfall is None and len(ext.top) == len(ext.bottom) == 50
    np.testing.assert_allclose(ext.top, exact[::-1], atol=1e-10)
    np.testing.assert_allclose(ext.bottom, exact, atol=1e-10)
    # a matrix too large to form, with too few steps for the values asked: fewer values, and it says why
    # (a small one, as above, is formed whole and always gives every value)
    n = 600
    B = (lambda Q: (Q * np.sort(rng.normal(size=n))) @ Q.T)(np.linalg.qr(rng.normal(size=(n, n)))[0])
    ext = extreme_eigenvalues(lambda v: B @ v, n, top_k=10, bottom_k=0, max_steps=25)
    assert ext.shortfall is not None and "did not converge" in ext.shortfall and len(ext.top) < 10
