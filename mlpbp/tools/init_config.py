"""``mlpbp init``: a complete, commented starter config for a table, read with the same inference
as ``mlpbp data`` and ``mlpbp train``: every column's kind, the missing-cell and category
handling, the task and the default recipe (run/recipe.py), each with a comment saying why. The
config trains as written; every value in it is what training would choose by itself."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import yaml

from mlpbp.data.arrow import missing_mask
from mlpbp.data.cells import _NUMBER, NA_VALUES, apply_na_values, infer_cells, is_text
from mlpbp.data.tables import read_estimate, read_table
from mlpbp.errors import ConfigError, DataError
from mlpbp.io import write_text
from mlpbp.results import ABSENT
from mlpbp.run.config import config_from_dict
from mlpbp.run.footprint import check_table
from mlpbp.run.prepare import prepare
from mlpbp.run.recipe import choose
from mlpbp.run.summary import ColumnSummary


@dataclass
class StarterConfig:
    """What ``init`` wrote: the file, its text, and the choices it made."""

    path: Path
    text: str
    task: str
    why: str
    rows: int


def _q(value) -> str:
    """A YAML scalar or flow collection, as safe_dump writes it on one line."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _stray_tokens(arr) -> list[str]:
    """A text column's cells that are not numbers, when nearly all the others are: the tokens a
    file uses for missing (``?``, ``unknown``), to list in data.na_values."""
    if not is_text(arr.type):
        return []
    present = ~missing_mask(arr)
    n = int(present.sum())
    numbers = np.asarray(pc.fill_null(pc.match_substring_regex(arr, _NUMBER), False).to_numpy(zero_copy_only=False))
    if n == 0 or numbers.sum() < 0.8 * n or numbers.sum() == n:
        return []
    bad = pc.unique(pc.utf8_trim_whitespace(arr.filter(~numbers & present))).to_pylist()
    return sorted(bad) if len(bad) <= 5 else []


def _plain_text(col, name: str) -> bool:
    """Cells that are text as training reads them: not dates (distinct days are not names),
    nor numbers that training refuses (the starter config would hide that column instead)."""
    try:
        return infer_cells(col, name, None, None) is None
    except DataError:
        return False  # prepare below refuses the column, naming it and the fix


def starter_config(data: str | Path, target: str, out: str | Path) -> StarterConfig:
    """The starter config for table ``data`` predicting ``target``, to be written at ``out``
    (its data.path is written relative to that file's folder)."""
    data, out = Path(data), Path(out)
    check_table("data", read_estimate(data))  # the table too big for memory: refused before reading
    raw = read_table(data)
    table, _ = apply_na_values(raw.table, [])
    if target not in table.column_names and target.strip() not in table.column_names:
        raise DataError(f"{data}: target column '{target}' not found (columns: {', '.join(table.column_names)})")
    target = target if target in table.column_names else target.strip()
    rel = os.path.relpath(data.resolve(), out.resolve().parent)
    na_values = sorted({t for n in table.column_names if n != target for t in _stray_tokens(table.column(n))})
    na_values = [t for t in na_values if t not in NA_VALUES]
    d = {"path": rel, "target": target, **({"na_values": na_values} if na_values else {})}
    drop, ident = [], None
    # Columns that look like names or IDs (more distinct text values than data.max_categories,
    # most of them once): the id (the first with every value distinct), else dropped.
    for name in table.column_names:
        col = table.column(name)
        if name == target or not is_text(col.type):
            continue
        distinct = pc.count_distinct(col).as_py()
        if distinct > 50 and distinct > table.num_rows / 2 and _plain_text(col, name):
            if ident is None and distinct == table.num_rows - col.null_count:
                ident = name
            else:
                drop.append(name)
    if ident:
        d["id"] = ident
    if drop:
        d["drop"] = drop
    cfg = config_from_dict({"data": d}, base_dir=out.resolve().parent)
    raw = table = col = None  # prepare reads the table again: not beside this first read
    try:
        p = prepare(cfg, encode=False)
    except (DataError, ConfigError) as e:
        raise DataError(f"cannot write a starter config for {data}: {e}") from None
    pre, s = p.preprocessor, p.summary
    n_train = round(s.rows_used * (1 - cfg.data.test_fraction - cfg.data.validation_fraction))
    recipe = choose(n_train, pre.encoded_width, validation=True)
    missing = {c.name: c.missing for c in s.columns}
    records = {c.name: c for c in s.columns}
    rw = recipe
    one = len(rw["model.hidden"]) == 1
    lines = [
        f"# Starter config for {data.name}, written by `mlpbp init`: {s.rows:,} rows, {len(s.columns)} columns.",
        "# Every value is what `mlpbp train` would choose by itself (docs/how-to/tabular.md); edit any of them.",
        _kv(0, "seed", 0, "one seed: the split, the initial weights and the shuffling"),
        "data:",
        _kv(2, "path", rel, "relative to this file's folder"),
        _kv(2, "target", target, "the column to predict"),
        _kv(2, "task", p.task, s.why),
    ]
    if ident:
        lines.append(_kv(2, "id", ident, "every value distinct: an identifier, never a feature (predict copies it)"))
    if drop:
        lines.append(_kv(2, "drop", drop, "many distinct text values, most once: names or IDs, not categories"))
    if na_values:
        lines.append(_kv(2, "na_values", na_values, "cells of numeric columns that are not numbers: read as missing"))
    lines.append("  columns:" + " " * 22 + "# each feature's kind, as inferred from its cells")
    formats = {}
    for col in pre.columns:
        rec = records[col.name]
        lines.append(_kv(4, col.name, col.kind, _column_why(col, missing.get(col.name, 0), rec)))
        if col.format:
            formats[col.name] = col.format
    if formats:
        lines.append(_kv(2, "date_format", formats, "the format its text dates were recognised in"))
    holes = [n for n in pre.inputs if missing.get(n)]
    shown = ", ".join(holes[:4]) + (", ..." if len(holes) > 4 else "")
    lines.append(
        _kv(
            2,
            "missing",
            "impute",
            f"{len(holes)} column(s) have missing cells ({shown}): numbers get the training median, categories a"
            " 'missing' level; error refuses them, drop_rows drops their rows"
            if holes
            else "none here; a later file's are filled (median, 'missing' level); error refuses them",
        )
    )
    lines.append(
        _kv(
            2,
            "handle_unknown",
            "infrequent",
            "a category training never saw joins the 'infrequent' level; error refuses it",
        )
    )
    lines.append(_kv(2, "min_frequency", 5, "categories with fewer training rows share one 'infrequent' level"))
    numeric = {
        c.name: "periodic" if c.periodic is not None else c.transform.kind
        for c in pre.columns
        if c.kind == "numeric" and c.transform is not None
    }
    if numeric:
        logged, ranked, waved = (
            [n for n, k in numeric.items() if k == kind] for kind in ("log1p", "quantile", "periodic")
        )
        why = (
            (f"periodic embeddings for the coordinates {', '.join(waved)}; " if waved else "")
            + (f"log1p for the right-skewed, never negative {', '.join(logged)}; " if logged else "")
            + (f"quantile to a normal for the other skewed {', '.join(ranked)}; " if ranked else "")
        )
        why += "standardize the rest"
        lines.append(_kv(2, "numeric", numeric, f"auto: {why}"))
    lines += [
        _kv(2, "test_fraction", 0.2, "held out for the final metrics (or data.test_path: a test file)"),
        _kv(2, "validation_fraction", 0.1, "for early stopping and the plateau schedule"),
        "model:",
        _kv(
            2,
            "hidden",
            rw["model.hidden"],
            f"recipe: {'one layer' if one else 'two layers'} of"
            f" clamp(2^ceil(log2(2 x {pre.encoded_width} inputs)), 64, 512)"
            + ("; two from 5,000 training rows" if one else ""),
        ),
        _kv(2, "activation", "relu", "max(0, z), He initialisation"),
        "train:",
        _kv(2, "optimizer", "adamw", "recipe: Adam with decoupled weight decay"),
        _kv(2, "learning_rate", rw["train.learning_rate"], "recipe: 0.002 under 20,000 training rows, else 0.001"),
        _kv(
            2,
            "weight_decay",
            rw["train.weight_decay"],
            f"recipe: clamp(300 / {n_train} training rows, 0.01, 1): strong for small tables, which overfit fast",
        ),
        _kv(2, "batch_size", rw["train.batch_size"], "recipe: clamp(2^round(log2(training rows / 100)), 32, 512)"),
        _kv(2, "epochs", rw["train.epochs"], "recipe: about 8,000 steps, in [30, 500]; early stopping ends sooner"),
        _kv(2, "warmup", rw["train.warmup"], "recipe: epochs whose learning rate rises linearly to learning_rate"),
        _kv(2, "schedule", "plateau", "recipe: halve the rate when the validation loss stalls for step_size epochs"),
        _kv(2, "step_size", rw["train.step_size"], "patience / 3"),
        _kv(
            2,
            "patience",
            rw["train.patience"],
            "recipe: stop after this many epochs without a better validation loss, keeping the best weights",
        ),
    ]
    if p.task == "classification":
        counts = [c.count for c in s.classes]
        if min(counts) * 3 < max(counts):
            lines.append(
                f"  # class_weight: balanced    # the classes are imbalanced ({min(counts)} vs {max(counts)} rows):"
                " weighs the rare ones up (better recall and balanced accuracy, lower accuracy)"
            )
    text = "\n".join(lines) + "\n"
    config_from_dict(yaml.safe_load(text), base_dir=out.resolve().parent)  # it loads as written
    return StarterConfig(out, text, p.task, s.why, s.rows)


def _kv(indent: int, key: str, value, why: str) -> str:
    """One ``key: value`` line, its comment aligned at column 32 (or two spaces after)."""
    head = f"{' ' * indent}{_q(key)}: {_q(value)}"
    return f"{head}{' ' * max(2, 32 - len(head))}# {why}"


def _bound(v) -> object:
    """A column's min or max as the summary's JSON gives it (None where there is none)."""
    return None if v is ABSENT else v


def _column_why(col, holes: int, rec: ColumnSummary) -> str:
    if col.kind == "categorical":
        k = len(col.categories)
        shown = ", ".join(col.categories[:4]) + (", ..." if k > 4 else "")
        how = f"an embedding of {col.dim} (auto: more than 16 levels)" if col.embedded else "one-hot"
        what = f"text or booleans: {k} levels ({shown}), {how}"
    elif col.kind == "numeric":
        what = f"numbers, {_bound(rec.min)} .. {_bound(rec.max)}"
    elif col.kind == "date":
        what = f"dates, {_bound(rec.min)} .. {_bound(rec.max)}: days since 1970-01-01"
    elif col.kind == "time":
        what = "times of day: hour and minute as cyclic (sin, cos) pairs"
    else:
        what = "date and time: days since 1970-01-01 plus the time of day as cyclic pairs"
    return what + (f"; {holes} missing" if holes else "")


def write_starter_config(data: str | Path, target: str, out: str | Path, force: bool = False) -> StarterConfig:
    """Write the starter config to ``out`` (atomically); an existing file is kept unless ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    starter = starter_config(data, target, out)
    write_text(out, starter.text)
    return starter
