"""A trained model: the network plus what turns raw rows into its inputs and its outputs into
answers (standardisation, class labels), and the metrics it scores on labelled rows; the
``model.npz`` file that stores one is run/model_file.py.

Rows a model cannot score are skipped here, not refused: a row whose target is missing (when
scoring labelled rows), and, for a model trained with ``data.missing: drop_rows``, a row with a
missing feature cell (a value that is not finite, in an array), for which it has no prediction.
``predict_rows`` gives NaN outputs and a mask for them; ``evaluation`` and ``labelled_data``
leave them out; each says how many (``SkippedRows``), for the caller to tell its user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from mlpbp.data import Standardizer
from mlpbp.data.arrow import arrow
from mlpbp.data.preprocessing import Preprocessor
from mlpbp.data.rows import RowNumbers, at, row_number, rows_from, rows_kept
from mlpbp.data.tables import read_table
from mlpbp.data.targets import Target, target_missing
from mlpbp.engine.network import MLP
from mlpbp.errors import DataError
from mlpbp.run.metrics import chunks, compute_metrics, outputs

PREDICT_CHUNK = 65536  # raw rows encoded and run through the network at a time


@dataclass(eq=False)
class SkippedRows:
    """The rows a model does not score, and why: ``mask`` is true for each of them (one entry
    per row given); the two counts add up to its number of true entries."""

    mask: np.ndarray
    missing_target: int = 0  # a target cell is missing (labelled rows only)
    # a feature cell is missing (in an array: a value that is not finite) and the model was
    # trained with data.missing: drop_rows, so it has no prediction for the row
    missing_feature: int = 0

    @property
    def count(self) -> int:
        return self.missing_target + self.missing_feature

    @property
    def kept(self) -> int:
        """The rows that are scored."""
        return self.mask.size - self.count


class Predictions(NamedTuple):
    """An output row for every row given, in order (what ``TrainedModel.predict_rows`` gives)."""

    outputs: np.ndarray  # (rows, outputs) float64: class scores or regression values; NaN rows
    # where the model has no prediction (``TrainedModel.skipped_rows``): one bool per row
    has_prediction: np.ndarray


@dataclass
class Evaluation:
    """Metrics on the rows of a labelled table a model can score (``TrainedModel.evaluation``)."""

    metrics: dict  # what ``evaluate`` returns: loss, accuracy, ... or loss, mse, mae, r2, ...
    rows: int  # the rows scored
    skipped: SkippedRows  # the rows left out, and why
    weight: str | None = None  # the column whose per-row weights weighted every metric (data.weight)


@dataclass
class LabelledRows:
    """A labelled table as the network sees it (``TrainedModel.labelled_data``)."""

    X: np.ndarray  # the inputs, encoded and standardised as in training
    y: np.ndarray  # the targets in the network's units: class indices, or scaled values
    skipped: SkippedRows  # the file's rows left out, and why
    w: np.ndarray | None = None  # the rows' weights (data.weight), None when every row weighs 1


@dataclass
class TrainedModel:
    net: MLP
    preprocessor: Preprocessor | Standardizer  # a Standardizer: every feature numeric (format 1)
    y_scaler: Standardizer | None = None  # regression targets, when standardised
    classes: list[str] | None = None
    feature_names: list[str] = field(default_factory=list)  # the raw columns a table must have
    target_name: str | list[str] = ""
    config: dict = field(default_factory=dict)
    metrics: dict | None = None  # the final metrics of the run that wrote it (None: not recorded)
    written_by: dict | None = None  # {"mlpbp": version, "numpy": version} (None: not recorded)
    id_name: str | None = None
    # multi-label: ``classes`` are the labels, one sigmoid output each, a row's set those above 1/2;
    # label_separator: the one target column's label sets are split by it (None: a 0/1 column per label)
    multilabel: bool = False
    label_separator: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.preprocessor, Standardizer):
            self.preprocessor = Preprocessor.numeric(list(self.feature_names), self.preprocessor)
        if not self.feature_names:
            self.feature_names = self.preprocessor.inputs

    @property
    def task(self) -> str:
        return self.net.task

    @property
    def x_scaler(self) -> Preprocessor:  # the name earlier versions used
        return self.preprocessor

    @property
    def target_names(self) -> list[str]:
        if isinstance(self.target_name, list):
            return self.target_name
        return [self.target_name] if self.target_name else []

    @property
    def output_names(self) -> list[str]:
        """Names of the regression outputs: the target columns (or output_0, ...)."""
        m = self.net.widths[-1]
        names = self.target_names
        return names if len(names) == m else [f"output_{j}" for j in range(m)]

    @property
    def weight_name(self) -> str | None:
        """The column of per-row weights the model was trained with (data.weight), or None."""
        return (self.config.get("data") or {}).get("weight")

    def row_weights(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> np.ndarray | None:
        """The weights of a table's rows, from the model's data.weight column (checked as in
        training); None when the model has none or the table lacks that column (rows weigh 1)."""
        name = self.weight_name
        if name is None or name not in set(table.column_names):
            return None
        from mlpbp.data.columns import weight_values

        return weight_values(table.column(name), name, first_row, source)

    def target(self) -> Target:
        return Target(self.target_names, self.task, self.classes, "", self.multilabel, self.label_separator)

    def label_sets(self, o: np.ndarray) -> list[list[str]]:
        """A multi-label model's predicted label sets: the labels whose sigmoid is above 1/2 (o > 0)."""
        return [[c for c, on in zip(self.classes, row) if on] for row in (o > 0)]

    def skipped_rows(
        self, rows: pa.Table | np.ndarray, first_row: RowNumbers = 0, source: str = "", labelled: bool = False
    ) -> SkippedRows:
        """The rows of ``rows`` the model does not score, found without encoding them: with
        ``labelled``, a table's rows whose target is missing (an absent target column is an
        error); and, when the model was trained with data.missing: drop_rows, rows with a
        missing feature cell (in a table) or a value that is not finite (in an array of the
        network's columns, or the rows of a folder read lazily).

        Other models skip no row for its features: their preprocessing fills or refuses a
        table's missing cells when it encodes them, and a value that is not finite in an array
        is refused here (a DataError naming the row, numbered by ``first_row``, and column)."""
        if not isinstance(rows, pa.Table):
            return self._not_finite(rows, first_row, source)
        names = rows.column_names
        have = set(names)  # linear in the column count
        absent = [c for c in self.preprocessor.inputs if c not in have]
        if absent:
            raise DataError(f"{at(source)}missing feature columns the model was trained on: {', '.join(absent)}")
        gone = np.zeros(rows.num_rows, dtype=bool)
        if labelled:
            absent = [t for t in self.target_names if t not in have]
            if absent:
                raise DataError(f"{at(source)}target column '{absent[0]}' not found (columns: {', '.join(names)})")
            gone = target_missing(rows, self.target_names, self.label_separator is not None)
        holes = np.zeros_like(gone)
        if self.preprocessor.missing == "drop_rows":
            holes = self.preprocessor.incomplete_rows(rows) & ~gone
        return SkippedRows(gone | holes, int(gone.sum()), int(holes.sum()))

    def _not_finite(self, X, first_row: RowNumbers, source: str) -> SkippedRows:
        pre = self.preprocessor
        if len(X.shape) != 2 or X.shape[1] != pre.width:
            raise DataError(f"expected {pre.width} input columns, got an array of shape {X.shape}")
        parts = []
        for which, Xc in chunks(X):  # a folder's rows: a chunk at a time
            bad = ~np.isfinite(Xc).all(axis=1)
            if bad.any() and pre.missing != "drop_rows":
                r = int(np.argmax(bad))
                c = int(np.argmax(~np.isfinite(Xc[r])))
                i = which.start + r if isinstance(which, slice) else int(which[r])
                raise DataError(
                    f"{at(source)}row {row_number(first_row, i)}, column '{pre.feature_names[c]}' is {Xc[r, c]};"
                    " all values must be finite (a model trained with data.missing: drop_rows skips such rows)"
                )
            parts.append(bad)
        mask = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
        return SkippedRows(mask, 0, int(mask.sum()))

    def predict_rows(self, rows: pa.Table | np.ndarray, first_row: RowNumbers = 0, source: str = "") -> Predictions:
        """Outputs for raw rows (a table with the training columns, or a numeric array of the
        network's input columns before standardisation: the raw columns themselves when all are
        numeric), one row per row given: class scores, or regression values in the target's
        units. A row the model has no prediction for (``skipped_rows``: a missing feature cell
        under data.missing: drop_rows) gets NaN outputs and ``has_prediction`` false.
        ``first_row`` numbers the rows in messages (``RowNumbers``), ``source`` names the file."""
        skip = self.skipped_rows(rows, first_row, source).mask
        if skip.any():
            kept = rows.filter(arrow(~skip)) if isinstance(rows, pa.Table) else rows[~skip]
            o = np.full((len(skip), self.net.widths[-1]), np.nan)
            o[~skip] = self._outputs(kept, rows_kept(first_row, ~skip), source)
            return Predictions(o, ~skip)
        return Predictions(self._outputs(rows, first_row, source), ~skip)

    def predict_outputs(self, rows: pa.Table | np.ndarray, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
        """Outputs for raw rows: ``predict_rows(rows, first_row, source).outputs`` (NaN in the
        rows a model trained with data.missing: drop_rows has no prediction for)."""
        return self.predict_rows(rows, first_row, source).outputs

    def _outputs(self, rows: pa.Table | np.ndarray, first_row: RowNumbers, source: str) -> np.ndarray:
        pre, parts = self.preprocessor, []
        if isinstance(rows, np.ndarray):  # the network's columns, unscaled (what inverse_transform gives)
            parts.append(outputs(self.net, pre.encode_array(rows)).astype(np.float64))
        for start in range(0, 0 if isinstance(rows, np.ndarray) else rows.num_rows, PREDICT_CHUNK):
            X = pre.transform(
                rows.slice(start, PREDICT_CHUNK), np.float64, rows_from(first_row, start), source, fits=self.net.dtype
            )
            parts.append(outputs(self.net, X).astype(np.float64))
        o = np.concatenate(parts) if parts else np.empty((0, self.net.widths[-1]))
        if self.task == "regression" and self.y_scaler is not None:
            o = self.y_scaler.inverse_transform(o)
        return o

    def encode_targets(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> np.ndarray:
        """The target columns of raw rows, in the network's units; unknown classes are an error."""
        y = self.target().encode(table, first_row, source)
        if self.task == "regression" and self.y_scaler is not None:
            y = self.y_scaler.transform(y)
        return y

    def _scorable(
        self, table: pa.Table, first_row: RowNumbers, source: str, skipped: SkippedRows | None = None
    ) -> tuple[pa.Table, RowNumbers, SkippedRows]:
        """The rows of a labelled table that are scored, their numbers, and those skipped
        (``skipped``: what ``skipped_rows(..., labelled=True)`` gave, when the caller has it);
        no row left is an error."""
        s = self.skipped_rows(table, first_row, source, labelled=True) if skipped is None else skipped
        if s.missing_target == table.num_rows:
            raise DataError(
                f"{at(source)}no rows with a target value ({', '.join(self.target_names)} empty in every row)"
            )
        if not s.kept:
            raise DataError(
                f"{at(source)}every row has a missing feature cell, and the model was trained with"
                " data.missing: drop_rows (it predicts nothing for such rows); no rows left to evaluate"
            )
        if not s.count:
            return table, first_row, s
        return table.filter(arrow(~s.mask)), rows_kept(first_row, ~s.mask), s

    def labelled_data(self, path: str | Path) -> LabelledRows:
        """A labelled table as the network sees it: the model's feature columns (by name)
        encoded as in training, and its targets encoded (class indices, or scaled values), as
        ``evaluation`` reads them: without the rows whose target is missing, nor, for a model
        trained with data.missing: drop_rows, those with a missing feature cell (``skipped``
        counts them); a DataError when no row is left."""
        raw = read_table(path)
        table, rows, skipped = self._scorable(raw.table, raw.first_row, str(path))
        X = self.preprocessor.transform(table, np.float64, rows, str(path))  # features first
        w = self.row_weights(table, rows, str(path))
        return LabelledRows(X, self.encode_targets(table, rows, str(path)), skipped, w)

    def _metrics(self, X, y: np.ndarray, w: np.ndarray | None = None) -> dict:
        return compute_metrics(
            self.net, X, y, self.y_scaler, classes=self.classes, names=self.output_names, sample_weight=w
        )

    def labelled_rows(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of ``labelled_data(path)``: the rows it scores, encoded."""
        data = self.labelled_data(path)
        return data.X, data.y

    def evaluation(
        self, table: pa.Table, first_row: RowNumbers = 0, source: str = "", skipped: SkippedRows | None = None
    ) -> Evaluation:
        """Metrics on the rows of a labelled table the model can score, leaving out (and
        counting, as ``skipped_rows(..., labelled=True)`` does) the rows whose target is missing
        and, for a model trained with data.missing: drop_rows, those with a missing feature
        cell; a DataError when no row is left. ``skipped``: what that call gave, when the
        caller has it already."""
        table, first_row, s = self._scorable(table, first_row, source, skipped)
        w = self.row_weights(table, first_row, source)
        y = self.encode_targets(table, first_row, source)
        X = self.preprocessor.transform(table, np.float64, first_row, source, fits=self.net.dtype)
        return Evaluation(self._metrics(X, y, w), table.num_rows, s, self.weight_name if w is not None else None)

    def evaluate(self, table: pa.Table, first_row: RowNumbers = 0, source: str = "") -> dict:
        """The metrics of ``evaluation(table, first_row, source)``."""
        return self.evaluation(table, first_row, source).metrics

    def _class_index(self):
        """label -> class index, or None; integer labels may be written as "3" or "3.0"."""
        index = {c: i for i, c in enumerate(self.classes)}
        norm = {_norm_label(c): i for i, c in enumerate(self.classes)}
        return lambda v: index.get(v.strip(), norm.get(_norm_label(v)))

    def _unknown_class(self, where, v: str) -> str:
        return f"{where}: class {v!r} was not seen in training (known: {', '.join(self.classes)})"

    def encode_target_array(self, y: np.ndarray) -> np.ndarray:
        """Targets stored as an array (an .npy file, a Parquet column), in the network's units:
        each distinct value is encoded once, so millions of rows cost no Python loop."""
        if self.multilabel:
            raise DataError(
                "a multi-label model scores label sets from a table (CSV, Parquet), not a folder's target array"
            )
        if self.task == "classification":
            values, inverse = np.unique(y.reshape(-1), return_inverse=True)
            find = self._class_index()
            codes = [find(str(v)) for v in values]
            for v, i in zip(values, codes):
                if i is None:
                    raise DataError(self._unknown_class(f"target {int(np.flatnonzero(y.reshape(-1) == v)[0])}", str(v)))
            codes = np.asarray(codes, dtype=np.int64)
            return codes[inverse]
        y = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
        if not np.isfinite(y).all():
            bad = int(np.flatnonzero(~np.isfinite(y).all(axis=1))[0])
            raise DataError(f"target {bad} is not a finite number (a regression model needs numeric targets)")
        return self.y_scaler.transform(y) if self.y_scaler is not None else y

    def array_evaluation(
        self,
        X_raw,
        y_raw: np.ndarray,
        source: str = "",
        skipped: SkippedRows | None = None,
        w: np.ndarray | None = None,
    ) -> Evaluation:
        """Metrics on rows read lazily (a folder of .npy or Parquet files: numeric columns) and
        their target array, leaving out (and counting) the rows with a value that is not finite
        when the model was trained with data.missing: drop_rows (another model refuses them);
        a DataError when no row is left. ``skipped``: what ``skipped_rows(X_raw, 0, source)``
        gave, when the caller has it already (it reads every row). ``w``: the rows' weights
        (data.weight), which then weight every metric."""
        s = self.skipped_rows(X_raw, 0, source) if skipped is None else skipped
        if s.mask.shape != (X_raw.shape[0],):
            raise DataError(f"skipped rows: {s.mask.shape[0]} rows for a table of {X_raw.shape[0]}")
        if not s.kept:
            raise DataError(f"{at(source)}every row has a value that is not finite; nothing to evaluate")
        if s.count:
            keep = np.flatnonzero(~s.mask)
            X_raw, y_raw = X_raw[keep], y_raw[keep]
            w = None if w is None else w[keep]
        try:
            y = self.encode_target_array(y_raw)
            X = X_raw.transformed(Standardizer(self.preprocessor.mean, self.preprocessor.scale), self.net.dtype)
            metrics = self._metrics(X, y, w)
        except DataError as e:
            raise DataError(f"{at(source)}{e}") from None
        return Evaluation(metrics, X_raw.shape[0], s, self.weight_name if w is not None else None)

    def evaluate_arrays(self, X_raw, y_raw: np.ndarray) -> dict:
        """The metrics of ``array_evaluation(X_raw, y_raw)``."""
        return self.array_evaluation(X_raw, y_raw).metrics


def _norm_label(v: str) -> str:
    v = v.strip()
    try:
        f = float(v)
    except ValueError:
        return v
    return str(int(f)) if f.is_integer() else v
