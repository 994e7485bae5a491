"""Writing files so that a crash, a full disk or Ctrl-C never leaves a half-written one."""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mlpbp.errors import MlpbpError

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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w"):
    """Open a temporary file beside ``path``; on success fsync it and ``os.replace`` it over
    ``path``, so readers see either the old file or the whole new one, never a mix."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it 0600; give it a normal file's mode
    except OSError as e:
        raise MlpbpError(f"cannot write {path}: {e.strerror or e}") from None
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
            raise MlpbpError(f"cannot write {path}: {e.strerror or e}") from None
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
