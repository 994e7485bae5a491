"""Writing files so that a crash, a full disk or Ctrl-C never leaves a half-written one."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlpbp.errors import Interrupted, OutputError, ResourceError

# What np.load and reading an .npz archive's members raise on a damaged or foreign file
# (MemoryError: a forged array header can claim any shape).
ARCHIVE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    MemoryError,
)


def format_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disk and memory sizes are usually quoted)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def file_size(path: str | Path) -> str:
    try:
        return format_bytes(os.path.getsize(path))
    except OSError:
        return "size unknown"


@contextlib.contextmanager
def reading(path: str | Path):
    """Name the file when reading it is interrupted (Ctrl-C) or runs out of memory."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted while reading {path}") from None
    except MemoryError:
        raise ResourceError(f"{path}: not enough memory to read this file ({file_size(path)})") from None


def reads_file(fn):
    """Decorate a reader whose first argument is the path it reads: see ``reading``."""

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        with reading(path):
            return fn(path, *args, **kwargs)

    return wrapper


# Our temporary files: ".NAME.PID.RANDOM.tmp" beside the file they will replace. The writer's
# pid lets a later write tell a killed writer's leftover from a concurrent writer's file.
_TMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
# A leftover whose pid is running again (pids are reused) goes once it has not changed this long.
STALE_TMP_S = 3600.0


def pid_running(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap check: leave it to the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Remove temporary files that a killed write left in ``folder``: only our own pattern,
    only when their writer is no longer running (or they have not changed for an hour)."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(m["pid"])
        try:
            idle = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if pid == os.getpid() or (pid_running(pid) and idle < STALE_TMP_S):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _create_tmp(path: Path) -> tuple[int, str]:
    """Create a new temporary file beside ``path``. Mode 0o666 lets the process umask apply, as
    for any file the user creates (mkstemp would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    """Open a temporary file beside ``path``; on success fsync it and ``os.replace`` it over
    ``path``, so readers see either the old file or the whole new one, never a mix. Leftovers
    of killed writes in that folder are removed first."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(path.parent)
        fd, tmp = _create_tmp(path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)
