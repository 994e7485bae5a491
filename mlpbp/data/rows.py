"""How messages name a table's rows, cells and file, whatever rows were dropped before.

A table's rows are numbered by the number of its first row (a chunk's offset in its file; see
RawTable.first_row), or by every row's own number once rows were dropped before it (training's
data.missing: drop_rows, the rows without a target that evaluate skips), so a message names the
row the user sees in the file."""

from __future__ import annotations

import numpy as np

from mlpbp.errors import DataError

RowNumbers = int | np.ndarray


def row_number(first_row: RowNumbers, i: int) -> int:
    """The number messages give row ``i`` of a table numbered by ``first_row``."""
    return int(first_row[i]) if isinstance(first_row, np.ndarray) else first_row + int(i)


def rows_from(first_row: RowNumbers, start: int) -> RowNumbers:
    """The numbering of the table's rows from ``start`` on (a chunk's)."""
    return first_row[start:] if isinstance(first_row, np.ndarray) else first_row + start


def rows_kept(first_row: RowNumbers, keep: np.ndarray) -> RowNumbers:
    """The numbering of the rows where ``keep`` is true, once the others are dropped: each
    keeps its number (``first_row`` itself when none is dropped)."""
    if keep.all():
        return first_row
    numbers = first_row if isinstance(first_row, np.ndarray) else np.arange(first_row, first_row + len(keep))
    return numbers[keep]


def at(source: str) -> str:
    """The file a message is about, as its prefix."""
    return f"{source}: " if source else ""


def cell_error(source: str, row: int, column: str, message: str) -> DataError:
    return DataError(f"{at(source)}row {row}, column '{column}': {message}")


def short_list(values: list[str], n: int = 8) -> str:
    return ", ".join(values[:n]) + (f", ... ({len(values)} in all)" if len(values) > n else "")
