"""`mlpbp predict` and `mlpbp evaluate`: a saved model on new rows."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlpbp.cli.app import command, echo_json, err, out
from mlpbp.cli.console import DROP_ROWS, LoadProgress, escape, note
from mlpbp.errors import DataError

if TYPE_CHECKING:
    from mlpbp.data.tables import RawTable
    from mlpbp.run.model import TrainedModel

DATA_HELP = "Table with the training feature columns, by name, in any order: CSV/TSV, Parquet, NPZ or NPY."
STRICT_OPT = typer.Option(
    False, "--strict", help="Refuse columns the model does not use, instead of ignoring them with a note."
)


def _note(message: str) -> None:
    note(err, message)


def _model_and_rows(model_path: Path, data: Path, strict: bool, command: str) -> tuple[TrainedModel, RawTable]:
    from mlpbp.data.tables import read_estimate, read_table
    from mlpbp.run.footprint import check_table
    from mlpbp.run.model_file import load_model

    model = load_model(model_path)
    check_table(command, read_estimate(data), model.net.widths)  # before any of the table is read
    with LoadProgress(err, data) as progress:
        raw = read_table(data, progress=progress)
    for message in raw.notes:
        _note(message)
    header = raw.table.column_names
    have = set(header)  # linear in the column count
    missing = [c for c in model.feature_names if c not in have]
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
    if model.weight_name:
        known.add(model.weight_name)
    extra = [c for c in header if c not in known]
    if extra and strict:
        raise DataError(
            f"{data}: unexpected columns {', '.join(extra)} (--strict; the model takes its"
            f" {len(model.feature_names)} feature columns, plus {', '.join(repr(t) for t in targets) or 'no target'})"
        )
    if extra:
        _note(f"{data.name}: ignoring column{'s' * (len(extra) > 1)} the model does not use: {', '.join(extra)}")
    return model, raw


def eval_mode_line(model: TrainedModel) -> str | None:
    """What predicting in evaluation mode means for this model ("evaluation mode: dropout off,
    batch_norm's running statistics"), or None when its two modes compute the same function."""
    changes = model.net.eval_mode_changes()
    return f"evaluation mode: {', '.join(changes)}" if changes else None


def _mode_note(model: TrainedModel, doing: str) -> None:
    line = eval_mode_line(model)
    if line is not None:
        _note(f"{doing} in {line}")


def _lazy_target(model) -> str | None:
    names = model.target_names
    return names[0] if len(names) == 1 else None


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
    from mlpbp.cli.render.predict import predictions_csv, write_lazy_predictions
    from mlpbp.data.lazy import is_lazy, open_weighted
    from mlpbp.io import atomic_open, write_text
    from mlpbp.run.folder import refuse_same_path
    from mlpbp.run.model_file import load_model

    if out_file is not None:
        refuse_same_path(out_file, {"input table": data, "model file": model_path}, "--out")
    if is_lazy(data):  # a folder (.npy pair or Parquet files): rows read and written a chunk at a time
        model = load_model(model_path)
        _mode_note(model, "predicting")
        X = open_weighted(data, model.feature_names, _lazy_target(model), False, weight=model.weight_name)[0]
        if out_file is None:
            n, empty = write_lazy_predictions(sys.stdout, data, model, X)
        else:
            with atomic_open(out_file) as f:
                n, empty = write_lazy_predictions(f, data, model, X)
            err.print(f"wrote {n} predictions{f' ({empty} empty)' if empty else ''} to {out_file}", highlight=False)
        if empty:
            _note(f"{data.name}: {empty} row(s) with a value that is not finite get an empty prediction{DROP_ROWS}")
        return
    model, raw = _model_and_rows(model_path, data, strict, "predict")
    _mode_note(model, "predicting")
    # One output line per input row, in order: a row the model has no prediction for (a missing
    # cell under data.missing: drop_rows) gets empty cells, so the lines still join the input.
    o, has = model.predict_rows(raw.table, raw.rows, str(data))
    for message in model.preprocessor.filled_notes(raw.table, raw.rows):  # after the rows encoded without error
        _note(f"{data.name}: {message}")
    holes = int((~has).sum())
    if holes:
        _note(f"{data.name}: {holes} row(s) with a missing feature cell get an empty prediction{DROP_ROWS}")
    text = predictions_csv(model, raw.table, o, has)
    if out_file is None:
        sys.stdout.write(text)
    else:
        write_text(out_file, text)
        empty = f" ({holes} empty)" if holes else ""
        err.print(f"wrote {len(has)} predictions{empty} to {out_file}", highlight=False)


@command
def evaluate(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(..., metavar="DATA", help=DATA_HELP + " It needs the target column(s)."),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print one JSON object on stdout: {"task", "rows", "mode": "eval", "loss", ...} with, for classification,'
        ' "accuracy", "balanced_accuracy", "macro_f1", "per_class": [{"label", "precision", "recall", "f1",'
        ' "support"}]; for regression "mse", "mae", "r2", "outputs": [{"name", "mse", "mae", "r2"}].',
    ),
    strict: bool = STRICT_OPT,
) -> None:
    """Metrics of a trained model on a labelled table: loss, accuracy, balanced accuracy, macro F1
    and per class; or loss, MSE, MAE and R² (mean and per output)."""
    from mlpbp.cli.render.metrics import metrics_report, skipped_notes
    from mlpbp.data.lazy import is_lazy, open_weighted
    from mlpbp.run.model_file import load_model

    if is_lazy(data):  # a folder (.npy pair or Parquet files), read a chunk at a time
        model = load_model(model_path)
        X, y, _, _, w = open_weighted(data, model.feature_names, _lazy_target(model), True, weight=model.weight_name)
        skipped = model.skipped_rows(X, 0, str(data))
        if skipped.count and skipped.kept:
            _note(f"{data.name}: {skipped.count} row(s) with a value that is not finite are not scored{DROP_ROWS}")
        result = model.array_evaluation(X, y, str(data), skipped, w)
    else:
        model, raw = _model_and_rows(model_path, data, strict, "evaluate")
        skipped = model.skipped_rows(raw.table, raw.rows, str(data), labelled=True)
        # A note for each kind of row skipped, unless none is left after it: the error says so.
        skipped_notes(
            err,
            data.name,
            skipped.missing_target if skipped.missing_target < raw.table.num_rows else 0,
            skipped.missing_feature if skipped.kept else 0,
        )
        result = model.evaluation(raw.table, raw.rows, str(data), skipped)
        for message in model.preprocessor.filled_notes(raw.table, raw.rows):  # once the rows encoded
            _note(f"{data.name}: {message}")
    metrics, n = result.metrics, result.rows
    if model.weight_name and result.weight is None:
        _note(f"{data.name}: no weight column '{model.weight_name}' (data.weight): every row weighs 1")
    if as_json:  # mode: the model is scored as it predicts (no dropout, running statistics)
        weighted = {"weight": result.weight} if model.weight_name else {}
        echo_json({"task": model.task, "rows": n, "mode": "eval", **weighted, **metrics})
    else:
        by = f", weighted by {escape(result.weight)}" if result.weight else ""
        out.print(f"[bold]{escape(str(data))}[/] ({model.task}, {escape(str(model_path))}{by})", highlight=False)
        line = eval_mode_line(model)
        if line is not None:
            out.print(f"[dim]scored in {escape(line)}[/]", highlight=False, soft_wrap=True)
        metrics_report(out, metrics, n)
