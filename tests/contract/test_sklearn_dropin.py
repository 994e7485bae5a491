"""mlpbp.sklearn as a drop-in for sklearn.neural_network: the same parameters and seed give the
same initial weights and, for solver="sgd", the same steps as scikit-learn's estimators (binary,
multiclass, multilabel, regression, Poisson); sample_weight of integers equals repeated rows;
sparse X equals dense X; float32 stays float32; the parameter table refuses bad values at fit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse
import sklearn.neural_network as sk
from sklearn.datasets import make_classification, make_multilabel_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from mlpbp.sklearn import MLPClassifier, MLPRegressor


def _fit(est, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kw)


def _problems():
    X, y = make_classification(n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0)
    Xb, yb = make_classification(n_samples=120, n_features=6, random_state=1)
    Xm, Ym = make_multilabel_classification(n_samples=120, n_features=6, n_classes=4, random_state=2)
    Xr, yr = make_regression(n_samples=120, n_features=6, n_targets=2, random_state=3)
    rng = np.random.default_rng(4)
    Xp = rng.uniform(-1, 1, (120, 6))
    yp = rng.poisson(np.exp(0.5 + Xp[:, 0] - 0.5 * Xp[:, 1]))
    return {
        "multiclass": ("classifier", X, y, {}),
        "binary": ("classifier", Xb, yb, {}),
        "multilabel": ("classifier", Xm, Ym, {}),
        "regression": ("regressor", Xr, yr / yr.std(), {}),
        "poisson": ("regressor", Xp, yp, {"loss": "poisson"}),
    }


PROBLEMS = _problems()


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_sgd_takes_scikit_learns_steps(name):
    kind, X, y, extra = PROBLEMS[name]
    params = dict(
        hidden_layer_sizes=(7, 5),
        activation="tanh",
        solver="sgd",
        learning_rate_init=0.01,
        momentum=0.9,
        alpha=1e-3,
        batch_size=16,
        max_iter=6,
        random_state=0,
        **extra,
    )
    ours = _fit((MLPClassifier if kind == "classifier" else MLPRegressor)(**params), X, y)
    theirs = _fit((sk.MLPClassifier if kind == "classifier" else sk.MLPRegressor)(**params), X, y)
    assert ours.out_activation_ == theirs.out_activation_ and ours.n_iter_ == theirs.n_iter_ == 6
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    if kind == "regressor":
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)
    else:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_lbfgs_counts_iterations_and_reaches_scikit_learns_fit():
    X, y = make_regression(n_samples=150, n_features=5, noise=5.0, random_state=0)
    y = y / y.std()
    params = dict(hidden_layer_sizes=(8,), activation="tanh", solver="lbfgs", max_iter=15, random_state=0)
    ours, theirs = _fit(MLPRegressor(**params), X, y), _fit(sk.MLPRegressor(**params), X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 15
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-5, atol=1e-6)
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("name", ["multiclass", "multilabel", "regression", "poisson"])
def test_integer_sample_weight_equals_repeated_rows(name):
    kind, X, y, extra = PROBLEMS[name]
    s = np.random.default_rng(0).integers(0, 4, X.shape[0])
    rows = np.repeat(np.arange(X.shape[0]), s)
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    # one batch an epoch, in row order: the weighted and the repeated fits take the same steps
    params = dict(hidden_layer_sizes=(6,), solver="sgd", batch_size=1000, shuffle=False, max_iter=20, random_state=0)
    weighted = _fit(cls(**params, **extra), X, y, sample_weight=s)
    repeated = _fit(cls(**params, **extra), X[rows], y[rows])
    for a, b in zip(weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-12)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_sparse_x_fits_and_predicts_as_dense(fmt):
    _, X, y, _ = PROBLEMS["multiclass"]
    X = np.where(np.abs(X) > 1, X, 0.0)  # mostly zeros
    Xs = scipy.sparse.csr_matrix(X) if fmt == "csr" else scipy.sparse.csc_matrix(X)
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    dense, sparse = _fit(MLPClassifier(**params), X, y), _fit(MLPClassifier(**params), Xs, y)
    # the first layer's products are taken on the sparse matrix: the same sums, in another order
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=0, atol=1e-12)


def test_float32_in_gives_float32_weights_and_predictions():
    _, X, y, _ = PROBLEMS["regression"]
    reg = _fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=5, random_state=0), X.astype(np.float32), y)
    assert {c.dtype for c in reg.coefs_ + reg.intercepts_} == {np.dtype(np.float32)}
    assert reg.predict(X.astype(np.float32)).dtype == np.float32
    assert reg._net.dtype == np.float32


def test_assigned_coefs_change_the_model():
    _, X, y, _ = PROBLEMS["binary"]
    clf = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0), X, y)
    before = clf.predict_proba(X)
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    np.testing.assert_allclose(clf.predict_proba(X), 0.5)  # every logit 0
    assert not np.allclose(before, 0.5)
    clf.coefs_[1] = np.ones_like(clf.coefs_[1])  # an item of the list, too
    clf.intercepts_[1] = np.array([2.0])
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], 1 / (1 + np.exp(-2.0)))


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"learning_rate": "cyclic"}, "learning_rate"),
        ({"activation": "softmax"}, "activation"),
        ({"momentum": 1.5}, "momentum"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"max_fun": 0}, "max_fun"),
        ({"dtype": "float16"}, "dtype"),
        ({"solver": "rmsprop"}, "solver"),
    ],
)
def test_the_parameter_table_refuses_bad_values_at_fit(params, name):
    clf = MLPClassifier(**params)  # the constructor only stores them
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of MLPClassifier"):
        clf.fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(InvalidParameterError, match="'loss' parameter of MLPRegressor"):
        MLPRegressor(loss="huber").fit([[0.0], [1.0]], [0.0, 1.0])


def test_poisson_refuses_negative_targets_and_partial_fit_after_early_stopping():
    with pytest.raises(ValueError, match="y >= 0"):
        MLPRegressor(loss="poisson").fit([[0.0], [1.0]], [1.0, -1.0])
    _, X, y, _ = PROBLEMS["multiclass"]
    clf = _fit(MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=5, random_state=0), X, y)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        clf.partial_fit(X, y)
