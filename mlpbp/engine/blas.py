"""Every matrix product of the engine, through one BLAS: SciPy's.

NumPy and SciPy each ship their own OpenBLAS, and each OpenBLAS keeps its own thread pool whose
workers spin for a while after every call. A step that alternates between the two pools at 2
threads on 2 cores runs the pools against each other: alternating calls were several times
slower than either pool alone (benchmarks/README.md, "Decisions in the code"). SciPy's BLAS is the one that can
also say what NumPy cannot (C := αAB + βC in place, the rank-1 update A += αxyᵀ), so the layers
call it for everything and NumPy's pool stays asleep during training.

Arrays are NumPy's usual C-ordered rows; BLAS is Fortran-ordered. A C-ordered M is the
Fortran-ordered Mᵀ in the same memory, so C = AB is computed as Cᵀ = BᵀAᵀ on the same buffers,
with no copies.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

_ROUTINES = {
    np.dtype(t): tuple(getattr(blas, p + name) for name in ("gemm", "ger", "gemv", "axpy"))
    for t, p in ((np.float32, "s"), (np.float64, "d"))
}

#: BLAS axpy (y += a·x, called ``AXPY[dtype](x, y, a=a)``) on flat contiguous vectors of that
#: dtype, without ``axpy``'s checks: for loops that made their flat views once (AdamW on a
#: 256-wide bias spends more in calls than in arithmetic). It writes into y itself for such y.
AXPY = {dtype: routines[3] for dtype, routines in _ROUTINES.items()}


def _fortran_transposed(M: np.ndarray) -> tuple[np.ndarray, int]:
    """(F, t): a Fortran-ordered array F in M's memory and the flag t such that op_t(F) = Mᵀ."""
    if M.flags.c_contiguous:
        return M.T, 0
    if M.flags.f_contiguous:
        return M, 1
    return np.ascontiguousarray(M).T, 0


def _land(result: np.ndarray, target: np.ndarray) -> None:
    """BLAS wrote into ``target`` unless f2py had to copy it (another dtype or layout): f2py
    hands back the very array it was given when it wrote in place. (An identity test, not a
    comparison of data pointers: ``.ctypes.data`` costs ~1 µs, a third of a small product.)"""
    if result is not target:
        target[...] = result


def matmul(A: np.ndarray, B: np.ndarray, out: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """out := α·A B + β·out in place, for 2-D arrays (``out`` C-ordered; with β = 0 its old
    contents are never read). Returns ``out``."""
    if out.size == 0 or A.shape[1] == 0:  # no rows, or an empty sum: BLAS wrappers refuse size 0
        if beta == 0.0:
            out.fill(0)
        else:
            out *= beta
        return out
    if out.shape[0] == 1 or out.shape[1] == 1 or A.shape[1] == 1:
        return _matvec(A, B, out, alpha, beta)
    gemm = _ROUTINES[out.dtype][0]
    P, trans_a = _fortran_transposed(B)
    Q, trans_b = _fortran_transposed(A)
    outT = out.T
    _land(gemm(alpha, P, Q, beta=beta, c=outT, trans_a=trans_a, trans_b=trans_b, overwrite_c=1), outT)
    return out


def _matvec(A: np.ndarray, B: np.ndarray, out: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``matmul`` when one of its dimensions is 1, by gemv or ger: OpenBLAS's gemm packs both
    operands even then, an order of magnitude slower than gemv at batch 1 (benchmarks/README.md,
    "Decisions in the code")."""
    gemv = _ROUTINES[out.dtype][2]
    if out.shape[0] == 1:  # a row: outᵀ = Bᵀ aᵀ
        M, trans = _fortran_transposed(B)  # op_trans(M) = Bᵀ
        x, y = A.reshape(-1), out.reshape(-1)
    elif out.shape[1] == 1:  # a column: out = A b
        M, trans = _fortran_transposed(A)  # op_trans(M) = Aᵀ, so op_(1 - trans)(M) = A
        trans, x, y = 1 - trans, B.reshape(-1), out.reshape(-1)
    else:  # an outer product of a column and a row
        if beta == 0.0:
            out.fill(0)
        elif beta != 1.0:
            out *= beta
        add_outer(A.reshape(-1), B.reshape(-1), out, alpha)
        return out
    _land(gemv(alpha, M, x, beta=beta, y=y, overwrite_y=1, trans=trans), y)
    return out


def gemv(M: np.ndarray, x: np.ndarray, y: np.ndarray, alpha: float = 1.0, beta: float = 0.0, transpose: bool = False):
    """y := α·M x + β·y in place (α·Mᵀ x with ``transpose``), for a C-ordered M and contiguous
    vectors: the one call a product at batch 1 needs, without ``matmul``'s checks."""
    _land(_ROUTINES[y.dtype][2](alpha, M.T, x, beta=beta, y=y, overwrite_y=1, trans=0 if transpose else 1), y)


def add_outer(x: np.ndarray, y: np.ndarray, A: np.ndarray, alpha: float = 1.0) -> None:
    """A += α·x yᵀ in place (BLAS ger), for a C-ordered A: its Fortran view Aᵀ gets α·y xᵀ."""
    ger = _ROUTINES[A.dtype][1]
    AT = A.T
    _land(ger(alpha, y, x, a=AT, overwrite_a=1), AT)


def add_column_sums(M: np.ndarray, out: np.ndarray, ones: np.ndarray, alpha: float = 1.0, beta: float = 1.0) -> None:
    """out := β·out + α·Σⱼ M[j] (the column sums of a C-ordered M, as Mᵀ·1 by BLAS gemv) in
    place; ``ones`` is a vector of M.shape[0] ones the caller keeps."""
    if M.shape[0] == 0:
        out *= beta
        return
    gemv = _ROUTINES[out.dtype][2]
    _land(gemv(alpha, M.T, ones, beta=beta, y=out, overwrite_y=1), out)


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """y += a·x in place, in one pass when y is contiguous (NumPy would need a temporary for a·x)."""
    if not y.flags.c_contiguous:  # reshape would copy, and BLAS would update the copy
        y += a * np.asarray(x, y.dtype)
        return
    flat = y.reshape(-1)  # a view
    _land(_ROUTINES[y.dtype][3](np.asarray(x, y.dtype).reshape(-1), flat, a=a), flat)
