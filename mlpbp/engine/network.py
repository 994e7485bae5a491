"""The multilayer perceptron: Linear and Activation layers, a loss, and the passes through them."""

from __future__ import annotations

import contextlib
import math

import numpy as np

from mlpbp.engine.activations import get_activation
from mlpbp.engine.dtypes import get_dtype
from mlpbp.engine.init import INITS
from mlpbp.engine.layers import Activation, Layer, Linear
from mlpbp.engine.losses import CLASSIFICATION_LOSSES, get_loss, softmax
from mlpbp.engine.memory import describe_widths, n_params, network_bytes, require

# Per-example updates of the first layer applied this many at a time (see deferred_updates), and
# only when it has at least DEFER_MIN_SIZE weights: a smaller W stays in cache, where one rank-1
# update costs less than the two extra products deferring adds to each forward pass.
DEFER_STEPS = 16
DEFER_MIN_SIZE = 131072


class MLP:
    """A stack of R linear layers with an activation after each one but the last.

    ``widths`` lists every layer's width, input first and output last: ``[64, 32, 10]`` is
    64 → 32 → 10. Parameters are live arrays named as in the lecture: ``params["W1"]`` of shape
    (32, 64), ``params["b1"]``, …, ``params["WR"]``, ``params["bR"]`` with R = len(widths) − 1.
    The output layer is linear; the loss turns its output o into J.
    """

    def __init__(
        self,
        widths,
        activation: str = "relu",
        loss: str = "square",
        seed: int = 0,
        dtype: str = "float64",
        init: str | None = None,
        task: str | None = None,
        class_weight=None,
        loss_params: dict | None = None,
    ) -> None:
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths needs at least an input and an output width, all >= 1; got {widths}")
        self.dtype = get_dtype(dtype)
        require(
            network_bytes(widths, self.dtype),
            f"a {describe_widths(widths)} network ({n_params(widths):,} parameters and their gradients)",
        )
        fn = get_activation(activation)
        # class_weight: one loss weight per class (labels index it), or None.
        # loss_params: the loss's own settings (huber's delta, quantile's alpha).
        self.loss_params = dict(loss_params or {})
        self.loss_fn = get_loss(loss, class_weight, **self.loss_params)
        if class_weight is not None and len(class_weight) != widths[-1]:
            raise ValueError(f"class_weight needs one weight per output ({widths[-1]}); got {len(class_weight)}")
        if loss == "cross_entropy" and widths[-1] < 2:  # a softmax over one class is always 1
            raise ValueError(f"cross_entropy needs at least 2 outputs; got widths {widths}")
        if init is None:
            init = "he" if fn.relu_family else "glorot"
        init_fn = INITS.lookup(init)
        self.widths, self.activation, self.loss_name = widths, activation, loss
        self.seed, self.init = seed, init
        self.task = task or ("classification" if loss in CLASSIFICATION_LOSSES else "regression")

        rng = np.random.default_rng(seed)
        self.layers: list[Layer] = []
        R = len(widths) - 1
        for r, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            W = init_fn(rng, fan_in, fan_out)
            self.layers.append(Linear(W.astype(self.dtype), np.zeros(fan_out, self.dtype)))
            if r < R:
                self.layers.append(Activation(activation, self.dtype))
        # The network's name for each layer param: the r-th layer with params owns "Wr", "br".
        self.layer_param_names: list[dict[str, str]] = []  # one {layer's key: network's name} per layer
        r = 0
        for layer in self.layers:
            r += bool(layer.params)
            self.layer_param_names.append({k: f"{k}{r}" for k in layer.params})
        # params and grads are the layers' own arrays: no copying on the training path.
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        for layer, names in zip(self.layers, self.layer_param_names):
            for k, name in names.items():
                self.params[name], self.grads[name] = layer.params[k], layer.grads[k]
        # (name, param, grad) per layer, for an optimizer's update right after that layer's
        # backward: built once, so a training step does no dict work.
        self._updates = [
            [(name, layer.params[k], layer.grads[k]) for k, name in names.items()]
            for layer, names in zip(self.layers, self.layer_param_names)
        ]

    def __repr__(self) -> str:
        return (
            f"MLP(widths={self.widths}, activation={self.activation!r}, loss={self.loss_name!r}, "
            f"dtype={str(self.dtype)!r}, params={self.n_params})"
        )

    @property
    def linears(self) -> list[Layer]:
        """The layers that have parameters (the Linear ones), first to last."""
        return [layer for layer in self.layers if layer.params]

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params.values())

    # ---- passes ---------------------------------------------------------------------------
    def _input(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=self.dtype)  # no copy when the data already has the dtype
        if X.ndim != 2 or X.shape[1] != self.widths[0]:
            raise ValueError(f"X must have shape (batch, {self.widths[0]}); got {X.shape}")
        return X

    def _forward(self, X: np.ndarray) -> np.ndarray:
        h = X
        for layer in self.layers:
            h = layer.forward(h)
        return h

    def _backward(self, grad_o: np.ndarray, need_param_grad: bool = True) -> None:
        """Walk the layers in reverse, each turning ∂J/∂(its output) into ∂J/∂(its input)."""
        g = grad_o
        for i in range(len(self.layers) - 1, -1, -1):  # the network's input needs no gradient
            g = self.layers[i].backward(g, need_input_grad=i > 0, need_param_grad=need_param_grad)

    @staticmethod
    def _row_weights(sample_weight, n: int) -> np.ndarray | None:
        """Per-row weights as a float64 vector of n finite values >= 0 (None: all rows weigh 1)."""
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.shape[0] != n:
            raise ValueError(f"sample_weight needs one weight per row ({n}); got {w.shape[0]}")
        if not (np.isfinite(w).all() and (w >= 0).all()):
            raise ValueError("sample_weight must be finite and >= 0")
        return w

    def _targets(self, y) -> np.ndarray:
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            y = y.astype(self.dtype, copy=False)
        return y

    def forward(self, X) -> np.ndarray:
        """The network's output o (logits for a classifier), as a new array."""
        return self._forward(self._input(X)).copy()

    def loss(self, X, y, sample_weight=None) -> float:
        """J, the batch mean of the loss (weighted by ``sample_weight``, one weight per row)."""
        X = self._input(X)
        w = self._row_weights(sample_weight, X.shape[0])
        return self.loss_fn.forward(self._forward(X), self._targets(y), w)

    def step_loss_and_grad(self, X: np.ndarray, y: np.ndarray, sample_weight=None) -> float:
        """The training loop's pass: fills ``self.grads`` in place and returns J."""
        value = self.loss_fn.forward(self._forward(X), y, sample_weight)
        self._backward(self.loss_fn.backward())
        return value

    def train_step(self, X, y, opt, sample_weight=None) -> float:
        """One training step on the batch (X, y): forward, backward and ``opt``'s update of
        every parameter in place. Returns J before the update; when J is not finite nothing
        is updated (the caller decides what divergence means).

        ``opt`` is a first-order optimizer (``mlpbp.engine.optim.Optimizer``). SGD without
        momentum is fused into the backward pass: −α is folded into ∂J/∂o, and each layer adds
        −α∂J/∂θ straight into its parameters, scaled by 1 − αλ under weight decay λ (one BLAS
        gemm with β = 1 − αλ, or a rank-1 ger at batch 1)
        after computing ∂J/∂u with the old ones; ``self.grads`` is then not filled. Any other
        rule updates a layer's parameters with ``opt.update`` right after that layer's backward,
        so the reference path ``loss_and_grad`` + ``opt.step`` gives the same parameters up to
        rounding. ``sample_weight``: one weight per row (J is then their weighted mean)."""
        scale = opt.fused_scale
        apply = scale is not None
        X = self._input(X)
        w = self._row_weights(sample_weight, X.shape[0])
        value, g = self.loss_fn.value_and_grad(self._forward(X), self._targets(y), scale if apply else 1.0, w)
        if not math.isfinite(value):
            return value
        opt.begin_step()
        layers, updates, decay = self.layers, self._updates, opt.fused_decay
        for i in range(len(layers) - 1, -1, -1):
            g = layers[i].backward(g, i > 0, True, True, apply, decay)
            if not apply:
                for name, p, grad in updates[i]:
                    opt.update(name, p, grad)
        return value

    @contextlib.contextmanager
    def deferred_updates(self, batch_size: int):
        """A block of ``train_step`` calls in which the first layer's per-example SGD updates
        are applied ``DEFER_STEPS`` at a time (``Layer.defer``): at batch 1 with a large first
        layer (``DEFER_MIN_SIZE`` weights or more) the step then passes over W₁ once instead of
        three times, and every step computes the same function as without deferring, up to
        rounding. ``params["W1"]`` is exact again when the block ends (and only then); inside
        it, pending updates are applied whenever anything but the step reads W₁ through the
        layer. Does nothing at other batch sizes or for a smaller first layer."""
        first = self.layers[0]
        use = batch_size == 1 and sum(p.size for p in first.params.values()) >= DEFER_MIN_SIZE
        if use:
            first.defer(DEFER_STEPS)
        try:
            yield DEFER_STEPS if use else 1
        finally:
            if use:
                first.flush()

    def loss_and_grad(self, X, y, sample_weight=None) -> tuple[float, dict[str, np.ndarray]]:
        """J and ∂J/∂θ for every parameter name (fresh arrays, safe to keep); with
        ``sample_weight`` (one weight per row), of the weighted mean loss."""
        X = self._input(X)
        value = self.step_loss_and_grad(X, self._targets(y), self._row_weights(sample_weight, X.shape[0]))
        return value, {k: g.copy() for k, g in self.grads.items()}

    def hvp(self, X, y, v: dict[str, np.ndarray], sample_weight=None) -> dict[str, np.ndarray]:
        """The exact Hessian-vector product ∇²J(θ)·v, by forward-over-reverse (R-operator).

        One forward and one backward pass (∂J/∂z and σ'(z) at every layer), then one R-forward
        and one R-backward pass: a small constant times the cost of J, at any depth; the
        Hessian is never formed. Returns fresh arrays (views of one new flat vector)."""
        r_o, V = self._rforward(X, y, v, sample_weight)
        r_g = self.loss_fn.rbackward(r_o)
        # R-backward writes straight into the arrays returned: one allocation, no copies.
        out = self.unflatten(np.empty(self.n_params, self.dtype))
        for i in range(len(self.layers) - 1, -1, -1):
            into = {k: out[name] for k, name in self.layer_param_names[i].items()}
            r_g, _ = self.layers[i].rbackward(r_g, V[i], into, need_input_grad=i > 0)
        return out

    def _rforward(self, X, y, v, sample_weight=None) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """Forward and backward (σ'(z) at every layer), then R-forward along v: R{o} = J_o v,
        and v split per layer."""
        X, y = self._input(X), self._targets(y)
        missing = set(self.params) - set(v)
        if missing:
            raise ValueError(f"direction v lacks {sorted(missing)}")
        V = [{k: np.asarray(v[name], self.dtype) for k, name in names.items()} for names in self.layer_param_names]
        self.loss_fn.forward(self._forward(X), y, self._row_weights(sample_weight, X.shape[0]))
        self._backward(self.loss_fn.backward(), need_param_grad=False)
        r_h = None  # R{u} is zero at the network's input
        for layer, V_layer in zip(self.layers, V):
            r_h = layer.rforward(r_h, V_layer)
        return r_h, V

    def gnvp(self, X, y, v: dict[str, np.ndarray], sample_weight=None) -> dict[str, np.ndarray]:
        """The Gauss-Newton product G·v = J_oᵀ H_L J_o v (Schraudolph 2002), J_o = ∂o/∂θ.

        The Hessian without its second-derivative-of-the-network terms: positive
        semi-definite for a convex loss in o. The same R-forward pass as ``hvp`` gives J_o v,
        the loss's Hessian in o multiplies it, and a plain backward pass applies J_oᵀ. Returns
        fresh arrays (views of one new flat vector); the network's ``grads`` are overwritten."""
        r_o, _ = self._rforward(X, y, v, sample_weight)
        self._backward(self.loss_fn.output_hvp(r_o))
        out = self.unflatten(np.empty(self.n_params, self.dtype))
        for name, g in self.grads.items():
            out[name][...] = g
        return out

    # ---- predictions --------------------------------------------------------------------
    def predict(self, X) -> np.ndarray:
        """Class indices (argmax of the output) for a classifier, else the output itself."""
        o = self.forward(X)
        return o.argmax(axis=1) if self.task == "classification" else o

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities, for a network trained with cross_entropy."""
        if self.loss_name != "cross_entropy":
            raise ValueError("predict_proba needs a network trained with cross_entropy")
        return softmax(self._forward(self._input(X)))

    # ---- flat views, for finite differences and second-order methods ----------------------
    def get_flat(self) -> np.ndarray:
        return self.flatten(self.params)

    def set_flat(self, theta) -> None:
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},); got {theta.shape}")
        for p, part in zip(self.params.values(), self.unflatten(theta).values()):
            p[...] = part  # in place: params stay the live arrays the layers use

    def flatten(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """One vector in the order of ``params`` (W1, b1, W2, b2, …)."""
        return np.concatenate([np.ravel(tensors[k]) for k in self.params])

    def unflatten(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        out, i = {}, 0
        for k, p in self.params.items():
            out[k] = theta[i : i + p.size].reshape(p.shape)
            i += p.size
        return out

    def flat_grad(self, X, y, sample_weight=None) -> tuple[float, np.ndarray]:
        value, grads = self.loss_and_grad(X, y, sample_weight)
        return value, self.flatten(grads)

    def flat_hvp(self, X, y, v, sample_weight=None) -> np.ndarray:
        return self.flatten(self.hvp(X, y, self.unflatten(np.asarray(v)), sample_weight))

    def flat_gnvp(self, X, y, v, sample_weight=None) -> np.ndarray:
        return self.flatten(self.gnvp(X, y, self.unflatten(np.asarray(v)), sample_weight))
