"""Elementwise activations a = σ(z) with σ' and σ'' (σ'' is what Hessian-vector products need).

Each function writes into ``out`` so the training loop allocates nothing. ``df`` and ``d2f``
receive both z and a = σ(z): several derivatives are cheapest in terms of the output
(sigmoid' = a(1 − a), tanh' = 1 − a²).

Adding an activation is one registration, anywhere (mlpbp's own or a user's module)::

    ACTIVATIONS.register("swish", ActivationFn("swish", f, df, d2f))

after which ``model.activation: swish`` validates, trains, saves, loads and gradchecks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlpbp.engine.registry import Registry

LEAKY_SLOPE = 0.01  # leaky_relu's slope for z < 0, as in PyTorch
ELU_ALPHA = 1.0


def _sigmoid(z, out):
    # 1 / (1 + e^-z) overflows e^-z for z << 0; exp(-log(1 + e^-z)) via logaddexp never does.
    np.logaddexp(0, -z, out=out)
    np.negative(out, out=out)
    return np.exp(out, out=out)


def _identity(z, out):
    np.copyto(out, z)
    return out


def _ones(z, a, out):
    out.fill(1)
    return out


def _zeros(z, a, out):
    out.fill(0)
    return out


_ZERO_ROWS: dict[tuple, np.ndarray] = {}  # (dtype, width) -> a row of zeros, for float32 relu


def _relu(z, out):
    # float32: NumPy's maximum of an array and a scalar runs at half the speed of its maximum of
    # two arrays (34 µs against 17 µs on a 256 × 256 batch, benchmarks/README.md), so z is
    # compared with a broadcast row of zeros; float64 is the other way round and keeps the scalar.
    # Small batches gain nothing and keep the one call.
    if z.size < 4096 or z.dtype != np.float32:
        return np.maximum(z, 0, out=out)
    key = (z.dtype, z.shape[-1])
    zero = _ZERO_ROWS.get(key)
    if zero is None:
        zero = _ZERO_ROWS[key] = np.zeros(z.shape[-1], z.dtype)
    return np.maximum(z, zero, out=out)


def _relu_d(z, a, out):
    return np.greater(z, 0, out=out, casting="unsafe")


def _leaky(z, out):
    np.multiply(z, LEAKY_SLOPE, out=out)
    return np.maximum(z, out, out=out)  # max(z, αz) is z for z > 0 and αz below, since α < 1


def _leaky_d(z, a, out):
    np.greater(z, 0, out=out, casting="unsafe")
    out *= 1 - LEAKY_SLOPE
    out += LEAKY_SLOPE
    return out


def _sigmoid_d(z, a, out):
    np.subtract(1, a, out=out)
    out *= a
    return out


def _sigmoid_d2(z, a, out):  # a(1−a)(1−2a)
    _sigmoid_d(z, a, out)
    out *= 1 - 2 * a
    return out


def _tanh(z, out):
    return np.tanh(z, out=out)


def _tanh_d(z, a, out):
    np.multiply(a, a, out=out)
    np.subtract(1, out, out=out)
    return out


def _tanh_d2(z, a, out):  # −2a(1−a²)
    _tanh_d(z, a, out)
    out *= -2 * a
    return out


def _softplus(z, out):
    return np.logaddexp(0, z, out=out)  # log(1 + e^z) without overflow


def _softplus_d(z, a, out):
    return _sigmoid(z, out)


def _softplus_d2(z, a, out):
    _sigmoid(z, out)
    out *= 1 - out
    return out


def _elu(z, out):
    # expm1 only of the negative part, so large positive z cannot overflow.
    np.minimum(z, 0, out=out)
    np.expm1(out, out=out)
    out *= ELU_ALPHA
    return np.maximum(z, out, out=out)  # for z > 0 the exp branch is 0 < z


def _elu_exp(z, out):  # α e^z for z ≤ 0, else 0
    np.minimum(z, 0, out=out)
    np.exp(out, out=out)
    out *= ELU_ALPHA
    out *= z <= 0
    return out


def _elu_d(z, a, out):
    _elu_exp(z, out)
    out += z > 0
    return out


def _elu_d2(z, a, out):
    return _elu_exp(z, out)


def _sin(z, out):
    return np.sin(z, out=out)


def _sin_d(z, a, out):
    return np.cos(z, out=out)


def _sin_d2(z, a, out):
    return np.negative(a, out=out)


@dataclass(frozen=True)
class ActivationFn:
    name: str
    f: Callable  # f(z, out) -> σ(z)
    df: Callable  # df(z, a, out) -> σ'(z)
    d2f: Callable  # d2f(z, a, out) -> σ''(z)
    relu_family: bool = False  # kinked at 0: He init, and finite differences must avoid the kink

    @property
    def curved(self) -> bool:
        """False when σ'' = 0 wherever it exists (identity, relu, leaky_relu): a Hessian-vector
        product can then skip the σ'' term."""
        return self.d2f is not _zeros


ACTIVATIONS: Registry[ActivationFn] = Registry("activation")
for _fn in (
    ActivationFn("identity", _identity, _ones, _zeros),
    ActivationFn("relu", _relu, _relu_d, _zeros, relu_family=True),
    ActivationFn("leaky_relu", _leaky, _leaky_d, _zeros, relu_family=True),
    ActivationFn("sigmoid", _sigmoid, _sigmoid_d, _sigmoid_d2),
    ActivationFn("tanh", _tanh, _tanh_d, _tanh_d2),
    ActivationFn("softplus", _softplus, _softplus_d, _softplus_d2),
    ActivationFn("elu", _elu, _elu_d, _elu_d2, relu_family=True),
    ActivationFn("sin", _sin, _sin_d, _sin_d2),
):
    ACTIVATIONS.register(_fn.name, _fn)
# scikit-learn's name for the sigmoid: the same function under a second name.
ACTIVATIONS.register("logistic", ACTIVATIONS["sigmoid"])


def get_activation(name: str) -> ActivationFn:
    return ACTIVATIONS.lookup(name)
