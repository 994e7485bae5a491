"""The engine against PyTorch in float64, where PyTorch is installed (pip install '.[compare]'):
the same network, the same weights, the same batch."""

import numpy as np
import pytest

from mlpbp import MLP, SGD, Adam, AdamW

torch = pytest.importorskip("torch")
F = torch.nn.functional
TORCH_ACT = {
    "identity": lambda z: z,
    "relu": torch.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "elu": F.elu,
    "sin": torch.sin,
}


def _torch_loss(net, params, X, y):
    h = torch.as_tensor(X)
    R = len(net.widths) - 1
    for r in range(1, R + 1):
        h = h @ params[f"W{r}"].T + params[f"b{r}"]
        if r < R:
            h = TORCH_ACT[net.activation](h)
    if net.loss_name == "cross_entropy":
        return F.cross_entropy(h, torch.as_tensor(y))
    return 0.5 * ((h - torch.as_tensor(y)) ** 2).sum(dim=1).mean()


def _problem(rng, widths, activation, loss, rows, seed):
    """A network (3 outputs) and rows for it: class indices or regression targets."""
    net = MLP(widths, activation, loss, seed=seed)
    X = rng.normal(size=(rows, widths[0]))
    y = rng.integers(0, 3, rows) if loss == "cross_entropy" else rng.normal(size=(rows, 3))
    return net, X, y


@pytest.mark.parametrize("activation", list(TORCH_ACT))
@pytest.mark.parametrize("loss", ["square", "cross_entropy"])
def test_loss_gradient_and_hvp_match_pytorch(activation, loss):
    rng = np.random.default_rng(7)
    net, X, y = _problem(rng, [5, 6, 4, 3], activation, loss, 9, seed=3)
    v = {k: rng.normal(size=p.shape) for k, p in net.params.items()}
    params = {k: torch.tensor(p, requires_grad=True) for k, p in net.params.items()}
    J_t = _torch_loss(net, params, X, y)
    g_t = torch.autograd.grad(J_t, list(params.values()), create_graph=True)
    Hv_t = torch.autograd.grad(g_t, list(params.values()), [torch.as_tensor(v[k]) for k in params])
    J, g = net.loss_and_grad(X, y)
    Hv = net.hvp(X, y, v)
    assert J == pytest.approx(J_t.item(), rel=1e-12)
    for k, gt, ht in zip(params, g_t, Hv_t):
        np.testing.assert_allclose(g[k], gt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(Hv[k], ht.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize(
    "momentum, nesterov, weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.01), (0.5, False, 0.1)]
)
def test_sgd_matches_torch_optim_sgd(momentum, nesterov, weight_decay):
    rng = np.random.default_rng(1)
    net = MLP([4, 5, 3], "tanh", "cross_entropy", seed=2)
    params = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in net.params.items()}
    opt = SGD(net.params, 0.05, momentum, nesterov, weight_decay)
    opt_t = torch.optim.SGD(
        list(params.values()), lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay
    )
    for _ in range(5):
        X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
        _, g = net.loss_and_grad(X, y)
        opt.step(g)
        opt_t.zero_grad()
        _torch_loss(net, params, X, y).backward()
        opt_t.step()
    for k, p in params.items():
        np.testing.assert_allclose(net.params[k], p.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("Adam", {}),
        ("Adam", {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1}),
        ("AdamW", {}),
        ("AdamW", {"learning_rate": 0.02, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4, "weight_decay": 0.3}),
    ],
)
def test_adam_and_adamw_match_torch_optim(name, kwargs):
    """10 steps on fresh batches: every parameter equal to torch.optim.Adam/AdamW's to 1e-10."""
    rng = np.random.default_rng(4)
    net = MLP([4, 6, 3], "tanh", "cross_entropy", seed=5)
    params = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in net.params.items()}
    opt = {"Adam": Adam, "AdamW": AdamW}[name](net.params, **kwargs)
    defaults = {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    defaults["weight_decay"] = 0.01 if name == "AdamW" else 0.0
    k = {**defaults, **kwargs}
    opt_t = getattr(torch.optim, name)(
        list(params.values()),
        lr=k["learning_rate"],
        betas=(k["beta1"], k["beta2"]),
        eps=k["eps"],
        weight_decay=k["weight_decay"],
    )
    for _ in range(10):
        X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
        _, g = net.loss_and_grad(X, y)
        opt.step(g)
        opt_t.zero_grad()
        _torch_loss(net, params, X, y).backward()
        opt_t.step()
    assert opt.steps == 10
    for key, p in params.items():
        np.testing.assert_allclose(net.params[key], p.detach().numpy(), rtol=1e-10, atol=1e-12)
        state = opt_t.state[p]
        np.testing.assert_allclose(opt.exp_avg[key], state["exp_avg"].numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(opt.exp_avg_sq[key], state["exp_avg_sq"].numpy(), rtol=1e-10, atol=1e-16)


def test_adamw_follows_a_learning_rate_and_decay_changed_between_steps():
    """A schedule moves the learning rate (and a user the weight decay) between steps: AdamW's
    per-step scalars follow, through the fused train_step, equal to torch's to 1e-10."""
    rng = np.random.default_rng(6)
    net = MLP([4, 6, 5, 3], "relu", "cross_entropy", seed=2)
    params = {k: torch.tensor(p.copy(), requires_grad=True) for k, p in net.params.items()}
    opt = AdamW(net.params, 0.01, weight_decay=0.1)
    opt_t = torch.optim.AdamW(list(params.values()), lr=0.01, weight_decay=0.1)
    for step in range(8):
        lr, wd = 0.01 * 0.7**step, 0.1 if step < 4 else 0.02
        opt.learning_rate, opt.weight_decay = lr, wd
        opt_t.param_groups[0]["lr"], opt_t.param_groups[0]["weight_decay"] = lr, wd
        X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
        net.train_step(X, y, opt)
        opt_t.zero_grad()
        _torch_loss(net, params, X, y).backward()
        opt_t.step()
    for key, p in params.items():
        np.testing.assert_allclose(net.params[key], p.detach().numpy(), rtol=1e-10, atol=1e-12)


def _flat_torch_loss(net, X, y):
    """The loss as a function of one flat parameter vector, in the order of net.params."""
    shapes = [(k, p.shape) for k, p in net.params.items()]

    def J(theta):
        params, i = {}, 0
        for k, shape in shapes:
            size = int(np.prod(shape))
            params[k] = theta[i : i + size].reshape(shape)
            i += size
        return _torch_loss(net, params, X, y)

    return J


@pytest.mark.parametrize("activation", list(TORCH_ACT))
@pytest.mark.parametrize("loss", ["square", "cross_entropy"])
def test_dense_hessian_and_its_top_eigenvalues_match_torch_autograd_hessian(activation, loss):
    from mlpbp.engine.curvature import Curvature, extreme_eigenvalues

    net, X, y = _problem(np.random.default_rng(11), [4, 6, 5, 3], activation, loss, 12, seed=2)
    op = Curvature(net, X, y, "hessian", batch_size=5)
    H = np.column_stack([op.matvec(e) for e in np.eye(net.n_params)])
    H_t = torch.autograd.functional.hessian(_flat_torch_loss(net, X, y), torch.as_tensor(net.get_flat())).numpy()
    np.testing.assert_allclose(H, H_t, rtol=1e-8, atol=1e-10 * np.abs(H_t).max())
    top = extreme_eigenvalues(op.matvec, net.n_params, top_k=3, tol=1e-9).top
    np.testing.assert_allclose(top, np.linalg.eigvalsh(H_t)[::-1][:3], rtol=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sin"])
@pytest.mark.parametrize("loss", ["square", "cross_entropy"])
def test_gauss_newton_matches_torch_jacobians(activation, loss):
    """G = Jᵀ H_L J with J = ∂o/∂θ and H_L = ∂²J/∂o², both from torch.autograd."""
    from mlpbp.engine.curvature import Curvature

    net, X, y = _problem(np.random.default_rng(12), [4, 6, 3], activation, loss, 7, seed=3)
    J_flat = _flat_torch_loss(net, X, y)
    theta = torch.as_tensor(net.get_flat())
    outputs = lambda t: _outputs(net, t, X)  # noqa: E731
    Jo = torch.autograd.functional.jacobian(outputs, theta).reshape(-1, net.n_params)
    o = outputs(theta).detach()
    loss_of_o = lambda out: _loss_of_outputs(net, out.reshape(o.shape), y)  # noqa: E731
    H_L = torch.autograd.functional.hessian(loss_of_o, o.reshape(-1))
    G_t = (Jo.T @ H_L @ Jo).numpy()
    op = Curvature(net, X, y, "gauss_newton")
    G = np.column_stack([op.matvec(e) for e in np.eye(net.n_params)])
    np.testing.assert_allclose(G, G_t, rtol=1e-8, atol=1e-10 * np.abs(G_t).max())
    assert J_flat(theta).item() == pytest.approx(net.loss(X, y), rel=1e-12)


def _outputs(net, theta, X):
    h, i, R = torch.as_tensor(X), 0, len(net.widths) - 1
    for r in range(1, R + 1):
        W = theta[i : i + net.widths[r] * net.widths[r - 1]].reshape(net.widths[r], net.widths[r - 1])
        i += W.numel()
        b = theta[i : i + net.widths[r]]
        i += b.numel()
        h = h @ W.T + b
        if r < R:
            h = TORCH_ACT[net.activation](h)
    return h


def _loss_of_outputs(net, o, y):
    if net.loss_name == "cross_entropy":
        return F.cross_entropy(o, torch.as_tensor(y))
    return 0.5 * ((o - torch.as_tensor(y)) ** 2).sum(dim=1).mean()
