"""`mlpbp train`: a config in, a trained model and its history out."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from mlpbp.cli.app import (
    CONFIG_ARG,
    JSON_OPT,
    SET_OPT,
    command,
    echo_json,
    err,
    out,
    sigint_requests_stop,
    stopped_by_sigterm,
)
from mlpbp.cli.console import LoadProgress, escape
from mlpbp.errors import Interrupted


@command
def train(
    config: Path = CONFIG_ARG,
    overrides: list[str] | None = SET_OPT,
    out_dir: Path | None = typer.Option(
        None, "--out", help="Output directory (default: output.dir of the config, else runs/CONFIG-NAME)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the checkpoint in the output "
        "directory; the result is bit-identical to an uninterrupted run.",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace the run the output directory holds. The new run is built beside it and swapped "
        "in when it ends (or is interrupted), so the folder never mixes two runs.",
    ),
    threads: str | None = typer.Option(
        None,
        "--threads",
        help="BLAS threads: 'auto' (chosen per network shape and machine) or a count; the same as "
        "--set train.threads=... . An explicit count, or OPENBLAS_NUM_THREADS/OMP_NUM_THREADS in the "
        "environment, always wins over auto.",
    ),
    as_json: bool = JSON_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch table; only the task line and the summary."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Before training, one line per column: role, kind, missing cells, values."
    ),
    plot: bool = typer.Option(
        False, "--plot", help="Also draw the run's PNGs into the output directory, as mlpbp plot does."
    ),
) -> None:
    """Train the network a YAML config describes; write model.npz, history.csv, config.yaml.

    Exit 0 on success, 1 if training failed (e.g. the loss became NaN), 2 for bad input,
    130 if interrupted by Ctrl-C, 143 by SIGTERM (a checkpoint is saved; rerun with --resume).
    An output directory that holds a run is refused unless --overwrite or --resume, and one
    that another run is writing is refused (its lock names the PID).

    Under `mpiexec -n N` (extra `mlpbp[mpi]`), N processes train data-parallel: batch_size
    stays the global batch; only rank 0 prints and writes files."""
    from mlpbp.run.config import config_to_dict, load_config
    from mlpbp.run.distributed import world
    from mlpbp.tools import plot as plot_api

    if plot:
        plot_api.import_matplotlib()  # a missing extra is one line before training, not after
    comm = world()
    if comm.rank:  # rank 0 speaks for the job
        out.quiet = err.quiet = quiet = True
        as_json = False
    if threads is not None:
        overrides = [*(overrides or ()), f"train.threads={threads}"]
    cfg = comm.agree(lambda: load_config(config, overrides or ()))
    same = config_to_dict(cfg)
    same["output"]["dir"] = str(out_dir or cfg.output.dir)  # where rank 0 writes is what matters
    comm.same_everywhere("config", {**same, "--resume": resume})
    folder = comm.agree(lambda: _open_folder(config, cfg, out_dir, resume, overwrite), root_only=True)
    try:
        _train(config, cfg, folder, comm, overrides, out_dir, resume, as_json, quiet, verbose, plot)
    finally:
        if folder is not None:
            folder.discard()
            folder.close()


def _open_folder(config: Path, cfg, out_dir: Path | None, resume: bool, overwrite: bool):
    from mlpbp.run.folder import RunFolder, refuse_inputs_in_run

    path = Path(out_dir or cfg.output.dir)
    refuse_inputs_in_run(path, {"config file": config, "data file": cfg.data.path})
    return RunFolder.open(path, resume=resume, overwrite=overwrite)


def _train(config, cfg, folder, comm, overrides, out_dir, resume, as_json, quiet, verbose, plot) -> None:
    from mlpbp.cli.render.data import data_summary
    from mlpbp.cli.render.train import RichTrainHooks, train_summary
    from mlpbp.run.folder import run_in
    from mlpbp.run.prepare import prepare
    from mlpbp.run.trainer import Trainer
    from mlpbp.tools import plot as plot_api

    console = err if as_json else out
    # Ctrl-C while reading: "interrupted while reading FILE", exit 130
    with LoadProgress(console, cfg.data.path or cfg.data.dataset) as progress:
        data = prepare(cfg, progress=progress, comm=comm)  # a collective: a bad file stops every rank alike
    trainer = Trainer(cfg, data, folder.work if folder is not None else out_dir, comm=comm)
    # Quiet runs keep the hooks for the one line that says where a resumed run continues.
    trainer.hooks = hooks = RichTrainHooks(
        console,
        trainer.task,
        cfg.train.epochs,
        comm.size,
        table=not quiet,
        sharpness=cfg.train.sharpness_every is not None,
        multilabel=data.multilabel,
    )
    if not quiet:
        net = trainer.net
        console.print(
            f"[bold]{config}[/]: {net.shape}, "
            f"{net.n_params:,} parameters, {net.loss_name} loss, {net.dtype}; "
            f"{escape(trainer.data.why)}; {trainer.data.train[0].shape[0]} training rows",
            highlight=False,
            soft_wrap=True,
        )
        if comm.size > 1:
            b, lo, hi = cfg.train.batch_size, cfg.train.batch_size // comm.size, -(-cfg.train.batch_size // comm.size)
            console.print(
                f"{comm.size} MPI ranks ({comm.ranks_on_node} on this node), {lo if lo == hi else f'{lo}-{hi}'}"
                f" rows of each global batch of {b} per rank",
                highlight=False,
                soft_wrap=True,
            )
    # The task and why, always (in the header above, or on a line of its own under --quiet): a
    # wrongly guessed task should never pass unnoticed.
    data_summary(console, trainer.data.summary, verbose=verbose, task_line=quiet)
    if trainer.recipe.line:
        console.print(escape(trainer.recipe.line), highlight=False, soft_wrap=True)
    try:
        with sigint_requests_stop(trainer.stop):  # the swap at the end happens under it, whole
            result = run_in(folder, lambda: trainer.run(resume=resume))
        hooks.finish(_best_epoch(result))
    except Interrupted as e:
        args = [
            str(config),
            *(a for o in overrides or () for a in ("--set", o)),
            *(("--out", str(out_dir)) if out_dir else ()),
            "--resume",
        ]
        again = "mlpbp train " + shlex.join(args)  # quoted: a value like [3, 3] has spaces
        by = "SIGTERM: " if stopped_by_sigterm() else ""
        raise Interrupted(f"{by}{e}; resume with: {again}") from None
    finally:
        hooks.close()
    if comm.rank:
        return
    if plot:
        written = plot_api.plot_run(result.out_dir, name=config.stem)
        err.print(f"drew {', '.join(p.name for p in written)} in {result.out_dir}", highlight=False, soft_wrap=True)
    if as_json:
        comm_s = sum(r.get("comm_seconds", 0.0) for r in result.history)
        total_s = sum(r.get("seconds", 0.0) for r in result.history)
        echo_json(
            {
                "task": result.task,
                "epochs": result.history,
                "test": result.test,
                "evaluated_on": result.evaluated_on,
                "model": str(result.model_path),
                "stopped_early": result.stopped_early,
                "best_epoch": result.best_epoch,
                "ranks": comm.size,
                "compute_seconds": total_s - comm_s,
                "comm_seconds": comm_s,
                "threads": result.threads,
            }
        )
    else:
        train_summary(console, result)


def _best_epoch(result) -> int | None:
    """The epoch whose weights early stopping kept, else the one of lowest validation loss."""
    if result.best_epoch is not None:
        return result.best_epoch
    val = [(r["val_loss"], r["epoch"]) for r in result.history if r.get("val_loss") is not None]
    return min(val)[1] if val else None
