"""The default recipe (run/recipe.py): its values for a table's size, that it adds no dropout,
and which keys a config keeps for itself."""

from __future__ import annotations

import numpy as np

from mlpbp.run.config import config_from_dict, load_config
from mlpbp.run.model_file import format_version
from mlpbp.run.recipe import apply_recipe, choose
from mlpbp.run.trainer import train


def test_values_for_small_and_larger_tables():
    small = choose(105, 4)  # iris's training rows
    assert small["model.hidden"] == [64] and "model.dropout" not in small
    assert small["train.weight_decay"] == 1.0 and small["train.batch_size"] == 32 and small["train.epochs"] == 500
    larger = choose(2160, 20)  # a 3,000-row table's training split
    assert larger["train.weight_decay"] == round(300 / 2160, 3) and larger["model.hidden"] == [64]
    # the same decay per epoch at batch 32: learning rate x decay x steps per epoch
    per_epoch = [0.002 * choose(n, 4)["train.weight_decay"] * n / 32 for n in (300, 1000, 4000)]
    np.testing.assert_allclose(per_epoch, 0.002 * 300 / 32, rtol=2e-3)


def _cfg(tmp_path, model=None, train=None):
    return config_from_dict(
        {"data": {"path": "t.csv", "target": "y"}, "model": model or {}, "train": train or {}}, base_dir=tmp_path
    )


def test_the_recipe_adds_no_dropout_and_keeps_the_configs_own(tmp_path):
    cfg = _cfg(tmp_path)
    chosen = apply_recipe(cfg, 500, 8).chosen
    assert "model.dropout" not in chosen and cfg.model.dropout == 0.0 and cfg.model.is_mlp
    assert "dropout" not in apply_recipe(_cfg(tmp_path), 500, 8).line
    cfg = _cfg(tmp_path, model={"dropout": 0.3})
    assert "model.dropout" not in apply_recipe(cfg, 500, 8).chosen and cfg.model.dropout == 0.3
    cfg = _cfg(tmp_path, model={"layers": [{"linear": 8}, "relu"]})
    recipe = apply_recipe(cfg, 500, 8)
    assert "model.dropout" not in recipe.chosen and cfg.model.dropout == 0.0
    # the layer list is the network: the recipe's line named a width it did not use
    assert "model.hidden" not in recipe.chosen and "hidden" not in recipe.line and "optimizer adamw" in recipe.line
    cfg = _cfg(tmp_path, train={"optimizer": "sgd"})
    assert set(apply_recipe(cfg, 500, 8).chosen) == {"model.hidden"} and cfg.model.is_mlp


def test_a_recipe_run_saves_a_plain_mlp_and_a_config_that_trains_again(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = np.where(x[:, 0] + x[:, 1] > 0, "a", "b")
    lines = ["p,q,r,y"] + [f"{a:.4f},{b:.4f},{c:.4f},{t}" for (a, b, c), t in zip(x, y)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    cfg = _cfg(tmp_path, train={"epochs": 3, "threads": 1})
    result = train(cfg, tmp_path / "run")
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.model.dropout == 0.0 and saved.model.hidden == [64]
    # a plain MLP in the format mlpbp 0.2 reads (no column here needs format 3's keys)
    assert format_version(result.model) == 2
    again = train(saved, tmp_path / "again")
    assert again.test == result.test
