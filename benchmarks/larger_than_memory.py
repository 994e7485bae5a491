"""Training on an .npy pair larger than memory: peak resident memory per process and epoch time,
against the same rows held in memory.

    python benchmarks/larger_than_memory.py                   # 10M x 100 float32 (4.0 GB); ~10 min
    python benchmarks/larger_than_memory.py --rows 2000000 --compare-rows 1000000 --ranks 1,2

Writes X.npy (ROWS x 100 float32) and y.npy (10 classes from a seeded linear rule) in a
scratch folder (``--dir``, default under the temp folder; check ``df -h`` first: 4 GB at the
default), then runs ``mlpbp train`` on it for one epoch at batch 256 (network 100-64-10, ReLU,
float32), under ``mpiexec -n R`` for each R in ``--ranks``. Each process runs under GNU
``/usr/bin/time``, which reports its peak RSS (its high-water mark); the largest over the ranks is
reported.
Throughput compares the first COMPARE_ROWS rows read lazily (an .npy pair) and in memory (the
same rows as an .npz): rows trained per second of epoch time (the steps and the per-epoch
metrics on the training and validation rows). The scratch folder is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D, CLASSES, CHUNK = 100, 10, 500_000
TIME = "/usr/bin/time"  # GNU time


def write_pair(folder: Path, rows: int) -> None:
    if (folder / "X.npy").exists() and np.load(folder / "X.npy", mmap_mode="r").shape == (rows, D):
        return  # kept from an earlier run (--dir)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(D, CLASSES)).astype(np.float32)
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32, shape=(rows, D))
    y = np.lib.format.open_memmap(folder / "y.npy", mode="w+", dtype=np.int64, shape=(rows,))
    for i in range(0, rows, CHUNK):
        k = min(CHUNK, rows - i)
        block = rng.normal(size=(k, D)).astype(np.float32) * 3 + 1
        X[i : i + k] = block
        y[i : i + k] = np.argmax(block @ w + rng.normal(size=(k, CLASSES)).astype(np.float32), axis=1)
        X.flush()
    del X, y


def train(folder_or_file: Path, out: Path, ranks: int) -> dict:
    cfg = out.with_suffix(".yaml")
    cfg.write_text(
        f"seed: 0\ndata: {{path: {folder_or_file}, test_fraction: 0.01, validation_fraction: 0.01}}\n"
        "model: {hidden: [64]}\ntrain: {epochs: 1, batch_size: 256, learning_rate: 0.01, threads: 1}\n"
    )
    # /usr/bin/time reports each process's own high-water mark, whatever its parent's was.
    cmd = [TIME, "-f", "peak_rss_kib %M", sys.executable, "-m", "mlpbp", "train", str(cfg), "--out", str(out), "--json"]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(proc.stderr)
    peaks = [int(line.split()[-1]) for line in proc.stderr.splitlines() if line.startswith("peak_rss_kib")]
    report = json.loads(proc.stdout)
    epoch = report["epochs"][0]
    return {
        "data": str(folder_or_file),
        "ranks": ranks,
        "peak_rss_mib": max(peaks) / 1024,  # the largest process's
        "wall_s": wall,
        "epoch_s": epoch["seconds"],
        "comm_s": epoch.get("comm_seconds", 0.0),
        "train_loss": epoch["train_loss"],
        "val_accuracy": epoch["val_accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--compare-rows", type=int, default=1_000_000)
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a new one in the temp folder)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (and reuse it next time)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="mlpbp-ltm-"))
    results = []
    try:
        big = root / "big"
        write_pair(big, args.rows)
        print(f"wrote {big}: X.npy {(big / 'X.npy').stat().st_size / 1e9:.2f} GB", file=sys.stderr)
        small = root / "small"
        small.mkdir(exist_ok=True)
        X = np.load(big / "X.npy", mmap_mode="r")
        y = np.load(big / "y.npy", mmap_mode="r")
        np.save(small / "X.npy", X[: args.compare_rows])
        np.save(small / "y.npy", y[: args.compare_rows])
        np.savez(root / "small.npz", X=X[: args.compare_rows], y=y[: args.compare_rows])
        del X, y
        runs = [(small, 1), (root / "small.npz", 1)] + [(big, int(r)) for r in args.ranks.split(",")]
        for data, ranks in runs:
            r = train(data, root / f"run-{data.name}-{ranks}", ranks)
            rows = int(0.98 * (args.compare_rows if data != big else args.rows))
            r["rows_per_s"] = rows / r["epoch_s"]
            results.append(r)
            rss = f"{r['peak_rss_mib']:.0f} MiB"
            print(
                f"{data.name:10s} ranks {ranks}: epoch {r['epoch_s']:.1f} s ({r['rows_per_s']:,.0f} rows/s),"
                f" peak RSS per process {rss}, wall {r['wall_s']:.1f} s",
                file=sys.stderr,
            )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lazy, mem = results[0]["rows_per_s"], results[1]["rows_per_s"]
    print(f"lazy / in-memory throughput on {args.compare_rows:,} rows: {lazy / mem:.2f}", file=sys.stderr)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
