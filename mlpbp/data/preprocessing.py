"""Preprocessing fitted on the training split and stored with the model."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data.arrow import arrow, missing_mask, positions, to_numpy
from mlpbp.data.cells import DAY_S, NA_VALUES, TIME_OF_DAY_NAMES, null_tokens, seconds, time_features
from mlpbp.data.columns import (
    column_batches,
    infer_kind,
    is_plain_numeric,
    numeric_block,
    numeric_values,
    string_values,
)
from mlpbp.data.rows import RowNumbers, at, cell_error, row_number, rows_from, short_list
from mlpbp.data.transforms import (
    PLE_BINS,
    PiecewiseLinear,
    Transform,
    choose,
    choose_many,
    more_linear_raw,
    robust_center_scale,
    signed_log1p,
)
from mlpbp.errors import DataError


@dataclass
class Moments:
    """Row count, per-column mean and sum of squared deviations; two merge exactly as if their
    rows had been together (Chan, Golub & LeVeque), so chunks and MPI ranks can each add theirs."""

    n: int = 0
    mean: np.ndarray | float = 0.0
    m2: np.ndarray | float = 0.0

    @classmethod
    def of(cls, X: np.ndarray) -> Moments:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] == 0:
            return cls()
        mean = X.mean(axis=0)
        return cls(X.shape[0], mean, np.sum((X - mean) ** 2, axis=0))

    def merge(self, other: Moments) -> Moments:
        if not self.n or not other.n:
            return other if not self.n else self
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(n, self.mean + delta * (other.n / n), self.m2 + other.m2 + delta**2 * (self.n * other.n / n))


class Standardizer:
    """Per-column (x - mean) / scale, fitted on the training split only."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        # Both None until fit(); or pass stored arrays (e.g. from model.npz) directly.
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)

    @classmethod
    def identity(cls, d: int) -> Standardizer:
        return cls(np.zeros(d), np.ones(d))

    def fit(self, X: np.ndarray) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise DataError(f"cannot standardize: need a non-empty 2-D array, got shape {X.shape}")
        return self._set(X.mean(axis=0), X.std(axis=0))

    @classmethod
    def from_moments(cls, m: Moments) -> Standardizer:
        """Fitted from moments gathered a chunk at a time (rows that never all sit in memory)."""
        return cls()._set(np.asarray(m.mean, np.float64), np.sqrt(np.asarray(m.m2, np.float64) / m.n))

    def _set(self, mean: np.ndarray, std: np.ndarray) -> Standardizer:
        self.mean = mean
        # A constant column (std 0, or float round-off of 0) would divide by ~0; leave it unscaled.
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1.0)
        self.scale = np.where(std > tiny, std, 1.0)
        return self

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.mean is None:
            raise RuntimeError("Standardizer used before fit()")
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise DataError(f"expected {self.mean.shape[0]} feature columns, got an array of shape {X.shape}")
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self._check(X) - self.mean) / self.scale

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        return self._check(X) * self.scale + self.mean


# ---------------------------------------------------------------------------------------------
# Tables: columns of any kind into one matrix of numbers (each column read by data/columns.py)

KINDS = ("numeric", "categorical", "date", "time", "datetime", "drop")
MISSING = ("error", "drop_rows", "impute")
UNKNOWN = ("error", "ignore", "infrequent")
ENCODINGS = ("onehot", "embedding", "auto")  # data.categorical
# data.categorical: auto one-hot-encodes a column of at most this many levels (after rare
# categories share the infrequent level) and embeds a column of more
AUTO_ONEHOT_LEVELS = 16
MISSING_CATEGORY = "missing"  # what `missing: impute` files a missing category cell under
INFREQUENT = "infrequent"  # the level categories rarer than data.min_frequency share
CHUNK_ROWS = 65536  # rows encoded at a time: bounds the float64 scratch whatever the table's size
_WIDTHS = {"time": 4, "datetime": 5}  # time of day: 2 cyclic pairs; datetime: days, then those


def shown_value(value: float, kind: str) -> str:
    """A numeric, date or time column's value (days, or seconds) as a user writes it."""
    import datetime as dt

    if kind == "date":
        return (dt.date(1970, 1, 1) + dt.timedelta(days=round(value))).isoformat()
    if kind == "datetime":
        return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=round(value))).isoformat(sep=" ")
    if kind == "time":
        s = round(value) % 86400
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{value:.6g}"


@dataclass
class Column:
    name: str
    kind: str  # numeric | categorical | date | time | datetime
    categories: list[str] | None = None  # categorical: the one-hot columns, sorted (the infrequent level last)
    # numeric/date under `missing: impute`: the training median (days for a date; seconds for
    # a time or datetime)
    fill: float | None = None
    transform: Transform | None = None  # numeric: applied before (x - mean) / scale; None: standardize
    format: str | None = None  # date/time/datetime written as text: the strptime format
    infrequent: str | None = None  # categorical: the level rare categories share (in categories)
    rare: list[str] = field(default_factory=list)  # categorical: the training categories merged into it
    # categorical, data.categorical: embedding: one input column holding the level's code (its
    # index in categories; len(categories), the embedding's reserved row, for an unseen one),
    # read by an embedding of `dim` columns
    encoding: str | None = None
    dim: int | None = None
    ple: PiecewiseLinear | None = None  # numeric, data.numeric: ple: one column per bin instead of one
    # numeric, data.numeric: periodic: {"frequencies": k, "sigma": σ} of the network's periodic
    # embedding of this (transformed, standardised) column; ``dim``: the width of the linear +
    # ReLU after it (None: the sines and cosines go to the hidden layers as they are)
    periodic: dict | None = None

    @property
    def embedded(self) -> bool:
        return self.encoding == "embedding"

    @property
    def filled_with(self) -> str:
        """What ``missing: impute`` puts in this column's missing cells, in words."""
        if self.kind == "categorical":
            return f"filed under the category '{MISSING_CATEGORY}'"
        return f"filled with the training median {shown_value(self.fill, self.kind)}"

    @property
    def width(self) -> int:
        if self.kind == "categorical":
            return 1 if self.embedded else len(self.categories)
        if self.ple is not None:
            return self.ple.width
        return _WIDTHS.get(self.kind, 1)

    @property
    def output_names(self) -> list[str]:
        if self.embedded:
            return [self.name]
        if self.kind == "categorical":
            return [f"{self.name}={c}" for c in self.categories]
        if self.ple is not None:
            return [f"{self.name}.ple{t}" for t in range(1, self.ple.width + 1)]
        cyclic = [f"{self.name}.{p}" for p in TIME_OF_DAY_NAMES]
        return {"time": cyclic, "datetime": [f"{self.name}.days", *cyclic]}.get(self.kind, [self.name])

    def to_meta(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "categories": self.categories, "fill": self.fill}
        # keys only where set, so a model without them writes exactly what 0.2 wrote
        if self.transform is not None and not self.transform.kind == "standardize":
            out["transform"] = self.transform.to_meta()
        if self.format is not None:
            out["format"] = self.format
        if self.infrequent is not None:
            out["infrequent"], out["rare"] = self.infrequent, self.rare
        if self.embedded:
            out["encoding"], out["dim"] = self.encoding, self.dim
        if self.ple is not None:
            out["ple"] = self.ple.to_meta()
            if self.dim is not None:
                out["dim"] = self.dim
        if self.periodic is not None:
            out["periodic"] = dict(self.periodic)
            if self.dim is not None:
                out["dim"] = self.dim
        return out


class Preprocessor:
    """Raw columns in, the network's input matrix out: numeric columns (and dates, as days since
    1970-01-01) transformed and standardised, times of day as cyclic pairs, categorical ones
    one-hot (rare categories sharing one level), missing cells filled or refused.

    Fitted on the training rows only; ``transform`` then takes any rows of a table with these
    columns (a whole file, or one chunk at a time from a streaming reader)."""

    def __init__(
        self,
        columns: list[Column],
        mean: np.ndarray,
        scale: np.ndarray,
        missing: str = "error",
        handle_unknown: str = "error",
        na_values: list[str] | None = None,
    ) -> None:
        self.columns, self.missing, self.handle_unknown = columns, missing, handle_unknown
        # the user's missing-value tokens, besides pandas' list (None: a model from before
        # data.na_values, which reads cells as pyarrow's reader does)
        self.na_values = None if na_values is None else list(na_values)
        self._tokens = None if na_values is None else NA_TOKENS | frozenset(na_values)
        # a column's name as the training file's header wrote it, where the reader stripped
        # spaces around it (" age " for age): the name an exported graph gives its input
        self.header: dict[str, str] = {}
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.offsets = np.cumsum([0] + [c.width for c in columns]).tolist()
        if self.mean.shape != (self.width,) or self.scale.shape != (self.width,):
            raise DataError(f"preprocessing: expected {self.width} means and scales, got {self.mean.shape}")

    @classmethod
    def numeric(cls, names: list[str], scaler: Standardizer) -> Preprocessor:
        """Every column numeric, standardised by ``scaler`` (what model files of format 1 hold)."""
        return cls([Column(n, "numeric") for n in names], scaler.mean, scaler.scale)

    @property
    def width(self) -> int:
        return self.offsets[-1]  # the columns' widths, summed once (a wide table asks often)

    @property
    def inputs(self) -> list[str]:
        """The raw columns a table must have."""
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        """The network's input columns, after one-hot encoding."""
        return [n for c in self.columns for n in c.output_names]

    @property
    def embeddings(self) -> list[tuple[int, int, int]]:
        """Per embedded categorical column: (its input column, its levels, the embedding's width)."""
        return [(off, len(c.categories), c.dim) for c, off in zip(self.columns, self.offsets) if c.embedded]

    @property
    def ple_embeddings(self) -> list[tuple[list[int], int]]:
        """Per piecewise-linear column with a learned embedding (data.ple_embedding): (its input
        columns, the embedding's width)."""
        return [
            (list(range(off, off + c.width)), c.dim)
            for c, off in zip(self.columns, self.offsets)
            if c.ple is not None and c.dim is not None
        ]

    @property
    def periodic_embeddings(self) -> list[tuple[int, int, float, int | None]]:
        """Per column with a periodic embedding (data.numeric: periodic): (its input column, the
        frequencies k, their initial standard deviation σ, the width of the linear + ReLU after
        the 2k sines and cosines; None: none)."""
        return [
            (off, c.periodic["frequencies"], c.periodic["sigma"], c.dim)
            for c, off in zip(self.columns, self.offsets)
            if c.periodic is not None
        ]

    @property
    def plain_columns(self) -> list[int]:
        """The input columns the network reads as they are (all but the embedded codes, the
        columns of embedded piecewise-linear encodings and the periodic columns)."""
        taken = {off for off, _, _ in self.embeddings} | {j for cols, _ in self.ple_embeddings for j in cols}
        taken |= {off for off, _, _, _ in self.periodic_embeddings}
        return [j for j in range(self.width) if j not in taken]

    @property
    def encoded_width(self) -> int:
        """The width the first hidden layer sees: plain columns plus every embedding's width."""
        dims = [dim for _, _, dim in self.embeddings] + [dim for _, dim in self.ple_embeddings]
        dims += [2 * k if dim is None else dim for _, k, _, dim in self.periodic_embeddings]
        return len(self.plain_columns) + sum(dims)

    # ---- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        table: pa.Table,
        features: list[str],
        rows: np.ndarray,
        kinds: dict[str, str] | None = None,
        missing: str = "error",
        handle_unknown: str = "error",
        max_categories: int = 50,
        standardize: bool = True,
        source: str = "",
        first_row: RowNumbers = 0,
        formats: dict[str, str] | None = None,
        numeric: str | dict[str, str] = "standardize",
        min_frequency: int = 1,
        na_values: list[str] | None = None,
        categorical: str | dict[str, str] = "onehot",
        embedding_dim: int | dict[str, int] | None = None,
        ple_bins: int = PLE_BINS,
        ple_embedding: int | None = None,
        periodic: dict | None = None,
        target: np.ndarray | None = None,
    ) -> Preprocessor:
        """Fit on the rows ``rows`` of ``table`` (the training split); ``first_row`` numbers
        the table's rows in messages. ``formats``: the strptime format of each date or time
        column written as text; ``numeric``: data.numeric (a transform, or one per column);
        ``min_frequency``: categories with fewer training rows share the infrequent level;
        ``categorical``: data.categorical (onehot, embedding or auto; or one per column) and
        ``embedding_dim``: an embedding's width (one for all, or per column; None: the size rule);
        ``ple_bins``: the quantile bins of a column whose data.numeric is ple, and
        ``ple_embedding``: the width of the learned embedding of each such column (None: none);
        ``periodic``: for a column whose data.numeric is periodic, {"frequencies": k, "sigma": σ,
        "dim": the width of the linear + ReLU after it, or None}; ``target``: the training
        rows' target (a regression target as the network fits it, rows × outputs; or class
        codes), with which auto standardises a skewed column the target is more linear in than
        in its log1p (``more_linear_raw``)."""
        kinds, formats = kinds or {}, formats or {}
        columns, means, scales = [], [], []
        types = dict(zip(table.schema.names, table.schema.types))

        # Plain numeric columns (integers, floats) are fitted a block of many columns at a time.
        def how_of(n: str) -> str:
            return numeric.get(n, "auto") if isinstance(numeric, dict) else numeric

        plain = [  # (a ple column has many columns of its own: fitted alone)
            n
            for n in features
            if (kinds.get(n) or infer_kind(types[n])) == "numeric"
            and not formats.get(n)
            and is_plain_numeric(types[n])
            and how_of(n) not in ("ple", "periodic")
        ]
        fitted: dict[str, tuple[Column, np.ndarray, np.ndarray]] = {}
        for batch in column_batches(table.num_rows, plain):
            fitted.update(
                _fit_numeric_block(table, batch, rows, missing, numeric, standardize, first_row, source, target)
            )
        for name in features:
            if name in fitted:
                col, mean, scale = fitted.pop(name)
                columns.append(col)
                means.append(mean)
                scales.append(scale)
                continue
            arr = table.column(name)
            kind = kinds.get(name) or infer_kind(arr.type)
            if kind in ("numeric", "date"):
                if formats.get(name):
                    v = seconds(arr, name, kind, formats[name], first_row, source)[rows] / DAY_S
                else:
                    v = numeric_values(arr, name, kind, first_row, source)[rows]
                fill = None
                if missing == "impute":
                    fill = float(np.nanmedian(v)) if not np.isnan(v).all() else 0.0
                    v = np.where(np.isnan(v), fill, v)
                how = (
                    (numeric.get(name, "auto") if isinstance(numeric, dict) else numeric)
                    if kind == "numeric"
                    else "standardize"
                )
                if not standardize and how in ("auto", "standardize"):  # numbers as they are
                    how = "none"
                if how == "auto":
                    how = choose(v)
                    if how == "log1p" and target is not None and more_linear_raw(v, target):
                        how = "standardize"
                if how == "ple":
                    ple = PiecewiseLinear.fit(v, ple_bins)
                    columns.append(Column(name, kind, fill=fill, ple=ple, dim=ple_embedding))
                    means.append(np.zeros(ple.width))  # in [0, 1] on the training range
                    scales.append(np.ones(ple.width))
                    continue
                if how == "periodic":  # the column's auto transform, standardised; the network embeds it
                    p = dict(periodic or {})
                    dim = p.pop("dim", None)
                    base = choose(v) if standardize else "none"
                    if base == "log1p" and target is not None and more_linear_raw(v, target):
                        base = "standardize"
                    col, mean, scale = _fit_numeric(name, kind, v, fill, base, formats.get(name))
                    col.periodic, col.dim = p, dim
                else:
                    col, mean, scale = _fit_numeric(name, kind, v, fill, how, formats.get(name))
                means.append(mean)
                scales.append(scale)
            elif kind in ("time", "datetime"):
                s = seconds(arr, name, kind, formats.get(name), first_row, source)[rows]
                fill = None
                if missing == "impute":
                    fill = float(np.nanmedian(s)) if not np.isnan(s).all() else 0.0
                    s = np.where(np.isnan(s), fill, s)
                col = Column(name, kind, fill=fill, format=formats.get(name))
                mean, scale = np.zeros(col.width), np.ones(col.width)  # the cyclic pairs stay in [-1, 1]
                if kind == "datetime":
                    days = s[~np.isnan(s)] / DAY_S
                    st = Standardizer().fit(days[:, None] if days.size else np.zeros((1, 1)))
                    if standardize:
                        mean[0], scale[0] = st.mean[0], st.scale[0]
                means.append(mean)
                scales.append(scale)
            elif kind == "categorical":
                how = categorical.get(name, "auto") if isinstance(categorical, dict) else categorical
                dim = embedding_dim.get(name) if isinstance(embedding_dim, dict) else embedding_dim
                col = _fit_categories(arr, name, rows, missing, max_categories, min_frequency, source, how, dim)
                means.append(np.zeros(col.width))  # one-hot columns stay 0/1, codes as they are
                scales.append(np.ones(col.width))
            else:
                raise DataError(f"unknown column kind {kind!r} for '{name}' (allowed: {', '.join(KINDS)})")
            columns.append(col)
        mean = np.concatenate(means) if means else np.zeros(0)
        scale = np.concatenate(scales) if scales else np.zeros(0)
        return cls(columns, mean, scale, missing, handle_unknown, na_values)

    # ---- applying --------------------------------------------------------------------------
    def _blocked(self, table: pa.Table) -> list[tuple[int, Column, int]]:
        """(position, column, offset) of the numeric columns ``table`` holds as plain numbers:
        encoded a block of many columns at a time (a ple column, many columns wide, on its own)."""
        types = dict(zip(table.schema.names, table.schema.types))
        return [
            (i, col, off)
            for i, (col, off) in enumerate(zip(self.columns, self.offsets))
            if col.kind == "numeric" and col.format is None and col.ple is None and is_plain_numeric(types[col.name])
        ]

    def _encode_block(self, part: pa.Table, planned, block: np.ndarray, first_row: RowNumbers, source: str) -> None:
        """``_encode`` of the plain numeric columns ``planned`` (``_blocked``), a block at a time."""
        for batch in column_batches(part.num_rows, planned):
            names = [col.name for _, col, _ in batch]
            V = numeric_block(part, names, first_row, source)
            holes = np.isnan(V)
            if holes.any():
                fills = np.array([np.nan if col.fill is None else col.fill for _, col, _ in batch])
                unfilled = holes.any(axis=0) & np.isnan(fills)
                if unfilled.any():
                    j = int(np.argmax(unfilled))
                    raise self._missing_error(names[j], holes[:, j], first_row, source)
                V = np.where(holes, fills, V)
            logs = [
                j for j, (_, col, _) in enumerate(batch) if col.transform is not None and col.transform.kind == "log1p"
            ]
            if logs:
                V[:, logs] = signed_log1p(V[:, logs])
            for j, (_, col, _) in enumerate(batch):
                t = col.transform
                if t is not None and not t.is_identity and t.kind != "log1p":
                    V[:, j] = t.forward(V[:, j])
            block[:, [off for _, _, off in batch]] = V

    def transform(
        self,
        table: pa.Table,
        dtype=np.float64,
        first_row: RowNumbers = 0,
        source: str = "",
        unknown: str | None = None,
        fits: np.dtype | str | None = None,
    ) -> np.ndarray:
        """The network's inputs for every row of ``table``; ``first_row`` numbers its rows in
        messages (a chunk's offset in its file, or each row's number: ``RowNumbers``).
        ``unknown`` overrides handle_unknown (training encodes its own validation and test rows
        with the policy it noted). ``fits``: the dtype the network computes in; a standardised value
        beyond its range (1e39 in float32) is refused, naming the cell, rather than becoming inf."""
        names = set(table.column_names)  # a set, once: 100,000 columns must stay linear
        absent = [c for c in self.inputs if c not in names]
        if absent:
            raise DataError(f"{at(source)}missing feature columns the model was trained on: {', '.join(absent)}")
        n = table.num_rows
        out = np.empty((n, self.width), dtype=dtype)
        planned = self._blocked(table)
        skip = {i for i, _, _ in planned}
        for start in range(0, n, CHUNK_ROWS):
            part = table.slice(start, CHUNK_ROWS)
            block = np.zeros((part.num_rows, self.width))
            self._encode_block(part, planned, block, rows_from(first_row, start), source)
            for i, (col, off) in enumerate(zip(self.columns, self.offsets)):
                if i in skip:
                    continue
                arr = self.cells(part.column(col.name))
                self._encode(col, arr, block, off, rows_from(first_row, start), source, unknown)
            block -= self.mean
            block /= self.scale
            if fits is not None:
                self._check_range(block, np.dtype(fits), rows_from(first_row, start), source)
            out[start : start + part.num_rows] = block
        return out

    def _check_range(self, block: np.ndarray, dtype: np.dtype, first_row: RowNumbers, source: str) -> None:
        if dtype.kind != "f" or dtype.itemsize >= block.dtype.itemsize:
            return
        top = float(np.finfo(dtype).max)
        if np.abs(block).max(initial=0.0) <= top:
            return
        r, c = np.argwhere(np.abs(block) > top)[0]
        value = block[r, c] * self.scale[c] + self.mean[c]
        raise cell_error(
            source,
            row_number(first_row, int(r)),
            self.feature_names[c],
            f"{float(value)!r} is beyond the range of the model's {dtype} (largest {top:.3g} after standardising)",
        )

    def cells(self, arr):
        """A raw column with the user's missing-value tokens (data.na_values) made missing."""
        return arr if self._tokens is None else null_tokens(arr, self._tokens)

    def _encode(
        self,
        col: Column,
        arr,
        block: np.ndarray,
        off: int,
        first_row: RowNumbers,
        source: str,
        unknown_policy: str | None,
    ) -> None:
        if col.kind in ("numeric", "date"):
            if col.format is not None:
                v = seconds(arr, col.name, col.kind, col.format, first_row, source) / DAY_S
            else:
                v = numeric_values(arr, col.name, col.kind, first_row, source)
            holes = np.isnan(v)
            if holes.any():
                if col.fill is None:
                    raise self._missing_error(col.name, holes, first_row, source)
                v = np.where(holes, col.fill, v)  # v may be a read-only view of the table
            if col.ple is not None:
                block[:, off : off + col.ple.width] = col.ple.encode(v)
            else:
                block[:, off] = v if col.transform is None else col.transform.forward(v)
            return
        if col.kind in ("time", "datetime"):
            s = seconds(arr, col.name, col.kind, col.format, first_row, source)
            holes = np.isnan(s)
            if holes.any():
                if col.fill is None:
                    raise self._missing_error(col.name, holes, first_row, source)
                s = np.where(holes, col.fill, s)
            if col.kind == "datetime":
                block[:, off] = s / DAY_S
                off += 1
            block[:, off : off + 4] = time_features(np.mod(s, DAY_S))
            return
        s = string_values(arr)
        nulls = s.null_count
        if nulls:
            if self.missing != "impute":
                raise self._missing_error(col.name, missing_mask(s), first_row, source)
            holes = missing_mask(s)
            s = pc.fill_null(s, arrow([MISSING_CATEGORY])[0])
        idx = positions(pc.index_in(s, value_set=arrow(col.categories + col.rare)))
        if col.rare:  # a rare training category: the infrequent level
            idx[idx >= len(col.categories)] = col.categories.index(col.infrequent)
        unknown = idx < 0
        policy = unknown_policy or self.handle_unknown
        if unknown.any() and policy == "error":
            i = int(np.flatnonzero(unknown)[0])
            value = s[i].as_py() if isinstance(s, pa.Array) else s.take([i])[0].as_py()
            known = short_list(col.categories)
            what = (
                "a missing cell, and the training split had none in this column"
                f" (no 'missing' category; known: {known})"
                if nulls and holes[i]
                else f"category {value!r} was not seen in training (known: {known})"
            )
            raise cell_error(
                source,
                row_number(first_row, i),
                col.name,
                f"{what}; train with data.handle_unknown: ignore (all zeros) or infrequent to encode unseen categories",
            )
        if unknown.any() and policy == "infrequent" and col.infrequent is not None:
            idx[unknown] = col.categories.index(col.infrequent)
            unknown[:] = False
        if col.embedded:  # the level's code; an unseen one: the embedding's reserved row
            idx[unknown] = len(col.categories)
            block[:, off] = idx
            return
        rows = np.flatnonzero(~unknown)
        block[rows, off + idx[rows]] = 1.0

    def incomplete_rows(self, table: pa.Table) -> np.ndarray:
        """Rows of ``table`` with a missing cell in any input column: those training dropped
        under data.missing: drop_rows."""
        mask = np.zeros(table.num_rows, dtype=bool)
        for name in self.inputs:
            mask |= missing_mask(self.cells(table.column(name)))
        return mask

    def unseen_categories(self, table: pa.Table) -> list[tuple[Column, np.ndarray, str | None]]:
        """Per categorical column, the rows of ``table`` whose category is not one of the
        column's (the training split's, its rare ones included): (the column, row indices, the
        first such value; None when it is a missing cell filed under the 'missing' category,
        which training never saw)."""
        found = []
        for col in self.columns:
            if col.kind != "categorical":
                continue
            known = arrow(col.categories + col.rare)
            # a missing cell is a category only when imputed and training had none (refused or
            # dropped otherwise)
            holes_unknown = self.missing == "impute" and MISSING_CATEGORY not in col.categories + col.rare
            where, first = [], None
            for start in range(0, table.num_rows, CHUNK_ROWS):  # a chunk at a time, as transform
                s = string_values(self.cells(table.column(col.name).slice(start, CHUNK_ROWS)))
                holes = missing_mask(s)
                unknown = ~to_numpy(pc.is_in(s, value_set=known)).astype(bool)
                if not holes_unknown:
                    unknown &= ~holes
                rows = np.flatnonzero(unknown)
                if rows.size and not where:
                    i = int(rows[0])
                    first = None if holes[i] else s.take([i])[0].as_py()
                if rows.size:
                    where.append(rows + start)
            if where:
                found.append((col, np.concatenate(where), first))
        return found

    def filled_notes(self, table: pa.Table, first_row: RowNumbers = 0) -> list[str]:
        """What encoding ``table`` fills in for the user, one note per column: missing cells
        imputed (``missing: impute``) and categories the training split lacks (``handle_unknown``
        infrequent or ignore; under error, encoding refuses them). Training notes both for its
        own rows; predict and evaluate say so too, since a broken feed shows first as these."""
        notes = []
        if self.missing == "impute":
            for col in self.columns:
                if col.kind != "categorical" and col.fill is None:
                    continue  # no median: encoding refuses the cell instead
                holes = missing_mask(self.cells(table.column(col.name)))
                if holes.any():
                    notes.append(
                        f"column '{col.name}': {int(holes.sum())} missing cell(s) {col.filled_with}"
                        f" (first at row {row_number(first_row, int(np.argmax(holes)))}; data.missing: impute)"
                    )
        if self.handle_unknown != "error":
            for col, where, value in self.unseen_categories(table):
                notes.append(self.unseen_note(col, len(where), value, row_number(first_row, int(where[0]))))
        return notes

    def unseen_note(self, col: Column, count: int, value: str | None, row: int, held: str = "") -> str:
        """The note for ``count`` rows (``held``: which split's, when training) whose category in
        ``col`` the training split lacks, the first ``value`` (None: a missing cell) at ``row``,
        and how it is encoded (handle_unknown infrequent or ignore)."""
        if self.handle_unknown == "infrequent" and col.infrequent is not None:
            how = f"encoded as its level {col.infrequent!r} (data.handle_unknown: infrequent)"
        elif col.embedded:
            how = f"encoded as the embedding's reserved zero row (data.handle_unknown: {self.handle_unknown})"
        elif self.handle_unknown == "infrequent":
            how = "encoded as all zeros (data.handle_unknown: infrequent; the column has no infrequent level)"
        else:
            how = "encoded as all zeros (data.handle_unknown: ignore)"
        shown = "a missing cell" if value is None else repr(value)
        rows = f"{held} row(s)" if held else "row(s)"
        return (
            f"column '{col.name}': {count} {rows} with a category the training split lacks ({shown},"
            f" first at row {row}): {how}"
        )

    def _missing_error(self, name: str, holes: np.ndarray, first_row: RowNumbers, source: str) -> DataError:
        first = row_number(first_row, np.flatnonzero(holes)[0])
        count = int(holes.sum())
        return DataError(
            f"{at(source)}column '{name}' has {count} missing cell{'s' * (count != 1)}"
            f" (first at row {first}); the model was trained with data.missing: {self.missing}"
            " (data.missing: impute fills them)"
        )

    def encode_array(self, X: np.ndarray) -> np.ndarray:
        """Rows already in the network's columns but in their own units (what inverse_transform
        gives): each column's transform, then the standardisation."""
        X = np.array(X, dtype=np.float64)
        for col, off in zip(self.columns, self.offsets):
            if col.transform is not None and not col.transform.is_identity:
                X[:, off] = col.transform.forward(X[:, off])
        return (X - self.mean) / self.scale

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Encoded rows back in the columns' units (one-hot columns stay 0/1; dates in days;
        times of day as their cyclic pairs)."""
        X = np.asarray(X, dtype=np.float64) * self.scale + self.mean
        for col, off in zip(self.columns, self.offsets):
            if col.transform is not None and not col.transform.is_identity:
                X[:, off] = col.transform.inverse(X[:, off])
        return X

    # ---- storage (model.npz: arrays plus JSON, no pickle) ------------------------------------
    def to_meta(self) -> dict:
        out = {
            "columns": [c.to_meta() for c in self.columns],
            "missing": self.missing,
            "handle_unknown": self.handle_unknown,
        }
        if self.na_values is not None:
            out["na_values"] = self.na_values
        if self.header:  # only where the header was stripped, so other models write what they wrote
            out["header"] = dict(self.header)
        return out

    @classmethod
    def from_meta(cls, meta: dict, mean: np.ndarray, scale: np.ndarray) -> Preprocessor:
        """Rebuild from ``to_meta()`` and the stored arrays; ValueError/KeyError/TypeError if garbled."""
        columns = []
        for c in meta["columns"]:
            name, kind, categories, fill = str(c["name"]), c["kind"], c.get("categories"), c.get("fill")
            if kind not in KINDS or kind == "drop":
                raise ValueError(f"column kind {kind!r}")
            if kind == "categorical" and (
                not isinstance(categories, list) or not all(isinstance(v, str) for v in categories)
            ):
                raise ValueError(f"categories of '{name}'")
            if fill is not None and not (isinstance(fill, (int, float)) and np.isfinite(fill)):
                raise ValueError(f"fill value of '{name}'")
            fmt, infrequent, rare = c.get("format"), c.get("infrequent"), c.get("rare", [])
            if fmt is not None and not isinstance(fmt, str):
                raise ValueError(f"date format of '{name}'")
            if infrequent is not None and (infrequent not in (categories or []) or not isinstance(rare, list)):
                raise ValueError(f"infrequent level of '{name}'")
            transform = Transform.from_meta(c["transform"]) if "transform" in c and kind == "numeric" else None
            encoding, dim = c.get("encoding"), c.get("dim")
            if encoding is not None and (
                encoding != "embedding" or kind != "categorical" or not isinstance(dim, int) or dim < 1
            ):
                raise ValueError(f"embedding of '{name}'")
            ple = PiecewiseLinear.from_meta(c["ple"]) if "ple" in c else None
            if ple is not None and (
                kind != "numeric" or transform is not None or not (dim is None or (isinstance(dim, int) and dim >= 1))
            ):
                raise ValueError(f"piecewise-linear encoding of '{name}'")
            periodic = c.get("periodic")
            if periodic is not None and not _periodic_ok(periodic, kind, ple, dim):
                raise ValueError(f"periodic embedding of '{name}'")
            columns.append(
                Column(
                    name,
                    kind,
                    categories if kind == "categorical" else None,
                    fill,
                    transform,
                    fmt,
                    infrequent,
                    [str(v) for v in rare] if infrequent is not None else [],
                    encoding,
                    dim if encoding is not None or ple is not None or periodic is not None else None,
                    ple,
                    None if periodic is None else {"frequencies": periodic["frequencies"], "sigma": periodic["sigma"]},
                )
            )
        if meta["missing"] not in MISSING or meta["handle_unknown"] not in UNKNOWN:
            raise ValueError("missing/handle_unknown")
        na = meta.get("na_values")
        if na is not None and (not isinstance(na, list) or not all(isinstance(v, str) for v in na)):
            raise ValueError("na_values")
        header = meta.get("header", {})
        if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
            raise ValueError("header names")
        pre = cls(columns, mean, scale, meta["missing"], meta["handle_unknown"], na)
        names = {c.name for c in columns}
        pre.header = {str(k): v for k, v in header.items() if k in names}
        return pre


def _periodic_ok(p, kind: str, ple, dim) -> bool:
    """A stored periodic embedding: a numeric column's {frequencies >= 1, sigma > 0}, no
    piecewise-linear encoding, and the width after it None or >= 1."""
    if not isinstance(p, dict) or set(p) != {"frequencies", "sigma"} or kind != "numeric" or ple is not None:
        return False
    k, sigma = p["frequencies"], p["sigma"]
    return (
        isinstance(k, int)
        and not isinstance(k, bool)
        and k >= 1
        and isinstance(sigma, (int, float))
        and not isinstance(sigma, bool)
        and np.isfinite(sigma)
        and sigma > 0
        and (dim is None or (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1))
    )


def _fit_numeric(name: str, kind: str, v: np.ndarray, fill, how: str, fmt) -> tuple[Column, np.ndarray, np.ndarray]:
    """One numeric (or date) column fitted on its training values ``v`` (missing cells NaN, or
    filled): its Column, mean and scale. ``how``: a transform, or auto."""
    if how == "auto":
        how = choose(v)
    t = Transform.fit(how, v)
    col = Column(name, kind, fill=fill, transform=t, format=fmt)
    present = t.forward(v[~np.isnan(v)])
    if how == "robust":
        center, spread = robust_center_scale(present)
        return col, np.array([center]), np.array([spread])
    if how in ("none", "quantile"):  # quantile: already standard normal
        return col, np.zeros(1), np.ones(1)
    st = Standardizer().fit(present[:, None] if present.size else np.zeros((1, 1)))
    return col, st.mean, st.scale


def _fit_numeric_block(
    table: pa.Table,
    names: list[str],
    rows,
    missing: str,
    numeric,
    standardize: bool,
    first_row,
    source: str,
    target: np.ndarray | None = None,
) -> dict[str, tuple[Column, np.ndarray, np.ndarray]]:
    """``_fit_numeric`` of many plain numeric columns at once: the medians, the auto choice,
    log1p and the standardisation as one NumPy call each for the block (a quantile or robust
    column is fitted on its own)."""
    V = numeric_block(table, names, first_row, source)[rows]
    k = V.shape[1]
    fills: list[float | None] = [None] * k
    if missing == "impute":
        empty = np.isnan(V).all(axis=0)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: filled with 0
            medians = np.where(empty, 0.0, np.nanmedian(V, axis=0) if V.size else np.zeros(k))
        V = np.where(np.isnan(V), medians, V)
        fills = [float(m) for m in medians]
    hows = [(numeric.get(n, "auto") if isinstance(numeric, dict) else numeric) for n in names]
    if not standardize:  # numbers as they are
        hows = ["none" if h in ("auto", "standardize") else h for h in hows]
    auto = [j for j, h in enumerate(hows) if h == "auto"]
    for j, h in zip(auto, choose_many(V[:, auto])):
        hows[j] = "standardize" if h == "log1p" and target is not None and more_linear_raw(V[:, j], target) else h
    out = {}
    scaled = [j for j, h in enumerate(hows) if h in ("standardize", "log1p")]
    if scaled:
        P = V[:, scaled]
        logs = [i for i, j in enumerate(scaled) if hows[j] == "log1p"]
        if logs:
            P[:, logs] = signed_log1p(P[:, logs])
        full = ~np.isnan(P).any(axis=0)
        mean, std = np.zeros(len(scaled)), np.zeros(len(scaled))
        if full.any():  # a row per column: the sums of Standardizer.fit, in its order
            PT = np.ascontiguousarray(P[:, full].T)
            mean[full], std[full] = PT.mean(axis=1), PT.std(axis=1)
        for i in np.flatnonzero(~full):  # a column with missing cells: its present values
            present = P[~np.isnan(P[:, i]), i]
            if present.size:
                mean[i], std[i] = present.mean(), present.std()
        st = Standardizer()._set(mean, std)
        for i, j in enumerate(scaled):
            col = Column(names[j], "numeric", fill=fills[j], transform=Transform(hows[j]))
            out[names[j]] = (col, st.mean[i : i + 1].copy(), st.scale[i : i + 1].copy())
    for j, h in enumerate(hows):
        if names[j] in out:
            continue
        if h == "none":
            out[names[j]] = (
                Column(names[j], "numeric", fill=fills[j], transform=Transform("none")),
                np.zeros(1),
                np.ones(1),
            )
        else:  # quantile, robust: their own quantiles
            out[names[j]] = _fit_numeric(names[j], "numeric", np.ascontiguousarray(V[:, j]), fills[j], h, None)
    return out


NA_TOKENS = frozenset(NA_VALUES)


def embedding_size(levels: int) -> int:
    """An embedding's width for a column of ``levels`` levels: fastai's rule min(600, 1.6·n^0.56)."""
    return int(min(600, round(1.6 * levels**0.56)))


def _fit_categories(
    arr,
    name: str,
    rows: np.ndarray,
    missing: str,
    max_categories: int,
    min_frequency: int,
    source: str,
    encoding: str = "onehot",
    dim: int | None = None,
) -> Column:
    """A categorical column's levels from the training rows: the categories at least
    ``min_frequency`` rows have, in sorted order, then one infrequent level for the rest, when
    there are at least two such rare categories and two frequent ones (else every category
    keeps its own level). ``encoding``: onehot, embedding, or auto (embedding above
    AUTO_ONEHOT_LEVELS levels); ``dim``: the embedding's width (None: ``embedding_size``).

    Refused as a name or an ID: more distinct values than ``max_categories`` and than half the
    training rows, or, one-hot, more levels than ``max_categories``."""
    s = string_values(arr.take(arrow(np.asarray(rows, np.int64))))
    if missing == "impute":
        s = pc.fill_null(s, arrow([MISSING_CATEGORY])[0])
    counts = pc.value_counts(s.drop_null() if isinstance(s, pa.Array) else pc.drop_null(s))
    values = counts.field("values").to_pylist()
    n = to_numpy(counts.field("counts")).astype(np.int64)
    order = np.argsort(values, kind="stable")
    values, n = [values[i] for i in order], n[order]
    frequent = [v for v, k in zip(values, n) if k >= min_frequency]
    rare = [v for v, k in zip(values, n) if k < min_frequency]
    if len(rare) < 2 or len(frequent) < 2:  # one rare category alone, or too few frequent: merge nothing
        frequent, rare = values, []
    levels = len(frequent) + bool(rare)
    if encoding == "auto":
        encoding = "embedding" if levels > AUTO_ONEHOT_LEVELS else "onehot"
    too_many = levels > max_categories and encoding == "onehot"
    if too_many and len(values) <= len(rows) / 2:
        raise DataError(
            f"{at(source)}column '{name}' has {levels} levels, more than data.max_categories {max_categories}"
            f" for a one-hot column: embed it (data.categorical: {{{name}: embedding}}), raise"
            " data.max_categories, or put it in data.drop (or data.id) if it is a name or an ID"
        )
    if len(values) > max_categories and (too_many or len(values) > len(rows) / 2):
        raise DataError(
            f"{at(source)}column '{name}' has {len(values)} distinct values"
            f" (more than data.max_categories {max_categories}); it looks like a name or an ID:"
            f" put it in data.drop (or data.id), or raise data.max_categories"
        )
    embed = {"encoding": "embedding", "dim": dim or embedding_size(levels)} if encoding == "embedding" else {}
    if not rare:
        return Column(name, "categorical", categories=frequent, **embed)
    level = INFREQUENT
    while level in frequent:
        level += "_"
    return Column(name, "categorical", categories=[*frequent, level], infrequent=level, rare=rare, **embed)
