"""`mlpbp predict`: predictions as CSV, one line per input row, in order (empty cells where the
model has no prediction), the id column first when the model has one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa

from mlpbp.engine.losses import softmax
from mlpbp.run.metrics import chunks
from mlpbp.run.model import TrainedModel


def predictions_csv(model: TrainedModel, table: pa.Table, o: np.ndarray, has: np.ndarray) -> str:
    """The CSV text for the outputs ``o`` of the rows of ``table`` (``has``: the rows with a
    prediction)."""
    ids = table.column(model.id_name) if model.id_name in table.column_names else None
    header, columns = [], []
    if ids is not None:
        header.append(model.id_name)
        columns.append([_csv_cell(v) if v is not None else "" for v in ids.cast(pa.string()).to_pylist()])
    if model.multilabel:  # the label set, and each label's sigmoid
        header += ["labels"] + [f"p_{c}" for c in model.classes]
        columns.append(_blank([_csv_cell(c) for c in _joined(model, o)], has))
        p = _sigmoid(o)
        columns += [_blank([f"{v:.6g}" for v in p[:, k].tolist()], has) for k in range(p.shape[1])]
    elif model.task == "classification":
        probs = model.net.loss_name == "cross_entropy"
        header += ["prediction"] + ([f"p_{c}" for c in model.classes] if probs else [])
        labels = np.array([_csv_cell(c) for c in model.classes], dtype=object)
        columns.append(_blank(labels[o.argmax(axis=1)].tolist(), has))
        if probs:
            p = softmax(o)
            columns += [_blank([f"{v:.6g}" for v in p[:, k].tolist()], has) for k in range(p.shape[1])]
    else:
        header += model.output_names
        columns += [_blank(list(map(repr, o[:, j].tolist())), has) for j in range(o.shape[1])]
    return ",".join(_csv_cell(h) for h in header) + "\n" + _format_rows(columns)


def write_lazy_predictions(f, data: Path, model: TrainedModel, X) -> tuple[int, int]:
    """Prediction rows for the raw rows X, written a chunk at a time as they are computed;
    returns (rows, rows left empty)."""
    w = csv.writer(f, lineterminator="\n")
    probs = model.task == "classification" and model.net.loss_name == "cross_entropy"
    if model.multilabel:
        header = ["labels"] + [f"p_{c}" for c in model.classes]
    elif model.task == "classification":
        header = ["prediction"] + ([f"p_{c}" for c in model.classes] if probs else [])
    else:
        m = model.net.widths[-1]
        header = [model.target_name] if m == 1 and model.target_name else [f"output_{j}" for j in range(m)]
    w.writerow(header)
    empty = 0
    for which, Xc in chunks(X):
        o, has = model.predict_rows(Xc, which, str(data))
        if model.multilabel:
            lines = [[s] + [f"{v:.6g}" for v in p] for s, p in zip(_joined(model, o), _sigmoid(o))]
        elif model.task == "regression":
            lines = [[repr(float(v)) for v in row] for row in o]
        elif probs:
            lines = [[model.classes[k]] + [f"{v:.6g}" for v in p] for k, p in zip(o.argmax(axis=1), softmax(o))]
        else:
            lines = [[model.classes[k]] for k in o.argmax(axis=1)]
        if not has.all():  # no prediction: empty cells
            lines = [line if h else [""] * len(header) for h, line in zip(has.tolist(), lines)]
            empty += int((~has).sum())
        w.writerows(lines)
    return X.shape[0], empty


def _joined(model: TrainedModel, o: np.ndarray) -> list[str]:
    """Each row's predicted label set, joined by the model's label separator ('|' for a model
    trained on 0/1 label columns); a row with no label above 1/2 gets an empty cell."""
    sep = model.label_separator or "|"
    return [sep.join(labels) for labels in model.label_sets(np.nan_to_num(o, nan=-1.0))]


def _sigmoid(o: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-o))


def _format_rows(columns: list[np.ndarray | list[str]]) -> str:
    """CSV lines from equal-length columns of already formatted text."""
    return "".join(",".join(cells) + "\n" for cells in zip(*columns))


def _csv_cell(text: str) -> str:
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _blank(cells: list[str], has: np.ndarray) -> list[str]:
    """The cells, empty in the rows without a prediction."""
    if has.all():
        return cells
    out = np.array(cells, dtype=object)
    out[~has] = ""
    return out.tolist()
