"""Load-to-ready time and peak memory of a large numeric CSV: mlpbp against pandas.read_csv (C
and pyarrow engines) and numpy.loadtxt, each in a process of its own, side by side in one run;
then `mlpbp predict` on the same file, and optionally one training epoch.

    python benchmarks/load.py                      # 1,000,000 x 100 (about 850 MB in /tmp)
    python benchmarks/load.py --rows 5000000 --train-epoch
    python benchmarks/load.py --rows 200000 --keep # keep the generated CSV for another run

"Ready" means what training needs: a float32 feature matrix and the target, in memory. For
mlpbp that is `prepare()` (read, split, standardise, cast); for pandas and NumPy, the read plus
the float32 feature matrix. numpy.loadtxt parses in Python and takes minutes on the full file,
so it reads the first --loadtxt-rows rows only (the table says so). Peak memory is each
process's maximum resident set (ru_maxrss). Generated files are deleted at the end unless
--keep. Timings on a shared machine are noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def generate(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    """A numeric CSV: `cols` float features and an integer class `y` (3 classes) they predict."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    w = rng.standard_normal(cols)
    step = 250_000
    with pacsv.CSVWriter(path, pa.schema([(f"x{j}", pa.float32()) for j in range(cols)] + [("y", pa.int64())])) as out:
        for start in range(0, rows, step):
            X = rng.standard_normal((min(step, rows - start), cols)).astype(np.float32)
            score = X @ w / np.sqrt(cols)
            y = np.digitize(score, [-0.4, 0.4])
            table = pa.table({**{f"x{j}": X[:, j] for j in range(cols)}, "y": y})
            out.write_table(table)


# ---- what each child process runs -------------------------------------------------------------


def child(kind: str, path: str, cols: int, limit: int) -> dict:
    started = time.perf_counter()
    if kind == "mlpbp":
        from mlpbp.run.config import config_from_dict
        from mlpbp.run.prepare import prepare

        cfg = config_from_dict({"data": {"path": path, "target": "y"}, "train": {"dtype": "float32"}})
        p = prepare(cfg)
        shape = [sum(part[0].shape[0] for part in (p.train, p.val, p.test)), p.train[0].shape[1]]
    elif kind.startswith("pandas"):
        import pandas as pd

        df = pd.read_csv(path, engine=kind.split("-")[1])
        X = df.drop(columns="y").to_numpy(np.float32)
        y = df["y"].to_numpy()
        del df
        shape = [X.shape[0], X.shape[1]] if len(y) else []
    elif kind == "numpy.loadtxt":
        data = np.loadtxt(path, delimiter=",", skiprows=1, max_rows=limit, dtype=np.float64)
        X = data[:, :-1].astype(np.float32)
        shape = list(X.shape)
    else:
        raise SystemExit(f"unknown kind {kind}")
    seconds = time.perf_counter() - started
    return {"kind": kind, "seconds": seconds, "cpu_s": _cpu_s(), "peak_mb": _peak_mb(), "shape": shape}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def _cpu_s() -> float:
    """User + system CPU seconds of this process: less noisy than wall time on a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_child(kind: str, path: Path, cols: int, limit: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--path", str(path), "--cols", str(cols)]
    cmd += ["--loadtxt-rows", str(limit)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"kind": kind, "error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def timed_cli(args: list[str]) -> dict:
    """An `mlpbp` command in its own process: wall time and that process's peak memory."""
    code = (
        "import resource, sys, time, runpy\n"
        "t = time.perf_counter()\n"
        "sys.argv = ['mlpbp', *sys.argv[1:]]\n"
        "try:\n"
        "    from mlpbp.cli import main; main()\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "else:\n"
        "    code = 0\n"
        "r = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print('BENCH', time.perf_counter() - t, r.ru_maxrss / 1024, r.ru_utime + r.ru_stime, code, file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    line = [x for x in res.stderr.splitlines() if x.startswith("BENCH")]
    if not line:
        return {"error": res.stderr.strip()[-300:]}
    _, seconds, peak, cpu, code = line[-1].split()
    return {"seconds": float(seconds), "cpu_s": float(cpu), "peak_mb": float(peak), "exit": code}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pandas as pd
    import pyarrow as pa

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="Keep the generated CSV (and reuse it if present).")
    parser.add_argument("--loadtxt-rows", type=int, default=100_000)
    parser.add_argument(
        "--only", nargs="*", help="Run only these readers (mlpbp, pandas-c, pandas-pyarrow, numpy.loadtxt)."
    )
    parser.add_argument("--no-predict", action="store_true")
    parser.add_argument("--train-epoch", action="store_true", help="Also time `mlpbp train` for one epoch.")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.cols, args.loadtxt_rows)))
        return

    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"mlpbp-bench-{args.rows}x{args.cols}.csv"
    made = []
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.rows, args.cols)
        made.append(path)
        print(
            f"generated {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s", file=sys.stderr
        )
    size_mb = path.stat().st_size / 1e6
    matrix_mb = args.rows * args.cols * 4 / 2**20
    results = {"rows": args.rows, "cols": args.cols, "csv_mb": size_mb, "float32_matrix_mib": matrix_mb, **machine()}
    kinds = args.only or ["mlpbp", "pandas-c", "pandas-pyarrow", "numpy.loadtxt"]
    results["load"] = []
    for kind in kinds:
        r = run_child(kind, path, args.cols, args.loadtxt_rows)
        if kind == "numpy.loadtxt":
            r["rows_read"] = min(args.loadtxt_rows, args.rows)
        print(json.dumps(r), file=sys.stderr)
        results["load"].append(r)
    work = Path(tempfile.mkdtemp(prefix="mlpbp-bench-", dir=args.dir))
    try:
        if not args.no_predict or args.train_epoch:
            # A model for this file: trained on its first rows, one epoch (the weights do not matter).
            small = work / "small.csv"
            with path.open() as src, small.open("w") as dst:
                for _, line in zip(range(20_001), src):
                    dst.write(line)
            cfg = work / "bench.yaml"
            cfg.write_text(
                f"data: {{path: {small}, target: y}}\nmodel: {{hidden: [64]}}\n"
                f"train: {{epochs: 1, batch_size: 256}}\noutput: {{dir: {work / 'small-run'}}}\n"
            )
            subprocess.run([sys.executable, "-m", "mlpbp", "train", str(cfg), "-q"], check=True, capture_output=True)
        if not args.no_predict:
            out = work / "predictions.csv"
            r = timed_cli(["predict", str(work / "small-run" / "model.npz"), str(path), "--out", str(out)])
            r["rows"] = sum(1 for _ in out.open()) - 1 if out.exists() else 0
            results["predict"] = r
            print(json.dumps({"predict": r}), file=sys.stderr)
        if args.train_epoch:
            cfg = work / "epoch.yaml"
            cfg.write_text(
                f"data: {{path: {path}, target: y}}\nmodel: {{hidden: [64]}}\n"
                f"train: {{epochs: 1, batch_size: 256}}\noutput: {{dir: {work / 'epoch-run'}}}\n"
            )
            r = timed_cli(["train", str(cfg), "-q"])
            results["train_one_epoch"] = r
            print(json.dumps({"train_one_epoch": r}), file=sys.stderr)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            for p in made:
                p.unlink(missing_ok=True)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{args.rows:,} x {args.cols} numeric CSV ({size_mb:.0f} MB); float32 matrix {matrix_mb:.0f} MiB")
    print(f"{results['cpu']}, {results['cores']} cores; pandas {results['pandas']}, pyarrow {results['pyarrow']}")
    print("| reader | rows | load to ready (s) | CPU (s) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in results["load"]:
        if "error" in r:
            print(f"| {r['kind']} | - | failed: {r['error']} | - | - |")
            continue
        rows = r.get("rows_read", args.rows)
        print(f"| {r['kind']} | {rows:,} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} |")
    for key in ("predict", "train_one_epoch"):
        if key in results and "error" not in results[key]:
            r = results[key]
            name = f"mlpbp {key.replace('_', ' ')}"
            print(f"| {name} | {args.rows:,} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
