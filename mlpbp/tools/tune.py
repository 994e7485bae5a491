"""Hyperparameter search over a config on Optuna: each trial is one training run whose config is
the file's with the sampled values set at dotted keys (``train.learning_rate``), reporting its
metric every epoch so the pruner can end it early.

The search space lives in the config's ``tune:`` section and is checked against the config's
own validation before the first trial: every value a dimension can take is put into the config
and validated, so a key that does not exist, a choice of the wrong type or a key the optimizer
does not read is one ``ConfigError``. A study lives in an Optuna storage (a SQLite file in the
output folder by default; PostgreSQL/MySQL URLs or a journal file to share one study between
processes and machines), so running the same call again resumes it.

Optuna is imported here only, by the functions that need it (extra ``mlpbp[tune]``).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from mlpbp.engine.optim import OPTIMIZERS, optimizer_keys
from mlpbp.errors import ArgumentError, ConfigError, Interrupted, MlpbpError, ResourceError, TrainingError
from mlpbp.io import atomic_open, write_text
from mlpbp.run.config import Config, ParamSpec, TuneConfig, config_from_dict, load_raw, section_model
from mlpbp.run.prepare import Prepared, prepare
from mlpbp.run.trainer import Trainer, TrainHooks
from mlpbp.tools.tune_defaults import DEFAULT_TRIALS  # shared with the CLI's --help

STATES = ("complete", "pruned", "fail", "running", "waiting")
# Words in a metric's name that say which way is better, when tune.direction is not set.
_FALLING = ("loss", "error", "mse", "mae", "rmse")
_RISING = ("accuracy", "f1", "r2", "auc", "precision", "recall")


def import_optuna():
    try:
        import optuna
    except ImportError:
        raise ResourceError("mlpbp tune needs Optuna: pip install 'mlpbp[tune]'") from None
    return optuna


# ---- the search space --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dimension:
    """One searched key: its dotted config path, its range or choices, whether the range is of
    integers, and (for a ``train`` key only some optimizers read, when the optimizer is searched
    too) that it is sampled only in trials whose optimizer reads it."""

    key: str
    spec: ParamSpec
    integer: bool = False
    conditional: bool = False

    def values_to_check(self) -> list:
        if self.spec.choices is not None:
            return list(self.spec.choices)
        return [self.spec.low, self.spec.high]

    def suggest(self, trial) -> Any:
        s = self.spec
        if s.choices is not None:
            # Optuna stores choices as JSON-able scalars; lists (model.hidden) go by their index.
            plain = all(c is None or isinstance(c, bool | int | float | str) for c in s.choices)
            if plain:
                return trial.suggest_categorical(self.key, s.choices)
            labels = [json.dumps(c) for c in s.choices]
            return s.choices[labels.index(trial.suggest_categorical(self.key, labels))]
        if self.integer:
            return trial.suggest_int(self.key, int(s.low), int(s.high), step=int(s.step or 1), log=s.log)
        return trial.suggest_float(self.key, float(s.low), float(s.high), step=s.step, log=s.log)


def set_key(raw: dict, key: str, value: Any) -> None:
    """Put ``value`` at the dotted ``key`` of a raw config mapping (sections created as needed)."""
    *path, last = key.split(".")
    node = raw
    for part in path:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _field_at(key: str):
    """The pydantic field a dotted key names, or a one-line error naming what exists there."""
    import difflib

    parts = key.split(".")
    model, where = Config, []
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields or part == "tune" or (not where and part == "output"):
            allowed = [f for f in fields if f not in ("tune", "output") or where]
            close = difflib.get_close_matches(part, allowed, n=1)
            hint = f"; did you mean '{'.'.join([*where, close[0]])}'?" if close else ""
            section = ".".join(where) or "the top level"
            raise ConfigError(
                f"config error at tune.space: '{key}' is not a config key that can be searched{hint}"
                f" ({section} has: {', '.join(allowed)})"
            )
        where.append(part)
        sub, _ = section_model(fields[part].annotation)
        if i == len(parts) - 1:
            if sub is not None:
                raise ConfigError(
                    f"config error at tune.space: '{key}' is a section; search one of its keys"
                    f" ({', '.join(f'{key}.{f}' for f in sub.model_fields)})"
                )
            return fields[part]
        if sub is None:
            raise ConfigError(f"config error at tune.space: '{'.'.join(where)}' is a value, not a section ('{key}')")
        model = sub


def _is_integer_key(fieldinfo) -> bool:
    """Whether a key takes whole numbers only (a range over it is sampled as integers)."""
    adapter = TypeAdapter(fieldinfo.annotation)
    try:
        adapter.validate_python(2.5)
    except ValidationError:
        try:
            adapter.validate_python(2)
            return True
        except ValidationError:
            return False
    return False


def _only_some() -> set[str]:
    """``train:`` keys some registered optimizers read and others do not."""
    keys = [set(optimizer_keys(n)) for n in OPTIMIZERS]
    return set.union(*keys) - set.intersection(*keys)


def build_space(raw: dict, spec: TuneConfig, base_dir: Path, name: str) -> list[Dimension]:
    """The dimensions of ``spec.space``, each value it can take validated in the config ``raw``.
    The optimizer comes first, so the keys that depend on it can be left out of a trial."""
    optimizers = None
    if "train.optimizer" in spec.space and spec.space["train.optimizer"].choices is not None:
        optimizers = [c for c in spec.space["train.optimizer"].choices if isinstance(c, str) and c in OPTIMIZERS]
    only_some = _only_some()
    dims = []
    for key, ps in spec.space.items():
        fieldinfo = _field_at(key)
        if ps.choices is None and not all(isinstance(v, int | float) for v in (ps.low, ps.high)):
            raise ConfigError(f"config error at tune.space.{key}: a range needs numbers for low and high")
        integer = ps.choices is None and _is_integer_key(fieldinfo)
        if integer and not all(isinstance(v, int) for v in (ps.low, ps.high, ps.step or 1)):
            raise ConfigError(
                f"config error at tune.space.{key}: {key} takes whole numbers, so low, high and step must be"
                f" integers (got low {ps.low}, high {ps.high})"
            )
        train_key = key.removeprefix("train.")
        conditional = key.startswith("train.") and train_key in only_some and optimizers is not None
        dim = Dimension(key, ps, integer, conditional)
        readers = [n for n in (optimizers or []) if train_key in optimizer_keys(n)]
        if conditional and not readers:
            raise ConfigError(
                f"config error at tune.space.{key}: none of the searched optimizers"
                f" ({', '.join(optimizers)}) reads {train_key}"
            )
        for value in dim.values_to_check():
            trial_raw = with_params(raw, {"train.optimizer": readers[0], key: value} if conditional else {key: value})
            try:
                config_from_dict(trial_raw, base_dir, name)
            except ConfigError as e:
                what = f"choice {value!r}" if ps.choices is not None else f"{value!r}"
                why = str(e).removeprefix("config error at ")
                raise ConfigError(f"config error at tune.space.{key}: {what} is not a valid {key}: {why}") from None
        dims.append(dim)
    dims.sort(key=lambda d: d.key != "train.optimizer")
    return dims


def direction_of(spec: TuneConfig) -> str:
    if spec.direction is not None:
        return spec.direction
    name = spec.metric.lower()
    if any(w in name for w in _FALLING):
        return "minimize"
    if any(w in name for w in _RISING):
        return "maximize"
    raise ConfigError(
        f"config error at tune.direction: cannot tell whether {spec.metric!r} should fall or rise;"
        " set tune.direction: minimize or maximize"
    )


def sample(trial, dims: Sequence[Dimension], raw: dict) -> dict:
    """The trial's values: each dimension in turn, leaving out keys the trial's optimizer does
    not read."""
    params: dict = {}
    optimizer = raw.get("train", {}).get("optimizer", "sgd") if isinstance(raw.get("train"), dict) else "sgd"
    for d in dims:
        if d.conditional and d.key.removeprefix("train.") not in optimizer_keys(
            params.get("train.optimizer", optimizer)
        ):
            continue
        params[d.key] = d.suggest(trial)
    return params


def with_params(raw: dict, params: dict) -> dict:
    """The raw config with the values set and no ``tune`` section: what a trial trains. When the
    optimizer is one of them, the file's settings of other optimizers (momentum: 0.9 in a trial
    of adam) are left out, as the trial's optimizer would refuse them."""
    out = copy.deepcopy(raw)
    out.pop("tune", None)
    optimizer = params.get("train.optimizer")
    if isinstance(optimizer, str) and optimizer in OPTIMIZERS and isinstance(out.get("train"), dict):
        foreign = _only_some() - set(optimizer_keys(optimizer))
        out["train"] = {k: v for k, v in out["train"].items() if k not in foreign}
    for key, value in params.items():
        set_key(out, key, value)
    return out


# ---- results -----------------------------------------------------------------------------------


@dataclass
class TrialRecord:
    number: int
    state: str  # one of STATES
    value: float | None
    params: dict
    epochs: int  # epochs trained (a pruned trial: up to where it was stopped)
    seconds: float | None
    out_dir: str | None
    note: str | None = None  # why a trial was pruned without a pruner's say (it diverged)
    last_value: float | None = None  # the metric at the last epoch it reported


@dataclass
class TuneResult:
    study: str
    storage: str  # the URL, its password hidden
    metric: str
    direction: str
    trials: list[TrialRecord]
    best: TrialRecord | None
    counts: dict[str, int]  # trials by state
    out_dir: Path
    best_config: Path | None  # best.yaml
    model_path: Path | None  # the best trial's model, copied into out_dir
    files: list[Path] = field(default_factory=list)  # what was written into out_dir
    stopped: bool = False  # ended by a stop request before reaching its trials
    resumed: int = 0  # finished trials the study had before this call

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.trials)


class TuneHooks:
    """Callbacks for watching a search; all optional no-ops. Trials may run in several threads
    (``n_jobs``): the calls then come from them."""

    def started(self, study: str, storage: str, finished: int, trials: int | None, timeout: float | None) -> None:
        """The study is open; ``finished`` trials were already done (a resumed study)."""

    def trial_start(self, number: int, params: dict) -> None: ...

    def epoch(self, number: int, epoch: int, epochs: int, value: float) -> None: ...

    def trial_end(self, record: TrialRecord, best: TrialRecord | None, finished: int) -> None: ...


# ---- storage -----------------------------------------------------------------------------------


def open_storage(url: str | None, out_dir: Path):
    """An Optuna storage from a URL: None is a SQLite file in ``out_dir``; ``journal:FILE`` a
    journal file (for a shared file system); anything else an SQLAlchemy URL (sqlite:///,
    postgresql://, mysql://). Returns (storage, the URL to show)."""
    optuna = import_optuna()
    if url is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:").removeprefix("//"))
        if not str(path) or path.is_dir():
            raise ArgumentError(f"storage {url!r}: give a journal file, journal:PATH", argument="storage")
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path))), url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError as UrlError

    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":  # the driver mlpbp[postgres] installs, whatever SQLAlchemy's default
            url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        shown = parsed.render_as_string(hide_password=True)
    except UrlError:
        raise ArgumentError(
            f"storage {url!r} is not a storage URL: give sqlite:///FILE, postgresql://USER@HOST/DB,"
            " mysql://USER@HOST/DB or journal:FILE",
            argument="storage",
        ) from None
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    try:
        for attempt in range(6):
            try:
                # heartbeat: a trial whose process died (SIGKILL, a lost machine) is marked failed
                # after the grace period, instead of staying "running" in the study for ever.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120), shown
            except (IntegrityError, ProgrammingError):
                # Several tuners starting on an empty database all create Optuna's tables; all
                # but one then collide (a duplicate type or table). The tables are there next time.
                if attempt == 5:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except ImportError as e:
        raise ResourceError(
            f"storage {shown}: its database driver is not installed ({e}); for PostgreSQL:"
            " pip install 'mlpbp[postgres]'"
        ) from None
    except Exception as e:  # sqlalchemy's OperationalError and kin: the server said no
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ResourceError(f"cannot open the study storage {shown}: {first}") from None


# ---- the search --------------------------------------------------------------------------------


class _Reporter(TrainHooks):
    """Reports the metric to the trial every epoch and ends the run when the pruner says so."""

    def __init__(self, trial, metric: str, epochs: int, hooks: TuneHooks) -> None:
        self.trial, self.metric, self.epochs, self.hooks = trial, metric, epochs, hooks
        self.reported = 0

    def epoch_end(self, record: dict) -> None:
        optuna = import_optuna()
        value = record.get(self.metric)
        if value is None:
            columns = [k for k, v in record.items() if isinstance(v, int | float) and k != "epoch"]
            raise ConfigError(
                f"config error at tune.metric: {self.metric!r} is not in the epoch table (it has: {', '.join(columns)})"
            )
        self.trial.report(float(value), record["epoch"])
        self.reported = record["epoch"]
        self.hooks.epoch(self.trial.number, record["epoch"], self.epochs, float(value))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")


def kept_value(history: list[dict], best_epoch: int | None, metric: str) -> float:
    """The metric of the weights a run keeps: the best epoch's under early stopping, else the last's."""
    record = next((r for r in history if r["epoch"] == best_epoch), None) if best_epoch else None
    return float((record or history[-1])[metric])


def _record(t, dims: Sequence[Dimension]) -> TrialRecord:
    state = t.state.name.lower()
    seconds = (
        (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else None
    )
    choices = {d.key: d for d in dims}
    params = {}
    for k, v in t.params.items():  # lists (model.hidden) were stored as their JSON text
        d = choices.get(k)
        if d is not None and d.spec.choices is not None and isinstance(v, str) and v not in d.spec.choices:
            v = json.loads(v)
        params[k] = v
    return TrialRecord(
        t.number,
        state,
        t.value if state == "complete" else None,
        params,
        len(t.intermediate_values),
        seconds,
        t.user_attrs.get("out_dir"),
        t.user_attrs.get("note"),
        t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None,
    )


class _PreparedCache:
    """Trials share the prepared data while the keys that decide it (data, seed, dtype) agree."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: str | None = None
        self.data: Prepared | None = None

    def get(self, cfg: Config) -> Prepared:
        key = json.dumps([cfg.data.model_dump(mode="json"), cfg.seed, cfg.train.dtype, cfg.train.class_weight])
        with self.lock:
            if key != self.key:
                self.data, self.key = prepare(cfg), key
            return self.data


def tune(
    config: str | Path,
    overrides: Sequence[str] = (),
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    n_jobs: int = 1,
    seed: int | None = None,
    out_dir: str | Path | None = None,
    hooks: TuneHooks | None = None,
    stop: threading.Event | None = None,
    stop_now: threading.Event | None = None,
    plots: bool | None = None,
) -> TuneResult:
    """Search the config's ``tune.space``: ``trials`` finished trials in the study in all
    (counting those of earlier calls and other processes on the same storage), or until
    ``timeout`` seconds, whichever comes first. ``stop`` ends the search once the running trials
    are recorded; ``stop_now`` also stops them (they are recorded as failed, and do not count).
    Writes best.yaml, trials.csv, the best trial's model.npz and (matplotlib installed, or
    ``plots``) history.png and importances.png into ``out_dir`` (default: output.dir)."""
    optuna = import_optuna()
    config = Path(config)
    hooks = hooks or TuneHooks()
    stop = stop if stop is not None else threading.Event()
    stop_now = stop_now if stop_now is not None else threading.Event()
    for value, name in ((trials, "trials"), (n_jobs, "n_jobs")):
        if value is not None and value < 1:
            raise ArgumentError(f"{name} must be at least 1 (got {value})", argument=name)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ArgumentError(f"timeout must be a number of seconds above 0 (got {timeout})", argument="timeout")
    if trials is None and timeout is None:
        trials = DEFAULT_TRIALS

    raw = load_raw(config, overrides)
    cfg = config_from_dict(raw, config.parent, config.stem)
    if cfg.tune is None:
        raise ConfigError(
            f"{config}: no tune: section; add one with a space of dotted keys, e.g."
            " tune: {space: {train.learning_rate: {low: 1.0e-4, high: 0.1, log: true}}}"
        )
    spec = cfg.tune
    direction = direction_of(spec)
    if spec.metric.startswith("val_") and cfg.data.validation_fraction == 0:
        raise ConfigError(
            f"config error at tune.metric: {spec.metric} needs validation rows, but data.validation_fraction is 0"
        )
    dims = build_space(raw, spec, config.parent, config.stem)
    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    study_name = study_name or config.stem
    seed = cfg.seed if seed is None else seed
    store, shown = open_storage(storage, out)

    max_epochs = max(
        [cfg.train.epochs]
        + [int(v) for d in dims if d.key == "train.epochs" for v in d.values_to_check() if isinstance(v, int)]
    )
    warmup = spec.warmup_epochs if spec.warmup_epochs is not None else cfg.train.epochs // 4
    pruner = {
        # the median of the other trials at the same epoch, from the 6th trial and past the warm-up
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=max_epochs),
        "none": lambda: optuna.pruners.NopPruner(),
    }[spec.pruner]()
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    signature = {
        "metric": spec.metric,
        "space": {k: v.model_dump(exclude_defaults=True) for k, v in spec.space.items()},
    }
    try:
        study = optuna.create_study(
            storage=store,
            sampler=sampler,
            pruner=pruner,
            study_name=study_name,
            direction=direction,
            load_if_exists=True,
        )
    except ValueError as e:  # e.g. the stored study optimises the other way
        raise ConfigError(f"study {study_name!r} in {shown}: {e}") from None
    known = study.user_attrs.get("mlpbp")
    if known is None:
        study.set_user_attr("mlpbp", signature)
    elif known != json.loads(json.dumps(signature)):
        raise ConfigError(
            f"study {study_name!r} in {shown} was made with another tune.metric or tune.space;"
            " give another --study name (or storage) for this one"
        )

    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = lambda: len(study.get_trials(deepcopy=False, states=counted))  # noqa: E731
    resumed = finished()
    hooks.started(study_name, shown, resumed, trials, timeout)
    cache = _PreparedCache()
    lock = threading.Lock()
    trial_root = out / "trials"

    def objective(trial) -> float:
        params = sample(trial, dims, raw)
        trial_dir = trial_root / f"{trial.number:04d}"
        trial.set_user_attr("out_dir", str(trial_dir.resolve()))  # found again from any working directory
        hooks.trial_start(trial.number, params)
        trial_raw = with_params(raw, params)
        cfg = config_from_dict(trial_raw, config.parent, config.stem)
        if n_jobs > 1 and cfg.train.threads == "auto":
            cfg.train.threads = 1  # the trials share the cores; BLAS threads would only fight
        cfg.output.dir = str(trial_dir)
        reporter = _Reporter(trial, spec.metric, cfg.train.epochs, hooks)
        trainer = Trainer(cfg, cache.get(cfg), trial_dir, hooks=reporter, stop=stop_now)
        try:
            result = trainer.run()
        except TrainingError as e:  # a diverged run says something about its values: pruned
            trial.set_user_attr("note", str(e).split(";")[0])
            raise optuna.TrialPruned(str(e)) from None
        return kept_value(result.history, result.best_epoch, spec.metric)

    def after_trial(study, frozen) -> None:
        done = finished()
        with lock:
            records = [_record(t, dims) for t in study.get_trials(deepcopy=False)]
            best = _best(records, direction)
            _write_trials_csv(out / "trials.csv", records, dims)
        hooks.trial_end(_record(frozen, dims), best, done)
        if stop.is_set() or stop_now.is_set() or (trials is not None and done >= trials):
            study.stop()

    stopped = False
    if trials is None or resumed < trials:
        try:
            study.optimize(
                objective, timeout=timeout, n_jobs=n_jobs, callbacks=[after_trial], catch=(), gc_after_trial=False
            )
        except Interrupted:  # stop_now: the trial it stopped is recorded as failed
            pass
        stopped = stop.is_set() or stop_now.is_set()
    records = [_record(t, dims) for t in study.get_trials(deepcopy=False)]
    best = _best(records, direction)
    files = [_write_trials_csv(out / "trials.csv", records, dims)]
    best_config = model_path = None
    if best is not None:
        best_config = out / "best.yaml"
        write_text(best_config, _best_yaml(raw, cfg, best, study_name, spec.metric, direction))
        files.append(best_config)
        source = Path(best.out_dir or "") / "model.npz"
        if best.out_dir and source.is_file():  # another machine's trial: its model stays there
            model_path = out / "model.npz"
            with atomic_open(model_path, "wb") as f, open(source, "rb") as src:
                shutil.copyfileobj(src, f)
            files.append(model_path)
    if plots is not False:
        files += plot_study(records, direction, spec.metric, out, study, required=bool(plots))
    counts = {s: sum(r.state == s for r in records) for s in STATES}
    return TuneResult(
        study_name, shown, spec.metric, direction, records, best, counts, out, best_config, model_path, files,
        stopped, resumed,
    )  # fmt: skip


def _best(records: list[TrialRecord], direction: str) -> TrialRecord | None:
    done = [r for r in records if r.state == "complete" and r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    sign = 1 if direction == "minimize" else -1
    return min(done, key=lambda r: (sign * r.value, r.number))


def _write_trials_csv(path: Path, records: list[TrialRecord], dims: Sequence[Dimension]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [d.key for d in dims]
    w.writerow(["number", "state", "value", *keys, "epochs", "seconds", "out_dir", "note"])
    for r in records:
        cells = [json.dumps(r.params[k]) if isinstance(r.params.get(k), list) else r.params.get(k, "") for k in keys]
        value = "" if r.value is None else repr(r.value)
        seconds = "" if r.seconds is None else f"{r.seconds:.3f}"
        w.writerow([r.number, r.state, value, *cells, r.epochs, seconds, r.out_dir or "", r.note or ""])
    write_text(path, buf.getvalue())
    return path


def _best_yaml(raw: dict, cfg: Config, best: TrialRecord, study: str, metric: str, direction: str) -> str:
    """The config as written, with the best trial's values set and no tune section; data.path
    made absolute (the file lives elsewhere now) and output.dir the folder ``best`` beside it."""
    out = with_params(raw, best.params)
    if cfg.data.path is not None:
        set_key(out, "data.path", cfg.data.path)
    set_key(out, "output.dir", "best")
    header = (
        f"# mlpbp tune: trial {best.number} of study {study!r}, {metric} {best.value:.6g} ({direction});\n"
        f"# tuned: {', '.join(f'{k}={json.dumps(v)}' for k, v in best.params.items())}\n"
    )
    return header + yaml.dump(out, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists: ``hidden: [64]`` as a person writes it."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


# ---- pictures ----------------------------------------------------------------------------------


def plot_study(
    records: list[TrialRecord], direction: str, metric: str, out: Path, study, required: bool = False
) -> list[Path]:
    """history.png (each finished trial's value and the best so far) and importances.png
    (Optuna's parameter importances; needs two complete trials). Without matplotlib: nothing,
    unless ``required``."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        if required:
            raise MlpbpError("plots need matplotlib: pip install 'mlpbp[plot]'") from None
        return []
    written = []
    done = [r for r in records if r.state == "complete" and r.value is not None]
    if done:
        fig = Figure(figsize=(7, 4), dpi=100)
        ax = fig.add_subplot()
        xs, ys = [r.number for r in done], [r.value for r in done]
        pick = min if direction == "minimize" else max
        best = [pick(ys[: i + 1]) for i in range(len(ys))]
        ax.plot(xs, ys, "o", ms=4, label="complete trial")
        pruned = [r for r in records if r.state == "pruned"]
        if pruned:
            last = [r.last_value for r in pruned]
            ax.plot([r.number for r in pruned], last, "x", color="0.5", label="pruned (its last value)")
        ax.step(xs, best, where="post", color="C3", label="best so far")
        # The complete trials set the scale: a diverged trial's 1e6 would flatten the rest.
        lo, hi = min(ys), max(ys)
        if lo > 0 and hi / lo > 20:
            ax.set_yscale("log")
            ax.set_ylim(lo / 1.3, hi * 1.3)
        elif hi > lo:
            ax.set_ylim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
        ax.set_xlabel("trial")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(metric)
        ax.set_title(f"optimisation history: best {metric} {pick(ys):.4g}")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, out / "history.png"))
    if len(done) >= 2:
        optuna = import_optuna()
        try:
            importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError):  # e.g. every complete trial has the same values
            importances = {}
        if importances:
            fig = Figure(figsize=(7, 0.6 + 0.45 * len(importances)), dpi=100)
            ax = fig.add_subplot()
            names = list(importances)[::-1]
            ax.barh(names, [importances[n] for n in names], color="C0")
            ax.set_xlabel(f"importance for {metric}")
            ax.set_title(f"parameter importances ({len(done)} complete trials)")
            fig.tight_layout()
            written.append(_save(fig, out / "importances.png"))
    return written


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


__all__ = [
    "Dimension",
    "TrialRecord",
    "TuneHooks",
    "TuneResult",
    "build_space",
    "direction_of",
    "open_storage",
    "tune",
]
