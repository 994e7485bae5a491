"""The cheap-gradient theorem, measured: time J, ∇J and ∇²J·v for deeper and deeper networks.

If J costs n operations, ∇J costs O(n) (reverse mode): for a dense network about 3 times J, one
matrix product forward and two backward, at every depth. A Hessian-vector product by
forward-over-reverse (the R-operator) is a small constant times J too.

The network for depth D: ``width`` inputs, D hidden layers of ``width`` units (relu), 10 outputs,
softmax cross-entropy: widths [width] * (D + 1) + [10]. PyTorch, when compared, runs the same
network with the same weights, batch and direction.

This module is the timing API; ``run_bench`` returns a ``BenchResult`` (``mlpbp bench --json`` is
its JSON form) and the command line (``mlpbp bench``) draws the table.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mlpbp.engine.dtypes import DTYPES
from mlpbp.engine.memory import activation_bytes, describe_widths, network_bytes, require
from mlpbp.engine.network import MLP
from mlpbp.errors import ArgumentError
from mlpbp.results import Result, asked
from mlpbp.run.threads import blas_thread_limit

N_CLASSES = 10
ACTIVATION = "relu"
LOSS = "cross_entropy"
TORCH_HVP_METHOD = "double-backward (torch.autograd.grad with create_graph=True)"


# ---- what the machine is --------------------------------------------------------------------
def blas_info() -> dict:
    """The BLAS the engine's products run on (SciPy's: ``mlpbp.engine.blas``): library, version,
    kernel (e.g. OpenBLAS's SkylakeX or Haswell) and threads, as threadpoolctl finds them."""
    import scipy
    from threadpoolctl import threadpool_info

    build = scipy.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    info = {
        "library": build.get("name", "unknown"),
        "version": build.get("version", "unknown"),
        "kernel": "unknown",
        "threads": None,
    }
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    # NumPy's own BLAS sits in numpy.libs, SciPy's in scipy.libs (wheels); one shared library otherwise
    ours = [p for p in pools if os.path.basename(os.path.dirname(p["filepath"])).startswith("scipy")]
    for p in (ours or pools)[:1]:
        info.update(
            internal_api=p["internal_api"],
            kernel=p.get("architecture") or "unknown",
            threads=p["num_threads"],
            filepath=p["filepath"],
        )
    info["env"] = {
        k: os.environ[k]
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
        if k in os.environ
    }
    return info


# ---- what is timed --------------------------------------------------------------------------
def depths_up_to(n: int) -> list[int]:
    """1, 2, 4, … up to n, with n itself included."""
    if n < 1:
        raise ArgumentError(f"depth must be >= 1; got {n}", argument="depth")
    depths, d = [], 1
    while d < n:
        depths.append(d)
        d *= 2
    return depths + [n]


def bench_widths(depth: int, width: int) -> list[int]:
    return [width] * (depth + 1) + [N_CLASSES]


def check_arguments(
    depth: int, width: int, batch: int, dtype: str, repeats: int, compare: str | None, threads: int = 1
) -> None:
    """ArgumentError for a bad argument of ``run_bench``, or a deepest network (and a batch) too
    large for memory, before any timing."""
    depths_up_to(depth)
    for name, value in (("width", width), ("batch", batch), ("repeats", repeats), ("threads", threads)):
        if value < 1:
            raise ArgumentError(f"{name} must be >= 1; got {value}", argument=name)
    if dtype not in DTYPES:
        raise ArgumentError(f"dtype: {DTYPES.unknown_message(dtype)}", argument="dtype")
    if compare not in (None, "torch"):
        raise ArgumentError(f"compare allows only 'torch'; got {compare!r}", argument="compare")
    widths = bench_widths(depth, width)
    require(
        network_bytes(widths, dtype) + activation_bytes(widths, batch, dtype),
        f"depth {depth} at width {width} and batch {batch}: a {describe_widths(widths)} network",
        argument="depth",
    )


def bench_problem(depth: int, width: int, batch: int, dtype: str = "float32", seed: int = 0):
    """The network, a batch (X, y) and a unit-variance direction v, all seeded."""
    net = MLP(bench_widths(depth, width), activation=ACTIVATION, loss=LOSS, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    X = rng.standard_normal((batch, width)).astype(dtype)
    y = rng.integers(0, N_CLASSES, batch)
    v = {k: rng.standard_normal(p.shape).astype(dtype) for k, p in net.params.items()}
    return net, X, y, v


UNSTABLE_SPREAD = 0.25  # repeats of one call more than 25% apart: the timings are not to be trusted
SETTLED = 0.03  # the fastest AGREE repeats of a call within 3%: its minimum is its cost
AGREE = 3
THREADS = 1  # BLAS threads while timing (run_bench explains why one)
BUDGET_S = 2.0  # seconds of timing per depth before giving up on minima that will not settle
MAX_REPEATS = 1000


def settled(samples: list[float], within: float = SETTLED) -> bool:
    """Whether the fastest ``AGREE`` repeats of a call agree within ``within``: the minimum
    is then the call's own cost, not one lucky moment between two other processes' slices."""
    if len(samples) < AGREE:
        return False
    fastest = sorted(samples)[:AGREE]
    return fastest[-1] <= fastest[0] * (1 + within)


def time_calls(
    fns: dict[str, Callable[[], object]], repeats: int = 5, min_seconds: float = 0.01
) -> dict[str, list[float]]:
    """Seconds per call of each function, one sample per repeat, after one warm-up call.

    Repeats go round-robin over the functions, so that noise from other processes falls on all
    of them alike and their ratios stay steady; each repeat runs a function enough times in a
    row to last about ``min_seconds``."""
    number = {}
    for name, fn in fns.items():  # warm-up: buffers, caches, lazy imports; calibrates `number`
        fn()
        t0 = time.perf_counter()
        fn()
        number[name] = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = number[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return samples


def time_until_settled(
    fns: dict[str, Callable[[], object]], repeats: int = 5, budget_s: float | None = BUDGET_S
) -> dict[str, list[float]]:
    """``time_calls``'s samples, ``repeats`` rounds and then (with ``budget_s``, and ``repeats``
    of at least ``AGREE``: fewer asks for a quick look) more, ``AGREE`` rounds at a time, until
    every function's fastest repeats have ``settled`` or ``budget_s`` more seconds have passed.
    Another process slows some repeats and never speeds one up, so the minimum is the cost."""
    samples = time_calls(fns, repeats)
    if budget_s is None or repeats < AGREE:
        return samples
    started = time.perf_counter()
    while not all(settled(s) for s in samples.values()) and time.perf_counter() - started < budget_s:
        if min(map(len, samples.values())) >= MAX_REPEATS:
            break
        for name, more in time_calls(fns, AGREE).items():
            samples[name] += more
    return samples


def spread(samples: list[float]) -> float | None:
    """How far repeats of one call disagree: (slowest − fastest) / median; None for one repeat."""
    if len(samples) < 2:
        return None
    return (max(samples) - min(samples)) / statistics.median(samples)


def mlpbp_calls(net: MLP, X, y, v) -> dict[str, Callable]:
    """J alone, J and ∇J (the training pass, gradients in place), and ∇²J·v."""
    return {
        "loss": lambda: net.loss(X, y),
        "grad": lambda: net.step_loss_and_grad(X, y),
        "hvp": lambda: net.hvp(X, y, v),
    }


def torch_calls(net: MLP, X, y, v) -> dict[str, Callable]:
    """The same three in PyTorch, same weights and data: J under no_grad, ∇J by
    torch.autograd.grad, ∇²J·v by double backward (the fastest of PyTorch's standard ways
    here; torch.func.jvp over torch.func.grad measured slower on CPU)."""
    torch = import_torch()
    F = torch.nn.functional
    params = [torch.tensor(p, requires_grad=True) for p in net.params.values()]
    vs = [torch.tensor(v[k]) for k in net.params]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))

    def loss(ps):
        h = Xt
        for r in range(0, len(ps) - 2, 2):
            h = torch.relu(F.linear(h, ps[r], ps[r + 1]))
        return F.cross_entropy(F.linear(h, ps[-2], ps[-1]), yt)

    def loss_only():
        with torch.no_grad():
            return loss(params)

    def grad():
        return torch.autograd.grad(loss(params), params)

    def hvp():
        g = torch.autograd.grad(loss(params), params, create_graph=True)
        return torch.autograd.grad(g, params, grad_outputs=vs)

    return {"torch_loss": loss_only, "torch_grad": grad, "torch_hvp": hvp}


def import_torch():
    try:
        import torch
    except ImportError:
        raise ArgumentError("comparing with torch needs PyTorch: pip install 'mlpbp[compare]'") from None
    return torch


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """Least-squares intercept and slope of ys against xs, or None where no line means anything:
    fewer than two sizes, or a time that does not grow with the size (noise, not cost)."""
    if len(set(xs)) < 2:
        return None
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    slope, intercept = np.polyfit(x, y, 1)
    if intercept < 0:  # no call takes negative time: the best line with a >= 0 goes through 0
        slope, intercept = float(x @ y / (x @ x)), 0.0
    if not (np.isfinite(slope) and np.isfinite(intercept) and slope > 0):
        return None
    return float(intercept), float(slope)


@dataclass
class BenchRow(Result):
    """One depth: the fastest time of each call, and the ratios the theorem is about."""

    depth: int
    params: int
    loss_s: float
    grad_s: float
    hvp_s: float
    grad_ratio: float
    hvp_ratio: float
    # PyTorch's, with --compare torch (absent otherwise)
    torch_loss_s: float | None = asked()
    torch_grad_s: float | None = asked()
    torch_hvp_s: float | None = asked()
    torch_grad_ratio: float | None = asked()
    torch_hvp_ratio: float | None = asked()
    spread: dict[str, float | None] = field(default_factory=dict)  # per call: (slowest − fastest) / median
    repeats: dict[str, int] = field(default_factory=dict)  # per call: the repeats taken
    settled: dict[str, bool] = field(default_factory=dict)  # per call: its fastest repeats agreed


@dataclass
class CallAt(Result):
    depth: int
    call: str  # loss, grad, hvp (torch_loss, … with --compare torch)


@dataclass
class Stability(Result):
    max_spread: float | None  # the largest spread of any call (None: one repeat)
    worst: CallAt | None  # where it was
    # Repeats that disagree by more than UNSTABLE_SPREAD: another process took the CPU.
    unstable: bool
    # The fastest repeats of these calls never agreed within SETTLED in the budget: the
    # machine was too busy for their minima, and so the ratios, to be trusted.
    unsettled: list[CallAt]
    trustworthy: bool | None  # None: not judged, under AGREE repeats


@dataclass
class LineFit(Result):
    """time ≈ intercept_s + per_param_s · params."""

    intercept_s: float
    per_param_s: float


@dataclass
class BenchNetwork(Result):
    widths: str
    activation: str
    loss: str
    batch: int
    dtype: str
    repeats: int
    budget_s: float | None


@dataclass
class TorchInfo(Result):
    version: str
    threads: int
    hvp_method: str


@dataclass
class BenchResult(Result):
    """What ``mlpbp bench`` measured."""

    rows: list[BenchRow]
    stability: Stability
    blas: dict  # blas_info(): what threadpoolctl finds, keys by BLAS
    threads: int | None
    fit: dict[str, LineFit | None]  # per call (loss, grad, hvp, torch_…): None where no line means anything
    network: BenchNetwork
    torch: TorchInfo | None = asked()  # with --compare torch


def run_bench(
    depth: int,
    width: int = 256,
    batch: int = 64,
    dtype: str = "float32",
    repeats: int = 5,
    compare: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int, int], None] | None = None,
    budget_s: float = BUDGET_S,
    threads: int = THREADS,
) -> BenchResult:
    """Time J, ∇J and ∇²J·v at depths 1, 2, 4, … depth, interleaved, each the fastest of at
    least ``repeats`` repeats and of more, up to ``budget_s`` seconds per depth, until the
    fastest agree (``settled``); returns the rows, their spread, whether the machine let the
    minima settle, the BLAS in use and a straight-line fit of each time against the parameter
    count.

    Every BLAS pool of the process (and PyTorch's, with ``compare``) runs ``threads`` threads
    while it times: one by default. The theorem is about operation counts, and one thread keeps
    the machine's other work off the ratios: with two threads on two cores, one other busy
    process takes half of every product (one thread waits for its descheduled partner), and
    the busy/quiet ratios were 1.05-1.83 at depths 1-64 (benchmarks/README.md).

    ``progress(done, total, depth)`` is called after each depth."""
    check_arguments(depth, width, batch, dtype, repeats, compare, threads)
    torch = import_torch() if compare else None
    torch_threads = None if torch is None else torch.get_num_threads()
    try:
        with blas_thread_limit(threads):
            if torch is not None:
                torch.set_num_threads(threads)
            return _run_bench(depth, width, batch, dtype, repeats, torch, seed, progress, budget_s)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)


def _run_bench(depth, width, batch, dtype, repeats, torch, seed, progress, budget_s) -> BenchResult:
    depths = depths_up_to(depth)
    rows: list[BenchRow] = []
    for i, d in enumerate(depths):
        net, X, y, v = bench_problem(d, width, batch, dtype, seed)
        # One block per framework: interleaved calls make NumPy's and PyTorch's thread pools
        # spin against each other on a small machine.
        samples = time_until_settled(mlpbp_calls(net, X, y, v), repeats, budget_s)
        if torch is not None:
            samples |= time_until_settled(torch_calls(net, X, y, v), repeats, budget_s)
        t = {name: min(s) for name, s in samples.items()}
        row = BenchRow(d, net.n_params, t["loss"], t["grad"], t["hvp"], t["grad"] / t["loss"], t["hvp"] / t["loss"])
        if torch is not None:
            row.torch_loss_s, row.torch_grad_s, row.torch_hvp_s = t["torch_loss"], t["torch_grad"], t["torch_hvp"]
            row.torch_grad_ratio = t["torch_grad"] / t["torch_loss"]
            row.torch_hvp_ratio = t["torch_hvp"] / t["torch_loss"]
        row.spread = {name: spread(s) for name, s in samples.items()}
        row.repeats = {name: len(s) for name, s in samples.items()}
        row.settled = {name: settled(s) for name, s in samples.items()}
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(depths), d)
    params = [r.params for r in rows]
    fit = {}
    for key in ("loss", "grad", "hvp") + (("torch_loss", "torch_grad", "torch_hvp") if torch else ()):
        line = fit_line(params, [getattr(r, f"{key}_s") for r in rows])
        fit[key] = None if line is None else LineFit(*line)
    spreads = [(v, r.depth, k) for r in rows for k, v in r.spread.items() if v is not None]
    worst = max(spreads, default=None)
    unsettled = [CallAt(r.depth, k) for r in rows for k, ok in r.settled.items() if not ok]
    blas = blas_info()
    return BenchResult(
        rows,
        Stability(
            None if worst is None else worst[0],
            None if worst is None else CallAt(worst[1], worst[2]),
            worst is not None and worst[0] > UNSTABLE_SPREAD,
            unsettled if repeats >= AGREE else [],
            None if repeats < AGREE else not unsettled,
        ),
        blas,
        blas["threads"],
        fit,
        BenchNetwork(f"[{width}] * (depth + 1) + [{N_CLASSES}]", ACTIVATION, LOSS, batch, dtype, repeats, budget_s),
        None if torch is None else TorchInfo(torch.__version__, torch.get_num_threads(), TORCH_HVP_METHOD),
    )
