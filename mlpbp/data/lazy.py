"""Tables larger than memory: rows stay in files and are read when a batch needs them.

``data.path`` naming a folder selects this: a pair ``X.npy`` + ``y.npy`` (X's header checked by
``np.load(mmap_mode="r")``, its rows read on demand), or ``*.parquet`` files with one schema
(streamed once, row group by row group, into a scratch ``.npy`` in the temp folder, unlinked as
soon as it is opened, so nothing is left behind even after a crash). The targets are read
whole: one column, small beside the features.

``LazyRows`` is the features: indexing it with rows gives a view (nothing read), ``take``
reads rows into a buffer like ``ndarray.take``, standardised and cast on the way, so a
process's resident memory stays bounded however large the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from mlpbp.data import readahead
from mlpbp.data.dataset import Dataset
from mlpbp.data.preprocessing import Moments, Standardizer
from mlpbp.data.readahead import ReadAhead, pread_exact, read_rows
from mlpbp.data.readers import dataset_from_arrays
from mlpbp.errors import DataError

SCAN_ROWS = 32768  # rows per chunk when streaming through a whole table


def is_lazy(path: str | Path) -> bool:
    """Whether ``path`` is a folder this module reads (an .npy pair or Parquet files)."""
    return Path(path).is_dir()


class NpySource:
    """A 2-D numeric C-ordered ``.npy`` file whose rows are read with ``pread`` as asked for.

    ``np.load(mmap_mode="r")`` checks the header; rows are then read into fresh buffers rather
    than through the mapping: a page fault on a mapping maps a 64 KiB window around each row
    read at random, so a mapping's resident set grows to the whole file within an epoch, and
    handing pages back (madvise) made batches 15× slower. Read calls leave the file in the page
    cache (shared, not counted in a process's resident memory)."""

    def __init__(self, path: Path) -> None:
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise DataError(f"{path} not found (a folder of training data holds X.npy and y.npy)") from None
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read as an .npy array: {' '.join(str(e).split())}") from None
        if X.ndim != 2 or X.dtype.kind not in "biuf" or 0 in X.shape:
            raise DataError(f"{path}: X must be a non-empty 2-D numeric array, got shape {X.shape} dtype {X.dtype}")
        if not X.flags.c_contiguous:
            raise DataError(f"{path}: X is stored in Fortran order; save it in C order (np.ascontiguousarray)")
        self.path, (self.n, self.d), self.dtype, self.offset = path, X.shape, X.dtype, X.offset
        self.row_bytes = self.d * X.itemsize
        del X  # the mapping is not used for reading

    def read(self, rows: np.ndarray | slice) -> np.ndarray:
        """Rows (indices in any order, or a slice) as float64 (``readahead.read_rows``: one
        read call per run of nearby rows, ~1.2 µs per row spread at random on a 2-vCPU VM)."""
        try:
            if isinstance(rows, slice):
                start, stop, _ = rows.indices(self.n)
                out = np.empty((max(stop - start, 0), self.d), self.dtype)
                pread_exact(self._fd, memoryview(out).cast("B"), self.offset + start * self.row_bytes)
                return out.astype(np.float64)
            return read_rows(self._fd, self.offset, self.d, self.dtype, np.asarray(rows, dtype=np.int64))
        except EOFError as e:
            raise DataError(f"{self.path}: {e}") from None

    def release(self) -> None:
        """Nothing to hand back: rows are read into buffers, not mapped."""


class LazyRows:
    """Rows of a table on disk: ``shape``, ``dtype``, views by row index, and ``take``."""

    ndim = 2

    def __init__(self, source: NpySource, index: np.ndarray | None = None, scaler=None, dtype=np.float64) -> None:
        self.source, self.index, self.scaler, self.dtype = source, index, scaler, np.dtype(dtype)
        self.shape = (source.n if index is None else index.shape[0], source.d)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> LazyRows:
        """The rows ``key`` (a slice or an index array) as another view; nothing is read."""
        if isinstance(key, slice):
            key = np.arange(*key.indices(self.shape[0]))
        key = np.asarray(key, dtype=np.int64)
        return LazyRows(self.source, key if self.index is None else self.index[key], self.scaler, self.dtype)

    def file_order(self) -> np.ndarray:
        """Positions of this view's rows sorted by where they lie in the file."""
        return np.arange(self.shape[0]) if self.index is None else np.argsort(self.index, kind="stable")

    def transformed(self, scaler: Standardizer, dtype) -> LazyRows:
        """The same rows, standardised by ``scaler`` and cast to ``dtype`` as they are read."""
        return LazyRows(self.source, self.index, scaler, dtype)

    def take(self, rows, axis: int = 0, out: np.ndarray | None = None, mode: str = "raise") -> np.ndarray:
        """Read rows as ``ndarray.take(rows, axis=0, out=out)`` would give them."""
        rows = np.asarray(rows, dtype=np.int64)
        X = self.source.read(rows if self.index is None else self.index[rows])
        if self.scaler is not None:
            X = self.scaler.transform(X)
        if out is None:
            return np.ascontiguousarray(X, dtype=self.dtype)
        out[...] = X  # the same rounding as astype
        return out

    @contextlib.contextmanager
    def read_ahead(self, rows: np.ndarray, bounds: np.ndarray):
        """A stand-in for these rows while a loop takes the batches ``rows[bounds[i]:bounds[i + 1]]``
        (row positions), in order: a child process reads each batch ahead
        (``readahead.ReadAhead``) while the loop works on the one before, and ``take`` hands it
        over, the same numbers as reading it here. The child is kept for the next epoch; one
        whose batches were not all taken (a stop mid-epoch) is ended. If it fails, the rest is
        read here; so is everything without ``os.memfd_create`` (not Linux), or when the widest
        batch has fewer than ``readahead.MIN_BATCH_ROWS`` rows."""
        if not readahead.AVAILABLE or np.diff(bounds).max(initial=0) < readahead.MIN_BATCH_ROWS:
            yield self
            return
        reader = self.__dict__.get("_reader")
        if reader is None:
            mean, scale = (None, None) if self.scaler is None else (self.scaler.mean, self.scaler.scale)
            s = self.source
            reader = self._reader = ReadAhead(s._fd, s.offset, s.d, s.dtype, self.dtype, mean, scale)
        sizes = np.diff(bounds)
        bounds = np.concatenate(([0], np.cumsum(sizes[sizes > 0])))  # the loop reads nothing for an empty share
        ahead = _Ahead(self, reader, rows, bounds)
        try:
            try:
                reader.plan(rows if self.index is None else self.index[rows], bounds)
            except OSError:  # the child is gone (killed between epochs): read here
                ahead.failed = True
            yield ahead
        finally:
            if not reader.done or ahead.failed:
                reader.close()
                self._reader = None

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        X = self.take(np.arange(self.shape[0]))
        return X if dtype is None else X.astype(dtype)

    def scan(self, lo: int = 0, hi: int | None = None, rows: int = SCAN_ROWS):
        """(start, raw float64 rows) for the file's rows [lo, hi) in file order: one sequential
        pass, for fitting the standardisation. Only on a table that is not a view."""
        hi = self.shape[0] if hi is None else hi
        for i in range(lo, hi, rows):
            yield i, self.source.read(slice(i, min(i + rows, hi)))


class _Ahead:
    """``LazyRows.read_ahead``'s stand-in: ``take`` of the planned batches, in order."""

    def __init__(self, rows: LazyRows, reader: ReadAhead, planned: np.ndarray, bounds: np.ndarray) -> None:
        self.rows, self.reader, self.planned, self.bounds, self.failed = rows, reader, planned, bounds, False
        self.taken = 0
        self.shape, self.dtype, self.ndim = rows.shape, rows.dtype, rows.ndim

    def take(self, rows, axis: int = 0, out: np.ndarray | None = None, mode: str = "raise") -> np.ndarray:
        if not self.failed:
            try:
                X = self.reader.next_batch()
            except OSError:  # the child failed or was killed: read here from now on
                self.failed = True
            else:
                i = self.taken
                self.taken += 1
                if not np.array_equal(self.planned[self.bounds[i] : self.bounds[i + 1]], rows):
                    raise ValueError("read_ahead: rows taken out of the planned order")
                if out is None:
                    return X.copy()
                out[...] = X
                return out
        return self.rows.take(rows, axis, out, mode)


def fit_moments(table: LazyRows, train_rows: np.ndarray, lo: int, hi: int) -> Moments:
    """One pass over the file rows [lo, hi): every value checked finite, the moments of the
    rows in ``train_rows`` (file row numbers) gathered for the standardisation."""
    in_train = np.zeros(hi - lo, bool)
    mine = train_rows[(train_rows >= lo) & (train_rows < hi)]
    in_train[mine - lo] = True
    m = Moments()
    for i, X in table.scan(lo, hi):
        bad = ~np.isfinite(X)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"{table.source.path}: row {i + r}, column {c} is {X[r, c]}; all values must be finite")
        m = m.merge(Moments.of(X[in_train[i - lo : i - lo + X.shape[0]]]))
    return m


# ---------------------------------------------------------------------------------------------
# Readers


def read_lazy(
    path: str | Path,
    target: str | None = None,
    task: str | None = None,
    spill_dir: Path | None = None,
    weight: str | None = None,
) -> Dataset:
    """A Dataset whose X is ``LazyRows`` over the folder ``path``: X.npy + y.npy, or Parquet.

    ``spill_dir``: Parquet is streamed into X.npy and y.npy there, or, when another process
    already did, those are opened; the caller removes the folder once every process that
    shares it has opened its files (the open file keeps the data). Without it each process
    spills into a scratch file of its own. ``weight`` (data.weight): a column of per-row
    weights (Parquet; never a feature) or, beside X.npy, the file WEIGHT.npy; checked, in
    ``Dataset.weight``."""
    X, y, features, target, w = open_weighted(path, target=target, spill_dir=spill_dir, weight=weight)
    ds = dataset_from_arrays(Path(path), X, y, task, features, target)
    ds.weight = w
    return ds


def weight_array(w: np.ndarray, name: str, source: str) -> np.ndarray:
    """Per-row weights as float64, each a finite number >= 0; else one line naming the row
    (numbered from 0, as the folder's other messages) and the column."""
    if w.ndim != 1 or w.dtype.kind not in "biuf":
        raise DataError(f"{source}: weight '{name}' must be one number per row, got shape {w.shape} dtype {w.dtype}")
    w = w.astype(np.float64)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        why = "negative" if w[i] < 0 else ("missing" if np.isnan(w[i]) else "not a finite number")
        raise DataError(f"{source}: row {i}, column '{name}': weight {float(w[i])!r} is {why}; weights must be >= 0")
    return w


def _npy_weight(folder: Path, name: str, n: int) -> np.ndarray:
    """NAME.npy beside X.npy: one weight per row, checked."""
    path = folder / f"{name}.npy"
    if not path.exists():
        raise DataError(f"{folder}: data.weight '{name}': no {name}.npy beside X.npy (one weight per row of X)")
    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as an .npy array: {' '.join(str(e).split())}") from None
    if w.shape[:1] != (n,):
        raise DataError(f"{path}: {w.shape[0] if w.ndim else 'no'} weights for the {n} rows of X.npy")
    return weight_array(w, name, str(path))


def open_table(
    path: str | Path,
    features: list[str] | None = None,
    target: str | None = None,
    need_target: bool = True,
    spill_dir: Path | None = None,
) -> tuple[LazyRows, np.ndarray | None, list[str], str]:
    """The folder's features (``LazyRows``, raw), its targets as stored (None when absent and
    not ``need_target``), the feature names and the target's. With ``features`` (a saved
    model's), the columns must be exactly those, plus the target, and come in that order."""
    return open_weighted(path, features, target, need_target, spill_dir)[:4]


def open_weighted(
    path: str | Path,
    features: list[str] | None = None,
    target: str | None = None,
    need_target: bool = True,
    spill_dir: Path | None = None,
    weight: str | None = None,
) -> tuple[LazyRows, np.ndarray | None, list[str], str, np.ndarray | None]:
    """``open_table``, and the per-row weights of the column ``weight`` (data.weight: a
    Parquet column that is then neither a feature nor unexpected, or the file WEIGHT.npy
    beside X.npy), checked finite and >= 0; None without ``weight`` (or, for a saved model's
    ``features``, without that column or file: every row then weighs 1)."""
    path = Path(path)
    if (path / "X.npy").exists():
        X, y = _open_npy_pair(path, need_target)
        names = [f"x{j}" for j in range(X.shape[1])]
        if features is not None and len(features) != len(names):
            raise DataError(f"{path}: X.npy has {len(names)} columns; the model takes {len(features)} features")
        if weight is not None and features is not None and not (path / f"{weight}.npy").exists():
            weight = None  # a saved model's folder without the file: its rows weigh 1
        w = None if weight is None else _npy_weight(path, weight, X.shape[0])
        return X, y, features or names, "y", w
    files = sorted(path.glob("*.parquet"))
    if files:
        return _open_parquet(path, files, features, target, need_target, spill_dir, weight)
    raise DataError(
        f"{path}: a data folder must hold X.npy and y.npy, or .parquet files; found neither"
        f" ({', '.join(sorted(p.name for p in path.iterdir())[:5]) or 'it is empty'})"
    )


def _open_npy_pair(folder: Path, need_target: bool) -> tuple[LazyRows, np.ndarray | None]:
    X = LazyRows(NpySource(folder / "X.npy"))
    y_path = folder / "y.npy"
    if not y_path.exists():
        if need_target:
            raise DataError(f"{folder}: X.npy has no y.npy beside it (the targets, one row per row of X)")
        return X, None
    try:
        y = np.load(y_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{y_path}: cannot read as an .npy array: {' '.join(str(e).split())}") from None
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise DataError(
            f"{folder}: X.npy has {X.shape[0]} rows but y.npy has {y.shape[0] if y.ndim else 'no'} rows"
            f" (shape {y.shape}); they must have one target row per row of X"
        )
    return X, y


def _open_parquet(
    folder: Path,
    files: list[Path],
    features: list[str] | None,
    target,
    need_target: bool,
    spill_dir: Path | None,
    weight: str | None = None,
):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{folder}: reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        schemas = [pq.read_schema(f) for f in files]
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{folder}: cannot read Parquet: {' '.join(str(e).split())}") from None
    first = schemas[0]
    for f, s in zip(files[1:], schemas[1:]):
        if not s.equals(first, check_metadata=False):
            raise DataError(f"{folder}: {f.name} has another schema than {files[0].name} ({_schema_diff(first, s)})")
    names = list(first.names)
    if target is None and features is None:
        target = [c for c in names if c != weight][-1]
    has_target = target in names
    if need_target and not has_target:
        raise DataError(f"{folder}: target column '{target}' not found (columns: {', '.join(names)})")
    if weight is not None and weight not in names and features is not None:
        weight = None  # a saved model's folder without the column: its rows weigh 1
    if weight is not None and weight not in names:
        raise DataError(f"{folder}: weight column '{weight}' not found (columns: {', '.join(names)})")
    if weight is not None and weight == target:
        raise DataError(f"{folder}: column '{weight}' is both the target and the weight (data.weight)")
    if features is None:
        features = [c for c in names if c not in (target, weight)]
    else:
        have, wanted = set(names), set(features)  # linear in the column count
        missing = [c for c in features if c not in have]
        extra = [c for c in names if c not in wanted and c != target and c != weight]
        if missing or extra:
            what = (
                f"missing feature columns {', '.join(missing)}" if missing else f"unexpected columns {', '.join(extra)}"
            )
            raise DataError(f"{folder}: {what} (the model takes its {len(features)} training feature columns)")
    for c in features:
        t = first.field(c).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise DataError(f"{folder}: feature column '{c}' has type {t}; features must be numeric")
    small = all(pa.types.is_float32(first.field(c).type) or pa.types.is_float16(first.field(c).type) for c in features)
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    target_read = target if has_target else None
    if spill_dir is not None and (spill_dir / "X.npy").exists():  # spilled by another process here
        source = NpySource(spill_dir / "X.npy")
        source.path = folder
        y = np.load(spill_dir / "y.npy", allow_pickle=False) if target_read else None
        w = np.load(spill_dir / "weight.npy", allow_pickle=False) if weight else None
    else:
        dtype = np.float32 if small else np.float64
        source, y, w = _spill(folder, files, features, target_read, n, dtype, spill_dir, weight)
    return LazyRows(source), y, features, target or "", w


def _schema_diff(a, b) -> str:
    if a.names != b.names:
        return f"columns {', '.join(a.names)} vs {', '.join(b.names)}"
    for fa, fb in zip(a, b):
        if fa.type != fb.type:
            return f"column '{fa.name}': {fa.type} vs {fb.type}"
    return "field metadata differs"


def _spill(
    folder: Path, files: list[Path], features: list[str], target: str | None, n: int, dtype, into=None, weight=None
):
    """Stream the feature columns, row group by row group, into a scratch .npy (in the temp
    folder, unlinked once opened; or ``into``/X.npy, with the targets in ``into``/y.npy and the
    weights in ``into``/weight.npy, kept for other processes) and open it for reading; read the
    target column (and the ``weight`` column, checked) whole."""
    import pyarrow.parquet as pq

    if into is None:
        fd, scratch = tempfile.mkstemp(prefix="mlpbp-parquet-", suffix=".npy")
        os.close(fd)
    else:
        scratch = str(into / "X.npy.part")  # renamed when complete: a reader never sees half a file
    try:
        header = np.lib.format.open_memmap(scratch, mode="w+", dtype=dtype, shape=(n, len(features)))
        offset = header.offset
        del header
        ys, ws = [], []
        with open(scratch, "r+b") as out:
            out.seek(offset)
            for f in files:
                pf = pq.ParquetFile(f)
                for g in range(pf.num_row_groups):
                    table = pf.read_row_group(
                        g, columns=features + ([target] if target else []) + ([weight] if weight else [])
                    )
                    for c in features:
                        if table.column(c).null_count:
                            raise DataError(f"{f}: column '{c}' has empty (null) values in row group {g}")
                    block = np.column_stack([table.column(c).to_numpy().astype(dtype) for c in features])
                    out.write(np.ascontiguousarray(block).tobytes())
                    if target:
                        if table.column(target).null_count:
                            raise DataError(f"{f}: target column '{target}' has empty (null) values in row group {g}")
                        ys.append(table.column(target).to_numpy(zero_copy_only=False))
                    if weight:
                        ws.append(_weight_block(table.column(weight), weight, f))
        y = np.concatenate(ys) if target else None
        w = weight_array(np.concatenate(ws), weight, str(folder)) if weight else None
        if y is not None and y.dtype.kind == "O":
            y = y.astype(str)
        if into is not None:
            if y is not None:
                np.save(into / "y.npy", y, allow_pickle=False)
            if w is not None:
                np.save(into / "weight.npy", w, allow_pickle=False)
            os.replace(scratch, into / "X.npy")
            scratch = str(into / "X.npy")
        source = NpySource(Path(scratch))
        source.path = folder
    finally:
        if into is None:
            with contextlib.suppress(OSError):
                os.unlink(scratch)  # the open file keeps the data until the process ends
    return source, y, w


def _weight_block(col, name: str, f: Path) -> np.ndarray:
    """A row group's weight column as float64, a missing cell as NaN (refused with its row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise DataError(f"{f}: weight column '{name}' has type {col.type}; weights must be numbers")
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
