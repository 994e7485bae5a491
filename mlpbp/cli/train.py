"""`mlpbp train`: a config in, a trained model and its history out."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from mlpbp.cli import render
from mlpbp.cli.app import CONFIG_ARG, JSON_OPT, SET_OPT, command, err, out
from mlpbp.errors import Interrupted
from mlpbp.run.config import load_config
from mlpbp.run.trainer import Trainer

# ---- train / predict / evaluate ------------------------------------------------------------


@command
def train(
    config: Path = CONFIG_ARG,
    overrides: list[str] | None = SET_OPT,
    out_dir: Path | None = typer.Option(
        None, "--out", help="Output directory (default: output.dir of the config, else runs/<config name>)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the checkpoint in the output "
        "directory; the result is bit-identical to an uninterrupted run.",
    ),
    as_json: bool = JSON_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch table; only the summary."),
) -> None:
    """Train the network a YAML config describes; write model.npz, history.csv, config.yaml.

    Exit 0 on success, 1 if training failed (e.g. the loss became NaN), 2 for bad input,
    130 if interrupted (a checkpoint is saved; rerun with --resume)."""
    cfg = load_config(config, overrides or ())
    console = err if as_json else out
    trainer = Trainer(cfg, out_dir)
    hooks = None if quiet else render.RichTrainHooks(console, trainer.task, cfg.train.epochs)
    if hooks:
        trainer.hooks = hooks
    if not quiet:
        net = trainer.net
        console.print(
            f"[bold]{config}[/]: {'-'.join(map(str, net.widths))} {net.activation} network, "
            f"{net.n_params:,} parameters, {net.loss_name} loss, {net.dtype}; "
            f"{trainer.task} on {trainer.data.train[0].shape[0]} training rows",
            highlight=False,
            soft_wrap=True,
        )
    try:
        result = trainer.run(resume=resume)
    except Interrupted as e:
        args = [
            str(config),
            *(a for o in overrides or () for a in ("--set", o)),
            *(("--out", str(out_dir)) if out_dir else ()),
            "--resume",
        ]
        again = "mlpbp train " + shlex.join(args)  # quoted: a value like [3, 3] has spaces
        raise Interrupted(f"{e}; resume with: {again}") from None
    finally:
        if hooks:
            hooks.close()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "task": result.task,
                    "epochs": result.history,
                    "test": result.test,
                    "evaluated_on": result.evaluated_on,
                    "model": str(result.model_path),
                    "stopped_early": result.stopped_early,
                    "best_epoch": result.best_epoch,
                }
            )
        )
    else:
        render.train_summary(console, result)
