"""The command line: a thin Typer layer over the Python API, with Rich for what people see."""

from __future__ import annotations

import csv
import functools
import io
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .config import json_schema, load_config
from .data import read_features_csv
from .errors import Interrupted, MlpbpError
from .files import write_text
from .model import load_model
from .train import Trainer, TrainHooks

app = typer.Typer(
    help="Train multilayer perceptrons with backpropagation written out in NumPy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()  # results: tables, JSON
err = Console(stderr=True)  # progress and messages, so stdout stays clean for --json


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

CONFIG_ARG = typer.Argument(..., help="YAML run config (see README: data, model, train, output).",
                            show_default=False)
SET_OPT = typer.Option(None, "--set", metavar="KEY=VALUE",
                       help="Override any config key, e.g. --set train.learning_rate=0.1 (repeatable).")
JSON_OPT = typer.Option(False, "--json", help="Print one JSON object on stdout and nothing else there.")
SPARKS = "▁▂▃▄▅▆▇█"
MAX_ROWS = 60  # epochs shown in the live table; every epoch is in history.csv


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def sparkline(values: list[float], width: int = 60) -> str:
    """A loss curve in one line of block characters, on a log scale (losses span decades)."""
    vals = np.log10(np.maximum(np.asarray(values, dtype=np.float64), 1e-300))
    if vals.size > width:  # average into `width` bins
        vals = np.array([b.mean() for b in np.array_split(vals, width)])
    lo, hi = vals.min(), vals.max()
    idx = np.zeros(vals.size, int) if hi - lo < 1e-12 else np.round((vals - lo) / (hi - lo) * 7).astype(int)
    return "".join(SPARKS[i] for i in idx)


class RichTrainHooks(TrainHooks):
    """Rows of a table as epochs end, and a progress bar inside long epochs."""

    def __init__(self, console: Console, task: str, epochs: int) -> None:
        self.console, self.task = console, task
        self.every = max(1, -(-epochs // MAX_ROWS))
        self.epochs = epochs
        self.columns = ["epoch", "train loss", "val loss"]
        if task == "classification":
            self.columns += ["train acc", "val acc"]
        self.columns += ["lr", "seconds"]
        self.bars = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("steps"), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.bar = None
        self.header_done = False

    def _row(self, cells, header: bool = False) -> Table:
        t = Table(box=None, show_header=header, pad_edge=False, header_style="bold")
        for c in self.columns:
            t.add_column(c, justify="right", width=max(len(c), 10))
        if cells is not None:
            t.add_row(*cells)
        return t

    def epoch_start(self, epoch: int, n_steps: int) -> None:
        if not self.header_done:
            if self.every > 1:
                self.console.print(f"[dim]showing every {self.every}th epoch; all are in history.csv[/]")
            self.console.print(self._row(None, header=True))
            self.bars.start()
            self.header_done = True
        if n_steps >= 200:  # short epochs would only flicker
            if self.bar is None:
                self.bar = self.bars.add_task("", total=n_steps, epoch=epoch)
            self.bars.update(self.bar, completed=0, total=n_steps, epoch=epoch, visible=True)

    def progress(self, steps_done: int, n_steps: int) -> None:
        if self.bar is not None:
            self.bars.update(self.bar, completed=steps_done)

    def epoch_end(self, r: dict) -> None:
        if self.bar is not None:
            self.bars.update(self.bar, visible=False)
        if r["epoch"] % self.every and r["epoch"] != self.epochs:
            return
        cells = [str(r["epoch"]), _fmt(r["train_loss"]), _fmt(r["val_loss"])]
        if self.task == "classification":
            cells += [_fmt(r["train_accuracy"]), _fmt(r["val_accuracy"])]
        cells += [f"{r['learning_rate']:.4g}", f"{r['seconds']:.2f}"]
        self.console.print(self._row(cells))

    def close(self) -> None:
        self.bars.stop()


def _metrics_table(metrics: dict, n_rows: int | None = None) -> Table:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    if n_rows is not None:
        t.add_row("rows", str(n_rows))
    names = {"loss": "loss", "accuracy": "accuracy", "mse": "MSE", "r2": "R²"}
    for k, label in names.items():
        if k in metrics:
            t.add_row(label, _fmt(metrics[k]))
    return t


def _summary(console: Console, result) -> None:
    where = "test" if result.evaluated_on == "test" else "training (no test split)"
    console.print(f"\n[bold]{where} metrics[/]")
    console.print(_metrics_table(result.test))
    if result.stopped_early:
        console.print(f"stopped early; kept the weights of epoch {result.best_epoch} (best validation loss)")
    losses = [r["train_loss"] for r in result.history]
    if len(losses) > 1:
        console.print(f"\n[bold]loss curve[/] (log scale, {losses[0]:.3g} → {losses[-1]:.3g})")
        console.print(f"  train {sparkline(losses)}", highlight=False)
        val = [r["val_loss"] for r in result.history]
        if all(v is not None for v in val):
            console.print(f"  val   {sparkline(val)}", highlight=False)
    console.print(f"\nwrote {result.model_path}, history.csv, config.yaml in {result.out_dir}", highlight=False)


@command
def train(
    config: Path = CONFIG_ARG,
    overrides: Optional[List[str]] = SET_OPT,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: output.dir "
                                           "of the config, else runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in the output "
                                "directory; the result is bit-identical to an uninterrupted run."),
    as_json: bool = JSON_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-epoch table; only the summary."),
) -> None:
    """Train the network a YAML config describes; write model.npz, history.csv, config.yaml.

    Exit 0 on success, 1 if training failed (e.g. the loss became NaN), 2 for bad input,
    130 if interrupted (a checkpoint is saved; rerun with --resume)."""
    cfg = load_config(config, overrides or ())
    console = err if as_json else out
    trainer = Trainer(cfg, out_dir)
    hooks = None if quiet else RichTrainHooks(console, trainer.task, cfg.train.epochs)
    trainer.hooks = hooks or TrainHooks()
    if not quiet:
        net = trainer.net
        console.print(f"[bold]{config}[/]: {'-'.join(map(str, net.widths))} {net.activation} network, "
                      f"{net.n_params:,} parameters, {net.loss_name} loss, {net.dtype}; "
                      f"{trainer.task} on {trainer.data.train[0].shape[0]} training rows", highlight=False)
    try:
        result = trainer.run(resume=resume)
    except Interrupted as e:
        again = f"mlpbp train {config}" + "".join(f" --set {o}" for o in overrides or ()) \
            + (f" --out {out_dir}" if out_dir else "") + " --resume"
        raise Interrupted(f"{e}; resume with: {again}") from None
    finally:
        if hooks:
            hooks.close()
    if as_json:
        typer.echo(json.dumps({
            "task": result.task, "epochs": result.history, "test": result.test,
            "evaluated_on": result.evaluated_on, "model": str(result.model_path),
            "stopped_early": result.stopped_early, "best_epoch": result.best_epoch,
        }))
    else:
        _summary(console, result)


def _model_and_rows(model_path: Path, data: Path, require_target: bool):
    model = load_model(model_path)
    X, targets = read_features_csv(data, model.feature_names, model.target_name, require_target)
    return model, X, targets


@command
def predict(
    model_path: Path = typer.Argument(..., metavar="MODEL", help="A model.npz written by mlpbp train."),
    data: Path = typer.Argument(..., metavar="DATA.csv", help="CSV with the training feature columns "
                                "(by name; a target column is ignored)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Write the predictions CSV here "
                                            "(atomically) instead of stdout."),
) -> None:
    """Predict for each row of a CSV: the class (and its probabilities) or the regression value."""
    model, X, _ = _model_and_rows(model_path, data, require_target=False)
    o = model.predict_outputs(X)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if model.task == "classification":
        probs = model.net.loss_name == "cross_entropy"
        w.writerow(["prediction"] + ([f"p_{c}" for c in model.classes] if probs else []))
        if probs:
            p = np.exp(o - o.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        for i, k in enumerate(o.argmax(axis=1)):
            w.writerow([model.classes[k]] + ([f"{v:.6g}" for v in p[i]] if probs else []))
    else:
        names = [model.target_name] if o.shape[1] == 1 and model.target_name else \
            [f"output_{j}" for j in range(o.shape[1])]
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
        out.print(_metrics_table(metrics, len(X)))


@command
def schema() -> None:
    """Print the JSON Schema of the config file, for editors to complete and check configs."""
    typer.echo(json.dumps(json_schema(), indent=2))


# ---- gradcheck -------------------------------------------------------------------------------

import json as _json  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import List as _List, Optional as _Optional  # noqa: E402

from rich.markup import escape as _escape  # noqa: E402
from rich.table import Table as _Table  # noqa: E402

from . import gradcheck as _gc  # noqa: E402


def _gc_num(x: float) -> str:
    return "nan" if x != x else f"{x:.2e}"


def _gc_result(c) -> str:
    if c.status == "fail":
        return "[bold red]FAIL[/]"
    if c.status == "skip":
        return "[yellow]SKIP[/] [dim](at kink)[/]"
    return "[green]PASS[/]" + (f" [dim]({c.skipped} at kink)[/]" if c.skipped else "")


def _gc_render(report, title: str, grouped: bool, seconds: float) -> None:
    table = _Table(title=title, title_justify="left")
    table.add_column("Check")
    table.add_column("Shape", justify="right")
    table.add_column("Max abs err", justify="right")
    table.add_column("Max rel err", justify="right")
    table.add_column("Result")
    last = None
    for c in report.checks:
        cells = [_escape(c.name), "x".join(map(str, c.shape)) or "scalar",
                 _gc_num(c.max_abs_err), _gc_num(c.max_rel_err), _gc_result(c)]
        if grouped and c.group != last:  # one section per built-in network, its name on top
            if last is not None:
                table.add_section()
            table.add_row(f"[bold cyan]{_escape(c.group)}[/]", "", "", "", "")
            last = c.group
        table.add_row(*cells)
    out.print(table)
    for c in report.failures:
        where = f"{c.group}: " if c.group else ""
        if c.kind == "param":
            what = f"parameter {c.param} of {c.name.split('(', 1)[1].rstrip(')')}"
        else:
            what = c.name
        out.print(f"[bold red]FAIL[/] {_escape(where + what)}: max abs err {_gc_num(c.max_abs_err)},"
                  f" max rel err {_gc_num(c.max_rel_err)} (rtol {report.settings['rtol']:g})",
                  highlight=False, soft_wrap=True)
        detail = _Table(box=None, padding=(0, 2), show_edge=False)
        for col in ("entry", "analytical", "numerical", "abs err"):
            detail.add_column(col, justify="left" if col == "entry" else "right")
        for d in c.details:
            index = d["index"]
            entry = index if isinstance(index, str) else (
                f"{c.param}[{', '.join(map(str, index))}]" if c.param else f"u[{', '.join(map(str, index))}]")
            detail.add_row(_escape(entry), f"{d['analytical']:.8e}", f"{d['numerical']:.8e}",
                           _gc_num(d["abs_err"]))
        out.print(detail)
    kinds = {c.kind for c in report.failures}
    if "hvp" in kinds and kinds & {"param", "input"}:
        out.print("[dim]HVP checks difference the gradient itself: fix the gradient failures"
                  " first.[/]", soft_wrap=True)
    if report.skipped:
        out.print(f"[yellow]{report.skipped} difference(s) straddled a ReLU-family kink and were left"
                  " out (reported apart, not failures).[/]", soft_wrap=True)
    n, bad = len(report.checks), len(report.failures)
    if bad:
        out.print(f"[bold red]{bad} of {n} checks FAILED[/] ({seconds:.2f} s)", soft_wrap=True)
    else:
        out.print(f"[bold green]All {n} checks passed[/]: max rel err {report.max_rel_err:.2e}"
                  f" <= rtol {report.settings['rtol']:g} ({seconds:.2f} s)", soft_wrap=True)


@command
def gradcheck(
    config: _Optional[_Path] = typer.Argument(
        None, help="YAML run config: check its network (float64) on a small batch of its data. "
        "Without it: every activation x every loss on a small built-in network (3-4-4-3, batch 6)."),
    eps: float = typer.Option(
        _gc.DEFAULT_EPS, "--eps", help="Central-difference step. In float64, 1e-6 balances "
        "truncation error (~eps^2) against round-off (~1e-16/eps): both ~1e-10."),
    rtol: float = typer.Option(
        _gc.DEFAULT_RTOL, "--rtol", help="Pass when max|analytical - numerical| over a tensor <= "
        "rtol x max(max|analytical|, max|numerical|, atol/rtol). Correct code gives ~1e-8; "
        "a wrong backward gives ~1e-2 or more."),
    atol: float = typer.Option(
        _gc.DEFAULT_ATOL, "--atol", help="Absolute floor for tensors whose gradient is ~0 "
        "(e.g. zero by symmetry): central differences leave ~2e-10 x |J| of round-off."),
    samples: int = typer.Option(
        _gc.DEFAULT_SAMPLES, "--samples", help=f"Entries checked per tensor of more than "
        f"{_gc.FULL_MAX} entries, drawn at random; smaller tensors are checked entry by entry."),
    seed: int = typer.Option(
        _gc.DEFAULT_SEED, "--seed", help="Seeds the batch rows, sampled entries, upstream "
        "gradients and HVP directions."),
    batch: int = typer.Option(
        _gc.DEFAULT_BATCH, "--batch", help="Rows of the config's data to check on."),
    overrides: _Optional[_List[str]] = typer.Option(
        None, "--set", help="Override a config key, e.g. --set model.activation=tanh (repeatable)."),
    as_json: bool = typer.Option(
        False, "--json", help='Print only {"ok": ..., "checks": [{"name", "shape", "max_abs_err", '
        '"max_rel_err", "ok", ...}]} on stdout.'),
) -> None:
    """Check backprop against central finite differences: each parameter's gradient, each
    layer's input gradient, and Hessian-vector products (vs differences of gradients, and
    symmetry). Exit 0 if all pass, 1 if any fails, 2 for bad input."""
    import time

    start = time.perf_counter()
    if config is None:
        if overrides:
            raise MlpbpError("--set needs a CONFIG to override")
        report = _gc.check_builtin(eps, rtol, atol, samples, seed)
        title = (f"gradcheck: built-in network {'-'.join(map(str, _gc.BUILTIN_WIDTHS))}, batch "
                 f"{_gc.BUILTIN_BATCH}, every activation x loss (eps {eps:g})")
    else:
        from .config import load_config

        cfg = load_config(config, overrides or ())
        report = _gc.check_config(cfg, eps, rtol, atol, samples, seed, batch)
        title = f"gradcheck: {config} (float64, batch of {batch}, eps {eps:g})"
    seconds = time.perf_counter() - start
    if as_json:
        typer.echo(_json.dumps(report.to_dict()))
    else:
        _gc_render(report, title, grouped=config is None, seconds=seconds)
    raise typer.Exit(0 if report.ok else 1)



# ---- bench -----------------------------------------------------------------------------------

from . import bench as _bench  # noqa: E402


def _bench_fit_line(fit: dict, prefix: str, label: str) -> str:
    loss, grad, hvp = (fit[f"{prefix}{k}"] for k in ("loss", "grad", "hvp"))
    per = lambda f: f["per_param_s"] * 1e9  # noqa: E731
    ratio = lambda f: per(f) / per(loss) if per(loss) > 0 else float("nan")  # noqa: E731
    return (f"{label}: time ≈ a + b·params; loss b = {per(loss):.3g} ns/param, gradient "
            f"{per(grad):.3g} ns/param ({ratio(grad):.2f}× loss), HVP {per(hvp):.3g} ns/param "
            f"({ratio(hvp):.2f}× loss); a = {loss['intercept_s'] * 1e6:.0f}, "
            f"{grad['intercept_s'] * 1e6:.0f}, {hvp['intercept_s'] * 1e6:.0f} µs")


@command
def bench(
    depth: int = typer.Option(
        32, "--depth", help="Deepest network timed: depths 1, 2, 4, ... up to DEPTH (included). "
        "Depth D is WIDTH inputs -> D hidden relu layers of WIDTH units -> 10 outputs, softmax "
        "cross-entropy (PyTorch runs the same network, weights and batch)."),
    width: int = typer.Option(256, "--width", help="Input and hidden width."),
    batch: int = typer.Option(64, "--batch", help="Rows in the (random, seeded) batch."),
    dtype: str = typer.Option("float32", "--dtype", help="float32 or float64."),
    repeats: int = typer.Option(
        5, "--repeats", help="Timed repeats after a warm-up; each time is the median."),
    compare: _Optional[str] = typer.Option(
        None, "--compare", help="'torch': add the same columns for PyTorch "
        "(pip install 'mlpbp[compare]'); its HVP is double backward."),
    as_json: bool = typer.Option(
        False, "--json", help='Print only {"rows": [{"depth", "params", "loss_s", "grad_s", '
        '"hvp_s", "grad_ratio", "hvp_ratio", ...}], "blas": {...}, "threads": n, ...} on stdout.'),
) -> None:
    """The cheap-gradient theorem, measured: time the loss J, J with its gradient, and a
    Hessian-vector product at each depth. The gradient should cost about 3x the loss, at
    every depth."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    try:  # messages name 'mlpbp[compare]': escaped, or Rich would read [compare] as markup
        if compare is not None:
            _bench.import_torch()  # missing torch: one line and exit 2 before any timing
        depths = _bench.depths_up_to(depth)
    except MlpbpError as e:
        fail(_escape(str(e)), e.exit_code)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(f"depth {depths[0]}", total=len(depths))

        def progress(done: int, total: int, d: int) -> None:
            bar.update(task, completed=done,
                       description=f"depth {depths[min(done, total - 1)]}")

        result = _bench.run_bench(depth, width, batch, dtype, repeats, compare, progress=progress)
    if as_json:
        typer.echo(_json.dumps(result))
        return
    blas = result["blas"]
    env = ", ".join(f"{k}={v}" for k, v in blas["env"].items()) or "no OPENBLAS_* variables set"
    out.print(f"NumPy {_bench.np.__version__} BLAS: {blas['library']} {blas['version']}, kernel "
              f"{blas['kernel']}, {blas['threads']} threads ({env})", highlight=False, soft_wrap=True)
    if "torch" in result:
        t = result["torch"]
        out.print(f"PyTorch {t['version']}: {t['threads']} threads; HVP by {t['hvp_method']}",
                  highlight=False, soft_wrap=True)
    out.print(f"Network: {width} -> depth x {width} (relu) -> {_bench.N_CLASSES}, cross-entropy; "
              f"batch {batch}, {dtype}; median of {repeats}", highlight=False, soft_wrap=True)
    for prefix, title in (("", "mlpbp (NumPy)"), ("torch_", "PyTorch")):
        if prefix and "torch" not in result:
            break
        table = _Table(title=title, title_justify="left")
        for col in ("depth", "params", "loss ms", "grad ms", "grad/loss", "HVP ms", "HVP/loss"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in result["rows"]:
            table.add_row(str(r["depth"]), f"{r['params']:,}", f"{r[prefix + 'loss_s'] * 1e3:.3f}",
                          f"{r[prefix + 'grad_s'] * 1e3:.3f}", f"{r[prefix + 'grad_ratio']:.2f}",
                          f"{r[prefix + 'hvp_s'] * 1e3:.3f}", f"{r[prefix + 'hvp_ratio']:.2f}")
        out.print(table)
    out.print(_bench_fit_line(result["fit"], "", "mlpbp"), highlight=False, soft_wrap=True)
    if "torch" in result:
        out.print(_bench_fit_line(result["fit"], "torch_", "PyTorch"), highlight=False,
                  soft_wrap=True)


def main() -> None:
    try:
        app()
    except MlpbpError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading data, writing files)
        err.print("[bold red]error:[/] interrupted", highlight=False, soft_wrap=True)
        sys.exit(130)
