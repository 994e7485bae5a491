"""The default recipe for a table: what trains a config that gives only ``data.path`` and
``data.target``, chosen from the table's size and width (docs/how-to/tabular.md).

Only keys the config leaves unset are chosen, so every choice can be overridden by its key; a
config that names a bundled or generated dataset keeps the plain defaults of mlpbp 0.2 (the
teaching configs). A config that tunes the optimizer (sets ``train.optimizer``,
``learning_rate``, ``weight_decay`` or another optimizer's keys such as ``momentum``) keeps
0.2's training defaults for what it leaves unset; the recipe then only sizes the network.

The recipe, for n training rows and an input width of d columns:

- ``model.hidden``: one layer of w = clamp(2^⌈log₂ 2d⌉, 64, 512) units (ReLU, He init) under
  5,000 rows, two from there; no dropout (``model.dropout`` 0.1 was measured on the tabular
  benchmark: +0.14 on seeds 10-14, −0.15 on seeds 0-4, inside the seeds' spread both times;
  it made every default model a graph of modules, format 4, which mlpbp 0.2 cannot read).
- ``train.optimizer: adamw``, ``learning_rate`` 0.002 (0.001 from 20,000 rows), and
  ``weight_decay`` (decoupled, PyTorch's) sized to the data: clamp(300 / n, 0.01, 1), strong
  for a few hundred rows, where an MLP overfits in a few epochs. AdamW shrinks the weights by
  a factor 1 − αλ a step, n / batch steps an epoch: with batch 32, λ = 300 / n is the same
  shrinkage per epoch (αλn/32 ≈ 0.019) whatever n; the cap at 1 (n < 300) is weaker per
  epoch, not stronger (benchmarks/README.md has the comparison with other rules).
- ``train.batch_size``: clamp(2^round(log₂(n / 100)), 32, 512).
- ``train.schedule: plateau`` (halve the rate after ``step_size`` = patience / 3 epochs without
  a better validation loss) after ``warmup`` = 5 epochs rising linearly to it.
- ``train.patience``: early stopping on the validation loss, keeping the best epoch's weights:
  clamp(epochs / 10, 10, 30) epochs; ``train.epochs``: the epochs that make about 8,000 steps,
  clamped to [30, 500].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mlpbp.engine.optim import optimizer_keys
from mlpbp.run.config import Config, _optimizer_only_keys


@dataclass
class Recipe:
    """The keys the recipe chose (dotted key -> value) and one line saying so."""

    chosen: dict = field(default_factory=dict)

    @property
    def line(self) -> str:
        if not self.chosen:
            return ""
        shown = ", ".join(f"{k.split('.', 1)[1]} {_yaml(v)}" for k, v in self.chosen.items())
        return f"recipe for this table (docs/how-to/tabular.md; a key set in the config wins): {shown}"


def _yaml(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(map(str, v)) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _pow2(x: float) -> int:
    return 2 ** max(0, round(math.log2(max(x, 1.0))))


def choose(n_rows: int, n_inputs: int, validation: bool = True) -> dict:
    """The recipe's values for a table of ``n_rows`` training rows and ``n_inputs`` input columns."""
    width = min(512, max(64, 2 ** math.ceil(math.log2(max(2 * n_inputs, 1)))))
    depth = 1 if n_rows < 5_000 else 2
    batch = min(512, max(32, _pow2(n_rows / 100)))
    steps_per_epoch = math.ceil(n_rows / batch)
    epochs = min(500, max(30, round(8000 / steps_per_epoch)))
    patience = min(30, max(10, epochs // 10))
    out = {
        "model.hidden": [width] * depth,
        "train.optimizer": "adamw",
        "train.learning_rate": 0.002 if n_rows < 20_000 else 0.001,
        "train.weight_decay": round(min(1.0, max(0.01, 300 / max(n_rows, 1))), 3),
        "train.batch_size": batch,
        "train.epochs": epochs,
        "train.warmup": 5,
    }
    if validation:
        out |= {"train.schedule": "plateau", "train.step_size": max(3, patience // 3), "train.patience": patience}
    return out


def apply_recipe(cfg: Config, n_rows: int, n_inputs: int) -> Recipe:
    """Fill the keys ``cfg`` leaves unset with the recipe's values (in place), for a table
    (``data.path``); returns what it chose. Other configs are left as they are."""
    if cfg.data.path is None:
        return Recipe()
    t, m = cfg.train, cfg.model
    user = set(t._user_set)
    # A key of one optimizer (momentum, nesterov, ...) keeps the optimizer the config implies.
    # A config that tunes the optimizer (names it, or sets its rate, decay or another optimizer's
    # keys such as momentum) keeps 0.2's training defaults: the recipe then only sizes the network.
    tuned = {"optimizer", "learning_rate", "weight_decay"} | (_optimizer_only_keys() - set(optimizer_keys("adamw")))
    values = choose(n_rows, n_inputs, validation=cfg.data.validation_fraction > 0)
    if user & tuned:
        values = {"model.hidden": values["model.hidden"]}
    if m.layers is not None:  # the layer list is the network: a width chosen beside it sizes nothing
        values.pop("model.hidden")
    chosen = {}
    for key, value in values.items():
        section, name = key.split(".")
        obj = m if section == "model" else t
        given = name in (m.model_fields_set if section == "model" else user)
        if given:
            continue
        if name in ("schedule", "step_size") and "schedule" in user:
            continue
        setattr(obj, name, value)
        chosen[key] = value
    return Recipe(chosen)
