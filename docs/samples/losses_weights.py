import warnings

import numpy as np
import sklearn.neural_network as sk
from sklearn.datasets import make_multilabel_classification
from sklearn.exceptions import ConvergenceWarning

from mlpbp import MLP, SGD
from mlpbp.sklearn import MLPClassifier, MLPRegressor

warnings.filterwarnings("ignore", category=ConvergenceWarning)

# Per-row weights: a row of weight 2 counts as that row twice, exactly.
rng = np.random.default_rng(0)
X, y = rng.standard_normal((10, 4)), rng.poisson(2.0, (10, 1)).astype(float)
s = rng.integers(0, 4, 10)
rows = np.repeat(np.arange(10), s)
net = MLP([4, 6, 1], "tanh", "poisson", seed=0)
J_w, g_w = net.loss_and_grad(X, y, sample_weight=s)
J_r, g_r = net.loss_and_grad(X[rows], y[rows])
print("weighted J", J_w, "repeated rows J", J_r, "max grad diff", np.abs(net.flatten(g_w) - net.flatten(g_r)).max())

# Poisson (log link) against square on counts, held-out mean Poisson deviance.
X = rng.uniform(-1, 1, (4000, 3))
mu = np.exp(0.3 + 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.5 * X[:, 2] * X[:, 0])
y = rng.poisson(mu).astype(float)[:, None]


def deviance(pred, t):
    pred = np.maximum(pred, 1e-6)
    return float(np.mean(2 * (np.where(t > 0, t * np.log(np.where(t > 0, t, 1) / pred), 0) - t + pred)))


for loss in ("poisson", "square"):
    net = MLP([3, 16, 1], "tanh", loss, seed=1)
    opt = SGD(net.params, 0.02, momentum=0.9)
    order_rng = np.random.default_rng(2)
    for _ in range(40):
        order = order_rng.permutation(3000)
        for i in range(0, 3000, 50):
            net.train_step(X[order[i : i + 50]], y[order[i : i + 50]], opt)
    o = net.forward(X[3000:])
    print(loss, "held-out deviance", round(deviance(np.exp(o) if loss == "poisson" else o, y[3000:]), 4))
print("true mean's deviance", round(deviance(mu[3000:, None], y[3000:]), 4))

# The estimators against scikit-learn's: same seed, same steps.
Xm, Ym = make_multilabel_classification(n_samples=120, n_features=6, n_classes=4, random_state=2)
params = dict(hidden_layer_sizes=(7,), solver="sgd", learning_rate_init=0.01, max_iter=6, random_state=0)
ours, theirs = MLPClassifier(**params).fit(Xm, Ym), sk.MLPClassifier(**params).fit(Xm, Ym)
print(
    "multilabel, max |coef difference| vs scikit-learn:",
    max(np.abs(a - b).max() for a, b in zip(ours.coefs_, theirs.coefs_)),
)
reg = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X[:3000], y[:3000, 0])
print("MLPRegressor(loss='poisson') held-out deviance", round(deviance(reg.predict(X[3000:])[:, None], y[3000:]), 4))
