"""Target columns: the task they make (inferred out loud, or given), class labels, and encoding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data.arrow import arrow, missing_mask, positions, to_numpy
from mlpbp.data.cells import is_text, refuse_formatted_numbers
from mlpbp.data.columns import infer_kind, numeric_values, string_values
from mlpbp.data.rows import RowNumbers, cell_error, row_number
from mlpbp.errors import DataError


@dataclass
class Target:
    names: list[str]
    task: str  # classification | regression
    classes: list[str] | None  # classification: labels in index order
    why: str  # one line: the task and what decided it
    # Multi-label classification: each row has a set of the labels ``classes``, encoded as one
    # 0/1 column per label; from one column of label sets split by ``separator``
    # (data.label_separator), or, without one, from one 0/1 column per label (``names``).
    multilabel: bool = False
    separator: str | None = None

    def encode(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
        """Class indices (n,) int64, or regression values (n, m) float64, or (multi-label)
        0/1 indicators (n, labels) float64; every cell must have a value (drop rows with missing
        targets first: ``target_missing``)."""
        if self.multilabel:
            if self.separator is not None:
                return label_sets(table.column(self.names[0]), self.names[0], self.separator, first_row, source, self)
            return np.column_stack([_indicator(table.column(n), n, first_row, source) for n in self.names])
        if self.task == "regression":
            return np.column_stack(
                [numeric_values(table.column(n), n, first_row=first_row, source=source) for n in self.names]
            )
        (name,) = self.names
        labels = string_values(table.column(name))
        idx = pc.index_in(labels, value_set=arrow(self.classes))
        idx = positions(idx)
        if (idx < 0).any():
            i = int(np.flatnonzero(idx < 0)[0])
            raise _unseen(source, row_number(first_row, i), name, "class", labels[i].as_py(), self.classes)
        return idx.astype(np.int64)


def _unseen(source: str, row: int, column: str, what: str, value, known: list[str]) -> DataError:
    return cell_error(source, row, column, f"{what} {value!r} was not seen in training (known: {', '.join(known)})")


def _tokens(col, separator: str):
    """A column's label sets: (row of each label, the label), labels stripped, empty ones left out."""
    text = string_values(col)
    parts = pc.split_pattern(text, pattern=separator)
    if isinstance(parts, pa.ChunkedArray):
        parts = parts.combine_chunks()
    rows = to_numpy(pc.list_parent_indices(parts)).astype(np.int64)
    labels = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    keep = to_numpy(pc.not_equal(labels, ""))
    return rows[keep], labels.filter(arrow(keep))


def label_sets(
    col, name: str, separator: str, first_row: RowNumbers = 0, source: str = "", target: Target | None = None
) -> np.ndarray:
    """A column of label sets ("a|b") as (n, labels) 0/1 indicators of ``target.classes``; a
    label training never saw is one line naming its row and column."""
    rows, labels = _tokens(col, separator)
    idx = positions(pc.index_in(labels, value_set=arrow(target.classes)))
    if (idx < 0).any():
        i = int(np.flatnonzero(idx < 0)[0])
        raise _unseen(source, row_number(first_row, int(rows[i])), name, "label", labels[i].as_py(), target.classes)
    out = np.zeros((len(col), len(target.classes)))
    out[rows, idx] = 1.0
    return out


def _indicator(col, name: str, first_row: RowNumbers, source: str) -> np.ndarray:
    """A multi-label target column as 0/1: booleans or the numbers 0 and 1, else one line."""
    prefix = f"{source}: " if source else ""
    if pa.types.is_boolean(col.type):
        return to_numpy(pc.fill_null(col, False)).astype(np.float64)
    if infer_kind(col.type) == "categorical" and not _numeric_text(col):
        v = next(x for x in string_values(col).to_pylist() if x is not None)
        raise DataError(
            f"{prefix}multi-label target column '{name}' holds {v!r}; each label's column holds 0/1"
            " (or give one column of label sets with data.label_separator)"
        )
    values = numeric_values(col, name, first_row=first_row, source=source)
    bad = ~((values == 0) | (values == 1) | np.isnan(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{prefix}row {row_number(first_row, i)}, column '{name}': {values[i]:g} is not 0 or 1; a multi-label"
            " target holds 0/1 in each label's column"
        )
    return np.nan_to_num(values)


def _numeric_text(col) -> bool:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return False
    try:
        pc.cast(pc.utf8_trim_whitespace(col), pa.float64())
    except pa.ArrowInvalid:
        return False
    return True


def multilabel_target(
    table: pa.Table, names: list[str], separator: str | None, source: str = "", first_row: RowNumbers = 0
) -> Target:
    """The multi-label target of one column of label sets split by ``separator``, or (without
    one) of one 0/1 column per label; its labels checked and listed."""
    prefix = f"{source}: " if source else ""
    if separator is None:
        for n in names:
            _indicator(table.column(n), n, first_row, source)
        why = f"multi-label classification: {len(names)} 0/1 target columns, one per label"
        return Target(list(names), "classification", list(names), why, multilabel=True)
    if len(names) != 1:
        raise DataError(
            f"config error at data.label_separator: label sets come from one target column; got {len(names)}"
            f" ({', '.join(names)})"
        )
    (name,) = names
    _, labels = _tokens(table.column(name), separator)
    classes = sorted(v for v in pc.unique(labels).to_pylist())
    if len(classes) < 2:
        shown = repr(classes[0]) if classes else "none"
        raise DataError(
            f"{prefix}target column '{name}' split by {separator!r} has only one label ({shown});"
            " multi-label classification needs at least 2"
        )
    why = f"multi-label classification: target '{name}' holds label sets split by {separator!r} ({len(classes)} labels)"
    return Target([name], "classification", classes, why, multilabel=True, separator=separator)


def target_missing(table: pa.Table, names: list[str], label_sets: bool = False) -> np.ndarray:
    """Rows where any target cell is missing; with ``label_sets`` (data.label_separator) none
    is: an empty cell is the empty set of labels."""
    mask = np.zeros(table.num_rows, dtype=bool)
    if label_sets:
        return mask
    for n in names:
        mask |= missing_mask(table.column(n))
    return mask


def infer_target(
    table: pa.Table,
    names: list[str],
    task: str | None,
    max_classes: int,
    kinds: dict[str, str] | None = None,
    source: str = "",
    first_row: RowNumbers = 0,
) -> Target:
    """Decide the task from the target column(s), and say why in one line; ``first_row``
    numbers the table's rows in messages."""
    kinds = kinds or {}
    prefix = f"{source}: " if source else ""
    text = [n for n in names if (kinds.get(n) or infer_kind(table.column(n).type)) == "categorical"]
    if len(names) > 1:
        if task == "classification":
            raise DataError(
                f"config error at data.target: {len(names)} target columns make a multi-output regression;"
                " classification takes one target column"
            )
        if text:
            raise DataError(f"{prefix}target column '{text[0]}' is not numeric; multi-output regression needs numbers")
        return Target(list(names), "regression", None, f"regression: {len(names)} target columns (multi-output)")
    (name,) = names
    col = table.column(name)
    if text:
        if task != "classification" and is_text(col.type):
            keep = "set data.task: classification to keep its values as classes"
            refuse_formatted_numbers(col, f"target column '{name}'", first_row, source, keep)
        if task == "regression":
            raise DataError(
                f"{prefix}target column '{name}' is categorical (text or booleans); task: regression needs"
                " numbers (use task: classification, or leave data.task out)"
            )
        classes = sorted(v for v in pc.unique(string_values(col)).to_pylist() if v is not None)
        return _classes(name, classes, f"classification: target '{name}' holds labels ({len(classes)} classes)", prefix)
    values = numeric_values(col, name, first_row=first_row, source=source)
    values = values[~np.isnan(values)]
    distinct = np.unique(values)
    integer = bool(np.all(distinct == np.round(distinct)))
    if task == "regression":
        return Target([name], "regression", None, f"regression: set by data.task (target '{name}')")
    if task == "classification":
        why = f"classification: set by data.task (target '{name}', {len(distinct)} classes)"
    elif not integer:
        return Target(
            [name], "regression", None, f"regression: target '{name}' has non-integer values ({len(distinct)} distinct)"
        )
    elif len(distinct) > max_classes:
        return Target(
            [name],
            "regression",
            None,
            f"regression: target '{name}' has {len(distinct)} distinct numeric values"
            f" (more than data.max_classes {max_classes})",
        )
    else:
        why = (
            f"classification: target '{name}' has {len(distinct)} distinct integer values"
            f" (at most data.max_classes {max_classes})"
        )
    # Numeric order ('2' before '10'), written as string_values writes them.
    classes = string_values(arrow(distinct)).to_pylist()
    return _classes(name, classes, why, prefix)


def _classes(name: str, classes: list[str], why: str, prefix: str) -> Target:
    if not classes:
        raise DataError(f"{prefix}target column '{name}' has no value: every one of its cells is missing")
    if len(classes) < 2:
        shown = repr(classes[0]) if classes else "none"
        raise DataError(f"{prefix}target column '{name}' has only one class ({shown}); classification needs at least 2")
    return Target([name], "classification", classes, why)
