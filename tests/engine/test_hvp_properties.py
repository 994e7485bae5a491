"""Property-based: over random widths (1–6), depths (1–4 linear layers), activations, losses and
batch sizes (1–8), the gradient and the Hessian-vector product agree with finite differences,
and the HVP is linear in v and symmetric."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.losses import LOSSES
from mlpbp.engine.network import MLP
from mlpbp.tools import gradcheck as gc

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 4))  # linear layers
    widths = draw(st.lists(st.integers(1, 6), min_size=depth + 1, max_size=depth + 1))
    activation = draw(st.sampled_from(sorted(ACTIVATIONS)))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    if loss == "cross_entropy":  # a softmax needs two classes at least
        widths[-1] = max(widths[-1], 2)
    batch = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    # Class weights (train.class_weight) scale each row's loss: still exact gradients and HVPs.
    weighted = loss == "cross_entropy" and draw(st.booleans())
    weights = rng.uniform(0.2, 3.0, widths[-1]) if weighted else None
    net = MLP(widths, activation, loss, seed=seed, dtype="float64", class_weight=weights)
    for name, p in net.params.items():  # a generic point: non-zero biases
        if name.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    X = rng.standard_normal((batch, widths[0]))
    y = LOSSES[loss].example_targets(rng, batch, widths[-1])
    return net, X, y, rng


@SETTINGS
@given(problems())
def test_gradient_and_hvp_agree_with_finite_differences(problem):
    net, X, y, _ = problem
    report = gc.check_network(net, X, y, seed=1)
    assert report.ok, [(c.name, c.max_abs_err, c.max_rel_err, c.details[:2]) for c in report.failures]
    assert report.max_rel_err < 1e-6
    # Nothing was silently skipped except at a ReLU-family kink.
    if not ACTIVATIONS[net.activation].relu_family:
        assert report.skipped == 0


@SETTINGS
@given(problems(), st.floats(-3, 3), st.floats(-3, 3))
def test_hvp_is_linear_in_v(problem, a, b):
    net, X, y, rng = problem
    u, v = rng.standard_normal(net.n_params), rng.standard_normal(net.n_params)
    Hu, Hv = net.flat_hvp(X, y, u), net.flat_hvp(X, y, v)
    H_comb = net.flat_hvp(X, y, a * u + b * v)
    scale = abs(a) * np.abs(Hu).max() + abs(b) * np.abs(Hv).max() + 1e-300
    assert np.abs(H_comb - (a * Hu + b * Hv)).max() <= 1e-11 * scale


@SETTINGS
@given(problems())
def test_hvp_is_symmetric(problem):
    net, X, y, rng = problem
    u, v = rng.standard_normal(net.n_params), rng.standard_normal(net.n_params)
    Hu, Hv = net.flat_hvp(X, y, u), net.flat_hvp(X, y, v)
    bound = max(np.linalg.norm(u) * np.linalg.norm(Hv), np.linalg.norm(v) * np.linalg.norm(Hu))
    assert abs(u @ Hv - v @ Hu) <= 1e-12 * bound + 1e-300
