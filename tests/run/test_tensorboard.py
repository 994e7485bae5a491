"""output.tensorboard: the event files a run writes, read back with TensorBoard's own reader."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import prepare
from mlpbp.run.trainer import Trainer

IRIS = {
    "seed": 1,
    "data": {"dataset": "iris"},
    "model": {"hidden": [8], "activation": "tanh"},
    "train": {"epochs": 6, "batch_size": 16, "learning_rate": 0.05, "momentum": 0.9, "sharpness_every": 3},
}


def _run(tmp_path, name, **output):
    cfg = config_from_dict({**IRIS, "output": {"dir": str(tmp_path / name), **output}})
    trainer = Trainer(cfg, prepare(cfg))
    return trainer, trainer.run()


def _events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def test_every_epoch_record_is_a_scalar_and_histograms_follow_the_weights(tmp_path):
    trainer, result = _run(tmp_path, "tb", tensorboard=True, histogram_every=3)
    acc = _events(tmp_path / "tb")
    tags = set(acc.Tags()["scalars"])
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "learning_rate", "sharpness"} <= tags
    pairs = (("train_loss", "loss/train"), ("val_accuracy", "accuracy/val"), ("learning_rate", "learning_rate"))
    for key, tag in pairs:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [r["epoch"] for r in result.history]
        # TensorBoard keeps scalars as float32
        np.testing.assert_allclose([e.value for e in events], [r[key] for r in result.history], rtol=1e-6)
    sharp = acc.Scalars("sharpness")
    assert [e.step for e in sharp] == [3, 6]
    np.testing.assert_allclose([e.value for e in sharp], [r["sharpness"] for r in result.history[2::3]], rtol=1e-6)

    assert {"weights/W1", "weights/b2", "gradients/W1", "gradients/b2"} <= set(acc.Tags()["histograms"])
    assert [e.step for e in acc.Histograms("weights/W1")] == [3, 6]
    # Epoch 6 is the last: its histograms are of the final weights and of their gradient on the sample.
    _, grads = trainer.net.loss_and_grad(*trainer._training_sample())
    for tag, values in (("weights/W1", trainer.net.params["W1"]), ("gradients/W1", grads["W1"])):
        h = acc.Histograms(tag)[-1].histogram_value
        v = values.astype(np.float64)
        assert h.num == v.size
        np.testing.assert_allclose([h.min, h.max], [v.min(), v.max()], rtol=1e-12)
        np.testing.assert_allclose([h.sum, h.sum_squares], [v.sum(), (v * v).sum()], rtol=1e-9, atol=1e-12)
        assert sum(h.bucket) == v.size


def test_writing_events_changes_nothing_in_the_run(tmp_path):
    _, plain = _run(tmp_path, "plain")
    _, logged = _run(tmp_path, "logged", tensorboard=True, histogram_every=1)
    assert plain.history[-1]["train_loss"] == logged.history[-1]["train_loss"]
    for k, p in plain.model.net.params.items():
        assert np.array_equal(p, logged.model.net.params[k]), k


def test_no_histograms_when_switched_off(tmp_path):
    _run(tmp_path, "tb", tensorboard=True, histogram_every=None)
    acc = _events(tmp_path / "tb")
    assert acc.Tags()["histograms"] == [] and "loss/train" in acc.Tags()["scalars"]


@pytest.mark.parametrize("bad", ["yes", 0])
def test_bad_tensorboard_keys_are_refused(tmp_path, bad):
    from helpers import one_line_error

    key = "tensorboard" if bad == "yes" else "histogram_every"
    message = one_line_error(config_from_dict, {**IRIS, "output": {key: bad}})
    assert f"output.{key}" in message
