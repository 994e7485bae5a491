"""Rows of an .npy file read by row number: here, or by a second process ahead of need.

``read_rows`` is the one reader (``lazy.NpySource.read`` calls it). ``ReadAhead`` runs it in a
child process over an epoch's batches, in training order, into shared memory, while this process
trains on the batch before: reading a shuffled batch costs about what a whole step of a small
network does, so reading in line made a lazy epoch several times the in-memory one
(benchmarks/README.md, "Decisions in the code"). A thread cannot
overlap the two: each of its read calls takes the GIL back from the step.

This file imports only the standard library and NumPy, and the child runs it on its own (not
as part of the package), so the child starts in ~0.1 s.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import struct
import subprocess
import sys
import weakref

import numpy as np

# Rows closer together than this many bytes are read with one call, the gap read and thrown
# away: one read call costs about what copying 8-16 KiB from the page cache does.
GAP_BYTES = 16384
# Up to this many rows are read one call each even when they lie together: merging them costs
# more NumPy calls than it saves below ~40 adjacent rows.
FEW_ROWS = 32
# Batches narrower than this are read in-process: handing one over (two pipe bytes and waking
# the child) costs more than reading it (the per-row times are in benchmarks/README.md).
MIN_BATCH_ROWS = 16
AVAILABLE = hasattr(os, "memfd_create")  # Linux: shared memory by file descriptor
SLOT_BYTES = 32 << 20  # shared memory for the batches read ahead (at least 2 of them)
MAX_SLOTS = 8


def pread_exact(fd: int, view: memoryview, offset: int) -> None:
    """Fill ``view`` from the file at ``offset``; EOFError if the file ends first."""
    while view.nbytes:
        got = os.preadv(fd, [view], offset)
        if got <= 0:
            raise EOFError("the file ended early (truncated?)")
        view, offset = view[got:], offset + got


def read_rows(fd: int, offset: int, d: int, dtype: np.dtype, rows: np.ndarray) -> np.ndarray:
    """The rows ``rows`` (int64 row numbers in any order) of the C-ordered (n, d) array of
    ``dtype`` stored from byte ``offset`` of the file ``fd``, as a float64 (len(rows), d) array.

    A few rows (``FEW_ROWS``), or rows spread thinly over the file (a shuffled batch: on
    average more than ``GAP_BYTES`` apart), are read one call each, in the batch's order:
    sorting and merging them would cost more than it saves. Others (a rank's share, the sorted
    chunks of an evaluation) are read in file order, one call per run of rows less than
    ``GAP_BYTES`` apart, the gaps read and dropped: a few large reads."""
    n, size, pread = rows.shape[0], d * dtype.itemsize, os.pread
    if 0 < n <= FEW_ROWS or (n and (int(rows.max()) - int(rows.min()) + 1) * size > n * (GAP_BYTES + size)):
        data = b"".join([pread(fd, size, o) for o in (rows * size + offset).tolist()])
        if len(data) == n * size:  # else a short read: the path below reads exactly, or says why
            return np.frombuffer(data, dtype).reshape(-1, d).astype(np.float64)
    out = np.empty((n, d), np.float64)
    if n == 0:
        return out
    order = np.argsort(rows, kind="stable")
    ranked = rows[order]
    apart = np.diff(ranked) * size > GAP_BYTES + size
    first = np.flatnonzero(np.concatenate(([True], apart)))  # each run's first row
    counts = np.diff(first, append=ranked.shape[0])
    lo = ranked[first]
    lengths = ranked[first + counts - 1] + 1 - lo  # rows per run, gaps included
    nbytes, offsets = (lengths * size).tolist(), (lo * size + offset).tolist()
    parts = [pread(fd, k, o) for k, o in zip(nbytes, offsets)]
    if sum(map(len, parts)) != sum(nbytes):  # a short read (a huge span, or the file shrank)
        parts = [bytearray(k) for k in nbytes]
        for part, o in zip(parts, offsets):
            pread_exact(fd, memoryview(part), o)
    block = np.frombuffer(b"".join(parts), dtype).reshape(-1, d)
    run = np.repeat(np.arange(first.shape[0]), counts)
    out[order] = block[(np.cumsum(lengths) - lengths)[run] + ranked - lo[run]]
    return out


def standardised(X: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    """(X − mean) / scale, the very arithmetic of ``Standardizer.transform``; X without a mean."""
    return X if mean is None else (X - mean) / scale


# an epoch: batches, whether rows are standardised, slots, rows per slot
_HEADER = struct.Struct("<qqqq")


class ReadAhead:
    """A child process that reads planned batches of rows ahead of a training loop.

    ``plan(rows, bounds)`` hands it an epoch's batches (file row numbers, in order); each
    ``next_batch()`` then returns the next one, read, standardised by (mean, scale) and cast to
    ``out_dtype`` in shared memory (valid until the following call). The child reads up to
    2-8 batches ahead (``SLOT_BYTES`` of them) and waits for a slot to be handed back. It
    ignores Ctrl-C (the trainer decides when to stop) and exits when this process closes its
    pipe (or dies). ``plan`` and ``next_batch`` raise ``OSError`` when the child is gone or
    could not read, with its one-line reason."""

    def __init__(self, fd: int, offset: int, d: int, dtype, out_dtype, mean, scale) -> None:
        self.d, self.out_dtype, self.mean, self.scale = d, np.dtype(out_dtype), mean, scale
        self._plan_fd = os.memfd_create("mlpbp-plan", os.MFD_CLOEXEC)
        self._slots_fd = os.memfd_create("mlpbp-batches", os.MFD_CLOEXEC)
        cmd_r, self._cmd = os.pipe()
        self._ready, ready_w = os.pipe()
        fds = (fd, cmd_r, ready_w, self._slots_fd, self._plan_fd)
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _BOOT,
                    __file__,
                    *map(str, (*fds, offset, d)),
                    *(np.dtype(dtype).str, self.out_dtype.str),
                ],
                pass_fds=fds,
                # failures come back through the pipe, as one line; the terminal stays ours
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(cmd_r)
            os.close(ready_w)
        self._geometry, self._batches, self._next, self._handed = (0, 0), 0, 0, 0
        fds = (self._cmd, self._ready, self._plan_fd, self._slots_fd)
        self._finalizer = weakref.finalize(self, _shut, self._proc, *fds)

    def plan(self, rows: np.ndarray, bounds: np.ndarray) -> None:
        """Start an epoch: batch i is the file rows ``rows[bounds[i]:bounds[i + 1]]``, read in
        this order. Two flat arrays, not one per batch: at batch 1 an epoch has a batch per row."""
        if self._next < self._batches:
            raise RuntimeError("the previous epoch's batches were not all taken; close() instead")
        widest = int(np.diff(bounds).max(initial=1))
        slot_bytes = widest * self.d * self.out_dtype.itemsize
        geometry = (max(2, min(MAX_SLOTS, SLOT_BYTES // max(1, slot_bytes))), widest)
        if geometry != self._geometry:  # the child maps the resized memory again when it sees it
            size = geometry[0] * slot_bytes
            os.ftruncate(self._slots_fd, size)
            self._buffers = np.frombuffer(mmap.mmap(self._slots_fd, size), self.out_dtype).reshape(*geometry, self.d)
            self._geometry = geometry
        std = self.mean is not None
        moments = [np.asarray(v, np.float64) for v in (self.mean, self.scale)] if std else []
        os.ftruncate(self._plan_fd, 0)
        at = 0
        for part in [np.asarray(bounds, np.int64), *moments, np.asarray(rows, np.int64)]:
            data = memoryview(np.ascontiguousarray(part)).cast("B")
            while data.nbytes:
                n = os.pwrite(self._plan_fd, data, at)
                data, at = data[n:], at + n
        self._bounds, self._batches, self._next, self._handed = bounds, bounds.shape[0] - 1, 0, 0
        _write_all(self._cmd, b"E" + _HEADER.pack(self._batches, std, *geometry))

    def next_batch(self) -> np.ndarray:
        """The next planned batch's rows, read ahead (float64 if not standardised: ``out_dtype``)."""
        if self._handed < self._next:  # hand the previous batch's slot back
            _write_all(self._cmd, b"F")
            self._handed += 1
        tag = os.read(self._ready, 1)
        if tag != b"R":
            message = _read_message(self._ready) if tag == b"!" else "the read-ahead process ended"
            raise OSError(message)
        s = self._next
        self._next += 1
        return self._buffers[s % self._geometry[0], : self._bounds[s + 1] - self._bounds[s]]

    @property
    def done(self) -> bool:
        return self._next == self._batches

    def close(self) -> None:
        self._finalizer()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _read_message(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace").strip() or "the read-ahead process failed"


def _shut(proc: subprocess.Popen, *fds: int) -> None:
    """Close the pipes (the child exits when it sees its end closed) and reap the child."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- the child --------------------------------------------------------------------------------
# Loads this file as a module of its own, without importing the package (SciPy, pyarrow, ...).
_BOOT = (
    "import importlib.util as u, sys; s = u.spec_from_file_location('mlpbp_readahead', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.child(sys.argv[2:])"
)


def child(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to act on
    fd, cmd, ready, slots_fd, plan_fd, offset, d = map(int, argv[:7])
    dtype, out_dtype = np.dtype(argv[7]), np.dtype(argv[8])
    geometry, buffers = None, None
    try:
        while True:
            tag = os.read(cmd, 1)
            while tag == b"F":  # slots handed back after the last epoch's final reads: all free now
                tag = os.read(cmd, 1)
            if tag != b"E":
                return  # the trainer closed its end (or is gone)
            n, std, n_slots, batch_rows = _HEADER.unpack(_read_exact(cmd, _HEADER.size))
            if geometry != (n_slots, batch_rows):
                geometry = (n_slots, batch_rows)
                size = n_slots * batch_rows * d * out_dtype.itemsize
                buffers = np.frombuffer(mmap.mmap(slots_fd, size), out_dtype).reshape(n_slots, batch_rows, d)
            bounds = _plan_array(plan_fd, 0, n + 1, np.int64)
            at = (n + 1) * 8
            mean = scale = None
            if std:
                mean, scale = _plan_array(plan_fd, at, d, np.float64), _plan_array(plan_fd, at + 8 * d, d, np.float64)
                at += 16 * d
            for b in range(n):
                if b >= n_slots and os.read(cmd, 1) != b"F":  # wait for a slot to be handed back
                    return
                rows = _plan_array(plan_fd, at + 8 * int(bounds[b]), int(bounds[b + 1] - bounds[b]), np.int64)
                X = standardised(read_rows(fd, offset, d, dtype, rows), mean, scale)
                buffers[b % n_slots, : rows.shape[0]] = X
                os.write(ready, b"R")
    except BrokenPipeError:
        return  # the trainer closed its end mid-epoch (a stop): nothing to report
    except Exception as e:  # reported to the trainer as one line
        with contextlib.suppress(OSError):
            os.write(ready, b"!" + f"{type(e).__name__}: {e}".encode())


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("the trainer's pipe closed")
        data += chunk
    return data


def _plan_array(fd: int, offset: int, n: int, dtype) -> np.ndarray:
    out = np.empty(n, dtype)
    pread_exact(fd, memoryview(out).cast("B"), offset)
    return out
