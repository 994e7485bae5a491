"""The keys of every `--json` output the tools' typed results give, in order: contracts that
scripts read (issue 18 moved bench, inspect, export and data from dicts to typed results, and
their JSON must stay what it was)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from mlpbp.cli import app

INSPECT = [
    "path",
    "sha256",
    "bytes",
    "format_version",
    "task",
    "widths",
    "activation",
    "loss",
    "dtype",
    "params",
    "mode",
    "buffers",
    "layers",
    "flops",
    "features",
    "columns",
    "target",
    "classes",
    "preprocessing",
    "config",
    "metrics",
    "written_by",
]
LAYER = [
    "index",
    "kind",
    "activation",
    "label",
    "inputs",
    "in",
    "out",
    "param_shapes",
    "params",
    "flops_forward",
    "flops_backward",
]
BENCH_ROW = ["depth", "params", "loss_s", "grad_s", "hvp_s", "grad_ratio", "hvp_ratio"]
TORCH_ROW = ["torch_loss_s", "torch_grad_s", "torch_hvp_s", "torch_grad_ratio", "torch_hvp_ratio"]
DATA = ["path", "rows", "rows_used", "task", "why", "targets", "id", "input_width", "columns", "notes"]


def _json(runner, args: list[str]) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_inspect_keys(runner, good_run):
    info = _json(runner, ["inspect", str(good_run / "model.npz")])
    assert list(info) == INSPECT
    assert all(list(r) == LAYER for r in info["layers"]) and len(info["layers"]) == 3
    assert list(info["flops"]) == ["forward_per_row", "train_step_per_row", "update_per_step"]
    assert list(info["preprocessing"]) == ["inputs", "targets"]
    assert list(info["preprocessing"]["inputs"]) == ["standardized", "mean", "scale"]
    assert info["preprocessing"]["targets"] is None  # a classifier: no target scaling, null


@pytest.mark.parametrize("compare", [None, "torch"])
def test_bench_keys(runner, compare):
    if compare:
        pytest.importorskip("torch")
    args = ["bench", "--depth", "2", "--width", "4", "--batch", "2", "--repeats", "3", "--budget", "0.01"]
    result = _json(runner, [*args, *(["--compare", compare] if compare else [])])
    assert list(result) == ["rows", "stability", "blas", "threads", "fit", "network", *(["torch"] if compare else [])]
    calls = ["loss", "grad", "hvp", *(["torch_loss", "torch_grad", "torch_hvp"] if compare else [])]
    for row in result["rows"]:
        assert list(row) == [*BENCH_ROW, *(TORCH_ROW if compare else []), "spread", "repeats", "settled"]
        assert list(row["spread"]) == list(row["repeats"]) == list(row["settled"]) == calls
    assert list(result["stability"]) == ["max_spread", "worst", "unstable", "unsettled", "trustworthy"]
    assert list(result["stability"]["worst"]) == ["depth", "call"]
    assert all(list(u) == ["depth", "call"] for u in result["stability"]["unsettled"])
    assert list(result["fit"]) == calls
    assert all(f is None or list(f) == ["intercept_s", "per_param_s"] for f in result["fit"].values())
    assert list(result["network"]) == ["widths", "activation", "loss", "batch", "dtype", "repeats", "budget_s"]
    assert {"library", "version", "kernel", "threads"} <= set(result["blas"])
    if compare:
        assert list(result["torch"]) == ["version", "threads", "hvp_method"]


def test_export_keys(runner, good_run, tmp_path):
    pytest.importorskip("onnx")
    shutil.copy(good_run / "model.npz", tmp_path / "model.npz")
    info = _json(runner, ["export", str(tmp_path / "model.npz")])
    assert list(info) == ["path", "bytes", "opset", "inputs", "outputs"]  # "notes" only when there are some


def test_data_keys(runner, tmp_path):
    (tmp_path / "t.csv").write_text(
        "n,colour,day,gone,w,y\n"
        + "".join(f"{i},{'ab'[i % 2]},2024-01-{1 + i % 9:02d},,{i / 4 + 0.1},{'pq'[i % 3 == 0]}\n" for i in range(30))
    )
    cfg = {"data": {"path": "t.csv", "target": "y"}, "train": {"class_weight": "balanced"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    s = _json(runner, ["data", str(tmp_path / "c.yaml")])
    assert list(s) == [*DATA, "classes"]
    columns = {c["name"]: list(c) for c in s["columns"]}
    base = ["name", "role", "type", "missing", "kind"]
    assert columns == {
        "n": [*base, "min", "max"],
        "colour": [*base, "categories"],
        "day": [*base, "min", "max"],
        "gone": base,
        "w": [*base, "min", "max"],
        "y": base,
    }
    assert all(list(c) == ["label", "count", "weight"] for c in s["classes"])
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"path": "t.csv", "target": "w"}}))
    s = _json(runner, ["data", str(tmp_path / "c.yaml")])  # a regression: no classes
    assert list(s) == DATA
