r"""Host (LAPACK/BLAS) linear algebra on one (n, n) array, in place.

The regressor's CPU path keeps exactly one (n, n) float64 array during ``fit``: the
symmetric kernel matrix :math:`K` is written into it, the lower triangle is overwritten
by the Cholesky factor :math:`L` of :math:`\hat K = K + \eta I`, and the strict upper
triangle still holds :math:`K` (LAPACK's ``potrf`` touches one triangle only). A failed
factorisation can therefore be retried with a larger jitter after
:func:`restore_lower`, without recomputing or copying the kernel.

Large matrices are factorised by :func:`cholesky_lower_inplace`'s left-looking blocked
algorithm: ``potrf`` only on ``block x block`` diagonal blocks, the O(n^3) work in GEMM
(``numpy.matmul`` on strided views, no copies) and ``trsm`` on panels. This sidesteps
OpenBLAS's multithreaded ``dpotrf`` on very large matrices, which crashed with SIGSEGV at
n = 20000 on the 2-core development machine (scipy-openblas 0.3.30; a 2-thread
``potrf`` crash at large n is also reported upstream, OpenBLAS issue #2562), and needs
only (n x block) temporaries.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas, lapack

__all__ = [
    "POTRF_MAX_N",
    "cholesky_lower_inplace",
    "restore_lower",
    "zero_strict_upper",
]

#: Largest n given to one LAPACK ``dpotrf`` call (verified up to n = 8000); above it the
#: blocked algorithm is used.
POTRF_MAX_N = 8192
_BLOCK = 512


def _check(kc: np.ndarray) -> None:
    if kc.ndim != 2 or kc.shape[0] != kc.shape[1] or kc.dtype != np.float64:
        raise ValueError(f"expected a square float64 matrix; got {kc.shape} {kc.dtype}.")
    if not kc.flags.c_contiguous:
        raise ValueError("expected a C-contiguous matrix (factorised in place).")


def cholesky_lower_inplace(kc: np.ndarray, *, block: int = 0) -> bool:
    r"""Overwrite the lower triangle of ``kc`` with :math:`L`, :math:`\hat K = LL^\top`.

    Only the lower triangle (diagonal included) is read and written; the strict upper
    triangle is left untouched. ``block = 0`` uses one ``dpotrf`` up to
    :data:`POTRF_MAX_N` and 512-column panels above; ``block > 0`` forces the blocked
    algorithm (left-looking, Golub & Van Loan Alg. 4.2.2 by panels):

    .. math::

        A_{J:,J} \leftarrow A_{J:,J} - L_{J:,<J} L_{J,<J}^\top,\quad
        L_{JJ} = \mathrm{chol}(A_{JJ}),\quad
        L_{>J,J} = A_{>J,J} L_{JJ}^{-\top}

    Returns
    -------
    bool
        False when :math:`\hat K` is not (numerically) positive definite; the lower
        triangle is then partly overwritten (see :func:`restore_lower`).
    """
    _check(kc)
    n = kc.shape[0]
    if block <= 0 and n <= POTRF_MAX_N:
        # the F-ordered transpose's upper factor U = L^T: no copy (overwrite_a on an F
        # array), and ``clean=0`` keeps the other triangle
        out, info = lapack.dpotrf(kc.T, lower=0, clean=0, overwrite_a=1)
        if not np.shares_memory(out, kc):  # pragma: no cover (f2py contract)
            kc.T[...] = out
        return info == 0
    b = block if block > 0 else _BLOCK
    tril = None
    for j in range(0, n, b):
        e = min(j + b, n)
        w = e - j
        panel = kc[j:, j:e]
        diag_blk = np.array(panel[:w])  # b x b copy (its strict upper is K, kept)
        if j:
            upd = kc[j:, :j] @ kc[j:e, :j].T  # GEMM on strided views
            diag_blk -= upd[:w]
            panel[w:] -= upd[w:]
            del upd
        low, info = lapack.dpotrf(diag_blk, lower=1, clean=1, overwrite_a=1)
        if info != 0 or not np.all(np.isfinite(np.diagonal(low))):
            return False
        if tril is None or tril[0].size != w * (w + 1) // 2:
            tril = np.tril_indices(w)
        panel[:w][tril] = low[tril]
        if e < n:
            # X L_JJ^T = A_{>J,J}  (trsm, right side, lower, transposed)
            panel[w:] = blas.dtrsm(1.0, low, panel[w:], side=1, lower=1, trans_a=1)
    return True


def restore_lower(kc: np.ndarray, diag: np.ndarray, *, block: int = 1024) -> None:
    """Copy the strict upper triangle onto the lower one and set the diagonal (undo a
    failed :func:`cholesky_lower_inplace` of a symmetric matrix)."""
    _check(kc)
    n = kc.shape[0]
    for i in range(0, n, block):
        e = min(i + block, n)
        kc[i:e, :i] = kc[:i, i:e].T
        blk = kc[i:e, i:e]
        low = np.tril_indices(e - i, -1)
        blk[low] = blk.T[low]
    kc[np.arange(n), np.arange(n)] = diag


def zero_strict_upper(kc: np.ndarray, *, block: int = 1024) -> None:
    """Set the strict upper triangle to zero in place (row blocks, no (n, n) temporaries)."""
    _check(kc)
    n = kc.shape[0]
    for i in range(0, n, block):
        e = min(i + block, n)
        kc[i:e, e:] = 0.0
        blk = kc[i:e, i:e]
        blk[np.triu_indices(e - i, 1)] = 0.0
