"""A run folder as one unit: config.yaml, checkpoint.npz, history.csv and model.npz always
describe the same run.

A run that replaces another (``--overwrite``) is built in a hidden folder beside the run
folder and swapped in at its end in one step (Linux: ``renameat2(RENAME_EXCHANGE)``), so a
reader or a SIGKILL at any moment sees the old run complete or the new one complete, never a
mix. A run into a folder that holds none, and a resumed run, write in place (where the run can
be watched): their checkpoint and history are always written together. A lock file in the
folder (an ``flock``, which the kernel drops when its holder dies, so a killed run's lock is
never stale) refuses a second writer and names its PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mlpbp.errors import ArgumentError, Interrupted, ModelFileError, OutputError, TrainingError
from mlpbp.io import pid_running

R = TypeVar("R")  # what the run returns (the trainer's RunResult): this module never imports the trainer

# What a run writes; any other file in the folder is the user's and is carried over.
RUN_FILES = ("config.yaml", "checkpoint.npz", "history.csv", "model.npz")
PLOT_FILES = ("curves.png", "confusion.png", "regions.png", "predicted.png", "fit.png")  # mlpbp plot's
LOCK_NAME = ".mlpbp.lock"
_STAGING = re.compile(r"^\..+\.\d+\.[0-9a-f]{8}\.(run|old)$")  # build folders, named as in RunFolder.open
_RENAME_EXCHANGE = 2

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None


def check_output_dir(path: Path) -> None:
    """Refuse, in one line, an output directory that is a file or a link to nothing."""
    if path.is_symlink() and not path.exists():
        raise OutputError(f"output directory {path} is a symbolic link to {os.readlink(path)}, which does not exist")
    if path.exists() and not path.is_dir():
        raise OutputError(f"output directory {path} is a file, not a folder; choose another output directory")


def run_files(path: Path) -> list[str]:
    """The run files ``path`` holds (none when it is not a folder)."""
    return [name for name in RUN_FILES if (path / name).is_file()]


def refuse_same_path(output: Path, inputs: dict[str, Path | str | None], what: str) -> None:
    """Refuse an output path that is one of the inputs: writing it would replace what is read.
    ``inputs`` maps each input's description to its path; ``what`` describes the output."""
    for name, path in inputs.items():
        if path is not None and _same_file(output, Path(path)):
            raise ArgumentError(
                f"{what} {output} is the {name}: writing it would replace the {name}; choose another path"
            )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


class _Lock:
    """An exclusive ``flock`` on LOCK_NAME in a folder, holding the owner's PID."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self.fd: int | None = None
        if fcntl is None:  # pragma: no cover
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as e:
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(
                    f"output directory {folder} is in use by another run (PID {owner}, lock {self.path});"
                    " wait for it to end or choose another output directory"
                ) from None
            try:  # the holder before us may have removed the file it locked: lock the one there now
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self, remove: bool = True) -> None:
        if self.fd is None:
            return
        if remove:  # removed while still held: a waiting writer then retries on a fresh file
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step; False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd = -100
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot exchange
        return False
    raise OSError(errno, os.strerror(errno))


def _carry_over(old: Path, new: Path) -> None:
    """Hard-link into ``new`` what the user keeps in ``old`` besides a run's files."""
    skip = {*RUN_FILES, *PLOT_FILES, LOCK_NAME}
    for entry in os.scandir(old):
        if entry.name in skip or _STAGING.match(entry.name) or (new / entry.name).exists():
            continue
        src, dst = Path(entry.path), new / entry.name
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(src, dst)


def _link_or_copy(src, dst) -> None:
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _inside(a: Path, folder: Path) -> bool:
    a = Path(os.path.realpath(a))
    return a == folder or folder in a.parents


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Hidden build folders that a killed run left beside ``name``."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(?P<pid>\d+)\.[0-9a-f]{{8}}\.run$")
    with contextlib.suppress(OSError):
        for entry in os.scandir(parent):
            m = pattern.match(entry.name)
            if m and int(m["pid"]) != os.getpid() and not pid_running(int(m["pid"])):
                shutil.rmtree(entry.path, ignore_errors=True)


@dataclass
class RunFolder:
    """Where a run writes: ``work`` is the folder the trainer writes into (a hidden build folder
    for a run that replaces another, the run folder itself for a resumed run or one into a
    folder that holds none), ``path`` the run folder.

    ``open`` refuses a folder that holds a run unless ``overwrite`` or ``resume``, and takes the
    lock; ``commit`` swaps the new run in, ``discard`` drops it; ``close`` releases the lock."""

    path: Path
    work: Path
    staged: bool
    _locks: list[_Lock] = field(default_factory=list, repr=False)
    in_place: bool = False  # built inside the folder (see ``open``)
    created: bool = False  # ``open`` made the folder: ``close`` removes it if nothing was written

    @classmethod
    def open(cls, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunFolder:
        if resume and overwrite:
            raise ArgumentError("--resume continues the run in the folder and --overwrite replaces it: give one")
        path = Path(path)
        check_output_dir(path)
        if resume and not (path / "checkpoint.npz").is_file():
            raise ModelFileError(f"no checkpoint to resume from: {path / 'checkpoint.npz'} does not exist")
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output directory {path}: {e.strerror or e}") from None
        lock = _Lock(path)  # first: a folder another run is writing is refused as that, naming it
        held = run_files(path)
        if held and not (resume or overwrite):
            lock.release()
            raise OutputError(
                f"output directory {path} already holds a run ({', '.join(held)}); pass --overwrite to"
                " replace it, --resume to continue it, or choose another output directory"
            )
        if resume or not held:  # nothing to keep whole: write in place, where the run can be watched
            return cls(path, path, False, [lock], created=created)
        real = Path(os.path.realpath(path))  # a link to a folder: build beside the folder it names
        # The swap moves the folder itself, so a shell whose working directory is inside it would
        # be left in the old one: there (and where the parent is not writable) the new run is
        # built inside the folder and its files are renamed into place one by one.
        in_place = _inside(Path(os.getcwd()), real)
        for parent, name in ((real, "mlpbp"),) if in_place else ((real.parent, real.name), (real, "mlpbp")):
            _remove_stale_staging(parent, name)
            work = parent / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.run"
            try:
                work.mkdir()
            except OSError as e:
                error = e
                continue
            return cls(path, work, True, [lock], in_place=parent == real)
        lock.release()
        raise OutputError(f"cannot create a folder to build the run in beside {path}: {error.strerror or error}")

    def commit(self) -> None:
        """Make the new run the folder's: in one step, or file by file when built in place."""
        if not self.staged:
            return
        real = Path(os.path.realpath(self.path))
        try:
            if self.in_place:
                self._rename_into(real)
            else:
                _carry_over(real, self.work)
                self._locks.append(_Lock(self.work))  # the folder swapped in is locked too
                if not _exchange(self.work, real):  # two renames: the folder is missing for a moment
                    old = self.work.with_name(self.work.name[: -len(".run")] + ".old")
                    os.rename(real, old)
                    os.rename(self.work, real)
                    self.work = old
                # self.work now names the old run's folder
        except OSError as e:
            raise OutputError(f"cannot replace the run in {self.path}: {e.strerror or e}") from None
        self.staged = False
        shutil.rmtree(self.work, ignore_errors=True)
        self.work = self.path

    def _rename_into(self, real: Path) -> None:
        """The new run's files over the old ones, the model last (readers load it first), and
        whatever the old run had that the new one lacks removed before."""
        new = set(run_files(self.work))
        for name in (*PLOT_FILES, *RUN_FILES):
            if name not in new:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(real / name)
        for name in RUN_FILES:
            if name in new:
                os.replace(self.work / name, real / name)

    def discard(self) -> None:
        if self.staged:
            shutil.rmtree(self.work, ignore_errors=True)
            self.staged = False
            self.work = self.path

    def close(self) -> None:
        for lock in self._locks:
            lock.release(remove=lock.path.parent.exists())
        self._locks.clear()
        if self.created:  # a run refused before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def shown(self, text: str) -> str:
        """``text`` with the build folder named as the run folder it becomes."""
        return text.replace(str(self.work), str(self.path)) if self.staged else text


def refuse_inputs_in_run(path: Path, inputs: dict[str, Path | str | None]) -> None:
    """Refuse a run folder where one of a run's files would replace an input (a config named
    config.yaml in the folder the run writes, say)."""
    for name in RUN_FILES:
        for what, source in inputs.items():
            if source is not None and _same_file(path / name, Path(source)):
                raise OutputError(
                    f"output directory {path} would replace the {what} {source} with the run's {name};"
                    " choose another output directory"
                )


def run_in(folder: RunFolder | None, run: Callable[[], R]) -> R:
    """Call ``run`` (a trainer writing into ``folder.work``) and make what it wrote the folder's
    run when it ends, or when it is interrupted or diverges after saving a checkpoint (the
    folder then holds that run, config, checkpoint and history, to resume or read); drop it
    on any other failure, leaving the old run as it was. The lock is released either way.
    ``folder`` None (an MPI rank other than 0, which writes nothing): just ``run()``."""
    if folder is None:
        return run()
    try:
        try:
            result = run()
        except (Interrupted, TrainingError) as e:
            if not (folder.work / "checkpoint.npz").is_file():
                raise
            message = folder.shown(str(e))
            folder.commit()
            raise type(e)(message) from None
        folder.commit()
        return dataclasses.replace(result, model_path=folder.path / result.model_path.name, out_dir=folder.path)
    finally:
        folder.discard()
        folder.close()
