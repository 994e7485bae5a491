"""Datasets: bundled CSVs, synthetic generators, user CSV/NPZ files, splits and standardization.

Every problem with the user's data becomes one `MlpbpError` line naming the file, row and
column, because a traceback from deep inside NumPy does not tell anyone which cell is wrong.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from mlpbp.errors import MlpbpError
from mlpbp.files import ARCHIVE_ERRORS

if TYPE_CHECKING:
    from mlpbp.config import DataConfig

# Bundled CSV datasets and their target columns.
BUNDLED = {"digits": "digit", "iris": "species"}
GENERATORS = ("xor", "moons", "circles", "spirals", "sine")


@dataclass
class Dataset:
    X: np.ndarray  # (n, d) float64
    y: np.ndarray  # classification: (n,) int64 indices into `classes`; regression: (n, m) float64
    task: Literal["classification", "regression"]
    classes: list[str] | None
    feature_names: list[str]
    target_name: str


@dataclass
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Dispatch


def load_data(cfg: DataConfig, seed: int, base_dir: Path) -> Dataset:
    """Load the dataset a `data:` config section names; relative paths are taken from base_dir."""
    if cfg.dataset in BUNDLED:
        ds = read_csv(bundled_path(cfg.dataset), cfg.target or BUNDLED[cfg.dataset], cfg.task)
    elif cfg.dataset in GENERATORS:
        ds = generate(cfg.dataset, seed=seed, n_samples=cfg.n_samples, noise=cfg.noise)
        if cfg.task is not None and cfg.task != ds.task:
            raise MlpbpError(
                f"config error at data.task: dataset '{cfg.dataset}' is a {ds.task} problem, not {cfg.task}"
            )
    elif cfg.path is not None:
        path = Path(cfg.path)
        if not path.is_absolute():
            path = Path(base_dir) / path
        if path.suffix.lower() == ".npz":
            ds = read_npz(path, cfg.task)
        else:
            ds = read_csv(path, cfg.target, cfg.task)
    else:
        raise MlpbpError(f"config error at data.dataset: unknown dataset {cfg.dataset!r}")
    return ds


def bundled_path(name: str) -> Path:
    # Installed package first (mlpbp/datasets), then the source checkout's top-level datasets/.
    here = Path(__file__).resolve().parent
    for folder in (here / "datasets", here.parent / "datasets"):
        candidate = folder / f"{name}.csv"
        if candidate.is_file():
            return candidate
    raise MlpbpError(
        f"bundled dataset '{name}' not found (looked for {name}.csv in {here / 'datasets'} and"
        f" {here.parent / 'datasets'}); reinstall mlpbp or use data.path"
    )


# ---------------------------------------------------------------------------------------------
# Synthetic generators


def generate(name: str, seed: int, n_samples: int = 400, noise: float | None = None) -> Dataset:
    rng = np.random.default_rng(seed)
    if noise is None:
        noise = 0.0 if name == "xor" else 0.1
    if name == "sine":
        x = rng.uniform(-np.pi, np.pi, size=(n_samples, 1))
        y = np.sin(x) + noise * rng.standard_normal((n_samples, 1))
        return Dataset(x, y, "regression", None, ["x"], "y")
    if name == "xor":
        X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        y = np.array([0, 1, 1, 0], dtype=np.int64)
        if noise > 0:
            X = X + noise * rng.standard_normal(X.shape)
        return Dataset(X, y, "classification", ["0", "1"], ["x0", "x1"], "y")
    n0 = n_samples // 2
    n1 = n_samples - n0
    if name == "moons":  # as sklearn's make_moons
        t0 = np.linspace(0.0, np.pi, n0)
        t1 = np.linspace(0.0, np.pi, n1)
        a = np.column_stack([np.cos(t0), np.sin(t0)])
        b = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
    elif name == "circles":  # as sklearn's make_circles(factor=0.5)
        t0 = np.linspace(0.0, 2 * np.pi, n0, endpoint=False)
        t1 = np.linspace(0.0, 2 * np.pi, n1, endpoint=False)
        a = np.column_stack([np.cos(t0), np.sin(t0)])
        b = 0.5 * np.column_stack([np.cos(t1), np.sin(t1)])
    elif name == "spirals":
        # Two 1.5-turn Archimedean arms r = t, angle = 3*pi*t, the second rotated by pi, so
        # neighbouring arms are 1/3 apart. The jitter std is noise/2: at noise 0.1 the half gap
        # (1/6) is over 3 std, so a small MLP can separate them. sqrt(u) spreads points evenly by
        # area instead of crowding the centre, where the arms meet.
        def arm(n: int, phase: float) -> np.ndarray:
            t = np.sqrt(rng.uniform(0.0, 1.0, n))
            angle = 3 * np.pi * t + phase
            return np.column_stack([t * np.cos(angle), t * np.sin(angle)])

        a, b = arm(n0, 0.0), arm(n1, np.pi)
        noise = noise / 2
    else:
        raise MlpbpError(f"unknown dataset {name!r} (allowed: {', '.join(BUNDLED) + ', ' + ', '.join(GENERATORS)})")
    X = np.concatenate([a, b])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n1, np.int64)])
    if noise > 0:
        X = X + noise * rng.standard_normal(X.shape)
    order = rng.permutation(n_samples)
    return Dataset(X[order], y[order], "classification", ["0", "1"], ["x0", "x1"], "y")


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
        raise MlpbpError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise MlpbpError(f"{path}: cannot read as CSV: {reason}") from None
    if header is None:
        raise MlpbpError(f"{path}: file is empty (expected a header row of column names)")
    header = [h.strip() for h in header]
    for i, name in enumerate(header):
        if not name:
            raise MlpbpError(f"{path}: header column {i + 1} has no name")
        if name in header[:i]:
            raise MlpbpError(f"{path}: column name '{name}' appears twice in the header")
    if not rows:
        raise MlpbpError(f"{path}: no data rows after the header")
    for line, row in rows:
        if len(row) != len(header):
            raise MlpbpError(f"{path}: row {line} has {len(row)} fields, header has {len(header)}")
    return header, rows


def _parse_number(path: Path, line: int, column: str, cell: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        raise MlpbpError(f"{path}: row {line}, column '{column}': {text!r} is not a number") from None
    if not math.isfinite(value):
        raise MlpbpError(f"{path}: row {line}, column '{column}': {text!r} is not a finite number")
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


def read_csv(path: str | Path, target: str | None = None, task: str | None = None) -> Dataset:
    """Read a CSV with a header row; `target` defaults to the last column."""
    path = Path(path)
    header, rows = _read_table(path)
    if target is None:
        target = header[-1]
    if target not in header:
        raise MlpbpError(f"{path}: target column '{target}' not found (columns: {', '.join(header)})")
    features = [c for c in header if c != target]
    if not features:
        raise MlpbpError(f"{path}: no feature columns besides the target '{target}'")
    X = _parse_features(path, header, rows, features)

    t = header.index(target)
    labels = [row[t].strip() for _, row in rows]
    for (line, _), label in zip(rows, labels):
        if not label:
            raise MlpbpError(f"{path}: row {line}, column '{target}': empty target value")
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
        raise MlpbpError(f"unknown task {task!r} (allowed: classification, regression)")

    if all(_parses(int, v) for v in labels):
        # Numeric order ('2' before '10') and one spelling per class ('01' == '1').
        labels = [str(int(v)) for v in labels]
        classes = sorted(set(labels), key=int)
    else:
        classes = sorted(set(labels))
    if len(classes) < 2:
        raise MlpbpError(
            f"{path}: target column '{target}' has only one class ({classes[0]!r}); classification needs at least 2"
        )
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup[v] for v in labels], dtype=np.int64)
    return Dataset(X, y, "classification", classes, features, target)


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
        raise MlpbpError(f"{path}: missing feature columns the model was trained on: {', '.join(missing)}")
    extra = [c for c in header if c not in feature_names and c != target_name]
    if extra:
        allowed = f" plus the target '{target_name}'" if target_name else ""
        raise MlpbpError(
            f"{path}: unexpected columns {', '.join(extra)} (the model takes its {len(feature_names)}"
            f" training feature columns{allowed})"
        )
    has_target = target_name is not None and target_name in header
    if require_target and not has_target:
        raise MlpbpError(f"{path}: target column '{target_name}' not found (columns: {', '.join(header)})")
    X = _parse_features(path, header, rows, list(feature_names))
    if not has_target:
        return X, None
    t = header.index(target_name)
    targets = [row[t].strip() for _, row in rows]
    if require_target:
        for (line, _), value in zip(rows, targets):
            if not value:
                raise MlpbpError(f"{path}: row {line}, column '{target_name}': empty target value")
    return X, targets


# ---------------------------------------------------------------------------------------------
# NPZ


def read_npz(path: str | Path, task: str | None = None) -> Dataset:
    """Read arrays X (n, d) and y (n,) or (n, m) from an .npz archive (no pickles)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            if f.read(2) != b"PK":  # np.load would try anything else as a pickle, and say so
                raise ValueError("not a zip archive")
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MlpbpError(f"data file not found: {path}") from None
    except ARCHIVE_ERRORS as exc:
        raise MlpbpError(f"{path}: cannot read as an .npz archive: {_one_line(str(exc))}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MlpbpError(f"{path}: expected an .npz archive holding arrays X and y, got a single array")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            raise MlpbpError(
                f"{path}: missing array(s) {', '.join(missing)} (found: {', '.join(archive.files) or 'none'})"
            )
        try:
            X, y = archive["X"], archive["y"]
        except ARCHIVE_ERRORS as exc:
            if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
                # np.load refuses object arrays without allow_pickle; we never unpickle user files.
                raise MlpbpError(
                    f"{path}: X or y is an object (pickled) array; save plain numeric arrays instead"
                ) from None
            raise MlpbpError(f"{path}: cannot read as an .npz archive: {_one_line(str(exc))}") from None

    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise MlpbpError(f"{path}: X must be a 2-D numeric array, got shape {X.shape} dtype {X.dtype}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise MlpbpError(f"{path}: X has shape {X.shape}; need at least one row and one column")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise MlpbpError(f"{path}: X[{i}, {j}] is {X[i, j]}; all values must be finite")
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise MlpbpError(f"{path}: y must have shape ({n},) or ({n}, m) to match X, got {y.shape}")
    features = [f"x{j}" for j in range(d)]

    if task is None:
        task = "regression" if y.dtype.kind == "f" else "classification"
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise MlpbpError(f"{path}: task regression needs numeric y, got dtype {y.dtype}")
        y = y.astype(np.float64).reshape(n, -1)
        if not np.all(np.isfinite(y)):
            raise MlpbpError(f"{path}: y has non-finite values; all values must be finite")
        return Dataset(X, y, "regression", None, features, "y")

    if y.ndim == 2:
        if y.shape[1] != 1:
            raise MlpbpError(f"{path}: classification needs y of shape ({n},), got {y.shape}")
        y = y[:, 0]
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise MlpbpError(f"{path}: classification needs integer or string labels in y, got non-integer floats")
        y = y.astype(np.int64)
    if y.dtype.kind not in "biuUS":
        raise MlpbpError(f"{path}: y must hold integer or string class labels, got dtype {y.dtype}")
    values, index = np.unique(y, return_inverse=True)  # sorted numerically / lexicographically
    classes = [str(int(v)) if y.dtype.kind in "biu" else str(v) for v in values]
    if len(classes) < 2:
        raise MlpbpError(f"{path}: y has only one class ({classes[0]!r}); classification needs at least 2")
    return Dataset(X, index.astype(np.int64).reshape(n), "classification", classes, features, "y")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------------
# Splitting


def _round(x: float) -> int:
    # Half-up, unlike Python's round(): 2.5 -> 3 for every class alike.
    return int(math.floor(x + 0.5))


def split(ds: Dataset, test_fraction: float, validation_fraction: float, seed: int) -> Splits:
    """Train/validation/test split; stratified by class for classification. Deterministic per seed."""
    rng = np.random.default_rng(seed)
    n = len(ds.y)
    if ds.task == "classification":
        train, val, test = _stratified(ds.y, len(ds.classes or []), test_fraction, validation_fraction, rng)
    else:
        order = rng.permutation(n)
        n_test = _round(test_fraction * n)
        n_val = _round(validation_fraction * n)
        # A split that was asked for is never silently empty.
        n_test = max(n_test, 1) if test_fraction > 0 else 0
        n_val = max(n_val, 1) if validation_fraction > 0 else 0
        if n_test + n_val >= n:
            raise MlpbpError(
                f"not enough rows: {n} rows cannot give {n_test} test, {n_val} validation and at least"
                " 1 training row; lower data.test_fraction / data.validation_fraction or add data"
            )
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]

    def take(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ds.X[idx], ds.y[idx]

    return Splits(train=take(train), val=take(val), test=take(test))


def _stratified(y: np.ndarray, k: int, tf: float, vf: float, rng: np.random.Generator):
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(max(k, int(y.max()) + 1))]
    per_class = [idx for idx in per_class if len(idx)]
    counts = []  # [n_test, n_val] per class
    for idx in per_class:
        n_c = len(idx)
        n_test, n_val = _round(tf * n_c), _round(vf * n_c)
        # Every class keeps a training example; give up validation rows first, then test rows.
        while n_test + n_val > n_c - 1:
            if n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        counts.append([n_test, n_val])
    # Small classes can round every share to zero; a requested split still gets one row,
    # taken from the class with the most training rows to spare.
    for which, frac in ((0, tf), (1, vf)):
        if frac > 0 and sum(c[which] for c in counts) == 0:
            spare = [len(idx) - sum(c) - 1 for idx, c in zip(per_class, counts)]
            best = int(np.argmax(spare))
            if spare[best] < 1:
                raise MlpbpError(
                    f"not enough rows: {len(y)} rows in {len(per_class)} classes cannot give every class a"
                    " training row plus a test and a validation row; lower data.test_fraction /"
                    " data.validation_fraction or add data"
                )
            counts[best][which] += 1
    test, val, train = [], [], []
    for idx, (n_test, n_val) in zip(per_class, counts):
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    # Shuffle across classes so no split is ordered by class.
    return tuple(rng.permutation(np.concatenate(part)) for part in (train, val, test))


# ---------------------------------------------------------------------------------------------
# Standardization


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
            raise MlpbpError(f"cannot standardize: need a non-empty 2-D array, got shape {X.shape}")
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        # A constant column (std 0, or float round-off of 0) would divide by ~0; leave it unscaled.
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(self.mean), 1.0)
        self.scale = np.where(std > tiny, std, 1.0)
        return self

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.mean is None:
            raise RuntimeError("Standardizer used before fit()")
        if X.ndim != 2 or X.shape[1] != self.mean.shape[0]:
            raise MlpbpError(f"expected {self.mean.shape[0]} feature columns, got an array of shape {X.shape}")
        return X

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (self._check(X) - self.mean) / self.scale

    def inverse_transform(self, X: np.ndarray) -> np.ndarray:
        return self._check(X) * self.scale + self.mean
