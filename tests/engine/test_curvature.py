"""Curvature over a data set: Gauss-Newton products against Jᵀ H_L J formed densely, Lanczos
eigenvalues against the dense Hessian's, Hutch++ traces against the exact trace over 20 seeds,
and the stochastic-Lanczos density (integral 1, mean = trace/n). All float64."""

from __future__ import annotations

import numpy as np
import pytest

import mlpbp
from helpers import ScaledTanh
from mlpbp import MLP, SGD
from mlpbp.engine.activations import ACTIVATIONS
from mlpbp.engine.curvature import Curvature, dense_limit, extreme_eigenvalues, hutchinson, spectral_density
from mlpbp.engine.losses import LOSSES


def _problem(activation, loss, widths=(5, 7, 6, 3), rows=30, seed=0, train_steps=0):
    rng = np.random.default_rng(seed)
    net = MLP(list(widths), activation, loss, seed=seed)
    for name, p in net.params.items():  # a generic point: non-zero biases
        if name.startswith("b"):
            p[...] = 0.1 * rng.standard_normal(p.shape)
    X = rng.standard_normal((rows, widths[0]))
    y = LOSSES[loss].example_targets(rng, rows, widths[-1])
    if train_steps:  # a trained network's spectrum: a few outliers over a bulk near zero
        opt = SGD(net.params, 0.05, momentum=0.9)
        for _ in range(train_steps):
            opt.step(net.loss_and_grad(X, y)[1])
    return net, X, y


def dense(op: Curvature) -> np.ndarray:
    """The n×n matrix, column by column, from products with unit vectors."""
    return np.column_stack([op.matvec(e) for e in np.eye(op.shape[0])])


def output_jacobian(net: MLP, X: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """∂o/∂θ for every row and output, (rows·outputs) × n, by central differences."""
    theta = net.get_flat()
    cols = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        net.set_flat(theta + e)
        plus = net.forward(X)
        net.set_flat(theta - e)
        cols.append(((plus - net.forward(X)) / (2 * h)).reshape(-1))
    net.set_flat(theta)
    return np.column_stack(cols)


def loss_output_hessian(net: MLP, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """H_L = ∂²J/∂o², block diagonal over rows: I/n (square), (diag p − ppᵀ)/n (softmax), or
    diagonal, ℓ''(oₖ, yₖ)/n, for an elementwise loss."""
    o = net.forward(X)
    n, c = o.shape
    if net.loss_name == "square":
        return np.eye(n * c) / n
    if net.loss_name != "cross_entropy":  # its ℓ'' is checked against differences in test_engine
        fn = net.loss_fn
        return np.diag(fn._d2(o, fn._target(o, y)).reshape(-1)) / n
    p = np.exp(o - o.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    H = np.zeros((n * c, n * c))
    for j in range(n):
        H[j * c : (j + 1) * c, j * c : (j + 1) * c] = (np.diag(p[j]) - np.outer(p[j], p[j])) / n
    return H


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gauss_newton_product_equals_dense_jt_hl_j_and_is_psd(activation, loss):
    net, X, y = _problem(activation, loss, widths=(4, 5, 3), rows=6)
    J = output_jacobian(net, X)
    G_ref = J.T @ loss_output_hessian(net, X, y) @ J
    G = dense(Curvature(net, X, y, "gauss_newton"))
    np.testing.assert_allclose(G, G_ref, rtol=1e-6, atol=1e-7 * np.abs(G_ref).max())
    assert np.linalg.eigvalsh(G).min() >= -1e-10 * np.abs(G).max()


@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_products_do_not_depend_on_the_batch_size_and_are_counted(kind):
    net, X, y = _problem("tanh", "cross_entropy", rows=23)
    v = np.random.default_rng(1).standard_normal(net.n_params)
    whole = Curvature(net, X, y, kind)
    parts = Curvature(net, X, y, kind, batch_size=4)  # 6 batches, the last of 3 rows
    np.testing.assert_allclose(parts.matvec(v), whole.matvec(v), rtol=1e-12, atol=1e-14)
    J, g = whole.loss_and_grad()
    J4, g4 = parts.loss_and_grad()
    assert J4 == pytest.approx(J, rel=1e-13) and J == pytest.approx(net.loss(X, y), rel=1e-13)
    np.testing.assert_allclose(g4, g, rtol=1e-12, atol=1e-14)
    parts.matvec(v)
    assert (parts.work.products, parts.work.gradients) == (2, 1)


@pytest.mark.parametrize("loss", sorted(n for n, cls in LOSSES.items() if not cls.curvature_free))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_lanczos_extremes_equal_the_dense_matrix_eigenvalues(activation, loss, kind):
    net, X, y = _problem(activation, loss, widths=(6, 9, 7, 3), rows=25)  # 157 parameters
    op = Curvature(net, X, y, kind)
    eig = np.linalg.eigvalsh(dense(op))
    found = extreme_eigenvalues(op.matvec, op.shape[0], top_k=3, bottom_k=1 if kind == "hessian" else 0, tol=1e-9)
    np.testing.assert_allclose(found.top, eig[::-1][:3], rtol=1e-6)
    if kind == "hessian":  # indefinite: its smallest eigenvalue is a well-separated negative one
        np.testing.assert_allclose(found.bottom, eig[:1], rtol=1e-6)
    assert max(found.residuals) <= 1e-9 and found.steps < op.shape[0]


@pytest.mark.parametrize(
    ("widths", "rows", "activation", "loss"),
    [
        ((6, 16, 16, 4), 60, "tanh", "cross_entropy"),  # 452 parameters, rank ≤ 180
        ((6, 16, 16, 4), 60, "relu", "square"),  # 452 parameters, rank ≤ 240
        ((5, 24, 3), 40, "tanh", "cross_entropy"),  # 219 parameters, rank ≤ 80
    ],
)
def test_the_smallest_gauss_newton_eigenvalue_of_a_null_space_is_found(widths, rows, activation, loss):
    """Issue 18: G = Jᵀ H_L J has rank at most rows × outputs, so about half its eigenvalues are
    0 here, with nonzero ones from 1e-7 to 1e-5 just above them. ARPACK with 20 vectors did not
    converge on the smallest in 300 products on these (restarts lose the cluster); Lanczos
    without restarts finds it, and as a Rayleigh-Ritz value of a PSD matrix it bounds it:
    0 ≤ λ_min ≤ θ."""
    net, X, y = _problem(activation, loss, widths=widths, rows=rows)
    op = Curvature(net, X, y, "gauss_newton")
    eig = np.linalg.eigvalsh(dense(op))
    assert (eig < 1e-12 * eig[-1]).sum() > 0.4 * op.shape[0]  # a null space, much of the matrix
    tol = 1e-6
    found = extreme_eigenvalues(op.matvec, op.shape[0], top_k=1, bottom_k=1, tol=tol, psd=True)
    assert found.shortfall is None and len(found.bottom) == 1
    assert eig[0] - 1e-12 <= found.bottom[0] <= eig[0] + tol * eig[-1]
    np.testing.assert_allclose(found.top, eig[-1:], rtol=1e-6)
    assert max(found.residuals) <= tol and found.steps < op.shape[0]


def _repeated_spectrum_problem():
    """A network whose Hessian repeats every eigenvalue: no hidden layer, square loss, and fewer
    rows than inputs. The loss is quadratic in (W, b), its Hessian c·AᵀA ⊗ I₃ with A = [X 1]
    (c > 0 the loss's scale), so each eigenvalue occurs 3 times (once per output), and
    3·(41 − 10) = 93 of the 123 are 0: a null space at the bottom of a matrix too large to be
    solved densely."""
    net, X, y = _problem("tanh", "square", widths=(40, 3), rows=10)
    return net, X, y


@pytest.mark.parametrize("k", [2, 4, 7])
def test_a_multiple_eigenvalue_is_counted_as_often_as_it_occurs(k):
    """Issue 18/19: a Krylov space from one vector holds one direction per eigenspace, so the
    smallest end reported the 93-fold 0 once and then the next distinct values (and ARPACK
    dropped copies of a repeated largest one). Each end must equal the dense Hessian's, copies
    included, or say that it does not."""
    net, X, y = _repeated_spectrum_problem()
    op = Curvature(net, X, y, "hessian")
    n = op.shape[0]
    eig = np.linalg.eigvalsh(dense(op))
    assert (np.abs(eig) < 1e-12).sum() == 93 and np.isclose(eig[-1], eig[-3], rtol=1e-9)
    assert n > dense_limit(k)  # the iterative path, not the dense one
    tol = 1e-8
    found = extreme_eigenvalues(op.matvec, n, top_k=k, bottom_k=k, tol=tol)
    assert found.shortfall is None
    np.testing.assert_allclose(found.top, eig[::-1][:k], rtol=0, atol=1e-6 * eig[-1])
    np.testing.assert_allclose(found.bottom, eig[:k], rtol=0, atol=1e-6 * eig[-1])
    assert len(found.residuals) == 2 * k and max(found.residuals) <= 10 * tol
    # a model this small is formed densely once the search has used n products: never ~3n
    assert found.steps <= 2 * n + 2 * k


def test_a_single_value_at_each_end_needs_no_search_for_copies():
    net, X, y = _repeated_spectrum_problem()
    op = Curvature(net, X, y, "hessian")
    eig = np.linalg.eigvalsh(dense(op))
    found = extreme_eigenvalues(op.matvec, op.shape[0], top_k=1, bottom_k=1, tol=1e-8)
    np.testing.assert_allclose(found.top + found.bottom, [eig[-1], eig[0]], rtol=0, atol=1e-6 * eig[-1])
    assert found.shortfall is None


def test_copies_of_a_repeated_value_in_a_synthetic_spectrum():
    """Both ends at once, of a matrix built from its eigenvalues: a double −1 at the bottom, a
    9-fold 0 above it, a 5-fold 7 at the top."""
    rng = np.random.default_rng(3)
    n = 200
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate([[-1.0, -1.0, -0.5], np.zeros(9), np.full(5, 7.0), rng.uniform(0.1, 5.0, n - 17)])
    A = (Q * lam) @ Q.T
    want = np.sort(lam)
    for k in (2, 4, 12):
        found = extreme_eigenvalues(lambda v: A @ v, n, top_k=min(k, 6), bottom_k=k, tol=1e-9)
        assert found.shortfall is None
        np.testing.assert_allclose(found.bottom, want[:k], rtol=0, atol=1e-7)
        np.testing.assert_allclose(found.top, want[::-1][: min(k, 6)], rtol=0, atol=1e-7)


def test_a_search_for_copies_that_does_not_settle_is_a_shortfall():
    """With too few steps for a tight cluster at the bottom, what is reported says so: never fewer
    values than asked for marked converged."""
    rng = np.random.default_rng(4)
    n = 300
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate([[-1.0, -1.0 + 1e-3], np.linspace(-0.999, 1.0, n - 2)])
    A = (Q * lam) @ Q.T
    found = extreme_eigenvalues(lambda v: A @ v, n, top_k=0, bottom_k=2, tol=1e-10, max_steps=60)
    assert found.shortfall is not None and len(found.bottom) <= 2


@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_lanczos_top_eigenvalues_of_a_2000_parameter_network(kind):
    net, X, y = _problem("tanh", "cross_entropy", widths=(20, 42, 20, 10), rows=40, train_steps=30)
    assert 1900 <= net.n_params <= 2000
    op = Curvature(net, X, y, kind, batch_size=16)
    eig = np.linalg.eigvalsh(dense(op))
    found = extreme_eigenvalues(op.matvec, op.shape[0], top_k=5, tol=1e-9)
    np.testing.assert_allclose(found.top, eig[::-1][:5], rtol=1e-6)


def test_asking_for_more_eigenvalues_than_parameters_is_an_error():
    with pytest.raises(ValueError, match="cannot ask for 12 eigenvalues of a 10×10"):
        extreme_eigenvalues(lambda v: v, 10, top_k=12)


@pytest.mark.parametrize(("activation", "loss"), [("softplus", "cross_entropy"), ("relu", "square")])
@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_trace_within_three_standard_errors_over_20_seeds(activation, loss, kind):
    """Hutch++ (the default): the exact trace within 3 reported standard errors for each of
    seeds 0-19; plain Hutchinson's errors scale with its standard errors too."""
    net, X, y = _problem(activation, loss, train_steps=100)
    op = Curvature(net, X, y, kind)
    exact = np.trace(dense(op))
    for method in ("hutchpp", "hutchinson"):
        z = []
        for seed in range(20):
            t = hutchinson(op.matvec, op.shape[0], probes=120, seed=seed, method=method)
            assert t.probes == 120 and t.std_error > 0
            z.append((t.estimate - exact) / t.std_error)
        if method == "hutchpp":
            assert np.all(np.abs(z) <= 3), np.round(z, 2)
        assert 0.5 < np.std(z) < 1.5, np.round(z, 2)  # neither far too wide nor too narrow error bars


@pytest.mark.parametrize(("activation", "loss"), [("tanh", "cross_entropy"), ("relu", "square")])
@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_density_integrates_to_one_and_its_mean_is_trace_over_n(activation, loss, kind):
    net, X, y = _problem(activation, loss, widths=(6, 10, 8, 3), rows=40, train_steps=200)
    op = Curvature(net, X, y, kind)
    n = op.shape[0]
    exact_mean = np.trace(dense(op)) / n
    for seed in range(3):
        d = spectral_density(op.matvec, n, probes=10, steps=30, deflate=20, seed=seed)
        assert np.trapezoid(d.values, d.grid) == pytest.approx(1.0, abs=1e-5)
        assert np.trapezoid(d.grid * d.values, d.grid) == pytest.approx(d.mean, rel=1e-4, abs=1e-9)
        assert d.mean == pytest.approx(exact_mean, rel=0.05)
        assert d.products == 20 + 10 * 30


class _ScaledSin(ScaledTanh):
    kind = "scaled_sin"


def test_a_module_without_r_passes_trains_and_checks_but_curvature_refuses_it_in_one_line(monkeypatch):
    from mlpbp.engine.graph import Network
    from mlpbp.errors import ArgumentError
    from mlpbp.tools.gradcheck import check_network

    monkeypatch.setitem(mlpbp.MODULES, "scaled_tanh", ScaledTanh)  # gradcheck copies the net by its graph
    x = mlpbp.Input(3)
    net = Network(x, mlpbp.Linear(2)(ScaledTanh()(mlpbp.Linear(4)(x))), loss="cross_entropy", seed=0)
    X, y = np.random.default_rng(0).normal(size=(8, 3)), np.arange(8) % 2
    before = net.loss(X, y)
    for _ in range(20):
        net.train_step(X, y, SGD(net.params, learning_rate=0.1))
    assert net.loss(X, y) < before
    report = check_network(net, X, y)
    assert report.ok and not [c for c in report.checks if c.kind == "hvp"]
    v = {k: np.ones_like(p) for k, p in net.params.items()}
    for product in (net.hvp, net.gnvp):
        with pytest.raises(ArgumentError) as e:
            product(X, y, v)
        assert str(e.value) == (
            "module 'scaled_tanh' has no R-operator passes (rforward, rbackward):"
            " Hessian and Gauss-Newton products need them"
        )
    x = mlpbp.Input(3)
    two = Network(x, mlpbp.Linear(2)(_ScaledSin()(ScaledTanh()(x))), loss="cross_entropy")
    with pytest.raises(ArgumentError, match="^modules 'scaled_sin', 'scaled_tanh' have no R-operator passes"):
        two.hvp(X, y, {k: np.ones_like(p) for k, p in two.params.items()})
