"""User tables read into memory as a pyarrow Table: CSV and TSV (delimiter sniffed, or given),
Parquet, NPZ (arrays X and y) and NPY pairs (X.npy beside y.npy), chosen by the file's extension.

pyarrow parses CSV on every core, recognises missing cells (``""``, ``NA``, ``nan``, ...) and
infers each column's type (numbers, booleans, ISO dates, text) in C++; see benchmarks/README.md
for what it costs against pandas and NumPy. Every problem with a file becomes one
``DataError`` line naming the file (and the row or column, where there is one).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from mlpbp.data.arrow import arrow, to_numpy
from mlpbp.data.csv_parts import BLOCK_BYTES, Progress, stream_csv
from mlpbp.data.rows import RowNumbers, cell_error, row_number, rows_kept
from mlpbp.errors import DataError
from mlpbp.io import ARCHIVE_ERRORS, reads_file

EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
    ".npy": "npy",
}
DELIMITERS = ",;\t|"
SAMPLE_BYTES = 1 << 16  # what the delimiter and the column types are guessed from
# A CSV at least this large is parsed in one part per usable core (data/csv_parts.py), which
# pays once a file is past tens of MB (benchmarks/README.md, "Reading a CSV").
PARALLEL_BYTES = 64 << 20
SKIP_SCAN_BYTES = 256 << 20  # data.bad_lines: skip finds the skipped lines' numbers in files up to this
MAX_PARTS = 8


@dataclass
class RawTable:
    """A table as read, before any column is interpreted."""

    table: pa.Table
    path: Path
    first_row: int  # the number messages give the table's first row: 2 in a CSV (line 1 is the header)
    targets: list[str] | None = None  # the file's own target columns (NPZ/NPY: y), when it has them
    notes: list[str] = field(default_factory=list)
    numbers: np.ndarray | None = None  # once rows are dropped: each row's number in the file
    stripped: dict[str, str] = field(default_factory=dict)  # header names as written -> stripped

    @property
    def rows(self) -> RowNumbers:
        """How messages number the table's rows (what ``first_row`` arguments take)."""
        return self.first_row if self.numbers is None else self.numbers

    def row(self, i: int) -> int:
        return row_number(self.rows, i)

    def drop(self, gone: np.ndarray) -> None:
        """Drop the rows where ``gone`` is true; the rest keep their numbers in messages."""
        if gone.any():
            self.numbers = rows_kept(self.rows, ~gone)
            self.table = self.table.filter(arrow(~gone))


def file_kind(path: Path) -> str:
    if path.is_dir():
        return "npy"
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unknown file extension {path.suffix or '(none)'!r}"
            f" (allowed: {', '.join(sorted(EXTENSIONS))}, or a folder holding X.npy and y.npy)"
        )
    return kind


@reads_file
def read_table(
    path: str | Path,
    delimiter: str | None = None,
    float32: bool = False,
    keep64: Collection[str] | None = None,
    progress: Progress | None = None,
    bad_lines: str = "error",
) -> RawTable:
    """Read a data file whole. ``float32``: store float columns (but those in ``keep64``, by
    default the last column: targets) as float32, which halves the memory of a large numeric
    table that will train in float32. ``bad_lines``: a CSV line with the wrong number of fields
    is an error, or (``skip``) left out and counted in a note."""
    path = Path(path)
    kind = file_kind(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if kind in ("csv", "tsv"):
        raw = _read_csv(path, delimiter or ("\t" if kind == "tsv" else None), float32, keep64, progress, bad_lines)
    elif kind == "parquet":
        raw = _read_parquet(path, progress)
    else:
        X, y = read_npz_arrays(path) if kind == "npz" else read_npy_pair(path)
        raw = _arrays_table(path, X, y)
    if float32:
        keep = set(keep64) if keep64 is not None else set(raw.targets or raw.table.column_names[-1:])
        raw.table = _narrow(raw, keep)
    return raw


# ---------------------------------------------------------------------------------------------
# CSV


def sniff_delimiter(path: Path, sample: str) -> str:
    lines = [line for line in sample.splitlines() if line.strip()][:20]
    if not lines:
        raise DataError(f"{path}: file is empty (expected a header row of column names)")
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        pass
    # The Sniffer wants every line alike; fall back to the one candidate the header uses.
    found = [d for d in DELIMITERS if d in lines[0]]
    if len(found) == 1:
        return found[0]
    if not any(d in line for line in lines for d in DELIMITERS):
        return ","  # one column: no delimiter to find; the column checks say what is wrong
    shown = ", ".join(repr(d) for d in DELIMITERS)
    raise DataError(
        f"{path}: cannot determine the delimiter from the first lines (tried {shown}); set data.delimiter in the config"
    )


def _read_csv(
    path: Path,
    delimiter: str | None,
    float32: bool,
    keep64: Collection[str] | None,
    progress: Progress | None,
    bad_lines: str = "error",
) -> RawTable:
    head, text, size = _head(path)
    if delimiter is None:
        delimiter = sniff_delimiter(path, text)
    ragged = _RaggedRows(skip=bad_lines == "skip")
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=ragged)
    types = _float_types(head, parse, size, float32, keep64, path)
    block = _block_bytes(path, head)
    while True:
        try:
            table = _parse(path, size, head, parse, types, ragged, progress, block)
            break
        except pa.ArrowInvalid as e:
            # A cell longer than a block (pyarrow cannot split it): blocks 4x larger, up to the file.
            if "straddl" in str(e) and block <= size:
                block, ragged[:] = min(4 * block, size + 1), []
                ragged.skipped.clear()
                continue
            raise _parse_error(path, delimiter, e, ragged) from None
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{path}: cannot read as CSV: {_arrow_reason(e)}") from None
    if progress is not None:
        progress(table.num_rows, 1.0)
    raw = RawTable(table, path, first_row=2)
    skipped = ragged.skipped
    if skipped:
        # pyarrow's streaming reader does not say which lines it left out: found here, so the
        # rows kept keep their line numbers in messages (files up to SKIP_SCAN_BYTES)
        lines = _bad_lines(path, delimiter) if size <= SKIP_SCAN_BYTES else []
        first = skipped[0]
        if len(lines) == len(skipped):
            every = np.arange(2, 2 + table.num_rows + len(lines))
            raw.numbers = every[~np.isin(every, lines)]
            first = first.replace("a row", f"row {lines[0]}", 1)
        raw.notes.append(f"{path.name}: skipped {len(skipped)} bad line(s) (data.bad_lines: skip); the first: {first}")
    _check_names(raw)
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows after the header")
    return raw


ROWS_PER_BLOCK = 64  # a block holds at least this many rows of a wide table
MAX_BLOCK_BYTES = 128 << 20


def _block_bytes(path: Path, head: bytes) -> int:
    """pyarrow's block size: BLOCK_BYTES, or ROWS_PER_BLOCK rows of a wide table (its first
    line's length), up to MAX_BLOCK_BYTES. Each block is a record batch, whose every column
    costs the reader and each later step the same whatever its rows: a 100,000-column table of
    2 MiB blocks held 3 rows a batch and took minutes."""
    line = head.find(b"\n")
    if line < 0:  # a header longer than the sample
        line = _first_lines(path, 1, len(head)).find(b"\n")
    if line < 0:
        return BLOCK_BYTES
    return max(BLOCK_BYTES, min(ROWS_PER_BLOCK * (line + 1), MAX_BLOCK_BYTES))


def _head(path: Path) -> tuple[bytes, str, int]:
    """The file's first SAMPLE_BYTES, as bytes and as text (a character cut at the sample's end
    left out), and the file's size."""
    try:
        with path.open("rb") as f:
            head = f.read(SAMPLE_BYTES)
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return head, head.decode("utf-8-sig"), size
    except UnicodeDecodeError as e:
        if len(head) < SAMPLE_BYTES or e.start < len(head) - 4:  # not a character cut at the sample's end
            raise DataError(f"{path}: cannot read as CSV: not UTF-8 text ({e.reason} at byte {e.start})") from None
        return head, head[: e.start].decode("utf-8-sig"), size


class _RaggedRows(list):
    """pyarrow's invalid_row_handler: each row with another field count than the header is
    noted, to be named in the message, and refused; or, with ``skip`` (data.bad_lines: skip),
    noted in ``skipped`` and left out."""

    def __init__(self, skip: bool = False) -> None:
        super().__init__()
        self.skip, self.skipped = skip, []

    def __call__(self, row) -> str:
        where = f"row {row.number}" if row.number is not None else "a row"
        (self.skipped if self.skip else self).append(
            f"{where} has {row.actual_columns} fields, header has {row.expected_columns}"
        )
        return "skip" if self.skip else "error"


def _float_types(
    head: bytes, parse, size: int, float32: bool, keep64: Collection[str] | None, path: Path | None = None
) -> dict:
    """Types for the columns the sample shows to be floats: typed up front, they skip inference,
    and float32 ones (all but ``keep64``, by default the last column) take half the memory."""
    types = {}
    if size > SAMPLE_BYTES:
        if path is not None and head.count(b"\n") < 2:  # a wide header: the sample is its first rows
            head = _first_lines(path, WIDE_SAMPLE_ROWS + 1, len(head))
        types = _wide_types(head, parse.delimiter)
        if types is None:
            types = _sample_types(head, parse, pacsv.ConvertOptions(strings_can_be_null=True))
    wide = set(keep64) if keep64 is not None else set(list(types)[-1:])
    return {
        name: (pa.float32() if float32 and name not in wide else pa.float64())
        for name, t in types.items()
        if pa.types.is_floating(t) and name
    }


def _parts(size: int, head: bytes) -> int:
    """How many parts to parse a CSV in: one per usable core for a large file. A cut at a line
    end could fall inside a quoted cell that spans lines: files that quote cells (seen in the
    sample) are read in one part."""
    return min(_usable_cores(), MAX_PARTS) if size >= PARALLEL_BYTES and b'"' not in head else 1


def _parse(
    path: Path, size: int, head: bytes, parse, column_types: dict, ragged: _RaggedRows, progress, block: int
) -> pa.Table:
    """The table, streamed in parts when ``_parts`` says so; in one part when that fails (it
    finds the problem and numbers its row) or gives repeated column names (the later parts are
    named by position); whole, with the whole file's types, when streaming fails otherwise.
    A table of more than COLUMN_GROUP columns is read a group of columns at a time, each group
    the way the first is, so that every column is read as one read of all would read it
    (``_column_groups``)."""
    groups = _column_groups(path, head, parse.delimiter)

    def streamed(parts: int) -> pa.Table:
        return _by_groups(
            groups,
            lambda include, names, report: stream_csv(
                path, size, parse, column_types, parts, report, block, include, names
            ),
            progress,
            ragged,
        )

    try:
        parts = _parts(size, head)
        if parts > 1:
            try:
                table = streamed(parts)
                if len(set(table.column_names)) == table.num_columns:
                    return table
            except pa.ArrowInvalid:
                ragged.clear()
        ragged.skipped.clear()  # each read counts the lines it skips afresh
        return streamed(1)
    except pa.ArrowInvalid:
        if ragged:
            raise
        ragged.skipped.clear()
        # Type inference over the whole file: the streaming reader fixes each column's type on
        # its first block, and a later block may disagree (text below numbers).
        return _by_groups(
            groups, lambda include, names, _: _read_whole(path, parse, block, include, names), None, ragged
        )


def _read_whole(path: Path, parse, block: int, include: list[str] | None, names: list[str] | None) -> pa.Table:
    header = {} if names is None else {"column_names": names, "skip_rows": 1}
    with path.open("rb") as f:
        return pacsv.read_csv(
            f,
            read_options=pacsv.ReadOptions(block_size=block, **header),
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, include_columns=include or []),
        )


# A CSV of more columns than this is read this many columns at a time, the whole file once per
# group: pyarrow's reader keeps converters and buffers for every column it converts, whatever
# the rows (benchmarks/README.md, "Wide tables").
COLUMN_GROUP = 10_000
_BOM = b"\xef\xbb\xbf"


def _column_groups(path: Path, head: bytes, delimiter: str) -> tuple[list[str], list[list[str]]] | None:
    """The header's names, read once, and the groups of at most COLUMN_GROUP of them that the
    file is read in; None: read every column at once. That is a table of up to COLUMN_GROUP
    columns, and a header this split may not read as pyarrow would: with quotes or a carriage
    return in it, not UTF-8, or with a name twice (pyarrow's own read says what is wrong)."""
    sep = delimiter.encode()
    if b"\n" in head and head[: head.index(b"\n")].count(sep) < COLUMN_GROUP:
        return None
    data = _first_lines(path, 1, len(head))
    if b"\n" not in data:
        return None
    line = data[: data.index(b"\n")].removeprefix(_BOM).removesuffix(b"\r")
    if line.count(sep) < COLUMN_GROUP or b'"' in line or b"\r" in line:
        return None
    try:
        names = line.decode().split(delimiter)
    except UnicodeDecodeError:
        return None
    if len(set(names)) < len(names):
        return None
    return names, [names[lo : lo + COLUMN_GROUP] for lo in range(0, len(names), COLUMN_GROUP)]


def _by_groups(groups, read, progress, ragged: _RaggedRows) -> pa.Table:
    """``read(include, names, progress)`` of every column at once (``groups`` None), or of
    each group of columns, side by side in the header's order."""
    if groups is None:
        return read(None, None, progress)
    names, parts = groups
    tables = []
    for g, include in enumerate(parts):
        ragged.skipped.clear()  # each group's read skips the same lines: count them once
        report = None if progress is None else (lambda rows, done, g=g: progress(rows, (g + done) / len(parts)))
        tables.append(read(include, names, report))
    return pa.Table.from_arrays(
        [c for t in tables for c in t.columns], names=[n for t in tables for n in t.column_names]
    )


def _parse_error(path: Path, delimiter: str, e: pa.ArrowInvalid, ragged: _RaggedRows) -> DataError:
    reason = ragged[0] if ragged else _arrow_reason(e)
    if ragged and reason.startswith("a row"):  # parsed in parallel: find the line ourselves
        reason = _ragged_row(path, delimiter) or reason
    if "Empty CSV file" in str(e):
        return DataError(f"{path}: file is empty (expected a header row of column names)")
    return DataError(f"{path}: cannot read as CSV: {reason}")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _bad_lines(path: Path, delimiter: str) -> list[int]:
    """The line numbers of the rows whose field count is not the header's."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, [])
        return [reader.line_num for row in reader if row and len(row) != len(header)]


def _ragged_row(path: Path, delimiter: str) -> str | None:
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, [])
        for row in reader:
            if row and len(row) != len(header):
                return f"row {reader.line_num} has {len(row)} fields, header has {len(header)}"
    return None


WIDE_COLUMNS = 1000  # a header of more columns is typed by _wide_types, not by pyarrow's inference
WIDE_SAMPLE_ROWS = 5  # the rows a wide table's sample holds
_DECIMAL = r"^[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?$"
_NOT_INTEGER = r"[.eE]"


def _first_lines(path: Path, lines: int, at_least: int) -> bytes:
    """The file's first ``lines`` lines (fewer at its end), read in growing pieces; at most 64 MiB."""
    with path.open("rb") as f:
        data = f.read(at_least)
        while data.count(b"\n") < lines and len(data) < (64 << 20):
            more = f.read(max(len(data), 1 << 16))
            if not more:
                break
            data += more
    return data


def _wide_types(head: bytes, delimiter: str) -> dict | None:
    """The column types of a wide table's sample (more than WIDE_COLUMNS columns), found with
    one pyarrow compute call for all its cells rather than pyarrow's inference, which costs about
    as much per column as reading the whole file: floating point where every cell of a column is
    a decimal number (or empty) and one has a point or an exponent, text otherwise. None: not a
    wide table, or a sample this cannot read (quotes), for pyarrow's inference.

    A column typed float that a later row contradicts fails the typed read, which then infers
    every type from the whole file (``_parse``): the same table, later."""
    lines = head.split(b"\n")
    header, rows = lines[0].removeprefix(b"\xef\xbb\xbf").rstrip(b"\r"), [r.rstrip(b"\r") for r in lines[1:-1]]
    sep = delimiter.encode()
    if header.count(sep) < WIDE_COLUMNS or b'"' in head or not rows:
        return None
    try:
        names = header.decode().split(delimiter)
    except UnicodeDecodeError:
        return None
    cells = [r.split(sep) for r in rows if r]
    if not cells or any(len(r) != len(names) for r in cells):
        return None
    values = [c for r in cells for c in r]
    # from its buffers: pa.array of Python objects would import pandas (seconds)
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = pa.Array.from_buffers(
        pa.large_binary(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    ).cast(pa.large_string(), safe=False)
    k = len(names)
    number = to_numpy(pc.match_substring_regex(flat, _DECIMAL)).reshape(len(cells), k)
    empty = (lengths == 0).reshape(len(cells), k)
    point = to_numpy(pc.match_substring_regex(flat, _NOT_INTEGER)).reshape(len(cells), k)
    floats = (number | empty).all(axis=0) & (number & point).any(axis=0)
    f64, text = pa.float64(), pa.string()
    return {n: f64 if f else text for n, f in zip(names, floats.tolist())}


def _sample_types(head: bytes, parse, convert) -> dict:
    cut = head.rfind(b"\n")
    try:
        return dict(zip(*_names_types(pacsv.read_csv(io.BytesIO(head[: cut + 1]), parse_options=parse))))
    except (pa.ArrowException, ValueError):
        return {}  # the full read reports what is wrong


def _names_types(table: pa.Table):
    return table.schema.names, table.schema.types


def _check_names(raw: RawTable) -> None:
    try:
        path, names = raw.path, [n.strip() for n in raw.table.column_names]
    except UnicodeDecodeError as e:
        raise DataError(f"{raw.path}: cannot read the header: not UTF-8 text ({e.reason})") from None
    stripped = [(a, b) for a, b in zip(raw.table.column_names, names) if a != b and b]
    if stripped:
        raw.stripped = {a: b for a, b in stripped}
        shown = ", ".join(f"{a!r} -> {b!r}" for a, b in stripped[:3])
        more = f" and {len(stripped) - 3} more" if len(stripped) > 3 else ""
        raw.notes.append(f"{path.name}: spaces around column names stripped: {shown}{more}")
    if names and names[0] == "" and len(names) > 1:
        # pandas' to_csv writes its index as a first column with no name.
        raw.table = raw.table.remove_column(0)
        names = names[1:]
        raw.notes.append(f"{path.name}: the first column has no name (a pandas index?): ignored")
    last = len(names) - 1
    if last > 0 and names[last] == "" and raw.table.column(last).null_count == raw.table.num_rows:
        # Spreadsheet and database exports end every line, the header's too, with a delimiter.
        raw.table = raw.table.remove_column(last)
        names = names[:last]
        raw.notes.append(f"{path.name}: the last column has no name and no value (a delimiter ends each line): ignored")
    seen: set[str] = set()  # a set: 100,000 columns must not cost 10^10 comparisons
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"{path}: header column {i + 1} has no name")
        if name in seen:
            written = [repr(a) for a, b in zip(raw.table.column_names, names) if b == name]
            if len(set(written)) > 1:  # the header spells them apart: say why they collide
                raise DataError(
                    f"{path}: column names {' and '.join(written[:2])} are both '{name}' once spaces around"
                    " names are stripped; rename one"
                )
            raise DataError(f"{path}: column name '{name}' appears twice in the header")
        seen.add(name)
    raw.table = raw.table.rename_columns(names)


def _arrow_reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text.removeprefix("CSV parse error: ")[:300] or type(e).__name__


def _narrow(raw: RawTable, keep64: Collection[str]) -> pa.Table:
    """float64 columns (but ``keep64``) as float32; a finite value beyond float32's range is
    refused, naming its cell, rather than becoming inf."""
    table, top = raw.table, float(np.finfo(np.float32).max)
    for i, (name, t) in enumerate(zip(table.schema.names, table.schema.types)):
        if t == pa.float64() and name not in keep64:
            values = to_numpy(table.column(i))
            big = np.flatnonzero(np.isfinite(values) & (np.abs(values) > top))
            if big.size:
                raise cell_error(
                    str(raw.path),
                    row_number(raw.first_row, int(big[0])),
                    name,
                    f"{float(values[big[0]])!r} is beyond the range of float32 (largest {top:.3g}); set"
                    " train.dtype: float64",
                )
            table = table.set_column(i, name, table.column(i).cast(pa.float32()))
    return table


# ---------------------------------------------------------------------------------------------
# What reading a CSV takes, estimated from its first lines before it is read

# Beyond the table itself, the read holds about 1.5 bytes for each byte of the file (its blocks'
# text and parsed fields, which the allocator keeps), 3 kB for each column (pyarrow's converters
# and the table's and mlpbp's per-column records) and 1.6 kB for each further block of a column
# (each block is a record batch: one array a column); benchmarks/README.md, "Memory estimates".
READ_FILE_FACTOR = 1.5
READ_COLUMN_BYTES = 3072
READ_CHUNK_BYTES = 1638


@dataclass(frozen=True)
class ReadEstimate:
    """A data file's shape and the memory reading it takes, estimated before reading it."""

    path: Path
    rows: int
    columns: int
    numeric_columns: int  # columns whose sample cells are all numbers (or empty)
    table_bytes: int  # the table as read
    read_bytes: int  # the peak the read adds to the process, the table included
    basis: str = "its first lines"  # what the estimate is made from, for messages

    def describe(self) -> str:
        return f"{self.rows:,} rows x {self.columns:,} columns, estimated from {self.basis}"


def read_estimate(
    path: str | Path, delimiter: str | None = None, float32: bool = False, keep64: Collection[str] | None = None
) -> ReadEstimate | None:
    """What ``read_table`` with these arguments will take, from the file's first lines (a CSV
    or TSV), its metadata and first rows (Parquet) or its arrays' headers (NPZ, NPY); None for
    a file this cannot tell (``read_table`` says what is wrong with it)."""
    path = Path(path)
    try:
        kind = file_kind(path)
        if kind in ("csv", "tsv"):
            if not path.is_file():
                return None
            return csv_read_bytes(path, delimiter or ("\t" if kind == "tsv" else None), float32, keep64)
        if kind == "parquet":
            return parquet_read_bytes(path, float32) if path.is_file() else None
        return arrays_read_bytes(path, float32)
    except Exception:  # noqa: BLE001 - a damaged file of any kind: read_table names what is wrong
        return None


def csv_read_bytes(
    path: Path, delimiter: str | None, float32: bool = False, keep64: Collection[str] | None = None
) -> ReadEstimate:
    """The rows, from the file's size and its sample's mean line length; the table, from each
    sample column's cells: 8 bytes a number (4 for a float read as float32), 4 bytes of offset
    plus the mean length for text (at least 8: an integer column the sample cannot tell from
    text); and what the reader holds beside it (READ_FILE_FACTOR, READ_COLUMN_BYTES,
    READ_CHUNK_BYTES). The sample's cells are measured with NumPy, whatever the width."""
    head, text, size = _head(path)
    if delimiter is None:
        delimiter = sniff_delimiter(path, text)
    sample = head
    if head.count(b"\n") < 2 and size > len(head):  # a wide header: the sample is its first rows
        sample = _first_lines(path, WIDE_SAMPLE_ROWS + 1, len(head))
    lines = [line.removesuffix(b"\r") for line in sample.split(b"\n")]
    if size > len(sample):
        lines = lines[:-1]  # the last line of a sample may be cut
    header, rows = lines[0].removeprefix(_BOM), [r for r in lines[1:] if r]
    sep = ord(delimiter)
    k = header.count(delimiter.encode()) + 1
    length, other, point, seen = np.zeros(k), np.zeros(k), np.zeros(k), 0
    for r in rows:
        b = np.frombuffer(r, np.uint8)
        cut = b == sep
        if int(cut.sum()) != k - 1:
            continue  # quoted delimiters, or a ragged row: not measured
        cell, inside = np.cumsum(cut) - cut, ~cut
        length += np.bincount(cell, weights=inside, minlength=k)
        other += np.bincount(cell, weights=inside & ~_NUMBER_BYTES[b], minlength=k)
        point += np.bincount(cell, weights=inside & _POINT_BYTES[b], minlength=k)
        seen += 1
    numeric = other == 0
    width = np.where(numeric, 8.0, np.maximum(8.0, 4 + length / max(seen, 1)))
    if float32:
        names = header.decode(errors="replace").split(delimiter)
        keep = set(keep64) if keep64 is not None else {names[-1]}
        kept = np.array([n.strip() in keep for n in names])
        width[numeric & (point > 0) & ~kept] = 4.0
    mean_row = sum(len(r) + 1 for r in rows) / max(len(rows), 1) or 1.0
    n_rows = len(rows) if size <= len(sample) else int(np.ceil((size - len(lines[0]) - 1) / mean_row))
    table_bytes = int(n_rows * (width.sum() + k / 8))  # and a validity bit a cell
    batches = max(int(np.ceil(size / _block_bytes(path, head))), 1)
    read = table_bytes + READ_FILE_FACTOR * size + k * (READ_COLUMN_BYTES + READ_CHUNK_BYTES * (batches - 1))
    return ReadEstimate(path, n_rows, k, int(numeric.sum()), table_bytes, int(read))


# Reading Parquet held about three times the table (its pages decompressed and decoded in
# threads beside the columns they become), and a float32 copy of the float64 columns while
# they are narrowed; benchmarks/README.md, "Memory estimates".
PARQUET_READ_FACTOR = 3


def parquet_read_bytes(path: Path, float32: bool = False) -> ReadEstimate:
    """From the file's metadata: the rows, and each column's bytes in Arrow (its type's width, or
    for text the mean size of its first row group's first rows); the read, PARQUET_READ_FACTOR
    times that, and the float32 copy."""
    f = pq.ParquetFile(path)
    meta, schema = f.metadata, f.schema_arrow
    rows, per_row, text = meta.num_rows, 0.0, []
    for column in schema:
        try:
            per_row += column.type.bit_width / 8 + 1 / 8
        except ValueError:  # not a fixed width: text, binary, nested
            text.append(column.name)
    if text and meta.num_row_groups and rows:
        first = next(f.iter_batches(batch_size=1000, columns=text), None)
        if first is not None and first.num_rows:
            per_row += first.nbytes / first.num_rows
    groups = max(meta.num_row_groups, 1)
    table_bytes = int(rows * per_row) + 128 * len(schema) * groups  # and each buffer's 64-byte padding
    narrowed = 4 * rows * sum(c.type == pa.float64() for c in schema) if float32 else 0
    read = PARQUET_READ_FACTOR * table_bytes + narrowed + READ_COLUMN_BYTES * len(schema) * groups
    numeric = sum(pa.types.is_integer(c.type) or pa.types.is_floating(c.type) for c in schema)
    return ReadEstimate(path, rows, len(schema), numeric, table_bytes, int(read), "its metadata")


def arrays_read_bytes(path: Path, float32: bool = False) -> ReadEstimate:
    """From the headers of X and y (an NPZ archive, or an NPY pair): the arrays loaded, X again
    as the table's columns (and again in float32 while a float64 table is narrowed), and two
    bytes a cell while X is checked for infinities (the mask and its reduction)."""
    shapes = _npz_headers(path) if file_kind(path) == "npz" else [_npy_header(p) for p in npy_pair_paths(path)]
    (x_shape, x_dtype), (y_shape, y_dtype) = shapes
    if len(x_shape) != 2:
        raise ValueError("X is not a matrix")  # read_table says so
    n, d = x_shape
    x, y = n * d * x_dtype.itemsize, int(np.prod(y_shape)) * y_dtype.itemsize
    narrowed = n * d * 4 if float32 and x_dtype == np.float64 else 0
    table_bytes = (narrowed or x) + y
    read = 2 * x + narrowed + 2 * n * d + 2 * y + READ_COLUMN_BYTES * (d + 1)
    return ReadEstimate(path, n, d + 1, d + (y_dtype.kind in "biuf"), table_bytes, int(read), "its arrays' headers")


def _npy_header(source) -> tuple[tuple, np.dtype]:
    """An .npy array's shape and dtype, from its header (``source``: a path or an open file)."""
    with open(source, "rb") if isinstance(source, (str, Path)) else contextlib.nullcontext(source) as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"npy format {version}")
        shape, _, dtype = read[version](f)
    return shape, dtype


def _npz_headers(path: Path) -> list[tuple[tuple, np.dtype]]:
    with zipfile.ZipFile(path) as archive:
        out = []
        for name in ("X.npy", "y.npy"):
            with archive.open(name) as member:
                out.append(_npy_header(member))
    return out


def _byte_table(chars: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


# The bytes of a number's text (and of nan, NA, inf and spaces); a point or an exponent: a float.
_NUMBER_BYTES = _byte_table(b"0123456789+-.eEnaNAifIF \t")
_POINT_BYTES = _byte_table(b".eE")


# ---------------------------------------------------------------------------------------------
# Parquet


def _read_parquet(path: Path, progress: Progress | None) -> RawTable:
    try:
        f = pq.ParquetFile(path)
        parts, rows = [], 0
        for g in range(f.num_row_groups):  # one group at a time, so long reads report progress
            parts.append(f.read_row_group(g))
            rows += parts[-1].num_rows
            if progress is not None:
                progress(rows, rows / max(f.metadata.num_rows, 1))
        table = pa.concat_tables(parts) if parts else f.schema_arrow.empty_table()
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: cannot read as Parquet: {_arrow_reason(e)}") from None
    raw = RawTable(table, path, first_row=1)
    _check_names(raw)
    for name, t in zip(raw.table.column_names, raw.table.schema.types):
        if pa.types.is_nested(t) or pa.types.is_dictionary(t) and pa.types.is_nested(t.value_type):
            raise DataError(
                f"{path}: column '{name}' holds nested values ({t}); mlpbp reads columns of numbers, text,"
                " booleans and dates: flatten it into columns, or write the file without it"
            )
    if table.num_rows == 0:
        raise DataError(f"{path}: no data rows")
    return raw


# ---------------------------------------------------------------------------------------------
# NPZ and NPY: already numeric arrays


def read_npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays X and y from an .npz archive (no pickles)."""
    try:
        with path.open("rb") as f:
            if f.read(2) != b"PK":  # np.load would try anything else as a pickle, and say so
                raise ValueError("not a zip archive")
        archive = np.load(path, allow_pickle=False)
    except ARCHIVE_ERRORS as exc:
        raise DataError(f"{path}: cannot read as an .npz archive: {_one_line(str(exc))}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive holding arrays X and y, got a single array")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing array(s) {', '.join(missing)} (found: {', '.join(archive.files) or 'none'})"
            )
        try:
            return archive["X"], archive["y"]
        except ARCHIVE_ERRORS as exc:
            raise _array_error(path, exc) from None


def npy_pair_paths(path: Path) -> tuple[Path, Path]:
    """``data.path`` for NPY: a folder holding X.npy and y.npy, or the X file (its y file is the
    same name with the last X turned into y: train_X.npy -> train_y.npy)."""
    if path.is_dir():
        return path / "X.npy", path / "y.npy"
    name = path.name
    k = name.rfind("X")
    if k < 0:
        raise DataError(f"{path}: an NPY data.path is the X file (X.npy, train_X.npy, ...) or a folder of X.npy, y.npy")
    return path, path.with_name(name[:k] + "y" + name[k + 1 :])


def read_npy_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xp, yp = npy_pair_paths(path)
    arrays = []
    for p in (xp, yp):
        if not p.is_file():
            raise DataError(f"data file not found: {p} (an NPY data set is a pair X.npy, y.npy)")
        try:
            arrays.append(np.load(p, allow_pickle=False))
        except ARCHIVE_ERRORS as exc:
            raise _array_error(p, exc) from None
        if not isinstance(arrays[-1], np.ndarray):
            raise DataError(f"{p}: expected a .npy array, got an .npz archive")
    X, y = arrays
    if X.ndim >= 1 and y.ndim >= 1 and X.shape[0] != y.shape[0]:
        raise DataError(f"{xp} has {X.shape[0]} rows but {yp} has {y.shape[0]}; the pair must have one row each")
    return X, y


def _array_error(path: Path, exc: Exception) -> DataError:
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        # np.load refuses object arrays without allow_pickle; we never unpickle user files.
        return DataError(f"{path}: X or y is an object (pickled) array; save plain numeric arrays instead")
    kind = "a .npy array" if path.suffix.lower() == ".npy" else "an .npz archive"
    return DataError(f"{path}: cannot read as {kind}: {_one_line(str(exc))}")


def _arrays_table(path: Path, X: np.ndarray, y: np.ndarray) -> RawTable:
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be a 2-D numeric array, got shape {X.shape} dtype {X.dtype}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise DataError(f"{path}: X has shape {X.shape}; need at least one row and one column")
    if X.dtype.kind == "f" and np.isinf(X).any():
        i, j = np.argwhere(np.isinf(X))[0]
        raise DataError(f"{path}: X[{i}, {j}] is {X[i, j]}; values must be finite (NaN marks a missing cell)")
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise DataError(f"{path}: y must have shape ({n},) or ({n}, m) to match X, got {y.shape}")
    if y.dtype.kind not in "biufUS":
        raise DataError(f"{path}: y must hold numbers or string labels, got dtype {y.dtype}")
    columns = {f"x{j}": arrow(X[:, j]) for j in range(d)}  # NaN: a missing cell
    ys = [y] if y.ndim == 1 else [y[:, k] for k in range(y.shape[1])]
    targets = ["y"] if len(ys) == 1 else [f"y{k}" for k in range(len(ys))]
    for name, col in zip(targets, ys):
        columns[name] = arrow(col.astype(str).tolist()) if col.dtype.kind in "SU" else arrow(col)
    return RawTable(
        pa.Table.from_arrays(list(columns.values()), names=list(columns)), path, first_row=0, targets=targets
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())
