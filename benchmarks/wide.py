"""Wide tables: a CSV of COLUMNS numeric feature columns x ROWS rows, read, prepared and trained
for one epoch through `mlpbp train`, timed by stage. Every per-column step must be linear in the
column count (sets and dicts, never `name in list`): 10,000 columns took 50 s and 100,000 were
killed after 300 s before.

    python benchmarks/wide.py [--columns 100000] [--rows 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_csv(path: Path, columns: int, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, columns)).round(4)
    y = (X[:, 0] > 0).astype(int)
    with path.open("w") as f:
        f.write(",".join(f"c{j}" for j in range(columns)) + ",label\n")
        for row, label in zip(X, y):
            f.write(",".join(map(repr, row.tolist())) + f",{label}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", type=int, default=100_000)
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "wide.csv"
        started = time.perf_counter()
        write_csv(data, args.columns, args.rows)
        written = time.perf_counter() - started
        cfg = tmp / "wide.yaml"
        cfg.write_text(
            f"data: {{path: {data}, target: label, test_fraction: 0.2, validation_fraction: 0.1}}\n"
            "model: {hidden: [8]}\ntrain: {epochs: 1, batch_size: 16}\n"
        )
        timings = {}
        for what, argv in (
            ("data", ["data", str(cfg), "--json"]),
            ("train", ["train", str(cfg), "--out", str(tmp / "run"), "-q", "--json"]),
        ):
            started = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "mlpbp", *argv], capture_output=True, text=True, env=os.environ)
            timings[what] = time.perf_counter() - started
            if res.returncode != 0:
                sys.exit(f"{what} failed: {res.stderr.strip()}")
    result = {
        "columns": args.columns,
        "rows": args.rows,
        "csv_bytes_written_s": round(written, 2),
        "mlpbp_data_s": round(timings["data"], 2),
        "mlpbp_train_s": round(timings["train"], 2),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k:>20}  {v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
