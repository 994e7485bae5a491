"""What several test files share: the tiny config, subprocess helpers, one-line error capture.

The suite runs against the installed package (``pip install '.[test]'``): nothing here puts the
source tree on the path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mlpbp.errors import MlpbpError

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Two moons, 60 rows, a 4-unit hidden layer, 2 epochs: trains in milliseconds.
TINY_CONFIG = """\
seed: 0
data: {dataset: moons, n_samples: 60}
model: {hidden: [4]}
train: {epochs: 2, batch_size: 16, momentum: 0.5}
"""


def subprocess_env() -> dict:
    """Environment for `python -m mlpbp` subprocesses: unbuffered, a fixed terminal width."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("COLUMNS", "80")
    return env


def one_line_error(fn, *args, **kwargs) -> str:
    """Call ``fn``, expect an MlpbpError, and return its message, which must be one line."""
    with pytest.raises(MlpbpError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message
