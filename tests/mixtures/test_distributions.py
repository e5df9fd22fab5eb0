"""Distributions vs scipy / scikit-learn references."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hst
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from mixtures import BurrXII, GaussianMixture, ScaleMixtureNormal, student_t_from_inverse_gamma
from mixtures.base import x64_scope


def _random_params(rng, K, D, covariance_type):
    weights = rng.dirichlet(np.ones(K))
    means = rng.normal(size=(K, D)) * 2
    A = rng.normal(size=(K, D, D))
    full = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    cov = {
        "full": full,
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": full[:, 0, 0].copy(),
    }[covariance_type]
    return weights, means, cov


def _dense(cov, covariance_type, D):
    if covariance_type == "full":
        return cov
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(D) for c in cov])


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_gaussian_mixture_log_prob_matches_scipy_and_sklearn(covariance_type):
    rng = np.random.default_rng(0)
    K, D = 3, 4
    weights, means, cov = _random_params(rng, K, D, covariance_type)
    X = rng.normal(size=(50, D)) * 3
    dense = _dense(cov, covariance_type, D)
    ref = np.log(
        sum(weights[k] * st.multivariate_normal(means[k], dense[k]).pdf(X) for k in range(K))
    )
    sk = SkGaussianMixture(K, covariance_type=covariance_type)
    sk.weights_, sk.means_, sk.covariances_ = weights, means, cov
    if covariance_type == "full":
        sk.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(cov))
    else:
        sk.precisions_cholesky_ = 1 / np.sqrt(cov)
    with x64_scope():
        gm = GaussianMixture(weights, means, cov, covariance_type)
        lp = np.asarray(gm.log_prob(jnp.asarray(X)))
        resp = np.asarray(gm.responsibilities(jnp.asarray(X)))
    # float64 throughout: agreement to rounding error of a D=4 Cholesky (1e-10 is loose)
    np.testing.assert_allclose(lp, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(lp, sk.score_samples(X), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(resp, sk.predict_proba(X), atol=1e-10)


def test_gaussian_mixture_sampling_moments_and_batching():
    rng = np.random.default_rng(1)
    weights, means, cov = _random_params(rng, 3, 2, "full")
    with x64_scope():
        gm = GaussianMixture(weights, means, cov)
        x = np.asarray(gm.sample(jax.random.PRNGKey(0), (200_000,)))
        mean, var = np.asarray(gm.mean), np.asarray(gm.variance)
        # vmap over a batch of mixtures equals looping over them
        batch_means = jnp.stack([means, means + 1.0])
        lp = jax.vmap(lambda m: GaussianMixture(weights, m, cov).log_prob(jnp.zeros(2)))(
            batch_means
        )
        lp1 = GaussianMixture(weights, means + 1.0, cov).log_prob(jnp.zeros(2))
        batched = GaussianMixture(weights, batch_means, cov)
    assert batched.batch_shape == (2,)
    np.testing.assert_allclose(lp[1], lp1, rtol=1e-12)
    # Monte Carlo: standard error of the mean is sqrt(var / n); allow 5 standard errors
    se = np.sqrt(var / x.shape[0])
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se)
    # variance estimate: relative s.e. ~ sqrt(2 / n) * kurtosis factor; 3% is > 5 s.e.
    np.testing.assert_allclose(x.var(0), var, rtol=0.03)


@settings(max_examples=20, deadline=None)
@given(seed=hst.integers(0, 10_000), K=hst.integers(1, 4))
def test_gaussian_mixture_responsibilities_sum_to_one_and_permutation_invariant(seed, K):
    rng = np.random.default_rng(seed)
    weights, means, cov = _random_params(rng, K, 2, "full")
    X = rng.normal(size=(7, 2)) * 5
    perm = rng.permutation(K)
    with x64_scope():
        gm = GaussianMixture(weights, means, cov)
        gp = GaussianMixture(weights[perm], means[perm], cov[perm])
        r = np.asarray(gm.responsibilities(X))
        np.testing.assert_allclose(gm.log_prob(X), gp.log_prob(X), rtol=1e-12)
    np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-12)


def test_gaussian_mixture_rejects_bad_shapes():
    with pytest.raises(ValueError, match="weights must have shape"):
        GaussianMixture(jnp.ones(3) / 3, jnp.zeros((2, 1)), jnp.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="covariances for covariance_type='diag'"):
        GaussianMixture(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.ones((2, 3, 3)), "diag")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        GaussianMixture(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.ones((2, 3)), "tied")


@pytest.mark.parametrize(("c", "d", "scale"), [(2.0, 2.0, 1.0), (1.5, 3.0, 0.7), (4.0, 0.8, 2.0)])
def test_burr12_density_cdf_icdf_moments_vs_scipy(c, d, scale):
    ref = st.burr12(c, d, scale=scale)
    x = np.array([1e-4, 0.1, 0.5, 1.0, 3.0, 50.0, 1e6])
    with x64_scope():
        b = BurrXII(c, d, scale)
        np.testing.assert_allclose(b.log_prob(x), ref.logpdf(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b.cdf(x), ref.cdf(x), rtol=1e-12, atol=1e-15)
        q = np.array([1e-6, 0.1, 0.5, 0.9, 1 - 1e-9])
        np.testing.assert_allclose(b.icdf(q), ref.ppf(q), rtol=1e-8)
        if c * d > 2:
            np.testing.assert_allclose(b.mean, ref.mean(), rtol=1e-12)
            np.testing.assert_allclose(b.variance, ref.var(), rtol=1e-10)
        else:
            assert not np.isfinite(float(b.variance))


def test_burr12_sampling_moments_and_ks():
    c, d = 3.0, 2.0  # c d = 6: finite variance and fourth moment (< c d)
    with x64_scope():
        s = np.asarray(BurrXII(c, d).sample(jax.random.PRNGKey(3), (100_000,)))
    ref = st.burr12(c, d)
    se = np.sqrt(ref.var() / s.size)
    assert abs(s.mean() - ref.mean()) < 5 * se
    # KS at n = 1e5: the 0.1% critical value is 1.95 / sqrt(n) = 0.0062
    assert st.kstest(s, ref.cdf).statistic < 1.95 / np.sqrt(s.size)


def test_burr12_gradients_are_finite():
    from jax.test_util import check_grads

    with x64_scope():
        check_grads(lambda c, d: BurrXII(c, d).log_prob(2.5), (2.0, 1.5), order=2)
        key = jax.random.PRNGKey(0)
        g = jax.grad(lambda c: BurrXII(c, 2.0).sample(key, (100,)).mean())(2.0)
    assert np.isfinite(g)


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 2.0), (0.5, 1.7), (8.0, 3.0)])
def test_scale_mixture_normal_equals_student_t_closed_form(alpha, beta):
    with x64_scope():
        x = jnp.array([-80.0, -2.0, 0.3, 1.0, 5.0, 300.0])
        quad = ScaleMixtureNormal(0.3, 1.2, dist.InverseGamma(alpha, beta)).log_prob(x)
        closed = student_t_from_inverse_gamma(0.3, 1.2, alpha, beta).log_prob(x)
        # scipy: t with df 2 alpha and scale sigma sqrt(beta / alpha)
        ref = st.t(2 * alpha, loc=0.3, scale=1.2 * np.sqrt(beta / alpha)).logpdf(np.asarray(x))
    np.testing.assert_allclose(closed, ref, rtol=1e-12)
    # trapezoid rule on an analytic integrand: geometric convergence, 1e-8 is conservative
    np.testing.assert_allclose(quad, ref, rtol=1e-8, atol=1e-8)


def test_scale_mixture_normal_burr_matches_monte_carlo():
    with x64_scope():
        smn = ScaleMixtureNormal(0.0, 1.0, BurrXII(2.0, 2.0))
        x = np.asarray(smn.sample(jax.random.PRNGKey(0), (200_000,)))
        grid = np.linspace(-3, 3, 7)
        dens = np.exp(np.asarray(smn.log_prob(jnp.asarray(grid))))
    # histogram density in bins of width 0.2: relative s.e. ~ 1/sqrt(count) < 1.5%
    for g, p in zip(grid, dens, strict=True):
        frac = np.mean(np.abs(x - g) < 0.1) / 0.2
        assert abs(frac - p) < 0.05 * p + 0.002


def test_burr12_keeps_float64_parameters_whatever_the_x64_flag():
    import warnings

    # built with x64 off: Python floats are stored as NumPy float64, with no dtype warning
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error")
        b = BurrXII(2.0, 2.0, 0.1)
        assert b.log_prob(1.5).dtype == jnp.float32
    assert isinstance(b.scale, np.ndarray) and b.scale.dtype == np.float64
    assert float(b.scale) == 0.1  # not the float32 value 0.10000000149...
    ref = st.burr12(2.0, 2.0, scale=0.1)
    with x64_scope():
        lp = b.log_prob(1.5)
        assert lp.dtype == jnp.float64 and BurrXII(2.0, 2.0).log_prob(1.5).dtype == jnp.float64
        np.testing.assert_allclose(lp, ref.logpdf(1.5), rtol=1e-13)
        # JAX arrays and tracers are kept as they are: jit, vmap and grad work
        c = jnp.asarray(2.0)
        assert BurrXII(c, 2.0).c is c
        np.testing.assert_allclose(jax.jit(lambda d, x: d.log_prob(x))(b, 1.5), lp, rtol=1e-14)
        cs = jnp.array([1.0, 2.0, 3.0])
        vm = jax.vmap(lambda c: BurrXII(c, 2.0, 0.1).log_prob(1.5))(cs)
        want = [st.burr12(float(ci), 2.0, scale=0.1).logpdf(1.5) for ci in cs]
        np.testing.assert_allclose(vm, want, rtol=1e-13)
        g = jax.grad(lambda c: BurrXII(c, 2.0, 0.1).log_prob(1.5))(2.0)
    eps = 1e-6  # central difference: error ~ eps^2 f''' ~ 1e-12
    fd = (
        st.burr12(2.0 + eps, 2.0, scale=0.1).logpdf(1.5)
        - st.burr12(2.0 - eps, 2.0, scale=0.1).logpdf(1.5)
    ) / (2 * eps)
    np.testing.assert_allclose(g, fd, rtol=1e-7)


def test_bivariate_closed_form_matches_scipy_and_the_general_cholesky():
    rng = np.random.default_rng(11)
    A = rng.normal(size=(5, 2, 2))
    cov = A @ A.transpose(0, 2, 1) + np.diag([1e-3, 2.0])
    cov[0] = [[1.0, 0.999999], [0.999999, 1.0]]  # nearly singular
    means, w = rng.normal(size=(5, 2)), rng.dirichlet(np.ones(5))
    X = rng.normal(size=(20, 2))
    with x64_scope():
        gm = GaussianMixture(w, means, cov)
        got = np.asarray(gm.component_log_prob(jnp.asarray(X)))
        grad = jax.grad(lambda c: GaussianMixture(w, means, c).log_prob(jnp.asarray(X)).sum())(
            jnp.asarray(cov)
        )
    want = np.stack([st.multivariate_normal(means[k], cov[k]).logpdf(X) for k in range(5)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert np.all(np.isfinite(np.asarray(grad)))
    with x64_scope():  # a non-positive-definite matrix gives NaN, as jnp.linalg.cholesky does
        bad = GaussianMixture(np.ones(1), np.zeros((1, 2)), np.array([[[1.0, 2.0], [2.0, 1.0]]]))
        assert np.isnan(float(bad.log_prob(jnp.zeros(2))))


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_student_t_mixture_log_prob_matches_scipy(covariance_type):
    from mixtures import StudentTMixture

    rng = np.random.default_rng(1)
    K, D, df = 3, 3, 3.7
    weights, means, cov = _random_params(rng, K, D, covariance_type)
    X = rng.normal(size=(40, D)) * 4
    dense = _dense(cov, covariance_type, D)
    ref = np.log(
        sum(weights[k] * st.multivariate_t(means[k], dense[k], df=df).pdf(X) for k in range(K))
    )
    with x64_scope():
        tm = StudentTMixture(weights, means, cov, df=df, covariance_type=covariance_type)
        lp = np.asarray(jax.jit(lambda d, x: d.log_prob(x))(tm, jnp.asarray(X)))  # a pytree
        big = StudentTMixture(weights, means, cov, df=1e9, covariance_type=covariance_type)
        gm = GaussianMixture(weights, means, cov, covariance_type)
        gap = np.asarray(big.log_prob(jnp.asarray(X)) - gm.log_prob(jnp.asarray(X)))
    np.testing.assert_allclose(lp, ref, rtol=1e-10, atol=1e-10)
    # nu -> infinity is the Gaussian mixture: the density's 1/nu term is ~ |x|^4 / nu
    assert np.abs(gap).max() < 1e-5


def test_student_t_mixture_samples_follow_the_t_law():
    from mixtures import StudentTMixture

    rng = np.random.default_rng(2)
    weights, means, cov = _random_params(rng, 1, 2, "full")
    df = 3.0
    with x64_scope():
        tm = StudentTMixture(weights, means, cov, df=df)
        x = np.asarray(tm.sample(jax.random.key(0), (20000,)))
        mean, var = np.asarray(tm.mean), np.asarray(tm.variance)
    # squared Mahalanobis / D of a D-variate t_nu is F(D, nu): KS against scipy
    d = x - means[0]
    m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov[0]), d)
    assert st.kstest(m2 / 2, st.f(2, df).cdf).pvalue > 1e-3
    np.testing.assert_allclose(mean, means[0])
    np.testing.assert_allclose(var, df / (df - 2) * np.diag(cov[0]))  # closed form
    with pytest.raises(ValueError, match="df must be positive"):
        StudentTMixture(weights, means, cov, df=0.0)
    with pytest.raises(TypeError, match="not linear"):
        tm.quadratic_coefficients()
