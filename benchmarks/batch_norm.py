"""batch_norm's forward and backward passes in training mode, at the residual MLP's shape
(``benchmarks/resnet.py``: 256 rows × 256 features, float32), for this tree and, with
``--against DIR``, another checkout of mlpbp (e.g. ``git worktree add /tmp/old COMMIT``), in
one run.

    python benchmarks/batch_norm.py                              # this tree alone
    python benchmarks/batch_norm.py --against /tmp/old --rounds 6 --json

Each round runs every tree in a fresh process (alternating, so both see the same load) with
one BLAS thread: a warm-up, then ``--calls`` forward passes and as many backward passes
(``BatchNorm.forward`` of a fixed batch, ``update_buffers``, ``backward`` of a fixed ∂J/∂y),
each timed per call. A round reports the median and the fastest call in µs; the summary takes,
per tree, the median over rounds of each. Rows, width, dtype and how far off centre the
features are (``--mean-ratio``) are options.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def child(rows: int, width: int, dtype: str, calls: int, mean_ratio: float) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    import mlpbp
    from mlpbp.engine.init import INITS
    from mlpbp.engine.module import BuildContext
    from mlpbp.engine.norm import BatchNorm

    rng = np.random.default_rng(0)
    m = BatchNorm()
    m.build([width], BuildContext(np.random.default_rng(1), np.dtype(dtype), INITS.lookup("he")))
    m.gamma[...] = rng.uniform(0.5, 1.5, width)
    m.beta[...] = rng.normal(size=width)
    spread = rng.uniform(0.5, 2, width)
    means = mean_ratio * spread * rng.normal(size=width)  # μ/σ ~ N(0, mean_ratio²) per feature
    x = (rng.normal(size=(rows, width)) * spread + means).astype(dtype)
    g = rng.normal(size=(rows, width)).astype(dtype)
    fwd, bwd = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for i in range(calls + 50):
            t0 = time.perf_counter()
            m.forward(x)
            t1 = time.perf_counter()
            m.update_buffers()
            t2 = time.perf_counter()
            m.backward(g)
            t3 = time.perf_counter()
            if i >= 50:  # warm-up: buffers made, caches filled
                fwd.append(t1 - t0)
                bwd.append(t3 - t2)
    return {
        "mlpbp": str(Path(mlpbp.__file__).parent.parent),
        "forward_us": 1e6 * statistics.median(fwd),
        "forward_best_us": 1e6 * min(fwd),
        "backward_us": 1e6 * statistics.median(bwd),
        "backward_best_us": 1e6 * min(bwd),
    }


def run_child(tree: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--rows", str(args.rows)]
    cmd += ["--width", str(args.width), "--dtype", args.dtype, "--calls", str(args.calls)]
    cmd += ["--mean-ratio", str(args.mean_ratio)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", type=Path, help="another mlpbp checkout to time beside this tree")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument(
        "--mean-ratio",
        type=float,
        default=0.5,
        help="each feature's mean over its spread is drawn from N(0, this²); 0.5: as the residual MLP's"
        " batch_norm inputs (their largest μ²/σ² near 3); 10: mostly off-centre features",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.rows, args.width, args.dtype, args.calls, args.mean_ratio)))
        return
    trees = {"this": HERE} | ({"against": args.against.resolve()} if args.against else {})
    rounds: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            rounds[name].append(run_child(tree, args))
    keys = ("forward_us", "forward_best_us", "backward_us", "backward_best_us")
    summary = {
        name: {"tree": str(trees[name]), **{k: statistics.median(r[k] for r in runs) for k in keys}, "rounds": runs}
        for name, runs in rounds.items()
    }
    summary["shape"] = {"rows": args.rows, "width": args.width, "dtype": args.dtype, "calls": args.calls}
    summary["mean_ratio"] = args.mean_ratio
    summary["loadavg"] = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"batch_norm, training mode, {args.rows} × {args.width} {args.dtype}, μ/σ ~ N(0, {args.mean_ratio}²),"
        " 1 BLAS thread, µs per call"
    )
    print(f"{'tree':<10} {'forward':>9} {'best':>8} {'backward':>9} {'best':>8}")
    for name in trees:
        s = summary[name]
        print(
            f"{name:<10} {s['forward_us']:9.1f} {s['forward_best_us']:8.1f}"
            f" {s['backward_us']:9.1f} {s['backward_best_us']:8.1f}"
        )
    print(f"load average {' '.join(summary['loadavg'] or ['?'])}")


if __name__ == "__main__":
    main()
