"""Sparse inputs in the estimators: a one-hot-heavy table fitted as CSR (the first layer's
products taken on the sparse matrix), as CSR densified one batch at a time (what the
estimators did before), and as a dense X. Each mode runs in a fresh process (its peak RSS is
its own), the modes interleaved, ``--repeats`` rounds; the table reports each mode's fastest
fit and its peak RSS, and checks that the three fitted networks agree.

    python benchmarks/sparse.py [--rows 10000] [--fields 20] [--levels 100] [--repeats 3]

The table: ``fields`` categorical columns of ``levels`` values, one-hot (rows x fields·levels,
density 1/levels); the target depends on a few levels. MLPClassifier(hidden_layer_sizes=(64,),
solver="adam", batch_size=200, max_iter=EPOCHS), float64.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

MODES = ("sparse", "densify-per-batch", "dense")


def table(rows: int, fields: int, levels: int, seed: int = 0):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, (rows, fields))
    r = np.repeat(np.arange(rows), fields)
    c = (codes + levels * np.arange(fields)).ravel()
    X = sp.csr_matrix((np.ones(rows * fields), (r, c)), shape=(rows, fields * levels))
    y = ((codes[:, :4] < levels // 5).sum(axis=1) + rng.integers(0, 2, rows) >= 2).astype(int)
    return X, y


def fit_one(mode: str, rows: int, fields: int, levels: int, epochs: int) -> dict:
    """One fit in this process (run through ``--child``)."""
    import mlpbp.sklearn as msk

    X, y = table(rows, fields, levels)
    if mode == "dense":
        X = X.toarray()
    elif mode == "densify-per-batch":  # the estimators before sparse first layers: each batch densified
        msk._engine_rows = lambda A, dtype: np.asarray(A.toarray() if hasattr(A, "toarray") else A, dtype=dtype)
    est = msk.MLPClassifier(hidden_layer_sizes=(64,), solver="adam", batch_size=200, max_iter=epochs, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        est.fit(X, y)
        seconds = time.perf_counter() - t
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "seconds": seconds,
        "peak_rss_mib": peak_kib / 1024,
        "loss": float(est.loss_),
        "W1_sum": float(est.coefs_[0].sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--fields", type=int, default=20)
    ap.add_argument("--levels", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", choices=MODES)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(fit_one(args.child, args.rows, args.fields, args.levels, args.epochs)))
        return
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}  # one thread: the comparison, not the machine's cores
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, "--rows", str(args.rows), "--fields", str(args.fields)]
            cmd += ["--levels", str(args.levels), "--epochs", str(args.epochs)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            runs[mode].append(json.loads(out.splitlines()[-1]))
    best = {m: min(r, key=lambda x: x["seconds"]) for m, r in runs.items()}
    ref = best["dense"]
    agree = all(abs(b["loss"] - ref["loss"]) <= 1e-9 * abs(ref["loss"]) for b in best.values())
    load = os.getloadavg()
    if args.json:
        print(json.dumps({"runs": runs, "agree": agree, "load": load}))
        return
    d = args.fields * args.levels
    print(f"{args.rows} rows x {d} one-hot columns (density {1 / args.levels:.3g}), {args.epochs} epochs of adam,")
    print(f"batch 200, hidden 64, float64, 1 BLAS thread; fastest of {args.repeats}; load {load[0]:.2f}")
    print("| X given as | fit s (min) | fit s (all) | peak RSS MiB | × sparse time |")
    print("|---|---:|---:|---:|---:|")
    for m in MODES:
        allsec = ", ".join(f"{r['seconds']:.2f}" for r in runs[m])
        ratio = best[m]["seconds"] / best["sparse"]["seconds"]
        print(f"| {m} | {best[m]['seconds']:.2f} | {allsec} | {best[m]['peak_rss_mib']:.0f} | {ratio:.2f} |")
    print(f"fitted losses agree to 1e-9: {agree}")


if __name__ == "__main__":
    main()
