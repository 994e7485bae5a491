"""Training throughput of mlpbp's training step against its own reference path, PyTorch CPU and
jitted JAX, on the same network, data and batch sizes, in one run; with the time of the step's
own matrix products as the ceiling, the NumPy calls per step, peak memory, and optionally the
same again with a competing CPU-bound process (``--busy``).

    python benchmarks/throughput.py                      # batch sizes 1, 32, 128, 512
    python benchmarks/throughput.py --busy --repeats 3   # quiet and busy, each measurement 3 times
    python benchmarks/throughput.py --batch-sizes 1,128 --epochs 3 --json

Network 784-256-128-10, relu, softmax cross-entropy, plain SGD (learning rate 0.01, no momentum),
float32, the same initial weights everywhere. Data: synthetic, seeded, ROWS x 784 float32
features and 10 classes. Each (framework, batch size) runs in a fresh subprocess, the frameworks
alternating, so one's threads, caches and allocator never disturb another's: one warm-up epoch,
then EPOCHS timed epochs; samples/s is the median epoch's, and with ``--repeats`` the median over
repeats. Peak memory is that subprocess's ru_maxrss.

Columns:
- **mlpbp**: the loop ``mlpbp.train`` runs each epoch: one ``rng.permutation``, then
  ``sgd_epoch`` (each batch gathered into a reused buffer, then ``net.train_step``: the fused
  step), with the BLAS threads ``train.threads: auto`` chooses (``mlpbp.run.threads``).
- **reference**: the same loop with the transparent step, ``net.step_loss_and_grad`` then
  ``opt.step(net.grads)`` (what mlpbp ran before the fused step), at the same thread count.
- **products**: the time of the step's own matrix products alone, at the very shapes of the step
  and the same thread count (forward, ∂J/∂W and ∂J/∂u of each layer but the input's), in the
  mlpbp process, through the same BLAS: the ceiling the step cannot beat. ``step/products`` is mlpbp's step time
  over it.
- **first**: the training step as first shipped (commit ``9145f7b``, the last before the fused
  step: the step issue 13 measured at 310–340 µs at batch 1), its own code taken from git
  (``git archive``) and run in its own process through its own ``sgd_epoch``, at mlpbp's thread
  count. Left out, with a note, when git or that commit is not at hand.
- **PyTorch**: its standard loop (``zero_grad``, forward, ``cross_entropy``, ``backward``,
  ``torch.optim.SGD.step``), its default threads.
- **JAX** (when installed): ``jax.jit`` of the whole step with the parameters donated, its
  default threads.
- **calls/step**: operations leaving Python in mlpbp's frames per step (calls into NumPy, SciPy's
  BLAS and builtins, and array operators), counted once by an opcode trace in this benchmark.

``--busy``: every measurement is taken twice, quiet and with one competing CPU-bound process
running (a pure-Python busy loop), so ``drop`` is quiet/busy throughput from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

if importlib.util.find_spec("mlpbp") is None:  # run from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

WIDTHS = (784, 256, 128, 10)
LEARNING_RATE = 0.01
SEED = 0
FRAMEWORKS = ("mlpbp", "reference", "first", "torch", "jax")
FIRST_STEP_COMMIT = "9145f7b"  # the last commit before the fused step (see "first" above)


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


def _init_weights():
    """mlpbp's initial weights, as (W, b) per layer, for every framework."""
    import numpy as np

    from mlpbp import MLP

    net = MLP(WIDTHS, "relu", "cross_entropy", seed=SEED, dtype="float32")
    return [(np.array(lin.W), np.array(lin.b)) for lin in net.linears]


# ---- mlpbp ------------------------------------------------------------------------------------
def _count_calls(step, steps: int = 20) -> float:
    """Calls into NumPy and SciPy's BLAS per ``step()`` made from mlpbp's own frames: CALLs that
    enter neither an mlpbp Python function nor a Python builtin (``len``, ``dict.get``, ...), plus
    array operators and item stores (``z += b``, ``o[rows, y] -= c``). Approximate by a few: scalar
    arithmetic counts too, and array reads by index (``o[rows, y]``) do not."""
    import dis

    import mlpbp

    root = os.path.dirname(os.path.abspath(mlpbp.__file__))
    call, cache = dis.opmap["CALL"], dis.opmap["CACHE"]
    operators = {dis.opmap["BINARY_OP"], dis.opmap["STORE_SUBSCR"]}
    count = [0]

    def ours(frame) -> bool:
        return frame is not None and frame.f_code.co_filename.startswith(root)

    def calling(frame) -> bool:  # is the frame in the middle of a CALL instruction?
        code, i = frame.f_code.co_code, frame.f_lasti
        while i > 0 and code[i] == cache:  # f_lasti may point into CALL's inline cache
            i -= 2
        return code[i] == call

    def tracer(frame, event, arg):
        if event == "call":
            if not ours(frame):
                return None
            if ours(frame.f_back) and calling(frame.f_back):
                count[0] -= 1  # that CALL entered mlpbp's own Python code: not a call out
            frame.f_trace_opcodes = True
            return tracer
        if event == "opcode":
            op = frame.f_code.co_code[frame.f_lasti]
            count[0] += op == call or op in operators
        return tracer

    def profiler(frame, event, arg):
        if event == "c_call" and ours(frame):
            owner = getattr(arg, "__self__", None)
            numpy = type(owner).__module__.startswith("numpy") or (getattr(arg, "__module__", None) or "").startswith(
                ("numpy", "scipy")
            )
            count[0] -= not numpy  # a Python builtin, not NumPy

    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        for _ in range(steps):
            step()
    finally:
        sys.setprofile(None)
        sys.settrace(None)
    return count[0] / steps


def _products_time(batch: int, repeats: int = 30) -> float:
    """Seconds for the matrix products of one step at the step's shapes, through the BLAS the
    step itself calls (``mlpbp.engine.blas``)."""
    import numpy as np

    from mlpbp.engine.blas import matmul

    rng = np.random.default_rng(SEED)
    pairs = list(zip(WIDTHS[:-1], WIDTHS[1:]))
    mats = []
    for r, (i, o) in enumerate(pairs):
        W = rng.standard_normal((o, i), dtype=np.float32)
        u = rng.standard_normal((batch, i), dtype=np.float32)
        gz = rng.standard_normal((batch, o), dtype=np.float32)
        mats.append((W, u, gz, np.empty((batch, o), np.float32), np.empty_like(W), np.empty_like(u), r > 0))

    def products():
        for W, u, gz, z, gW, gu, need_u in mats:
            matmul(u, W.T, z)
            matmul(gz.T, u, gW)
            if need_u:
                matmul(gz, W, gu)

    products()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        products()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _run_mlpbp(batch: int, rows: int, epochs: int, reference: bool, threads) -> dict:
    import numpy as np

    from mlpbp import MLP, SGD
    from mlpbp.run.threads import blas_thread_limit, blas_threads, choose_threads, step_timer
    from mlpbp.run.trainer import sgd_epoch

    X, y = _data(rows)
    net = MLP(WIDTHS, "relu", "cross_entropy", seed=SEED, dtype="float32")
    opt = SGD(net.params, LEARNING_RATE)
    choice = choose_threads(threads, net.widths, batch, measure=step_timer(net, opt, X, y, batch))
    rng = np.random.default_rng(SEED)
    before = _rss_kib()

    class Reference:  # the transparent path, through the same sgd_epoch loop
        def __getattr__(self, name):
            return getattr(net, name)

        def train_step(self, Xb, yb, opt, sample_weight=None):  # as sgd_epoch calls Network's
            loss = net.step_loss_and_grad(Xb, yb, sample_weight)
            if np.isfinite(loss):
                opt.step(net.grads)
            return loss

    model = Reference() if reference else net

    def epoch():  # what mlpbp.run.trainer.Trainer runs each epoch
        _, loss = sgd_epoch(model, opt, X, y, rng.permutation(rows), batch)
        if not np.isfinite(loss):
            raise RuntimeError("the loss diverged")

    with blas_thread_limit(choice.threads), np.errstate(all="ignore"):
        rates = _time_epochs(epoch, rows, epochs)
        products = _products_time(batch)
        calls = _count_calls(lambda: model.train_step(X[:batch], y[:batch], opt))
        n_threads = blas_threads()
    return {
        "rates": rates,
        "rss_before": before,
        "threads": n_threads,
        "threads_reason": choice.reason,
        "products_s": products,
        "calls_per_step": calls,
    }


# ---- the first shipped step -------------------------------------------------------------------
def _first_step_tree(folder: str) -> str | None:
    """mlpbp's package as of FIRST_STEP_COMMIT, unpacked into ``folder``; why not, if it cannot be."""
    import io
    import tarfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        proc = subprocess.run(["git", "-C", repo, "archive", FIRST_STEP_COMMIT, "mlpbp"], capture_output=True)
    except OSError:
        return "git is not installed: no 'first' column"
    if proc.returncode:
        return f"commit {FIRST_STEP_COMMIT} is not in {repo} (a git clone is needed): no 'first' column"
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return None


def _run_first(batch: int, rows: int, epochs: int, threads: int) -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    import mlpbp  # the first shipped package: its folder is first on PYTHONPATH

    if not mlpbp.__file__.startswith(os.environ["MLPBP_FIRST_TREE"]):
        raise RuntimeError(f"imported {mlpbp.__file__}, not the first shipped step")
    from mlpbp import MLP, SGD
    from mlpbp.run.trainer import sgd_epoch

    X, y = _data(rows)
    net = MLP(WIDTHS, "relu", "cross_entropy", seed=SEED, dtype="float32")
    opt = SGD(net.params, LEARNING_RATE)
    rng = np.random.default_rng(SEED)
    before = _rss_kib()

    def epoch():
        _, loss = sgd_epoch(net, opt, X, y, rng.permutation(rows), batch)
        if not np.isfinite(loss):
            raise RuntimeError("the loss diverged")

    with threadpool_limits(threads), np.errstate(all="ignore"):
        rates = _time_epochs(epoch, rows, epochs)
    return {"rates": rates, "rss_before": before, "threads": threads}


# ---- PyTorch ----------------------------------------------------------------------------------
def _run_torch(batch: int, rows: int, epochs: int) -> dict:
    import torch

    X, y = _data(rows)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    layers = []
    weights = _init_weights()
    for i, (W, b) in enumerate(weights):
        layer = torch.nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():  # the same initial weights as mlpbp
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
        layers += [layer, torch.nn.ReLU()] if i < len(weights) - 1 else [layer]
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

    rates = _time_epochs(epoch, rows, epochs)
    return {"rates": rates, "rss_before": before, "version": torch.__version__, "threads": torch.get_num_threads()}


# ---- JAX --------------------------------------------------------------------------------------
def _run_jax(batch: int, rows: int, epochs: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    X, y = _data(rows)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in _init_weights()]

    def loss_fn(params, xb, yb):
        h = xb
        for i, (W, b) in enumerate(params):
            h = h @ W.T + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    def sgd_step(params, xb, yb):
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        new = [(W - LEARNING_RATE * gW, b - LEARNING_RATE * gb) for (W, b), (gW, gb) in zip(params, grads)]
        return new, loss

    step = jax.jit(sgd_step, donate_argnums=0)  # the old parameters' buffers are reused for the new
    rng = np.random.default_rng(SEED)
    before = _rss_kib()
    state = {"params": params}

    def epoch():
        perm = jnp.asarray(rng.permutation(rows))
        Xs, ys = Xj[perm], yj[perm]
        p = state["params"]
        for s in range(0, rows, batch):
            p, loss = step(p, Xs[s : s + batch], ys[s : s + batch])
        loss.block_until_ready()
        state["params"] = p

    rates = _time_epochs(epoch, rows, epochs)
    return {"rates": rates, "rss_before": before, "version": jax.__version__}


def _time_epochs(epoch, rows: int, epochs: int) -> list[float]:
    epoch()  # warm-up: buffers, caches, thread pools, compilation
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
    threads = args.threads if args.threads == "auto" else int(args.threads)
    if args.child == "gemm":
        result = _run_gemm()
    else:
        if args.child in ("mlpbp", "reference"):
            result = _run_mlpbp(args.batch, args.rows, args.epochs, args.child == "reference", threads)
        elif args.child == "first":
            result = _run_first(args.batch, args.rows, args.epochs, threads)
        else:
            result = (_run_torch if args.child == "torch" else _run_jax)(args.batch, args.rows, args.epochs)
        result["samples_per_s"] = statistics.median(result["rates"])
        result["rss_before_training_mib"] = result.pop("rss_before") / 1024
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _spawn(kind: str, args, batch: int = 0, threads=None, env=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--batch", str(batch)]
    cmd += ["--rows", str(args.rows), "--epochs", str(args.epochs), "--threads", str(threads or args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} (batch {batch}) failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _competitor(on: bool):
    """One CPU-bound process (a pure-Python busy loop) running for the block's duration."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it get going before the measurement starts
        yield
    finally:
        proc.kill()
        proc.wait()


def _median_of(results: list[dict]) -> dict:
    """The repeat with the median throughput, with every repeat's throughput beside it."""
    ordered = sorted(results, key=lambda r: r["samples_per_s"])
    mid = dict(ordered[(len(ordered) - 1) // 2])
    mid["repeats"] = [r["samples_per_s"] for r in results]
    return mid


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="1,32,128,512", help="comma-separated (default 1,32,128,512)")
    p.add_argument("--rows", type=int, default=16384, help="training rows (default 16384)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up (default 2)")
    p.add_argument("--repeats", type=int, default=1, help="fresh processes per measurement; median (default 1)")
    p.add_argument("--threads", default="auto", help="mlpbp's BLAS threads: auto (default, as train does) or N")
    p.add_argument("--busy", action="store_true", help="also time each with one competing CPU-bound process")
    p.add_argument("--no-first", action="store_true", help="leave the first shipped step out")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-jax", action="store_true", help="leave JAX out")
    p.add_argument("--json", action="store_true", help="print the results as JSON only")
    p.add_argument("--child", choices=(*FRAMEWORKS, "gemm"), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    if args.threads != "auto" and not (args.threads.isdigit() and int(args.threads) > 0):
        p.error(f"--threads must be auto or a positive integer; got {args.threads!r}")

    with tempfile.TemporaryDirectory(prefix="mlpbp-first-step-") as tree:
        _measure(args, tree)


def _measure(args, tree: str) -> None:
    from mlpbp.tools.bench import blas_info

    frameworks = ["mlpbp", "reference"]
    skipped_first = None if args.no_first else _first_step_tree(tree)
    if not args.no_first and skipped_first is None:
        frameworks.append("first")
    first_env = {**os.environ, "PYTHONPATH": tree, "MLPBP_FIRST_TREE": tree}
    if not args.no_torch:
        if importlib.util.find_spec("torch") is None:
            raise SystemExit("PyTorch is not installed: pip install 'mlpbp[compare]' (or --no-torch)")
        frameworks.append("torch")
    skipped_jax = None
    if not args.no_jax:
        if importlib.util.find_spec("jax") is None:
            skipped_jax = "JAX is not installed (pip install jax): no JAX column"
        else:
            frameworks.append("jax")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    fps = flops_per_sample()
    gemm = _spawn("gemm", args)
    conditions = ("quiet", "busy") if args.busy else ("quiet",)
    rows = []
    for b in batches:
        row = {"batch": b}
        for cond in conditions:
            runs = {f: [] for f in frameworks}
            for _ in range(args.repeats):  # alternate the frameworks, one fresh process each
                with _competitor(cond == "busy"):
                    for f in frameworks:
                        if f == "first":  # at the thread count mlpbp just chose
                            runs[f].append(_spawn(f, args, b, runs["mlpbp"][-1]["threads"], first_env))
                        else:
                            runs[f].append(_spawn(f, args, b))
            res = {f: _median_of(r) for f, r in runs.items()}
            m = res["mlpbp"]
            step_s = b / m["samples_per_s"]
            res["products_samples_per_s"] = b / m["products_s"]
            res["step_over_products"] = step_s / m["products_s"]
            for f in frameworks[1:]:
                res[f"vs_{f}"] = m["samples_per_s"] / res[f]["samples_per_s"]
            row[cond] = res
        if args.busy:
            row["drop"] = {f: row["quiet"][f]["samples_per_s"] / row["busy"][f]["samples_per_s"] for f in frameworks}
        rows.append(row)
    result = {
        "network": "-".join(map(str, WIDTHS)),
        "flops_per_sample": fps,
        "rows_of_data": args.rows,
        "blas": blas_info(),
        "gemm": gemm,
        "cpus": os.cpu_count(),
        "cpu": _cpu_name(),
        "results": rows,
        "jax_skipped": skipped_jax,
        "first_skipped": skipped_first,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")},
    }
    if args.json:
        print(json.dumps(result))
        return
    _print(result, frameworks, conditions, args)


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _print(result: dict, frameworks: list[str], conditions, args) -> None:
    blas, gemm, env = result["blas"], result["gemm"], result["env"]
    print(
        f"Network {result['network']}, relu, cross-entropy, plain SGD, float32; {args.rows} rows; "
        f"median of {args.epochs} epochs after a warm-up, median of {args.repeats} process(es)"
    )
    print(
        f"CPU: {result['cpu']}, {result['cpus']} CPUs. BLAS: {blas['library']} {blas['version']}, kernel "
        f"{blas['kernel']}; OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE={env['OPENBLAS_L2_SIZE']}"
    )
    mflop = result["flops_per_sample"] / 1e6
    print(f"float32 GEMM ({gemm['n']}^3): {gemm['gflops']:.0f} GFLOP/s; one SGD step: {mflop:.3f} MFLOP/sample")
    for skipped in (result["first_skipped"], result["jax_skipped"]):
        if skipped:
            print(skipped)
    names = {"mlpbp": "mlpbp/s", "reference": "ref/s", "first": "first/s", "torch": "torch/s", "jax": "jax/s"}
    others = frameworks[1:]
    for cond in conditions:
        print(f"\n{cond}" + (": one competing CPU-bound process" if cond == "busy" else ""))
        cols = ["batch", "thr", *(names[f] for f in frameworks), "products/s", "step/prod", "calls", "ref calls"]
        cols += [f"x{f[:5]}" for f in others] + ["MiB"] + (["MiB torch"] if "torch" in frameworks else [])
        print(" ".join(f"{c:>{max(len(c), 6)}}" for c in cols))
        for r in result["results"]:
            res = r[cond]
            m = res["mlpbp"]
            cells = [r["batch"], m["threads"], *(f"{res[f]['samples_per_s']:,.0f}" for f in frameworks)]
            cells += [f"{res['products_samples_per_s']:,.0f}", f"{res['step_over_products']:.2f}"]
            cells += [f"{m['calls_per_step']:.0f}", f"{res['reference']['calls_per_step']:.0f}"]
            cells += [f"{res['vs_' + f]:.2f}x" for f in others] + [f"{m['peak_rss_mib']:.0f}"]
            cells += [f"{res['torch']['peak_rss_mib']:.0f}"] if "torch" in frameworks else []
            print(" ".join(f"{c!s:>{max(len(h), 6)}}" for c, h in zip(cells, cols)))
    if "busy" in conditions:
        print("\ndrop (quiet/busy throughput):")
        for r in result["results"]:
            print(f"  batch {r['batch']}: " + ", ".join(f"{f} {r['drop'][f]:.2f}x" for f in frameworks))
    first = result["results"][0]["quiet"]
    extra = []
    if "torch" in frameworks:
        extra.append(f"PyTorch {first['torch']['version']} ({first['torch']['threads']} threads)")
    if "jax" in frameworks:
        extra.append(f"JAX {first['jax']['version']} (jit, donated parameters)")
    print(
        "\nthr = mlpbp's BLAS threads (train.threads auto unless --threads); ref = the reference step "
        "(step_loss_and_grad + SGD.step); first = the step as first shipped (commit "
        f"{FIRST_STEP_COMMIT}, before the fused step); products = the step's own matrix products alone; step/prod = "
        "mlpbp's step time over theirs; calls = NumPy/BLAS calls per step; xNAME = mlpbp's throughput "
        "over NAME's; MiB = peak RSS. " + "; ".join(extra)
    )


if __name__ == "__main__":
    main()
