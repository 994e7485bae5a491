"""The command line: a thin Typer layer over the Python API, with Rich for what people see."""

from __future__ import annotations

import csv
import functools
import io
import json
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from mlpbp.cli import render
from mlpbp.data import read_features_csv
from mlpbp.engine.losses import softmax
from mlpbp.errors import Interrupted, MlpbpError
from mlpbp.io import write_text
from mlpbp.run.config import json_schema, load_config
from mlpbp.run.model_file import load_model
from mlpbp.run.trainer import Trainer
from mlpbp.tools import bench as bench_api
from mlpbp.tools import gradcheck as gradcheck_api

app = typer.Typer(
    help="Train multilayer perceptrons with backpropagation written out in NumPy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings wrap as paragraphs, not at their line breaks
)
out = Console()  # results: tables, JSON
err = Console(stderr=True)  # progress and messages, so stdout stays clean for --json


def _print_version(value: bool) -> None:
    if value:
        import mlpbp

        typer.echo(f"mlpbp {mlpbp.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Train multilayer perceptrons with backpropagation written out in NumPy."""


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and an exit code: how every user error leaves the tool."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command(fn):
    """Register a command whose MlpbpError becomes one line on stderr and its exit code,
    also under typer.testing.CliRunner (which bypasses main())."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlpbpError as e:
            # Escaped: messages quote user text (values, column names) that may look like markup.
            fail(escape(str(e)), e.exit_code)

    return app.command()(wrapper)


# ---- train / predict / evaluate ------------------------------------------------------------

CONFIG_ARG = typer.Argument(
    ..., metavar="CONFIG", help="YAML run config (see README: data, model, train, output).", show_default=False
)
SET_OPT = typer.Option(
    None, "--set", metavar="KEY=VALUE", help="Override any config key, e.g. --set train.learning_rate=0.1 (repeatable)."
)
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there.")


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
    except MlpbpError as e:  # a bad target cell: name the file, as the other data errors do
        raise MlpbpError(f"{data}: {e}") from None
    if as_json:
        typer.echo(json.dumps({"task": model.task, "rows": len(X), **metrics}))
    else:
        out.print(f"[bold]{data}[/] ({model.task}, {model_path})", highlight=False)
        out.print(render.metrics_table(metrics, len(X)))


@command
def schema() -> None:
    """Print the JSON Schema of the config file, for editors to complete and check configs."""
    typer.echo(json.dumps(json_schema(), indent=2))


# ---- gradcheck -------------------------------------------------------------------------------


@command
def gradcheck(
    config: Path | None = typer.Argument(
        None,
        help="YAML run config: check its network (float64) on a small batch of its data. "
        "Without it: every activation x every loss on a small built-in network (3-4-4-3, batch 6).",
    ),
    eps: float = typer.Option(
        gradcheck_api.DEFAULT_EPS,
        "--eps",
        help="Central-difference step. In float64, 1e-6 balances "
        "truncation error (~eps^2) against round-off (~1e-16/eps): both ~1e-10.",
    ),
    rtol: float = typer.Option(
        gradcheck_api.DEFAULT_RTOL,
        "--rtol",
        help="Pass when max|analytical - numerical| over a tensor <= "
        "rtol x max(max|analytical|, max|numerical|, atol/rtol). Correct code gives ~1e-8; "
        "a wrong backward gives ~1e-2 or more.",
    ),
    atol: float = typer.Option(
        gradcheck_api.DEFAULT_ATOL,
        "--atol",
        help="Absolute floor for tensors whose gradient is ~0 "
        "(e.g. zero by symmetry): central differences leave ~2e-10 x |J| of round-off.",
    ),
    samples: int = typer.Option(
        gradcheck_api.DEFAULT_SAMPLES,
        "--samples",
        help=f"Entries checked per tensor of more than "
        f"{gradcheck_api.FULL_MAX} entries, drawn at random; smaller tensors are checked entry by entry.",
    ),
    seed: int = typer.Option(
        gradcheck_api.DEFAULT_SEED,
        "--seed",
        help="Seeds the batch rows, sampled entries, upstream gradients and HVP directions.",
    ),
    batch: int = typer.Option(gradcheck_api.DEFAULT_BATCH, "--batch", help="Rows of the config's data to check on."),
    overrides: list[str] | None = typer.Option(
        None, "--set", help="Override a config key, e.g. --set model.activation=tanh (repeatable)."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print only {"ok": ..., "checks": [{"name", "shape", "max_abs_err", '
        '"max_rel_err", "ok", ...}]} on stdout.',
    ),
) -> None:
    """Check backprop against central finite differences: each parameter's gradient, each
    layer's input gradient, and Hessian-vector products (vs differences of gradients, and
    symmetry). Exit 0 if all pass, 1 if any fails, 2 for bad input."""
    import time

    start = time.perf_counter()
    if config is None:
        if overrides:
            raise MlpbpError("--set needs a CONFIG to override")
        report = gradcheck_api.check_builtin(eps, rtol, atol, samples, seed)
        title = (
            f"gradcheck: built-in network {'-'.join(map(str, gradcheck_api.BUILTIN_WIDTHS))}, batch "
            f"{gradcheck_api.BUILTIN_BATCH}, every activation x loss (eps {eps:g})"
        )
    else:
        cfg = load_config(config, overrides or ())
        report = gradcheck_api.check_config(cfg, eps, rtol, atol, samples, seed, batch)
        title = f"gradcheck: {config} (float64, batch of {batch}, eps {eps:g})"
    seconds = time.perf_counter() - start
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        render.gradcheck_report(out, report, title, grouped=config is None, seconds=seconds)
    raise typer.Exit(0 if report.ok else 1)


# ---- bench -----------------------------------------------------------------------------------


@command
def bench(
    depth: int = typer.Option(
        32,
        "--depth",
        help="Deepest network timed: depths 1, 2, 4, ... up to DEPTH (included). "
        "Depth D is WIDTH inputs -> D hidden relu layers of WIDTH units -> 10 outputs, softmax "
        "cross-entropy (PyTorch runs the same network, weights and batch).",
    ),
    width: int = typer.Option(256, "--width", help="Input and hidden width."),
    batch: int = typer.Option(64, "--batch", help="Rows in the (random, seeded) batch."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64."),
    repeats: int = typer.Option(5, "--repeats", help="Timed repeats after a warm-up; each time is the median."),
    compare: str | None = typer.Option(
        None,
        "--compare",
        help="'torch': add the same columns for PyTorch (pip install 'mlpbp\\[compare]'); its HVP is double backward.",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help='Print only {"rows": [{"depth", "params", "loss_s", "grad_s", '
        '"hvp_s", "grad_ratio", "hvp_ratio", ...}], "blas": {...}, "threads": n, ...} on stdout.',
    ),
) -> None:
    """The cheap-gradient theorem, measured: time the loss J, J with its gradient, and a
    Hessian-vector product at each depth. The gradient should cost about 3x the loss, at
    every depth."""
    if compare is not None:
        bench_api.import_torch()  # missing torch: one line and exit 2 before any timing
    depths = bench_api.depths_up_to(depth)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task(f"depth {depths[0]}", total=len(depths))

        def progress(done: int, total: int, d: int) -> None:
            bar.update(task, completed=done, description=f"depth {depths[min(done, total - 1)]}")

        result = bench_api.run_bench(depth, width, batch, dtype, repeats, compare, progress=progress)
    if as_json:
        typer.echo(json.dumps(result))
        return
    render.bench_report(out, result, width, batch, dtype, repeats, bench_api.N_CLASSES)


def main() -> None:
    try:
        app()
    except MlpbpError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading data, writing files)
        err.print("[bold red]error:[/] interrupted", highlight=False, soft_wrap=True)
        sys.exit(130)
