"""Real-world cells: tokens that mean missing, dates and times written as text, numeric columns
with a few stray words. What each column *is* is decided here, before anything is fitted, so a
problem is one line naming the column, its rows and the config key that settles it.

Dates and times become seconds (since 1970-01-01, or since midnight for a time of day); the
preprocessing turns those into the network's columns (``time_features``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data.arrow import arrow, missing_mask, to_numpy
from mlpbp.data.rows import RowNumbers, row_number
from mlpbp.errors import DataError

# pandas' default missing-value tokens (pandas.io.parsers' STR_NA_VALUES, as read_csv's
# na_values with keep_default_na=True); data.na_values adds the user's own (e.g. '?').
NA_VALUES = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)

# The text date and time formats recognised without data.date_format, tried in this order. A
# column is read with the first format every one of its cells matches; day-first and
# month-first dates that both read every cell are refused as ambiguous.
DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%d.%m.%Y",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d-%m-%Y",
    "%d %b %Y",
    "%b %d %Y",
)
TIME_SUFFIXES = (" %H:%M:%S", " %H:%M", "T%H:%M:%S", "T%H:%M")
TIME_FORMATS = ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p")
RECOGNISED = (*DATE_FORMATS, *(d + t for d in DATE_FORMATS for t in TIME_SUFFIXES), *TIME_FORMATS)
_AMBIGUOUS = {"%d/%m/%Y": "%m/%d/%Y", "%m/%d/%Y": "%d/%m/%Y"}

TIME_KINDS = ("date", "time", "datetime")
DAY_S = 86400.0
SAMPLE_VALUES = 2000  # distinct values a text column's kind is guessed from
NUMERIC_SHARE = 0.8  # a text column whose cells are at least this share numbers is numeric with stray text
_NUMBER = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"
# Numbers as spreadsheets and European locales write them. pyarrow reads none of them, so such a
# column would otherwise pass for a category of as many levels as it has values.
_COMMA_NUMBER = r"^\s*[-+]?(\d{1,3}(,\d{3})+(\.\d+)?|\d{1,3}(\.\d{3})+,\d+|\d+,\d+)\s*$"
_PERCENT = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*%\s*$"
_CURRENCY = r"^\s*[-+]?\s*[$€£¥]\s*[-+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?\s*$"


def is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def null_tokens(arr, tokens: frozenset[str] | set[str]):
    """A text column with every cell whose text (spaces stripped) is one of ``tokens`` missing."""
    if not is_text(arr.type) or not tokens:
        return arr
    hit = pc.is_in(pc.utf8_trim_whitespace(arr), value_set=arrow(sorted(tokens)))
    if not pc.any(hit).as_py():
        return arr
    return pc.if_else(hit, pa.scalar(None, arr.type), arr)


def apply_na_values(table: pa.Table, user_tokens: list[str]) -> tuple[pa.Table, list[str]]:
    """Every text cell that is a missing-value token (pandas' list, which pyarrow's reader already
    knows, plus the user's) becomes missing; a text column that then holds only numbers is read
    as numbers. Returns the table and a note per column the user's tokens changed."""
    tokens = set(NA_VALUES) | set(user_tokens)
    notes = []
    for i, (name, t) in enumerate(zip(table.schema.names, table.schema.types)):
        if not is_text(t):
            continue
        arr = table.column(i)
        before = arr.null_count
        arr = null_tokens(arr, tokens)
        if arr.null_count == before:
            continue
        made = arr.null_count - before
        retyped = ""
        if arr.null_count < len(arr):
            try:
                arr = pc.cast(pc.utf8_trim_whitespace(arr), pa.float64())
                retyped = ", and the column is numeric"
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        table = table.set_column(i, name, arr)
        if user_tokens:
            notes.append(f"column '{name}': {made} cell(s) read as missing (data.na_values){retyped}")
    return table, notes


@dataclass
class Cells:
    """What a feature column's cells are: its kind and, for dates and times written as text,
    the strptime format they are read with."""

    kind: str
    format: str | None = None


def infer_cells(
    arr,
    name: str,
    declared: str | None,
    date_format: str | None,
    first_row: RowNumbers = 0,
    source: str = "",
) -> Cells | None:
    """The kind of a feature column whose kind the Arrow type alone does not settle (text,
    times and timestamps), or None to leave it to the type. ``declared``: data.columns'
    kind; ``date_format``: data.date_format for this column."""
    t = arr.type
    if declared in ("numeric", "categorical"):
        return None
    if pa.types.is_time(t):
        return Cells("time")
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        if declared in TIME_KINDS:
            return Cells(declared)
        return Cells("datetime" if pa.types.is_timestamp(t) and _has_time_of_day(arr) else "date")
    if not is_text(t):
        return None
    if date_format is not None:
        return Cells(declared or _kind_of_format(date_format, arr), date_format)
    values = _sample(arr)
    if not values:
        return None
    fmt = _matching_format(values, name, source)
    if fmt is not None:
        kind = _kind_of_format(fmt, arr)
        return Cells(declared if declared in TIME_KINDS else kind, fmt)
    if declared in TIME_KINDS:
        bad = _first_unparsed(arr, RECOGNISED)
        raise _bad_time(source, first_row, name, bad, None)
    _refuse_mixed_formats(arr, values, name, first_row, source)
    keep = f"set data.columns: {{{name}: categorical}} to keep its values as categories"
    refuse_formatted_numbers(arr, f"column '{name}'", first_row, source, keep, values)
    _refuse_numbers_with_text(arr, name, first_row, source)
    return None


def _sample(arr) -> list[str]:
    distinct = pc.unique(pc.utf8_trim_whitespace(arr)).drop_null()
    return distinct.slice(0, SAMPLE_VALUES).to_pylist()


def _parses(values, fmt: str) -> bool:
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else arrow(values)
    parsed = pc.strptime(arr, format=fmt, unit="s", error_is_null=True)
    return parsed.null_count == arr.null_count


def _matching_format(values: list[str], name: str, source: str) -> str | None:
    if not any(ch.isdigit() for ch in values[0]):
        return None
    for fmt in RECOGNISED:
        if _parses(values, fmt):
            other = _AMBIGUOUS.get(fmt)
            if other and _parses(values, other):
                raise DataError(
                    f"{source + ': ' if source else ''}column '{name}': dates such as {values[0]!r} read as both"
                    f" {fmt} and {other}; set data.date_format (e.g. data.date_format: {{{name}: '{fmt}'}})"
                )
            return fmt
    return None


def _refuse_mixed_formats(arr, values: list[str], name: str, first_row: RowNumbers, source: str) -> None:
    """Dates each in a recognised format, but not all in one: one format per column is what
    data.date_format can say, and without this refusal each date became a category level."""
    if not all(any(ch.isdigit() for ch in v) for v in values):
        return
    left, found = arrow(values), []
    for fmt in RECOGNISED:
        ok = ~missing_mask(pc.strptime(left, format=fmt, unit="s", error_is_null=True))
        if ok.any():
            found.append((left[int(np.flatnonzero(ok)[0])].as_py(), fmt))
            left = left.filter(arrow(~ok))
            if not len(left):
                break
    if len(left) or len(found) < 2:
        return
    trimmed = pc.utf8_trim_whitespace(arr)
    shown = [f"{v!r} (row {row_number(first_row, pc.index(trimmed, v).as_py())}) as {f}" for v, f in found[:3]]
    raise DataError(
        f"{source + ': ' if source else ''}column '{name}' mixes date formats: {', '.join(shown)}"
        f"{', ...' if len(found) > 3 else ''}; a column is read with one format (data.date_format): rewrite the"
        f" dates in one format, or set data.columns: {{{name}: categorical}} to keep its values as categories"
    )


def _kind_of_format(fmt: str, arr) -> str:
    has_date = any(c in fmt for c in ("%Y", "%d", "%m", "%b", "%y"))
    has_time = any(c in fmt for c in ("%H", "%I", "%M"))
    if not has_date:
        return "time"
    if has_time and _has_time_of_day(
        pc.strptime(pc.utf8_trim_whitespace(arr), format=fmt, unit="s", error_is_null=True)
    ):
        return "datetime"
    return "date"


def _has_time_of_day(arr) -> bool:
    s = _epoch_seconds(arr)
    s = s[~np.isnan(s)]
    return bool(s.size and np.any(np.mod(s, DAY_S) != 0))


def _epoch_seconds(arr) -> np.ndarray:
    """Seconds since 1970-01-01 (a timestamp or date column), NaN where missing."""
    t = arr.type
    if pa.types.is_date(t):
        arr = pc.cast(arr, pa.timestamp("s"))
        t = arr.type
    unit = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[t.unit]
    return to_numpy(pc.cast(pc.cast(arr, pa.int64()), pa.float64())) / unit


def _first_unparsed(arr, formats) -> tuple[int, str]:
    trimmed = pc.utf8_trim_whitespace(arr)
    ok = np.zeros(len(arr), dtype=bool)
    for fmt in formats:
        ok |= ~missing_mask(pc.strptime(trimmed, format=fmt, unit="s", error_is_null=True))
    bad = np.flatnonzero(~ok & ~missing_mask(arr))
    i = int(bad[0]) if bad.size else 0
    return i, arr[i].as_py() if isinstance(arr, pa.Array) else arr.take([i])[0].as_py()


def _first_not_iso(arr) -> tuple[int, str]:
    """The first cell that is not an ISO-8601 date or timestamp (the cells a model with no stored
    format reads), for a message that names it: not the first cell of another recognised format."""
    for i, v in enumerate(pc.utf8_trim_whitespace(arr).to_pylist()):
        if v is not None:
            try:
                pc.cast(pa.array([v]), pa.timestamp("s"))
            except pa.ArrowInvalid:
                return i, arr[i].as_py() if isinstance(arr, pa.Array) else arr.take([i])[0].as_py()
    return 0, arr[0].as_py() if isinstance(arr, pa.Array) else arr.take([0])[0].as_py()


def _bad_time(source: str, first_row: RowNumbers, name: str, bad: tuple[int, str], fmt: str | None) -> DataError:
    i, value = bad
    at = f"{source + ': ' if source else ''}row {row_number(first_row, i)}, column '{name}'"
    if fmt is not None:
        return DataError(f"{at}: {value!r} does not match the date format {fmt!r} (data.date_format)")
    return DataError(
        f"{at}: {value!r} is not a date or time in a recognised format (such as 2024-01-31, 31/01/2024, 13:45:00);"
        " set data.date_format, e.g. data.date_format: {" + name + ": '%d %B %Y'}"
    )


def _unread_time(source: str, first_row: RowNumbers, name: str, bad: tuple[int, str], kind: str) -> DataError:
    """A cell of a column read without a stored format (a model's, whose training reader typed
    the column itself): only ISO-8601 dates, or times of day, read there. data.date_format is
    a training key, so naming it here sent a user to retrain."""
    i, value = bad
    at = f"{source + ': ' if source else ''}row {row_number(first_row, i)}, column '{name}'"
    if kind == "time":
        return DataError(f"{at}: {value!r} is not a time of day (such as 13:45:00, 13:45 or 1:45 PM)")
    return DataError(
        f"{at}: {value!r} is not an ISO-8601 date or timestamp (such as 2024-01-31 or 2024-01-31 13:45:00),"
        " the form this column is read in"
    )


def _refuse_numbers_with_text(arr, name: str, first_row: RowNumbers, source: str) -> None:
    """A text column whose cells are nearly all numbers is a numeric column with a few stray
    cells (a '?' or 'unknown' for missing): refused with those cells, not taken for categories."""
    present = ~missing_mask(arr)
    n = int(present.sum())
    if n == 0:
        return
    numbers = to_numpy(pc.fill_null(pc.match_substring_regex(arr, _NUMBER), False)).astype(bool)
    share = numbers.sum() / n
    if share < NUMERIC_SHARE or share == 1.0:
        return
    bad = np.flatnonzero(present & ~numbers)
    shown = ", ".join(f"{arr[int(i)].as_py()!r} (row {row_number(first_row, int(i))})" for i in bad[:3])
    raise DataError(
        f"{source + ': ' if source else ''}column '{name}' is numeric but {bad.size} of its {n} cells are not"
        f" numbers: {shown}{', ...' if bad.size > 3 else ''}; list such tokens in data.na_values to read them"
        f" as missing, or set data.columns: {{{name}: categorical}}"
    )


def _matches(arr, pattern: str) -> np.ndarray:
    return to_numpy(pc.fill_null(pc.match_substring_regex(arr, pattern), False)).astype(bool)


def refuse_formatted_numbers(
    arr, what: str, first_row: RowNumbers, source: str, keep: str | None = None, values: list[str] | None = None
) -> None:
    """A text column whose every cell is a number, some written with a thousands separator, a
    decimal comma, a percent or a currency sign: refused, naming the first such cell. ``keep``: how to
    keep its values as labels instead. ``values``: some of its distinct cells (``_sample``); one
    that is neither kind of number settles it without the four passes over every cell, which
    tripled the time to read a text category of 2M rows."""
    if values is not None:
        sample = arrow(values)
        if not np.logical_or.reduce([_matches(sample, p) for p in (_COMMA_NUMBER, _PERCENT, _CURRENCY, _NUMBER)]).all():
            return
    present = ~missing_mask(arr)
    comma, percent, money = _matches(arr, _COMMA_NUMBER), _matches(arr, _PERCENT), _matches(arr, _CURRENCY)
    odd = comma | percent | money
    if not odd.any() or not np.all(odd | _matches(arr, _NUMBER) | ~present):
        return
    i = int(np.flatnonzero(odd)[0])
    shown = f"{arr[i].as_py().strip()!r} (row {row_number(first_row, i)})"
    if percent[i]:
        written, plain = f"percentages such as {shown}", "12.5 or 0.125 for 12.5%"
    elif money[i]:
        written, plain = f"amounts with a currency sign such as {shown}", "1234.5 for $1,234.50"
    else:
        written, plain = f"numbers written with a comma such as {shown}", "1234.5, not 1,234.5 or 1234,5"
    raise DataError(
        f"{source + ': ' if source else ''}{what} holds {written}; mlpbp reads plain numbers ({plain}):"
        f" rewrite the column{', or ' + keep if keep else ''}"
    )


def seconds(arr, name: str, kind: str, fmt: str | None, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
    """A date or time column as float64 seconds: since 1970-01-01 (date, datetime) or since
    midnight (time); NaN where missing. Text cells are read with ``fmt`` (or ISO-8601)."""
    t = arr.type
    if is_text(t):
        trimmed = pc.utf8_trim_whitespace(arr)
        if fmt is None:
            try:
                parsed = pc.cast(trimmed, pa.timestamp("s"))
            except pa.ArrowInvalid:
                if kind != "time":
                    raise _unread_time(source, first_row, name, _first_not_iso(arr), kind) from None
                # A model stores no format for a time column the CSV reader typed itself (13:45:00);
                # the same times as text (a Parquet string column, or a CSV where one cell is
                # '1:45 PM' and the reader no longer types the column) are each read by the first
                # time-of-day format that reads the cell: they are unambiguous.
                parsed = None
                for f in TIME_FORMATS:
                    one = pc.strptime(trimmed, format=f, unit="s", error_is_null=True)
                    parsed = one if parsed is None else pc.coalesce(parsed, one)
                if parsed.null_count != trimmed.null_count:
                    raise _unread_time(source, first_row, name, _first_unparsed(arr, TIME_FORMATS), kind) from None
        else:
            parsed = pc.strptime(trimmed, format=fmt, unit="s", error_is_null=True)
            if parsed.null_count != trimmed.null_count:
                bad = np.flatnonzero(missing_mask(parsed) & ~missing_mask(trimmed))
                i = int(bad[0])
                raise _bad_time(
                    source,
                    first_row,
                    name,
                    (i, arr[i].as_py() if isinstance(arr, pa.Array) else arr.take([i])[0].as_py()),
                    fmt,
                )
        s = _epoch_seconds(parsed)
    elif pa.types.is_time(t):
        unit = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[t.unit]
        ints = pc.cast(arr, pa.int32() if pa.types.is_time32(t) else pa.int64())
        return to_numpy(pc.cast(ints, pa.float64())) / unit
    elif pa.types.is_timestamp(t) or pa.types.is_date(t):
        s = _epoch_seconds(arr)
    elif pa.types.is_null(t):
        return np.full(len(arr), np.nan)
    else:
        raise DataError(f"{source + ': ' if source else ''}column '{name}' of type {t} cannot be read as a {kind}")
    return np.mod(s, DAY_S) if kind == "time" else s


TIME_OF_DAY_NAMES = ("hour_sin", "hour_cos", "minute_sin", "minute_cos")


def time_features(s_of_day: np.ndarray) -> np.ndarray:
    """Seconds since midnight as 4 cyclic columns: the hour of the day (with its minutes as a
    fraction) and the minute of the hour, each as (sin, cos), so 23:59 sits next to 00:00."""
    day = 2 * np.pi * s_of_day / DAY_S
    hour = 2 * np.pi * np.mod(s_of_day, 3600.0) / 3600.0
    return np.column_stack([np.sin(day), np.cos(day), np.sin(hour), np.cos(hour)])
