"""Networks of every built-in module (chains, residual blocks, branches joined by add and concat,
batch_norm in both modes, dropout) against PyTorch autograd in float64: the loss, every
gradient, and Hessian-vector products by torch's double backward; batch_norm's running
statistics after training steps; dropout in training mode against central differences."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp import SGD, Network
from mlpbp.engine.activations import ACTIVATIONS

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
SMOOTH = ["tanh", "sigmoid", "softplus", "sin", "identity", "elu", "relu", "leaky_relu"]


def random_layers(rng, width, depth=3):
    """A random layer list mixing every built-in module, starting from ``width`` columns."""
    layers = []
    for _ in range(depth):
        kind = rng.choice(["linear", "norm", "act", "dropout", "residual", "add", "concat"])
        act = str(rng.choice(SMOOTH))
        norm = str(rng.choice(["batch_norm", "layer_norm"]))
        if kind == "linear":
            width = int(rng.integers(2, 6))
            layers.append({"linear": width} if rng.random() < 0.8 else {"linear": {"width": width, "bias": False}})
        elif kind == "norm":
            layers.append({norm: {"eps": float(rng.choice([1e-5, 1e-3]))}} if rng.random() < 0.5 else norm)
        elif kind == "act":
            layers.append(act)
        elif kind == "dropout":
            layers.append({"dropout": float(rng.choice([0.0, 0.2, 0.5]))})
        elif kind == "residual":
            layers.append({"residual": [norm, {"linear": 4}, act, {"dropout": 0.3}, {"linear": width}]})
        elif kind == "add":
            layers.append({"add": [[], [{"linear": width}, act], [norm, act]]})
        else:
            w = int(rng.integers(1, 4))
            layers.append({"concat": [[], [{"linear": w}, act]]})
            width += w
    return layers


def torch_forward(net, params, X, masks, buffers):
    """The network's graph rebuilt in torch: the same modules, the same parameters by name."""
    vals = [torch.as_tensor(X)]
    for m, srcs, names, bufs in zip(net.layers, net.sources, net.layer_param_names, net.layer_buffer_names):
        xs = [vals[j] for j in srcs]
        p = {k: params[n] for k, n in names.items()}
        x = xs[0]
        if m.kind == "linear":
            h = x @ p["W"].T + (p["b"] if "b" in p else 0)
        elif m.kind in TORCH_ACT:
            h = TORCH_ACT[m.kind](x)
        elif m.kind == "dropout":
            h = x * torch.as_tensor(masks[id(m)]) if masks.get(id(m)) is not None else x
        elif m.kind == "batch_norm":
            rm, rv = buffers[bufs["running_mean"]], buffers[bufs["running_var"]]
            h = F.batch_norm(x, rm, rv, p["gamma"], p["beta"], m.training, m.momentum, m.eps)
        elif m.kind == "layer_norm":
            h = F.layer_norm(x, (x.shape[1],), p["gamma"], p["beta"], m.eps)
        elif m.kind == "add":
            h = sum(xs[1:], xs[0])
        elif m.kind == "concat":
            h = torch.cat(xs, dim=1)
        elif m.kind == "embedding":
            h = F.embedding(torch.as_tensor(m.codes(np.asarray(x.detach()))), p["E"])
        elif m.kind == "select":
            h = x[:, m.columns]
        else:
            raise AssertionError(m.kind)
        vals.append(h)
    return vals[-1]


def torch_loss(net, params, X, y, masks, buffers=None):
    o = torch_forward(net, params, X, masks, buffers or {})
    w = net.loss_fn.class_weight
    if net.loss_name == "cross_entropy":
        per_row = F.cross_entropy(o, torch.as_tensor(y), reduction="none")
    else:
        t = F.one_hot(torch.as_tensor(y), o.shape[1]).double() if y.dtype.kind in "iu" else torch.as_tensor(y)
        per_row = 0.5 * ((o - t) ** 2).sum(dim=1)
    if w is not None:
        per_row = per_row * torch.as_tensor(w)[torch.as_tensor(y)]
    return per_row.mean()


def _masks(net):
    return {id(m): None if m.mask is None else m.mask.copy() for m in net.layers if m.kind == "dropout"}


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


CASES = list(range(36))


@pytest.mark.parametrize("case", CASES)
def test_random_graph_matches_torch(case):
    rng = np.random.default_rng(1000 + case)
    d, k = int(rng.integers(2, 5)), int(rng.integers(2, 4))
    loss = "cross_entropy" if case % 2 else "square"
    weights = rng.uniform(0.2, 3.0, k) if case % 3 == 0 else None
    net = Network.from_layers(
        random_layers(rng, d, depth=int(rng.integers(2, 5))), d, k, loss=loss, seed=case, class_weight=weights
    )
    for p in net.params.values():  # non-trivial γ, β and biases
        p += 0.3 * rng.normal(size=p.shape)
    training = case % 4 != 3
    if not training:
        net.eval()
        for name, b in net.buffers.items():
            b[...] = rng.uniform(0.5, 2.0, b.shape) if "var" in name else rng.normal(size=b.shape)
    n = int(rng.integers(3, 9))
    X = rng.normal(size=(n, d))
    y = rng.integers(0, k, n) if loss == "cross_entropy" or weights is not None else rng.normal(size=(n, k))
    v = {name: rng.normal(size=p.shape) for name, p in net.params.items()}
    with net.fixed_masks():
        J, g = net.loss_and_grad(X, y)
        masks = _masks(net)
        Hv = net.hvp(X, y, v)
        Gv = net.gnvp(X, y, v)
    params = {name: torch.tensor(p, requires_grad=True) for name, p in net.params.items()}
    buffers = {name: torch.tensor(b) for name, b in net.buffers.items()}
    J_t = torch_loss(net, params, X, y, masks, buffers)
    g_t = torch.autograd.grad(J_t, list(params.values()), create_graph=True)
    Hv_t = torch.autograd.grad(g_t, list(params.values()), [torch.as_tensor(v[name]) for name in params])
    assert J == pytest.approx(J_t.item(), rel=1e-10)
    flat = lambda ts: np.concatenate([t.detach().numpy().ravel() for t in ts])  # noqa: E731
    assert _rel(net.flatten(g), flat(g_t)) < 1e-9
    assert _rel(net.flatten(Hv), flat(Hv_t)) < 1e-8
    # Gauss-Newton: J_oᵀ H_L J_o v from torch's jvp of the output and the loss's Hessian in o
    o_fn = lambda *ps: torch_forward(net, dict(zip(params, ps)), X, masks, buffers)  # noqa: E731
    o, Jv = torch.func.jvp(
        o_fn, tuple(p.detach() for p in params.values()), tuple(torch.as_tensor(v[name]) for name in params)
    )
    o = o.detach().requires_grad_(True)
    lo = _loss_of_output(net, o, y)
    (go,) = torch.autograd.grad(lo, o, create_graph=True)
    (HJv,) = torch.autograd.grad(go, o, Jv)
    _, vjp = torch.func.vjp(o_fn, *(p.detach() for p in params.values()))
    assert _rel(net.flatten(Gv), flat(vjp(HJv))) < 1e-8


def _loss_of_output(net, o, y):
    w = net.loss_fn.class_weight
    if net.loss_name == "cross_entropy":
        per_row = F.cross_entropy(o, torch.as_tensor(y), reduction="none")
    else:
        t = F.one_hot(torch.as_tensor(y), o.shape[1]).double() if y.dtype.kind in "iu" else torch.as_tensor(y)
        per_row = 0.5 * ((o - t) ** 2).sum(dim=1)
    if w is not None:
        per_row = per_row * torch.as_tensor(w)[torch.as_tensor(y)]
    return per_row.mean()


def test_every_registered_activation_is_a_module():
    rng = np.random.default_rng(0)
    for name in ACTIVATIONS:
        if name not in TORCH_ACT:
            continue
        net = Network.from_layers([{"linear": 4}, name, "layer_norm"], 3, 2, loss="square", seed=1)
        X, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
        params = {k: torch.tensor(p, requires_grad=True) for k, p in net.params.items()}
        J_t = torch_loss(net, params, X, y, {})
        g_t = torch.autograd.grad(J_t, list(params.values()))
        J, g = net.loss_and_grad(X, y)
        assert J == pytest.approx(J_t.item(), rel=1e-12)
        for k, gt in zip(params, g_t):
            np.testing.assert_allclose(g[k], gt.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.1, 0.05])
def test_batch_norm_running_statistics_follow_torch_over_ten_steps(momentum):
    rng = np.random.default_rng(3)
    layers = [
        {"linear": 6},
        {"batch_norm": {"momentum": momentum}},
        "tanh",
        {"residual": ["batch_norm", {"linear": 6}]},
    ]
    net = Network.from_layers(layers, 4, 3, loss="cross_entropy", seed=2)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6, momentum=momentum), torch.nn.Tanh()
    ).double()
    block = torch.nn.Sequential(torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 6)).double()
    head = torch.nn.Linear(6, 3).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.as_tensor(net.params["W1"]))
        model[0].bias.copy_(torch.as_tensor(net.params["b1"]))
        block[1].weight.copy_(torch.as_tensor(net.params["W2"]))
        block[1].bias.copy_(torch.as_tensor(net.params["b2"]))
        head.weight.copy_(torch.as_tensor(net.params["W3"]))
        head.bias.copy_(torch.as_tensor(net.params["b3"]))
    tparams = [*model.parameters(), *block.parameters(), *head.parameters()]
    opt_t = torch.optim.SGD(tparams, lr=0.1)
    opt = SGD(net.params, 0.1)
    for _ in range(10):
        X, y = rng.normal(size=(8, 4)) * 3 + 1, rng.integers(0, 3, 8)
        net.train_step(X, y, opt)
        opt_t.zero_grad()
        h = model(torch.as_tensor(X))
        F.cross_entropy(head(h + block(h)), torch.as_tensor(y)).backward()
        opt_t.step()
    for name, t in [
        ("running_mean1", model[1].running_mean),
        ("running_var1", model[1].running_var),
        ("running_mean2", block[0].running_mean),
        ("running_var2", block[0].running_var),
    ]:
        np.testing.assert_allclose(net.buffers[name], t.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.params["gamma1"], model[1].weight.detach().numpy(), rtol=1e-10)
    net.eval()
    model.eval(), block.eval()
    X = rng.normal(size=(5, 4))
    h = model(torch.as_tensor(X))
    np.testing.assert_allclose(net.forward(X), (head(h + block(h))).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_dropout_in_training_mode_gradient_equals_central_differences_with_its_mask():
    rng = np.random.default_rng(4)
    layers = [{"linear": 7}, "tanh", {"dropout": 0.4}, {"residual": [{"linear": 7}, "sigmoid", {"dropout": 0.3}]}]
    net = Network.from_layers(layers, 3, 2, loss="cross_entropy", seed=5)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, 6)
    with net.fixed_masks():
        _, g = net.flat_grad(X, y)
        assert any((m.mask == 0).any() for m in net.layers if m.kind == "dropout")
        theta, eps = net.get_flat(), 1e-6
        num = np.empty_like(theta)
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = eps
            net.set_flat(theta + e)
            plus = net.loss(X, y)
            net.set_flat(theta - e)
            num[i] = (plus - net.loss(X, y)) / (2 * eps)
        net.set_flat(theta)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_dropout_masks_come_from_the_seeded_generator_and_its_saved_state():
    layers = [{"linear": 5}, "relu", {"dropout": 0.5}]
    X = np.random.default_rng(0).normal(size=(4, 3))
    a, b = (Network.from_layers(layers, 3, 2, seed=9) for _ in range(2))
    assert np.array_equal(a.forward(X), b.forward(X))
    state = a.generator.bit_generator.state
    first = a.forward(X)
    a.generator.bit_generator.state = state
    assert np.array_equal(a.forward(X), first)
    assert not np.array_equal(a.forward(X), first)  # a fresh mask
    np.testing.assert_array_equal(a.eval().forward(X), a.eval().forward(X))
