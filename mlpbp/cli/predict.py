"""`mlpbp predict` and `mlpbp evaluate`: a saved model on new rows."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer

from mlpbp.cli import render
from mlpbp.cli.app import JSON_OPT, command, err, out
from mlpbp.data import read_features_csv
from mlpbp.data.lazy import is_lazy, open_table
from mlpbp.engine.losses import softmax
from mlpbp.errors import DataError
from mlpbp.io import atomic_open
from mlpbp.run.metrics import chunks
from mlpbp.run.model_file import load_model


def _model_and_rows(model_path: Path, data: Path, require_target: bool):
    """The model, the rows' raw features and their targets (None if absent). A folder (an .npy
    pair or Parquet files) is read lazily: rows come off the disk a chunk at a time."""
    model = load_model(model_path)
    if is_lazy(data):
        X, y, _, _ = open_table(data, model.feature_names, model.target_name or None, require_target)
        return model, X, y
    X, targets = read_features_csv(data, model.feature_names, model.target_name, require_target)
    return model, X, targets


def _write_predictions(f, model, X) -> int:
    """Prediction rows for the raw rows X, written a chunk at a time as they are computed."""
    w = csv.writer(f, lineterminator="\n")
    probs = model.task == "classification" and model.net.loss_name == "cross_entropy"
    if model.task == "classification":
        w.writerow(["prediction"] + ([f"p_{c}" for c in model.classes] if probs else []))
    else:
        m = model.net.widths[-1]
        w.writerow([model.target_name] if m == 1 and model.target_name else [f"output_{j}" for j in range(m)])
    for _, Xc in chunks(X):
        o = model.predict_outputs(Xc)
        if model.task == "regression":
            w.writerows([[repr(float(v)) for v in row] for row in o])
        elif probs:
            w.writerows([[model.classes[k]] + [f"{v:.6g}" for v in p] for k, p in zip(o.argmax(axis=1), softmax(o))])
        else:
            w.writerows([[model.classes[k]] for k in o.argmax(axis=1)])
    return X.shape[0]


@command
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(
        ...,
        metavar="DATA",
        help="CSV with the training feature columns (by name; a target column is ignored), or a folder"
        " holding X.npy or Parquet files, read a chunk at a time.",
    ),
    out_file: Path | None = typer.Option(
        None, "--out", help="Write the predictions CSV here (atomically) instead of stdout."
    ),
) -> None:
    """Predict for each row: the class (and its probabilities) or the regression value. Rows are
    written as they are computed."""
    model, X, _ = _model_and_rows(model_path, data, require_target=False)
    if out_file is None:
        _write_predictions(sys.stdout, model, X)
    else:
        with atomic_open(out_file) as f:
            n = _write_predictions(f, model, X)
        err.print(f"wrote {n} predictions to {out_file}", highlight=False)


@command
def evaluate(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(
        ...,
        metavar="DATA",
        help="CSV with the feature and target columns, or a folder holding X.npy + y.npy or Parquet files.",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Metrics of a trained model on labelled rows: loss and accuracy, or loss, MSE and R²."""
    model, X, targets = _model_and_rows(model_path, data, require_target=True)
    try:
        metrics = model.evaluate(X, targets)
    except DataError as e:  # a bad target cell: name the file, as the other data errors do
        raise DataError(f"{data}: {e}") from None
    if as_json:
        typer.echo(json.dumps({"task": model.task, "rows": len(X), **metrics}))
    else:
        out.print(f"[bold]{data}[/] ({model.task}, {model_path})", highlight=False)
        out.print(render.metrics_table(metrics, len(X)))
