"""Defect 3: extreme eigenvalues keep O(k) vectors of n (ARPACK's restarted Lanczos), not one
per step, and `mlpbp hessian` checks its memory before it allocates any of it."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from helpers import ROOT
from mlpbp.cli import app
from mlpbp.engine import memory
from mlpbp.engine.curvature import extreme_eigenvalues, krylov_vectors
from mlpbp.run.model_file import load_model
from mlpbp.tools.hessian import HessianOptions, hessian_bytes

MODEL, ROWS = ROOT / "tests" / "fixtures" / "v0.1-iris-model.npz", ROOT / "tests" / "fixtures" / "iris-rows.csv"


def test_extreme_eigenvalues_of_a_large_operator_keep_a_few_vectors():
    n = 200_000
    rng = np.random.default_rng(4)
    spectrum = np.concatenate([[9.0, 7.5, -6.0], rng.uniform(-1.0, 1.0, n - 3)])  # separated ends

    def matvec(v):
        return spectrum * v

    tracemalloc.start()
    try:
        found = extreme_eigenvalues(matvec, n, top_k=2, bottom_k=1, tol=1e-8, max_steps=2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(found.top, [9.0, 7.5], rtol=1e-8)
    np.testing.assert_allclose(found.bottom, [-6.0], rtol=1e-8)
    assert max(found.residuals) <= 1e-8
    # The old full-reorthogonalisation Lanczos kept one vector per step (max_steps of them).
    assert found.steps > 2 * krylov_vectors(2)
    assert peak < 3 * krylov_vectors(2) * n * 8, (peak, found.steps)


def test_memory_estimate_grows_with_what_is_asked_and_covers_the_vectors():
    widths = [784, 2048, 1024, 256, 10]
    n = memory.n_params(widths)
    eig = hessian_bytes(widths, 1000, HessianOptions(top_k=2))
    assert krylov_vectors(2) * n * 8 < eig < 2 * krylov_vectors(2) * n * 8 + 10**9
    density = hessian_bytes(widths, 1000, HessianOptions(top_k=2, density=True, slq_steps=60))
    assert density > eig and density >= 80 * n * 8


def test_hessian_refuses_before_allocating_when_memory_is_short(runner, monkeypatch):
    widths = load_model(MODEL).net.widths
    need = hessian_bytes(widths, 15, HessianOptions())
    monkeypatch.setattr(memory, "available_bytes", lambda: need - 1)
    res = runner.invoke(app, ["hessian", str(MODEL), str(ROWS)])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "the hessian analysis of" in res.stderr and "43 parameters" in res.stderr
    monkeypatch.setattr(memory, "available_bytes", lambda: need)
    assert runner.invoke(app, ["hessian", str(MODEL), str(ROWS)]).exit_code == 0


@pytest.mark.parametrize("k", [1, 3])
def test_small_operators_are_diagonalised_densely(k):
    A = np.random.default_rng(k).standard_normal((30, 30))
    A = A + A.T
    found = extreme_eigenvalues(lambda v: A @ v, 30, top_k=k, bottom_k=k)
    eig = np.linalg.eigvalsh(A)
    np.testing.assert_allclose(found.top, eig[::-1][:k], rtol=1e-12)
    np.testing.assert_allclose(found.bottom, eig[:k], rtol=1e-12)
    assert found.steps == 30 + 2 * k  # n products for the matrix, one per residual
