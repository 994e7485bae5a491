"""Target columns: the task they make (inferred out loud, or given), class labels, and encoding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data.arrow import arrow, missing_mask, positions
from mlpbp.data.columns import infer_kind, numeric_values, string_values
from mlpbp.data.rows import RowNumbers, row_number
from mlpbp.errors import DataError


@dataclass
class Target:
    names: list[str]
    task: str  # classification | regression
    classes: list[str] | None  # classification: labels in index order
    why: str  # one line: the task and what decided it

    def encode(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
        """Class indices (n,) int64, or regression values (n, m) float64; every cell must have a
        value (drop rows with missing targets first: ``target_missing``)."""
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
            prefix = f"{source}: " if source else ""
            raise DataError(
                f"{prefix}row {row_number(first_row, i)}, column '{name}': class {labels[i].as_py()!r} was not seen in"
                f" training (known: {', '.join(self.classes)})"
            )
        return idx.astype(np.int64)


def target_missing(table: pa.Table, names: list[str]) -> np.ndarray:
    """Rows where any target cell is missing."""
    mask = np.zeros(table.num_rows, dtype=bool)
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
    if len(classes) < 2:
        shown = repr(classes[0]) if classes else "none"
        raise DataError(f"{prefix}target column '{name}' has only one class ({shown}); classification needs at least 2")
    return Target([name], "classification", classes, why)
