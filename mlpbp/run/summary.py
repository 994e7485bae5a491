"""What the network will see of a table, before any training: the typed result of ``prepare``
that `mlpbp data` (and the opening lines of `mlpbp train`) show; ``mlpbp data --json`` is its
JSON form."""

from __future__ import annotations

from dataclasses import dataclass

from mlpbp.results import Result, asked, present


@dataclass
class ColumnSummary(Result):
    name: str
    role: str  # feature, target, id or dropped
    type: str  # the Arrow type it was read as
    missing: int  # missing cells
    kind: str  # numeric, categorical, date, time, datetime; drop for a dropped column, - for the id
    categories: list[str] | None = asked()  # a categorical feature's levels
    min: object = present()  # a numeric or date column's range (None: no value)
    max: object = present()


@dataclass
class ClassCount(Result):
    label: str
    count: int  # rows of the class, after rows were dropped
    weight: float | None = asked()  # with train.class_weight


@dataclass
class DataSummary(Result):
    path: str
    rows: int  # rows read
    rows_used: int  # rows kept (a missing target, or drop_rows, drops some)
    task: str
    why: str  # how the task was decided
    targets: list[str]
    id: str | None
    input_width: int  # the network's inputs, after one-hot encoding
    columns: list[ColumnSummary]
    notes: list[str]
    classes: list[ClassCount] | None = asked()  # a classification task's classes
    weight: str | None = asked()  # data.weight's column
    multilabel: bool | None = asked()  # a multi-label target: classes count the rows of each label
