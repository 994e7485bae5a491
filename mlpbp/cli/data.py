"""`mlpbp data`: what the network will see, before any training."""

from __future__ import annotations

from pathlib import Path

import typer

from mlpbp.cli.app import CONFIG_ARG, SET_OPT, command, echo_json, err, out
from mlpbp.cli.console import LoadProgress


@command
def data(
    config: Path = CONFIG_ARG,
    overrides: list[str] | None = SET_OPT,
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print one JSON object on stdout: {"path", "rows", "rows_used", "task", "why", "targets", "id",'
        ' "input_width", "columns": [{"name", "role", "kind", "type", "missing", "categories" | "min", "max"}],'
        ' "classes": [{"label", "count"}], "notes"}.',
    ),
    split_dir: Path | None = typer.Option(
        None,
        "--write-split",
        metavar="DIR",
        help="Also write the train, validation and test rows exactly as training splits them (the same seed) "
        "to DIR/train.csv, validation.csv and test.csv (data.test_path's rows are the test file).",
    ),
) -> None:
    """Read the config's data as training would and show each column's role and kind (inferred,
    or set by data.columns), missing cells, categories or range; the task and why; the input
    width after one-hot encoding; and the class counts. Kinds and categories come from the
    training split, as in training; nothing is written."""
    from mlpbp.cli.render.data import data_summary
    from mlpbp.run.config import load_config
    from mlpbp.run.prepare import prepare, write_split

    cfg = load_config(config, overrides or ())
    with LoadProgress(err, cfg.data.path or cfg.data.dataset) as progress:
        prepared = prepare(cfg, progress=progress, encode=False, keep_tables=split_dir is not None)
    if split_dir is not None:
        written = write_split(prepared, split_dir)
        counts = ", ".join(f"{prepared.tables[k].num_rows} {k}" for k in written)
        err.print(f"wrote {counts} rows to {split_dir}", highlight=False, soft_wrap=True)
    if as_json:
        echo_json(prepared.summary.to_json())
    else:
        data_summary(out, prepared.summary, verbose=True)
