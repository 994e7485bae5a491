"""Sparse X in the estimators and the engine: the first layer's products are taken on the
sparse matrix (X Wᵀ, ∂J/∂W = δᵀX), never densifying it, and give the dense path's numbers:
fitted weights and predictions equal to 1e-12 in float64 for every solver; the engine's loss,
gradient, HVP and Gauss-Newton products on CSR equal the dense ones."""

from __future__ import annotations

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")
pytest.importorskip("sklearn")

from mlpbp import MLP  # noqa: E402
from mlpbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def _one_hot_table(n=300, fields=6, levels=12, seed=0):
    """A one-hot-heavy table: ``fields`` categorical columns of ``levels`` values each, one-hot."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, levels, (n, fields))
    rows = np.repeat(np.arange(n), fields)
    cols = (codes + levels * np.arange(fields)).ravel()
    X = sp.csr_matrix((np.ones(n * fields), (rows, cols)), shape=(n, fields * levels))
    score = (codes % 3 == 0).sum(axis=1) + 0.3 * rng.standard_normal(n)
    return X, score


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_sparse_x_fits_as_dense_x_does(solver):
    X, score = _one_hot_table()
    y = (score > np.median(score)).astype(int)
    kw = dict(hidden_layer_sizes=(9,), solver=solver, max_iter=15, random_state=3, alpha=1e-3, tol=0)
    if solver == "sgd":
        kw |= {"momentum": 0.9, "learning_rate_init": 0.05}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 15 iterations on purpose
        a = MLPClassifier(**kw).fit(X, y)
        b = MLPClassifier(**kw).fit(X.toarray(), y)
        c = MLPRegressor(**kw).fit(X.tocsc(), score)
        d = MLPRegressor(**kw).fit(X.toarray(), score)
    for s, t in ((a, b), (c, d)):
        for p, q in zip(s.coefs_ + s.intercepts_, t.coefs_ + t.intercepts_):
            np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)
        assert s.loss_curve_ == pytest.approx(t.loss_curve_, rel=1e-12, abs=0) if solver != "lbfgs" else True
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.predict(X), d.predict(X.toarray()), rtol=0, atol=1e-12)


def test_sparse_batches_stay_sparse_in_the_first_layer(monkeypatch):
    # Densifying a sparse batch anywhere would go through toarray: refuse it for the whole fit.
    X, score = _one_hot_table(n=120)
    y = (score > np.median(score)).astype(int)

    width = X.shape[1]  # scikit-learn's own label binarizer may densify its (rows, classes) y

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.csc_array):
        for name in ("toarray", "todense"):
            original = getattr(cls, name)

            def no_densify(self, *a, _original=original, **k):
                if self.shape[1] == width:
                    raise AssertionError("a sparse batch of X was densified")
                return _original(self, *a, **k)

            monkeypatch.setattr(cls, name, no_densify)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    assert est.predict(X).shape == (120,)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "square"])
def test_engine_passes_on_csr_equal_the_dense_ones(loss):
    rng = np.random.default_rng(1)
    X = sp.random(40, 25, density=0.15, random_state=2, format="csr")
    y = rng.integers(0, 3, 40) if loss == "cross_entropy" else rng.integers(0, 2, (40, 3)).astype(float)
    w = rng.uniform(0, 2, 40)
    net = MLP([25, 6, 3], "tanh", loss, seed=0, dtype="float64")
    (ja, ga), (jb, gb) = net.loss_and_grad(X, y, w), net.loss_and_grad(X.toarray(), y, w)
    assert ja == pytest.approx(jb, rel=1e-14)
    v = {k: rng.standard_normal(p.shape) for k, p in net.params.items()}
    for a, b in (
        (ga, gb),
        (net.hvp(X, y, v), net.hvp(X.toarray(), y, v)),
        (net.gnvp(X, y, v), net.gnvp(X.toarray(), y, v)),
    ):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12)


def test_sparse_x_into_a_network_whose_input_is_not_one_linear_module_is_refused():
    from mlpbp.engine.graph import Network

    net = Network.from_layers(["layer_norm", {"linear": 4}, "relu"], 5, 2, loss="square")
    with pytest.raises(ValueError, match="sparse X needs a network whose input goes to one linear module"):
        net.forward(sp.random(3, 5, density=0.5, format="csr"))
