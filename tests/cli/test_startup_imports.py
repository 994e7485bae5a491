"""A CLI that starts at once: --help, --version, each command's --help and shell completion
load neither NumPy, SciPy, pyarrow nor pydantic (checked in sys.modules of a fresh process, not
by timing); the library's own entry points load only what they use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import typer

from mlpbp.cli import app

HEAVY = {"numpy", "scipy", "pyarrow", "pydantic", "pandas", "yaml"}
COMMANDS = sorted(typer.main.get_command(app).commands)

# Runs the console script's main() as `mlpbp ARGS`, then lists the top-level packages loaded.
RUN_CLI = """
import json, sys
sys.argv = ["mlpbp", *json.loads(sys.argv[1])]
from mlpbp.cli import main
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
print("\\nLOADED " + json.dumps([sorted({m.split(".")[0] for m in sys.modules}), code]))
"""


def _cli(args: list[str], env: dict | None = None) -> tuple[str, set[str], int]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_CLI, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    text, _, tail = proc.stdout.rpartition("\nLOADED ")
    modules, code = json.loads(tail)
    return text, set(modules), code


def _loaded(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_the_commands_are_all_there():
    assert {
        "train",
        "predict",
        "evaluate",
        "data",
        "gradcheck",
        "bench",
        "hessian",
        "schema",
        "inspect",
        "export",
        "plot",
    } <= set(COMMANDS)


@pytest.mark.parametrize("args", [["--help"], ["--version"], *([c, "--help"] for c in COMMANDS)], ids=" ".join)
def test_help_and_version_load_no_numerics(args):
    text, modules, code = _cli(args)
    assert code == 0
    assert ("Usage:" in text) if "--help" in args else text.startswith("mlpbp ")
    assert not modules & HEAVY, sorted(modules & HEAVY)


@pytest.mark.parametrize("words,expected", [("mlpbp tr", "train"), ("mlpbp hessian --to", "--top-k")])
def test_shell_completion_loads_no_numerics(words, expected):
    env = {"_MLPBP_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    text, modules, code = _cli([], env)
    assert code == 0 and expected in text.split()
    # Completing a command's options, Typer (0.2x) itself checks every option's default through
    # pydantic; nothing of mlpbp's loads it.
    allowed = {"pydantic"} if " " in words.removeprefix("mlpbp ") else set()
    assert not modules & (HEAVY - allowed), sorted(modules & HEAVY)


def test_import_mlpbp_is_light_and_its_names_load_when_used():
    modules = _loaded("import mlpbp")
    assert "numpy" not in modules and "mlpbp.engine.network" not in modules
    modules = _loaded("from mlpbp import MLP, SGD, DTYPES, MlpbpError\nassert MLP.__name__ == 'MLP'")
    assert "mlpbp.engine.network" in modules
    import mlpbp

    assert set(mlpbp.__all__) <= set(dir(mlpbp))
    assert all(getattr(mlpbp, name) is not None for name in mlpbp.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mlpbp.nope  # noqa: B018


def test_the_epoch_loop_and_the_estimators_load_no_table_or_config_code():
    assert not _loaded("import mlpbp.run.epoch") & {"pyarrow", "pydantic", "yaml", "mlpbp.data", "mlpbp.run.trainer"}
    # scikit-learn itself may load pandas (and so pyarrow): count only what mlpbp.sklearn adds.
    sklearn_own = (
        "import sklearn.base, sklearn.exceptions, sklearn.model_selection, sklearn.utils, "
        "sklearn.utils.multiclass, sklearn.utils.validation"
    )
    added = _loaded(sklearn_own + "\nimport mlpbp.sklearn") - _loaded(sklearn_own)
    tops = {m.split(".")[0] for m in added}
    assert not tops & {"pyarrow", "pydantic", "yaml"}, sorted(tops)
    # the epoch loop, and the BLAS thread choice (NumPy and threadpoolctl alone) that fits share with train
    light = {"mlpbp.run.epoch", "mlpbp.run.threads"}
    assert not {m for m in added if m.startswith(("mlpbp.data", "mlpbp.run.")) and m not in light}
