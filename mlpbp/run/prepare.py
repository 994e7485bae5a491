"""From a config to what the trainer needs: the table read, its columns sorted into features,
targets and id, the task decided, rows split, the preprocessing fitted on the training split,
everything encoded and cast; and the network built."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlpbp.data import BUNDLED, GENERATORS, Standardizer, bundled_path, generate, split
from mlpbp.data.arrow import arrow, missing_mask, to_numpy
from mlpbp.data.cells import apply_na_values, infer_cells, is_text
from mlpbp.data.columns import (
    column_batches,
    coordinate_columns,
    infer_kind,
    is_plain_numeric,
    numeric_block,
    numeric_values,
    weight_values,
)
from mlpbp.data.lazy import fit_moments, is_lazy, read_lazy
from mlpbp.data.preprocessing import AUTO_ONEHOT_LEVELS, CHUNK_ROWS, Moments, Preprocessor
from mlpbp.data.rows import RowNumbers, row_number, rows_from, short_list
from mlpbp.data.splits import split_indices
from mlpbp.data.tables import Progress, RawTable, read_estimate, read_table
from mlpbp.data.targets import Target, infer_target, multilabel_target, target_missing
from mlpbp.data.transforms import TargetScaler, signed_log1p
from mlpbp.engine.combine import Concat
from mlpbp.engine.embedding import Embedding, Select
from mlpbp.engine.graph import Network, chain, graph_nodes, layer_graph
from mlpbp.engine.layers import Activation, Linear
from mlpbp.engine.memory import (
    STEP_BUFFERS,
    activation_bytes,
    describe_widths,
    fits,
    n_params,
    network_bytes,
    optimizer_bytes,
    require,
)
from mlpbp.engine.module import Input, Node
from mlpbp.engine.network import MLP
from mlpbp.engine.norm import BatchNorm
from mlpbp.engine.optim import OPTIMIZERS, Optimizer
from mlpbp.engine.periodic import Periodic
from mlpbp.errors import ConfigError, DataError
from mlpbp.run.config import Config, DataConfig
from mlpbp.run.distributed import SINGLE, Comm
from mlpbp.run.footprint import check_table
from mlpbp.run.metrics import EVAL_CHUNK
from mlpbp.run.summary import ClassCount, ColumnSummary, DataSummary
from mlpbp.run.threads import may_calibrate


def load_table(
    cfg: DataConfig,
    seed: int,
    base_dir: Path,
    float32: bool = False,
    progress: Progress | None = None,
    encode: bool = False,
) -> tuple[RawTable, str | None]:
    """The `data:` section's rows as a table, and the task when the source fixes it (generators),
    once its memory (with the fit and, with ``encode``, the encoded rows) is checked."""
    if cfg.dataset in BUNDLED:
        return read_table(bundled_path(cfg.dataset), keep64=cfg.targets or [BUNDLED[cfg.dataset]]), None
    if cfg.dataset in GENERATORS:
        # the rows, split, standardised and cast: a few copies of n_samples × (2 features + target)
        require(cfg.n_samples * 3 * 8 * 4, f"generating {cfg.n_samples:,} rows", key="data.n_samples")
        ds = generate(cfg.dataset, seed=seed, n_samples=cfg.n_samples, noise=cfg.noise)
        if cfg.task is not None and cfg.task != ds.task:
            raise ConfigError(
                f"config error at data.task: dataset '{cfg.dataset}' is a {ds.task} problem, not {cfg.task}"
            )
        columns = {n: arrow(ds.X[:, j]) for j, n in enumerate(ds.feature_names)}
        targets = ["y"] if ds.y.ndim == 1 or ds.y.shape[1] == 1 else [f"y{k}" for k in range(ds.y.shape[1])]
        for k, n in enumerate(targets):
            columns[n] = arrow(ds.y.reshape(len(ds.y), -1)[:, k])
        table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
        return RawTable(table, Path(cfg.dataset), first_row=0, targets=targets), ds.task
    if cfg.path is None:
        raise ConfigError(f"config error at data.dataset: unknown dataset {cfg.dataset!r}")
    path = Path(cfg.path)
    if not path.is_absolute():
        path = Path(base_dir) / path
    keep = (
        None
        if cfg.targets is None
        else [*cfg.targets, *([cfg.id] if cfg.id else []), *([cfg.weight] if cfg.weight else [])]
    )
    est = read_estimate(path, cfg.delimiter, float32, keep)
    check_table("train" if encode else "data", est, [est.columns] if est and encode else None, 4 if float32 else 8)
    return read_table(path, cfg.delimiter, float32, keep, progress, cfg.bad_lines), None


@dataclass
class Columns:
    """Which column plays which part."""

    features: list[str]
    targets: list[str]
    id: str | None
    dropped: list[str]
    kinds: dict[str, str]  # overrides from data.columns (kinds other than drop), then inferred dates and times
    formats: dict[str, str] = field(default_factory=dict)  # dates and times written as text: strptime formats
    weight: str | None = None  # data.weight: the column of per-row weights


def column_name(names: list[str], name: str) -> str:
    """A column named in the config: as written, or with its surrounding spaces stripped (the
    table's header names are stripped, with a note, when read)."""
    return name if name in names or name.strip() not in names else name.strip()


def resolve_columns(raw: RawTable, cfg: DataConfig) -> Columns:
    names = raw.table.column_names
    have = set(names)  # every per-column test a set lookup: linear in the column count
    src = raw.path
    default_target = BUNDLED.get(cfg.dataset) if cfg.dataset else None
    fix = lambda group: [column_name(names, n) for n in group]  # noqa: E731
    cfg = cfg.model_copy(
        update={
            "target": None if cfg.targets is None else fix(cfg.targets),
            "features": None if cfg.features is None else fix(cfg.features),
            "drop": fix(cfg.drop),
            "columns": {column_name(names, n): k for n, k in cfg.columns.items()},
            "id": None if cfg.id is None else column_name(names, cfg.id),
            "weight": None if cfg.weight is None else column_name(names, cfg.weight),
        }
    )
    targets = cfg.targets or ([default_target] if default_target else None) or raw.targets or names[-1:]
    for t in targets:
        if t not in have:
            raise DataError(f"{src}: target column '{t}' not found (columns: {', '.join(names)})")
    for key, wanted in (
        ("features", cfg.features or []),
        ("drop", cfg.drop),
        ("columns", list(cfg.columns)),
        ("id", [cfg.id] if cfg.id else []),
        ("weight", [cfg.weight] if cfg.weight else []),
    ):
        unknown = [c for c in wanted if c not in have]
        if unknown:
            raise ConfigError(
                f"config error at data.{key}: {src.name} has no column '{unknown[0]}' (columns: {', '.join(names)})"
            )
    kinds = {n: k for n, k in cfg.columns.items() if k != "drop"}
    by_kind = [n for n, k in cfg.columns.items() if k == "drop"]
    if cfg.features is not None:
        clash = [c for c in cfg.features if c in set(by_kind)]
        if clash:
            raise ConfigError(f"config error at data.columns: '{clash[0]}' is in data.features and set to drop")
    if cfg.id is not None and cfg.id in by_kind:
        raise ConfigError(f"config error at data.columns: '{cfg.id}' is data.id and set to drop")
    if cfg.weight is not None and (cfg.weight in by_kind or cfg.weight in targets):
        role = "a target" if cfg.weight in targets else "set to drop"
        raise ConfigError(f"config error at data.weight: '{cfg.weight}' is {role}; a column has one role")
    for t in targets:
        if t in by_kind:
            raise ConfigError(f"config error at data.columns: '{t}' is a target and set to drop")
    dropped = list(dict.fromkeys([*cfg.drop, *by_kind]))
    if cfg.features is not None:
        features = list(cfg.features)
    else:
        taken = {*targets, *dropped, *([cfg.id] if cfg.id else []), *([cfg.weight] if cfg.weight else [])}
        features = [n for n in names if n not in taken]
        types = dict(zip(raw.table.schema.names, raw.table.schema.types))
        # Parquet and Arrow keep a column's type when every cell is null (a CSV's is null itself).
        rows = raw.table.num_rows
        empty = [
            n
            for n in features
            if n not in kinds and (pa.types.is_null(types[n]) or raw.table.column(n).null_count == rows)
        ]
        if empty:
            raw.notes.append(
                f"column{'s' * (len(empty) > 1)} {', '.join(empty)} ha{'ve' if len(empty) > 1 else 's'}"
                " no value at all: ignored"
            )
            features = [n for n in features if n not in set(empty)]
            dropped += empty
    if not features:
        raise DataError(f"{src}: no feature columns besides the target {', '.join(repr(t) for t in targets)}")
    return Columns(features, list(targets), cfg.id, dropped, kinds, weight=cfg.weight)


@dataclass
class Prepared:
    """The data in the network's units, and what maps raw rows into them."""

    task: str
    why: str  # the task and what decided it, in one line
    classes: list[str] | None
    target_names: list[str]
    id_name: str | None
    preprocessor: Preprocessor
    y_scaler: Standardizer | None
    n_outputs: int
    class_weight: np.ndarray | None
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    summary: DataSummary | None = None  # what `mlpbp data` shows
    notes: list[str] = field(default_factory=list)
    split_rows: dict[str, np.ndarray] = field(default_factory=dict)  # each split's rows of the table used
    tables: dict[str, pa.Table] = field(default_factory=dict)  # with keep_tables: each split's raw rows
    # data.weight: each split's per-row weights ("train", "val", "test"); empty without one
    sample_weight: dict[str, np.ndarray] = field(default_factory=dict)
    weight_name: str | None = None
    # a multi-label target: one 0/1 column per label in ``classes`` (data.label_separator: the
    # separator of its one column of label sets)
    multilabel: bool = False
    label_separator: str | None = None

    def weights(self, split: str) -> np.ndarray | None:
        """The per-row weights of a split ("train", "val", "test"), None when rows weigh 1."""
        return self.sample_weight.get(split)

    @property
    def x_scaler(self) -> Preprocessor:  # the name earlier versions used
        return self.preprocessor


def default_loss(cfg: Config, task: str) -> str:
    return cfg.model.loss or ("cross_entropy" if task == "classification" else "square")


def _check_loss(cfg: Config, target: Target) -> None:
    """The loss must suit the target: a multi-label one takes binary_cross_entropy (the default
    for it, set into the config here); binary_cross_entropy on one label column with more than
    two classes is refused, naming cross_entropy."""
    loss = cfg.model.loss
    if target.multilabel:
        if loss is None:
            cfg.model.loss = "binary_cross_entropy"  # the saved config shows the loss used
        elif loss != "binary_cross_entropy":
            raise ConfigError(
                f"config error at model.loss: a multi-label target ({target.why.split(': ', 1)[1]}) takes"
                f" binary_cross_entropy (one sigmoid per label), not {loss}"
            )
        return
    if loss == "binary_cross_entropy" and target.task == "classification" and len(target.classes) > 2:
        raise ConfigError(
            f"config error at model.loss: binary_cross_entropy scores independent 0/1 labels, but target"
            f" '{target.names[0]}' holds one of {len(target.classes)} classes per row: use cross_entropy (softmax);"
            " for label sets, set data.label_separator"
        )
    if loss == "binary_cross_entropy" and target.task == "regression":
        raise ConfigError(
            "config error at model.loss: binary_cross_entropy needs 0/1 labels; these targets are a regression"
            " (set data.task: classification for 0/1 label columns)"
        )


def _check_counts(y: np.ndarray, names: list[str], first_row: RowNumbers, source: str) -> None:
    """poisson's targets are counts: a negative one is one line naming its row and column."""
    bad = np.asarray(y, np.float64).reshape(len(y), -1) < 0
    if bad.any():
        i, j = np.argwhere(bad)[0]
        v = float(np.asarray(y).reshape(len(y), -1)[i, j])
        raise DataError(
            f"{source}: row {row_number(first_row, int(i))}, column '{names[j]}': {v:g} is negative; the poisson"
            " loss takes counts (targets >= 0)"
        )


def _infer_cells(raw: RawTable, cols: Columns, d: DataConfig) -> None:
    """Each feature's kind where its Arrow type does not settle it (dates and times written as
    text, times of day, timestamps), into ``cols.kinds`` and ``cols.formats``; a numeric column
    with a few text cells is refused here, before it could be taken for categories."""
    formats = d.date_format if isinstance(d.date_format, dict) else {}
    formats = {column_name(cols.features, n): f for n, f in formats.items()}
    unknown = [n for n in formats if n not in cols.features]
    if unknown:
        raise ConfigError(
            f"config error at data.date_format: '{unknown[0]}' is not a feature column"
            f" (features: {', '.join(cols.features)})"
        )
    types = dict(zip(raw.table.schema.names, raw.table.schema.types))
    for n in cols.features:
        if is_plain_numeric(types[n]):
            continue  # numbers: the type settles the kind (infer_cells says nothing of them)
        arr = raw.table.column(n)
        fmt = formats.get(n)
        if fmt is None and isinstance(d.date_format, str) and _all_parse(arr, d.date_format):
            fmt = d.date_format
        cells = infer_cells(arr, n, cols.kinds.get(n), fmt, raw.rows, raw.path.name)
        if cells is not None:
            cols.kinds[n] = cells.kind
            if cells.format is not None:
                cols.formats[n] = cells.format


def _all_parse(arr, fmt: str) -> bool:
    from mlpbp.data.cells import is_text

    if not is_text(arr.type):
        return False
    trimmed = pc.utf8_trim_whitespace(arr)
    return pc.strptime(trimmed, format=fmt, unit="s", error_is_null=True).null_count == trimmed.null_count


def _embed_coordinates(table: pa.Table, cols: Columns, d: DataConfig, numeric, notes: list[str]):
    """data.numeric with ``periodic`` for the coordinate columns (``coordinate_columns``) that
    auto would otherwise standardise: those data.numeric leaves to auto (unset, or not named in
    its mapping) and that no data.columns or data.date_format reads as something else."""
    if d.path is None or not d.standardize or not (numeric == "auto" or isinstance(numeric, dict)):
        return numeric
    given = numeric if isinstance(numeric, dict) else {}
    coords = [
        n
        for n in coordinate_columns(table, cols.features)
        if given.get(n, "auto") == "auto" and cols.kinds.get(n, "numeric") == "numeric" and n not in cols.formats
    ]
    if not coords:
        return numeric
    notes.append(
        f"column{'s' if len(coords) > 1 else ''} {', '.join(repr(n) for n in coords)}: coordinates (by header and"
        " range), given periodic embeddings (data.numeric: auto; name a column in data.numeric to choose another)"
    )
    return {**given, **dict.fromkeys(coords, "periodic")}


def _fit_notes(pre: Preprocessor, counts: dict[str, int], notes: list[str], d: DataConfig) -> None:
    """One note per imputed column (how many cells, filled with what) and per column whose
    rare categories share the infrequent level."""
    for col in pre.columns:
        count = counts.get(col.name, 0)
        if count and pre.missing == "impute":
            notes.append(f"column '{col.name}': {count} missing cell(s) {col.filled_with} (data.missing: impute)")
        if col.embedded:
            how = d.categorical.get(col.name, "auto") if isinstance(d.categorical, dict) else d.categorical
            why = f"auto: more than {AUTO_ONEHOT_LEVELS} levels" if how == "auto" else "embedding"
            notes.append(
                f"column '{col.name}': {len(col.categories)} levels, each a learned vector of {col.dim}"
                f" (data.categorical: {why}); an unseen level reads a reserved zero row"
            )
        if col.infrequent is not None:
            k = len(col.rare)
            notes.append(
                f"column '{col.name}': {k} categor{'y' if k == 1 else 'ies'} with fewer than {d.min_frequency}"
                f" training rows share the level {col.infrequent!r} (data.min_frequency): {short_list(col.rare, 4)}"
            )


def _fitted_target(cfg: Config, target: Target, y: np.ndarray, train_idx: np.ndarray) -> np.ndarray | None:
    """The training rows' target as data.numeric: auto weighs a skewed column's log1p against
    it (``more_linear_raw``): a regression target as the network fits it (standardised or not:
    the same correlations; log1p: its log), a class code per row, or a multi-label target's
    0/1 columns; None where there is none to weigh (poisson counts, quantile)."""
    if target.task == "classification":
        return y[train_idx]
    if default_loss(cfg, target.task) == "poisson":
        return None
    transform = cfg.data.target_transform
    if transform in ("standardize", "none"):
        return y[train_idx]
    if transform == "log1p":
        return signed_log1p(np.asarray(y[train_idx], np.float64))
    return None


def _read_test_table(cfg: Config, pre: Preprocessor, cols: Columns, target: Target, notes: list[str]):
    """data.test_path's rows as the test split: (table, row numbers, encoded targets, path).
    Rows without a target are dropped with a note, as in training; so are rows with a missing
    cell under drop_rows."""
    d = cfg.data
    path = Path(d.test_path)
    raw = read_table(path, d.delimiter, False, None, None, d.bad_lines)
    raw.table, _ = apply_na_values(raw.table, d.na_values)
    names = raw.table.column_names
    absent = [c for c in [*pre.inputs, *cols.targets, *([cols.weight] if cols.weight else [])] if c not in names]
    if absent:
        raise DataError(f"{path}: data.test_path has no column '{absent[0]}' (columns: {', '.join(names)})")
    gone = target_missing(raw.table, cols.targets, d.label_separator is not None)
    if gone.any():
        raw.drop(gone)
        notes.append(f"{path.name}: dropped {int(gone.sum())} test row(s) whose target is missing")
    if pre.missing == "drop_rows":
        holes = pre.incomplete_rows(raw.table)
        if holes.any():
            raw.drop(holes)
            notes.append(
                f"{path.name}: dropped {int(holes.sum())} test row(s) with a missing cell (data.missing: drop_rows)"
            )
    if raw.table.num_rows == 0:
        raise DataError(f"{path}: no test rows left (data.test_path)")
    y = target.encode(raw.table, raw.rows, str(path))
    return raw.table, raw.rows, y, path


def _drop_missing(raw: RawTable, cols: Columns, cfg: DataConfig, src: Path, notes: list[str]) -> dict[str, int]:
    """Drop from ``raw`` the rows training cannot use (a missing target; under drop_rows, a
    missing feature cell), and refuse bad cells; the rows kept keep their numbers in messages.
    Returns each feature's count of missing cells (the rows kept)."""
    gone = target_missing(raw.table, cols.targets, cfg.label_separator is not None)
    if gone.any():
        raw.drop(gone)
        notes.append(f"dropped {int(gone.sum())} row(s) whose target is missing")
    table = raw.table
    types = dict(zip(table.schema.names, table.schema.types))
    plain = [n for n in cols.features if is_plain_numeric(types[n])]
    holes, infinite = {}, set()
    for batch in column_batches(table.num_rows, plain):  # a block of many columns at a time
        V = numeric_block(table, batch, check=False)  # refused below, as before
        H = np.isnan(V)
        for j in np.flatnonzero(H.any(axis=0)):
            holes[batch[j]] = H[:, j]
        infinite.update(batch[j] for j in np.flatnonzero(np.isinf(V).any(axis=0)))
    blocked = set(plain)
    for n in cols.features:
        if n not in blocked:
            m = missing_mask(table.column(n))
            if m.any():
                holes[n] = m
    holes = {n: holes[n] for n in cols.features if n in holes}  # in the features' order
    counts = {n: int(m.sum()) for n, m in holes.items()}
    if counts and cfg.missing == "error":
        name, count = next(iter(counts.items()))
        first = raw.row(np.flatnonzero(holes[name])[0])
        more = f" (and {len(counts) - 1} more column(s))" if len(counts) > 1 else ""
        raise DataError(
            f"{src}: column '{name}' has {count} missing cell{'s' * (count != 1)}{more}, the first at row {first};"
            " set data.missing: impute (training median / a 'missing' category) or drop_rows"
        )
    for n in cols.features:  # before the split, so a bad cell is named whatever the row count
        kind = cols.kinds.get(n)
        if n in blocked and n not in infinite and kind != "date":
            continue  # finite numbers throughout: nothing to refuse
        arr = table.column(n)
        if (kind == "numeric" or (kind == "date" and n not in cols.formats)) and infer_kind(arr.type) != kind:
            numeric_values(arr, n, kind, raw.rows, src.name)
        if pa.types.is_floating(arr.type) and pc.any(pc.is_inf(arr)).as_py():
            i = int(np.flatnonzero(to_numpy(pc.is_inf(arr)))[0])
            raise DataError(f"{src}: row {raw.row(i)}, column '{n}': {arr[i].as_py()!r} is not a finite number")
    if counts and cfg.missing == "drop_rows":
        any_hole = np.logical_or.reduce([m for m in holes.values()])
        raw.drop(any_hole)
        notes.append(f"dropped {int(any_hole.sum())} row(s) with a missing cell (data.missing: drop_rows)")
    if raw.table.num_rows == 0:
        raise DataError(f"{src}: no rows left after dropping those with missing cells")
    return counts


def class_weights(spec, target: Target, y_train: np.ndarray) -> np.ndarray | None:
    """train.class_weight as one weight per class index."""
    if spec is None:
        return None
    if target.task != "classification":
        raise ConfigError("config error at train.class_weight: class weights need a classification task")
    k = len(target.classes)
    if spec == "balanced":  # scikit-learn's: n / (k * count), so the weights average 1 over the rows
        counts = np.bincount(y_train, minlength=k).astype(np.float64)
        return np.where(counts > 0, len(y_train) / (k * np.maximum(counts, 1)), 1.0)
    unknown = [c for c in spec if c not in target.classes]
    if unknown:
        raise ConfigError(
            f"config error at train.class_weight: unknown class '{unknown[0]}' (classes: {', '.join(target.classes)})"
        )
    return np.array([float(spec.get(c, 1.0)) for c in target.classes])


# Chooses the (train, validation, test) row indices from the encoded targets, the class count
# (None: regression) and the id column's values as group codes (None: no id column).
Splitter = Callable[[np.ndarray, "int | None", "np.ndarray | None"], tuple[np.ndarray, np.ndarray, np.ndarray]]


def prepare(
    cfg: Config,
    dtype: str | None = None,
    progress: Progress | None = None,
    encode: bool = True,
    comm: Comm = SINGLE,
    splitter: Splitter | None = None,
    keep_tables: bool = False,
) -> Prepared:
    """Load, split and encode the config's data, cast to ``dtype`` (default train.dtype).
    ``encode=False`` stops after fitting (train/val/test are then empty): what `mlpbp data` needs.
    ``splitter`` chooses the rows of each split instead of data.test_fraction and
    validation_fraction (cross-validation's folds); the preprocessing is fitted on its training
    rows. ``keep_tables``: keep each split's raw rows (``Prepared.tables``, for --write-split).
    Under MPI (a collective), a bad file stops every rank with the same error."""
    d = cfg.data
    if d.path is not None:
        path = Path(d.path) if Path(d.path).is_absolute() else Path(cfg.base_dir) / d.path
        if is_lazy(path):  # a folder: rows read from its files as batches need them
            if splitter is not None:
                raise ConfigError(
                    f"config error at data.path: {path} is a folder read lazily; choosing its splits"
                    " (cross-validation) needs a table read whole (CSV, Parquet, NPZ)"
                )
            return _prepare_lazy(cfg, path, dtype, comm)
    return comm.agree(lambda: _prepare_table(cfg, dtype, progress, encode, splitter, keep_tables))


def _read_lazy_shared(cfg: Config, path: Path, comm: Comm):
    """``read_lazy`` on every rank. Parquet is spilled into an .npy once per machine, not once
    per rank: the first rank on each machine writes it into a scratch folder, the others then
    open it, and the folder goes once all have (each open file keeps its data)."""

    def read(spill_dir=None):
        return read_lazy(path, cfg.data.target, cfg.data.task, spill_dir, cfg.data.weight)

    if comm.ranks_on_node == 1 or not any(path.glob("*.parquet")) or (path / "X.npy").exists():
        return comm.agree(read)
    first = comm.node_rank == 0
    spill_dir = Path(comm.node_bcast(tempfile.mkdtemp(prefix="mlpbp-parquet-") if first else None))
    try:
        mine = comm.agree(lambda: read(spill_dir), runs=first)
        theirs = comm.agree(lambda: read(spill_dir), runs=not first)  # after the spill is complete
        return mine if first else theirs
    finally:
        if first:
            shutil.rmtree(spill_dir, ignore_errors=True)


def _prepare_lazy(cfg: Config, path: Path, dtype, comm: Comm) -> Prepared:
    """A folder of .npy or Parquet files (numeric columns), read lazily: the standardisation
    is fitted in one scan, each rank reading only its share."""
    if cfg.data.label_separator is not None:
        raise ConfigError(
            f"config error at data.label_separator: {path} is a folder read lazily (numeric columns); label sets"
            " need a table read whole (CSV, Parquet)"
        )
    ds = _read_lazy_shared(cfg, path, comm)
    loss = default_loss(cfg, ds.task)
    if ds.task == "regression" and loss == "cross_entropy":
        raise ConfigError("config error at model.loss: cross_entropy needs a classification task; use square")
    if cfg.train.patience is not None and cfg.data.validation_fraction == 0:
        raise ConfigError("config error at train.patience: early stopping needs data.validation_fraction > 0")
    sp = split(ds, cfg.data.test_fraction, cfg.data.validation_fraction, cfg.seed)
    lo, hi = comm.share(ds.X.shape[0])
    moments = comm.agree(lambda: fit_moments(ds.X, sp.train[0].index, lo, hi))
    total = Moments()
    for m in comm.allgather(moments):  # in rank order: the same scaler on every rank
        total = total.merge(m)
    d = ds.X.shape[1]
    x_scaler = Standardizer.from_moments(total) if cfg.data.standardize else Standardizer.identity(d)
    y_scaler = None
    if ds.task == "regression" and cfg.data.standardize:
        y_scaler = Standardizer().fit(sp.train[1])
    dtype = np.dtype(dtype or cfg.train.dtype)

    def encode(part):  # standardised and cast as batches are read
        X, y = part
        X = X.transformed(x_scaler, dtype)
        if ds.task == "regression":
            y = np.ascontiguousarray(y_scaler.transform(y) if y_scaler is not None else y, dtype=dtype)
        return X, y

    n_out = len(ds.classes) if ds.task == "classification" else ds.y.shape[1]
    why = f"{ds.task}: {'set by data.task' if cfg.data.task else 'inferred from the arrays'} (read lazily from {path})"
    pre = Preprocessor.numeric(list(ds.feature_names), x_scaler)
    summary = DataSummary(
        str(path), int(ds.X.shape[0]), int(ds.X.shape[0]), ds.task, why, [ds.target_name], None, d, [], []
    )
    prepared = Prepared(
        ds.task,
        why,
        ds.classes,
        [ds.target_name],
        None,
        pre,
        y_scaler,
        n_out,
        None,
        encode(sp.train),
        encode(sp.val),
        encode(sp.test),
        summary,
        [],
    )
    if ds.weight is not None:
        parts = {"train": sp.train, "val": sp.val, "test": sp.test}
        prepared.sample_weight = {k: ds.weight[X.index] for k, (X, _) in parts.items()}
        prepared.weight_name = summary.weight = cfg.data.weight
        _check_weight_sums(prepared.sample_weight, cfg.data.weight, path)
    return prepared


def _prepare_table(
    cfg: Config, dtype, progress: Progress | None, encode: bool, splitter=None, keep_tables: bool = False
) -> Prepared:
    d = cfg.data
    dtype = np.dtype(dtype or cfg.train.dtype)
    raw, fixed_task = load_table(d, cfg.seed, cfg.base_dir, dtype == np.float32, progress, encode)
    src, stripped = raw.path, raw.stripped
    raw.table, na_notes = apply_na_values(raw.table, d.na_values)
    cols = resolve_columns(raw, d)
    _infer_cells(raw, cols, d)
    notes = [*raw.notes, *na_notes]
    multi_columns = len(cols.targets) > 1 and (d.task == "classification" or cfg.model.loss == "binary_cross_entropy")
    if d.label_separator is not None or multi_columns:
        target = multilabel_target(raw.table, cols.targets, d.label_separator, src.name, raw.first_row)
    else:
        target = infer_target(
            raw.table, cols.targets, d.task or fixed_task, d.max_classes, cols.kinds, src.name, raw.first_row
        )
    if fixed_task and d.task is None:
        target.why = f"{target.task}: dataset '{d.dataset}' is a {target.task} problem"
    _check_loss(cfg, target)
    loss = default_loss(cfg, target.task)
    if target.task == "regression" and loss == "cross_entropy":
        raise ConfigError("config error at model.loss: cross_entropy needs a classification task; use square")
    if cfg.train.patience is not None and d.validation_fraction == 0:
        raise ConfigError("config error at train.patience: early stopping needs data.validation_fraction > 0")
    n_read = raw.table.num_rows
    holes = _drop_missing(raw, cols, d, src, notes)
    table, first_row = raw.table, raw.rows
    raw.table = None  # the filtered table is the one to keep (and free early)
    w = None if cols.weight is None else weight_values(table.column(cols.weight), cols.weight, first_row, src.name)
    y = target.encode(table, first_row, src.name)
    if default_loss(cfg, target.task) == "poisson":
        _check_counts(y, cols.targets, first_row, src.name)
    # multi-label rows have no one class to stratify by: a plain random split
    n_classes = len(target.classes) if target.task == "classification" and not target.multilabel else None
    if splitter is None:
        train_idx, val_idx, test_idx = split_indices(y, n_classes, d.test_fraction, d.validation_fraction, cfg.seed)
    else:
        groups = None
        if cols.id is not None:  # group codes: rows sharing an id share a code
            groups = to_numpy(
                pc.dictionary_encode(table.column(cols.id), null_encoding="encode").combine_chunks().indices
            ).astype(np.int64)
        train_idx, val_idx, test_idx = splitter(y, n_classes, groups)
    # Bundled and generated sets keep 0.2's plain standardisation unless data.numeric is set.
    numeric = d.numeric if d.path is not None or "numeric" in d.model_fields_set else "standardize"
    if isinstance(numeric, dict):
        numeric = {column_name(cols.features, n): v for n, v in numeric.items()}
    numeric = _embed_coordinates(table, cols, d, numeric, notes)
    categorical, emb_dim = d.categorical, d.embedding_dim
    if isinstance(categorical, dict):
        categorical = {column_name(cols.features, n): v for n, v in categorical.items()}
    if isinstance(emb_dim, dict):
        emb_dim = {column_name(cols.features, n): v for n, v in emb_dim.items()}
    for key, given in (("categorical", categorical), ("embedding_dim", emb_dim)):
        unknown = [n for n in given if n not in cols.features] if isinstance(given, dict) else []
        if unknown:
            raise ConfigError(
                f"config error at data.{key}: '{unknown[0]}' is not a feature column"
                f" (features: {', '.join(cols.features)})"
            )
    # Their models keep 0.2's refusal of a missing cell at predict time too, unless data.missing is set.
    missing = d.missing if d.path is not None or "missing" in d.model_fields_set else "error"
    pre = Preprocessor.fit(
        table,
        cols.features,
        train_idx,
        cols.kinds,
        missing,
        d.handle_unknown,
        d.max_categories,
        d.standardize,
        src.name,
        first_row,
        formats=cols.formats,
        numeric=numeric,
        min_frequency=d.min_frequency if d.path is not None else 1,
        na_values=d.na_values if d.path is not None else None,
        categorical=categorical,
        embedding_dim=emb_dim,
        ple_bins=d.ple_bins,
        ple_embedding=d.ple_embedding,
        periodic={"frequencies": d.periodic_frequencies, "sigma": d.periodic_sigma, "dim": d.periodic_embedding},
        target=_fitted_target(cfg, target, y, train_idx),
    )
    inputs = set(pre.inputs)
    pre.header = {name: written for written, name in stripped.items() if name in inputs}
    _fit_notes(pre, holes, notes, d)
    test_table = _read_test_table(cfg, pre, cols, target, notes) if d.test_path else None
    sample_weight = {}
    if w is not None:
        sample_weight = {k: w[idx] for k, idx in zip(("train", "val", "test"), (train_idx, val_idx, test_idx))}
        if test_table is not None:
            t, rows, _, path = test_table
            sample_weight["test"] = weight_values(t.column(cols.weight), cols.weight, rows, path.name)
        _check_weight_sums(sample_weight, cols.weight, src)
    # the rows outside the training split, as messages name them: only the splits that have rows
    held = "/".join(name for name, idx in (("validation", val_idx), ("test", test_idx)) if len(idx)) or "test"
    _unseen_categories(table, pre, first_row, src, notes, test_table, held)
    y_scaler = None
    transform = d.target_transform
    if default_loss(cfg, target.task) == "poisson" and transform != "none":
        if "target_transform" in d._user_set:
            raise ConfigError(
                f"config error at data.target_transform: the poisson loss fits counts in their own units"
                f" (o = log μ), not transformed by {transform}: use none"
            )
        transform = d.target_transform = "none"  # counts stay counts (and the saved config says so)
    if target.task == "regression" and transform != "none":
        # Scaled targets keep one learning rate sensible whatever the target's units.
        if d.target_transform == "standardize":
            y_scaler = Standardizer().fit(y[train_idx])
        else:
            y_scaler = TargetScaler.fit(d.target_transform, y[train_idx])
    if target.multilabel and cfg.train.class_weight is not None:
        raise ConfigError(
            "config error at train.class_weight: class weights weigh one class per row; a multi-label target"
            " has a set of labels per row (data.weight weighs rows)"
        )
    weights = class_weights(cfg.train.class_weight, target, y[train_idx])
    n_out = len(target.classes) if target.task == "classification" else y.shape[1]
    if target.multilabel:
        y = np.ascontiguousarray(y, dtype=dtype)  # 0/1 per label, as the sigmoid outputs' targets
    summary = _summary(table, cols, target, pre, y, src, n_read, notes, weights)
    empty = (np.empty((0, pre.width), dtype), y[:0])
    prepared = Prepared(
        target.task,
        target.why,
        target.classes,
        cols.targets,
        cols.id,
        pre,
        y_scaler,
        n_out,
        weights,
        empty,
        empty,
        empty,
        summary,
        notes,
    )
    prepared.split_rows = {"train": train_idx, "validation": val_idx, "test": test_idx}
    prepared.sample_weight, prepared.weight_name = sample_weight, cols.weight
    prepared.multilabel, prepared.label_separator = target.multilabel, target.separator
    if keep_tables:
        prepared.tables = {
            name: table.take(arrow(np.asarray(idx, np.int64))) for name, idx in prepared.split_rows.items()
        }
        if test_table is not None:
            prepared.tables["test"] = test_table[0]
    if not encode:
        return prepared
    parts = (train_idx, val_idx, test_idx)
    policy = "ignore" if pre.handle_unknown == "error" else None  # refused above, or noted
    Xs = _encode_split(table, pre, parts, dtype, first_row, src.name, policy)
    del table
    if target.task == "regression":
        y = np.ascontiguousarray(y_scaler.transform(y) if y_scaler is not None else y, dtype=dtype)
    prepared.train, prepared.val, prepared.test = ((X, y[idx]) for X, idx in zip(Xs, parts))
    if test_table is not None:
        t, rows, y_test, _ = test_table
        X_test = pre.transform(t, dtype, rows, str(d.test_path), unknown=policy)
        if target.multilabel:
            y_test = np.ascontiguousarray(y_test, dtype=dtype)
        if target.task == "regression":
            y_test = np.ascontiguousarray(y_scaler.transform(y_test) if y_scaler is not None else y_test, dtype=dtype)
        prepared.test = (X_test, y_test)
    return prepared


def _check_weight_sums(weights: dict[str, np.ndarray], name: str, src) -> None:
    """A split with rows whose weights are all 0 has no weighted mean: refused, naming it."""
    for split_name, w in weights.items():
        if w.size and not w.sum() > 0:
            which = {"train": "training", "val": "validation"}.get(split_name, split_name)
            raise DataError(
                f"{src}: every one of the {w.size} {which} rows has weight 0 in column '{name}' (data.weight);"
                " a weighted mean needs some weight"
            )


def _unseen_categories(
    table: pa.Table,
    pre: Preprocessor,
    rows: RowNumbers,
    src: Path,
    notes: list[str],
    test_table=None,
    held: str = "validation/test",
) -> None:
    """A category only validation or test rows have (the one-hot columns are the training
    split's): refused under handle_unknown: error, as predict would refuse it; with a note
    under infrequent (the column's infrequent level, all zeros without one) and ignore (all
    zeros), as predict would encode it."""
    found = [(c, w, v, rows, src, held) for c, w, v in pre.unseen_categories(table)]
    if test_table is not None:
        t, test_rows, _, test_path = test_table
        found += [(c, w, v, test_rows, test_path, "test") for c, w, v in pre.unseen_categories(t)]
    for col, where, value, rows, src, held in found:
        n, row = len(where), row_number(rows, where[0])
        if pre.handle_unknown == "error":
            known = short_list(col.categories)
            what = (
                f"category {value!r} is in {n} {held} row(s) but not in the training split (known: {known})"
                if value is not None
                else f"{n} {held} row(s) have a missing cell but the training split has none"
                f" (no 'missing' category; known: {known})"
            )
            raise DataError(
                f"{src}: row {row}, column '{col.name}': {what};"
                " set data.handle_unknown: ignore (all zeros) or infrequent to encode unseen categories"
            )
        notes.append(pre.unseen_note(col, n, value, row, held))


def _encode_split(
    table: pa.Table, pre: Preprocessor, parts, dtype, first_row: RowNumbers, source: str, unknown: str | None = None
) -> list[np.ndarray]:
    """Encode the table a chunk of rows at a time straight into each split's matrix, in the
    split's row order: the table and the splits are all that is ever held (no whole-table
    matrix to copy the splits out of)."""
    which = np.empty(table.num_rows, np.int8)
    where = np.empty(table.num_rows, np.int64)
    for k, idx in enumerate(parts):
        which[idx], where[idx] = k, np.arange(len(idx))
    out = [np.empty((len(idx), pre.width), dtype) for idx in parts]
    for start in range(0, table.num_rows, CHUNK_ROWS):
        # A category only the validation or test rows have was refused or noted already
        # (_unseen_categories); it is encoded as predict would.
        block = pre.transform(table.slice(start, CHUNK_ROWS), dtype, rows_from(first_row, start), source, unknown)
        w, pos = which[start : start + len(block)], where[start : start + len(block)]
        for k, X in enumerate(out):
            rows = w == k
            X[pos[rows]] = block[rows]
    return out


def _summary(
    table: pa.Table,
    cols: Columns,
    target: Target,
    pre: Preprocessor,
    y: np.ndarray,
    src: Path,
    n_read: int,
    notes: list[str],
    weights: np.ndarray | None,
) -> DataSummary:
    """What the network will see: one record per column, the task and why, the input width."""
    columns = []
    kinds = {c.name: c for c in pre.columns}
    types = dict(zip(table.schema.names, table.schema.types))
    # Plain numeric columns: missing counts and ranges a block of many columns at a time.
    plain = [n for n in table.column_names if is_plain_numeric(types[n])]
    stats = {}
    for batch in column_batches(table.num_rows, plain):
        V = numeric_block(table, batch, check=False)
        holes = np.isnan(V)
        missing = holes.sum(axis=0).tolist()
        with np.errstate(all="ignore"):
            lo, hi = np.where(holes, np.inf, V).min(axis=0).tolist(), np.where(holes, -np.inf, V).max(axis=0).tolist()
        for j, n in enumerate(batch):
            stats[n] = (missing[j], lo[j], hi[j])

    def describe(name: str, role: str) -> ColumnSummary:
        arr = table.column(name)
        t = types[name]
        blocked = stats.get(name)
        if blocked is not None and pa.types.is_floating(t) and blocked[0] != arr.null_count:
            blocked = None  # NaN values besides missing cells: pyarrow's min and max, as before
        count = blocked[0] if blocked is not None else int(missing_mask(arr).sum())
        col = kinds.get(name)
        kind = col.kind if col else cols.kinds.get(name) or infer_kind(t)
        rec = ColumnSummary(name, role, str(t), count, {"dropped": "drop", "id": "-", "weight": "-"}.get(role, kind))
        if col is not None and col.kind == "categorical":
            rec.categories = col.categories
        elif kind in ("numeric", "date") and role != "dropped" and t != pa.null():
            if blocked is not None and not (pa.types.is_integer(t) and max(abs(blocked[1]), abs(blocked[2])) > 2**53):
                lo, hi = (None, None) if count == len(arr) else blocked[1:]
                if pa.types.is_integer(t) and lo is not None:
                    lo, hi = int(lo), int(hi)
            elif is_text(t) and col is not None and col.format and count < len(arr):
                # Text dates: the earliest and latest day as the file writes them, not the first
                # and last string ('31/08/2020' sorts after '20/08/2021').
                parsed = pc.strptime(pc.utf8_trim_whitespace(arr), format=col.format, unit="s", error_is_null=True)
                lo, hi = (arr[pc.index(parsed, v).as_py()].as_py().strip() for v in pc.min_max(parsed).values())
            else:
                mm = pc.min_max(arr)
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if t == pa.float32():  # read as float32: show the decimal the file had
                lo, hi = (None if v is None else float(f"{v:.7g}") for v in (lo, hi))
            rec.min, rec.max = _jsonable(lo), _jsonable(hi)
        return rec

    for name in table.column_names:
        if name in kinds:
            role = "feature"
        elif name in cols.targets:
            role = "target"
        elif name == cols.id:
            role = "id"
        elif name == cols.weight:
            role = "weight"
        else:
            role = "dropped"
        rec = describe(name, role)
        if role == "target" and target.separator is not None:
            rec.missing = 0  # an empty cell of label sets is the empty set, not a missing target
        columns.append(rec)
    out = DataSummary(
        str(src),
        int(n_read),
        int(table.num_rows),
        target.task,
        target.why,
        cols.targets,
        cols.id,
        pre.width,
        columns,
        notes,
        weight=cols.weight or None,
    )
    if target.multilabel:
        counts = np.asarray(y).sum(axis=0)
        out.classes = [ClassCount(c, int(n)) for c, n in zip(target.classes, counts)]
        out.multilabel = True
    elif target.task == "classification":
        counts = np.bincount(y, minlength=len(target.classes))
        out.classes = [
            ClassCount(c, int(n), float(weights[k]) if weights is not None else None)
            for k, (c, n) in enumerate(zip(target.classes, counts))
        ]
    return out


def _jsonable(v):
    if v is None or isinstance(v, (int, float, str, bool)):
        return v
    return str(v)  # dates and timestamps: ISO text


def _may_calibrate(cfg: Config, widths) -> bool:
    """Whether the run's thread choice may time training steps on a copy of the network and
    optimizer: a first-order optimizer (the full-batch methods use the rule alone) and
    ``run.threads.may_calibrate``."""
    first_order = issubclass(OPTIMIZERS.lookup(cfg.train.optimizer), Optimizer)
    return first_order and may_calibrate(cfg.train.threads, widths, cfg.train.batch_size or 1)


def check_training_memory(cfg: Config, widths: list[int], dtype, eval_rows: int = 0) -> None:
    """Refuse, before allocating anything, a network that with its training would not fit in
    memory, naming the config key to change: train.batch_size when the network fits and a
    training batch's activations are what overflows, else model.hidden."""
    itemsize = np.dtype(dtype).itemsize
    t = cfg.train
    state = optimizer_bytes(
        widths, dtype, t.optimizer, momentum=t.momentum, history_size=t.history_size, cg_max_iter=t.cg_max_iter
    )
    best = (t.patience is not None) * n_params(widths) * itemsize  # early stopping's best weights
    model = network_bytes(widths, dtype) + state + best
    # metrics run forward passes of up to EVAL_CHUNK rows, keeping 2 buffers a layer
    model += activation_bytes(widths, min(eval_rows, EVAL_CHUNK), dtype) // STEP_BUFFERS * 2
    # batch_size None (newton_cg, lbfgs): the whole training set is one batch
    batch = activation_bytes(widths, cfg.train.batch_size or max(eval_rows, 1), dtype)
    if _may_calibrate(cfg, widths):
        # before the run's first step, the thread calibration trains a scratch copy of the
        # network and optimizer beside the run's parameters and optimizer state
        calibration = n_params(widths) * itemsize + network_bytes(widths, dtype) + 2 * state
        model = max(model, calibration)
    require(
        model + batch,
        f"training a {describe_widths(widths)} network ({n_params(widths):,} parameters: their gradients,"
        " optimizer state and a batch's activations)",
        key="train.batch_size" if fits(model) and batch > model else "model.hidden",
    )


def build_model(
    cfg: Config,
    n_inputs: int,
    n_outputs: int,
    task: str,
    dtype: str | None = None,
    eval_rows: int = 0,
    class_weight: np.ndarray | None = None,
    preprocessor: Preprocessor | None = None,
) -> Network:
    """The config's network, once its memory is checked (``eval_rows``: the most rows metrics
    are computed on). With a ``preprocessor`` that embeds categorical columns, the hidden
    modules read the plain columns (``select``) beside one ``embedding`` per embedded column
    (``concat``)."""
    dtype = dtype or cfg.train.dtype
    settings = dict(seed=cfg.seed, dtype=dtype, init=cfg.model.init, task=task, class_weight=class_weight)
    settings["loss_params"] = cfg.model.loss_params
    embedded = preprocessor is not None and bool(
        preprocessor.embeddings or preprocessor.ple_embeddings or preprocessor.periodic_embeddings
    )
    if cfg.model.is_mlp and not embedded:
        widths = [n_inputs, *cfg.model.hidden, n_outputs]
        check_training_memory(cfg, widths, dtype, eval_rows)
        return MLP(widths, cfg.model.activation, default_loss(cfg, task), **settings)
    key = "model.layers" if cfg.model.layers is not None else "model.hidden"
    if embedded:
        x = Input(int(n_inputs))
        out = Linear(int(n_outputs))(chain(cfg.model.layer_list(), input_front(preprocessor, x), key))
    else:
        x, out = layer_graph(cfg.model.layer_list(), n_inputs, n_outputs, key)  # widths checked, nothing allocated
    widths = [n_inputs] + [n.width for n in _nodes(out) if isinstance(n.module, Linear)]
    check_training_memory(cfg, widths, dtype, eval_rows)
    if any(isinstance(n.module, BatchNorm) for n in _nodes(out)) and cfg.train.batch_size == 1:
        raise ConfigError(
            "config error at train.batch_size: batch_norm in training needs at least 2 rows per batch; got 1",
            argument="train.batch_size",
        )
    # model.activation (default relu) is what model.hidden puts after each linear; a layer list
    # names its own activations, so unless the config sets it the graph's first one picks the
    # init and names the network: the default made a tanh list a He-initialised "relu network".
    activation = (
        cfg.model.activation if cfg.model.layers is None or "activation" in cfg.model.model_fields_set else None
    )
    return Network(x, out, default_loss(cfg, task), activation=activation, **settings)


def _nodes(out):
    return graph_nodes(out)[1:]


def input_front(pre: Preprocessor, x: Node) -> Node:
    """What the hidden modules read from the input ``x`` (``pre``'s columns): the plain columns
    (``select``), one ``embedding`` per embedded categorical column and, per piecewise-linear
    column with data.ple_embedding, its columns through a ``linear`` and a ``relu`` of their own,
    and, per data.numeric: periodic column, its ``periodic`` sines and cosines (through a
    ``linear`` and a ``relu`` of their own with data.periodic_embedding), side by side (``concat``)."""
    parts = [Select(columns=pre.plain_columns)(x)] if pre.plain_columns else []
    parts += [Embedding(column=off, categories=n, dim=dim)(x) for off, n, dim in pre.embeddings]
    parts += [Activation("relu")(Linear(dim)(Select(columns=cols)(x))) for cols, dim in pre.ple_embeddings]
    for off, k, sigma, dim in pre.periodic_embeddings:
        h = Periodic(frequencies=k, sigma=sigma)(Select(columns=[off])(x))
        parts.append(h if dim is None else Activation("relu")(Linear(dim)(h)))
    return Concat()(*parts) if len(parts) > 1 else parts[0]


def write_split(prepared: Prepared, folder: str | Path) -> dict[str, str]:
    """Each split's rows (``prepare(..., keep_tables=True)``), as read from the file (missing-
    value tokens already missing), into FOLDER/train.csv, validation.csv and test.csv, in the
    order training used them; each file written atomically. Returns the paths written."""
    import pyarrow.csv as pacsv

    from mlpbp.io import atomic_open

    folder = Path(folder)
    written = {}
    for name, table in prepared.tables.items():
        path = folder / f"{name}.csv"
        with atomic_open(path, "wb") as f:
            pacsv.write_csv(table, f)
        written[name] = str(path)
    return written
