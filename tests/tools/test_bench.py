"""Smoke tests of the timing API and `mlpbp bench`, with tiny sizes. Timings are never asserted."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from typer.testing import CliRunner

from mlpbp.cli import app
from mlpbp.errors import MlpbpError
from mlpbp.tools import bench

HAS_TORCH = importlib.util.find_spec("torch") is not None
TINY = ["--width", "8", "--batch", "3", "--repeats", "1"]
ROW_KEYS = {"depth", "params", "loss_s", "grad_s", "hvp_s", "grad_ratio", "hvp_ratio"}


def _cli(args):
    return CliRunner().invoke(app, ["bench", *args])


@pytest.mark.parametrize("n, expected", [(1, [1]), (2, [1, 2]), (5, [1, 2, 4, 5]), (8, [1, 2, 4, 8])])
def test_depths_are_powers_of_two_then_n(n, expected):
    assert bench.depths_up_to(n) == expected


def test_depth_below_one_is_an_error():
    with pytest.raises(MlpbpError):
        bench.depths_up_to(0)


def test_run_bench_rows_and_fit():
    seen = []
    result = bench.run_bench(
        3, width=8, batch=2, repeats=1, progress=lambda done, total, d: seen.append((done, total, d))
    )
    assert [r["depth"] for r in result["rows"]] == [1, 2, 3]
    assert seen == [(1, 3, 1), (2, 3, 2), (3, 3, 3)]
    for r in result["rows"]:
        assert ROW_KEYS <= set(r)
        assert r["params"] == 8 * 8 * r["depth"] + 8 * r["depth"] + 8 * 10 + 10
        assert all(r[k] > 0 for k in ROW_KEYS - {"depth"})
    assert set(result["fit"]) == {"loss", "grad", "hvp"}
    assert "library" in result["blas"] and "kernel" in result["blas"]


def test_bench_network_matches_documented_widths():
    net, X, y, v = bench.bench_problem(2, width=8, batch=3)
    assert net.widths == [8, 8, 8, 10]
    assert X.shape == (3, 8) and X.dtype == "float32" and y.shape == (3,)
    assert set(v) == set(net.params)


def test_cli_json_is_valid_with_n_included():
    result = _cli(["--depth", "5", "--json", *TINY])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["depth"] for r in data["rows"]] == [1, 2, 4, 5]
    for r in data["rows"]:
        assert ROW_KEYS <= set(r)
        assert r["grad_ratio"] > 0 and r["hvp_ratio"] > 0
    assert isinstance(data["blas"], dict)
    assert "threads" in data


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_bench_times_with_one_blas_thread_unless_told_and_restores_the_pools(threads):
    """One thread by default (the theorem counts operations; other processes stay off the
    ratios); --threads N times with N; the process's BLAS pools are as before afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def counts():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):  # as OpenBLAS starts on a 2-core machine
        before = counts()
        args = ["--depth", "1", "--json", *TINY] + ([] if threads is None else ["--threads", str(threads)])
        result = _cli(args)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["threads"] == (threads or 1) == data["blas"]["threads"]
        assert counts() == before


def test_cli_table_says_one_thread_and_why():
    result = _cli(["--depth", "1", *TINY])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.stdout.split())
    assert "1 thread while timing (--threads;" in flat and "the theorem counts operations" in flat


def test_cli_table():
    result = _cli(["--depth", "2", *TINY])
    assert result.exit_code == 0, result.output
    assert "BLAS" in result.stdout and "grad/loss" in result.stdout
    # tiny networks time mostly noise: a line with b > 0, or an honest "no line fit"
    fit = result.stdout.splitlines()[-1]
    assert fit.startswith("mlpbp: ") and ("ns/param" in fit or "no line fit" in fit)


@pytest.mark.parametrize(
    "args", [["--depth", "0"], ["--dtype", "float16"], ["--width", "0"], ["--compare", "jax"], ["--threads", "0"]]
)
def test_cli_bad_options_exit_2(args):
    result = _cli([*TINY, *args])
    assert result.exit_code == 2
    assert "error" in result.output


def test_cli_compare_without_torch_is_one_line_exit_2(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    result = _cli(["--depth", "1", "--compare", "torch", *TINY])
    assert result.exit_code == 2
    assert "mlpbp[compare]" in result.output


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_cli_compare_torch_adds_columns():
    result = _cli(["--depth", "2", "--compare", "torch", "--json", *TINY])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for r in data["rows"]:
        assert r["torch_grad_ratio"] > 0 and r["torch_hvp_ratio"] > 0
    assert "version" in data["torch"]


def test_compare_without_torch_raises(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("no torch here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    result = _cli(["--depth", "1", "--compare", "torch", *TINY])
    assert result.exit_code == 2
    assert "pip install 'mlpbp[compare]'" in result.output
