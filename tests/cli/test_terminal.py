"""The terminal, as a new user meets it: flags shown as flags, output that never wraps when
piped and fits narrow terminals, the first/best/last epochs always in the table, resumed runs
that say where they resume, history.csv in step with the checkpoint, honest bench timings, a
real JSON Schema, one rule for relative paths, shell completion.

Each item is checked through Typer's runner at a fixed width and through a real pipe."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

import mlpbp.run.trainer as trainer_mod
import mlpbp.tools.bench as bench_mod
from helpers import PYTHON, ROOT, TINY_CONFIG, InterruptAt, one_line_error, subprocess_env
from mlpbp.cli import COMMAND_MODULES, app
from mlpbp.cli.app import sigint_requests_stop
from mlpbp.cli.render.train import epoch_table_layout
from mlpbp.errors import Interrupted
from mlpbp.run.checkpoint import load_checkpoint
from mlpbp.run.config import load_config
from mlpbp.run.prepare import prepare
from mlpbp.run.schema import json_schema
from mlpbp.run.trainer import Trainer

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TERMINAL = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1"}  # Rich then renders as for a terminal

# Iris with early stopping: 300 epochs (one row in 5), stops at an epoch the 5-step skips.
LONG_CONFIG = """\
seed: 0
data: {dataset: iris}
model: {hidden: [16], activation: tanh}
train: {epochs: 300, batch_size: 16, learning_rate: 0.05, momentum: 0.9, patience: 10}
"""


def _pipe(*args: str, cwd=ROOT, **env) -> subprocess.CompletedProcess:
    """`python -m mlpbp ARGS` with stdout and stderr as pipes (not a terminal)."""
    return subprocess.run(
        [PYTHON, "-m", "mlpbp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=subprocess_env() | env,
        timeout=300,
    )


def _lines(text: str) -> list[str]:
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


def _write(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *COMMAND_MODULES])
def test_help_shows_boolean_flags_without_a_value_placeholder(runner, command):
    args = [command, "--help"] if command else ["--help"]
    res = runner.invoke(app, args, env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "--help" in res.stdout and "<bool>" not in res.stdout


def test_help_through_a_pipe_has_no_bool_placeholder_and_flags_take_no_value(tmp_path):
    proc = _pipe("train", "--help")
    assert proc.returncode == 0 and "--quiet" in proc.stdout and "<bool>" not in proc.stdout
    proc = _pipe("train", str(_write(tmp_path, TINY_CONFIG)), "--json=true")
    assert proc.returncode == 2 and "does not take a value" in proc.stderr


# ---- width ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_epoch_table_layout_fits_every_width(width):
    for task in ("classification", "regression"):
        cols = epoch_table_layout(task, 300, width)
        assert sum(w for *_, w in cols) + 2 * (len(cols) - 1) <= width
        assert [k for k, *_ in cols][:2] == ["epoch", "train_loss"]
        assert all(w >= len(name) for _, name, w in cols)  # headers never wrap


@pytest.mark.parametrize("width", [40, 60])
def test_narrow_terminal_gets_a_narrower_table_that_neither_wraps_nor_truncates(runner, tmp_path, width):
    cfg = _write(tmp_path, TINY_CONFIG)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "o")], env={**TERMINAL, "COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    lines = _lines(res.stdout)
    header = next(line for line in lines if line.lstrip().startswith("epoch"))
    # the epoch rows follow the header (the per-class table further down has rows like "0  0.66")
    after = lines[lines.index(header) + 1 :]
    rows = list(itertools.takewhile(lambda line: re.match(r"^\s*\d+\*?\s+\d", line), after))
    assert "train loss" in header and len(rows) == 2
    table = [header, *rows]
    assert all(len(line) <= width for line in table) and "…" not in "".join(table)
    # each row has exactly one cell per header column
    assert all(len(row.split()) == len(re.split(r"\s{2,}", header.strip())) for row in rows)


def test_piped_output_never_wraps_even_with_long_paths(tmp_path):
    out = tmp_path / ("a-rather-long-directory-name-" * 3) / "breast_cancer"
    cfg = _write(tmp_path, TINY_CONFIG)
    proc = _pipe("train", str(cfg), "--out", str(out), COLUMNS="40")
    assert proc.returncode == 0, proc.stderr
    lines = _lines(proc.stdout)
    assert f"wrote {out / 'model.npz'}, history.csv, config.yaml in {out}" in lines
    header = next(line for line in lines if line.lstrip().startswith("epoch"))
    assert all(h in header for h in ("train loss", "val loss", "train acc", "val acc", "lr", "seconds"))
    assert lines[0].startswith(f"{cfg}: 2-4-2 relu network") and "training rows" in lines[0]
    assert "\n\n\n" not in proc.stdout  # no progress bar remnants: one blank line between parts


def test_cli_runner_output_is_a_pipe_too(runner, tmp_path):
    out = tmp_path / ("long-name-" * 8)
    res = runner.invoke(app, ["train", str(_write(tmp_path, TINY_CONFIG)), "--out", str(out)], env={"COLUMNS": "40"})
    assert res.exit_code == 0, res.output
    assert f"wrote {out / 'model.npz'}, history.csv, config.yaml in {out}" in _lines(res.stdout)


# ---- which epochs the table shows ----------------------------------------------------------


def _shown_epochs(text: str) -> list[int]:
    # rows of the epoch table only: the per-class table under "test metrics" has rows like "0  0.66"
    lines = list(itertools.takewhile(lambda line: "metrics" not in line, _lines(text)))
    return [int(m.group(1)) for line in lines if (m := re.match(r"^\s*(\d+)\*?\s+\d", line))]


def test_table_shows_the_first_best_and_last_epochs(runner, tmp_path):
    args = ["train", str(_write(tmp_path, LONG_CONFIG)), "--out", str(tmp_path / "o"), "--json"]
    res = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    last, best = d["epochs"][-1]["epoch"], d["best_epoch"]
    assert d["stopped_early"] and last % 5 and best % 5  # neither on the every-5th grid
    shown = _shown_epochs(res.stderr)
    assert shown[0] == 1 and last in shown and best in shown
    assert "one row every 5 epochs" in res.stderr and f"{best}*" in res.stderr


def test_table_through_a_pipe_ends_with_the_last_epoch_of_a_long_run(tmp_path):
    cfg = _write(tmp_path, TINY_CONFIG.replace("epochs: 2", "epochs: 131"))
    proc = _pipe("train", str(cfg), "--out", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    shown = _shown_epochs(proc.stdout)
    assert shown[0] == 1 and 131 in shown and 3 in shown and 4 not in shown


# ---- resume and history.csv ----------------------------------------------------------------

RESUME_CONFIG = """\
seed: 3
data: {dataset: moons, n_samples: 200}
model: {hidden: [8]}
train: {epochs: 5, batch_size: 4}
"""


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """A run interrupted mid-epoch 3 with no checkpoint since epoch 1 (long save interval)."""
    monkeypatch.setattr(trainer_mod, "CHECKPOINT_INTERVAL_S", 1e9)
    cfg_path = _write(tmp_path, RESUME_CONFIG)
    out = tmp_path / "out"
    cfg = load_config(cfg_path)
    trainer = Trainer(cfg, prepare(cfg), out, hooks=InterruptAt(3, 10))
    with sigint_requests_stop(trainer.stop), pytest.raises(Interrupted):
        trainer.run()
    trainer = Trainer(cfg, prepare(cfg), out)
    state, _ = load_checkpoint(trainer.checkpoint_path, trainer.net.params, trainer.opt.state_dict())
    return cfg_path, out, state


def test_history_csv_holds_exactly_the_checkpoints_epochs(interrupted_run):
    _, out, state = interrupted_run
    assert state.epoch == 2 and state.step > 0
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [r["epoch"] for r in state.history] == [1, 2]
    assert [float(r["train_loss"]) for r in rows] == [r["train_loss"] for r in state.history]


def test_history_csv_in_step_after_ctrl_c_through_a_pipe(tmp_path):
    cfg = _write(tmp_path, RESUME_CONFIG.replace("epochs: 5, batch_size: 4", "epochs: 100000, batch_size: 1"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PYTHON, "-m", "mlpbp", "train", str(cfg), "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "history.csv").exists():  # written with the first checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(2.5)  # a few more checkpoints (one a second at most)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted at epoch" in stderr, stderr
    config = load_config(cfg)
    trainer = Trainer(config, prepare(config), out)
    state, _ = load_checkpoint(trainer.checkpoint_path, trainer.net.params, trainer.opt.state_dict())
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert len(rows) == len(state.history) == state.epoch >= 1
    assert [float(r["train_loss"]) for r in rows] == [r["train_loss"] for r in state.history]


def test_resumed_run_says_where_it_resumes(runner, interrupted_run):
    cfg, out, state = interrupted_run
    expected = f"resuming at epoch {state.epoch + 1}, step {state.step}"
    res = runner.invoke(app, ["train", str(cfg), "--out", str(out), "--resume"], env={"COLUMNS": "60"})
    assert res.exit_code == 0, res.output
    assert _lines(res.stdout)[1].startswith(expected)
    assert _shown_epochs(res.stdout) == [3, 4, 5]  # the table goes on from there


def test_resume_through_a_pipe_quiet_still_says_where(interrupted_run):
    cfg, out, state = interrupted_run
    proc = _pipe("train", str(cfg), "--out", str(out), "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert f"resuming at epoch {state.epoch + 1}, step {state.step} (from {out / 'checkpoint.npz'})" in proc.stdout
    proc = _pipe("train", str(cfg), "--out", str(out), "--resume", "-q")
    assert "the checkpoint's run is complete (after epoch 5)" in proc.stdout


# ---- bench ----------------------------------------------------------------------------------


def test_fit_line_never_negative():
    assert bench_mod.fit_line([1, 2, 3], [3.0, 2.0, 1.0]) is None  # time falls with size: noise
    assert bench_mod.fit_line([5], [1.0]) is None
    a, b = bench_mod.fit_line([1, 2, 3], [1.0, 3.0, 5.0])  # y = 2x − 1: a < 0, refit through 0
    assert a == 0.0 and b == pytest.approx((1 + 6 + 15) / 14)
    a, b = bench_mod.fit_line([1, 2, 3], [3.0, 5.0, 7.0])
    assert (a, b) == pytest.approx((1.0, 2.0))


def _noisy_timings(monkeypatch):
    """Timings as a busy machine gives them: repeats far apart, times falling with depth."""
    calls = iter(range(1000))

    def fake(fns, repeats=5, min_seconds=0.01):
        i = next(calls)
        return {name: [1e-3 / (i + 1), 3e-3 / (i + 1)] for name in fns}

    monkeypatch.setattr(bench_mod, "time_calls", fake)


def test_bench_says_unstable_and_prints_no_nan_or_negative_fit(runner, monkeypatch):
    _noisy_timings(monkeypatch)
    res = runner.invoke(app, ["bench", "--depth", "4", "--width", "8", "--repeats", "2"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "unstable timings" in text and "repeats differ by up to 100%" in text
    assert "no line fit" in text
    assert "nan" not in text.lower() and not re.search(r"-\d", text)
    res = runner.invoke(app, ["bench", "--depth", "4", "--width", "8", "--repeats", "2", "--json"])
    d = json.loads(res.stdout)
    assert d["stability"]["unstable"] and d["stability"]["max_spread"] == pytest.approx(1.0)
    assert d["fit"]["loss"] is None


def test_bench_through_a_pipe_reports_stability_and_finite_fits():
    proc = _pipe("bench", "--depth", "2", "--width", "8", "--batch", "4", "--repeats", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["stability"]["max_spread"] >= 0 and isinstance(d["stability"]["unstable"], bool)
    for fit in d["fit"].values():
        assert fit is None or (fit["per_param_s"] > 0 and fit["intercept_s"] >= 0)
    proc = _pipe("bench", "--depth", "2", "--width", "8", "--batch", "4", "--repeats", "1")
    assert "stability not measured" in proc.stdout and "nan" not in proc.stdout


# ---- schema ---------------------------------------------------------------------------------

GOOD = [
    {"data": {"dataset": "digits"}},
    {"seed": 3, "data": {"path": "x.csv", "target": "y", "test_fraction": 0.0}, "model": {"hidden": [8, 8]}},
    {"data": {"dataset": "moons", "noise": 0.3}, "train": {"momentum": 0.9, "nesterov": True, "patience": 5}},
]
BAD = [
    {"data": {"dataset": "digits", "test_fraction": 5}},
    {"data": {"dataset": "digits", "test_fraction": 1.0}},
    {"data": {"dataset": "digits", "validation_fraction": -0.1}},
    {"data": {"dataset": "digits"}, "train": {"learning_rate": 0}},
    {"data": {"dataset": "digits"}, "train": {"momentum": 1.0}},
    {"data": {"dataset": "digits"}, "train": {"gamma": 1.5}},
    {"data": {"dataset": "digits"}, "train": {"epochs": 0}},
    {"data": {"dataset": "digits"}, "train": {"epochs": 2.5}},
    {"data": {"dataset": "digits"}, "train": {"learning_rate": True}},
    {"data": {"dataset": "digits"}, "model": {"hidden": [0]}},
    {"data": {"dataset": "digits"}, "model": {"activation": "swish"}},
    {"data": {"dataset": "digits", "n_samples": 1}},
    {"data": {"dataset": "digits"}, "trian": {}},
    {"data": {"dataset": "mnist"}},
    {"data": {"dataset": "digits", "path": "x.csv"}},
    {"data": {}},
    {},
]


@pytest.fixture(scope="module")
def validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_keys(schema: dict, node: dict, prefix: str = ""):
    for name, prop in node["properties"].items():
        yield f"{prefix}{name}", prop
        ref = prop.get("$ref")
        if ref:
            yield from _schema_keys(schema, schema["$defs"][ref.rsplit("/", 1)[1]], f"{prefix}{name}.")


def test_schema_uses_json_schema_keywords_and_describes_every_key():
    schema = json_schema()
    text = json.dumps(schema)
    assert not re.search(r'"(ge|gt|le|lt)":', text)
    keys = dict(_schema_keys(schema, schema))
    assert {"seed", "data.test_fraction", "train.learning_rate", "output.dir"} <= set(keys)
    for key, prop in keys.items():
        assert prop.get("description"), f"{key}: add a description to DESCRIPTIONS in mlpbp/run/schema.py"
        assert key == "data" or "default" in prop, key
    assert (keys["train.gamma"]["exclusiveMinimum"], keys["train.gamma"]["maximum"]) == (0, 1)
    assert keys["model.hidden"]["default"] == [64] and keys["data.test_fraction"]["default"] == 0.2


@pytest.mark.parametrize("cfg", GOOD)
def test_schema_accepts_what_train_accepts(tmp_path, validator, cfg):
    validator.validate(cfg)
    load_config(_write(tmp_path, yaml.safe_dump(cfg)))


@pytest.mark.parametrize("cfg", BAD)
def test_schema_refuses_what_train_refuses(tmp_path, validator, cfg):
    assert not validator.is_valid(cfg)
    one_line_error(load_config, _write(tmp_path, yaml.safe_dump(cfg)))


def test_schema_through_a_pipe_validates_the_shipped_configs():
    proc = _pipe("schema")
    assert proc.returncode == 0
    validator = jsonschema.Draft202012Validator(json.loads(proc.stdout))
    shipped = sorted((ROOT / "configs").glob("*.yaml"))
    assert shipped
    for path in shipped:
        validator.validate(yaml.safe_load(path.read_text()))


# ---- relative paths -------------------------------------------------------------------------

ROWS_CSV = "a,b,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{'yes' if i % 2 else 'no'}\n" for i in range(40))


def test_relative_paths_in_a_config_are_taken_from_its_folder(runner, tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs/rows.csv").write_text(ROWS_CSV)
    cfg = _write(tmp_path / "configs", "data: {path: rows.csv}\ntrain: {epochs: 1}\noutput: {dir: ../out/rel}\n")
    for cwd in (tmp_path, tmp_path / "configs", tmp_path.parent):  # the same files from anywhere
        monkeypatch.chdir(cwd)
        res = runner.invoke(app, ["train", os.path.relpath(cfg, cwd), "-q", "--overwrite"])  # the same run again
        assert res.exit_code == 0, res.output
        assert (tmp_path / "out/rel/model.npz").is_file()
        assert not (tmp_path / "configs/out").exists() and not (tmp_path / "configs/runs").exists()
    # --out and the default runs/<name> are command-line paths: from the working directory
    monkeypatch.chdir(tmp_path / "configs")
    res = runner.invoke(app, ["train", "run.yaml", "-q", "--set", "output.dir=null", "--out", "o"])
    assert res.exit_code == 0 and (tmp_path / "configs/o/model.npz").is_file()
    (tmp_path / "bare.yaml").write_text("data: {dataset: xor}\ntrain: {epochs: 1}\n")
    res = runner.invoke(app, ["train", "../bare.yaml", "-q"])
    assert res.exit_code == 0 and (tmp_path / "configs/runs/bare/model.npz").is_file()


def test_relative_paths_through_a_pipe(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/rows.csv").write_text(ROWS_CSV)
    _write(tmp_path / "sub", "data: {path: rows.csv}\ntrain: {epochs: 1}\noutput: {dir: out}\n", "c.yaml")
    proc = _pipe("train", "sub/c.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sub/out/model.npz").is_file()
    assert f"in {Path('sub/out')}" in proc.stdout  # messages show the path as resolved


# ---- completion -----------------------------------------------------------------------------


def test_shell_completion_is_offered(runner):
    res = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert "--install-completion" in res.stdout and "--show-completion" in res.stdout
    exe = shutil.which("mlpbp")
    assert exe, "the mlpbp console script is not installed: pip install '.[test]'"
    script = subprocess.run([exe, "--show-completion", "bash"], capture_output=True, text=True, env=subprocess_env())
    assert script.returncode == 0 and "_MLPBP_COMPLETE=complete_bash" in script.stdout
    # what bash then asks the program: the completions of `mlpbp tr` and `mlpbp train --q`
    for words, expected in (("mlpbp tr", "train"), ("mlpbp train --q", "--quiet")):
        env = subprocess_env() | {"_MLPBP_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": "1"}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        proc = subprocess.run([exe], capture_output=True, text=True, env=env)
        assert proc.stdout.split() == [expected]


def test_train_and_inspect_name_a_graph_by_its_modules_not_a_chain_of_widths(runner, tmp_path):
    """A residual block makes the network a graph: 'graph of 6 modules from 2 inputs to 2
    outputs', where widths alone (2-4-4-2) would read as three layers one after another."""
    from mlpbp import MLP, Network

    assert MLP([2, 4, 2], activation="relu").shape == "2-4-2 relu network"
    assert Network.from_layers([{"linear": 3}], 1, 1).shape == "1-3-1 identity network"
    one = Network.from_layers([{"linear": 3}, {"residual": [{"linear": 3}]}], 1, 1)
    assert one.shape == "graph of 4 modules from 1 input to 1 output (linears 3, 3, 1)"  # and an add
    text = TINY_CONFIG.replace(
        "model: {hidden: [4]}", "model: {layers: [{linear: 4}, relu, {residual: [{linear: 4}, relu]}]}"
    )
    res = runner.invoke(app, ["train", str(_write(tmp_path, text)), "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert ": graph of 6 modules from 2 inputs to 2 outputs (linears 4, 4, 2), 42 parameters," in res.stdout
    res = runner.invoke(app, ["inspect", str(tmp_path / "run" / "model.npz")])
    assert res.exit_code == 0, res.output
    assert (
        "classification: graph of 6 modules from 2 inputs to 2 outputs (linears 4, 4, 2), 42 parameters" in res.stdout
    )
