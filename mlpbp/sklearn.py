"""scikit-learn estimators over mlpbp's engine: ``MLPClassifier`` and ``MLPRegressor``, drop-ins
for ``sklearn.neural_network``'s.

They take every constructor parameter of scikit-learn's MLPs with its meaning and default
(``solver="adam"``, ``learning_rate`` constant | invscaling | adaptive, ``warm_start``,
``early_stopping``, ``max_fun``, ...), initialise the weights as scikit-learn does from
``random_state``, take the same steps (the output delta, L2 ``alpha`` on the weights divided by
the batch's weight, the momentum and learning-rate rules, stopping after ``n_iter_no_change`` + 1
epochs without improvement) and expose the same fitted attributes (``coefs_``, ``intercepts_``,
``loss_curve_``, ``best_loss_``, ``validation_scores_``, ``n_iter_``, ``t_``). The forward and
backward passes are mlpbp's: sigmoid, softmax and Poisson outputs from logits, exact weighted
means for ``sample_weight``. They accept sparse (CSR/CSC) X, whose first-layer products are taken on
the sparse matrix (X is never densified), multilabel indicator y, float32 in and float32 out.

Besides scikit-learn's: ``activation`` and ``solver`` take any name registered in mlpbp
(``mlpbp.ACTIVATIONS``, ``mlpbp.OPTIMIZERS``), and ``dtype`` (None: the input's) forces the
network's precision. As in scikit-learn, inputs and targets are used as given: scale them (a
``Pipeline`` with ``StandardScaler``; ``TransformedTargetRegressor`` for y). With the same
``random_state`` the weights start equal to scikit-learn's and ``solver="sgd"`` takes the same
steps, up to rounding (``"adam"`` adds ε to √v before its bias correction where scikit-learn
adds it after: differences of about 1e-6).

``dropout`` (after each hidden activation) and ``norm`` (``"batch"`` or ``"layer"``
normalisation before each hidden activation) build the network ``model.dropout`` and
``model.norm`` build in a config. It fits in training mode (dropout masks from a generator
seeded by ``random_state``, batch statistics) and predicts and scores in evaluation mode (no
dropout, batch_norm's running statistics). Dropout needs a stochastic solver; after lbfgs (or
an epoch of newton_cg) the running statistics are the training data's.

Needs the optional extra ``pip install 'mlpbp[sklearn]'``. The estimators pickle (scikit-learn
users expect it); the CLI's files stay pickle-free.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np

try:
    import scipy.optimize
    import scipy.sparse
    import scipy.special
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d, gen_batches
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import type_of_target, unique_labels
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as e:  # pragma: no cover - exercised by a test that hides scikit-learn
    raise ImportError(f"mlpbp.sklearn needs scikit-learn: pip install 'mlpbp[sklearn]' ({e})") from None

from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.graph import Network
from mlpbp.engine.layers import Linear
from mlpbp.engine.losses import softmax
from mlpbp.engine.network import MLP
from mlpbp.engine.norm import BatchNorm
from mlpbp.engine.optim import OPTIMIZERS, Optimizer, build_optimizer
from mlpbp.run.threads import blas_thread_limit, choose_threads

__all__ = ["MLPClassifier", "MLPRegressor"]

# The output activation scikit-learn names (out_activation_) and the engine loss behind it: each
# is the canonical link of its loss, so the output delta is (activation − y).
OUTPUT_LOSS = {"softmax": "cross_entropy", "logistic": "binary_cross_entropy", "identity": "square", "exp": "poisson"}
PREDICT_CHUNK = 8192  # rows per forward pass when predicting


def _sigmoid(o: np.ndarray) -> np.ndarray:
    # no overflow for any o, and a tiny p stays > 0 (0.5·(1 + tanh(o/2)) is 0 from o < −37 on)
    return scipy.special.expit(o)


def _linears(net: Network) -> list[Linear]:
    """The network's linear modules, first to last: scikit-learn's layers."""
    return [m for m in net.layers if isinstance(m, Linear)]


def _extra_params(net: Network) -> dict[str, np.ndarray]:
    """The parameters outside the linear modules (a normalisation's gamma and beta), by name."""
    own = {id(p) for m in _linears(net) for p in m.params.values()}
    return {k: p for k, p in net.params.items() if id(p) not in own}


def _engine_rows(X, dtype):
    """Rows for the engine in the network's dtype: a sparse block stays sparse (CSR), and the
    first layer's products are taken on its nonzeros (X Wᵀ, and ∂J/∂W = δᵀX), never densified."""
    if scipy.sparse.issparse(X):
        X = X.tocsr()
        return X if X.dtype == dtype else X.astype(dtype)
    return np.asarray(X, dtype=dtype)


class _MLPEstimator(BaseEstimator):
    """What the classifier and the regressor share: the network, the solvers, stopping."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
        dropout=0.0,
        norm="none",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.dropout = dropout  # after each hidden activation, as model.dropout
        self.norm = norm  # none | batch | layer, before each hidden activation, as model.norm

    # ---- the one table of allowed parameter values, checked by fit / partial_fit ----------
    @property
    def _parameter_constraints(self) -> dict:
        # A property: activations and solvers registered after import are allowed too.
        return {
            "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
            "activation": [StrOptions(set(ACTIVATIONS))],
            "solver": [StrOptions(set(OPTIMIZERS))],
            "alpha": [Interval(Real, 0, None, closed="left")],
            "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
            "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
            "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
            "power_t": [Interval(Real, 0, None, closed="left")],
            "max_iter": [Interval(Integral, 1, None, closed="left")],
            "shuffle": ["boolean"],
            "random_state": ["random_state"],
            "tol": [Interval(Real, 0, None, closed="left")],
            "verbose": ["verbose"],
            "warm_start": ["boolean"],
            "momentum": [Interval(Real, 0, 1, closed="left")],
            "nesterovs_momentum": ["boolean"],
            "early_stopping": ["boolean"],
            "validation_fraction": [Interval(Real, 0, 1, closed="left")],
            "beta_1": [Interval(Real, 0, 1, closed="left")],
            "beta_2": [Interval(Real, 0, 1, closed="left")],
            "epsilon": [Interval(Real, 0, None, closed="neither")],
            "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
            "max_fun": [Interval(Integral, 1, None, closed="left")],
            "dtype": [StrOptions({"float32", "float64"}), None],
            "dropout": [Interval(Real, 0, 1, closed="left")],
            "norm": [StrOptions({"none", "batch", "layer"})],
            **self._own_constraints,
        }

    _own_constraints: dict = {}

    # ---- subclass hooks ---------------------------------------------------------------------
    def _validate_input(self, X, y, incremental: bool, reset: bool): ...

    def _out_activation(self, y: np.ndarray) -> str: ...

    def _engine_targets(self, y: np.ndarray, first: bool) -> np.ndarray: ...

    def _score(self, X, y, sample_weight=None) -> float: ...

    # ---- the network: the engine's arrays, seen as scikit-learn's coefs_ / intercepts_ -------
    def _initialize(self, y: np.ndarray, layer_units: list[int], dtype) -> None:
        """A fresh network with scikit-learn's initial weights (Glorot uniform, bound
        √(6/(fan_in + fan_out)), √(2/…) for logistic; biases likewise) from ``_random_state``."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation(y)
        factor = 2.0 if ACTIVATIONS[self.activation].name == "sigmoid" else 6.0
        coefs, intercepts = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coefs.append(self._random_state.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False))
            intercepts.append(self._random_state.uniform(-bound, bound, fan_out).astype(dtype, copy=False))
        self.coefs_, self.intercepts_ = coefs, intercepts
        # dropout masks: a generator seeded from random_state (drawn only when there are masks,
        # so a network without dropout draws what scikit-learn draws)
        self._mask_seed = int(self._random_state.randint(np.iinfo(np.int32).max)) if self.dropout else 0
        self._net = None
        self._network()
        self._keep_best()  # early stopping keeps these if no epoch scores
        if self._stochastic():
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _network(self) -> MLP:
        """The engine's network, in step with ``coefs_`` / ``intercepts_``: those are views of
        its weights (edits in place reach it), and arrays assigned to them (the lists or their
        items) are copied into it, building a network of their shapes if need be."""
        net = getattr(self, "_net", None)
        coefs, intercepts = list(self.coefs_), list(self.intercepts_)
        seen = getattr(self, "_views", None)
        if net is not None and seen is not None and len(coefs) == len(seen[0]):
            if all(a is b for a, b in zip(coefs + intercepts, seen[0] + seen[1])):
                return net
        widths = [np.shape(coefs[0])[0]] + [np.shape(c)[1] for c in coefs]
        dtype = np.result_type(*coefs, *intercepts)
        dtype = dtype if dtype in (np.float32, np.float64) else np.float64
        spec = (self.activation, float(self.dropout), self.norm)
        if net is None or net.widths != widths or net.dtype != dtype or getattr(self, "_spec", None) != spec:
            net = self._build(widths, str(np.dtype(dtype)))
            self._spec = spec
        linears = _linears(net)
        for layer, c, b in zip(linears, coefs, intercepts):
            layer.params["W"][...] = np.asarray(c).T
            layer.params["b"][...] = np.asarray(b).reshape(-1)
        self._net = net
        self.coefs_ = [layer.params["W"].T for layer in linears]  # (fan_in, fan_out) views
        self.intercepts_ = [layer.params["b"] for layer in linears]
        self._views = (list(self.coefs_), list(self.intercepts_))
        self.n_layers_ = len(widths)
        self.n_outputs_ = widths[-1]
        return net

    def _build(self, widths: list[int], dtype: str) -> Network:
        """An MLP of these widths or, with ``dropout`` or ``norm``, the chain ``model.hidden``
        builds with them: linear → norm → activation → dropout per hidden layer (a fresh
        normalisation: gamma 1, beta 0, running mean 0 and variance 1)."""
        loss = OUTPUT_LOSS[self.out_activation_]
        if not self.dropout and self.norm == "none":
            return MLP(widths, self.activation, loss, dtype=dtype, init="glorot")
        layers: list = []
        for width in widths[1:-1]:
            layers.append({"linear": width})
            if self.norm != "none":
                layers.append(f"{self.norm}_norm")
            layers.append(self.activation)
            if self.dropout:
                layers.append({"dropout": float(self.dropout)})
        seed = getattr(self, "_mask_seed", 0)
        return Network.from_layers(
            layers, widths[0], widths[-1], loss=loss, activation=self.activation, seed=seed, dtype=dtype, init="glorot"
        )

    def _batch_norms(self) -> list[BatchNorm]:
        return [m for m in self._net.layers if isinstance(m, BatchNorm)]

    def _keep_best(self) -> None:
        """Keep the current parameters and buffers (running statistics) as the best so far."""
        self._best_packed = self._pack().copy()
        self._best_buffers = {k: b.copy() for k, b in self._net.buffers.items()}

    def _restore_best(self) -> None:
        self._unpack(self._best_packed)
        for k, b in getattr(self, "_best_buffers", {}).items():
            self._net.buffers[k][...] = b

    def _stochastic(self) -> bool:
        return self.solver != "lbfgs"

    # ---- the objective: the engine's weighted mean loss plus scikit-learn's L2 term ---------
    def _loss_grad(self, X, t, sample_weight) -> tuple[float, dict[str, np.ndarray]]:
        """J = weighted mean loss + α/2·Σ‖W‖²/Σw (Σw: the rows' total weight, their count
        unweighted) and its gradient; biases are not penalised (scikit-learn's objective)."""
        net = self._net
        value, grads = net.loss_and_grad(_engine_rows(X, net.dtype), t, sample_weight)
        return self._add_alpha(X, sample_weight, value, grads)

    def _step_loss_grad(self, X, t, sample_weight) -> tuple[float, dict[str, np.ndarray]]:
        """``_loss_grad`` of a training step: batch_norm's running statistics move too (the
        gradients are the network's own arrays, overwritten by the next pass)."""
        net = self._net
        value = net.step_loss_and_grad(_engine_rows(X, net.dtype), t, sample_weight)
        return self._add_alpha(X, sample_weight, value, net.grads)

    def _add_alpha(self, X, sample_weight, value, grads):
        net = self._net
        if self.alpha:
            total = X.shape[0] if sample_weight is None else float(np.sum(sample_weight))
            total = total if total > 0 else 1.0
            squares = 0.0
            for r, layer in enumerate(_linears(net), start=1):
                W = layer.params["W"]
                squares += float(np.vdot(W, W))
                grads[f"W{r}"] += (self.alpha / total) * W
            value += 0.5 * self.alpha * squares / total
        return value, grads

    def _loss_grad_lbfgs(self, packed, X, y, sample_weight=None, *buffers):
        """scikit-learn's L-BFGS objective: parameters packed as coefs then intercepts, each
        raveled in scikit-learn's (fan_in, fan_out) layout; y as the binarised / raw targets.
        Returns (J, ∂J/∂packed). (``buffers``: scikit-learn's scratch lists, unused here.)"""
        return self._packed_objective(packed, X, self._engine_targets(np.asarray(y), first=False), sample_weight)

    def _packed_objective(self, packed, X, t, sample_weight):
        net = self._net
        self._unpack(packed)
        value, grads = self._loss_grad(X, t, sample_weight)
        n = len(_linears(net))
        parts = [grads[f"W{r}"].T.ravel() for r in range(1, n + 1)] + [grads[f"b{r}"] for r in range(1, n + 1)]
        parts += [grads[k].ravel() for k in _extra_params(net)]
        return value, np.concatenate(parts).astype(np.float64)

    def _pack(self) -> np.ndarray:
        """coefs_, then intercepts_ (scikit-learn's packing), then any normalisation's gamma and beta."""
        extra = [p.ravel() for p in _extra_params(self._net).values()]
        return np.concatenate([c.ravel() for c in self.coefs_] + [b.ravel() for b in self.intercepts_] + extra)

    def _unpack(self, packed) -> None:
        i = 0
        for c in self.coefs_:  # views: writing them writes the network's weights
            c[...] = packed[i : i + c.size].reshape(c.shape)
            i += c.size
        for b in self.intercepts_:
            b[...] = packed[i : i + b.size]
            i += b.size
        for p in _extra_params(self._net).values():
            p[...] = packed[i : i + p.size].reshape(p.shape)
            i += p.size

    # ---- fitting ---------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental: bool = False):
        self._validate_params()
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(int(s) <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        if self.dropout and not self._stochastic():
            raise ValueError(
                f"dropout={self.dropout} needs a stochastic solver (adam, sgd, ...): solver='lbfgs' minimises one"
                " deterministic objective, and dropout draws new masks at every pass"
            )
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = self._check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        dtype = np.dtype(self.dtype) if self.dtype is not None else X.dtype
        layer_units = [X.shape[1], *[int(s) for s in sizes], y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, dtype)
        else:
            net = self._network()
            if net.widths[-1] != y.shape[1]:
                raise ValueError(f"y has {y.shape[1]} outputs; the network was fitted with {net.widths[-1]}")
        if not first_pass and not incremental and self._stochastic():
            self.n_iter_ = 0  # a warm-started fit runs max_iter epochs more
        # BLAS threads as `mlpbp train` picks them without timing: one for small steps, where
        # waking a second thread costs more than it saves (and a busy machine makes it far worse)
        batch = X.shape[0] if not self._stochastic() or self.batch_size == "auto" else self.batch_size
        threads = choose_threads(
            "auto", self._net.widths, min(batch, X.shape[0], 200 if self.batch_size == "auto" else batch)
        )
        if self.norm == "batch" and min(batch, X.shape[0]) < 2:
            rows = min(batch, X.shape[0])
            raise ValueError(f"norm='batch' needs at least 2 samples per batch; got {rows} sample{'s' * (rows != 1)}")
        self._net.train()  # dropout masks and batch statistics while fitting; predictions in eval mode
        try:
            with blas_thread_limit(threads.threads):
                if self._stochastic():
                    self._fit_stochastic(X, y, sample_weight, incremental, first_pass)
                else:
                    t = self._engine_targets(y, first_pass)
                    self._fit_lbfgs(X, t, sample_weight)
                    self._full_batch_statistics(X, t, sample_weight)
        finally:
            self._net.eval()
        if not all(np.isfinite(p).all() for p in self._net.params.values()):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and "
                "need to be preprocessed."
            )
        return self

    @staticmethod
    def _check_sample_weight(sample_weight, X) -> np.ndarray:
        n = X.shape[0]
        if np.isscalar(sample_weight):
            return np.full(n, float(sample_weight), dtype=np.float64)
        sw = np.asarray(sample_weight, dtype=np.float64)
        if sw.ndim != 1:
            raise ValueError(f"Sample weights must be 1D array or scalar, got {sw.ndim}D array")
        if sw.shape != (n,):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n,)}!")
        if not np.isfinite(sw).all():
            raise ValueError("Input sample_weight contains NaN or infinity.")
        if (sw < 0).any():
            raise ValueError("Negative values in data passed to sample_weight")
        if not sw.sum() > 0:
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return sw

    def _full_batch_statistics(self, X, t, sample_weight) -> None:
        """After whole-data epochs (lbfgs, newton_cg), which use the whole data's batch
        statistics: batch_norm's running statistics become those statistics (momentum 1)."""
        norms = self._batch_norms()
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        try:
            for m in norms:
                m.momentum = 1.0
            with np.errstate(over="ignore", invalid="ignore"):
                self._net.step_loss_and_grad(_engine_rows(X, self._net.dtype), t, sample_weight)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum

    def _fit_lbfgs(self, X, t, sample_weight) -> None:
        """scipy's L-BFGS-B over the packed parameters: ``max_iter`` iterations and ``max_fun``
        evaluations at most, stopping at a projected gradient below ``tol``; ``n_iter_`` is
        its iteration count."""
        result = scipy.optimize.minimize(
            self._packed_objective,
            self._pack().astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            args=(X, t, sample_weight),
        )
        if result.status != 0:
            message = result.message.decode("latin1") if isinstance(result.message, bytes) else result.message
            warnings.warn(
                f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}):\n{message}\n\n"
                "Increase the number of iterations to improve the convergence (max_iter="
                f"{self.max_iter}).\nYou might also want to scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        self._unpack(result.x)

    def _new_optimizer(self):
        return build_optimizer(
            self.solver,
            self._net.params,
            learning_rate=self.learning_rate_init,
            momentum=self.momentum,
            nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
            beta1=self.beta_1,
            beta2=self.beta_2,
            eps=self.epsilon,
            # alpha is scikit-learn's L2 term, added to the gradient by _loss_grad; solvers that
            # run epochs of their own (newton_cg) take it as weight decay
            weight_decay=0.0 if issubclass(OPTIMIZERS[self.solver], Optimizer) else self.alpha,
        )

    def _fit_stochastic(self, X, y, sample_weight, incremental: bool, first_pass: bool) -> None:
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._new_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        X_val = y_val = sw_val = None
        sw_train = sample_weight
        if self.early_stopping:
            stratify = y if (isinstance(self, ClassifierMixin) and self.n_outputs_ == 1) else None
            arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
            parts = train_test_split(
                *arrays, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify
            )
            X, X_val, y, y_val = parts[:4]
            if sample_weight is not None:
                sw_train, sw_val = parts[4:]
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            y_val = self._original_targets(y_val)
        t = self._engine_targets(y, first_pass)
        n = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=3
                )
            batch_size = int(np.clip(self.batch_size, 1, n))
        opt, sample_idx = self._optimizer, np.arange(n, dtype=int)
        batches = list(gen_batches(n, batch_size)) if isinstance(opt, Optimizer) else []
        if self.norm == "batch" and len(batches) > 1 and batches[-1].stop - batches[-1].start == 1:
            batches[-2:] = [slice(batches[-2].start, n)]  # batch statistics need 2 rows: the last row joins
        try:
            for _ in range(self.max_iter):
                if self.shuffle:  # sklearn.utils.shuffle's draw, without its per-call validation
                    order = np.arange(n)
                    self._random_state.shuffle(order)
                    sample_idx = sample_idx[order]
                accumulated = 0.0
                if not isinstance(opt, Optimizer):  # newton_cg and the like: an epoch of their own
                    with np.errstate(over="ignore", invalid="ignore"):
                        opt.run_epoch(self._net, _engine_rows(X, self._net.dtype), t, sample_idx, lambda: False)
                        accumulated = self._loss_grad(X, t, sw_train)[0] * n
                    self._full_batch_statistics(X, t, sw_train)
                for batch in batches:
                    rows = sample_idx[batch] if self.shuffle else batch
                    swb = None if sw_train is None else sw_train[rows]
                    with np.errstate(over="ignore", invalid="ignore"):
                        value, grads = self._step_loss_grad(X[rows], t[rows], swb)
                        opt.step(grads)
                    accumulated += value * (batch.stop - batch.start)
                self.n_iter_ += 1
                self.loss_ = accumulated / n
                self.t_ += n
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
                self._update_no_improvement_count(X_val, y_val, sw_val)
                self._iteration_ends()
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if self.early_stopping else "Training loss"
                    message = (
                        f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                        "consecutive epochs."
                    )
                    if self._trigger_stopping(message):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                        "hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        if self.early_stopping:  # the best validation weights, and running statistics
            self._restore_best()

    def _iteration_ends(self) -> None:
        """The learning rate after an epoch: lr₀/(t + 1)^power_t under invscaling (t: rows
        seen), for the sgd solver only (as scikit-learn)."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = self.learning_rate_init / (self.t_ + 1) ** self.power_t

    def _trigger_stopping(self, message: str) -> bool:
        """Stop, or (sgd with learning_rate='adaptive') divide the learning rate by 5 while it
        is above 1e-6."""
        opt = self._optimizer
        if self.solver == "sgd" and self.learning_rate == "adaptive":
            if opt.learning_rate > 1e-6:
                opt.learning_rate /= 5.0
                if self.verbose:
                    print(message + f" Setting learning rate to {opt.learning_rate:f}")
                return False
            if self.verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        if self.verbose:
            print(message + " Stopping.")
        return True

    def _update_no_improvement_count(self, X_val, y_val, sw_val) -> None:
        if self.early_stopping:
            score = self._score(X_val, y_val, sample_weight=sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_ or not hasattr(self, "_best_packed"):
                self.best_validation_score_ = max(score, self.best_validation_score_)
                self._keep_best()
        else:
            last = self.loss_curve_[-1]
            if last > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last < self.best_loss_:
                self.best_loss_ = last

    def _check_solver(self) -> bool:
        if not self._stochastic():
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (class labels, a multilabel indicator matrix, or real
        targets), each row weighted by ``sample_weight`` (None: all 1); returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # ---- predicting ------------------------------------------------------------------------
    def _forward_pass_fast(self, X, check_input: bool = True) -> np.ndarray:
        """The output activation of the network's output: probabilities, or the prediction."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._network()
        training = net.training
        net.eval()  # no dropout, batch_norm's running statistics (also for early stopping's scores)
        try:
            chunks = [
                net.forward(_engine_rows(X[i : i + PREDICT_CHUNK], net.dtype))
                for i in range(0, X.shape[0], PREDICT_CHUNK)
            ]
        finally:
            net.train(training)
        o = np.concatenate(chunks) if chunks else np.empty((0, net.widths[-1]), net.dtype)
        act = self.out_activation_
        if act == "softmax":
            return softmax(o)
        if act == "logistic":
            return _sigmoid(o)
        if act == "exp":
            with np.errstate(over="ignore"):
                return np.exp(o)
        return o

    def _score_with_function(self, X, y, sample_weight, score_function) -> float:
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return float(score_function(y, y_pred, sample_weight=sample_weight))

    # ---- pickling: the weights travel as coefs_ / intercepts_, the network is rebuilt -------
    def __getstate__(self):
        state = dict(super().__getstate__())
        net = state.pop("_net", None)
        state.pop("_views", None)
        opt = state.pop("_optimizer", None)
        if net is not None and (net.buffers or _extra_params(net) or "generator" in net.state_dict()):
            # what coefs_ / intercepts_ do not hold: gamma, beta, running statistics, the mask generator
            extra = {f"param.{k}": np.array(p) for k, p in _extra_params(net).items()}
            state["_net_state"] = extra | {k: np.array(a) for k, a in net.state_dict().items()}
        for k in ("coefs_", "intercepts_"):
            if k in state:
                state[k] = [np.array(a) for a in state[k]]
        if opt is not None:
            state["_optimizer_state"] = (
                opt.state_dict() if hasattr(opt, "state_dict") else {},
                getattr(opt, "learning_rate", None),  # newton_cg has none
            )
        return state

    def __setstate__(self, state):
        opt_state = state.pop("_optimizer_state", None)
        net_state = state.pop("_net_state", None)
        super().__setstate__(state)
        if "coefs_" in self.__dict__:
            net = self._network()
            if net_state is not None:
                for k, p in _extra_params(net).items():
                    p[...] = net_state[f"param.{k}"]
                net.load_state_dict(net_state)
            net.eval()
            if opt_state is not None:
                self._optimizer = self._new_optimizer()
                own, lr = opt_state
                if own and hasattr(self._optimizer, "load_state_dict"):
                    self._optimizer.load_state_dict(own)
                if lr is not None:
                    self._optimizer.learning_rate = lr

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _MLPEstimator):
    """Multi-layer perceptron classifier, scikit-learn's ``MLPClassifier`` on mlpbp's engine.

    Outputs as scikit-learn's: one logistic output for two classes, a softmax over k classes,
    an independent logistic output per label for a multilabel indicator y (the engine's
    ``binary_cross_entropy`` / ``cross_entropy``, from logits). Parameters, defaults and fitted
    attributes are scikit-learn's (see the module's docstring for the additions:
    any registered ``activation`` / ``solver``, ``dtype``, ``dropout``, ``norm``)."""

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                        f"Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, self._label_binarizer.transform(y).astype(bool)  # bool: no upcast of float32 work

    def _out_activation(self, y):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _engine_targets(self, y, first):
        """Class indices for a softmax output, else 0/1 columns (one per logistic output)."""
        y = np.asarray(y)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if self.out_activation_ == "softmax":
            return y.argmax(axis=1).astype(np.int64)
        return y.astype(self._net.dtype)

    def _original_targets(self, y):
        return self._label_binarizer.inverse_transform(y)

    def predict(self, X):
        """The predicted classes (an indicator matrix for a multilabel fit)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights. The first call needs
        ``classes`` (every label the stream will hold), unless y is a multilabel indicator."""
        if getattr(self, "classes_", None) is None:
            if classes is None and not type_of_target(y).startswith("multilabel"):
                raise ValueError("classes must be given on the first call to partial_fit (every label to come)")
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={unique_labels(classes)!r}` is not the same as on last call to partial_fit, was: "
                f"{self.classes_!r}"
            )
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """log(predict_proba(X))."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def predict_proba(self, X):
        """Probability of each class in ``classes_`` (for a multilabel fit: of each label,
        independently)."""
        check_is_fitted(self)
        p = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            p = p.ravel()
        return np.vstack([1 - p, p]).T if p.ndim == 1 else p

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _MLPEstimator):
    """Multi-layer perceptron regressor, scikit-learn's ``MLPRegressor`` on mlpbp's engine:
    identity outputs and the square loss (``loss="squared_error"``), or ``loss="poisson"``
    (log link: the network's output is log μ, the prediction μ). One output per target column;
    a 1-D y gives 1-D predictions."""

    _own_constraints = {"loss": [StrOptions({"squared_error", "poisson"})]}

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
        dropout=0.0,
        norm="none",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dtype=dtype,
            dropout=dropout,
            norm=norm,
        )
        self.loss = loss

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and y.size and y.min() < 0:
            raise ValueError("MLPRegressor(loss='poisson') needs targets y >= 0 (counts or rates)")
        return X, y

    def _out_activation(self, y):
        return "exp" if self.loss == "poisson" else "identity"

    def _engine_targets(self, y, first):
        """y as the network's (rows, outputs) array."""
        y = np.asarray(y, dtype=self._net.dtype)
        return y.reshape(len(y), -1)

    def _original_targets(self, y):
        return y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y

    def predict(self, X):
        """The predicted targets, in y's units."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
