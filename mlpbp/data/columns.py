"""One table column of any Arrow type read as what the network can use: numbers (dates as days
since 1970-01-01) or text labels, with its kind inferred from its type; a cell that is neither
becomes one line naming its row and column."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data.arrow import to_numpy
from mlpbp.data.rows import RowNumbers, at, cell_error, row_number
from mlpbp.errors import DataError

_DAY = {"s": 86400, "ms": 86400 * 10**3, "us": 86400 * 10**6, "ns": 86400 * 10**9}


def infer_kind(arrow_type: pa.DataType) -> str:
    """A column's kind from its type: numbers are numeric, text and booleans categorical,
    dates and times dates; a column with no value at all is dropped."""
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type):
        return "date"
    if pa.types.is_null(arrow_type):
        return "drop"
    return "categorical"


def _first_bad(arr: pa.ChunkedArray | pa.Array, ok) -> tuple[int, object]:
    for i, v in enumerate(arr.to_pylist()):
        if v is not None and not ok(v):
            return i, v
    return -1, None


def numeric_values(arr, column: str, kind: str = "numeric", first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
    """A column as float64, missing cells as NaN; dates as days since 1970-01-01."""
    t = arr.type
    if pa.types.is_null(t):
        # Every cell missing: the reader types such a column null. For a date column this is a
        # prediction file whose rows all lack the date (one request of one row, often): missing
        # cells, which imputation fills or data.missing refuses, never a type error.
        return np.full(len(arr), np.nan)
    if kind == "date" or pa.types.is_date(t) or pa.types.is_timestamp(t):
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            try:
                arr = pc.cast(arr, pa.timestamp("s"))
            except pa.ArrowInvalid:
                i, v = _first_bad(arr, _is_iso_date)
                raise cell_error(source, row_number(first_row, i), column, f"{v!r} is not an ISO-8601 date") from None
            t = arr.type
        if pa.types.is_date32(t):
            return to_numpy(pc.cast(pc.cast(arr, pa.int32()), pa.float64()))
        if pa.types.is_date64(t):
            return to_numpy(pc.cast(pc.cast(arr, pa.int64()), pa.float64())) / 86400e3
        if pa.types.is_timestamp(t):
            days = pc.cast(pc.cast(arr, pa.timestamp(t.unit)), pa.int64())
            return to_numpy(pc.cast(days, pa.float64())) / _DAY[t.unit]
        raise DataError(f"{at(source)}column '{column}' of type {t} cannot be read as dates")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            arr = pc.cast(pc.utf8_trim_whitespace(arr), pa.float64())
        except pa.ArrowInvalid:
            i, v = _first_bad(arr, _is_number)
            raise cell_error(source, row_number(first_row, i), column, f"{v!r} is not a number") from None
    try:
        values = to_numpy(pc.cast(arr, pa.float64()))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{at(source)}column '{column}' of type {t} cannot be read as numbers") from None
    if np.isinf(values).any():
        i = int(np.flatnonzero(np.isinf(values))[0])
        raise cell_error(source, row_number(first_row, i), column, f"{float(values[i])!r} is not a finite number")
    return values


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _is_iso_date(v: str) -> bool:
    try:
        pc.cast(pa.array([v]), pa.timestamp("s"))
    except pa.ArrowInvalid:
        return False
    return True


def string_values(arr) -> pa.ChunkedArray | pa.Array:
    """A column as text labels, one spelling per value: integer-valued numbers as integers
    ('3', whether the file wrote 3 or 3.0), booleans as 'true'/'false'; missing cells null."""
    t = arr.type
    if pa.types.is_floating(t):
        values = to_numpy(pc.cast(arr, pa.float64()))
        finite = values[np.isfinite(values)]
        if np.array_equal(finite, np.round(finite)) and (np.abs(finite) < 2**53).all():
            return pc.cast(pc.cast(arr, pa.int64(), safe=False), pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.utf8_trim_whitespace(arr)
    return pc.cast(arr, pa.string())


def weight_values(arr, column: str, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
    """A column of per-row weights as float64: every cell a finite number >= 0; a missing,
    non-numeric, infinite, NaN or negative cell is one line naming its row and column."""
    t = arr.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)):
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise DataError(f"{at(source)}weight column '{column}' has type {t}; weights must be numbers")
    missing = to_numpy(pc.is_null(arr, nan_is_null=pa.types.is_floating(t))) if len(arr) else np.zeros(0, bool)
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        what = "nan" if pa.types.is_floating(t) and arr[i].is_valid else "missing"
        raise cell_error(
            source, row_number(first_row, i), column, f"the weight is {what}; every row needs a weight >= 0"
        )
    values = numeric_values(arr, column, "numeric", first_row, source)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        why = "negative" if values[i] < 0 else "not a finite number"
        raise cell_error(
            source, row_number(first_row, i), column, f"weight {float(values[i])!r} is {why}; weights must be >= 0"
        )
    return values


# ---- plain numeric columns, a block at a time ---------------------------------------------------
# Integer and floating-point columns (most of a wide table) are read as one float64 matrix of many
# columns, at most BLOCK_CELLS cells (32 MiB), and each step is one NumPy call for all of them: a
# table of 100,000 columns costs no pyarrow or NumPy call per column and step, only the copy of
# each column into the block.
BLOCK_CELLS = 1 << 22
_EXACT_INT = 2**53  # integers up to this size are exact in float64 (pyarrow's safe cast refuses larger)


_PLAIN_IDS = frozenset(
    getattr(pa, name)().id
    for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
)


def is_plain_numeric(t: pa.DataType) -> bool:
    """An integer or floating-point type (one set lookup: asked of every column of a wide table)."""
    return t.id in _PLAIN_IDS


def column_batches(n_rows: int, items: list) -> list[list]:
    """``items`` in order, in batches whose block (``n_rows`` by the batch) has at most BLOCK_CELLS cells."""
    size = max(1, BLOCK_CELLS // max(n_rows, 1))
    return [items[i : i + size] for i in range(0, len(items), size)]


def numeric_block(
    table: pa.Table, names: list[str], first_row: RowNumbers = 0, source: str = "", check: bool = True
) -> np.ndarray:
    """Plain numeric columns (``is_plain_numeric``) of ``table`` as one float64 matrix, a column
    each, missing cells NaN: ``numeric_values`` of each, with its refusals (an infinite value,
    an integer too large for float64), named by row and column as it names them;
    ``check=False``: without them (the caller refuses such cells with messages of its own)."""
    n = table.num_rows
    out = np.empty((n, len(names)))
    position = {name: i for i, name in enumerate(table.schema.names)}
    sub = table.select([position[name] for name in names])
    start = 0
    for batch in sub.to_batches():  # each batch as one 2-D tensor, converted in C++ (no call per column)
        rows = batch.num_rows
        if rows and batch.num_columns:
            out[start : start + rows] = np.asarray(batch.to_tensor(null_to_nan=True, row_major=False))
        start += rows
    if not check:
        return out
    ints = [j for j, t in enumerate(sub.schema.types) if pa.types.is_integer(t)]
    suspect = []
    if ints and n:  # an integer beyond 2**53 is not exact in float64: pyarrow's cast refuses it
        big = np.abs(out[:, ints]).max(axis=0, initial=0.0, where=~np.isnan(out[:, ints]))
        suspect = [ints[i] for i in np.flatnonzero(big > _EXACT_INT)]
    infinite = np.flatnonzero(np.isinf(out).any(axis=0)) if n else []
    for j in sorted({*suspect, *infinite}):
        numeric_values(table.column(names[j]), names[j], "numeric", first_row, source)  # raises, naming the cell
    return out


#: header words that name a coordinate (a table needs one of each: ``coordinate_columns``)
LATITUDE_WORDS = frozenset({"lat", "latitude"})
LONGITUDE_WORDS = frozenset({"lon", "lng", "long", "longitude"})


def _words(name: str) -> set[str]:
    """A header's words, lower case: split at anything not a letter or digit and at camelCase."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return {w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w}


def coordinate_columns(table: pa.Table, names: list[str]) -> list[str]:
    """The columns of ``names`` that hold geographic coordinates: a plain numeric column whose
    header has a latitude word (lat, latitude) with every value in [−90, 90], or a longitude
    word (lon, lng, long, longitude) with every value in [−180, 180], not constant; only when
    the table has both (a coordinate pair). data.numeric: auto gives them periodic embeddings:
    a place acts on a target through bumps and boundaries (a city centre, a coast), which one
    slope per standardised coordinate cannot follow (Gorishniy et al. 2022, California housing)."""
    found: dict[str, list[str]] = {"lat": [], "lon": []}
    types = dict(zip(table.schema.names, table.schema.types))
    for n in names:
        words = _words(n)
        side = "lat" if words & LATITUDE_WORDS else "lon" if words & LONGITUDE_WORDS else None
        if side is None or not is_plain_numeric(types[n]):
            continue
        lo, hi = pc.min_max(table.column(n)).values()
        limit = 90 if side == "lat" else 180
        if lo.is_valid and -limit <= lo.as_py() < hi.as_py() <= limit:
            found[side].append(n)
    return [n for n in names if n in found["lat"] + found["lon"]] if found["lat"] and found["lon"] else []
