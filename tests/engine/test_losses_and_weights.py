"""The losses beyond square and cross-entropy (binary_cross_entropy, poisson, huber, absolute,
quantile) and per-row weights: J, ∂J/∂θ and the Hessian-vector product against PyTorch's
autograd in float64 on random networks; weighted passes against the same rows repeated;
Poisson against square on counts; the targets each loss refuses."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp import MLP, SGD
from mlpbp.engine.losses import LOSSES, get_loss
from mlpbp.tools.gradcheck import check_network

torch = pytest.importorskip("torch")
F = torch.nn.functional
ACT = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus, "relu": torch.relu, "sin": torch.sin}


def _torch_elementwise(name, o, t, params):
    """Σₖ ℓ(oₖ, tₖ) per row, as PyTorch computes it (its own loss where it has one)."""
    if name == "binary_cross_entropy":
        return F.binary_cross_entropy_with_logits(o, t, reduction="none").sum(dim=1)
    if name == "poisson":  # PyTorch's log-input Poisson NLL plus the constant t log t − t
        const = torch.special.xlogy(t, t) - t
        return (F.poisson_nll_loss(o, t, log_input=True, full=False, reduction="none") + const).sum(dim=1)
    if name == "huber":
        return F.huber_loss(o, t, delta=params.get("delta", 1.0), reduction="none").sum(dim=1)
    if name == "absolute":
        return F.l1_loss(o, t, reduction="none").sum(dim=1)
    alpha = params.get("alpha", 0.5)  # quantile: the pinball loss
    r = t - o
    return torch.maximum(alpha * r, (alpha - 1) * r).sum(dim=1)


def _torch_J(net, params, X, y, name, loss_params, weight=None):
    h = torch.as_tensor(X)
    R = len(net.widths) - 1
    for r in range(1, R + 1):
        h = h @ params[f"W{r}"].T + params[f"b{r}"]
        if r < R:
            h = ACT[net.activation](h)
    per_row = _torch_elementwise(name, h, torch.as_tensor(y), loss_params)
    if weight is None:
        return per_row.mean()
    w = torch.as_tensor(weight)
    return (w * per_row).sum() / w.sum()


CASES = [
    ("binary_cross_entropy", {}),
    ("poisson", {}),
    ("huber", {}),
    ("huber", {"delta": 0.3}),
    ("absolute", {}),
    ("quantile", {}),
    ("quantile", {"alpha": 0.9}),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("activation", list(ACT))
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_loss_gradient_and_hvp_equal_pytorch(name, params, activation, weighted):
    rng = np.random.default_rng(11)
    widths = [5, 7, 6, 3]
    net = MLP(widths, activation, name, seed=4, loss_params=params)
    for k, p in net.params.items():
        if k.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    X = rng.standard_normal((12, widths[0]))
    y = LOSSES[name].example_targets(rng, 12, widths[-1])
    w = rng.uniform(0.0, 3.0, 12) if weighted else None
    v = {k: rng.standard_normal(p.shape) for k, p in net.params.items()}
    tp = {k: torch.tensor(p, requires_grad=True) for k, p in net.params.items()}
    J_t = _torch_J(net, tp, X, y, name, params, w)
    g_t = torch.autograd.grad(J_t, list(tp.values()), create_graph=True)
    # Hv = ∇(gᵀv); a gradient that is constant in θ (the last bias under |r|) adds nothing
    gv = sum((gt * torch.as_tensor(v[k])).sum() for k, gt in zip(tp, g_t) if gt.requires_grad)
    Hv_t = torch.autograd.grad(gv, list(tp.values()), allow_unused=True)
    J, g = net.loss_and_grad(X, y, sample_weight=w)
    Hv = net.hvp(X, y, v, sample_weight=w)
    assert J == pytest.approx(J_t.item(), rel=1e-12)
    for k, gt, ht in zip(tp, g_t, Hv_t):
        scale = max(np.abs(gt.detach().numpy()).max(), 1e-300)
        np.testing.assert_allclose(g[k], gt.detach().numpy(), rtol=1e-9, atol=1e-9 * scale)
        ht = np.zeros_like(Hv[k]) if ht is None else ht.numpy()
        np.testing.assert_allclose(Hv[k], ht, rtol=1e-8, atol=1e-8 * max(np.abs(ht).max(), 1e-12))


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}{p or ''}" for n, p in CASES])
def test_gradcheck_passes_for_each_loss(name, params):
    rng = np.random.default_rng(2)
    net = MLP([4, 5, 3], "tanh", name, seed=1, loss_params=params)
    X = rng.standard_normal((6, 4))
    y = LOSSES[name].example_targets(rng, 6, 3)
    report = check_network(net, X, y)
    assert report.ok, [(c.full_name, c.max_rel_err) for c in report.failures]


@pytest.mark.parametrize("name", ["square", "cross_entropy", *sorted({n for n, _ in CASES})])
def test_integer_weights_equal_repeated_rows(name):
    """Σ sⱼJⱼ/Σ sⱼ with integer s is the plain mean over the rows repeated sⱼ times: the loss,
    the gradient, the HVP, and 30 full-batch SGD steps, to 1e-12 in float64."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((10, 4))
    y = LOSSES[name].example_targets(rng, 10, 3)
    s = rng.integers(0, 4, 10)
    s[0] = 2  # at least one row repeated; zeros drop rows
    rows = np.repeat(np.arange(10), s)
    a = MLP([4, 6, 3], "tanh", name, seed=3)
    b = MLP([4, 6, 3], "tanh", name, seed=3)
    v = {k: rng.standard_normal(p.shape) for k, p in a.params.items()}
    J_w, g_w = a.loss_and_grad(X, y, sample_weight=s)
    J_r, g_r = b.loss_and_grad(X[rows], y[rows])
    assert J_w == pytest.approx(J_r, rel=1e-12)
    np.testing.assert_allclose(a.flatten(g_w), b.flatten(g_r), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        a.flat_hvp(X, y, a.flatten(v), sample_weight=s), b.flat_hvp(X[rows], y[rows], b.flatten(v)), atol=1e-13
    )
    opt_a, opt_b = SGD(a.params, 0.1, momentum=0.9), SGD(b.params, 0.1, momentum=0.9)
    for _ in range(30):
        a.train_step(X, y, opt_a, sample_weight=s)
        b.train_step(X[rows], y[rows], opt_b)
    np.testing.assert_allclose(a.get_flat(), b.get_flat(), rtol=1e-12, atol=1e-12)


def test_weights_combine_with_class_weights():
    """J = Σ sⱼ c_{yⱼ} Jⱼ / Σ sⱼ: a row of weight 2 is that row twice, class weights still apply."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 3, 8)
    s = np.array([1, 2, 0, 1, 3, 1, 1, 2])
    cw = [0.5, 2.0, 1.5]
    a = MLP([3, 4, 3], "tanh", "cross_entropy", seed=0, class_weight=cw)
    rows = np.repeat(np.arange(8), s)
    J_w, g_w = a.loss_and_grad(X, y, sample_weight=s)
    J_r, g_r = a.loss_and_grad(X[rows], y[rows])
    # repeated rows are divided by their count, weighted ones by Σ s: the same number
    assert J_w == pytest.approx(J_r, rel=1e-12)
    np.testing.assert_allclose(a.flatten(g_w), a.flatten(g_r), rtol=1e-12)


def test_poisson_beats_square_in_deviance_on_counts():
    """Counts whose log-mean is linear in x: the log-link network's mean Poisson deviance on
    held-out rows is below the square-loss network's (its predictions clipped to > 0)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (4000, 3))
    mu = np.exp(0.3 + 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.5 * X[:, 2] * X[:, 0])
    y = rng.poisson(mu).astype(np.float64)[:, None]
    train, test = slice(0, 3000), slice(3000, None)

    def deviance(pred):
        pred = np.maximum(pred, 1e-6)
        t = y[test]
        return float(np.mean(2 * (np.where(t > 0, t * np.log(np.where(t > 0, t, 1) / pred), 0) - t + pred)))

    preds = {}
    for loss in ("poisson", "square"):
        net = MLP([3, 16, 1], "tanh", loss, seed=1)
        opt = SGD(net.params, 0.02, momentum=0.9)
        order_rng = np.random.default_rng(2)
        for _ in range(40):
            order = order_rng.permutation(3000)
            for i in range(0, 3000, 50):
                rows = order[i : i + 50]
                net.train_step(X[train][rows], y[train][rows], opt)
        o = net.forward(X[test])
        preds[loss] = np.exp(o) if loss == "poisson" else o
    d_poisson, d_square = deviance(preds["poisson"]), deviance(preds["square"])
    d_best = deviance(mu[test, None])
    assert d_poisson < d_square
    assert d_poisson < 1.05 * d_best  # and close to the true mean's deviance


@pytest.mark.parametrize(
    ("name", "y", "message"),
    [
        ("poisson", np.array([[1.0], [-1.0]]), "non-negative"),
        ("binary_cross_entropy", np.array([[0.0], [0.5]]), "0/1"),
    ],
)
def test_targets_a_loss_is_not_defined_for_are_refused(name, y, message):
    fn = get_loss(name)
    with pytest.raises(ValueError, match=message):
        fn.forward(np.zeros((2, 1)), y)


def test_bad_loss_settings_and_weights_are_refused():
    with pytest.raises(ValueError, match="delta"):
        get_loss("huber", delta=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        get_loss("quantile", alpha=1.5)
    net = MLP([2, 3, 1], "tanh", "square")
    X, y = np.zeros((3, 2)), np.zeros((3, 1))
    for bad in ([1.0, -1.0, 1.0], [1.0, np.nan, 1.0], [1.0, 1.0]):
        with pytest.raises(ValueError, match="sample_weight"):
            net.loss(X, y, sample_weight=bad)


def test_piecewise_linear_losses_say_their_hessian_in_o_is_zero():
    """Their Gauss-Newton matrix Jᵀ H_L J is 0 (H_L = 0 almost everywhere); the Hessian keeps
    the network's own curvature, ∂J/∂o times ∂²o/∂θ² (checked against PyTorch above)."""
    assert LOSSES["absolute"].curvature_free and LOSSES["quantile"].curvature_free
    assert not any(LOSSES[n].curvature_free for n in ("square", "cross_entropy", "huber", "poisson"))
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    for name in ("absolute", "quantile"):
        net = MLP([3, 4, 2], "tanh", name, seed=0)
        v = rng.standard_normal(net.n_params)
        assert np.abs(net.flat_gnvp(X, y, v)).max() == 0.0
        assert np.abs(net.flat_hvp(X, y, v)).max() > 0.0
