"""mlpbp.sklearn with ``dropout`` and ``norm``: the network model.dropout / model.norm build,
fitted in training mode and predicting in evaluation mode; seeded masks; running statistics
kept by early stopping, set by lbfgs, and pickled."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mlpbp.engine.graph import Network
from mlpbp.engine.losses import softmax
from mlpbp.engine.norm import BatchNorm
from mlpbp.run.config import ModelConfig
from mlpbp.sklearn import MLPClassifier, MLPRegressor


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    return X, y


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def test_predictions_are_the_engine_networks_in_eval_mode(data):
    X, y = data
    clf = _fit(MLPClassifier(hidden_layer_sizes=(16, 8), dropout=0.3, norm="batch", max_iter=15, random_state=0), X, y)
    # the network model.hidden builds with the same dropout and norm, given the fitted arrays
    layers = ModelConfig(hidden=[16, 8], dropout=0.3, norm="batch").layer_list()
    net = Network.from_layers(layers, 6, 3, loss="cross_entropy", activation="relu", dtype="float64")
    assert [m.kind for m in net.layers] == [m.kind for m in clf._net.layers]
    assert list(net.params) == list(clf._net.params) and list(net.buffers) == list(clf._net.buffers)
    net.set_flat(clf._net.get_flat())
    for k, b in clf._net.buffers.items():
        net.buffers[k][...] = b
    # the running statistics moved while fitting (they start at 0 and 1)
    assert not np.allclose(net.buffers["running_mean1"], 0) and not np.allclose(net.buffers["running_var1"], 1)
    expected = softmax(net.eval().forward(X))
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-12, atol=1e-15)
    assert np.array_equal(clf.predict(X), clf.classes_[expected.argmax(axis=1)])
    # training mode would give another answer (masks, batch statistics): predict is not in it
    assert not np.allclose(softmax(net.train().forward(X)), expected, atol=1e-3)
    assert clf.predict_proba(X) == pytest.approx(clf.predict_proba(X))  # no masks drawn at predict


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_a_fixed_random_state_repeats_and_another_draws_other_masks(data, norm):
    X, y = data
    make = lambda seed: MLPClassifier(  # noqa: E731
        hidden_layer_sizes=(12,), dropout=0.25, norm=norm, max_iter=8, random_state=seed
    )
    a, b, c = _fit(make(3), X, y), _fit(make(3), X, y), _fit(make(4), X, y)
    assert np.array_equal(a._net.get_flat(), b._net.get_flat())
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X)) and a.loss_curve_ == b.loss_curve_
    assert not np.allclose(a._net.get_flat(), c._net.get_flat())


def test_dropout_defaults_keep_the_plain_network(data):
    X, y = data
    plain = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X, y)
    zero = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dropout=0.0, norm="none"), X, y)
    assert type(plain._net).__name__ == "MLP" and np.array_equal(plain._net.get_flat(), zero._net.get_flat())


def test_dropout_changes_the_fit_and_norm_adds_gamma_and_beta(data):
    X, y = data
    plain = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X, y)
    drop = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, dropout=0.5), X, y)
    # the same initial weights (the mask seed is drawn after them), other steps
    assert not np.allclose(plain.coefs_[0], drop.coefs_[0])
    normed = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, norm="layer"), X, y)
    assert set(normed._net.params) == {"W1", "b1", "W2", "b2", "gamma1", "beta1"}
    assert not np.allclose(normed._net.params["gamma1"], 1)  # trained, not left at its initial value
    assert [c.shape for c in normed.coefs_] == [(6, 8), (8, 3)] and normed.n_layers_ == 3


class _Watched(MLPClassifier):
    """Keeps the validation rows and the buffers after each epoch, to check early stopping."""

    def _update_no_improvement_count(self, X_val, y_val, sw_val):
        self.seen_ = (X_val, y_val)
        super()._update_no_improvement_count(X_val, y_val, sw_val)
        self.epoch_buffers_ = getattr(self, "epoch_buffers_", []) + [
            {k: b.copy() for k, b in self._net.buffers.items()}
        ]


def test_early_stopping_restores_the_best_epochs_running_statistics(data):
    X, y = data
    clf = _Watched(
        hidden_layer_sizes=(16,),
        norm="batch",
        early_stopping=True,
        n_iter_no_change=3,
        learning_rate_init=0.05,
        max_iter=60,
        random_state=0,
    )
    _fit(clf, X, y)
    best = int(np.argmax(clf.validation_scores_))
    assert best < clf.n_iter_ - 1  # later epochs ran, and their weights and statistics were dropped
    for k, b in clf._net.buffers.items():
        np.testing.assert_array_equal(b, clf.epoch_buffers_[best][k])
    assert not np.array_equal(clf.epoch_buffers_[-1]["running_mean1"], clf._net.buffers["running_mean1"])
    X_val, y_val = clf.seen_
    assert clf.score(X_val, y_val) == clf.best_validation_score_ == clf.validation_scores_[best]


def test_lbfgs_sets_the_running_statistics_to_the_datas(data):
    X, y = data
    clf = _fit(MLPClassifier(hidden_layer_sizes=(10,), norm="batch", solver="lbfgs", max_iter=30, random_state=0), X, y)
    z = X @ clf.coefs_[0] + clf.intercepts_[0]  # what the batch_norm normalises
    np.testing.assert_allclose(clf._net.buffers["running_mean1"], z.mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(clf._net.buffers["running_var1"], z.var(axis=0, ddof=1), rtol=1e-12)


def test_pickle_keeps_gamma_beta_statistics_and_the_mask_generator(data):
    X, y = data
    reg = MLPRegressor(hidden_layer_sizes=(8,), dropout=0.2, norm="batch", max_iter=4, random_state=0)
    _fit(reg, X, X[:, 0])
    copy = pickle.loads(pickle.dumps(reg))
    assert np.array_equal(copy.predict(X), reg.predict(X))
    for k, b in reg._net.buffers.items():
        assert np.array_equal(copy._net.buffers[k], b)
    assert np.array_equal(copy._net.params["gamma1"], reg._net.params["gamma1"])
    # partial_fit goes on with the same masks in both
    reg.partial_fit(X, X[:, 0])
    copy.partial_fit(X, X[:, 0])
    assert np.array_equal(copy._net.get_flat(), reg._net.get_flat())


def test_one_row_batches_and_lbfgs_dropout_are_refused_in_one_line(data):
    X, y = data
    with pytest.raises(ValueError, match="norm='batch' needs at least 2 samples per batch; got 1 sample$"):
        MLPClassifier(norm="batch", batch_size=1).fit(X, y)
    with pytest.raises(ValueError, match="dropout=0.1 needs a stochastic solver"):
        MLPClassifier(dropout=0.1, solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="dropout"):
        MLPClassifier(dropout=1.0).fit(X, y)
    with pytest.raises(ValueError, match="norm"):
        MLPClassifier(norm="group").fit(X, y)
    # a last batch of one row joins the one before: batch statistics need two rows
    clf = _fit(
        MLPClassifier(hidden_layer_sizes=(4,), norm="batch", batch_size=7, max_iter=2, random_state=0), X[:15], y[:15]
    )
    assert clf.n_iter_ == 2 and any(isinstance(m, BatchNorm) for m in clf._net.layers)
