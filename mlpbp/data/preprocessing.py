"""Preprocessing fitted on the training split and stored with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data.arrow import arrow, missing_mask, positions, to_numpy
from mlpbp.data.columns import infer_kind, numeric_values, string_values
from mlpbp.data.rows import RowNumbers, at, cell_error, row_number, rows_from, short_list
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

KINDS = ("numeric", "categorical", "date", "drop")
MISSING = ("error", "drop_rows", "impute")
UNKNOWN = ("error", "ignore")
MISSING_CATEGORY = "missing"  # what `missing: impute` files a missing category cell under
CHUNK_ROWS = 65536  # rows encoded at a time: bounds the float64 scratch whatever the table's size


@dataclass
class Column:
    name: str
    kind: str  # numeric | categorical | date
    categories: list[str] | None = None  # categorical: the one-hot columns, in sorted order
    fill: float | None = None  # numeric/date under `missing: impute`: the training median

    @property
    def width(self) -> int:
        return len(self.categories) if self.kind == "categorical" else 1

    @property
    def output_names(self) -> list[str]:
        return [f"{self.name}={c}" for c in self.categories] if self.kind == "categorical" else [self.name]


class Preprocessor:
    """Raw columns in, the network's input matrix out: numeric columns (and dates, as days since
    1970-01-01) standardised, categorical ones one-hot, missing cells filled or refused.

    Fitted on the training rows only; ``transform`` then takes any rows of a table with these
    columns (a whole file, or one chunk at a time from a streaming reader)."""

    def __init__(
        self,
        columns: list[Column],
        mean: np.ndarray,
        scale: np.ndarray,
        missing: str = "error",
        handle_unknown: str = "error",
    ) -> None:
        self.columns, self.missing, self.handle_unknown = columns, missing, handle_unknown
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
        return sum(c.width for c in self.columns)

    @property
    def inputs(self) -> list[str]:
        """The raw columns a table must have."""
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        """The network's input columns, after one-hot encoding."""
        return [n for c in self.columns for n in c.output_names]

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
    ) -> Preprocessor:
        """Fit on the rows ``rows`` of ``table`` (the training split); ``first_row`` numbers
        the table's rows in messages."""
        kinds = kinds or {}
        columns, means, scales = [], [], []
        for name in features:
            arr = table.column(name)
            kind = kinds.get(name) or infer_kind(arr.type)
            if kind in ("numeric", "date"):
                v = numeric_values(arr, name, kind, first_row, source)[rows]
                fill = None
                if missing == "impute":
                    fill = float(np.nanmedian(v)) if not np.isnan(v).all() else 0.0
                    v = np.where(np.isnan(v), fill, v)
                col = Column(name, kind, fill=fill)
                present = v[~np.isnan(v)]
                st = Standardizer().fit(present[:, None] if present.size else np.zeros((1, 1)))
                means.append(st.mean if standardize else np.zeros(1))
                scales.append(st.scale if standardize else np.ones(1))
            elif kind == "categorical":
                s = string_values(arr.take(arrow(np.asarray(rows, np.int64))))
                if missing == "impute":
                    s = pc.fill_null(s, arrow([MISSING_CATEGORY])[0])
                categories = sorted(v for v in pc.unique(s).to_pylist() if v is not None)
                if len(categories) > max_categories:
                    raise DataError(
                        f"{at(source)}column '{name}' has {len(categories)} distinct values"
                        f" (more than data.max_categories {max_categories}); it looks like a name or an ID:"
                        f" put it in data.drop (or data.id), or raise data.max_categories"
                    )
                col = Column(name, "categorical", categories=categories)
                means.append(np.zeros(col.width))  # one-hot columns stay 0/1
                scales.append(np.ones(col.width))
            else:
                raise DataError(f"unknown column kind {kind!r} for '{name}' (allowed: {', '.join(KINDS)})")
            columns.append(col)
        mean = np.concatenate(means) if means else np.zeros(0)
        scale = np.concatenate(scales) if scales else np.zeros(0)
        return cls(columns, mean, scale, missing, handle_unknown)

    # ---- applying --------------------------------------------------------------------------
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
        with "ignore"). ``fits``: the dtype the network computes in; a standardised value beyond
        its range (1e39 in float32) is refused, naming the cell, rather than becoming inf."""
        names = set(table.column_names)  # a set, once: 100,000 columns must stay linear
        absent = [c for c in self.inputs if c not in names]
        if absent:
            raise DataError(f"{at(source)}missing feature columns the model was trained on: {', '.join(absent)}")
        n = table.num_rows
        out = np.empty((n, self.width), dtype=dtype)
        for start in range(0, n, CHUNK_ROWS):
            part = table.slice(start, CHUNK_ROWS)
            block = np.zeros((part.num_rows, self.width))
            for col, off in zip(self.columns, self.offsets):
                self._encode(col, part.column(col.name), block, off, rows_from(first_row, start), source, unknown)
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
            v = numeric_values(arr, col.name, col.kind, first_row, source)
            holes = np.isnan(v)
            if holes.any():
                if col.fill is None:
                    raise self._missing_error(col.name, holes, first_row, source)
                v = np.where(holes, col.fill, v)  # v may be a read-only view of the table
            block[:, off] = v
            return
        s = string_values(arr)
        nulls = s.null_count
        if nulls:
            if self.missing != "impute":
                raise self._missing_error(col.name, missing_mask(s), first_row, source)
            holes = missing_mask(s)
            s = pc.fill_null(s, arrow([MISSING_CATEGORY])[0])
        index = pc.index_in(s, value_set=arrow(col.categories))
        idx = positions(index)
        unknown = idx < 0
        if unknown.any() and (unknown_policy or self.handle_unknown) == "error":
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
                f"{what}; train with data.handle_unknown: ignore to encode unseen categories as all zeros",
            )
        rows = np.flatnonzero(~unknown)
        block[rows, off + idx[rows]] = 1.0

    def incomplete_rows(self, table: pa.Table) -> np.ndarray:
        """Rows of ``table`` with a missing cell in any input column: those training dropped
        under data.missing: drop_rows."""
        mask = np.zeros(table.num_rows, dtype=bool)
        for name in self.inputs:
            mask |= missing_mask(table.column(name))
        return mask

    def unseen_categories(self, table: pa.Table) -> list[tuple[Column, np.ndarray, str | None]]:
        """Per categorical column, the rows of ``table`` whose category is not one of the
        column's (the training split's): (the column, row indices, the first such value; None when
        it is a missing cell filed under the 'missing' category, which training never saw)."""
        found = []
        for col in self.columns:
            if col.kind != "categorical":
                continue
            known = arrow(col.categories)
            # a missing cell is a category only when imputed and training had none (refused or
            # dropped otherwise)
            holes_unknown = self.missing == "impute" and MISSING_CATEGORY not in col.categories
            where, first = [], None
            for start in range(0, table.num_rows, CHUNK_ROWS):  # a chunk at a time, as transform
                s = string_values(table.column(col.name).slice(start, CHUNK_ROWS))
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

    def _missing_error(self, name: str, holes: np.ndarray, first_row: RowNumbers, source: str) -> DataError:
        first = row_number(first_row, np.flatnonzero(holes)[0])
        count = int(holes.sum())
        return DataError(
            f"{at(source)}column '{name}' has {count} missing cell{'s' * (count != 1)}"
            f" (first at row {first}); the model was trained with data.missing: {self.missing}"
            " (data.missing: impute fills them)"
        )

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        """Encoded rows back in the columns' units (one-hot columns stay 0/1; dates in days)."""
        return np.asarray(X, dtype=np.float64) * self.scale + self.mean

    # ---- storage (model.npz: arrays plus JSON, no pickle) ------------------------------------
    def to_meta(self) -> dict:
        return {
            "columns": [
                {"name": c.name, "kind": c.kind, "categories": c.categories, "fill": c.fill} for c in self.columns
            ],
            "missing": self.missing,
            "handle_unknown": self.handle_unknown,
        }

    @classmethod
    def from_meta(cls, meta: dict, mean: np.ndarray, scale: np.ndarray) -> Preprocessor:
        """Rebuild from ``to_meta()`` and the stored arrays; ValueError/KeyError/TypeError if garbled."""
        columns = []
        for c in meta["columns"]:
            name, kind, categories, fill = str(c["name"]), c["kind"], c.get("categories"), c.get("fill")
            if kind not in ("numeric", "categorical", "date"):
                raise ValueError(f"column kind {kind!r}")
            if kind == "categorical" and (
                not isinstance(categories, list) or not all(isinstance(v, str) for v in categories)
            ):
                raise ValueError(f"categories of '{name}'")
            if fill is not None and not (isinstance(fill, (int, float)) and np.isfinite(fill)):
                raise ValueError(f"fill value of '{name}'")
            columns.append(Column(name, kind, categories if kind == "categorical" else None, fill))
        if meta["missing"] not in MISSING or meta["handle_unknown"] not in UNKNOWN:
            raise ValueError("missing/handle_unknown")
        return cls(columns, mean, scale, meta["missing"], meta["handle_unknown"])
