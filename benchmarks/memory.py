"""The memory estimate of each command beside the peak RSS it adds, measured.

For train, gradcheck and hessian it runs the command twice in fresh processes, on a large network
and on a tiny one (the baseline: interpreter, libraries, data), and reports the peak RSS the
large one adds over the baseline (ru_maxrss of the child) next to what mlpbp.engine.memory
estimated for it. For data, predict and evaluate it does the same with tables: a narrow one
(200,000 rows of 19 numbers, a category and a label) and a wide one (60 rows of 100,000
numbers), against a 200-row table, beside what mlpbp.run.footprint estimates before reading.
The estimate must be above the measurement (never below) and within 1.5x.

    python benchmarks/memory.py [--json] [--only tables|networks]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from mlpbp.engine.memory import gradcheck_bytes, n_params
from mlpbp.run.config import load_config
from mlpbp.run.prepare import check_training_memory
from mlpbp.tools.gradcheck_defaults import DEFAULT_BATCH, DEFAULT_DIRECTIONS
from mlpbp.tools.hessian import HessianOptions, hessian_bytes


def _peak_rss(argv: list[str]) -> int:
    """Peak RSS in bytes of ``mlpbp ARGV`` run in a child of a fresh helper process."""
    code = (
        "import resource, subprocess, sys;"
        "subprocess.run([sys.executable, '-m', 'mlpbp', *sys.argv[1:]], check=True,"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) * 1024


def _config(tmp: Path, name: str, hidden: list[int], train: str = "batch_size: 32") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"data: {{dataset: moons, n_samples: 200}}\nmodel: {{hidden: {hidden}}}\ntrain: {{epochs: 1, {train}}}\n"
    )
    return path


# The optimizers whose state the training estimate counts (engine.memory.optimizer_bytes)
OPTIMIZERS = {
    "sgd": "batch_size: 32",
    "sgd, momentum 0.9": "batch_size: 32, momentum: 0.9",
    "adamw": "batch_size: 32, optimizer: adamw",
    "lbfgs, 5 iterations": "optimizer: lbfgs, max_iter: 5",
    "newton_cg, 20 CG steps": "optimizer: newton_cg, cg_max_iter: 20",
}


def _train_estimate(cfg_path: Path) -> int:
    import mlpbp.engine.memory as memory

    seen = []
    real = memory.require
    try:  # the bytes check_training_memory asks for, without refusing
        import mlpbp.run.prepare as prepare

        prepare.require = lambda needed, *a, **k: seen.append(needed)
        cfg = load_config(cfg_path)
        check_training_memory(cfg, [2, *cfg.model.hidden, 2], cfg.train.dtype, eval_rows=140)
    finally:
        prepare.require = real
    return seen[0]


def _narrow_csv(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 19)).round(5)
    colour = rng.choice(["red", "green", "blue", "yellow", "violet"], rows)
    y = (X[:, 0] + (colour == "red") > 0).astype(int)
    with path.open("w") as f:
        f.write(",".join(f"x{j}" for j in range(19)) + ",colour,label\n")
        for r, c, label in zip(X.tolist(), colour, y):
            f.write(",".join(map(repr, r)) + f",{c},{label}\n")


def _table_estimate(command: str, data: Path, model: Path | None = None) -> int:
    """The bytes mlpbp.run.footprint asks for before ``command`` reads ``data``, without refusing."""
    import mlpbp.run.footprint as footprint
    from mlpbp.data.tables import read_estimate
    from mlpbp.run.model_file import load_model

    seen = []
    real = footprint.require
    footprint.require = lambda needed, *a, **k: seen.append(needed)
    try:
        if command == "data":  # as load_table asks: float32 cells, the target kept in float64
            footprint.check_table("data", read_estimate(data, None, True, ["label"]), None, 4)
        else:
            footprint.check_table(command, read_estimate(data), load_model(model).net.widths)
    finally:
        footprint.require = real
    return seen[0]


def _table_rows(tmp: Path) -> list[tuple[str, int, int]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from wide import write_csv as wide_csv

    tables = {"tiny": tmp / "tiny.csv", "narrow": tmp / "narrow.csv", "wide": tmp / "wide.csv"}
    _narrow_csv(tables["tiny"], 200)
    _narrow_csv(tables["narrow"], 200_000)
    wide_csv(tables["wide"], 100_000, 60)
    for name, path in tables.items():
        (tmp / f"{name}.yaml").write_text(
            f"data: {{path: {path}, target: label}}\nmodel: {{hidden: [{8 if name == 'wide' else 16}]}}\n"
            "train: {epochs: 1, batch_size: 256}\n"
        )
        subprocess.run(
            [sys.executable, "-m", "mlpbp", "train", str(tmp / f"{name}.yaml"), "--out", str(tmp / f"m-{name}"), "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def argv(command: str, name: str) -> list[str]:
        if command == "data":
            return ["data", str(tmp / f"{name}.yaml"), "--json"]
        model = str(tmp / f"m-{name}" / "model.npz")
        if command == "predict":
            return ["predict", model, str(tables[name]), "--out", str(tmp / f"p-{name}.csv")]
        return ["evaluate", model, str(tables[name]), "--json"]

    rows = []
    for command in ("data", "predict", "evaluate"):
        base = _peak_rss(argv(command, "tiny"))
        for name, shape in (("narrow", "200,000 x 21"), ("wide", "60 x 100,001")):
            peak = _peak_rss(argv(command, name))
            model = tmp / f"m-{name}" / "model.npz"
            rows.append((f"{command} {name} {shape}", _table_estimate(command, tables[name], model), peak - base))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", choices=["tables", "networks"])
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only != "networks":
            rows += _table_rows(tmp)
        if args.only == "tables":
            return _report(rows, args.json)
        tiny, big = _config(tmp, "tiny", [4]), _config(tmp, "big", [2500, 2500])
        # train
        base = _peak_rss(["train", str(tiny), "--out", str(tmp / "t0"), "-q"])
        peak = _peak_rss(["train", str(big), "--out", str(tmp / "t1"), "-q"])
        rows.append(("train 2-2500-2500-2", _train_estimate(big), peak - base))
        for k, (name, train) in enumerate(list(OPTIMIZERS.items())[1:]):
            small, large = _config(tmp, f"tiny{k}", [4], train), _config(tmp, f"big{k}", [2500, 2500], train)
            base = _peak_rss(["train", str(small), "--out", str(tmp / f"o{k}a"), "-q"])
            peak = _peak_rss(["train", str(large), "--out", str(tmp / f"o{k}b"), "-q"])
            rows.append((f"train 2-2500-2500-2, {name}", _train_estimate(large), peak - base))
        # gradcheck
        gc = _config(tmp, "gc", [1500, 1500])
        base = _peak_rss(["gradcheck", str(tiny)])
        peak = _peak_rss(["gradcheck", str(gc)])
        rows.append(
            (
                "gradcheck 2-1500-1500-2",
                gradcheck_bytes([2, 1500, 1500, 2], DEFAULT_BATCH, DEFAULT_DIRECTIONS),
                peak - base,
            )
        )
        # hessian (models from the train runs above)
        data = tmp / "rows.csv"
        data.write_text("x0,x1,y\n" + "".join(f"{i / 100},{1 - i / 100},{i % 2}\n" for i in range(200)))
        opts = HessianOptions(top_k=2, max_steps=60)
        hess = ["--top-k", "2", "--max-steps", "60"]
        base = _peak_rss(["hessian", str(tmp / "t0/model.npz"), str(data), *hess])
        peak = _peak_rss(["hessian", str(tmp / "t1/model.npz"), str(data), *hess])
        rows.append(("hessian 2-2500-2500-2, 60 steps", hessian_bytes([2, 2500, 2500, 2], 200, opts), peak - base))
    _report(rows, args.json)


def _report(rows: list[tuple[str, int, int]], as_json: bool) -> None:
    result = [
        {
            "command": name,
            "estimate_MB": round(e / 1e6, 1),
            "measured_MB": round(m / 1e6, 1),
            "ratio": round(e / max(m, 1), 2),
        }
        for name, e, m in rows
    ]
    if as_json:
        print(json.dumps({"rows": result, "load_average": os.getloadavg()[0], "params": n_params([2, 2500, 2500, 2])}))
    else:
        for r in result:
            print(
                f"{r['command']:<36} estimate {r['estimate_MB']:>8} MB   measured {r['measured_MB']:>8} MB"
                f"   ratio {r['ratio']}"
            )
        print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
