"""Data-parallel scaling: 1 and 2 MPI ranks on this machine, then a fitted model's prediction
for 8, 64 and 512 ranks on 10 Gb/s Ethernet and 100 Gb/s InfiniBand.

    python benchmarks/scaling.py                 # a few minutes; needs the mpi extra
    python benchmarks/scaling.py --steps 3 --batches 128,1024 --json scaling.json

For each network (784-256-128-10 and 784-2048-1024-256-10, 4.0M parameters), global batch
(128, 1024, 8192) and rank count (1, 2), it launches ``mpiexec -n R`` on this script's worker,
which runs the training step the trainer runs under MPI: each rank's gradient on its share of
the batch (``step_loss_and_grad``), ``GradientSync.step`` (one in-place Allreduce of the flat
gradient, loss and stop flag), then the optimizer's update. One warm-up step, then the median
of STEPS timed steps, split into compute (gradient and update) and Allreduce. BLAS threads per
rank = cores / ranks (as ``mlpbp train`` sets them).

The model, fitted by least squares to those measurements:
  compute(rows) = c0 + c1 · rows per rank (per network: the step's fixed cost and cost per row),
  allreduce(bytes) = latency + bytes / bandwidth (on this machine, from extra Allreduce timings).
Beyond this machine it assumes a ring Allreduce, 2(p−1) latency terms plus 2(p−1)/p of the
buffer over each link: latency 50 µs and 1.25 GB/s for 10 Gb/s Ethernet, 2 µs and 12.5 GB/s for
100 Gb/s InfiniBand (typical figures, not measured here), and one rank per machine with this
machine's compute. Efficiency at p ranks (fixed global batch B) = compute(B) / (p · (compute(B/p)
+ allreduce(p))). It is a PREDICTION, labelled as such in the output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

NETWORKS = {"784-256-128-10": (784, 256, 128, 10), "784-2048-1024-256-10": (784, 2048, 1024, 256, 10)}
LINKS = {
    "10 Gb/s Ethernet": (50e-6, 1.25e9),
    "100 Gb/s InfiniBand": (2e-6, 12.5e9),
}
RANKS_PREDICTED = (8, 64, 512)


def worker(args) -> None:
    """One (network, batch) under mpiexec: prints rank 0's timings as one JSON line."""
    from mlpbp.engine.network import MLP
    from mlpbp.engine.optim import SGD
    from mlpbp.run.distributed import GradientSync, world

    comm = world()
    if args.threads:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=args.threads, user_api="blas")  # noqa: F841 (held for the run)
    widths = NETWORKS[args.network]
    net = MLP(widths, "relu", "cross_entropy", seed=0, dtype="float32")
    opt = SGD(net.params, 0.01)
    sync = GradientSync(net, comm)
    rng = np.random.default_rng(comm.rank)
    lo, hi = comm.share(args.batch)
    X = rng.normal(size=(hi - lo, widths[0])).astype(np.float32)
    y = rng.integers(0, widths[-1], hi - lo)
    compute, reduce = [], []
    for step in range(args.steps + 1):
        t0 = time.perf_counter()
        loss = net.step_loss_and_grad(X, y)
        t1 = time.perf_counter()
        if sync.fused:
            grads = net.grads
        else:
            sync.step(loss, hi - lo, args.batch, False)
            grads = sync.grads
        t2 = time.perf_counter()
        opt.step(grads)
        t3 = time.perf_counter()
        if step:  # the first is a warm-up
            compute.append((t1 - t0) + (t3 - t2))
            reduce.append(t2 - t1)
    # Allreduce alone at several sizes, for latency + size / bandwidth.
    sizes = {}
    if comm.size > 1:
        for n in (1, 1 << 10, 1 << 14, 1 << 18, 1 << 21, 1 << 22):
            buf = np.ones(n, np.float32)
            times = []
            for _ in range(6):
                comm.comm.Barrier()  # time the reduction, not the wait for a late rank
                t = time.perf_counter()
                comm.allreduce_(buf)
                times.append(time.perf_counter() - t)
            sizes[n * 4] = statistics.median(times[1:])
    # every rank's medians: a step is as slow as its slowest rank
    mine = (statistics.median(compute), statistics.median(reduce))
    gathered = comm.allgather(mine)
    if comm.rank == 0:
        c = max(g[0] for g in gathered)
        r = max(g[1] for g in gathered)
        from threadpoolctl import threadpool_info

        threads = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=None)
        print(
            json.dumps(
                {
                    "network": args.network,
                    "params": net.n_params,
                    "batch": args.batch,
                    "ranks": comm.size,
                    "blas_threads": threads,
                    "compute_s": c,
                    "allreduce_s": r,
                    "steps_per_s": 1.0 / (c + r),
                    "allreduce_by_bytes": sizes,
                }
            )
        )


def run_all(args) -> list[dict]:
    mpiexec = shutil.which("mpiexec", path=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    if mpiexec is None:
        sys.exit("mpiexec not found: pip install 'mlpbp[mpi]'")
    rows = []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for name in NETWORKS:
        for batch in args.batches:
            # 1 rank with 1 BLAS thread and with every core's; 2 ranks with cores / 2 each.
            for ranks, threads in ((1, 1), (1, cores), (2, max(1, cores // 2))):
                if ranks == 1 and threads == 1 and cores == 1:
                    continue
                cmd = [mpiexec, "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker"]
                cmd += ["--network", name, "--batch", str(batch), "--steps", str(args.steps), "--threads", str(threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                if out.returncode:
                    sys.exit(out.stderr)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"{name:22s} batch {batch:5d} ranks {ranks} x {threads} threads:"
                    f" {row['steps_per_s']:8.2f} steps/s, "
                    f"compute {row['compute_s'] * 1e3:9.3f} ms, Allreduce {row['allreduce_s'] * 1e3:7.3f} ms",
                    file=sys.stderr,
                )
    return rows


def fit(rows: list[dict]) -> dict:
    """compute = c0 + c1 · rows per rank, per network, from every run with one BLAS thread per
    rank (one core's compute); Allreduce = α + bytes / β."""
    model = {"compute": {}}
    for name in NETWORKS:
        pts = [
            (r["batch"] / r["ranks"], r["compute_s"]) for r in rows if r["network"] == name and r["blas_threads"] == 1
        ]
        A = np.array([[1.0, n] for n, _ in pts])
        c0, c1 = np.linalg.lstsq(A, np.array([t for _, t in pts]), rcond=None)[0]
        model["compute"][name] = {"c0_s": float(max(c0, 0.0)), "c1_s_per_row": float(c1)}
    sizes = {}
    for r in rows:
        for b, t in r["allreduce_by_bytes"].items():
            sizes.setdefault(int(b), []).append(t)
    b = np.array(sorted(sizes))
    t = np.array([statistics.median(sizes[k]) for k in b])
    alpha, inv_beta = np.linalg.lstsq(np.column_stack([np.ones_like(b, float), b]), t, rcond=None)[0]
    model["allreduce_here"] = {"latency_s": float(max(alpha, 0.0)), "bandwidth_B_per_s": float(1.0 / inv_beta)}
    return model


def predict(model: dict, params: dict) -> list[dict]:
    """PREDICTED strong-scaling efficiency at a fixed global batch."""
    out = []
    for name, c in model["compute"].items():
        nbytes = 4 * (params[name] + 2)
        for batch in (1024, 8192):
            t1 = c["c0_s"] + c["c1_s_per_row"] * batch
            for link, (alpha, beta) in LINKS.items():
                for p in RANKS_PREDICTED:
                    ring = 2 * (p - 1) * alpha + 2 * (p - 1) / p * nbytes / beta
                    tp = c["c0_s"] + c["c1_s_per_row"] * batch / p + ring
                    out.append(
                        {
                            "network": name,
                            "batch": batch,
                            "link": link,
                            "ranks": p,
                            "predicted_efficiency": t1 / (p * tp),
                            "predicted_allreduce_share": ring / tp,
                        }
                    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--network", default="784-256-128-10", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batches", default="128,1024,8192", help="global batch sizes (default 128,1024,8192)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per point (median), after one warm-up")
    ap.add_argument("--json", metavar="FILE", help="also write measurements, fit and prediction here")
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    args.batches = [int(b) for b in args.batches.split(",")]
    rows = run_all(args)
    model = fit(rows)
    params = {r["network"]: r["params"] for r in rows}
    pred = predict(model, params)
    print("## Measured on this machine\n")
    print("| network | params | global batch | ranks | BLAS threads/rank | steps/s | compute ms | Allreduce ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['network']} | {r['params']:,} | {r['batch']} | {r['ranks']} | {r['blas_threads']} |"
            f" {r['steps_per_s']:.2f} | {r['compute_s'] * 1e3:.2f} | {r['allreduce_s'] * 1e3:.3f} |"
        )
    here = model["allreduce_here"]
    print(
        f"\nFitted here: Allreduce ≈ {here['latency_s'] * 1e6:.1f} µs"
        f" + bytes / {here['bandwidth_B_per_s'] / 1e9:.2f} GB/s;"
        + "".join(
            f" {n}: compute ≈ {c['c0_s'] * 1e3:.3f} ms + {c['c1_s_per_row'] * 1e6:.2f} µs/row;"
            for n, c in model["compute"].items()
        )
    )
    print("\n## PREDICTED efficiency (a model fitted to the numbers above, not a measurement)\n")
    print("| network | global batch | link | 8 ranks | 64 ranks | 512 ranks |")
    print("|---|---:|---|---:|---:|---:|")
    for name in NETWORKS:
        for batch in (1024, 8192):
            for link in LINKS:
                cells = [
                    f"{e['predicted_efficiency']:.0%}"
                    for e in pred
                    if e["network"] == name and e["batch"] == batch and e["link"] == link
                ]
                print(f"| {name} | {batch} | {link} | {' | '.join(cells)} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"measured": rows, "model": model, "predicted": pred}, f, indent=1)


if __name__ == "__main__":
    main()
