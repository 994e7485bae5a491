"""Dropout's float32 masks come from 64-bit words drawn two at a time (``uniform_bits``): the
very masks, and generator states, that ``generator.random(dtype=float32) >= p`` gives."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp.engine.dropout import Dropout, uniform_bits
from mlpbp.engine.graph import Network


def _old_mask(gen, shape, p, dtype):
    m = gen.random(shape, dtype=dtype)
    return (m >= dtype(p)).astype(dtype) * dtype(1.0 / (1.0 - p))


@pytest.mark.parametrize("p", [0.1, 0.5, 1e-7, 0.3333333, 0.999])
def test_masks_and_states_equal_the_float_draws_for_odd_and_even_sizes(p):
    for dtype in (np.float32, np.float64):
        net = Network.from_layers([{"linear": 5}, {"dropout": p}], 3, 2, seed=11, dtype=np.dtype(dtype).name)
        drop = next(m for m in net.layers if isinstance(m, Dropout))
        ref = np.random.default_rng([11, 1])
        for rows in (7, 1, 2, 4, 3, 256, 0, 9):  # 35, 5, 10, ... values: halves kept and used up
            x = np.ones((rows, 5), dtype)
            y = drop.forward(x)
            expected = _old_mask(ref, (rows, 5), p, dtype)
            assert np.array_equal(y, expected), (dtype, rows)
            assert net.generator.bit_generator.state == ref.bit_generator.state, (dtype, rows)


def test_uniform_bits_are_the_words_of_the_float32_draws():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    scratch = {}
    for n in (1, 1, 2, 5, 64, 0, 3):
        floats = a.random(n, dtype=np.float32)
        words = uniform_bits(b, n, scratch)
        assert np.array_equal((words >> 8).astype(np.float32) * np.float32(2.0**-24), floats)
        assert a.bit_generator.state == b.bit_generator.state
    assert uniform_bits(np.random.Generator(np.random.MT19937(0)), 4, {}) is None  # another bit generator
