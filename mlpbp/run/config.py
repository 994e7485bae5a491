"""The run configuration: a YAML file, validated by pydantic models, with KEY=VALUE overrides.

Every user mistake (missing file, YAML syntax, unknown key, bad value) becomes one
`ConfigError` line that names the key path and what is allowed, so the CLI can print it as is.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema

from mlpbp.data import BUNDLED, GENERATORS, Task
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.dtypes import DTYPES
from mlpbp.engine.init import INITS
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.optim import OPTIMIZERS, optimizer_default, optimizer_keys
from mlpbp.engine.registry import Registry
from mlpbp.engine.schedules import SCHEDULES
from mlpbp.errors import ConfigError


@dataclass(frozen=True)
class OneOf:
    """A string that must be one of a registry's names, read when validating (and when the JSON
    Schema is generated), so something registered after this module was imported is accepted."""

    names: Callable[[], Iterable[str]]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        out = handler(schema)
        out["enum"] = list(self.names())
        return out

    def _check(self, value: str) -> str:
        allowed = list(self.names())
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Input should be one of {', '.join(map(repr, allowed))}{hint}")
        return value


def one_of(registry: Registry) -> OneOf:
    return OneOf(registry.names)


def dataset_names() -> tuple[str, ...]:
    return (*BUNDLED, *GENERATORS)


DatasetName = Annotated[str, OneOf(dataset_names)]


def _not_bool(value: Any) -> Any:
    # Lax float parsing turns `true` into 1.0; a boolean where a number belongs is a typo.
    if isinstance(value, bool):
        raise ValueError("Input should be a number, not a boolean")
    return value


def _threads(value: Any) -> Any:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError("should be 'auto' or a whole number of threads >= 1")


def _label_keys(value: Any) -> Any:
    # YAML reads `{0: 1.0, 1: 5.0}` with integer keys; class labels are text ('0', 'true').
    if isinstance(value, dict):
        return {(str(k).lower() if isinstance(k, bool) else str(k)): v for k, v in value.items()}
    return value


# Lax float (so PyYAML's string "1e-3" still works) but no booleans and no inf/nan.
Float = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
# Strict int: rejects booleans and silently truncated floats such as `epochs: 2.5`.
PosInt = Annotated[StrictInt, Field(ge=1)]
Fraction = Annotated[Float, Field(ge=0.0, lt=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


ColumnName = Annotated[str, Field(min_length=1)]
ColumnKind = Literal["numeric", "categorical", "date", "time", "datetime", "drop"]
NumericTransform = Literal["auto", "standardize", "quantile", "log1p", "robust", "none", "ple", "periodic"]
TargetTransform = Literal["standardize", "log1p", "quantile", "none"]
CategoricalEncoding = Literal["onehot", "embedding", "auto"]


def _per_column(kind: Any) -> Any:
    """A value for every column, or a mapping column -> value (the rest take the default)."""
    return kind | dict[ColumnName, kind]


class DataConfig(_Strict):
    _user_set: set = PrivateAttr(default_factory=set)  # the keys the config itself set
    dataset: DatasetName | None = None
    path: str | None = None
    # One column, or a list of columns: multi-output regression.
    target: ColumnName | Annotated[list[ColumnName], Field(min_length=1)] | None = None
    task: Task | None = None
    # Multi-label classification: the target column's cells are label sets split by this ("a|b").
    label_separator: Annotated[str, Field(min_length=1)] | None = None
    # Tables (CSV, TSV, Parquet, NPZ, NPY): which columns are what.
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = None
    features: Annotated[list[ColumnName], Field(min_length=1)] | None = None
    drop: list[ColumnName] = Field(default_factory=list)
    id: ColumnName | None = None
    # A column of per-row weights (survey weights): the loss, metrics and curvature are weighted means.
    weight: ColumnName | None = None
    columns: dict[str, ColumnKind] = Field(default_factory=dict)
    max_classes: Annotated[StrictInt, Field(ge=2)] = 50
    max_categories: PosInt = 50
    # Missing cells: pandas' default tokens (mlpbp.data.cells.NA_VALUES) plus these.
    na_values: list[str] = Field(default_factory=list)
    # strptime formats (one for every text date column, or per column); default: the recognised list
    date_format: _per_column(Annotated[str, Field(min_length=2)]) | None = None
    bad_lines: Literal["error", "skip"] = "error"
    missing: Literal["error", "drop_rows", "impute"] = "impute"
    # infrequent: a category unseen in training -> the column's "infrequent" level (all zeros without one)
    handle_unknown: Literal["error", "ignore", "infrequent"] = "infrequent"
    # categories with fewer training rows than this share one "infrequent" level (1: none merged)
    min_frequency: PosInt = 5
    # numeric columns: auto (standardize; log1p or quantile when skewed), standardize, quantile, log1p, robust, none
    numeric: _per_column(NumericTransform) = "auto"
    # data.numeric: ple: the quantile bins of the piecewise-linear encoding (one input column each)
    ple_bins: Annotated[StrictInt, Field(ge=1, le=1024)] = 16
    # data.numeric: ple: a learned embedding (linear + ReLU) of that width per column; null: none
    ple_embedding: PosInt | None = None
    # data.numeric: periodic: the trainable frequencies per column (2 input columns each: sin, cos)
    periodic_frequencies: Annotated[StrictInt, Field(ge=1, le=1024)] = 16
    # data.numeric: periodic: the frequencies' initial standard deviation (in standard deviations⁻¹)
    periodic_sigma: Annotated[Float, Field(gt=0.0)] = 1.0
    # data.numeric: periodic: the width of the linear + ReLU after the sines and cosines; null: none
    periodic_embedding: PosInt | None = 16
    # categorical columns: auto (one-hot up to 16 levels, an embedding above), onehot, embedding
    categorical: _per_column(CategoricalEncoding) = "auto"
    # an embedding's width (one for every embedded column, or per column); null: min(600, 1.6·levels^0.56)
    embedding_dim: _per_column(PosInt) | None = None
    # regression targets; default standardize (none when data.standardize is false)
    target_transform: TargetTransform | None = None
    test_path: str | None = None
    test_fraction: Fraction = 0.2
    validation_fraction: Fraction = 0.1
    standardize: StrictBool = True
    # Generators only; `noise: null` means the generator's own default (xor 0.0, others 0.1).
    n_samples: Annotated[StrictInt, Field(ge=2)] = 400
    noise: Annotated[Float, Field(ge=0.0)] | None = None

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        self._user_set = set(self.model_fields_set)  # before the defaults below are filled in
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of 'dataset' (a bundled name) or 'path' (a CSV/NPZ file)")
        if self.test_fraction + self.validation_fraction >= 1.0:
            raise ValueError(
                "test_fraction + validation_fraction must be < 1 so some rows are left to train on"
                f" (got {self.test_fraction} + {self.validation_fraction})"
            )
        targets = self.targets or []
        for name, group in (("features", self.features or []), ("drop", self.drop)):
            both = [c for c in group if c in targets or c == self.id]
            if both:
                role = "a target" if both[0] in targets else "the id"
                raise ValueError(f"column '{both[0]}' is both in {name} and {role}; a column has one role")
        if self.id is not None and self.id in targets:
            raise ValueError(f"column '{self.id}' is both the id and a target")
        if self.label_separator is not None:
            if len(targets) > 1:
                raise ValueError(
                    "label_separator splits one target column into label sets; give one target column"
                    " (several 0/1 columns are a multi-label target without it)"
                )
            if self.task == "regression":
                raise ValueError(
                    "label_separator makes a multi-label classification target; task regression refuses it"
                )
        if self.weight is not None:
            for role, group in (("a target", targets), ("in features", self.features or []), ("in drop", self.drop)):
                if self.weight in group:
                    raise ValueError(f"column '{self.weight}' is both the weight and {role}; a column has one role")
            if self.weight == self.id:
                raise ValueError(f"column '{self.weight}' is both the weight and the id; a column has one role")
            if self.path is None:
                raise ValueError("weight names a column of a table (data.path); bundled and generated sets have none")
        overlap = set(self.features or []) & set(self.drop)
        if overlap:
            raise ValueError(f"column '{sorted(overlap)[0]}' is both in features and in drop")
        if self.test_path is not None and self.path is None:
            raise ValueError("test_path needs data.path (a table); bundled and generated sets split their own rows")
        if self.test_path is not None and "test_fraction" in self.model_fields_set and self.test_fraction > 0:
            raise ValueError("give test_path or test_fraction, not both (test_path's rows are the test split)")
        if self.test_path is not None:
            self.test_fraction = 0.0
        if self.target_transform is None:
            self.target_transform = "standardize" if self.standardize else "none"
        if self.noise is None and self.dataset is not None:
            # Resolve here so the saved config shows the value actually used.
            self.noise = 0.0 if self.dataset == "xor" else 0.1
        return self

    @property
    def targets(self) -> list[str] | None:
        return [self.target] if isinstance(self.target, str) else self.target


class ModelConfig(_Strict):
    hidden: list[PosInt] = Field(default_factory=lambda: [64])
    activation: Annotated[str, one_of(ACTIVATIONS)] = "relu"
    # hidden's shorthand: dropout after each hidden activation, a normalisation before it
    dropout: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.0
    norm: Literal["none", "batch", "layer"] = "none"
    # Every hidden module in order (instead of hidden); the output linear is appended.
    layers: list[Any] | None = None
    # None: resolved once the task is known (cross_entropy / square).
    loss: Annotated[str, one_of(LOSSES)] | None = None
    # the loss's own settings: huber's threshold, quantile's quantile (None: 1.0 and 0.5 for those losses)
    delta: Annotated[Float, Field(gt=0.0)] | None = None
    alpha: Annotated[Float, Field(gt=0.0, lt=1.0)] | None = None
    # None: He for relu-like activations, Glorot otherwise.
    init: Annotated[str, one_of(INITS)] | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        for key, owner, default in (("delta", "huber", 1.0), ("alpha", "quantile", 0.5)):
            if getattr(self, key) is not None and self.loss != owner:
                raise ValueError(f"model.{key} is a setting of loss {owner}, not of {self.loss or 'the default loss'}")
            if self.loss == owner and getattr(self, key) is None:
                setattr(self, key, default)  # the saved config shows the value used
        if self.layers is None:
            return self
        if "hidden" in self.model_fields_set:
            raise ValueError("give model.layers or model.hidden, not both (layers lists every hidden module)")
        shorthand = [k for k in ("dropout", "norm") if k in self.model_fields_set]
        if shorthand:
            raise ValueError(
                f"model.{shorthand[0]} shapes model.hidden; with model.layers, list dropout and norm modules there"
            )
        from mlpbp.engine.graph import check_layers

        try:
            check_layers(self.layers, "model.layers")
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return self

    def layer_list(self) -> list:
        """The hidden modules: ``layers``, or what hidden, activation, norm and dropout say."""
        if self.layers is not None:
            return self.layers
        out = []
        for width in self.hidden:
            out.append({"linear": width})
            if self.norm != "none":
                out.append(f"{self.norm}_norm")
            out.append(self.activation)
            if self.dropout:
                out.append({"dropout": self.dropout})
        return out

    @property
    def loss_params(self) -> dict:
        """The loss's own settings, for the engine (``get_loss(name, **params)``)."""
        return {k: getattr(self, k) for k in ("delta", "alpha") if getattr(self, k) is not None}

    @property
    def is_mlp(self) -> bool:
        """A plain chain of linear and activation layers (built as ``MLP``)."""
        return self.layers is None and self.norm == "none" and not self.dropout


class TrainConfig(_Strict):
    _user_set: set = PrivateAttr(default_factory=set)  # the keys the config itself set
    epochs: PosInt = 40
    # None: 32 for sgd/adam/adamw; all the training rows (full batch) for newton_cg
    batch_size: PosInt | None = None
    optimizer: Annotated[str, one_of(OPTIMIZERS)] = "sgd"
    # None: the optimizer's own default (adam/adamw 0.001), else 0.05
    learning_rate: Annotated[Float, Field(gt=0.0)] | None = None
    momentum: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: StrictBool = False
    beta1: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.9
    beta2: Annotated[Float, Field(ge=0.0, lt=1.0)] = 0.999
    eps: Annotated[Float, Field(gt=0.0)] = 1e-8
    # None: the optimizer's own default (adamw 0.01), else 0.0
    weight_decay: Annotated[Float, Field(ge=0.0)] | None = None
    # lbfgs: iterations per epoch, gradient tolerance, curvature pairs kept
    max_iter: PosInt = 20
    tolerance: Annotated[Float, Field(gt=0.0)] = 1e-5
    history_size: PosInt = 10
    # newton_cg: the curvature CG runs on, its initial Levenberg-Marquardt damping, CG products
    curvature: Literal["gauss_newton", "hessian"] = "gauss_newton"
    damping: Annotated[Float, Field(gt=0.0)] = 1.0
    cg_max_iter: PosInt = 50
    # the top Hessian eigenvalue every N epochs, on a fixed seeded sample of training rows
    sharpness_every: PosInt | None = None
    sharpness_rows: PosInt = 1000
    schedule: Annotated[str, one_of(SCHEDULES)] = "constant"
    step_size: PosInt = 10
    gamma: Annotated[Float, Field(gt=0.0, le=1.0)] = 0.5
    decay: Annotated[Float, Field(ge=0.0)] = 0.01
    # epochs at the start whose learning rate rises linearly to the schedule's
    warmup: Annotated[StrictInt, Field(ge=0)] = 0
    patience: PosInt | None = None
    dtype: Annotated[str, one_of(DTYPES)] = "float32"
    # BLAS threads: "auto" chooses per shape and machine (mlpbp.run.threads), N sets them.
    threads: Annotated[Literal["auto"] | Annotated[int, Field(ge=1)], BeforeValidator(_threads)] = "auto"
    # Per-example loss weights by class: "balanced" (n / (k * count), as scikit-learn) or {label: weight}.
    class_weight: Annotated[
        Literal["balanced"] | dict[str, Annotated[Float, Field(gt=0.0)]] | None, BeforeValidator(_label_keys)
    ] = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        self._user_set = set(self.model_fields_set)  # before the defaults below are filled in
        own, foreign = optimizer_keys(self.optimizer), _optimizer_only_keys()
        for key in sorted(self.model_fields_set & foreign - set(own), key=list(type(self).model_fields).index):
            if getattr(self, key) is not None:
                users = "/".join(n for n in OPTIMIZERS if key in optimizer_keys(n))
                raise ValueError(
                    f"{key} is a key of optimizer {users}, not of {self.optimizer} (which reads {', '.join(own)})"
                )
        for key, fallback in (("learning_rate", 0.05), ("weight_decay", 0.0), ("batch_size", 32)):
            if getattr(self, key) is None:
                setattr(self, key, optimizer_default(self.optimizer, key, missing=fallback))
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: true requires momentum > 0 (got momentum 0.0)")
        return self


def _optimizer_only_keys() -> set[str]:
    """``train:`` keys that some registered optimizer reads and another may not."""
    keys = [set(optimizer_keys(n)) for n in OPTIMIZERS]
    return set.union(*keys) - set.intersection(*keys)


class OutputConfig(_Strict):
    # None only before load_config/config_from_dict fill in runs/<name>.
    dir: str | None = None
    # TensorBoard event files in the output directory (extra mlpbp[tensorboard]): every epoch's
    # record, and histograms of each layer's weights and gradients every histogram_every epochs.
    tensorboard: StrictBool = False
    histogram_every: PosInt | None = 10


Number = StrictInt | Float  # an int stays an int: it decides between an integer and a float range


class ParamSpec(_Strict):
    """One dimension of a search space: a range (low, high, log, step) or a list of choices."""

    low: Number | None = None
    high: Number | None = None
    log: StrictBool = False
    step: Annotated[Number, Field(gt=0)] | None = None
    choices: Annotated[list[Any], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        ranged = (self.low, self.high, self.step) != (None, None, None) or self.log
        if self.choices is not None:
            if ranged:
                raise ValueError("give either choices or a range (low, high, log, step), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices: [...] or a range with both low and high")
        if self.low >= self.high:
            raise ValueError(f"low must be below high (got low {self.low}, high {self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got low {self.low})")
        if self.log and self.step is not None:
            raise ValueError("a log range takes no step")
        return self


class TuneConfig(_Strict):
    """`mlpbp tune`: what to optimise, how to prune, and the space, keyed by dotted config paths."""

    metric: Annotated[str, Field(min_length=1)] = "val_loss"
    # None: inferred from the metric's name (losses and errors fall, accuracies and scores rise).
    direction: Literal["minimize", "maximize"] | None = None
    pruner: Literal["median", "hyperband", "none"] = "median"
    # Epochs a trial trains before it can be pruned (None: a quarter of train.epochs): the first
    # epochs say little about where a run ends (a slow start with momentum, a warm schedule).
    warmup_epochs: Annotated[StrictInt, Field(ge=0)] | None = None
    space: Annotated[dict[str, ParamSpec], Field(min_length=1)]


class Config(_Strict):
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] = 0  # NumPy's generators take seeds >= 0
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    tune: TuneConfig | None = None  # read by `mlpbp tune` only; `train` ignores it

    # Where the config file lives: relative paths written in it (data.path, output.dir) are taken
    # from there, so a config works from any working directory.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate a YAML config file."""
    path = Path(path)
    return config_from_dict(load_raw(path, overrides), base_dir=path.parent, name=path.stem)


def load_raw(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """A YAML config file's mapping with the overrides applied, not yet validated (what
    `mlpbp tune` edits once per trial)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_line(path, exc)) from None
    except RecursionError:  # the YAML composer recurses once per level
        raise ConfigError(f"{path}: nested too deeply (a config needs a few levels)") from None
    if raw is None:
        raw = {}  # an empty file: validation then says what is missing
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (seed, data, model, train, output, tune),"
            f" got {type(raw).__name__}"
        )
    raw = apply_overrides(raw, overrides)
    if _depth(raw) > MAX_DEPTH:
        raise ConfigError(f"{path}: nested more than {MAX_DEPTH} levels deep (a config has 3)")
    return raw


MAX_DEPTH = 32  # a config has 3; validation recurses once per level


def _depth(value, limit: int = MAX_DEPTH + 1) -> int:
    """How many levels of lists and mappings ``value`` nests (counted up to ``limit``), without
    recursion."""
    depth, level = 0, [value]
    while depth < limit:
        containers = [x for x in level if isinstance(x, (dict, list))]
        if not containers:
            break
        depth += 1
        level = [v for x in containers for v in (x.values() if isinstance(x, dict) else x)]
    return depth


def config_from_dict(d: dict, base_dir: Path = Path("."), name: str = "run") -> Config:
    """Validate a plain dict; `name` gives the default output dir runs/<name>."""
    if not isinstance(d, dict):
        raise ConfigError(f"config error: the top level must be a mapping, got {type(d).__name__}")
    try:
        cfg = Config.model_validate(d)
    except ValidationError as exc:
        raise ConfigError(_validation_error_line(exc)) from None
    if cfg.output.dir is None:  # not a path written in the file: from the working directory, as --out
        cfg.output.dir = f"runs/{name}"
    else:
        cfg.output.dir = os.path.normpath(Path(base_dir) / cfg.output.dir)  # an absolute one stays
    if cfg.data.path is not None:  # absolute: the saved config then finds the file from anywhere
        cfg.data.path = str((Path(base_dir) / cfg.data.path).resolve())
    if cfg.data.test_path is not None:
        cfg.data.test_path = str((Path(base_dir) / cfg.data.test_path).resolve())
    cfg._base_dir = Path(base_dir)
    return cfg


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Apply `key.path=value` strings (value parsed as YAML) to a copy of `raw`."""
    import copy

    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise _bad_override(item, "expected KEY=VALUE with a dotted key, e.g. train.learning_rate=0.1")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise _bad_override(item, f"the value is not valid YAML ({problem})") from None
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}  # e.g. --set data.noise=0.2 with no data.noise in the file
            elif not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise _bad_override(item, f"{where} is a value, not a mapping of keys")
            node = child
        node[parts[-1]] = value
    return raw


def _bad_override(item: str, reason: str) -> ConfigError:
    return ConfigError(f"bad override {item!r}: {reason}", argument="overrides", label="override")


def config_to_dict(cfg: Config) -> dict:
    """Plain JSON/YAML-able dict with every default filled in (for saving next to a run),
    less the keys of optimizers other than the one chosen, so that the file loads again."""
    d = cfg.model_dump(mode="json")
    drop = _optimizer_only_keys() - set(optimizer_keys(cfg.train.optimizer))
    d["train"] = {k: v for k, v in d["train"].items() if k not in drop}
    if d.get("tune") is None:  # a config without a search space saves as before
        d.pop("tune", None)
    if d["model"].get("layers") is not None:  # hidden, dropout and norm only shape a hidden list
        for k in ("hidden", "dropout", "norm"):
            d["model"].pop(k, None)
    return d


# ---------------------------------------------------------------------------------------------
# Error messages


def _yaml_error_line(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return _one_line(f"{path}: YAML syntax error{where}: {problem}")


def _validation_error_line(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "top level"
    if first["type"] == "extra_forbidden":
        message = _unknown_key_message(loc)
    else:
        message = first["msg"].removeprefix("Value error, ")
        got = first.get("input")
        # Show the offending value only when it is short; a whole mapping is noise.
        if first["type"] not in ("missing",) and isinstance(got, (int, float, str, bool, type(None))):
            message += f" (got {got!r})" if isinstance(got, str) else f" (got {_yaml_repr(got)})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return _one_line(f"config error at {where}: {message}")


def section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field's annotation holds (``X``, ``X | None``, or ``dict[str, X]``), and
    whether it is a mapping of them (a location then has a key between the field and X's)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        return section_model(args[1])[0], True
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return (models[0], False) if len(models) == 1 and len(args) == 2 and type(None) in args else (None, False)


def _unknown_key_message(loc: tuple) -> str:
    model: type[BaseModel] = Config
    parts = list(loc[:-1])
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        sub, keyed = section_model(field.annotation) if field is not None else (None, False)
        if sub is None:
            break
        if keyed and parts:
            parts.pop(0)
        model = sub
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


def _yaml_repr(value: Any) -> str:
    # Echo values the way the user wrote them in YAML (null/true), not Python's None/True.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())
