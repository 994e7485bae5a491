"""`mlpbp inspect` of an early-stopped table model: the epoch its weights come from, and the loss
and init the network resolved in place of null."""

from __future__ import annotations

import json

import numpy as np
import yaml

from mlpbp.cli import app


def test_inspect_names_the_kept_epoch_and_resolved_defaults(tmp_path, runner):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2))
    lines = ["a,b,y"] + [f"{p:.4f},{q:.4f},{p - q + rng.normal(0, 2):.4f}" for p, q in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {"path": "t.csv", "target": "y"}}))
    res = runner.invoke(app, ["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--json", "-q"])
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert run["stopped_early"] and run["best_epoch"] < len(run["epochs"])
    res = runner.invoke(app, ["inspect", str(tmp_path / "run" / "model.npz"), "--json"])
    info = json.loads(res.stdout)
    assert info["metrics"]["weights_from_epoch"] == run["best_epoch"]
    assert info["metrics"]["epochs_trained"] == len(run["epochs"])
    assert info["config"]["model"]["loss"] == "square" and info["config"]["model"]["init"] == "he"
    text = runner.invoke(app, ["inspect", str(tmp_path / "run" / "model.npz")]).stdout
    assert (
        f"after {len(run['epochs'])} epochs; the weights are epoch {run['best_epoch']}'s (the best validation loss)"
        in " ".join(text.split())
    )
