"""How much memory a network takes, and how much the process may still take: checked before
allocating, so work too large for memory is one clear error instead of a MemoryError from
deep inside NumPy, a thread that cannot start, or the kernel's OOM killer.

What is available is the smallest of three bounds: the kernel's free memory (MemAvailable),
the cgroup's limit less its usage (containers, Slurm jobs) and the address-space limit
(RLIMIT_AS, ``ulimit -v``) less the address space already mapped. Each estimate is an upper
bound of the bytes the work adds to what the process holds (``benchmarks/memory.py`` checks
it against measured peak RSS)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpbp.errors import ResourceError
from mlpbp.io import format_bytes

# Per-layer buffers a training step keeps (layer output, activation, σ', ∂J/∂z, ∂J/∂u, a spare).
STEP_BUFFERS = 6
# Python objects per layer (a Linear and an Activation, their dicts, array headers, small
# allocations): ~3 kB built and ~7.7 kB after a step, measured on a 20,000-layer width-8 network.
LAYER_OBJECT_BYTES = 4096
BUFFER_OBJECT_BYTES = 4096  # the headers and allocations of a layer's step buffers
# Under RLIMIT_AS every thread started later maps its stack and, on first malloc, a 64 MiB
# malloc arena of address space (glibc); the progress display and metrics start a few.
THREAD_ADDRESS_SPACE = 8 * 2**20 + 64 * 2**20
LATER_THREADS = 2


def n_params(widths) -> int:
    """Weights and biases of a dense network with these layer widths."""
    return sum(int(a) * int(b) + int(b) for a, b in zip(widths[:-1], widths[1:]))


def network_bytes(widths, dtype) -> int:
    """The network itself: parameters and their gradients, and while it is built, the largest
    weight matrix drawn in float64 before the cast; and each layer's Python objects."""
    itemsize = np.dtype(dtype).itemsize
    largest = max(int(a) * int(b) for a, b in zip(widths[:-1], widths[1:]))
    return 2 * n_params(widths) * itemsize + largest * 8 + LAYER_OBJECT_BYTES * (len(widths) - 1)


def optimizer_bytes(
    widths, dtype, optimizer: str, *, momentum: float = 0.0, history_size: int = 10, cg_max_iter: int = 50
) -> int:
    """The state an optimizer keeps beside the network: SGD's velocity (with momentum), Adam's
    two moments and its scratch, in the network's dtype; for the full-batch methods float64 flat vectors:
    scipy's L-BFGS-B workspace (2·history_size correction pairs and about a dozen vectors:
    x, its gradient, bounds, search direction, Cauchy point and work arrays), and Newton-CG's
    CG vectors, its warm start and the iterates it keeps for backtracking (steps ⌈1.3ᵏ⌉ and
    the last)."""
    n = n_params(widths)
    itemsize = np.dtype(dtype).itemsize
    if optimizer == "sgd":
        return n * itemsize * (momentum > 0)
    if optimizer in ("adam", "adamw"):
        return 3 * n * itemsize  # the two moments and the update's scratch
    if optimizer == "lbfgs":
        return (2 * int(history_size) + 12) * flat_bytes(widths)
    if optimizer == "newton_cg":
        kept = len({math.ceil(1.3**k) for k in range(64) if math.ceil(1.3**k) <= cg_max_iter}) + 1
        return (kept + 10) * flat_bytes(widths)
    return 2 * n * itemsize  # an optimizer registered from Python: as much as Adam's


def activation_bytes(widths, rows: int, dtype) -> int:
    """What one forward and backward pass over ``rows`` rows keeps per layer."""
    per_row = STEP_BUFFERS * int(rows) * sum(int(w) for w in widths) * np.dtype(dtype).itemsize
    return per_row + BUFFER_OBJECT_BYTES * (len(widths) - 1)


def flat_bytes(widths) -> int:
    """One flat float64 vector of every parameter (get_flat, a gradient, a Lanczos vector)."""
    return 8 * n_params(widths)


def gradcheck_bytes(widths, rows: int, directions: int) -> int:
    """``check_network``: the float64 copy of the network and a step's buffers at ``rows``,
    and its flat vectors: θ, θ ± εv and their gradients, the direction, Hv and the difference
    quotient for each direction (each kept for the symmetry check), the symmetry check's four,
    and the temporaries of the comparisons (|a − n|, scales); benchmarks/memory.py measured
    about 20 flat vectors in all at 3 directions."""
    copies = 2 * network_bytes(widths, "float64")  # the config's network and check_network's copy
    return copies + 2 * activation_bytes(widths, rows, "float64") + (14 + 3 * directions) * flat_bytes(widths)


def lanczos_bytes(widths, vectors: int) -> int:
    """A Lanczos run keeping ``vectors`` basis vectors (full reorthogonalisation), plus the
    product's vector, its result and the projections' temporaries."""
    return (int(vectors) + 6) * flat_bytes(widths)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


@dataclass(frozen=True)
class Available:
    bytes: int
    bound: str  # which limit it is: "free memory", "the cgroup's memory limit", "ulimit -v"


def _free_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_left() -> int | None:
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            return max(limit - usage, 0)
    return None


def _mapped_bytes() -> int | None:
    """The address space this process has mapped (VmSize)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    """RLIMIT_AS less what is mapped and what threads started later will map."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit in (resource.RLIM_INFINITY, -1) or limit >= 2**62:
        return None
    mapped = _mapped_bytes()
    if mapped is None:
        return None
    return max(limit - mapped - LATER_THREADS * THREAD_ADDRESS_SPACE, 0)


def available() -> Available | None:
    """The smallest of free memory, the cgroup's limit less its usage and RLIMIT_AS less the
    mapped address space, and which it is; None when the system says none of them."""
    bounds = [
        Available(b, what)
        for b, what in (
            (_free_memory(), "free memory"),
            (_cgroup_left(), "memory the cgroup's limit leaves"),
            (_address_space_left(), "address space ulimit -v (RLIMIT_AS) leaves"),
        )
        if b is not None
    ]
    return min(bounds, key=lambda a: a.bytes) if bounds else None


def available_bytes() -> int | None:
    """Memory this process can still take (``available``), None when the system does not say."""
    a = available()
    return None if a is None else a.bytes


def describe_widths(widths) -> str:
    """'2-64-64-10', shortened in the middle for deep networks."""
    w = [str(int(x)) for x in widths]
    return "-".join(w) if len(w) <= 8 else "-".join(w[:3] + ["…"] + w[-2:]) + f" ({len(w) - 1} layers)"


def fits(needed: int) -> bool:
    available = available_bytes()
    return available is None or needed <= available


def require(needed: int, what: str, *, key: str | None = None, argument: str | None = None) -> None:
    """Raise ResourceError unless ``needed`` bytes fit in the memory available. ``what`` (a
    singular subject: "training a … network") says what needs them; ``key`` (a config key) or
    ``argument`` (an API argument) says what to change."""
    left = available_bytes()
    if left is None or needed <= left:
        return
    where = f"config error at {key}: " if key else ""
    found = available()  # which bound it is, to say so when it is a limit rather than the machine
    bound = f" (the {found.bound})" if found is not None and found.bound != "free memory" else ""
    raise ResourceError(
        f"{where}{what} needs about {format_bytes(needed)}, more than the {format_bytes(left)} of memory"
        f" available{bound}",
        argument=argument,
    )
