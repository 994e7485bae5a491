"""How many BLAS threads a training run uses: chosen per shape and machine, never defaulted.

OpenBLAS starts one thread per core. For the small products of an MLP step that is often
slower than one thread, and it collapses when anything else runs on the machine: with one other
busy process on 2 cores, 2 threads were 4× slower than 1 at batch 32 and 36× slower at batch 128
(threads that spin waiting for a descheduled partner). Under MPI every rank on a node starts its
own pool, so each must use cores ÷ ranks.

Precedence: an explicit count (``train.threads: N``, ``mlpbp train --threads N``) wins, then
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` from the environment (left
as the user set them), then ``auto``: one thread for a step of less than ``CALIBRATE_FLOPS``
(measured: one thread wins there), else a short calibration of the real step on a scratch copy
of the network, 1 thread against every count up to the cores this process may use
(``os.sched_getaffinity``) divided by the ranks on the node, less the cores other processes are
busy on (``other_runnable``); more threads only if they are at least ``MIN_GAIN`` faster, since
too many threads cost far more than too few gain.

The count applies to every BLAS pool in the process at once (threadpoolctl): NumPy's OpenBLAS and
SciPy's own. The engine calls only SciPy's (``mlpbp.engine.blas``): a step that alternated
between two pools of 2 threads ran up to 100× slower.

Results of a step with a batch of more than one row depend on the thread count in the last bits
(OpenBLAS splits the products differently); for a given seed and thread count runs are
identical. The trainer records the count it used in the checkpoint so a resumed ``auto`` run
continues with it, bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Matrix-product FLOPs of one step below which one thread is used without measuring. 784-256-128-10
# on a 2-vCPU AMD EPYC VM, every product in one BLAS pool: 1 thread won at batch <= 8 (8 MFLOP),
# 2 threads tied at 16 and won by 1.5-1.7x at batch 32 (32 MFLOP).
CALIBRATE_FLOPS = 12e6
MIN_GAIN = 1.15  # more threads must be this much faster than one to be chosen
CALIBRATION_ROUNDS = 3
CALIBRATION_SECONDS = 0.025  # per thread count and round: several scheduler time slices


@dataclass(frozen=True)
class ThreadChoice:
    threads: int | None  # None: leave the pools as the environment set them
    reason: str  # one line for the user: why this count

    def describe(self) -> str:
        shown = self.threads if self.threads is not None else blas_threads()
        return f"{shown} BLAS thread{'s' if shown != 1 else ''} ({self.reason})"


def usable_cores(ranks_on_node: int = 1) -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count) shared
    among ``ranks_on_node`` processes; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, ranks_on_node))


def env_threads() -> tuple[str, int] | None:
    """The first thread-count variable the user set to a positive integer, as (name, value)."""
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return name, int(value)
    return None


def other_runnable(samples: int = 5, interval: float = 0.002) -> int:
    """Threads of other processes running or ready to run on this machine now: the fewest of a
    few readings of ``procs_running`` in /proc/stat, less this thread (0 where there is no
    /proc). Calibration alone can miss a busy neighbour, whose time slices may fall outside a
    25 ms measurement; this count cannot."""
    seen = []
    for i in range(samples):
        try:
            with open("/proc/stat", "rb") as f:
                line = next(line for line in f if line.startswith(b"procs_running"))
        except (OSError, StopIteration):
            return 0
        seen.append(int(line.split()[1]) - 1)
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, min(seen))


def step_flops(widths, batch_size: int) -> float:
    """Matrix-product FLOPs of one training step: forward, ∂J/∂W and ∂J/∂u (but the input's)."""
    pairs = list(zip(widths[:-1], widths[1:]))
    return float(batch_size) * (6 * sum(i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1])


def may_calibrate(requested: int | str, widths, batch_size: int, ranks_on_node: int = 1) -> bool:
    """Whether :func:`choose_threads` with these arguments may time steps with its ``measure``
    (the memory check counts the scratch copy that :func:`step_timer` trains): ``auto``, no
    thread count in the environment, more than one usable core and steps of CALIBRATE_FLOPS
    or more. It may still not, when other work on the machine leaves one core free."""
    return (
        requested == "auto"
        and env_threads() is None
        and usable_cores(ranks_on_node) > 1
        and step_flops(widths, batch_size) >= CALIBRATE_FLOPS
    )


def choose_threads(
    requested: int | str = "auto",
    widths=None,
    batch_size: int = 1,
    ranks_on_node: int = 1,
    measure=None,
) -> ThreadChoice:
    """The BLAS thread count for training a network of ``widths`` at ``batch_size``.

    ``requested`` is an explicit count or ``"auto"``. ``measure(threads) -> seconds`` times a
    step at a thread count (see :func:`step_timer`); without it ``auto`` uses the rule alone
    (one thread below ``CALIBRATE_FLOPS``, else all usable cores)."""
    if requested != "auto":
        return ThreadChoice(int(requested), "set by train.threads / --threads")
    env = env_threads()
    if env is not None:
        return ThreadChoice(None, f"{env[0]}={env[1]} in the environment")
    cores = usable_cores(ranks_on_node)
    share = f"{cores} usable core{'s' if cores != 1 else ''}" + (
        f" for each of {ranks_on_node} ranks on this node" if ranks_on_node > 1 else ""
    )
    if cores == 1:
        return ThreadChoice(1, f"auto: {share}")
    flops = step_flops(widths, batch_size) if widths is not None else float("inf")
    if flops < CALIBRATE_FLOPS:
        return ThreadChoice(1, f"auto: {flops / 1e6:.3g} MFLOP per step is too small to share; {share}")
    busy = other_runnable()
    free = max(1, min(cores, (os.cpu_count() or cores) - busy))
    if free == 1:  # threads would wait for partners descheduled by that work: measured 4-36x slower
        return ThreadChoice(1, f"auto: {busy} other task{'s' if busy != 1 else ''} running on this machine; {share}")
    cores = free
    if measure is None:
        return ThreadChoice(cores, f"auto: {share}")
    times = {n: [] for n in range(1, cores + 1)}
    for _ in range(CALIBRATION_ROUNDS):  # alternate, so a burst of load hits every count alike
        for n in times:
            times[n].append(measure(n))
    best = {n: statistics.median(t) for n, t in times.items()}
    one = best.pop(1)
    n, t = min(best.items(), key=lambda item: item[1])
    if one / t >= MIN_GAIN:
        return ThreadChoice(n, f"auto: calibrated, {one / t:.2f}x faster than 1 thread; {share}")
    return ThreadChoice(1, f"auto: calibrated, {n} threads were {one / t:.2f}x of 1 thread; {share}")


def step_timer(net, opt, X: np.ndarray, y: np.ndarray, batch_size: int, seconds: float = CALIBRATION_SECONDS):
    """``measure(threads) -> seconds`` for :func:`choose_threads`: the mean time of training
    steps run for at least ``seconds`` (after one warm-up) on the first batch of (X, y), taken
    on a scratch copy of the network and optimizer, so the run itself is untouched. A mean over
    a few scheduler time slices, not the median of a couple of steps: when another process is
    busy, threads that wait for a descheduled partner show up only over that long."""
    scratch = []  # copied on the first call: most runs never calibrate
    Xb = np.ascontiguousarray(X[:batch_size], dtype=net.dtype)
    yb = np.ascontiguousarray(y[:batch_size])

    def measure(threads: int) -> float:
        if not scratch:
            scratch.extend(copy.deepcopy((net, opt)))
        scratch_net, scratch_opt = scratch
        with threadpool_limits(limits=threads, user_api="blas"), np.errstate(all="ignore"):
            scratch_net.train_step(Xb, yb, scratch_opt)
            steps, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds:
                scratch_net.train_step(Xb, yb, scratch_opt)
                steps += 1
        return elapsed / steps

    return measure


@contextlib.contextmanager
def blas_thread_limit(threads: int | None):
    """Run the block with every BLAS pool of the process at ``threads`` (None: as they are)."""
    if threads is None:
        yield
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def blas_threads() -> int | None:
    """The thread count of the process's BLAS pools (the largest if they differ)."""
    counts = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max(counts) if counts else None
