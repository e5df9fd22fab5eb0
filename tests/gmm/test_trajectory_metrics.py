"""Tests of gmm.metrics against brute force and scipy."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from gmm.metrics import calibration_coverage, min_ade, min_fde, miss_rate, nll


def _random_case(seed=0, n=5, k=3, t=4):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, t, 2))
    modes = rng.normal(size=(n, k, t, 2))
    w = rng.dirichlet(np.ones(k), size=n)
    A = rng.normal(size=(n, k, t, 2, 2))
    cov = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(2)
    return y, modes, w, cov


def test_ade_fde_miss_rate_brute_force():
    y, modes, _, _ = _random_case()
    ade = [
        min(np.mean([np.hypot(*(modes[i, k, t] - y[i, t])) for t in range(4)]) for k in range(3))
        for i in range(5)
    ]
    fde = [min(np.hypot(*(modes[i, k, -1] - y[i, -1])) for k in range(3)) for i in range(5)]
    np.testing.assert_allclose(min_ade(y, modes), np.mean(ade), rtol=1e-12)
    np.testing.assert_allclose(min_fde(y, modes, reduce=False), fde, rtol=1e-12)
    assert miss_rate(y, modes, threshold=1.0) == np.mean(np.asarray(fde) > 1.0)
    # a single mode given as (N, T, 2) is the K = 1 case
    np.testing.assert_allclose(min_ade(y, modes[:, 0]), min_ade(y, modes[:, :1]))


@pytest.mark.parametrize("per", ["step", "trajectory"])
def test_nll_matches_scipy(per):
    y, modes, w, cov = _random_case(1)
    total = 0.0
    for i in range(5):
        if per == "step":
            for t in range(4):
                p = sum(
                    w[i, k] * multivariate_normal(modes[i, k, t], cov[i, k, t]).pdf(y[i, t])
                    for k in range(3)
                )
                total -= np.log(p) / 20
        else:
            p = sum(
                w[i, k]
                * np.prod(
                    [
                        multivariate_normal(modes[i, k, t], cov[i, k, t]).pdf(y[i, t])
                        for t in range(4)
                    ]
                )
                for k in range(3)
            )
            total -= np.log(p) / 5
    np.testing.assert_allclose(nll(y, w, modes, cov, per=per), total, rtol=1e-10)


def test_coverage_of_calibrated_gaussians():
    rng = np.random.default_rng(2)
    n = 20_000
    A = rng.normal(size=(n, 1, 3, 2, 2))
    cov = A @ np.swapaxes(A, -1, -2) + 0.05 * np.eye(2)
    L = np.linalg.cholesky(cov[:, 0])
    y = np.einsum("ntij,ntj->nti", L, rng.normal(size=(n, 3, 2)))
    r = calibration_coverage(y, np.zeros((n, 1, 3, 2)), cov, levels=(1.0, 2.0, 3.0))
    np.testing.assert_allclose(r.expected, 1 - np.exp(-np.array([1, 4, 9]) / 2))
    # binomial std of a coverage over 60 000 draws <= 0.002; 0.01 is 5 sigma
    np.testing.assert_allclose(r.coverage, r.expected, atol=0.01)
    # overconfident covariances (x 1/4) must under-cover
    assert calibration_coverage(y, np.zeros((n, 1, 3, 2)), cov / 4).coverage[0] < 0.2


def test_metric_errors():
    y, modes, w, cov = _random_case()
    with pytest.raises(ValueError, match="modes must have shape"):
        min_ade(y, modes[:, :, :3])
    with pytest.raises(ValueError, match="future must have shape"):
        min_fde(y[..., 0], modes)
    with pytest.raises(ValueError, match="NaN"):
        min_ade(np.where(y > 1, np.nan, y), modes)
    with pytest.raises(ValueError, match="sum to one"):
        nll(y, w * 2, modes, cov)
    with pytest.raises(ValueError, match="positive definite"):
        nll(y, w, modes, -cov)
    with pytest.raises(ValueError, match="threshold"):
        miss_rate(y, modes, threshold=0.0)


def test_singular_covariance_raises():
    y, modes, w, cov = _random_case()
    with pytest.raises(ValueError, match="positive definite"):
        nll(y, w, modes, np.zeros_like(cov))


@pytest.mark.parametrize("rho", [0.5, 1 - 1e-6, 1 - 1e-10])
def test_mixture_density_gradients_near_singular_covariances(rho):
    """The forecaster's loss differentiates GaussianMixture's Cholesky form; integrated
    covariances of turning agents can be nearly singular. Gradients w.r.t. the mean must
    stay finite and equal Sigma^{-1} (y - mu) (conditioning ~ 1 / (1 - rho))."""
    import jax
    import jax.numpy as jnp

    from gmm._trajectory_mixture import step_mixture
    from mixtures.base import x64_scope

    cov = np.array([[4.0, 2.0 * rho], [2.0 * rho, 1.0]])
    y = np.array([[0.3, -0.2]])
    with x64_scope():

        def log_density(mu):
            gm = step_mixture(jnp.ones(1), mu[None, None], jnp.asarray(cov)[None, None])
            return gm.component_log_prob(jnp.asarray(y)).sum()

        g = np.asarray(jax.grad(log_density)(jnp.zeros(2)))
    want = np.linalg.solve(cov, y[0])
    assert np.all(np.isfinite(g))
    # relative accuracy ~ cond(Sigma) * eps
    np.testing.assert_allclose(g, want, rtol=1e-15 * 10 / (1 - rho) + 1e-12)
