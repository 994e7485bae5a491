"""Memory estimates: upper bounds of what a network and a training step really hold, read
against the memory the machine has, and refused with the key to change before allocating."""

from __future__ import annotations

import numpy as np
import pytest

import mlpbp.engine.memory as memory
from mlpbp import MLP, SGD
from mlpbp.errors import ResourceError
from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import build_model

WIDTHS = [7, 33, 17, 3]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_network_estimate_bounds_its_parameters_and_gradients(dtype):
    net = MLP(WIDTHS, "tanh", "cross_entropy", dtype=dtype)
    held = sum(p.nbytes for p in net.params.values()) + sum(g.nbytes for g in net.grads.values())
    assert memory.n_params(WIDTHS) == net.n_params
    objects = memory.LAYER_OBJECT_BYTES * (len(WIDTHS) - 1)  # each layer's Python objects, counted too
    assert held <= memory.network_bytes(WIDTHS, dtype) <= 2 * held + objects


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_step_estimate_bounds_every_buffer_a_training_step_keeps(dtype):
    net = MLP(WIDTHS, "tanh", "cross_entropy", dtype=dtype)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 7)).astype(dtype), rng.integers(0, 3, 50)
    opt = SGD(net.params, 0.1, momentum=0.9)
    net.step_loss_and_grad(X, y)
    opt.step(net.grads)
    net.train_step(X, y, opt)
    buffers = sum(b.nbytes for layer in net.layers for b in layer._buffers.values())
    assert 0 < buffers <= memory.activation_bytes(WIDTHS, 50, dtype)


def test_available_memory_is_what_the_kernel_reports():
    available = memory.available_bytes()
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert available is not None and 0 < available <= total


def test_require_names_the_bytes_needed_and_available(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 900)
    memory.require(900, "this")  # exactly fits
    with pytest.raises(ResourceError) as e:
        memory.require(901, "building this", key="model.hidden")
    assert str(e.value) == (
        "config error at model.hidden: building this needs about 901 bytes, more than the 900 bytes of memory available"
    )
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # the system does not say: no check
    memory.require(10**30, "anything")


def test_the_python_api_refuses_a_network_larger_than_memory(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**6)
    MLP([2, 100, 2])  # ~4 kB
    with pytest.raises(ResourceError, match=r"a 2-100000-2 network \(500,002 parameters and their gradients\)"):
        MLP([2, 100_000, 2])  # 8 MB


@pytest.mark.parametrize(
    "hidden, batch_size, key",
    [
        ([10_000_000], 1, "model.hidden"),  # the parameters alone take 240 MB
        ([1_000], 1_000_000, "train.batch_size"),  # the network fits; a batch's activations do not
    ],
)
def test_the_config_key_to_change_is_named(monkeypatch, hidden, batch_size, key):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**8)
    cfg = config_from_dict(
        {"data": {"dataset": "moons"}, "model": {"hidden": hidden}, "train": {"batch_size": batch_size}}
    )
    with pytest.raises(ResourceError, match=rf"^config error at {key}: training a 2-{hidden[0]}-2 network"):
        build_model(cfg, 2, 2, "classification")


def test_a_deep_copy_of_adam_updates_its_own_state():
    """The thread calibration trains a deep copy of the optimizer: its flat views must be views
    of the copy's state (copy.deepcopy made each an array of its own: the state twice over,
    and the copy's updates never reached its exp_avg)."""
    import copy

    from mlpbp import AdamW

    p = {"W": np.ones((3, 4), np.float32)}
    scratch = copy.deepcopy(AdamW(p))
    m, v, denom, _ = scratch._flat["W"]
    assert np.shares_memory(m, scratch.exp_avg["W"]) and np.shares_memory(v, scratch.exp_avg_sq["W"])
    assert np.shares_memory(denom, scratch._denom["W"])
    scratch.begin_step()
    scratch.update("W", scratch.params["W"], np.full((3, 4), 2.0, np.float32))
    np.testing.assert_allclose(scratch.exp_avg["W"], 0.2, rtol=1e-6)
