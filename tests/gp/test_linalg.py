"""In-place host linear algebra (gp._linalg) and tiled kernels against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from gp import ScaleMixtureNNGPRegressor
from gp._linalg import cholesky_lower_inplace, restore_lower, zero_strict_upper
from gp.kernels import preset_kernel, rectangular_kernel_matrix, symmetric_kernel_matrix
from mixtures.base import x64_scope


def _spd(n, seed=0):
    g = np.random.RandomState(seed).randn(n, n)
    return g @ g.T / n + 0.5 * np.eye(n)


@pytest.mark.parametrize(("n", "block"), [(57, 0), (57, 8), (130, 32), (130, 130)])
def test_inplace_cholesky_equals_numpy_and_keeps_upper(n, block):
    k = _spd(n)
    kc = k.copy()
    assert cholesky_lower_inplace(kc, block=block)
    # LAPACK dpotrf / blocked GEMM+trsm vs NumPy's Cholesky: same factor to rounding
    np.testing.assert_allclose(np.tril(kc), np.linalg.cholesky(k), atol=1e-13)
    np.testing.assert_array_equal(np.triu(kc, 1), np.triu(k, 1))  # never touched
    restore_lower(kc, np.diag(k).copy())
    np.testing.assert_array_equal(kc, k)
    assert cholesky_lower_inplace(kc, block=block)
    zero_strict_upper(kc)
    np.testing.assert_array_equal(np.triu(kc, 1), 0.0)


@pytest.mark.parametrize("block", [0, 8])
def test_not_positive_definite_is_reported(block):
    k = np.ones((40, 40))  # rank 1
    k[5, 5] = 0.5
    assert not cholesky_lower_inplace(k.copy(), block=block)


def test_tiled_kernels_equal_one_call():
    rs = np.random.RandomState(0)
    x, xt = rs.randn(30, 2), rs.randn(13, 2)
    with x64_scope():

        def fn(a, b):
            return preset_kernel(a, b, 1.5, 0.05)

        full = np.asarray(fn(np.concatenate([x, xt]), None))
        sym = symmetric_kernel_matrix(fn, x, block_size=8)
        rect = rectangular_kernel_matrix(fn, xt, x, block_size=8)
    # tiling re-partitions the same float64 arithmetic; exact symmetry by mirroring
    np.testing.assert_allclose(sym, full[:30, :30], rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(sym, sym.T)
    np.testing.assert_allclose(rect, full[30:, :30], rtol=1e-13, atol=1e-14)


def test_jitter_retry_restores_the_kernel():
    # duplicated inputs and a tiny relative noise: the first factorisation may fail; the
    # retry (x10 jitter) works on the restored K, so the fit equals a direct fit at the
    # noise actually used
    x = np.repeat(np.linspace(-1, 1, 10)[:, None], 3, axis=0)
    y = np.sin(3 * x[:, 0])
    reg = ScaleMixtureNNGPRegressor(noise=1e-17, b_std=0.0, optimizer=None).fit(x, y)
    assert reg.noise_ > 1e-17  # at least one retry happened (the path under test)
    ref = ScaleMixtureNNGPRegressor(noise=reg.noise_, b_std=0.0, optimizer=None).fit(x, y)
    np.testing.assert_allclose(reg.log_marginal_likelihood_, ref.log_marginal_likelihood_)
    np.testing.assert_allclose(reg.chol_, ref.chol_)
