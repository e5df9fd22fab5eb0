"""Scale posterior core (gp.posterior) against scipy, closed forms and Monte Carlo."""

from __future__ import annotations

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from jax.test_util import check_grads

from gp.posterior import (
    ScalePosterior,
    constant_log_marginal,
    gp_statistics,
    importance_posterior,
    pareto_khat,
    predict_latent,
    quadrature_log_marginal,
    quadrature_posterior,
    student_t_log_marginal,
    student_t_posterior,
)
from gp.priors import BurrXII, InverseGamma
from mixtures.base import x64_scope

NOISE = 1e-2


def _data(n=60, c=1, seed=0, amplitude=1.3):
    rs = np.random.RandomState(seed)
    x = np.sort(rs.uniform(-3, 3, n + 5))
    k = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2)
    kn = k[:n, :n] + NOISE * np.eye(n)
    y = amplitude * np.linalg.cholesky(kn) @ rs.randn(n, c)
    return k[:n, :n], k[n:, :n], np.diag(k)[n:], y


@pytest.fixture(scope="module")
def stats():
    k, ks, kss, y = _data()
    with x64_scope():
        return gp_statistics(jnp.asarray(k), jnp.asarray(y), NOISE), k, ks, kss, y


def test_statistics_match_numpy(stats):
    s, k, ks, kss, y = stats
    khat = k + NOISE * np.trace(k) / len(k) * np.eye(len(k))
    # Cholesky solves vs numpy dense solve on a well-conditioned (jittered) matrix
    np.testing.assert_allclose(
        float(s.quad), float(y[:, 0] @ np.linalg.solve(khat, y[:, 0])), rtol=1e-9
    )
    np.testing.assert_allclose(float(s.logdet), np.linalg.slogdet(khat)[1], rtol=1e-10)
    with x64_scope():
        mean, var = predict_latent(s, jnp.asarray(ks), jnp.asarray(kss))
    np.testing.assert_allclose(mean[:, 0], ks @ np.linalg.solve(khat, y[:, 0]), rtol=1e-8)
    np.testing.assert_allclose(var, kss - np.sum(ks * np.linalg.solve(khat, ks.T).T, 1), atol=1e-10)


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 2.0), (0.7, 3.0)])
def test_student_t_marginal_equals_scipy_multivariate_t(stats, alpha, beta):
    s, k, *_, y = stats
    khat = k + float(s.jitter) * np.eye(len(k))
    with x64_scope():
        got = float(student_t_log_marginal(s, alpha, beta))
    want = st.multivariate_t(np.zeros(len(k)), beta / alpha * khat, df=2 * alpha).logpdf(y[:, 0])
    # both are float64 closed forms of the same density (the Student-t process marginal)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_multi_output_marginal_shares_the_scale():
    k, _, _, y = _data(n=25, c=3, seed=1)
    with x64_scope():
        s = gp_statistics(jnp.asarray(k), jnp.asarray(y), NOISE)
        got = float(student_t_log_marginal(s, 2.0, 1.5))
    khat = k + float(s.jitter) * np.eye(len(k))
    # vec(Y) ~ MVT_{2 alpha}(0, (beta/alpha) I_C kron Khat): one shared sigma^2
    big = np.kron(np.eye(3), khat)
    want = st.multivariate_t(np.zeros(75), 1.5 / 2.0 * big, df=4.0).logpdf(y.T.reshape(-1))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_quadrature_equals_closed_form(stats):
    s, k, ks, kss, y = stats
    prior = InverseGamma(2.0, 2.0)
    with x64_scope():
        quad = quadrature_posterior(s, prior, n_nodes=64)
        exact = student_t_posterior(s, 2.0, 2.0)
        mean, var = predict_latent(s, jnp.asarray(ks), jnp.asarray(kss))
        var = var[:, None] + float(s.jitter)
        y_star = mean + 0.3
        lp_quad = quad.predictive(mean, jnp.sqrt(var)).log_prob(y_star)
        lp_t = exact.predictive(mean, jnp.sqrt(var)).log_prob(y_star)
    # 64 Gauss-Hermite nodes over log sigma^2 around the mode: the log posterior of a
    # 60-point fit is close to quadratic there, and the rule is exact to ~1e-8
    np.testing.assert_allclose(
        quad.log_marginal_likelihood, exact.log_marginal_likelihood, atol=1e-8
    )
    np.testing.assert_allclose(lp_quad, lp_t, atol=1e-8)
    np.testing.assert_allclose(quad.mean, exact.mean, rtol=1e-8)
    assert quad.error < 1e-8


def test_importance_sampling_agrees_within_error(stats):
    s, *_ = stats
    with x64_scope():
        exact = student_t_posterior(s, 2.0, 2.0)
        is_ = importance_posterior(s, InverseGamma(2.0, 2.0), jax.random.PRNGKey(0), 20000)
    assert 100 < is_.ess < 20000 and is_.khat < 0.7
    # the relative error of a self-normalised IS estimate is ~ 1/sqrt(ESS); allow 5 of them
    tol = 5 / np.sqrt(is_.ess)
    assert abs(is_.log_marginal_likelihood - exact.log_marginal_likelihood) < tol
    assert abs(is_.mean / exact.mean - 1) < tol


def test_burr_quadrature_matches_importance_sampling(stats):
    s, *_ = stats
    prior = BurrXII(2.0, 2.0)
    with x64_scope():
        quad = quadrature_posterior(s, prior)
        is_ = importance_posterior(s, prior, jax.random.PRNGKey(1), 100000)
    assert quad.error < 1e-6
    tol = 5 / np.sqrt(is_.ess)  # IS Monte-Carlo error
    assert abs(is_.log_marginal_likelihood - quad.log_marginal_likelihood) < tol
    assert abs(is_.mean / quad.mean - 1) < tol


def test_gaussian_limit(stats):
    s, *_ = stats
    lv = 1.7
    big = 1e9
    with x64_scope():
        lml_t = float(student_t_log_marginal(s, big, big * lv))
        lml_g = float(constant_log_marginal(s, lv))
        x = jnp.linspace(-3, 3, 7)
        ig = ScalePosterior("inverse_gamma", 0.0, alpha=big, beta=big * lv)
        t_lp = ig.predictive(jnp.zeros(7), jnp.ones(7)).log_prob(x)
    # alpha, beta -> inf with beta/alpha = lv: the t marginal tends to N(0, lv Khat);
    # the gap is O(N / alpha) ~ 1e-7 at alpha = 1e9
    np.testing.assert_allclose(lml_t, lml_g, atol=1e-6)
    np.testing.assert_allclose(t_lp, st.norm(0, np.sqrt(lv)).logpdf(np.asarray(x)), atol=1e-8)


def test_scale_posterior_predictive_equals_scipy():
    """N(loc, sigma^2 scale^2) mixed over each kind of scale posterior vs scipy densities."""
    x = np.linspace(-5, 5, 11)
    loc, scale = 0.2, 1.7
    log_s2 = np.log([0.5, 1.0, 3.0])
    w = np.array([0.2, 0.5, 0.3])
    posteriors = {
        "constant": ScalePosterior("constant", 0.0, value=2.5),
        "inverse_gamma": ScalePosterior("inverse_gamma", 0.0, alpha=1.75, beta=2.0),
        "discrete": ScalePosterior("discrete", 0.0, log_s2=log_s2, log_weights=np.log(w)),
    }
    # t_{2 alpha}(loc, scale sqrt(beta / alpha)) and the finite normal mixture
    want = {
        "constant": st.norm(loc, scale * np.sqrt(2.5)).logpdf(x),
        "inverse_gamma": st.t(3.5, loc, scale * np.sqrt(2.0 / 1.75)).logpdf(x),
        "discrete": np.log(
            sum(wk * st.norm(loc, scale * np.exp(0.5 * tk)).pdf(x) for wk, tk in zip(w, log_s2))
        ),
    }
    with x64_scope():
        for kind, sp in posteriors.items():
            d = sp.predictive(jnp.full(11, loc), jnp.full(11, scale))
            got = np.asarray(d.log_prob(jnp.asarray(x)))
            assert d.batch_shape == (11,) and got.dtype == np.float64
            # float64 closed forms of the same densities
            np.testing.assert_allclose(got, want[kind], rtol=1e-12, err_msg=kind)


def test_pareto_khat_equals_arviz_psislw():
    rs = np.random.RandomState(0)
    for lw in (rs.randn(1000), 3 * rs.randn(1000), st.t(3).rvs(2000, random_state=rs)):
        # same Zhang-Stephens estimator and tail size: identical up to rounding
        np.testing.assert_allclose(pareto_khat(lw), float(az.psislw(lw.copy())[1]), rtol=1e-10)


def test_gradients_pass_check_grads(stats):
    _, k, _, _, y = stats

    def lml(log_noise, log_alpha, log_beta):
        s = gp_statistics(jnp.asarray(k[:20, :20]), jnp.asarray(y[:20]), jnp.exp(log_noise))
        return student_t_log_marginal(s, jnp.exp(log_alpha), jnp.exp(log_beta))

    with x64_scope():
        # central differences with eps = 1e-6 in log space: truncation error ~ eps^2 * f(3),
        # far below check_grads' float64 tolerance (1e-5 relative)
        args = (np.log(1e-2), np.log(2.0), np.log(1.5))
        # (jitted: a few compilations instead of many eager op-by-op dispatches)
        check_grads(jax.jit(lml), args, order=1, modes=("rev", "fwd"), eps=1e-6)


def test_quadrature_log_marginal_is_exact_and_differentiable(stats):
    s, k, _, _, y = stats

    def lml_quad(log_noise, log_alpha, log_beta):
        st_ = gp_statistics(jnp.asarray(k), jnp.asarray(y), jnp.exp(log_noise))
        return quadrature_log_marginal(st_, InverseGamma(jnp.exp(log_alpha), jnp.exp(log_beta)))

    def lml_exact(log_noise, log_alpha, log_beta):
        st_ = gp_statistics(jnp.asarray(k), jnp.asarray(y), jnp.exp(log_noise))
        return student_t_log_marginal(st_, jnp.exp(log_alpha), jnp.exp(log_beta))

    args = (np.log(1e-2), np.log(2.0), np.log(1.5))
    with x64_scope():
        vq, gq = jax.jit(jax.value_and_grad(lml_quad, argnums=(0, 1, 2)))(*args)
        ve, ge = jax.jit(jax.value_and_grad(lml_exact, argnums=(0, 1, 2)))(*args)
        # the traced quadrature (mode by grid + Newton, 64 nodes) vs the closed form: ~1e-8
        # as for quadrature_posterior; its gradient at fixed nodes inherits that accuracy
        np.testing.assert_allclose(float(vq), float(ve), atol=1e-8)
        np.testing.assert_allclose(np.array(gq), np.array(ge), atol=1e-7)
        # and vs the host quadrature_posterior for a prior without a closed form
        want = quadrature_posterior(s, BurrXII(2.0, 3.0)).log_marginal_likelihood
        got = float(jax.jit(quadrature_log_marginal)(s, BurrXII(2.0, 3.0)))
        np.testing.assert_allclose(got, want, atol=1e-9)
