"""What several test files share: the tiny config, subprocess helpers, one-line error capture.

The suite runs against the installed package (``pip install '.[test]'``): nothing here puts the
source tree on the path."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpbp.engine.module import Module
from mlpbp.errors import MlpbpError
from mlpbp.run.trainer import TrainHooks

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
    # `python -m mlpbp` would otherwise put the working directory first on sys.path, and from the
    # repository root that imports the source tree instead of the installed package.
    env["PYTHONSAFEPATH"] = "1"
    env.setdefault("COLUMNS", "80")
    return env


def one_line_error(fn, *args, **kwargs) -> str:
    """Call ``fn``, expect an MlpbpError, and return its message, which must be one line."""
    with pytest.raises(MlpbpError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


class InterruptAt(TrainHooks):
    """Raise SIGINT in this very process once training reaches (epoch, steps done)."""

    def __init__(self, epoch: int, step: int) -> None:
        self.at, self.epoch = (epoch, step), 0

    def epoch_start(self, epoch: int, n_steps: int) -> None:
        self.epoch = epoch

    def progress(self, steps_done: int, n_steps: int) -> None:
        if self.at is not None and (self.epoch, steps_done) >= self.at:
            self.at = None
            # without the CLI's handler (sigint_requests_stop), SIGINT would stop pytest itself
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)


class ScaledTanh(Module):
    """y = 2 tanh(u), a module as a user writes one, with forward and backward only (no
    R-passes): it trains and is gradchecked, and curvature refuses it."""

    kind = "scaled_tanh"

    def forward(self, u):
        self.t = np.tanh(u)
        return 2 * self.t

    def backward(self, g, *, need_input_grad=True, need_param_grad=True):
        return 2 * g * (1 - self.t**2) if need_input_grad else None
