"""`mlpbp predict` and `mlpbp evaluate`: a saved model on new rows."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import typer

from mlpbp.cli import render
from mlpbp.cli.app import JSON_OPT, command, err, out
from mlpbp.data import read_features_csv
from mlpbp.engine.losses import softmax
from mlpbp.errors import DataError
from mlpbp.io import write_text
from mlpbp.run.model_file import load_model


def _model_and_rows(model_path: Path, data: Path, require_target: bool):
    model = load_model(model_path)
    X, targets = read_features_csv(data, model.feature_names, model.target_name, require_target)
    return model, X, targets


@command
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(
        ..., metavar="DATA.csv", help="CSV with the training feature columns (by name; a target column is ignored)."
    ),
    out_file: Path | None = typer.Option(
        None, "--out", help="Write the predictions CSV here (atomically) instead of stdout."
    ),
) -> None:
    """Predict for each row of a CSV: the class (and its probabilities) or the regression value."""
    model, X, _ = _model_and_rows(model_path, data, require_target=False)
    o = model.predict_outputs(X)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if model.task == "classification":
        probs = model.net.loss_name == "cross_entropy"
        w.writerow(["prediction"] + ([f"p_{c}" for c in model.classes] if probs else []))
        p = softmax(o) if probs else None
        for i, k in enumerate(o.argmax(axis=1)):
            w.writerow([model.classes[k]] + ([f"{v:.6g}" for v in p[i]] if probs else []))
    else:
        names = (
            [model.target_name] if o.shape[1] == 1 and model.target_name else [f"output_{j}" for j in range(o.shape[1])]
        )
        w.writerow(names)
        w.writerows([[repr(float(v)) for v in row] for row in o])
    if out_file is None:
        sys.stdout.write(buf.getvalue())
    else:
        write_text(out_file, buf.getvalue())
        err.print(f"wrote {len(o)} predictions to {out_file}", highlight=False)


@command
def evaluate(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(..., metavar="DATA.csv", help="CSV with the feature and target columns."),
    as_json: bool = JSON_OPT,
) -> None:
    """Metrics of a trained model on a labelled CSV: loss and accuracy, or loss, MSE and R²."""
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
