"""Training throughput of mlpbp's own training loop against PyTorch CPU, on the same network,
data and batch sizes, in one run; plus peak memory and the machine's float32 GEMM rate.

    python benchmarks/throughput.py                      # batch sizes 1, 32, 128, 512
    python benchmarks/throughput.py --batch-sizes 1,128 --epochs 3 --json

Network 784-256-128-10, relu, softmax cross-entropy, plain SGD (learning rate 0.01, no momentum),
float32, the same initial weights in both. Data: synthetic, seeded, ROWS x 784 float32 features
and 10 classes. Each (framework, batch size) runs in a fresh subprocess, alternating between the
two, so one's threads, caches and allocator never disturb the other: one warm-up epoch, then
EPOCHS timed epochs; samples/s is the median epoch's. Peak memory is that subprocess's ru_maxrss
(the high-water mark of its resident set: interpreter, library, data and training), with the
resident set just before training shown beside it.

The mlpbp loop is the one ``mlpbp.train`` runs each epoch: one ``rng.permutation``, then
``sgd_epoch`` (for each batch: its rows gathered into a reused buffer,
``net.step_loss_and_grad``, a finiteness check of the loss, ``opt.step(net.grads)``). PyTorch runs its standard loop:
``zero_grad``, forward, ``cross_entropy``, ``backward``, ``torch.optim.SGD.step``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

if importlib.util.find_spec("mlpbp") is None:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WIDTHS = (784, 256, 128, 10)
LEARNING_RATE = 0.01
SEED = 0


def flops_per_sample(widths=WIDTHS) -> int:
    """Matrix-product FLOPs of one SGD step per sample: 2·in·out forward, 2·in·out for ∂J/∂W and
    2·in·out for ∂J/∂u in each layer, less the first layer's ∂J/∂u (the input needs none)."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return 6 * sum(i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]


def _data(rows: int):
    import numpy as np

    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((rows, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], rows)
    return X, y


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _run_mlpbp(batch: int, rows: int, epochs: int) -> tuple[list[float], int]:
    import numpy as np

    from mlpbp import MLP, SGD
    from mlpbp.run.trainer import sgd_epoch

    X, y = _data(rows)
    net = MLP(WIDTHS, "relu", "cross_entropy", seed=SEED, dtype="float32")
    opt = SGD(net.params, LEARNING_RATE)
    rng = np.random.default_rng(SEED)
    before = _rss_kib()

    def epoch():  # what mlpbp.run.trainer.Trainer runs each epoch
        _, loss = sgd_epoch(net, opt, X, y, rng.permutation(rows), batch)
        if not np.isfinite(loss):
            raise RuntimeError("the loss diverged")

    return _time_epochs(epoch, rows, epochs), before


def _run_torch(batch: int, rows: int, epochs: int) -> tuple[list[float], int]:
    import numpy as np
    import torch

    from mlpbp import MLP

    X, y = _data(rows)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    layers = []
    for i, lin in enumerate(MLP(WIDTHS, "relu", "cross_entropy", seed=SEED, dtype="float32").linears):
        layer = torch.nn.Linear(lin.W.shape[1], lin.W.shape[0])
        with torch.no_grad():  # the same initial weights as mlpbp
            layer.weight.copy_(torch.from_numpy(np.array(lin.W)))
            layer.bias.copy_(torch.from_numpy(np.array(lin.b)))
        layers += [layer, torch.nn.ReLU()] if i < len(WIDTHS) - 2 else [layer]
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    gen = torch.Generator().manual_seed(SEED)
    before = _rss_kib()

    def epoch():
        perm = torch.randperm(rows, generator=gen)
        Xs, ys = Xt[perm], yt[perm]
        for s in range(0, rows, batch):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(Xs[s : s + batch]), ys[s : s + batch])
            loss.backward()
            opt.step()

    return _time_epochs(epoch, rows, epochs), before


def _time_epochs(epoch, rows: int, epochs: int) -> list[float]:
    epoch()  # warm-up: buffers, caches, thread pools
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch()
        rates.append(rows / (time.perf_counter() - t0))
    return rates


def _run_gemm(n: int = 2048, repeats: int = 7) -> dict:
    """float32 GEMM rate of NumPy's BLAS on two distinct n x n matrices (A @ A.T would go to syrk)."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    A = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, n), dtype=np.float32)
    C = np.empty((n, n), np.float32)
    np.dot(A, B, out=C)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.dot(A, B, out=C)
        times.append(time.perf_counter() - t0)
    return {"n": n, "gflops": 2 * n**3 / statistics.median(times) / 1e9}


def child(args) -> None:
    """Runs in the subprocess: one measurement, printed as one JSON line."""
    if args.child == "gemm":
        result = _run_gemm()
    else:
        run = _run_mlpbp if args.child == "mlpbp" else _run_torch
        rates, before = run(args.batch, args.rows, args.epochs)
        result = {"samples_per_s": statistics.median(rates), "epochs": rates, "rss_before_training_mib": before / 1024}
        if args.child == "torch":
            import torch

            result |= {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _spawn(kind: str, args, batch: int = 0) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        kind,
        "--batch",
        str(batch),
        "--rows",
        str(args.rows),
        "--epochs",
        str(args.epochs),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} (batch {batch}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="1,32,128,512", help="comma-separated (default 1,32,128,512)")
    p.add_argument("--rows", type=int, default=16384, help="training rows (default 16384)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up (default 2)")
    p.add_argument("--no-torch", action="store_true", help="time mlpbp only")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--child", choices=("mlpbp", "torch", "gemm"), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)

    from mlpbp.tools.bench import blas_info

    with_torch = not args.no_torch
    if with_torch:
        if importlib.util.find_spec("torch") is None:
            raise SystemExit("PyTorch is not installed: pip install 'mlpbp[compare]' (or --no-torch)")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    fps = flops_per_sample()
    gemm = _spawn("gemm", args)
    rows = []
    for b in batches:  # alternate the frameworks, one fresh process each
        row = {"batch": b, "mlpbp": _spawn("mlpbp", args, b)}
        if with_torch:
            row["torch"] = _spawn("torch", args, b)
            row["speedup"] = row["mlpbp"]["samples_per_s"] / row["torch"]["samples_per_s"]
            row["memory_ratio"] = row["mlpbp"]["peak_rss_mib"] / row["torch"]["peak_rss_mib"]
        implied = gemm["gflops"] * 1e9 / fps
        row["gemm_implied_samples_per_s"] = implied
        row["fraction_of_gemm_rate"] = row["mlpbp"]["samples_per_s"] / implied
        rows.append(row)
    result = {
        "network": "-".join(map(str, WIDTHS)),
        "flops_per_sample": fps,
        "rows_of_data": args.rows,
        "blas": blas_info(),
        "gemm": gemm,
        "cpus": os.cpu_count(),
        "results": rows,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }
    if args.json:
        print(json.dumps(result))
        return
    blas = result["blas"]
    print(
        f"Network {result['network']}, relu, cross-entropy, plain SGD, float32; {args.rows} rows; "
        f"median of {args.epochs} epochs after a warm-up"
    )
    print(
        f"BLAS: {blas['library']} {blas['version']}, kernel {blas['kernel']}, {blas['threads']} threads; "
        f"OPENBLAS_CORETYPE={result['env']['OPENBLAS_CORETYPE']}, "
        f"OPENBLAS_L2_SIZE={result['env']['OPENBLAS_L2_SIZE']}; {os.cpu_count()} CPUs"
    )
    print(
        f"float32 GEMM ({gemm['n']}^3): {gemm['gflops']:.0f} GFLOP/s; one SGD step: "
        f"{fps / 1e6:.3f} MFLOP/sample -> GEMM-implied ceiling {gemm['gflops'] * 1e9 / fps:,.0f} samples/s"
    )
    head = f"{'batch':>5} {'mlpbp/s':>10} {'% GEMM':>7} {'peak MiB':>9}"
    if with_torch:
        head += f" {'torch/s':>10} {'peak MiB':>9} {'speedup':>8} {'memory':>7}"
    print(head)
    for r in rows:
        m = r["mlpbp"]
        line = (
            f"{r['batch']:>5} {m['samples_per_s']:>10,.0f} {100 * r['fraction_of_gemm_rate']:>6.1f}% "
            f"{m['peak_rss_mib']:>9.0f}"
        )
        if with_torch:
            t = r["torch"]
            line += (
                f" {t['samples_per_s']:>10,.0f} {t['peak_rss_mib']:>9.0f} {r['speedup']:>7.2f}x "
                f"{r['memory_ratio']:>6.2f}x"
            )
        print(line)
    if with_torch:
        print(
            f"PyTorch {rows[0]['torch']['torch']}, {rows[0]['torch']['torch_threads']} threads. speedup = "
            "mlpbp/PyTorch samples/s; memory = mlpbp/PyTorch peak RSS (ru_maxrss of each subprocess)"
        )


if __name__ == "__main__":
    main()
