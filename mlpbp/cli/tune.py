"""`mlpbp tune`: a search over the config's tune.space on Optuna, with a live table of trials."""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import threading
import time
import warnings
from pathlib import Path

import typer

from mlpbp.cli.app import CONFIG_ARG, JSON_OPT, SET_OPT, command, echo_json, err, fail, out
from mlpbp.cli.console import escape, fmt, rich_console
from mlpbp.errors import Interrupted
from mlpbp.tools.tune_defaults import DEFAULT_TRIALS

SHOWN_TRIALS = 20  # rows of the live table: the running trials and the latest finished ones


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, list) else str(v)


class TuneView:  # the hooks of mlpbp.tools.tune.TuneHooks (not subclassed: --help imports no NumPy)
    """The live table (number, parameters, value, state, best so far) under a progress bar
    against the trials or the timeout; one line per finished trial when not on a terminal."""

    def __init__(self, console, trials: int | None, timeout: float | None, quiet: bool) -> None:
        # Rich's live display and progress bar, here: `mlpbp --help` loads this module
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console, self.trials, self.timeout, self.quiet = console, trials, timeout, quiet
        self.rows: dict[int, dict] = {}
        self.keys: list[str] = []
        self.lock = threading.Lock()
        self.best_value: float | None = None
        self.started_at = time.monotonic()
        self.stopping = ""
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn() if trials is not None else TextColumn(""),
            TimeElapsedColumn(),
            console=rich_console(console),
        )
        total = trials if trials is not None else timeout
        self.task = self.progress.add_task("trials" if trials is not None else "seconds", total=total)
        self.live = None
        if console.is_terminal and not quiet:
            self.live = Live(self, console=rich_console(console), refresh_per_second=4, transient=False)
            self.live.start()
            if trials is None:  # a bar against the timeout moves with the clock
                threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while self.live is not None:
            self.progress.update(self.task, completed=min(self.timeout, time.monotonic() - self.started_at))
            time.sleep(0.5)

    def started(self, study, storage, finished, trials, timeout) -> None:
        if finished and not self.quiet:
            self.console.print(
                f"resuming study {study!r} in {escape(storage)}: {finished} finished trial(s) so far",
                highlight=False,
                soft_wrap=True,
            )
        if trials is not None:
            self.progress.update(self.task, completed=min(finished, trials))

    def trial_start(self, number: int, params: dict) -> None:
        with self.lock:
            self.keys += [k for k in params if k not in self.keys]
            self.rows[number] = {"params": params, "state": "running", "value": None, "best": None, "epoch": ""}

    def epoch(self, number: int, epoch: int, epochs: int, value: float) -> None:
        with self.lock:
            if number in self.rows:
                self.rows[number]["epoch"] = f"epoch {epoch}/{epochs}"

    def trial_end(self, record, best, finished: int) -> None:
        with self.lock:
            self.best_value = best.value if best is not None else None
            row = self.rows.setdefault(number := record.number, {"params": record.params})
            n = record.epochs
            row.update(state=record.state, value=record.value, best=self.best_value, epoch=f"{n} epoch{'s' * (n != 1)}")
        if self.trials is not None:
            self.progress.update(self.task, completed=min(finished, self.trials))
        if self.live is None and not self.quiet:
            params = " ".join(f"{k}={_cell(v)}" for k, v in record.params.items())
            self.console.print(
                f"trial {number} {record.state} {fmt(record.value)} ({row['epoch']}) {escape(params)};"
                f" best {fmt(self.best_value)}",
                highlight=False,
                soft_wrap=True,
            )

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for h in ("trial", *(k.rsplit(".", 1)[-1] for k in self.keys), "value", "state", "best so far"):
            table.add_column(h, justify="right" if h in ("trial", "value", "best so far") else "left")
        with self.lock:
            numbers = sorted(self.rows)
            running = [n for n in numbers if self.rows[n]["state"] == "running"]
            shown = sorted({*running, *numbers[-SHOWN_TRIALS:]})[-SHOWN_TRIALS:]
            for n in shown:
                r = self.rows[n]
                state = r["state"] + (f" ({r['epoch']})" if r.get("epoch") else "")
                cells = [_cell(r["params"][k]) if k in r["params"] else "-" for k in self.keys]
                table.add_row(str(n), *cells, fmt(r["value"]), state, fmt(r["best"]))
        parts = [table, self.progress]
        if self.stopping:
            parts.append(self.stopping)
        return Group(*parts)

    def close(self) -> None:
        if self.live is not None:
            live, self.live = self.live, None
            live.stop()


@contextlib.contextmanager
def _two_step_sigint(stop: threading.Event, stop_now: threading.Event, view: TuneView):
    """First Ctrl-C: finish the running trials, record them, stop. Second: stop them now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set():
            stop_now.set()
            view.stopping = "stopping the running trial now"
        else:
            stop.set()
            view.stopping = "stopping after the running trial is recorded (Ctrl-C again: stop it now)"

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@command
def tune(
    config: Path = CONFIG_ARG,
    trials: int | None = typer.Option(
        None,
        "--trials",
        help="Finished trials the study should have in all, those of earlier runs and other processes "
        f"included (default {DEFAULT_TRIALS}, or none with --timeout).",
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="SECONDS", help="Start no trial after this many seconds."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        metavar="URL",
        help="Where the study lives: sqlite:///FILE (default: study.db in the output folder), "
        "postgresql://USER:PASSWORD@HOST/DB or mysql://... to share it between processes and machines, "
        "or journal:FILE on a shared file system.",
    ),
    study: str | None = typer.Option(None, "--study", metavar="NAME", help="Study name (default: the config's name)."),
    n_jobs: int = typer.Option(1, "--n-jobs", metavar="J", help="Trials run at once in this process (threads)."),
    seed: int | None = typer.Option(None, "--seed", help="The sampler's seed (default: the config's seed)."),
    out_dir: Path | None = typer.Option(
        None, "--out", metavar="DIR", help="Output folder (default: output.dir of the config, else runs/CONFIG-NAME)."
    ),
    overrides: list[str] | None = SET_OPT,
    as_json: bool = JSON_OPT,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live table; only the summary."),
) -> None:
    """Search the config's `tune:` space with Optuna (TPE, seeded), pruning trials from their
    per-epoch metric; write best.yaml (for `mlpbp train`), trials.csv, the best trial's
    model.npz and, with mlpbp[plot], history.png and importances.png.

    Running the same command again resumes the study. Ctrl-C stops after the running trial is
    recorded (twice: at once); exit 130 and the command that resumes."""
    from mlpbp.run.distributed import launched_ranks
    from mlpbp.tools import tune as tune_api

    if launched_ranks() > 1:
        fail(
            "mlpbp tune does not run under mpiexec; start one `mlpbp tune` per machine on one shared --storage"
            " (postgresql://... or journal:FILE) instead"
        )
    optuna = tune_api.import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table says what its log lines would
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    console = err if as_json else out
    stop, stop_now = threading.Event(), threading.Event()
    view = TuneView(console, trials if trials is not None or timeout else DEFAULT_TRIALS, timeout, quiet)
    try:
        with _two_step_sigint(stop, stop_now, view):
            result = tune_api.tune(
                config, overrides or (), trials, timeout, storage, study, n_jobs, seed, out_dir, view, stop, stop_now
            )
    finally:
        view.close()
    best = result.best
    if as_json:
        echo_json(
            {
                "study": result.study,
                "storage": result.storage,
                "metric": result.metric,
                "direction": result.direction,
                "best_trial": best.number if best else None,
                "best_value": best.value if best else None,
                "best_params": best.params if best else None,
                "trials": result.counts,
                "epochs": result.epochs,
                "best_config": str(result.best_config) if result.best_config else None,
                "model": str(result.model_path) if result.model_path else None,
                "files": [str(p) for p in result.files],
            }
        )
    else:
        counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
        console.print(
            f"study {result.study!r} ({escape(result.storage)}): {counts or 'no trials'};"
            f" {result.epochs} epochs trained",
            highlight=False,
            soft_wrap=True,
        )
        if best is not None:
            params = ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())
            console.print(
                f"best: trial {best.number}, {result.metric} {best.value:.6g} ({result.direction}); {escape(params)}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print("no trial completed yet: nothing to call best", highlight=False)
        if result.files:
            names = ", ".join(p.name for p in result.files)
            console.print(f"wrote {names} in {result.out_dir}", highlight=False, soft_wrap=True)
        if result.best_config is not None:
            console.print(f"train it: mlpbp train {shlex.quote(str(result.best_config))}", highlight=False)
    if result.stopped:
        args = [str(config), *(a for o in overrides or () for a in ("--set", o))]
        given = {"--trials": trials, "--timeout": timeout, "--storage": storage, "--study": study, "--seed": seed}
        for flag, value in given.items():
            if value is not None:
                args += [flag, str(value)]
        args += [*(("--n-jobs", str(n_jobs)) if n_jobs != 1 else ()), *(("--out", str(out_dir)) if out_dir else ())]
        raise Interrupted(f"stopped; the finished trials are kept; resume with: mlpbp tune {shlex.join(args)}")
