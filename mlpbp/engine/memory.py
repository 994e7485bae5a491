"""How much memory a network takes, and how much the machine has: checked before allocating, so
a network too large for memory is one clear error instead of a MemoryError from deep inside
NumPy (or the kernel's OOM killer)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlpbp.errors import ResourceError
from mlpbp.io import format_bytes

# Per-layer buffers a training step keeps (layer output, activation, σ', ∂J/∂z, ∂J/∂u, a spare).
STEP_BUFFERS = 6


def n_params(widths) -> int:
    """Weights and biases of a dense network with these layer widths."""
    return sum(int(a) * int(b) + int(b) for a, b in zip(widths[:-1], widths[1:]))


def network_bytes(widths, dtype) -> int:
    """The network itself: parameters and their gradients, and while it is built, the largest
    weight matrix drawn in float64 before the cast."""
    itemsize = np.dtype(dtype).itemsize
    largest = max(int(a) * int(b) for a, b in zip(widths[:-1], widths[1:]))
    return 2 * n_params(widths) * itemsize + largest * 8


def activation_bytes(widths, rows: int, dtype) -> int:
    """What one forward and backward pass over ``rows`` rows keeps per layer."""
    return STEP_BUFFERS * int(rows) * sum(int(w) for w in widths) * np.dtype(dtype).itemsize


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def available_bytes() -> int | None:
    """Memory this process can still take: the kernel's MemAvailable (or free pages), capped by
    a cgroup limit (containers) when there is one. None when the system does not say."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            found.append(max(limit - usage, 0))
            break
    return min(found) if found else None


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
    available = available_bytes()
    if available is None or needed <= available:
        return
    where = f"config error at {key}: " if key else ""
    raise ResourceError(
        f"{where}{what} needs about {format_bytes(needed)}, more than the {format_bytes(available)} of memory"
        " available",
        argument=argument,
    )
