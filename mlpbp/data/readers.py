"""User files (CSV with a header row, NPZ with X and y) and the bundled CSVs, read into a Dataset.

Every problem with the user's data becomes one `DataError` line naming the file, row and
column, because a traceback from deep inside NumPy does not tell anyone which cell is wrong.
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path

import numpy as np

from mlpbp.data.dataset import TASKS, Dataset
from mlpbp.errors import DataError
from mlpbp.io import ARCHIVE_ERRORS, reads_file

# Bundled CSV datasets and their target columns.
BUNDLED = {"digits": "digit", "iris": "species"}


def bundled_path(name: str) -> Path:
    """The installed copy of a bundled CSV (package data mlpbp/datasets, from datasets/)."""
    path = Path(str(resources.files("mlpbp.datasets").joinpath(f"{name}.csv")))
    if not path.is_file():
        raise DataError(f"bundled dataset '{name}' not found at {path}; reinstall mlpbp or use data.path")
    return path


# ---------------------------------------------------------------------------------------------
# CSV


def _read_table(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (file line number, cells) rows; checks the file shape, not the values."""
    path = Path(path)
    try:
        # utf-8-sig: spreadsheet exports often start with a BOM that would stick to the first name.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue  # blank lines (often a trailing one) are not data
                rows.append((reader.line_num, row))
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise DataError(f"{path}: cannot read as CSV: {reason}") from None
    if header is None:
        raise DataError(f"{path}: file is empty (expected a header row of column names)")
    header = [h.strip() for h in header]
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: header column {i + 1} has no name")
        if name in header[:i]:
            raise DataError(f"{path}: column name '{name}' appears twice in the header")
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}: row {line} has {len(row)} fields, header has {len(header)}")
    return header, rows


def _parse_number(path: Path, line: int, column: str, cell: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: row {line}, column '{column}': {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: row {line}, column '{column}': {text!r} is not a finite number")
    return value


def _parse_features(path: Path, header: list[str], rows, columns: list[str]) -> np.ndarray:
    index = [header.index(c) for c in columns]
    X = np.empty((len(rows), len(columns)), dtype=np.float64)
    for r, (line, row) in enumerate(rows):
        for k, j in enumerate(index):
            X[r, k] = _parse_number(path, line, header[j], row[j])
    return X


def _parses(convert, text: str) -> bool:
    """Whether ``convert`` (int or float) accepts ``text``."""
    try:
        convert(text)
    except ValueError:
        return False
    return True


@reads_file
def read_csv(path: str | Path, target: str | None = None, task: str | None = None) -> Dataset:
    """Read a CSV with a header row; `target` defaults to the last column."""
    path = Path(path)
    header, rows = _read_table(path)
    if target is None:
        target = header[-1]
    if target not in header:
        raise DataError(f"{path}: target column '{target}' not found (columns: {', '.join(header)})")
    features = [c for c in header if c != target]
    if not features:
        raise DataError(f"{path}: no feature columns besides the target '{target}'")
    X = _parse_features(path, header, rows, features)

    t = header.index(target)
    labels = [row[t].strip() for _, row in rows]
    for (line, _), label in zip(rows, labels):
        if not label:
            raise DataError(f"{path}: row {line}, column '{target}': empty target value")
    if task is None:
        # Whole numbers look like class labels, other numbers like a quantity, text like labels.
        if all(_parses(int, v) for v in labels):
            task = "classification"
        elif all(_parses(float, v) for v in labels):
            task = "regression"
        else:
            task = "classification"

    if task == "regression":
        y = np.array(
            [_parse_number(path, line, target, v) for (line, _), v in zip(rows, labels)], dtype=np.float64
        ).reshape(-1, 1)
        return Dataset(X, y, "regression", None, features, target)
    if task != "classification":
        raise DataError(f"unknown task {task!r} (allowed: {', '.join(TASKS)})")

    if all(_parses(int, v) for v in labels):
        # Numeric order ('2' before '10') and one spelling per class ('01' == '1').
        labels = [str(int(v)) for v in labels]
        classes = sorted(set(labels), key=int)
    else:
        classes = sorted(set(labels))
    if len(classes) < 2:
        raise DataError(
            f"{path}: target column '{target}' has only one class ({classes[0]!r}); classification needs at least 2"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup[v] for v in labels], dtype=np.int64)
    return Dataset(X, y, "classification", classes, features, target)


@reads_file
def read_features_csv(
    path: str | Path, feature_names: list[str], target_name: str | None, require_target: bool
) -> tuple[np.ndarray, list[str] | None]:
    """Features matched by column name to the training features, plus the raw target strings.

    Used at predict/evaluate time: column order may differ from training, but the set of
    columns must not, since a silently ignored or missing column means a wrong prediction.
    """
    path = Path(path)
    header, rows = _read_table(path)
    missing = [c for c in feature_names if c not in header]
    if missing:
        raise DataError(f"{path}: missing feature columns the model was trained on: {', '.join(missing)}")
    extra = [c for c in header if c not in feature_names and c != target_name]
    if extra:
        allowed = f" plus the target '{target_name}'" if target_name else ""
        raise DataError(
            f"{path}: unexpected columns {', '.join(extra)} (the model takes its {len(feature_names)}"
            f" training feature columns{allowed})"
        )
    has_target = target_name is not None and target_name in header
    if require_target and not has_target:
        raise DataError(f"{path}: target column '{target_name}' not found (columns: {', '.join(header)})")
    X = _parse_features(path, header, rows, list(feature_names))
    if not has_target:
        return X, None
    t = header.index(target_name)
    targets = [row[t].strip() for _, row in rows]
    if require_target:
        for (line, _), value in zip(rows, targets):
            if not value:
                raise DataError(f"{path}: row {line}, column '{target_name}': empty target value")
    return X, targets


# ---------------------------------------------------------------------------------------------
# NPZ


@reads_file
def read_npz(path: str | Path, task: str | None = None) -> Dataset:
    """Read arrays X (n, d) and y (n,) or (n, m) from an .npz archive (no pickles)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            if f.read(2) != b"PK":  # np.load would try anything else as a pickle, and say so
                raise ValueError("not a zip archive")
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
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
            X, y = archive["X"], archive["y"]
        except ARCHIVE_ERRORS as exc:
            if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
                # np.load refuses object arrays without allow_pickle; we never unpickle user files.
                raise DataError(
                    f"{path}: X or y is an object (pickled) array; save plain numeric arrays instead"
                ) from None
            raise DataError(f"{path}: cannot read as an .npz archive: {_one_line(str(exc))}") from None

    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{path}: X must be a 2-D numeric array, got shape {X.shape} dtype {X.dtype}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise DataError(f"{path}: X has shape {X.shape}; need at least one row and one column")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise DataError(f"{path}: X[{i}, {j}] is {X[i, j]}; all values must be finite")
    return dataset_from_arrays(path, X, y, task, [f"x{j}" for j in range(d)], "y")


def dataset_from_arrays(path: Path, X, y: np.ndarray, task: str | None, features: list[str], target: str) -> Dataset:
    """A Dataset from checked features ``X`` (an array, or rows read lazily) and raw targets
    ``y``: the task inferred (float targets mean regression), class labels encoded."""
    n = X.shape[0]
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise DataError(f"{path}: y must have shape ({n},) or ({n}, m) to match X, got {y.shape}")
    if task is None:
        task = "regression" if y.dtype.kind == "f" else "classification"
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise DataError(f"{path}: task regression needs numeric y, got dtype {y.dtype}")
        y = y.astype(np.float64).reshape(n, -1)
        if not np.all(np.isfinite(y)):
            raise DataError(f"{path}: y has non-finite values; all values must be finite")
        return Dataset(X, y, "regression", None, features, target)

    if y.ndim == 2:
        if y.shape[1] != 1:
            raise DataError(f"{path}: classification needs y of shape ({n},), got {y.shape}")
        y = y[:, 0]
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{path}: classification needs integer or string labels in y, got non-integer floats")
        y = y.astype(np.int64)
    if y.dtype.kind not in "biuUS":
        raise DataError(f"{path}: y must hold integer or string class labels, got dtype {y.dtype}")
    values, index = np.unique(y, return_inverse=True)  # sorted numerically / lexicographically
    classes = [str(int(v)) if y.dtype.kind in "biu" else str(v) for v in values]
    if len(classes) < 2:
        raise DataError(f"{path}: y has only one class ({classes[0]!r}); classification needs at least 2")
    return Dataset(X, index.astype(np.int64).reshape(n), "classification", classes, features, target)


def _one_line(text: str) -> str:
    return " ".join(text.split())
