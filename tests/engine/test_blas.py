"""mlpbp.engine.blas: every product of the engine, through SciPy's BLAS on NumPy's C-ordered
arrays, against NumPy's own products (float64 to 1e-12, float32 to 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbp.engine import blas

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _layouts(M: np.ndarray) -> list[np.ndarray]:
    """The same values C-ordered, Fortran-ordered and as a strided (non-contiguous) view."""
    wide = np.zeros((M.shape[0], 2 * M.shape[1]), M.dtype)
    wide[:, ::2] = M
    return [M, np.asfortranarray(M), wide[:, ::2]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
# (m, k, n): one row, one column and a single term go to gemv/ger instead of gemm.
@pytest.mark.parametrize("shape", [(5, 7, 3), (1, 9, 4), (6, 1, 2), (4, 3, 1), (1, 5, 1), (1, 1, 3)])
def test_matmul_is_alpha_ab_plus_beta_out_for_every_layout(dtype, shape):
    m, k, n = shape
    rng = np.random.default_rng(0)
    A0, B0 = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    C0 = rng.normal(size=(m, n)).astype(dtype)
    for A in _layouts(A0):
        for B in [*_layouts(B0), B0.T.copy().T]:
            out = np.full((m, n), np.nan, dtype)  # beta = 0: the old contents are never read
            assert blas.matmul(A, B, out) is out
            np.testing.assert_allclose(out, A0 @ B0, rtol=TOL[dtype], atol=TOL[dtype])
            for beta in (1.0, 0.5):
                out = C0.copy()
                blas.matmul(A, B, out, alpha=-0.5, beta=beta)
                np.testing.assert_allclose(out, beta * C0 - 0.5 * (A0 @ B0), rtol=TOL[dtype], atol=TOL[dtype])


def test_matmul_with_nothing_to_sum_or_no_rows():
    out = np.ones((2, 3))
    blas.matmul(np.ones((2, 0)), np.ones((0, 3)), out)
    np.testing.assert_array_equal(out, np.zeros((2, 3)))
    out = np.full((2, 3), 4.0)
    blas.matmul(np.ones((2, 0)), np.ones((0, 3)), out, beta=0.5)
    np.testing.assert_array_equal(out, np.full((2, 3), 2.0))
    assert blas.matmul(np.ones((0, 4)), np.ones((4, 3)), np.empty((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rank_one_update_column_sums_and_axpy_update_in_place(dtype):
    rng = np.random.default_rng(1)
    A0, x, y = (rng.normal(size=s).astype(dtype) for s in ((4, 6), 4, 6))
    A = A0.copy()
    blas.add_outer(x, y, A, alpha=0.25)
    np.testing.assert_allclose(A, A0 + 0.25 * np.outer(x, y), rtol=TOL[dtype])
    M, b0 = rng.normal(size=(5, 3)).astype(dtype), rng.normal(size=3).astype(dtype)
    b = b0.copy()
    blas.add_column_sums(M, b, np.ones(5, dtype), alpha=-2.0)
    np.testing.assert_allclose(b, b0 - 2.0 * M.sum(axis=0), rtol=TOL[dtype])
    blas.add_column_sums(M[:0], b, np.ones(0, dtype))  # no rows: unchanged
    np.testing.assert_allclose(b, b0 - 2.0 * M.sum(axis=0), rtol=TOL[dtype])
    b = b0.copy()
    blas.add_column_sums(M, b, np.ones(5, dtype), beta=0.5)  # out := β·out + Σ rows
    np.testing.assert_allclose(b, 0.5 * b0 + M.sum(axis=0), rtol=TOL[dtype])
    blas.add_column_sums(M[:0], b, np.ones(0, dtype), beta=0.5)
    np.testing.assert_allclose(b, 0.25 * b0 + 0.5 * M.sum(axis=0), rtol=TOL[dtype])
    p = A0.copy()
    blas.axpy(3.0, A0, p)
    np.testing.assert_allclose(p, 4.0 * A0, rtol=TOL[dtype])
    q = np.asfortranarray(A0)  # not C-contiguous: updated all the same
    blas.axpy(3.0, A0, q)
    np.testing.assert_allclose(q, 4.0 * A0, rtol=TOL[dtype])
