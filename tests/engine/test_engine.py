"""The engine piece by piece, in float64, against central differences written out here
(independently of mlpbp.gradcheck): activations, layers, losses, the per-example weight
gradient, one SGD step by hand, numerical stability, and the Hessian-vector product."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mlpbp.engine.activations import ACTIVATIONS, LEAKY_SLOPE
from mlpbp.engine.graph import Network
from mlpbp.engine.layers import Activation, Linear
from mlpbp.engine.losses import LOSSES, CrossEntropyLoss, get_loss
from mlpbp.engine.network import MLP
from mlpbp.engine.optim import SGD
from mlpbp.errors import ConfigError

EPS = 1e-6
RNG_SEED = 1234


def central(f, x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """∂f/∂x by central differences, entry by entry (x is perturbed in place and restored)."""
    g = np.zeros(x.shape)
    for i in np.ndindex(x.shape):  # by index: a flat view of a Fortran-ordered x would be a copy
        orig = x[i]
        x[i] = orig + eps
        fp = f()
        x[i] = orig - eps
        fm = f()
        x[i] = orig
        g[i] = (fp - fm) / (2 * eps)
    return g


def rel_err(a, n) -> float:
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    scale = max(np.abs(a).max(), np.abs(n).max(), 1e-12)
    return float(np.abs(a - n).max() / scale)


def away_from_kink(rng, shape, margin=0.05):
    """Standard normal values, none within `margin` of 0 (where relu-family kinks are)."""
    z = rng.standard_normal(shape)
    return np.where(np.abs(z) < margin, np.sign(z + 1e-300) * (margin + np.abs(z)), z)


# ---------------------------------------------------------------------------------------------
# Activations and layers


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_derivatives_match_differences(name):
    fn = ACTIVATIONS[name]
    z = away_from_kink(np.random.default_rng(RNG_SEED), (5, 4)) * 2
    buf = np.empty_like(z)
    f = lambda zz: fn.f(zz, np.empty_like(zz)).copy()  # noqa: E731
    a = f(z)
    df = fn.df(z, a, buf).copy()
    d2f = fn.d2f(z, a, np.empty_like(z)).copy()
    num_df = (f(z + EPS) - f(z - EPS)) / (2 * EPS)
    df_of = lambda zz: fn.df(zz, f(zz), np.empty_like(zz)).copy()  # noqa: E731
    num_d2f = (df_of(z + EPS) - df_of(z - EPS)) / (2 * EPS)
    assert rel_err(df, num_df) < 1e-8
    assert np.abs(d2f - num_d2f).max() < 1e-7 * max(1.0, np.abs(d2f).max())


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_layer_backward_matches_differences(name):
    rng = np.random.default_rng(RNG_SEED)
    layer = Activation(name, "float64")
    z = away_from_kink(rng, (6, 5))
    G = rng.standard_normal(z.shape)
    layer.forward(z.copy())
    analytical = layer.backward(G).copy()  # buffers are reused: copy
    u = z.copy()
    numerical = central(lambda: float(np.vdot(G, layer.forward(u))), u)
    assert rel_err(analytical, numerical) < 1e-8


@pytest.mark.parametrize("n", [5, 1])  # batch 1 takes the gemv/ger paths
@pytest.mark.parametrize("order", ["C", "F"])
def test_linear_layer_backward_matches_differences(n, order):
    rng = np.random.default_rng(RNG_SEED)
    W, b = np.asarray(rng.standard_normal((4, 3)), order=order), rng.standard_normal(4)
    layer = Linear(W, b)
    u = rng.standard_normal((n, 3))
    G = rng.standard_normal((n, 4))

    def f():
        return float(np.vdot(G, layer.forward(u)))

    np.testing.assert_allclose(layer.forward(u), u @ W.T + b, rtol=1e-12)
    grad_u = layer.backward(G).copy()
    gW, gb = layer.grads["W"].copy(), layer.grads["b"].copy()
    assert rel_err(gW, central(f, W)) < 1e-9
    assert rel_err(gb, central(f, b)) < 1e-9
    assert rel_err(grad_u, central(f, u)) < 1e-9
    # The formulas themselves: ∂J/∂W = Σⱼ gⱼ uⱼᵀ, ∂J/∂b = Σⱼ gⱼ, ∂J/∂u = G W.
    np.testing.assert_allclose(gW, sum(np.outer(G[j], u[j]) for j in range(n)), rtol=1e-12)
    np.testing.assert_allclose(gb, G.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(grad_u, G @ W, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Losses


def _targets(loss, rng, n, k):
    return LOSSES[loss].example_targets(rng, n, k)  # class indices, 0/1, counts or reals


@pytest.mark.parametrize(
    "loss", list(LOSSES) + ["square_on_labels", "weighted_cross_entropy", "weighted_square_on_labels"]
)
def test_loss_gradient_and_hessian_match_differences(loss):
    rng = np.random.default_rng(RNG_SEED)
    n, k = 5, 4
    weights = rng.uniform(0.2, 3.0, k) if loss.startswith("weighted_") else None
    loss = loss.removeprefix("weighted_")
    if loss == "square_on_labels":  # integer targets are compared against one-hot vectors
        fn, y = get_loss("square", weights), rng.integers(0, k, n)
    else:
        fn, y = get_loss(loss, weights), _targets(loss, rng, n, k)
    o = rng.standard_normal((n, k)) * 2
    fn.forward(o, y)
    grad = fn.backward().copy()
    oo = o.copy()
    assert rel_err(grad, central(lambda: fn.forward(oo, y), oo)) < 1e-8
    # R{∂J/∂o} = (∂²J/∂o²) r against the difference of gradients along r.
    r = rng.standard_normal(o.shape)
    fn.forward(o, y)
    fn.backward()
    hr = fn.rbackward(r).copy()

    def grad_at(x):
        fn.forward(x, y)
        return fn.backward().copy()

    numerical = (grad_at(o + EPS * r) - grad_at(o - EPS * r)) / (2 * EPS)
    assert rel_err(hr, numerical) < 1e-7


@pytest.mark.parametrize("loss", ["cross_entropy", "square"])
def test_class_weighted_loss_is_the_weighted_sum_over_n(loss):
    # J = (1/n) Σⱼ c_{yⱼ} J⁽ʲ⁾, each J⁽ʲ⁾ from the unweighted loss on row j alone.
    rng = np.random.default_rng(RNG_SEED)
    n, k = 6, 3
    o, y = rng.standard_normal((n, k)), np.array([0, 1, 2, 2, 1, 2])
    c = np.array([0.5, 2.0, 1.5])
    per_row = [get_loss(loss).forward(o[j : j + 1], y[j : j + 1]) for j in range(n)]
    assert get_loss(loss, c).forward(o, y) == pytest.approx(sum(c[y[j]] * per_row[j] for j in range(n)) / n, rel=1e-12)
    # Weights of 1 are no weights at all.
    assert get_loss(loss, np.ones(k)).forward(o, y) == pytest.approx(get_loss(loss).forward(o, y), rel=1e-12)


def test_cross_entropy_gradient_is_softmax_minus_one_hot_over_n():
    o = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0])
    fn = CrossEntropyLoss()
    J = fn.forward(o, y)
    p0 = np.exp(o[0]) / np.exp(o[0]).sum()
    assert J == pytest.approx((-np.log(p0[2]) + np.log(3.0)) / 2, rel=1e-14)
    expected = np.array([p0 - [0, 0, 1], [1 / 3 - 1, 1 / 3, 1 / 3]]) / 2
    np.testing.assert_allclose(fn.backward(), expected, rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# The per-example gradient of a weight matrix is rank one


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_per_example_weight_gradient_is_rank_one(activation):
    rng = np.random.default_rng(RNG_SEED)
    net = MLP([5, 4, 3, 2], activation, "cross_entropy", seed=2)
    X, y = rng.standard_normal((6, 5)), rng.integers(0, 2, 6)
    _, batch_grads = net.loss_and_grad(X, y)
    per_example = []
    for j in range(6):
        _, g = net.loss_and_grad(X[j : j + 1], y[j : j + 1])
        per_example.append(g)
        for r, lin in enumerate(net.linears, start=1):
            gW = g[f"W{r}"]
            # ∂J⁽ʲ⁾/∂W = (∂J⁽ʲ⁾/∂z) uᵀ: exactly that outer product, hence rank one …
            np.testing.assert_allclose(gW, np.outer(lin.grad_z[0], lin.u[0]), rtol=1e-12, atol=1e-15)
            s = np.linalg.svd(gW, compute_uv=False)
            if s[0] > 1e-12:  # (zero only if relu killed every unit on the path)
                assert s[1] <= 1e-12 * s[0]
            # … and its bias gradient is the ∂J/∂z of that one example.
            np.testing.assert_allclose(g[f"b{r}"], lin.grad_z[0], rtol=1e-12, atol=1e-15)
    # The mini-batch gradient is the mean of the per-example ones (J is a mean), of rank > 1.
    for name, g in batch_grads.items():
        np.testing.assert_allclose(g, np.mean([pe[name] for pe in per_example], axis=0), rtol=1e-10, atol=1e-14)
    assert np.linalg.matrix_rank(batch_grads["W1"]) > 1


# ---------------------------------------------------------------------------------------------
# One SGD step, number by number


def _hand_net():
    """2 → 2 (relu) → 1, square loss, one example; every number small enough to follow."""
    net = MLP([2, 2, 1], "relu", "square", seed=0)
    net.params["W1"][...] = [[0.5, 0.25], [-0.5, 0.1]]
    net.params["b1"][...] = [0.0, 0.1]
    net.params["W2"][...] = [[2.0, -1.0]]
    net.params["b2"][...] = [0.5]
    return net, np.array([[1.0, 2.0]]), np.array([[1.0]])


def test_hand_worked_forward_and_backward():
    net, X, y = _hand_net()
    # z1 = W1 x + b1 = [0.5 + 0.5, −0.5 + 0.2 + 0.1] = [1.0, −0.2];  a1 = relu(z1) = [1, 0]
    # o = W2 a1 + b2 = 2 + 0.5 = 2.5;  J = ½ (2.5 − 1)² = 1.125;  ∂J/∂o = 1.5
    J, g = net.loss_and_grad(X, y)
    assert J == pytest.approx(1.125, abs=1e-15)
    np.testing.assert_allclose(g["W2"], [[1.5, 0.0]], atol=1e-15)  # ∂J/∂o · a1ᵀ
    np.testing.assert_allclose(g["b2"], [1.5], atol=1e-15)
    # ∂J/∂a1 = W2ᵀ 1.5 = [3, −1.5];  ∂J/∂z1 = [3, 0] (relu' = [1, 0]);  ∂J/∂W1 = [3, 0]ᵀ x ᵀ
    np.testing.assert_allclose(g["W1"], [[3.0, 6.0], [0.0, 0.0]], atol=1e-15)
    np.testing.assert_allclose(g["b1"], [3.0, 0.0], atol=1e-15)


def test_hand_worked_sgd_steps_with_momentum_and_weight_decay():
    net, X, y = _hand_net()
    opt = SGD(net.params, learning_rate=0.1, momentum=0.9, weight_decay=0.1)
    net.step_loss_and_grad(X, y)
    opt.step(net.grads)
    # Step 1, v = 0 so v := g = ∇J + 0.1·θ (every parameter is decayed), θ −= 0.1 v:
    # g_W1 = [[3, 6], [0, 0]] + 0.1·[[0.5, 0.25], [−0.5, 0.1]] = [[3.05, 6.025], [−0.05, 0.01]]
    np.testing.assert_allclose(opt.velocity["W1"], [[3.05, 6.025], [-0.05, 0.01]], rtol=1e-14)
    np.testing.assert_allclose(net.params["W1"], [[0.195, -0.3525], [-0.495, 0.099]], rtol=1e-14)
    # g_b1 = [3, 0] + 0.1·[0, 0.1] = [3, 0.01];  b1 = [0, 0.1] − 0.1·[3, 0.01]
    np.testing.assert_allclose(net.params["b1"], [-0.3, 0.099], rtol=1e-14)
    # g_W2 = [1.5, 0] + 0.1·[2, −1] = [1.7, −0.1];  W2 = [2 − 0.17, −1 + 0.01]
    np.testing.assert_allclose(net.params["W2"], [[1.83, -0.99]], rtol=1e-14)
    np.testing.assert_allclose(net.params["b2"], [0.345], rtol=1e-14)  # 0.5 − 0.1·(1.5 + 0.05)

    # Step 2: z1 = [0.195 − 0.705 − 0.3, −0.495 + 0.198 + 0.099] = [−0.81, −0.198]: both units
    # off, so o = b2 = 0.345, ∂J/∂o = −0.655, and every gradient is 0 except ∂J/∂b2 = −0.655.
    J = net.step_loss_and_grad(X, y)
    assert J == pytest.approx(0.5 * 0.655**2, rel=1e-14)
    np.testing.assert_allclose(net.grads["W1"], 0.0, atol=1e-15)
    opt.step(net.grads)
    # v_W1 = 0.9·[[3.05, 6.025], [−0.05, 0.01]] + 0.1·W1 = [[2.7645, 5.38725], [−0.0945, 0.0189]]
    np.testing.assert_allclose(opt.velocity["W1"], [[2.7645, 5.38725], [-0.0945, 0.0189]], rtol=1e-13)
    np.testing.assert_allclose(net.params["W1"], [[-0.08145, -0.891225], [-0.48555, 0.09711]], rtol=1e-13)
    # b1: v = 0.9·[3, 0.01] + 0.1·[−0.3, 0.099] = [2.67, 0.0189];  b1 = [−0.3 − 0.267, 0.099 − 0.00189]
    np.testing.assert_allclose(net.params["b1"], [-0.567, 0.09711], rtol=1e-13)
    # b2: v = 0.9·1.55 − 0.655 + 0.1·0.345 = 0.7745;  b2 = 0.345 − 0.07745 = 0.26755
    np.testing.assert_allclose(opt.velocity["b2"], [0.7745], rtol=1e-13)
    np.testing.assert_allclose(net.params["b2"], [0.26755], rtol=1e-13)
    # W2: v = 0.9·[1.7, −0.1] + 0.1·[1.83, −0.99] = [1.713, −0.189];  W2 = [1.6587, −0.9711]
    np.testing.assert_allclose(net.params["W2"], [[1.6587, -0.9711]], rtol=1e-13)


def test_hand_worked_nesterov_step():
    net, X, y = _hand_net()
    opt = SGD(net.params, learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)
    net.step_loss_and_grad(X, y)
    opt.step(net.grads)
    # v = g;  θ −= 0.1·g + 0.1·0.9·v = 0.19·g
    # W1: [[0.5 − 0.5795, 0.25 − 1.14475], [−0.5 + 0.0095, 0.1 − 0.0019]]
    np.testing.assert_allclose(net.params["W1"], [[-0.0795, -0.89475], [-0.4905, 0.0981]], rtol=1e-14)
    np.testing.assert_allclose(net.params["b2"], [0.5 - 0.19 * 1.55], rtol=1e-14)  # g = 1.5 + 0.1·0.5


# ---------------------------------------------------------------------------------------------
# Numerical stability


# Underflow is ignored on purpose: e^-1000 → 0 inside logaddexp/exp is the exact float64 answer
# (sigmoid(−1000) = 0, softplus(−1000) = 0); overflow, invalid and divide-by-zero must not occur.
STRICT = dict(all="raise", under="ignore")


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "elu", "tanh"])
def test_activations_are_stable_at_plus_minus_1000(name):
    fn = ACTIVATIONS[name]
    z = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(**STRICT):
        a = fn.f(z, np.empty_like(z)).copy()
        d = fn.df(z, a, np.empty_like(z)).copy()
        d2 = fn.d2f(z, a, np.empty_like(z)).copy()
    assert np.isfinite(a).all() and np.isfinite(d).all() and np.isfinite(d2).all()
    if name == "sigmoid":
        assert a[0] == 0.0 and a[-1] == 1.0 and a[2] == 0.5
        assert d[0] == 0.0 and d[-1] == 0.0 and d[2] == 0.25
    if name == "softplus":
        assert a[0] == 0.0 and a[-1] == 1000.0 and a[2] == pytest.approx(np.log(2))
        assert d[0] == 0.0 and d[-1] == 1.0  # softplus' = sigmoid
    if name == "elu":
        assert a[0] == -1.0 and a[-1] == 1000.0 and d[-1] == 1.0 and d[0] == 0.0


def test_cross_entropy_is_stable_for_huge_logits():
    o = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 1000.0]])
    y = np.array([1, 2])
    fn = CrossEntropyLoss()
    with np.errstate(**STRICT):
        J = fn.forward(o, y)
        g = fn.backward()
        h = fn.rbackward(np.ones_like(o))
    assert J == pytest.approx(2000.0 / 2)  # row 0: 1000 − (−1000); row 1: 0
    np.testing.assert_allclose(g, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-300)
    assert np.isfinite(h).all()


def test_network_is_stable_with_saturating_inputs():
    for act in ("sigmoid", "softplus", "elu", "tanh"):
        net = MLP([2, 3, 2], act, "cross_entropy", seed=0)
        X = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
        with np.errstate(**STRICT):
            J, g = net.loss_and_grad(X, np.array([0, 1]))
            hv = net.hvp(X, np.array([0, 1]), {k: np.ones_like(p) for k, p in net.params.items()})
        assert np.isfinite(J) and all(np.isfinite(v).all() for v in [*g.values(), *hv.values()])


# ---------------------------------------------------------------------------------------------
# Hessian-vector products


def _hvp_net(activation="tanh", loss="cross_entropy", widths=(3, 5, 4, 3), n=7):
    rng = np.random.default_rng(RNG_SEED)
    net = MLP(list(widths), activation, loss, seed=5)
    for k, p in net.params.items():
        if k.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    X = rng.standard_normal((n, widths[0]))
    return net, X, _targets(loss, rng, n, widths[-1]), rng


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "softplus", "sin", "elu", "relu", "identity"])
def test_hvp_is_linear_in_v_and_symmetric(activation, loss):
    net, X, y, rng = _hvp_net(activation, loss)
    n = net.n_params
    u, v = rng.standard_normal(n), rng.standard_normal(n)
    a, b = 0.7, -2.3
    Hu, Hv = net.flat_hvp(X, y, u), net.flat_hvp(X, y, v)
    H_comb = net.flat_hvp(X, y, a * u + b * v)
    scale = np.abs(a * Hu).max() + np.abs(b * Hv).max()
    assert np.abs(H_comb - (a * Hu + b * Hv)).max() <= 1e-12 * scale
    assert abs(u @ Hv - v @ Hu) <= 1e-12 * np.linalg.norm(u) * np.linalg.norm(Hv)


def test_full_hessian_from_hvp_is_symmetric_and_matches_differences():
    net, X, y, _ = _hvp_net("tanh", "cross_entropy", widths=(2, 3, 2), n=4)
    n = net.n_params
    H = np.column_stack([net.flat_hvp(X, y, e) for e in np.eye(n)])
    np.testing.assert_allclose(H, H.T, atol=1e-14 * np.abs(H).max())
    theta = net.get_flat()

    def grad_at(t):
        net.set_flat(t)
        return net.flat_grad(X, y)[1]

    H_num = np.column_stack([(grad_at(theta + EPS * e) - grad_at(theta - EPS * e)) / (2 * EPS) for e in np.eye(n)])
    net.set_flat(theta)
    assert rel_err(H, H_num) < 1e-7


def test_square_loss_hessian_of_a_linear_model_is_xtx_over_n():
    # No hidden layer: o = W x + b, J = ½‖o − y‖²/n, so H = (1/n)[x;1][x;1]ᵀ ⊗ I, exactly.
    rng = np.random.default_rng(0)
    net = MLP([3, 2], "identity", "square", seed=0)
    X, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    V = {"W1": rng.standard_normal((2, 3)), "b1": rng.standard_normal(2)}
    hv = net.hvp(X, y, V)
    R = X @ V["W1"].T + V["b1"]  # R{o}
    np.testing.assert_allclose(hv["W1"], R.T @ X / 5, rtol=1e-13)
    np.testing.assert_allclose(hv["b1"], R.sum(axis=0) / 5, rtol=1e-13)


def test_leaky_relu_slope_below_zero():
    fn = ACTIVATIONS["leaky_relu"]
    z = np.array([-2.0, 3.0])
    a = fn.f(z, np.empty(2)).copy()
    np.testing.assert_allclose(a, [-2.0 * LEAKY_SLOPE, 3.0])
    np.testing.assert_allclose(fn.df(z, a, np.empty(2)), [LEAKY_SLOPE, 1.0])


@pytest.mark.parametrize(
    "dtype, off_centre, tol",
    [("float64", 1.0, 1e-13), ("float64", 1e5, 1e-10), ("float32", 1.0, 1e-5), ("float32", 100.0, 1e-4)],
)
def test_batch_norm_keeps_its_precision_for_features_far_from_zero(dtype, off_centre, tol):
    """batch_norm takes σ² = M(x²) − μ² from one pass over x only where no feature's mean is
    large beside its spread; else the two-pass variance. Off centre by 1e5 spreads (float64)
    or 100 (float32), M(x²) − μ² alone is off by 1e-5 (float64) and 1e-2 (float32) here."""
    from mlpbp.engine.init import INITS
    from mlpbp.engine.module import BuildContext
    from mlpbp.engine.norm import BatchNorm

    rng = np.random.default_rng(0)
    n, d = 64, 6
    spread = rng.uniform(0.5, 2, d)
    x = (rng.normal(size=(n, d)) + off_centre * np.array([1, -1, 0, 0.5, 3, -2])) * spread
    x, g = x.astype(dtype), rng.normal(size=(n, d)).astype(dtype)
    m = BatchNorm()
    m.build([d], BuildContext(np.random.default_rng(1), np.dtype(dtype), INITS.lookup("he")))
    m.gamma[...], m.beta[...] = rng.uniform(0.5, 1.5, d), rng.normal(size=d)
    y = m.forward(x)
    m.keep_batch_statistics()
    dx = m.backward(g)

    x64, g64, gamma, beta = (np.asarray(a, np.float64) for a in (x, g, m.gamma, m.beta))
    mu, var = x64.mean(axis=0), x64.var(axis=0)
    s = 1 / np.sqrt(var + 1e-5)
    xh = (x64 - mu) * s
    gh = g64 * gamma
    expected = {
        "y": gamma * xh + beta,
        "dx": s * (gh - gh.mean(axis=0) - xh * (gh * xh).mean(axis=0)),
        "dgamma": (g64 * xh).sum(axis=0),
        "running_var": var * n / (n - 1),
    }
    got = {"y": y, "dx": dx, "dgamma": m.grads["gamma"], "running_var": m.running_var}
    for k, want in expected.items():
        assert np.max(np.abs(got[k] - want)) <= tol * np.max(np.abs(want)), k


def _graph(*inputs):
    """linear 5 → tanh → linear 2 with the given input lists (a model file's graph record)."""
    kinds = [("linear", {"width": 5}), ("tanh", {}), ("linear", {"width": 2})]
    return {"inputs": 3, "nodes": [{"module": k, "options": o, "inputs": i} for (k, o), i in zip(kinds, inputs)]}


@pytest.mark.parametrize(
    "graph, message",
    [
        # a cycle, a missing value, and what list indexing would have taken for valid indices
        (_graph([0], [2], [2]), "graph node 2 (tanh): reads value 2; allowed: 0 (the input) to 1 (the node before it)"),
        (_graph([1], [1], [2]), "graph node 1 (linear): reads value 1; allowed: 0 (the input)"),
        (_graph([0], [9], [2]), "graph node 2 (tanh): reads value 9; allowed: 0 (the input) to 1"),
        (_graph([0], [-1], [2]), "graph node 2 (tanh): reads value -1; allowed: 0 (the input) to 1"),
        (_graph([0], [True], [2]), "graph node 2 (tanh): reads value True; allowed"),
        (_graph([0], [], [2]), "graph node 2 (tanh): reads no value; allowed"),
        # an unused branch: the last linear reads the first one, so tanh leads nowhere
        (_graph([0], [1], [1]), "graph node 2 (tanh): the output (the last node) does not depend on it"),
        # the output is not the last node: the last linear reads the input beside the rest
        (_graph([0], [1], [0]), "graph node 1 (linear): the output (the last node) does not depend on it"),
    ],
)
def test_a_graph_record_reading_a_missing_later_or_unused_value_is_one_line(graph, message):
    with pytest.raises(ConfigError) as e:
        Network.from_graph(graph, loss="cross_entropy")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_graph_record_round_trips_when_every_node_leads_to_the_output():
    graph = _graph([0], [1], [2])
    assert Network.from_graph(graph, loss="cross_entropy").graph() == graph


def test_mlpbp_modules_holds_the_built_in_modules_before_a_user_registers_one():
    # A fresh interpreter: the registry a user first touches, as the docs' own module does
    code = (
        "from mlpbp import MODULES, Module\n"
        "print(sorted(MODULES))\n"
        "try:\n"
        "    MODULES.register('dropout', Module)\n"
        "except ValueError as e:\n"
        "    print(e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, refusal = res.stdout.splitlines()
    assert {"linear", "dropout", "batch_norm", "layer_norm", "add", "concat"} <= set(eval(names))
    assert refusal == "module 'dropout' is already registered (pass replace=True to override it)"


def test_a_module_class_registered_under_a_name_its_kind_does_not_say_is_refused(monkeypatch):
    from mlpbp.engine.module import MODULES, Module
    from mlpbp.engine.norm import LayerNorm

    class Twice(Module):
        kind = "twice"

    class Thrice(Twice):  # a variant that kept its parent's kind: it saved as, and reloaded into, Twice
        pass

    monkeypatch.setitem(MODULES, "twice", Twice)
    with pytest.raises(ValueError) as e:
        MODULES.register("thrice", Thrice)
    assert str(e.value) == (
        "module class 'Thrice' has kind 'twice', not 'thrice': set kind = 'thrice' on it"
        " (model files name a module by its kind)"
    )
    assert "thrice" not in MODULES
    monkeypatch.setattr(Thrice, "kind", "thrice")
    MODULES.register("thrice", Thrice)
    monkeypatch.delitem(MODULES, "thrice")
    MODULES.register("ln", LayerNorm)  # an alias of a class its kind names is fine
    monkeypatch.delitem(MODULES, "ln")
