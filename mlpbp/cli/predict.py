"""`mlpbp predict` and `mlpbp evaluate`: a saved model on new rows."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import typer
from rich.markup import escape

from mlpbp.cli import render
from mlpbp.cli.app import command, echo_json, err, out
from mlpbp.data.lazy import is_lazy, open_table
from mlpbp.data.tables import RawTable, read_table
from mlpbp.data.targets import target_missing
from mlpbp.engine.losses import softmax
from mlpbp.errors import DataError
from mlpbp.io import atomic_open, write_text
from mlpbp.run.metrics import chunks
from mlpbp.run.model_file import TrainedModel, load_model

DATA_HELP = "Table with the training feature columns, by name, in any order: CSV/TSV, Parquet, NPZ or NPY."
STRICT_OPT = typer.Option(
    False, "--strict", help="Refuse columns the model does not use, instead of ignoring them with a note."
)


def _note(message: str) -> None:
    err.print(f"[dim]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _model_and_rows(model_path: Path, data: Path, require_target: bool, strict: bool) -> tuple[TrainedModel, RawTable]:
    model = load_model(model_path)
    with render.LoadProgress(err, data) as progress:
        raw = read_table(data, progress=progress)
    for note in raw.notes:
        _note(note)
    header = raw.table.column_names
    missing = [c for c in model.feature_names if c not in header]
    if missing:
        raise DataError(f"{data}: missing feature columns the model was trained on: {', '.join(missing)}")
    targets = model.target_names
    if raw.targets and not set(targets) & set(header):  # NPZ/NPY: y is the file's target, whatever its name
        raw.table = raw.table.rename_columns(
            [
                targets[raw.targets.index(c)] if c in raw.targets and len(targets) == len(raw.targets) else c
                for c in header
            ]
        )
        header = raw.table.column_names
    known = {*model.feature_names, *targets, *([model.id_name] if model.id_name else [])}
    extra = [c for c in header if c not in known]
    if extra and strict:
        raise DataError(
            f"{data}: unexpected columns {', '.join(extra)} (--strict; the model takes its"
            f" {len(model.feature_names)} feature columns, plus {', '.join(repr(t) for t in targets) or 'no target'})"
        )
    if extra:
        _note(f"{data.name}: ignoring column{'s' * (len(extra) > 1)} the model does not use: {', '.join(extra)}")
    if require_target:
        absent = [t for t in targets if t not in header]
        if absent:
            raise DataError(f"{data}: target column '{absent[0]}' not found (columns: {', '.join(header)})")
        gone = target_missing(raw.table, targets)
        if gone.all():
            raise DataError(f"{data}: no rows with a target value ({', '.join(targets)} empty in every row)")
        if gone.any():
            _note(f"{data.name}: skipping {int(gone.sum())} row(s) whose target is missing")
            raw.drop(gone)
        # Metrics need an output for every row scored: drop those training would have dropped.
        holes = _incomplete(model, raw)
        if holes.all():
            raise DataError(
                f"{data}: every row has a missing feature cell, and the model was trained with"
                " data.missing: drop_rows (it predicts nothing for such rows); no rows left to evaluate"
            )
        if holes.any():
            _note(f"{data.name}: skipping {int(holes.sum())} row(s) with a missing feature cell{DROP_ROWS}")
            raw.drop(holes)
    return model, raw


DROP_ROWS = " (the model was trained with data.missing: drop_rows)"


def _incomplete(model: TrainedModel, raw: RawTable) -> np.ndarray:
    """Rows a model trained with data.missing: drop_rows has no prediction for: a missing
    feature cell (none for other models, whose preprocessing fills or refuses them)."""
    if model.preprocessor.missing != "drop_rows":
        return np.zeros(raw.table.num_rows, dtype=bool)
    return model.preprocessor.incomplete_rows(raw.table)


def _format_rows(columns: list[np.ndarray | list[str]]) -> str:
    """CSV lines from equal-length columns of already formatted text."""
    return "".join(",".join(cells) + "\n" for cells in zip(*columns))


def _csv_cell(text: str) -> str:
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _lazy_target(model: TrainedModel) -> str | None:
    names = model.target_names
    return names[0] if len(names) == 1 else None


def _unusable(data: Path, model: TrainedModel, which: np.ndarray, Xc: np.ndarray) -> np.ndarray:
    """The rows of a chunk of a folder's rows (numbered ``which``) with a value that is not
    finite (NaN: a missing cell): refused, naming the first, unless the model was trained with
    data.missing: drop_rows, which has no prediction for them."""
    bad = ~np.isfinite(Xc).all(axis=1)
    if bad.any() and model.preprocessor.missing != "drop_rows":
        r = int(np.argmax(bad))
        c = int(np.argmax(~np.isfinite(Xc[r])))
        raise DataError(
            f"{data}: row {int(which[r])}, column '{model.feature_names[c]}' is {Xc[r, c]}; all values must be"
            " finite (a model trained with data.missing: drop_rows skips such rows)"
        )
    return bad


def _write_lazy_predictions(f, data: Path, model: TrainedModel, X) -> tuple[int, int]:
    """Prediction rows for the raw rows X, written a chunk at a time as they are computed;
    returns (rows, rows left empty)."""
    w = csv.writer(f, lineterminator="\n")
    probs = model.task == "classification" and model.net.loss_name == "cross_entropy"
    if model.task == "classification":
        header = ["prediction"] + ([f"p_{c}" for c in model.classes] if probs else [])
    else:
        m = model.net.widths[-1]
        header = [model.target_name] if m == 1 and model.target_name else [f"output_{j}" for j in range(m)]
    w.writerow(header)
    empty = 0
    for which, Xc in chunks(X):
        holes = _unusable(data, model, which, Xc)
        o = model.predict_outputs(Xc[~holes])
        if model.task == "regression":
            lines = [[repr(float(v)) for v in row] for row in o]
        elif probs:
            lines = [[model.classes[k]] + [f"{v:.6g}" for v in p] for k, p in zip(o.argmax(axis=1), softmax(o))]
        else:
            lines = [[model.classes[k]] for k in o.argmax(axis=1)]
        if holes.any():
            filled = iter(lines)
            lines = [[""] * len(header) if hole else next(filled) for hole in holes.tolist()]
            empty += int(holes.sum())
        w.writerows(lines)
    return X.shape[0], empty


@command
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(..., metavar="DATA", help=DATA_HELP + " A target column is ignored."),
    out_file: Path | None = typer.Option(
        None, "--out", help="Write the predictions CSV here (atomically) instead of stdout."
    ),
    strict: bool = STRICT_OPT,
) -> None:
    """Predict for each row of a table: the class (and its probabilities) or the regression
    values; the id column (when the model was trained with data.id) comes first."""
    if is_lazy(data):  # a folder (.npy pair or Parquet files): rows read and written a chunk at a time
        model = load_model(model_path)
        X, _, _, _ = open_table(data, model.feature_names, _lazy_target(model), False)
        if out_file is None:
            n, empty = _write_lazy_predictions(sys.stdout, data, model, X)
        else:
            with atomic_open(out_file) as f:
                n, empty = _write_lazy_predictions(f, data, model, X)
            err.print(f"wrote {n} predictions{f' ({empty} empty)' if empty else ''} to {out_file}", highlight=False)
        if empty:
            _note(f"{data.name}: {empty} row(s) with a value that is not finite get an empty prediction{DROP_ROWS}")
        return
    model, raw = _model_and_rows(model_path, data, require_target=False, strict=strict)
    # One output line per input row, in order: a row the model has no prediction for (a missing
    # cell under data.missing: drop_rows) gets empty cells, so the lines still join the input.
    holes = _incomplete(model, raw)
    ids = raw.table.column(model.id_name) if model.id_name in raw.table.column_names else None
    if holes.any():
        _note(f"{data.name}: {int(holes.sum())} row(s) with a missing feature cell get an empty prediction{DROP_ROWS}")
        raw.drop(holes)
    o = model.predict_outputs(raw.table, raw.rows, str(data))
    header, columns = [], []
    if ids is not None:
        header.append(model.id_name)
        columns.append([_csv_cell(v) if v is not None else "" for v in ids.cast(pa.string()).to_pylist()])
    if model.task == "classification":
        probs = model.net.loss_name == "cross_entropy"
        header += ["prediction"] + ([f"p_{c}" for c in model.classes] if probs else [])
        labels = np.array([_csv_cell(c) for c in model.classes], dtype=object)
        columns.append(_spread(labels[o.argmax(axis=1)].tolist(), holes))
        if probs:
            p = softmax(o)
            columns += [_spread([f"{v:.6g}" for v in p[:, k].tolist()], holes) for k in range(p.shape[1])]
    else:
        header += model.output_names
        columns += [_spread(list(map(repr, o[:, j].tolist())), holes) for j in range(o.shape[1])]
    text = ",".join(_csv_cell(h) for h in header) + "\n" + _format_rows(columns)
    if out_file is None:
        sys.stdout.write(text)
    else:
        write_text(out_file, text)
        empty = f" ({int(holes.sum())} empty)" if holes.any() else ""
        err.print(f"wrote {len(holes)} predictions{empty} to {out_file}", highlight=False)


def _spread(cells: list[str], holes: np.ndarray) -> list[str]:
    """The cells of the rows that have a prediction, with an empty cell for each hole."""
    if not holes.any():
        return cells
    out = np.full(len(holes), "", dtype=object)
    out[~holes] = cells
    return out.tolist()


@command
def evaluate(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(..., metavar="DATA", help=DATA_HELP + " It needs the target column(s)."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print one JSON object on stdout: {"task", "rows", "loss", ...} with, for classification,'
        ' "accuracy", "balanced_accuracy", "macro_f1", "per_class": [{"label", "precision", "recall", "f1",'
        ' "support"}]; for regression "mse", "mae", "r2", "outputs": [{"name", "mse", "mae", "r2"}].',
    ),
    strict: bool = STRICT_OPT,
) -> None:
    """Metrics of a trained model on a labelled table: loss, accuracy, balanced accuracy, macro F1
    and per class; or loss, MSE, MAE and R² (mean and per output)."""
    if is_lazy(data):  # a folder (.npy pair or Parquet files), read a chunk at a time
        model = load_model(model_path)
        X, y, _, _ = open_table(data, model.feature_names, _lazy_target(model), True)
        holes = np.concatenate([_unusable(data, model, which, Xc) for which, Xc in chunks(X)])
        if holes.all():
            raise DataError(f"{data}: every row has a value that is not finite; nothing to evaluate")
        if holes.any():
            _note(f"{data.name}: {int(holes.sum())} row(s) with a value that is not finite are not scored{DROP_ROWS}")
            keep = np.flatnonzero(~holes)
            X, y = X[keep], y[keep]
        try:
            metrics, n = model.evaluate_arrays(X, y), X.shape[0]
        except DataError as e:
            raise DataError(f"{data}: {e}") from None
    else:
        model, raw = _model_and_rows(model_path, data, require_target=True, strict=strict)
        metrics = model.evaluate(raw.table, raw.rows, str(data))
        n = raw.table.num_rows
    if as_json:
        echo_json({"task": model.task, "rows": n, **metrics})
    else:
        out.print(f"[bold]{escape(str(data))}[/] ({model.task}, {escape(str(model_path))})", highlight=False)
        render.metrics_report(out, metrics, n)
