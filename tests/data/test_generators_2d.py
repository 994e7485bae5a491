"""The two generators the playground added: quadrants (xor as a cloud) and two gaussians."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp.data import GENERATORS, generate
from mlpbp.run.config import config_from_dict
from mlpbp.run.prepare import prepare


def test_quadrants_labels_are_the_xor_of_the_signs():
    d = generate("quadrants", seed=1, n_samples=300, noise=0.0)
    assert d.X.shape == (300, 2) and d.task == "classification"
    assert np.all(np.abs(d.X) <= 1.0)
    np.testing.assert_array_equal(d.y, (np.sign(d.X[:, 0]) != np.sign(d.X[:, 1])).astype(int))
    assert 0.4 < d.y.mean() < 0.6


def test_gaussians_are_two_blobs_whose_spread_grows_with_noise():
    d = generate("gaussians", seed=2, n_samples=4000, noise=0.0)
    for label, centre in ((0, -1.0), (1, 1.0)):
        X = d.X[d.y == label]
        assert X.shape[0] == 2000
        np.testing.assert_allclose(X.mean(axis=0), [centre, centre], atol=0.05)
        np.testing.assert_allclose(X.std(axis=0), [0.5, 0.5], rtol=0.06)
    wide = generate("gaussians", seed=2, n_samples=4000, noise=1.0)
    np.testing.assert_allclose(wide.X[wide.y == 0].std(axis=0), [np.sqrt(1.25)] * 2, rtol=0.06)


@pytest.mark.parametrize("name", ["quadrants", "gaussians"])
def test_seeded_and_usable_from_a_config(name):
    assert name in GENERATORS
    a, b = generate(name, 5, 50), generate(name, 5, 50)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, generate(name, 6, 50).X)
    data = prepare(config_from_dict({"data": {"dataset": name, "n_samples": 50}}))
    assert data.train[0].shape[1] == 2 and data.n_outputs == 2
