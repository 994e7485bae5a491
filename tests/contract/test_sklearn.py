"""mlpbp.sklearn: scikit-learn's estimator contract (check_estimator), pipelines, grid search
over processes, pickling, partial_fit, and the numbers: one step equals the engine's SGD step."""

from __future__ import annotations

import pickle
import subprocess
import warnings

import numpy as np
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from helpers import PYTHON
from mlpbp.engine.network import MLP
from mlpbp.engine.optim import OPTIMIZERS, SGD
from mlpbp.sklearn import MLPClassifier, MLPRegressor

# Checks that may fail, each with its reason (at most three allowed). None do for the plain
# network; with dropout or batch statistics, fitting with integer sample weights is not fitting
# on repeated rows, by what they are.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}
_WEIGHTS_NOT_ROWS = (
    "dropout draws a mask per row, and batch_norm takes unweighted batch statistics: a row of weight 2 is one"
    " masked row counted twice, where two copies of it are two rows, masked apart and counted in the statistics"
)
STOCHASTIC_ROWS_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_NOT_ROWS,
    "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_NOT_ROWS,
}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.mark.parametrize(
    ("estimator", "expected"),
    [
        (MLPClassifier(), EXPECTED_FAILED_CHECKS),
        (MLPRegressor(), EXPECTED_FAILED_CHECKS),
        (MLPClassifier(norm="layer"), EXPECTED_FAILED_CHECKS),  # per-row statistics: weights are rows
        (MLPClassifier(dropout=0.1, norm="layer"), STOCHASTIC_ROWS_FAILED_CHECKS),
        (MLPRegressor(dropout=0.2, norm="batch"), STOCHASTIC_ROWS_FAILED_CHECKS),
    ],
    ids=[
        "classifier",
        "regressor",
        "classifier-layer-norm",
        "classifier-dropout-layer-norm",
        "regressor-dropout-batch-norm",
    ],
)
def test_check_estimator_passes(estimator, expected):
    assert len(expected) <= 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = check_estimator(estimator, expected_failed_checks=expected, on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert not failed
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed == set(expected)  # each expected failure does fail: none is left over
    assert len(results) > 40  # the whole suite ran, not a handful


def test_classifier_learns_digits_in_a_pipeline(digits):
    X_train, X_test, y_train, y_test = digits
    clf = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(32,), solver="sgd", learning_rate_init=0.01, max_iter=30, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.95
    mlp = clf[-1]
    assert list(mlp.classes_) == list(range(10)) and mlp.n_iter_ == len(mlp.loss_curve_) <= 30
    assert mlp.loss_curve_[-1] < mlp.loss_curve_[0] / 10
    p = clf.predict_proba(X_test)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[p.argmax(axis=1)], clf.predict(X_test))
    assert [c.shape for c in mlp.coefs_] == [(64, 32), (32, 10)]


def test_grid_search_over_two_processes(digits):
    X_train, X_test, y_train, y_test = digits
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), MLPClassifier(max_iter=10, random_state=0)),
        {"mlpclassifier__hidden_layer_sizes": [(8,), (32,)], "mlpclassifier__learning_rate_init": [0.001, 0.05]},
        cv=2,
        n_jobs=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X_train[:600], y_train[:600])
    assert len(grid.cv_results_["params"]) == 4
    # 10 epochs at α = 0.001 barely move the weights: the wider, faster setting wins
    assert grid.best_params_ == {"mlpclassifier__hidden_layer_sizes": (32,), "mlpclassifier__learning_rate_init": 0.05}
    assert grid.score(X_test, y_test) > 0.9


def test_one_fit_epoch_is_one_sgd_step_of_the_engine():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 3, 20)
    clf = MLPClassifier(
        hidden_layer_sizes=(5,),
        activation="tanh",
        solver="sgd",
        learning_rate_init=0.01,
        batch_size=20,
        max_iter=1,
        momentum=0.0,
        alpha=0.0,
        random_state=1,
        warm_start=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)  # warm_start: the next fit starts from these weights
        ref = MLP([3, 5, 3], "tanh", "cross_entropy", dtype="float64")
        ref.set_flat(clf._net.get_flat())
        clf.loss_curve_.clear()
        clf.fit(X, y)
    # the same initial weights, one full-batch step by hand
    J, grads = ref.loss_and_grad(X, y)
    SGD(ref.params, learning_rate=0.01).step(grads)
    np.testing.assert_allclose(clf._net.get_flat(), ref.get_flat(), rtol=1e-12, atol=1e-15)
    # scikit-learn's loss_curve_: the epoch's batch losses, taken before each step
    assert clf.loss_curve_ == [pytest.approx(J, rel=1e-12)]


def test_regressor_predicts_in_target_units_and_multi_output():
    X, y = make_regression(n_samples=300, n_features=4, n_targets=2, noise=0.1, random_state=0)
    y = y * 100 + 5000  # large units: as in scikit-learn, y is scaled by the pipeline around it
    reg = TransformedTargetRegressor(
        MLPRegressor(
            hidden_layer_sizes=(16,), activation="identity", solver="sgd", learning_rate_init=0.01, random_state=0
        ),
        transformer=StandardScaler(),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y)
    assert reg.predict(X).shape == (300, 2) and reg.score(X, y) > 0.999
    reg.fit(X, y[:, 0])
    assert reg.predict(X).shape == (300,)


def test_pickle_round_trip_predicts_and_trains_on_identically(digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X_test), clf.predict_proba(X_test))
    # momentum state and the shuffling generator travel too: the next epoch is the same
    clf.partial_fit(X_train, y_train)
    copy.partial_fit(X_train, y_train)
    np.testing.assert_array_equal(copy._net.get_flat(), clf._net.get_flat())
    assert copy.coefs_[0].base is not None  # views of the live weights again
    copy.coefs_[0][0, 0] += 1.0
    assert copy._net.params["W1"][0, 0] == copy.coefs_[0][0, 0]


def test_partial_fit_streams_epochs(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X_train, y_train)
    half = len(X_train) // 2
    clf.partial_fit(X_train[:half], y_train[:half], classes=np.arange(10))
    for _ in range(5):
        clf.partial_fit(X_train[half:], y_train[half:])
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert clf.loss_curve_[-1] < clf.loss_curve_[1]
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X_train[:, :10], y_train)


@pytest.mark.parametrize("solver", list(OPTIMIZERS))
def test_every_registered_optimizer_is_a_solver(solver, digits):
    X_train, X_test, y_train, y_test = digits
    clf = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(16,), solver=solver, learning_rate_init=0.01, max_iter=20, random_state=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    assert clf.score(X_test, y_test) > 0.9


def test_unknown_solver_names_the_registered_ones():
    with pytest.raises(ValueError, match="sgd"):
        MLPClassifier(solver="rmsprop").fit([[0.0], [1.0]], [0, 1])


def test_early_stopping_keeps_the_best_validation_weights(digits):
    X_train, _, y_train, _ = digits
    clf = MLPClassifier(
        hidden_layer_sizes=(16,),
        learning_rate_init=0.01,
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=200,
        random_state=0,
    ).fit(X_train, y_train)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9


def test_float32_follows_float64_from_the_same_seed():
    X, y = make_regression(n_samples=100, n_features=3, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()  # scaled targets, as scikit-learn's MLPs want them
    fits = {}
    for dtype in ("float32", "float64"):
        reg = MLPRegressor(
            hidden_layer_sizes=(8,),
            solver="sgd",
            learning_rate_init=0.01,
            batch_size=10,
            max_iter=30,
            tol=0,
            dtype=dtype,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits[dtype] = reg.fit(X, y)
    assert fits["float32"].coefs_[0].dtype == np.float32 and fits["float64"].score(X, y) > 0.99
    np.testing.assert_allclose(fits["float32"].predict(X), fits["float64"].predict(X), rtol=0, atol=1e-3 * np.ptp(y))


def test_without_scikit_learn_the_import_says_what_to_install():
    code = "import sys; sys.modules['sklearn'] = None\ntry:\n import mlpbp.sklearn\nexcept ImportError as e:\n print(e)"
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'mlpbp[sklearn]'" in proc.stdout and len(proc.stdout.splitlines()) == 1
