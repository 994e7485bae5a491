"""scikit-learn estimators over mlpbp's engine: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's conventions (the constructor only stores its parameters; ``fit``,
``partial_fit``, ``predict``, ``score``; fitted attributes end in ``_``), with parameter names
close to ``sklearn.neural_network``'s, so they drop into a ``Pipeline`` or ``GridSearchCV``::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from mlpbp.sklearn import MLPClassifier

    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), random_state=0))

As in scikit-learn, inputs are used as given (scale them in the pipeline). Needs the optional
extra: ``pip install 'mlpbp[sklearn]'``. They pickle (scikit-learn users expect it); the CLI's
files stay pickle-free.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - exercised by a test that hides scikit-learn
    raise ImportError(f"mlpbp.sklearn needs scikit-learn: pip install 'mlpbp[sklearn]' ({e})") from None

from mlpbp.engine.graph import Network
from mlpbp.engine.layers import Linear
from mlpbp.engine.network import MLP
from mlpbp.engine.optim import OPTIMIZERS, Optimizer, build_optimizer
from mlpbp.run.epoch import sgd_epoch

__all__ = ["MLPClassifier", "MLPRegressor"]


class _MLPEstimator(BaseEstimator):
    """What the classifier and the regressor share: the network, the epoch loop, stopping."""

    _loss = "square"

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="sgd",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.01,
        max_iter=200,
        momentum=0.9,
        tol=1e-4,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=None,
        dtype="float64",
        dropout=0.0,
        norm="none",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.momentum = momentum
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.dtype = dtype
        self.dropout = dropout  # after each hidden activation, as model.dropout
        self.norm = norm  # none | batch | layer, before each hidden activation, as model.norm

    # ---- subclass hooks ---------------------------------------------------------------------
    def _encode_y(self, y, first: bool, classes=None) -> np.ndarray: ...

    def _n_outputs(self) -> int: ...

    # ---- checks -----------------------------------------------------------------------------
    def _check_params(self) -> None:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, (int, np.integer)) else list(sizes)
        if any(not isinstance(s, (int, np.integer)) or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers; got {self.hidden_layer_sizes!r}")
        if self.solver not in OPTIMIZERS:
            raise ValueError(f"solver: {OPTIMIZERS.unknown_message(self.solver)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1; got {self.max_iter!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1; got {self.batch_size!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1); got {self.validation_fraction!r}")
        if self.n_iter_no_change < 1:
            raise ValueError(f"n_iter_no_change must be >= 1; got {self.n_iter_no_change!r}")
        if not (isinstance(self.dropout, (int, float, np.floating)) and 0 <= self.dropout < 1):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if self.norm not in ("none", "batch", "layer"):
            raise ValueError(f"norm must be 'none', 'batch' or 'layer'; got {self.norm!r}")
        self._sizes = [int(s) for s in sizes]

    def _build(self, widths, seed: int = 0):
        """An MLP, or with dropout or norm the same chain with those modules in it."""
        if not self.dropout and self.norm == "none":
            return MLP(widths, self.activation, self._loss, seed=seed, dtype=self.dtype)
        layers = []
        for w in widths[1:-1]:
            layers += [{"linear": w}, *([f"{self.norm}_norm"] if self.norm != "none" else []), self.activation]
            layers += [{"dropout": float(self.dropout)}] if self.dropout else []
        net = Network.from_layers(layers, widths[0], widths[-1], loss=self._loss, activation=self.activation,
                                  seed=seed, dtype=self.dtype)  # fmt: skip
        return net.eval()

    def _validate_X(self, X) -> np.ndarray:
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False).astype(self.dtype, copy=False)

    def _validate(self, X, y, reset: bool):
        regression = self._loss == "square"
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], reset=reset, multi_output=regression, y_numeric=regression
        )
        return X.astype(self.dtype, copy=False), y

    # ---- the network and the optimiser -------------------------------------------------------
    def _initialize(self, n_features: int) -> None:
        rng = check_random_state(self.random_state)
        self._rng = np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        widths = [n_features, *self._sizes, self._n_outputs()]
        self._net = self._build(widths, seed=int(self._rng.integers(2**31)))
        self._opt = self._new_optimizer()
        self.n_iter_, self.t_ = 0, 0
        self.loss_curve_ = []
        self.best_loss_ = np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._no_improvement = 0
        self._expose_weights()

    def _new_optimizer(self):
        return build_optimizer(
            self.solver,
            self._net.params,
            learning_rate=self.learning_rate_init,
            momentum=self.momentum,
            weight_decay=self.alpha,
        )

    def _expose_weights(self) -> None:
        # scikit-learn's layout, (fan_in, fan_out): views of the live weights, never copies.
        linears = [m for m in self._net.layers if isinstance(m, Linear)]
        self.coefs_ = [layer.params["W"].T for layer in linears]
        self.intercepts_ = [layer.params["b"] for layer in linears]
        self.n_layers_ = len(linears) + 1
        self.n_outputs_ = self._net.widths[-1]
        self.out_activation_ = "softmax" if self._loss == "cross_entropy" else "identity"

    # ---- training -----------------------------------------------------------------------------
    def _epoch(self, X: np.ndarray, y: np.ndarray) -> float:
        """One pass over (X, y) in a fresh random order; returns the mean training loss."""
        n = X.shape[0]
        batch = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        order = self._rng.permutation(n)
        self._net.train()  # dropout masks and batch statistics while fitting; eval mode after
        with np.errstate(over="ignore", invalid="ignore"):
            if isinstance(self._opt, Optimizer):
                steps, loss = sgd_epoch(self._net, self._opt, X, y, order, batch)
            else:  # lbfgs, newton_cg: an epoch of whole-data steps
                self._opt.run_epoch(self._net, X, y, order, lambda: False)
                loss = float(self._net.loss(X, y))
            mean_loss = float(self._net.eval().loss(X, y))
        if not (math.isfinite(loss) and math.isfinite(mean_loss)):
            raise ValueError(
                f"training diverged (loss {mean_loss}) at iteration {self.n_iter_ + 1}; lower learning_rate_init"
            )
        self.n_iter_ += 1
        self.t_ += n
        self.loss_curve_.append(mean_loss)
        return mean_loss

    def _fit(self, X, y, incremental: bool) -> None:
        if self.early_stopping and not incremental:
            stratify = y if self._loss == "cross_entropy" else None
            try:
                X, X_val, y, y_val = train_test_split(
                    X, y, test_size=self.validation_fraction, random_state=self._rng.integers(2**31), stratify=stratify
                )
            except ValueError:  # a class too small to stratify
                X, X_val, y, y_val = train_test_split(
                    X, y, test_size=self.validation_fraction, random_state=self._rng.integers(2**31)
                )
        else:
            X_val = y_val = None
        best = None
        for _ in range(1 if incremental else self.max_iter):
            loss = self._epoch(X, y)
            if incremental:
                break
            if X_val is not None:  # stop on the validation score, keep its best weights
                score = self._score_encoded(X_val, y_val)
                self.validation_scores_.append(score)
                improved = score > self.best_validation_score_ + self.tol
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = {k: p.copy() for k, p in self._net.params.items()}
            else:
                improved = loss < self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
            self._no_improvement = 0 if improved else self._no_improvement + 1
            if self._no_improvement >= self.n_iter_no_change:
                break
        else:
            if not incremental:
                warnings.warn(
                    f"{type(self).__name__}: max_iter ({self.max_iter}) reached before the loss settled",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        if best is not None:
            for k, p in self._net.params.items():
                p[...] = best[k]

    def fit(self, X, y):
        """Train from scratch on (X, y); returns self."""
        self._check_params()
        X, y = self._validate(X, y, reset=True)
        y = self._encode_y(y, first=True)
        self._initialize(X.shape[1])
        self._fit(X, y, incremental=False)
        return self

    def _partial_fit(self, X, y, classes=None):
        first = not hasattr(self, "_net")
        if first:
            self._check_params()
        X, y = self._validate(X, y, reset=first)
        y = self._encode_y(y, first=first, classes=classes)
        if first:
            self._initialize(X.shape[1])
        self._fit(X, y, incremental=True)
        return self

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "coefs_")
        return self._net.forward(self._validate_X(X))

    # ---- pickling: the network's arrays, rebuilt with the weights and optimiser state -------
    def __getstate__(self):
        state = self.__dict__.copy()
        net = state.pop("_net", None)
        opt = state.pop("_opt", None)
        for k in ("coefs_", "intercepts_"):
            state.pop(k, None)
        if net is not None:
            state["_weights"] = {k: p.copy() for k, p in net.params.items()}
            state["_widths"] = net.widths
            state["_buffers"] = {k: b.copy() for k, b in net.buffers.items()}
            state["_opt_state"] = opt.state_dict() if hasattr(opt, "state_dict") else {}
        return state

    def __setstate__(self, state):
        weights = state.pop("_weights", None)
        widths = state.pop("_widths", None)
        opt_state = state.pop("_opt_state", None)
        buffers = state.pop("_buffers", None) or {}
        self.__dict__.update(state)
        if weights is not None:
            self._net = self._build(widths)
            for k, p in self._net.params.items():
                p[...] = weights[k]
            for k, b in buffers.items():
                self._net.buffers[k][...] = b
            self._opt = self._new_optimizer()
            if opt_state and hasattr(self._opt, "load_state_dict"):
                self._opt.load_state_dict(opt_state)
            self._expose_weights()


class MLPClassifier(ClassifierMixin, _MLPEstimator):
    """A multilayer perceptron classifier: softmax cross-entropy over ``len(classes_)`` outputs
    (two for a binary problem), trained by backpropagation with mlpbp's optimisers.

    Parameters follow ``sklearn.neural_network.MLPClassifier``: ``hidden_layer_sizes``,
    ``activation`` (any mlpbp activation), ``solver`` (any registered mlpbp optimizer, e.g.
    ``"sgd"``), ``alpha`` (L2: the gradient gains alpha·θ, as PyTorch's weight_decay),
    ``batch_size`` (``"auto"``: min(200, n)), ``learning_rate_init``, ``max_iter`` (epochs),
    ``momentum``, ``tol`` and ``n_iter_no_change`` (stop once the loss, or with
    ``early_stopping`` the validation accuracy, has not improved by ``tol`` for that many
    epochs), ``early_stopping`` (hold out ``validation_fraction``, keep the best weights),
    ``random_state``; and ``dtype`` (``"float64"`` or ``"float32"``)."""

    _loss = "cross_entropy"

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _encode_y(self, y, first: bool, classes=None) -> np.ndarray:
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(y if classes is None else classes)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"MLPClassifier needs at least 2 classes to learn from; got 1 class ({self.classes_[0]!r})"
                )
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes)!r} differ from those of the first partial_fit")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y holds labels not in classes: {unknown[:5]!r}")
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _score_encoded(self, X, y) -> float:
        return float(np.mean(self._net.forward(X).argmax(axis=1) == y))

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y), continuing from the current weights. The first call needs
        ``classes`` (every label the stream will hold)."""
        if not hasattr(self, "_net") and classes is None:
            raise ValueError("classes must be given in the first call to partial_fit")
        return self._partial_fit(X, y, classes)

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities, one column per class in ``classes_``."""
        o = self._outputs(X).astype(np.float64)
        o -= o.max(axis=1, keepdims=True)
        p = np.exp(o)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        return self.classes_[self._outputs(X).argmax(axis=1)]


class MLPRegressor(RegressorMixin, _MLPEstimator):
    """A multilayer perceptron regressor: linear outputs, square loss ½‖y − o‖², one output per
    target column (a 1-D y gives 1-D predictions). Parameters as ``MLPClassifier``'s;
    ``early_stopping`` watches the validation R².

    As ``mlpbp train`` does, the network learns standardised targets (mean and scale of the
    first fit's y), so one learning rate suits targets in any units; predictions are in y's
    units, and ``loss_curve_`` is in standardised units."""

    _loss = "square"

    def _n_outputs(self) -> int:
        return self._n_targets

    def _encode_y(self, y, first: bool, classes=None) -> np.ndarray:
        y = np.asarray(y, dtype=self.dtype)
        if first:
            self._y_1d = y.ndim == 1
            self._n_targets = 1 if y.ndim == 1 else y.shape[1]
        y = y.reshape(len(y), -1)
        if y.shape[1] != self._n_targets:
            raise ValueError(f"y has {y.shape[1]} target columns; the model was fitted on {self._n_targets}")
        if first:
            std = y.std(axis=0)
            self._y_mean, self._y_scale = y.mean(axis=0), np.where(std > 0, std, 1.0)
        return (y - self._y_mean) / self._y_scale

    def _score_encoded(self, X, y) -> float:  # R² is the same in standardised units
        o = self._net.forward(X)
        ss_res = float(((y - o) ** 2).sum())
        ss_tot = float(((y - y.mean(axis=0)) ** 2).sum())
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0

    def partial_fit(self, X, y):
        """One epoch over (X, y), continuing from the current weights."""
        return self._partial_fit(X, y)

    def predict(self, X) -> np.ndarray:
        o = self._outputs(X).astype(np.float64) * self._y_scale + self._y_mean
        return o.ravel() if self._y_1d else o

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
