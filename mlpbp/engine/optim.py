"""First-order optimizers, θ := θ − α·(a rule of ∇J), updating the parameter arrays in place:
SGD (momentum, Nesterov), Adam and AdamW, each with PyTorch's semantics.

Every first-order optimizer derives from :class:`Optimizer`: ``step(grads)`` advances any
per-step state once (``begin_step``) and then calls ``update(name, p, g)`` for each parameter.
The fused training step (``MLP.train_step``) calls the same ``update`` for a layer's parameters
right after that layer's backward pass, while they are still in cache, so the reference path
(``loss_and_grad`` + ``step``) and the fused one compute the same numbers.

Optimizers are registered in ``OPTIMIZERS``. One is built as ``cls(params, learning_rate, **its
own settings)``; its settings are keyword arguments named like the ``train:`` config keys, so
``build_optimizer`` hands each one what it declares and nothing else.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from mlpbp.engine.blas import AXPY, axpy
from mlpbp.engine.registry import Registry
from mlpbp.engine.second_order import LBFGS, NewtonCG


class Optimizer:
    """Base of the first-order optimizers: per-parameter, in-place updates.

    Subclasses implement ``update(name, p, g)`` (read ``g``, never write it: on the reference
    path it is the network's own gradient array) and, when they keep per-step state such as a
    step counter, ``begin_step``. ``fused_scale`` is a number s when the whole rule is
    θ := d·θ + s·∇J (SGD without momentum: s = −α, and d = ``fused_decay`` = 1 − αλ with weight
    decay λ, else 1), which lets a network fold s into its backward pass and add each
    parameter's gradient straight into the parameter; None otherwise.
    """

    #: ``train:`` keys a run with this optimizer reads besides the constructor's own: the
    #: batches and the learning-rate schedule.
    run_keys: tuple[str, ...] = ("batch_size", "schedule", "step_size", "gamma", "decay")

    def __init__(self, params: dict[str, np.ndarray], learning_rate: float) -> None:
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
        self.params = params
        self.learning_rate = float(learning_rate)

    @property
    def fused_scale(self) -> float | None:
        return None

    @property
    def fused_decay(self) -> float:
        return 1.0

    def begin_step(self) -> None:
        """Advance per-step state (e.g. a step counter), once per step, before any update."""

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.begin_step()
        for name, p in self.params.items():
            self.update(name, p, grads[name])

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pass


class SGD(Optimizer):
    """θ := θ − α g, updating the parameter arrays in place.

    g is ∇J plus ``weight_decay``·θ (L2 decay of every parameter handed in, as in PyTorch's
    SGD). With ``momentum`` μ > 0, heavy-ball momentum:
    v := μ v + g, θ := θ − α v; with ``nesterov``, θ := θ − α (g + μ v).
    """

    def __init__(
        self,
        params: dict[str, np.ndarray],
        learning_rate: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, learning_rate)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.velocity = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}
        # Nesterov with weight decay needs g + λθ twice: one scratch array per parameter.
        self._tmp = {k: np.empty_like(p) for k, p in params.items()} if nesterov and weight_decay else {}

    def __repr__(self) -> str:
        return (
            f"SGD(learning_rate={self.learning_rate}, momentum={self.momentum}, "
            f"nesterov={self.nesterov}, weight_decay={self.weight_decay})"
        )

    @property
    def fused_scale(self) -> float | None:
        return None if self.momentum else -self.learning_rate

    @property
    def fused_decay(self) -> float:
        return 1.0 - self.learning_rate * self.weight_decay

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        # One BLAS axpy per read-modify-write: each rule touches θ (and v) as few times as it allows.
        lr, mu, wd = self.learning_rate, self.momentum, self.weight_decay
        if not mu:
            if wd:  # θ − α(g + λθ) = (1 − αλ)θ − αg
                p *= 1.0 - lr * wd
            axpy(-lr, g, p)
            return
        v = self.velocity[name]
        v *= mu
        v += g
        if wd:
            if self.nesterov:
                tmp = self._tmp[name]
                np.multiply(p, wd, out=tmp)
                tmp += g
                g = tmp
            axpy(wd, p, v)  # v := μv + g + λθ
        if self.nesterov:  # θ −= α (g + μ v)
            axpy(-lr, g, p)
            axpy(-lr * mu, v, p)
        else:
            axpy(-lr, v, p)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"velocity.{k}": v for k, v in self.velocity.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k, v in self.velocity.items():
            v[...] = state[f"velocity.{k}"]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam``: with g = ∇J + weight_decay·θ (L2),
    m := β₁m + (1−β₁)g, v := β₂v + (1−β₂)g², and at step t
    θ := θ − α/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)."""

    decoupled = False  # AdamW: weight decay shrinks θ directly instead of entering g

    def __init__(
        self,
        params: dict[str, np.ndarray],
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, learning_rate)
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1); got {beta}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0; got {eps}")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.steps = 0  # the step count t of the bias corrections
        self.exp_avg = {k: np.zeros_like(p) for k, p in params.items()}
        self.exp_avg_sq = {k: np.zeros_like(p) for k, p in params.items()}
        self._denom = {k: np.empty_like(p) for k, p in params.items()}
        self._flat = self._flat_views()
        self._key: tuple | None = None

    def _flat_views(self) -> dict:
        """Per parameter: flat views of its state and scratch, and whether θ itself is flat-able."""
        return {
            k: (self.exp_avg[k].reshape(-1), self.exp_avg_sq[k].reshape(-1), self._denom[k].reshape(-1),
                p.flags.c_contiguous and p.dtype in AXPY)
            for k, p in self.params.items()
        }  # fmt: skip

    def __getstate__(self) -> dict:
        # copy.deepcopy (the thread calibration's scratch optimizer) would copy each view as an
        # array of its own: the state twice, and the update would write the copies, not the state
        return {k: v for k, v in self.__dict__.items() if k != "_flat"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._flat = self._flat_views()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(learning_rate={self.learning_rate}, beta1={self.beta1}, "
            f"beta2={self.beta2}, eps={self.eps}, weight_decay={self.weight_decay})"
        )

    def begin_step(self) -> None:
        self.steps += 1

    def _constants(self) -> tuple[float, ...]:
        """This step's scalars (decay, β₁, 1 − β₁, β₂, 1 − β₂, c·ε, −α·c/(1 − β₁ᵗ)) with
        c = √(1 − β₂ᵗ), worked out once per step, and again if a setting (a scheduled learning
        rate) moves.

        m̂/(√v̂ + ε) = c·m/(√v + c·ε)/(1 − β₁ᵗ): the bias corrections fold into ε and the step,
        a pass fewer than dividing √v by c. math.sqrt: a Python float, which NumPy casts to the
        array's dtype (np.sqrt's float64 scalar would run a float32 array's arithmetic in
        float64 through a buffered cast, several times slower)."""
        key = (self.steps, self.learning_rate, self.beta1, self.beta2, self.eps, self.weight_decay)
        if self._key != key:
            lr, b1, b2, t = self.learning_rate, self.beta1, self.beta2, self.steps
            c = math.sqrt(1 - b2**t)
            self._consts = (1 - lr * self.weight_decay, b1, 1 - b1, b2, 1 - b2, c * self.eps, -lr * c / (1 - b1**t))
            self._key = key
        return self._consts

    def update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        # Ten passes over θ's size, each a NumPy ufunc in place or one BLAS axpy on flat views
        # made once (a 256-wide bias costs its calls, not its arithmetic: no call is spared).
        decay, b1, c1, b2, c2, ceps, step = self._constants()
        m, v, denom, flat = self._flat[name]
        if self.weight_decay and self.decoupled:
            p *= decay
        elif self.weight_decay:  # g + λθ, built in the scratch array (g itself is never written)
            np.multiply(p, self.weight_decay, out=denom.reshape(p.shape))
            denom += g.reshape(-1)
            g = denom
        g = np.asarray(g, m.dtype).reshape(-1)  # a view, for a contiguous g of p's dtype
        raw_axpy = AXPY[m.dtype]
        m *= b1
        raw_axpy(g, m, a=c1)
        v *= b2
        np.multiply(g, g, out=denom)
        raw_axpy(denom, v, a=c2)
        np.sqrt(v, out=denom)
        denom += ceps
        np.divide(m, denom, out=denom)
        if flat:  # θ −= step·m/denom in one pass, as torch's addcdiv_
            raw_axpy(denom, p.reshape(-1), a=step)
        else:
            axpy(step, denom.reshape(p.shape), p)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {f"exp_avg.{k}": m for k, m in self.exp_avg.items()}
        state.update({f"exp_avg_sq.{k}": v for k, v in self.exp_avg_sq.items()})
        state["step"] = np.array(self.steps, np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for k in self.params:
            self.exp_avg[k][...] = state[f"exp_avg.{k}"]
            self.exp_avg_sq[k][...] = state[f"exp_avg_sq.{k}"]
        self.steps = int(state["step"])


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019) as ``torch.optim.AdamW``: decoupled weight decay,
    θ := θ(1 − α·weight_decay) before the Adam update, which sees ∇J alone."""

    decoupled = True

    def __init__(
        self,
        params: dict[str, np.ndarray],
        learning_rate: float = 0.001,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, learning_rate, beta1, beta2, eps, weight_decay)


OPTIMIZERS: Registry[type] = Registry("optimizer")
OPTIMIZERS.register("sgd", SGD)
OPTIMIZERS.register("adam", Adam)
OPTIMIZERS.register("adamw", AdamW)
OPTIMIZERS.register("lbfgs", LBFGS)
OPTIMIZERS.register("newton_cg", NewtonCG)


def build_optimizer(name: str, params: dict[str, np.ndarray], **settings):
    """The optimizer registered as ``name`` over ``params``, given those of ``settings`` (e.g.
    every ``train:`` config key) that its constructor declares."""
    cls = OPTIMIZERS.lookup(name)
    accepted = inspect.signature(cls).parameters
    return cls(params, **{k: v for k, v in settings.items() if k in accepted and k != "params"})


def optimizer_keys(name: str) -> tuple[str, ...]:
    """The ``train:`` keys optimizer ``name`` reads: its constructor's settings and its run_keys."""
    cls = OPTIMIZERS.lookup(name)
    own = [k for k in inspect.signature(cls).parameters if k != "params"]
    return (*own, *getattr(cls, "run_keys", ()))


def optimizer_default(name: str, key: str, missing=None):
    """The default the constructor of optimizer ``name`` gives setting ``key``; ``missing``
    when it declares none."""
    param = inspect.signature(OPTIMIZERS.lookup(name)).parameters.get(key)
    return missing if param is None or param.default is inspect.Parameter.empty else param.default
