"""Data-parallel training over MPI, behind a tiny communicator interface.

``world()`` is MPI's COMM_WORLD when the process was started by ``mpiexec``/``srun`` with more
than one rank, else ``SINGLE``, a one-process stand-in whose collectives cost nothing. The
trainer has one code path: every step, "sum the gradient over the ranks" is a no-op for one.

Synchronous SGD: each rank computes the gradient *sum* over its share of the global batch, one
in-place ``Allreduce`` of one flat contiguous buffer adds them up, every rank divides by the
global batch count and applies the same update, so the ranks' parameters stay bit-identical.
The buffer also carries the batch loss and each rank's stop request (Ctrl-C), so every rank
agrees on divergence and on where to stop without another message.

batch_norm takes its statistics over the whole batch, not over a rank's share (``RankBatch``,
like ``torch.nn.SyncBatchNorm``): one small Allreduce in its forward pass (two for a feature
far off centre) and one in its backward pass, so N ranks normalise as one process does. Every rank then runs every
training-mode pass, a rank with no row of a batch included.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mlpbp.engine.norm import WholeBatch
from mlpbp.errors import ConfigError, MlpbpError, ResourceError
from mlpbp.run.threads import env_threads, usable_cores

# Environment variables a launcher sets for each process: mpiexec (MPICH's Hydra, Open MPI),
# and Slurm's srun. Checked before importing mpi4py, so a plain `mlpbp train` never loads MPI.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


class Comm:
    """One process alone: rank 0 of 1. MPI's communicator below has the same methods."""

    rank, size, ranks_on_node = 0, 1, 1
    node_rank = 0  # this rank's number among the ranks on its machine
    comm_seconds = 0.0  # time spent in collectives so far

    def allreduce_(self, buf: np.ndarray) -> None:
        """Sum ``buf`` over the ranks, in place."""

    def bcast_(self, buf: np.ndarray) -> None:
        """Overwrite ``buf`` with rank 0's."""

    def bcast(self, obj):
        return obj

    def node_bcast(self, obj):
        """The object of node rank 0 (the first rank on this machine), on every rank of the machine."""
        return obj

    def allgather(self, obj) -> list:
        return [obj]

    def abort(self, code: int) -> None:
        os._exit(code)

    def share(self, n: int) -> tuple[int, int]:
        """This rank's rows [lo, hi) of n: contiguous, sizes differing by at most one."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def agree(self, fn: Callable[[], object], root_only: bool = False, runs: bool | None = None):
        """Run ``fn`` (on every rank, on rank 0 only, or where ``runs`` is true) and return its
        result (None where it did not run); if it raised an MlpbpError on any rank, raise that
        same error on every rank, so a bad input ends every rank with one line and its exit code
        instead of leaving the others waiting in a collective. The first failing rank's message
        wins (rank 0's, when several fail)."""
        result, failure = None, None
        if runs if runs is not None else (self.rank == 0 or not root_only):
            try:
                result = fn()
            except MlpbpError as e:
                failure = (type(e), str(e), e.argument, e.label)
        failures = self.allgather(failure)
        for rank, f in enumerate(failures):
            if f is not None:
                cls, message, argument, label = f
                where = f"rank {rank}: " if rank and self.size > 1 else ""
                raise cls(where + message, argument=argument, label=label) from None
        return result

    def same_everywhere(self, what: str, value: dict) -> None:
        """Refuse to go on unless every rank holds the same ``value`` (e.g. its config)."""
        values = self.allgather(value)
        for rank, v in enumerate(values[1:], start=1):
            if v != values[0]:
                diff = first_difference(values[0], v, "on rank 0", f"on rank {rank}") or "they differ"
                raise ConfigError(
                    f"rank {rank} sees a different {what} than rank 0 ({diff}); every rank must run the same"
                    f" {what}: check that each machine has the same file"
                )

    def setup_threads(self) -> int | None:
        """BLAS threads per rank: the cores this process may use / ranks on this node, unless the
        user set them. Oversubscribed BLAS pools made MPI steps ~50× slower (PERF-NOTES)."""
        return None


SINGLE = Comm()


class MPIComm(Comm):
    """COMM_WORLD through mpi4py's buffer interface (no pickling on the per-step path)."""

    def __init__(self) -> None:
        _point_mpi4py_at_mpich()
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.ranks_on_node, self.node_rank = self.node.Get_size(), self.node.Get_rank()
        self.comm_seconds = 0.0  # time spent in collectives, for the epoch table

    def allreduce_(self, buf: np.ndarray) -> None:
        t = time.perf_counter()
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        self.comm_seconds += time.perf_counter() - t

    def bcast_(self, buf: np.ndarray) -> None:
        self.comm.Bcast(buf, root=0)

    def bcast(self, obj):
        return self.comm.bcast(obj, root=0)

    def node_bcast(self, obj):
        return self.node.bcast(obj, root=0)

    def allgather(self, obj) -> list:
        t = time.perf_counter()
        out = self.comm.allgather(obj)
        self.comm_seconds += time.perf_counter() - t
        return out

    def abort(self, code: int) -> None:
        self.comm.Abort(code)

    def setup_threads(self) -> int | None:
        if env_threads() is not None:
            return None
        n = usable_cores(self.ranks_on_node)
        # Kept referenced: the limits hold for the life of the process (the trainer's choice,
        # mlpbp.run.threads, then picks within them).
        self._limits = threadpool_limits(limits=n, user_api="blas")
        return n


def _point_mpi4py_at_mpich() -> None:
    """mpi4py looks for libmpi under its own interpreter's prefix; in a virtual environment that
    sees the `mpich` wheel through another one's site-packages (``--system-site-packages``, a
    .pth file) it would not find it. Name the wheel's library unless the user named one."""
    if os.environ.get("MPI4PY_LIBMPI"):
        return
    try:
        files = importlib.metadata.files("mpich") or ()
    except importlib.metadata.PackageNotFoundError:
        return
    for f in files:
        if f.name.startswith("libmpi.so.") and Path(f.locate()).exists():
            os.environ["MPI4PY_LIBMPI"] = str(Path(f.locate()).resolve())
            return


_WORLD: Comm | None = None


def abort_job(code: int) -> None:
    """End every rank of an MPI job (after an unexpected error on this one); no-op alone."""
    if isinstance(_WORLD, MPIComm):
        _WORLD.abort(code)


def launched_ranks() -> int:
    """How many ranks the launcher says this job has (1 when not launched by one)."""
    for var in _SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


def world() -> Comm:
    """The job's communicator: MPI when launched with several ranks, else ``SINGLE``."""
    global _WORLD
    if _WORLD is None:
        n = launched_ranks()
        if n <= 1:
            _WORLD = SINGLE
        else:
            try:
                _WORLD = MPIComm()
            except (ImportError, RuntimeError) as e:  # mpi4py missing, or no MPI library it can load
                reason = str(e).splitlines()[0]
                raise ResourceError(
                    f"started as one of {n} MPI ranks, but MPI is not usable here ({reason}): pip install 'mlpbp[mpi]'"
                ) from None
            _WORLD.setup_threads()
    return _WORLD


class RankBatch(WholeBatch):
    """A batch whose rows are split between the ranks of ``comm``, for batch_norm: its sums
    are Allreduced (``WholeBatch``). A copy of a network (``copy.deepcopy``, e.g. to time a
    step) runs alone: it would otherwise wait for ranks that never call it."""

    def __init__(self, comm: Comm) -> None:
        self.comm, self.scale = comm, 1.0

    def sum_(self, v: np.ndarray) -> None:
        self.comm.allreduce_(v)

    def __deepcopy__(self, memo) -> None:
        return None

    def share(self, rows: float, batch: float) -> None:
        """This rank's loss is the mean over ``rows`` (or their weight) of a batch of ``batch``
        (or that weight): the scale of its gradient sums. A denominator of 0 counts as 1, as
        the loss and ``GradientSync.step`` take it."""
        self.scale = (rows if rows > 0 else 1.0) / (batch if batch > 0 else 1.0)


class GradientSync:
    """Sums the gradients of a network over the ranks, once per step.

    One process (``fused``) needs none of it: the trainer uses the network's fused step, with
    the update inside backward. Several ranks copy their gradient into one flat buffer with two
    more entries, the batch loss and a stop request (and, with per-row weights, a third: the
    rank's weight), so a step costs exactly one Allreduce."""

    def __init__(self, net, comm: Comm) -> None:
        self.comm, self.net = comm, net
        self.fused = comm.size == 1
        #: the batch batch_norm normalises over, when the network has one (None: no module needs it)
        self.whole_batch: RankBatch | None = None
        if not self.fused:
            self.flat = np.zeros(net.n_params + 3, net.dtype)
            self.grads = net.unflatten(self.flat[:-3])  # the summed gradient, as named views
            batch = RankBatch(comm)
            if net.share_batches(batch):
                self.whole_batch = batch

    def step(self, loss: float, rows: int, total: int, stop: bool, mass: float | None = None) -> tuple[float, bool]:
        """Given ``net.grads`` and ``loss`` as the means over this rank's ``rows`` of a
        ``total``-row batch, leave the whole batch's mean gradient in ``self.grads`` on every
        rank; return the batch's mean loss and whether any rank asked to stop.

        ``mass``: the sum of this rank's row weights, when ``loss`` and ``net.grads`` are
        weighted means (data.weight): each rank's mean then counts by its weight, and the
        batch's is divided by the ranks' total weight (1 when it is 0: J = 0, as one process
        computes it)."""
        g = self.flat[:-3]
        share = rows if mass is None else mass
        if rows:
            np.concatenate([self.net.grads[k].ravel() for k in self.net.params], out=g)
            # the mean over this rank's rows, back to their (weighted) sum; rows of weight 0
            # have a loss divided by 1, and a gradient through batch_norm's statistics
            g *= share if share > 0 else 1.0
        else:
            g[...] = 0.0
            loss = 0.0
        self.flat[-3:] = loss * share, share, float(stop)
        self.comm.allreduce_(self.flat)
        divisor = total if mass is None else (float(self.flat[-2]) if self.flat[-2] > 0 else 1.0)
        g /= divisor
        return float(self.flat[-3]) / divisor, bool(self.flat[-1])


def first_difference(a: dict, b: dict, in_a: str, in_b: str, prefix: str = "") -> str | None:
    """The first key path where two nested dicts differ, as "key.path: A in_a, B in_b"."""
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            found = first_difference(va, vb, in_a, in_b, f"{prefix}{k}.")
            if found:
                return found
        elif va != vb:
            return f"{prefix}{k}: {va!r} {in_a}, {vb!r} {in_b}"
    return None
