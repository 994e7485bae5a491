"""The help text is complete: `mlpbp --help` lists every command with the first paragraph of its
docstring, and `mlpbp COMMAND --help` shows the whole docstring, every argument and option with
its help and its default. Help is Click's plain text (no Rich panels, which cost start-up time),
so what is checked here is the content, read with whitespace collapsed (lines wrap to the
terminal: Typer's test runner makes it 80 columns; a subprocess checks other widths)."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import pytest
import typer

from mlpbp.cli import app

ROOT = typer.main.get_command(app)
COMMANDS = list(ROOT.list_commands(None))


def _flat(text: str) -> str:
    """Whitespace collapsed, and a word that wrapped at its hyphen ("one-\\n  hot") joined again."""
    return re.sub(r"(?<=\w)- (?=\w)", "-", " ".join(text.split()))


def _help(runner, args: list[str]) -> str:
    res = runner.invoke(app, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert not set(res.stdout) & set("╭│╰─"), "help is drawn as Rich panels"
    assert all(len(line) <= 80 for line in res.stdout.splitlines()), "a help line is wider than the terminal"
    return res.stdout


def _docstring(name: str) -> str:
    """The command's docstring, from the function the CLI module registered (not from Click)."""
    info = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name)
    return inspect.cleandoc(info.callback.__doc__ or "")


def test_top_level_help_lists_every_command_with_its_first_paragraph(runner):
    text = _help(runner, [])
    assert text.startswith("Usage: ") and "COMMAND [ARGS]" in text
    flat = _flat(text)
    assert "Train multilayer perceptrons with backpropagation written out in NumPy." in flat
    for flag in ("--version", "--install-completion", "--show-completion", "--help"):
        assert flag in flat
    for name in COMMANDS:
        first = _flat(_docstring(name).split("\n\n")[0])
        assert f"{name} {first}" in flat, name


def test_top_level_help_has_the_commands_in_registration_order(runner):
    lines = _help(runner, []).splitlines()
    start = lines.index("Commands:")
    listed = [line.split()[0] for line in lines[start + 1 :] if line.startswith("  ") and not line.startswith("   ")]
    assert listed == COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_its_docstring_every_parameter_help_and_default(runner, name):
    flat = _flat(_help(runner, [name]))
    assert flat.startswith(f"Usage: root {name} ") or f" {name} [OPTIONS]" in flat
    for paragraph in _docstring(name).split("\n\n"):
        assert _flat(paragraph) in flat, paragraph
    cmd = ROOT.get_command(None, name)
    for p in cmd.params:
        if getattr(p, "hidden", False):
            continue
        if p.param_type_name == "argument":
            assert (p.metavar or p.name) in flat
            if p.required:
                assert "[required]" in flat
        else:
            for opt in p.opts:
                assert opt in flat, opt
        if p.help:
            assert _flat(p.help) in flat, p.help
        shown = p.param_type_name == "option" and p.show_default is not False and not getattr(p, "is_flag", False)
        if shown and isinstance(p.default, (int, float, str)) and not isinstance(p.default, bool):
            assert f"[default: {p.default}]" in flat or f"[default: {p.default};" in flat, (p.name, p.default)


def test_hessian_help_reads_as_written(runner):
    """One command spelled out: the values a reader looks for, as they should appear."""
    flat = _flat(_help(runner, ["hessian"]))
    assert "--top-k <int> How many of the largest eigenvalues (Lanczos). [default: 1]" in flat
    assert "--curvature <str> hessian (∇²J, indefinite) or gauss_newton (Jᵀ H_L J, PSD). [default: hessian]" in flat
    assert "--tol <float>" in flat and "[default: 1e-06]" in flat
    assert "--json Print one JSON object on stdout" in flat  # a flag: no placeholder, no default
    assert "MODEL <path> A model.npz written by mlpbp train. [required]" in flat


def test_install_hints_show_their_brackets(runner):
    """Markdown escapes (`mlpbp\\[plot]`) from the Rich help days do not leak into plain text."""
    for name, hint in (("plot", "'mlpbp[plot]'"), ("export", "'mlpbp[onnx]'"), ("bench", "'mlpbp[compare]'")):
        flat = _flat(_help(runner, [name]))
        assert hint in flat and "\\[" not in flat, name


@pytest.mark.parametrize("width", [60, 100, 200])
def test_help_wraps_to_the_terminal_up_to_120_columns(width):
    env = {**os.environ, "COLUMNS": str(width)}
    proc = subprocess.run([sys.executable, "-m", "mlpbp", "train", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    widest = max(len(line) for line in proc.stdout.splitlines())
    assert widest <= min(width, 120) and widest > min(width, 120) - 15, widest
    assert "--overwrite Replace the run the output directory holds." in _flat(proc.stdout)
