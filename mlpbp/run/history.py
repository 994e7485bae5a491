"""history.csv: one row per epoch of a run, the columns its task and options record."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mlpbp.io import write_text

COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "train_hamming_loss",  # multi-label: the share of wrong labels
    "val_hamming_loss",
    "val_macro_f1",
    "learning_rate",
    "gradients",  # full-data gradient (or loss) passes so far
    "products",  # full-data curvature products so far (Hessian or Gauss-Newton)
    "sharpness",  # top Hessian eigenvalue (train.sharpness_every)
    "stability_limit",  # 2/learning_rate: gradient descent is unstable once sharpness passes it
)
SHARPNESS_COLUMNS = ("sharpness", "stability_limit")
MULTILABEL_COLUMNS = ("train_hamming_loss", "val_hamming_loss", "val_macro_f1")


def history_columns(classification: bool, sharpness: bool, multilabel: bool = False) -> list[str]:
    """The columns a run records: accuracies for classification (multi-label: the subset
    accuracy, the Hamming losses and the validation macro F1), sharpness when measured."""
    return [
        c
        for c in COLUMNS
        if (classification or "accuracy" not in c)
        and (sharpness or c not in SHARPNESS_COLUMNS)
        and (multilabel or c not in MULTILABEL_COLUMNS)
    ]


def write_history(path: Path, history: list[dict], classification: bool, sharpness: bool, multilabel=False) -> None:
    """Every epoch's record (``repr`` of each number, so it reads back exactly; empty: none),
    written atomically."""
    columns = history_columns(classification, sharpness, multilabel)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in history:
        w.writerow(["" if r.get(c) is None else repr(r[c]) for c in columns])
    write_text(path, buf.getvalue())
