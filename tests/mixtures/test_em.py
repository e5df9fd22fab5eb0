"""The EM engine (mixtures.em) against scikit-learn, scipy and brute force."""

import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from mixtures import GaussianMixture, GaussianMixtureParams, e_step, fit_em, m_step
from mixtures.base import x64_scope
from mixtures.distributions import vech_features
from mixtures.em import fit_em_blocks, log_joint_blocks, make_mesh, to_blocks
from mixtures.niw import NIWPrior, default_prior


def _init(X, K, covariance_type, seed=0):
    rng = np.random.default_rng(seed)
    weights = np.full(K, 1.0 / K)
    means = X[rng.choice(len(X), K, replace=False)]
    cov = {
        "full": np.stack([np.cov(X.T)] * K),
        "diag": np.stack([X.var(0)] * K),
        "spherical": np.full(K, X.var()),
    }[covariance_type]
    prec = np.linalg.inv(cov) if covariance_type == "full" else 1.0 / cov
    return weights, means, cov, prec


def _blobs(k=3, d=3, n=60, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, d))
    X = np.concatenate([rng.normal(c, 1.0, (n, d)) for c in centres])
    return X, np.repeat(np.arange(k), n)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
@pytest.mark.parametrize("max_iter", [1, 50])
def test_em_steps_equal_sklearn(covariance_type, max_iter):
    X = load_iris().data
    weights, means, cov, prec = _init(X, 3, covariance_type)
    sk = SkGaussianMixture(
        3,
        covariance_type=covariance_type,
        max_iter=max_iter,
        tol=1e-10,
        weights_init=weights,
        means_init=means,
        precisions_init=prec,
    )
    if max_iter == 1:
        with pytest.warns(Warning):
            sk.fit(X)
    else:
        sk.fit(X)
    res = fit_em(
        X,
        GaussianMixtureParams(weights, means, cov),
        covariance_type=covariance_type,
        max_iter=max_iter,
        tol=1e-10,
    )
    # Same float64 algorithm up to summation order (the engine's GEMM form on centred
    # data): ~1e-12 relative after one step; EM is a contraction near the optimum, so
    # 50 steps stay within 1e-8.
    tol = 1e-10 if max_iter == 1 else 1e-7
    np.testing.assert_allclose(res.params.weights, sk.weights_, rtol=tol, atol=tol)
    np.testing.assert_allclose(res.params.means, sk.means_, rtol=tol, atol=tol)
    np.testing.assert_allclose(res.params.covariances, sk.covariances_, rtol=tol, atol=tol)
    np.testing.assert_allclose(float(res.lower_bound), sk.lower_bound_, rtol=1e-10)
    assert int(res.n_iter) == sk.n_iter_


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_one_e_and_m_step_equal_sklearn(covariance_type):
    X = load_iris().data
    weights, means, cov, prec = _init(X, 3, covariance_type, seed=1)
    sk = SkGaussianMixture(3, covariance_type=covariance_type, reg_covar=1e-4)
    sk.weights_, sk.means_, sk.covariances_ = weights, means, cov
    sk.precisions_cholesky_ = np.linalg.cholesky(prec) if covariance_type == "full" else prec**0.5
    ll_sk, log_resp_sk = sk._e_step(X)
    with x64_scope():
        log_resp, ll = e_step(X, GaussianMixtureParams(weights, means, cov), covariance_type)
        w, m, c = m_step(X, np.exp(log_resp_sk), 1e-4, covariance_type)
    sk._m_step(X, log_resp_sk)
    np.testing.assert_allclose(np.asarray(log_resp), log_resp_sk, rtol=1e-10, atol=1e-10)
    assert float(ll) == pytest.approx(ll_sk, rel=1e-12)
    np.testing.assert_allclose(np.asarray(w), sk.weights_, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(m), sk.means_, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(c), sk.covariances_, rtol=1e-10)


def test_em_lower_bound_never_decreases():
    X = load_iris().data
    weights, means, cov, _ = _init(X, 4, "full", seed=3)
    res = fit_em(X, GaussianMixtureParams(weights, means, cov), max_iter=200, tol=1e-12)
    lb = np.asarray(res.lower_bounds)[: int(res.n_iter)]
    # EM's monotonicity theorem; allow float64 rounding of a mean over 150 points
    assert np.all(np.diff(lb) > -1e-12)
    assert np.all(np.isnan(np.asarray(res.lower_bounds)[int(res.n_iter) :]))


def test_all_labelled_gives_the_per_class_map():
    X, y = _blobs(k=3, d=3, n=50)
    prior = default_prior(X)
    n, d = X.shape
    init = GaussianMixtureParams(np.full(3, 1 / 3), X[[0, 60, 120]], np.stack([np.eye(d)] * 3))
    res = fit_em(X, init, y=y, prior=prior, reg_covar=0.0, max_iter=3)
    for k in range(3):
        xk = X[y == k]
        nk, xbar = len(xk), xk.mean(0)
        dm = xbar - prior.mean
        want_mu = (nk * xbar + prior.kappa * prior.mean) / (nk + prior.kappa)
        want_cov = (
            prior.psi
            + (nk - 1) * np.cov(xk.T)
            + prior.kappa * nk / (prior.kappa + nk) * np.outer(dm, dm)
        ) / (prior.nu + nk + d + 2)
        np.testing.assert_allclose(res.params.means[k], want_mu, rtol=1e-10)
        np.testing.assert_allclose(res.params.covariances[k], want_cov, rtol=1e-9)
    # with every sample labelled the first M-step reaches the fixed point: the bound at the
    # initial parameters, then twice the same bound (converged at the third E-step)
    assert int(res.n_iter) == 3
    assert res.lower_bounds[1] == res.lower_bounds[2]


def test_hard_assignment_is_classification_em():
    X, _ = _blobs(k=3, d=2, n=40, seed=4, spread=2.0)
    w0, m0, c0, _ = _init(X, 3, "full", seed=2)
    res = fit_em(X, GaussianMixtureParams(w0, m0, c0), assignment="hard", max_iter=1)
    # brute force: every sample to its most probable component, then ML estimates
    logp = np.stack(
        [np.log(w0[k]) + multivariate_normal(m0[k], c0[k]).logpdf(X) for k in range(3)], 1
    )
    z = logp.argmax(1)
    assert float(res.lower_bound) == pytest.approx(logp.max(1).mean(), rel=1e-10)
    for k in range(3):
        xk = X[z == k]
        np.testing.assert_allclose(res.params.weights[k], len(xk) / len(X), rtol=1e-12)
        np.testing.assert_allclose(res.params.means[k], xk.mean(0), rtol=1e-10)
        want = np.cov(xk.T, bias=True) + 1e-6 * np.eye(2)
        np.testing.assert_allclose(res.params.covariances[k], want, rtol=1e-9)


def test_ml_prior_limit_and_weights_equal_sklearn_on_soft_statistics():
    """kappa0 = 0, nu0 = -(D+2), Psi0 = 0 is the maximum-likelihood limit of the NIW MAP."""
    X, _ = _blobs()
    w0, m0, c0, _ = _init(X, 3, "full")
    d = X.shape[1]
    ml = NIWPrior(np.zeros(d), 0.0, -(d + 2.0), np.zeros((d, d)))
    a = fit_em(X, GaussianMixtureParams(w0, m0, c0), prior=ml, max_iter=5, tol=0.0)
    b = fit_em(X, GaussianMixtureParams(w0, m0, c0), max_iter=5, tol=0.0)
    for u, v in zip(a.params, b.params):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_quadratic_coefficients_and_blocked_log_joint_match_scipy():
    rng = np.random.default_rng(5)
    d, k = 4, 3
    X = rng.normal(0, 2, (37, d))
    means = rng.normal(0, 2, (k, d))
    A = rng.normal(size=(k, d, d))
    covs = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(d)
    w = np.array([0.2, 0.3, 0.5])
    want = np.stack(
        [np.log(w[j]) + multivariate_normal(means[j], covs[j]).logpdf(X) for j in range(k)], 1
    )
    with x64_scope():
        coef, const = GaussianMixture(w, means, covs).quadratic_coefficients()
        direct = np.asarray(vech_features(jnp.asarray(X)) @ coef + const)
        data = to_blocks(X, n_components=k, center=False)
        lj = log_joint_blocks(data, GaussianMixtureParams(w, means, covs))
    blocked = np.asarray(lj).reshape(-1, k)[: len(X)]
    # the vech(x x^T) form sums O(D^2) float64 terms of size |x|^2 |Lambda| ~ 1e2
    np.testing.assert_allclose(direct, want, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(blocked, want, rtol=1e-10, atol=1e-9)
    for cov_type, c in (("diag", np.ones((k, d)) * 1.7), ("spherical", np.array([0.5, 1, 2.0]))):
        with x64_scope():
            gm = GaussianMixture(w, means, c, cov_type)
            coef, const = gm.quadratic_coefficients()
            got = np.asarray(vech_features(jnp.asarray(X)) @ coef + const)
            ref = np.asarray(gm.log_weights + gm.component_log_prob(jnp.asarray(X)))
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)


def test_second_fit_compiles_nothing(compile_counter):
    X, _ = _blobs()
    w0, m0, c0, _ = _init(X, 3, "full")
    fit_em(X, GaussianMixtureParams(w0, m0, c0), max_iter=20)
    with compile_counter() as n:
        # continuous hyperparameters and the data values are traced
        fit_em(X * 2.0, GaussianMixtureParams(w0, m0 * 2, c0 * 4), max_iter=20, tol=1e-6,
               reg_covar=1e-3)  # fmt: skip
    assert n[0] == 0


def test_errors_name_the_remedy():
    X, _ = _blobs()
    w0, m0, c0, _ = _init(X, 3, "full")
    with pytest.raises(ValueError, match="covariance_type"):
        fit_em(X, GaussianMixtureParams(w0, m0, c0), covariance_type="tied")
    with pytest.raises(ValueError, match="assignment"):
        fit_em(X, GaussianMixtureParams(w0, m0, c0), assignment="stochastic")
    with pytest.raises(ValueError, match="max_iter"):
        fit_em(X, GaussianMixtureParams(w0, m0, c0), max_iter=0)
    with pytest.raises(ValueError, match="same features"):
        fit_em(X, GaussianMixtureParams(w0, m0, c0), prior=default_prior(X[:, :2]))


def test_sharded_equals_single_device():
    code = textwrap.dedent(
        """
        import numpy as np, jax, jax.numpy as jnp
        from mixtures.base import x64_scope
        from mixtures.em import GaussianMixtureParams, fit_em_blocks, make_mesh, to_blocks
        from mixtures.niw import NIWPrior
        assert len(jax.devices()) == 4
        rng = np.random.default_rng(0)
        X = np.concatenate([rng.normal(c, 1, (101, 3)) for c in (0, 4, 8)])
        y = -np.ones(len(X), int); y[:20] = 0
        prior = NIWPrior(X.mean(0), 1e-4, 4.0, 0.005 * X.var(0).sum() * np.eye(3))
        out = []
        for devs in (jax.devices()[:1], jax.devices()):
            mesh = make_mesh(devs)
            with x64_scope():
                data = to_blocks(X, y, n_components=3, mesh=mesh, center=False)
                p0 = GaussianMixtureParams(jnp.ones(3) / 3, jnp.asarray(X[[0, 150, 290]]),
                                           jnp.stack([jnp.eye(3)] * 3))
                pr = NIWPrior(*(jnp.asarray(v, jnp.float64) for v in prior))
                r = fit_em_blocks(data, p0, jnp.ones(3, bool), pr, 1e-6, -1.0, max_iter=20,
                                  mesh=mesh)
                out.append([np.asarray(a) for a in r.params] + [float(r.lower_bound)])
        for a, b in zip(out[0], out[1]):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        print("OK", len(jax.devices()))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "OK 4" in r.stdout


def test_inactive_components_keep_zero_weight():
    X, _ = _blobs()
    d = X.shape[1]
    w0 = np.array([0.5, 0.5, 0.0])
    m0 = np.stack([X[0], X[100], np.zeros(d)])
    c0 = np.stack([np.eye(d)] * 3)
    with x64_scope():
        data = to_blocks(X, n_components=3, center=False)
        pr = NIWPrior(*(jnp.asarray(v, jnp.float64) for v in default_prior(X)))
        res = fit_em_blocks(
            data, GaussianMixtureParams(*map(jnp.asarray, (w0, m0, c0))),
            jnp.asarray([True, True, False]), pr, 1e-6, 1e-8, max_iter=50, mesh=make_mesh(),
        )  # fmt: skip
    assert float(res.params.weights[2]) == 0.0
    assert float(np.asarray(res.params.weights).sum()) == pytest.approx(1.0, abs=1e-12)
