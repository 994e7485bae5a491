import numpy as np

from mlpbp import ACTIVATIONS, ActivationFn


def swish(z, out):  # σ(z) = z·s(z), s the logistic function
    s = 0.5 * (1 + np.tanh(0.5 * z))
    return np.multiply(z, s, out=out)


def swish_d(z, a, out):  # σ'(z) = s + z·s(1 − s)
    s = 0.5 * (1 + np.tanh(0.5 * z))
    return np.add(s, z * s * (1 - s), out=out)


def swish_d2(z, a, out):  # σ''(z) = s(1 − s)(2 + z(1 − 2s)), for Hessian-vector products
    s = 0.5 * (1 + np.tanh(0.5 * z))
    return np.multiply(s * (1 - s), 2 + z * (1 - 2 * s), out=out)


ACTIVATIONS.register("swish", ActivationFn("swish", swish, swish_d, swish_d2))

# The new name now works everywhere a name is read: the network, configs, the schema, checks.
from mlpbp import MLP  # noqa: E402
from mlpbp.tools.gradcheck import check_network  # noqa: E402

rng = np.random.default_rng(0)
X, y = rng.normal(size=(8, 3)), np.arange(8) % 2
report = check_network(MLP([3, 5, 2], activation="swish", loss="cross_entropy", seed=0), X, y)
print(f"{len(report.checks)} checks, all passed: {report.ok}, max relative error {report.max_rel_err:.1e}")
