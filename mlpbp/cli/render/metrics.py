"""Metrics as `train`, `evaluate` and `inspect` show them: the summary, then per class or per
output; and the notes for rows that were not scored."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlpbp.cli.console import DROP_ROWS, fmt, note


def metrics_table(metrics: dict, n_rows: int | None = None) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    if n_rows is not None:
        t.add_row("rows", str(n_rows))
    names = {
        "loss": "loss",
        "accuracy": "accuracy",
        "balanced_accuracy": "balanced accuracy",
        "subset_accuracy": "subset accuracy",
        "hamming_loss": "Hamming loss",
        "macro_f1": "macro F1",
        "micro_f1": "micro F1",
        "mse": "MSE",
        "rmse": "RMSE",
        "mae": "MAE",
        "r2": "R²",
    }
    for k, label in names.items():
        if k == "accuracy" and "subset_accuracy" in metrics:  # multi-label: the same number, named so
            continue
        if k in metrics:
            t.add_row(label, fmt(metrics[k]))
    return t


def metrics_report(console: Console, metrics: dict, n_rows: int | None = None) -> None:
    """The summary metrics, then one row per class (or per output, when there are several)."""
    console.print(metrics_table(metrics, n_rows))
    per_class, per_output = metrics.get("per_class") or metrics.get("per_label"), metrics.get("outputs")
    if per_class:
        t = Table(box=None, pad_edge=False, header_style="bold")
        first = "label" if "per_label" in metrics else "class"
        for c in (first, "precision", "recall", "F1", "support"):
            t.add_column(c, justify="left" if c == first else "right")
        for r in per_class:
            t.add_row(escape(r["label"]), fmt(r["precision"]), fmt(r["recall"]), fmt(r["f1"]), _count(r["support"]))
        console.print(t)
    elif per_output and len(per_output) > 1:
        t = Table(box=None, pad_edge=False, header_style="bold")
        for c in ("output", "MSE", "RMSE", "MAE", "R²"):
            t.add_column(c, justify="left" if c == "output" else "right")
        for r in per_output:
            rmse = r.get("rmse", r["mse"] ** 0.5)  # models before 0.3 stored no RMSE
            t.add_row(escape(r["name"]), fmt(r["mse"]), fmt(rmse), fmt(r["mae"]), fmt(r["r2"]))
        console.print(t)


def _count(support) -> str:
    return f"{support:.6g}" if isinstance(support, float) else str(support)  # a float: summed weights


def skipped_notes(console: Console, name: str, missing_target: int = 0, missing_feature: int = 0) -> None:
    """The notes for the rows of a labelled table (named ``name``) that are not scored:
    ``SkippedRows`` counts (what `evaluate` and `hessian` skip)."""
    if missing_target:
        note(console, f"{name}: skipping {missing_target} row(s) whose target is missing")
    if missing_feature:
        note(console, f"{name}: skipping {missing_feature} row(s) with a missing feature cell{DROP_ROWS}")
