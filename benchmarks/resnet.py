"""A residual MLP with batch normalisation and dropout, mlpbp's training step against PyTorch's
standard CPU loop on the same network, each in a fresh process, in one run.

    python benchmarks/resnet.py                 # width 256, 4 blocks, batch 256, AdamW, float32
    python benchmarks/resnet.py --steps 100 --json

Network: d=256 inputs → linear 256 → 4 × residual(batch_norm → linear 256 → relu → dropout 0.1 →
linear 256) → batch_norm → relu → linear 10, softmax cross-entropy, AdamW (lr 1e-3, weight
decay 0.01), float32, batch 256, synthetic seeded data. Each framework: a few warm-up steps,
then STEPS timed steps; seconds per step is the median of 5 equal chunks (and the fastest chunk,
``best_*``: on a busy machine the nearer to a quiet one's figure). ``--mlpbp-only`` skips
PyTorch. ``products`` is the time of the step's own matrix products alone (forward, ∂J/∂W and
∂J/∂u of each linear but the first's ∂J/∂u) at the same shapes, in the mlpbp process:
``step/products`` is mlpbp's step over it.
PyTorch runs with its default threads; mlpbp with 1 BLAS thread (train.threads: auto at this
size on 2 cores). Beside them (all but ``--mlpbp-only``): mlpbp at 2 BLAS threads
(``mlpbp2``), and PyTorch's own products at the same shapes (``torch.mm`` with ``out=``) at
its default threads and at 1 (``torch_products``, ``torch1_products``): a step can be no faster
than its products, so ``bound_*`` (PyTorch's step over mlpbp's products alone) is the most
any mlpbp step could be faster than PyTorch's at those thread counts. ``floor`` (its own
process, 1 thread): the least elementwise work a NumPy step can do beside its products, each
pass one ufunc or BLAS axpy over a whole array, caches warm, no graph: AdamW's eight passes over
one flat array of every parameter (m, g², v, √v, + ε, m/(√v + ε), θ, decay), four passes each
way per normalisation, a dropout's draw, comparison and two products, ReLU's two passes, the
residual adds and their gradient sums, the bias sums. ``bound_floor_*``: PyTorch's step over
mlpbp's products plus that floor, the most a NumPy engine could be faster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

WIDTH, BLOCKS, BATCH, CLASSES = 256, 4, 256, 10


def _layers():
    block = ["batch_norm", {"linear": WIDTH}, "relu", {"dropout": 0.1}, {"linear": WIDTH}]
    return [{"linear": WIDTH}, *({"residual": block} for _ in range(BLOCKS)), "batch_norm", "relu"]


def _data(np, steps):
    rng = np.random.default_rng(0)
    return rng.normal(size=(BATCH * 4, WIDTH)).astype(np.float32), rng.integers(0, CLASSES, BATCH * 4)


CHUNKS = 5


def _time(step, steps) -> float:
    """Seconds per step, the median of CHUNKS equal chunks (``_time.best``: the fastest chunk,
    the nearer to a quiet machine's figure when other work shares the cores)."""
    for _ in range(5):
        step(0)
    chunk, times = max(1, steps // CHUNKS), []
    for c in range(CHUNKS):
        t0 = time.perf_counter()
        for s in range(chunk):
            step(c * chunk + s)
        times.append((time.perf_counter() - t0) / chunk)
    _time.best = min(times)
    return statistics.median(times)


def _shapes():
    """(in, out) of each linear of the network, first to last."""
    return [(WIDTH, WIDTH), *[(WIDTH, WIDTH)] * (2 * BLOCKS), (WIDTH, CLASSES)]


def run_mlpbp(steps: int, threads: int = 1) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlpbp import AdamW, Network
    from mlpbp.engine import blas

    X, y = _data(np, steps)
    net = Network.from_layers(_layers(), WIDTH, CLASSES, loss="cross_entropy", seed=0, dtype="float32")
    opt = AdamW(net.params, 1e-3, weight_decay=0.01)
    with threadpool_limits(threads):
        per_step = _time(
            lambda s: net.train_step(X[(s % 4) * BATCH :][:BATCH], y[(s % 4) * BATCH :][:BATCH], opt), steps
        )
        best_step = _time.best
        shapes = [(m.W.shape[1], m.W.shape[0]) for m in net.linears if hasattr(m, "W")]
        assert shapes == _shapes()
        bufs = [(np.ones((BATCH, i), np.float32), np.ones((o, i), np.float32), np.ones((BATCH, o), np.float32))
                for i, o in shapes]  # fmt: skip

        def products(_):
            for k, (u, W, z) in enumerate(bufs):
                blas.matmul(u, W.T, z)
                blas.matmul(z.T, u, W)
                if k:
                    blas.matmul(z, W, u)

        prod = _time(products, steps)
    return {
        "seconds_per_step": per_step,
        "products_s": prod,
        "best_step_s": best_step,
        "best_products_s": _time.best,
        "threads": threads,
    }


def run_floor(steps: int) -> dict:
    """The step's elementwise floor in NumPy (the module docstring), per step, at 1 thread."""
    import numpy as np
    from scipy.linalg import blas
    from threadpoolctl import threadpool_limits

    from mlpbp import Network

    net = Network.from_layers(_layers(), WIDTH, CLASSES, loss="cross_entropy", seed=0, dtype="float32")
    kinds = [m.kind for m in net.layers]
    norms, drops, relus, linears = (kinds.count(k) for k in ("batch_norm", "dropout", "relu", "linear"))
    n = sum(p.size for p in net.params.values())
    rng = np.random.default_rng(0)
    p, g, m, v, d = (np.abs(rng.normal(size=n)).astype(np.float32) for _ in range(5))
    x, dx, y = (rng.normal(size=(BATCH, WIDTH)).astype(np.float32) for _ in range(3))
    col = np.empty(WIDTH, np.float32)
    bits = np.random.PCG64(0)

    def floor(_):
        blas.saxpy(g, m, a=0.1)
        np.multiply(g, g, out=d)
        blas.saxpy(d, v, a=0.001)
        np.sqrt(v, out=d)
        np.add(d, 1e-8, out=d)
        np.divide(m, d, out=d)
        blas.saxpy(d, p, a=-1e-3)
        np.multiply(p, 0.99999, out=p)
        for _ in range(8 * norms):
            np.multiply(x, dx, out=y)
        for _ in range(drops):
            words = bits.random_raw(BATCH * WIDTH // 2).view(np.uint32).reshape(BATCH, WIDTH)
            np.greater_equal(words, 1 << 30, out=y, casting="unsafe")
            np.multiply(x, y, out=y)
            np.multiply(dx, y, out=y)
        for _ in range(relus):
            np.maximum(x, 0, out=y)
            np.multiply(dx, x > 0, out=y)
        for _ in range(2 * BLOCKS):
            np.add(x, dx, out=y)
        for _ in range(linears):
            np.add.reduce(dx, axis=0, out=col)

    with threadpool_limits(1):
        per = _time(floor, steps)
    counts = {"parameters": n, "norms": norms, "dropouts": drops, "relus": relus, "linears": linears}
    return {"floor_s": per, "best_floor_s": _time.best, **counts}


def run_torch_products(steps: int, threads: int = 0) -> dict:
    """PyTorch's matrix products alone, the same ones at the same shapes as ``products``."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    bufs = [(torch.ones(BATCH, i), torch.ones(o, i), torch.ones(BATCH, o)) for i, o in _shapes()]

    def products(_):
        for k, (u, W, z) in enumerate(bufs):
            torch.mm(u, W.T, out=z)
            torch.mm(z.T, u, out=W)
            if k:
                torch.mm(z, W, out=u)

    per = _time(products, steps)
    return {"products_s": per, "best_products_s": _time.best, "threads": torch.get_num_threads()}


def run_torch(steps: int, threads: int = 0) -> dict:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)

    torch.manual_seed(0)
    X, y = _data(np, steps)
    X, y = torch.as_tensor(X), torch.as_tensor(y)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.f = torch.nn.Sequential(
                torch.nn.BatchNorm1d(WIDTH), torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(),
                torch.nn.Dropout(0.1), torch.nn.Linear(WIDTH, WIDTH),
            )  # fmt: skip

        def forward(self, x):
            return x + self.f(x)

    model = torch.nn.Sequential(
        torch.nn.Linear(WIDTH, WIDTH), *(Block() for _ in range(BLOCKS)), torch.nn.BatchNorm1d(WIDTH),
        torch.nn.ReLU(), torch.nn.Linear(WIDTH, CLASSES),
    )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def step(s):
        xb, yb = X[(s % 4) * BATCH :][:BATCH], y[(s % 4) * BATCH :][:BATCH]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()

    per_step = _time(step, steps)
    return {"seconds_per_step": per_step, "best_step_s": _time.best, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="timed steps per framework (default 200)")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--mlpbp-only", action="store_true", help="time mlpbp and its products alone (no PyTorch)")
    p.add_argument("--child", choices=tuple(CHILDREN), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args.steps)))
        return
    results = {}
    for name in ("mlpbp",) if args.mlpbp_only else tuple(CHILDREN):
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--steps", str(args.steps)],
            capture_output=True, text=True, check=True, env=dict(os.environ),
        )  # fmt: skip
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    m = results["mlpbp"]
    results["step_over_products"] = m["seconds_per_step"] / m["products_s"]
    results["best_step_over_best_products"] = m["best_step_s"] / m["best_products_s"]
    if args.mlpbp_only:
        if not args.json:
            print(
                f"mlpbp {1e3 * m['seconds_per_step']:.2f} ms/step (fastest chunk {1e3 * m['best_step_s']:.2f}),"
                f" products alone {1e3 * m['products_s']:.2f} ms ({1e3 * m['best_products_s']:.2f});"
                f" step/products {results['step_over_products']:.2f} ({results['best_step_over_best_products']:.2f})"
            )
        else:
            print(json.dumps(results, indent=2))
        return
    t, t1, m2 = results["torch"], results["torch1"], results["mlpbp2"]
    results["speedup_vs_torch"] = t["seconds_per_step"] / m["seconds_per_step"]
    results["speedup_vs_torch_1_thread"] = t1["seconds_per_step"] / m["seconds_per_step"]
    results["best_speedup_vs_torch_1_thread"] = t1["best_step_s"] / m["best_step_s"]
    results["speedup_2_threads_vs_torch"] = t["seconds_per_step"] / m2["seconds_per_step"]
    # no step is faster than its own products: the most mlpbp could gain, per thread count
    results["bound_1_thread_vs_torch"] = t["seconds_per_step"] / m["products_s"]
    results["bound_2_threads_vs_torch"] = t["seconds_per_step"] / m2["products_s"]
    results["bound_1_thread_vs_torch_1_thread"] = t1["seconds_per_step"] / m["products_s"]
    fl = results["floor"]["floor_s"]
    results["floor_over_products"] = (m["products_s"] + fl) / m["products_s"]
    results["bound_floor_1_thread_vs_torch"] = t["seconds_per_step"] / (m["products_s"] + fl)
    results["bound_floor_2_threads_vs_torch"] = t["seconds_per_step"] / (m2["products_s"] + fl)
    results["bound_floor_1_thread_vs_torch_1_thread"] = t1["seconds_per_step"] / (m["products_s"] + fl)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    tp, tp1 = results["torch_products"], results["torch1_products"]

    def ms(r, key):
        return f"{1e3 * r[key]:8.2f}"

    print(f"mlpbp   {ms(m, 'seconds_per_step')} ms/step  (1 thread; products alone {ms(m, 'products_s')} ms)")
    print(f"mlpbp   {ms(m2, 'seconds_per_step')} ms/step  (2 threads; products alone {ms(m2, 'products_s')} ms)")
    threads = f"{t['threads']} threads"
    print(f"PyTorch {ms(t, 'seconds_per_step')} ms/step  ({threads}; products alone {ms(tp, 'products_s')} ms)")
    print(f"PyTorch {ms(t1, 'seconds_per_step')} ms/step  (1 thread; products alone {ms(tp1, 'products_s')} ms)")
    r = {k: f"{v:.2f}" for k, v in results.items() if isinstance(v, float)}
    print(
        f"speed-up {r['speedup_vs_torch']}x ({r['speedup_vs_torch_1_thread']}x against 1 thread;"
        f" {r['speedup_2_threads_vs_torch']}x with 2 threads); step/products {r['step_over_products']};"
        f" fastest chunks: step/products {r['best_step_over_best_products']},"
        f" {r['best_speedup_vs_torch_1_thread']}x against 1 thread"
    )
    print(
        f"at most {r['bound_1_thread_vs_torch']}x PyTorch's step with 1 thread, {r['bound_2_threads_vs_torch']}x"
        f" with 2 (PyTorch's step over mlpbp's products alone); {r['bound_1_thread_vs_torch_1_thread']}x"
        " against PyTorch at 1 thread"
    )
    print(
        f"NumPy's elementwise floor beside the products {1e3 * fl:.2f} ms/step: (products + floor)/products"
        f" {r['floor_over_products']}; at most {r['bound_floor_1_thread_vs_torch']}x PyTorch's step with 1"
        f" thread, {r['bound_floor_2_threads_vs_torch']}x with 2, {r['bound_floor_1_thread_vs_torch_1_thread']}x"
        " against PyTorch at 1 thread"
    )


CHILDREN = {
    "mlpbp": run_mlpbp,
    "torch": run_torch,
    "torch1": lambda s: run_torch(s, 1),
    "mlpbp2": lambda s: run_mlpbp(s, 2),
    "torch_products": run_torch_products,
    "torch1_products": lambda s: run_torch_products(s, 1),
    "floor": run_floor,
}

if __name__ == "__main__":
    main()
