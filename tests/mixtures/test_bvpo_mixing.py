"""Closed-form and online MSE-optimal mixing weights against brute force and Monte Carlo."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from mixtures.gradmix import (
    MixingMoments,
    estimate_mixing_moments,
    init_mixing_state,
    mix_gradients,
    mixing_mse,
    mixing_weight_from_moments,
    online_mixing_weight,
    optimal_mixing_weight,
    random_projection,
    update_mixing_state,
)


def _brute_force_mse(alpha, bt, be, st_, se, ste, n):
    """MSE of alpha g_t + (1-alpha) g_e written out from bias and covariance (no A/B/C algebra)."""
    bias = alpha * bt + (1 - alpha) * be
    var = alpha**2 * st_ + (1 - alpha) ** 2 * se + 2 * alpha * (1 - alpha) * ste
    return bias @ bias + var / n


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.sampled_from([1, 3, 50]),
)
def test_closed_form_is_the_bounded_minimiser(seed, n):
    rng = np.random.default_rng(seed)
    d = 4
    bt, be = rng.normal(size=d) * rng.uniform(0, 1), rng.normal(size=d)
    # a valid joint covariance of (g_t, g_e) gives consistent traces
    L = rng.normal(size=(2 * d, 2 * d)) * rng.uniform(0.1, 2)
    cov = L @ L.T
    st_, se, ste = np.trace(cov[:d, :d]), np.trace(cov[d:, d:]), np.trace(cov[:d, d:])
    w = optimal_mixing_weight(bt, be, st_, se, ste, batch_size=n)
    res = minimize_scalar(
        _brute_force_mse, bounds=(0, 1), args=(bt, be, st_, se, ste, n),
        method="bounded", options={"xatol": 1e-10},
    )  # fmt: skip
    # the objective is a convex quadratic: argmin agrees up to the optimiser's xatol
    # (loosened because flat quadratics make the argmin ill-conditioned; compare values too)
    assert abs(float(w.alpha) - res.x) < 1e-4 or float(w.mse) <= res.fun + 1e-10
    assert float(w.mse) == pytest.approx(_brute_force_mse(float(w.alpha), bt, be, st_, se, ste, n))
    assert float(w.mse) <= res.fun + 1e-10
    assert float(w.mse) <= min(float(w.mse_t), float(w.mse_e)) + 1e-12
    assert float(mixing_mse(w.alpha, w.mse_t, w.mse_e, w.cross)) == pytest.approx(float(w.mse))


def test_degenerate_and_interval():
    # identical estimators: every alpha is optimal, 0.5 returned
    w = optimal_mixing_weight([1.0], [1.0], 0.0, 0.0, 0.0)
    assert float(w.alpha) == 0.5
    w = optimal_mixing_weight([0.0], [0.3], 4.0, 1.0, alpha_min=0.3, alpha_max=0.9)
    assert float(w.alpha) == 0.3  # unclipped 1.09 / 5.09 = 0.214 < 0.3
    with pytest.raises(ValueError, match="alpha_min"):
        optimal_mixing_weight([0.0], [0.3], 4.0, 1.0, alpha_min=0.8, alpha_max=0.2)
    with pytest.raises(ValueError, match="same shape"):
        optimal_mixing_weight([0.0, 1.0], [0.3], 4.0, 1.0)


def test_mix_gradients_pytree():
    gt = {"a": np.array([1.0, 2.0]), "b": np.array(3.0)}
    ge = {"a": np.array([0.0, 4.0]), "b": np.array(-1.0)}
    out = mix_gradients(gt, ge, 0.25)
    np.testing.assert_allclose(out["a"], [0.25, 3.5])
    np.testing.assert_allclose(out["b"], 0.0)


def _gaussian_pairs(rng, n_rows, d, rho):
    """g_t unbiased with Cov 4 I, g_e = 0.5 + N(0, I), correlated rho per coordinate."""
    z1 = rng.normal(size=(n_rows, d))
    z2 = rho * z1 + np.sqrt(1 - rho**2) * rng.normal(size=(n_rows, d))
    return 2.0 * z1, 0.5 + z2  # tr St = 4d, tr Se = d, tr Ste = 2 rho d, ||b_t - b_e||^2 = d/4


def test_moment_estimates_are_unbiased():
    rng = np.random.default_rng(1)
    d, rho, reps = 3, 0.6, 400
    est = np.array(
        [
            estimate_mixing_moments(*_gaussian_pairs(rng, 6, d, rho), paired=True)
            for _ in range(reps)
        ]
    )
    truth = np.array([d / 4, 4 * d, d, 2 * rho * d, 0.0])
    mean, se = est.mean(0), est.std(0, ddof=1) / np.sqrt(reps)
    # Monte Carlo mean of an unbiased estimator: within 4 standard errors (two-sided p ~ 6e-5)
    assert np.all(np.abs(mean[:4] - truth[:4]) < 4 * se[:4])


def test_microbatch_means_give_per_example_variance():
    rng = np.random.default_rng(2)
    d, b, m, reps = 3, 5, 8, 300
    vals = []
    for _ in range(reps):
        gt, ge = _gaussian_pairs(rng, m * b, d, 0.0)
        mt, me = gt.reshape(m, b, d).mean(1), ge.reshape(m, b, d).mean(1)
        vals.append(estimate_mixing_moments(mt, me, microbatch_size_t=b, microbatch_size_e=b))
    vals = np.array(vals)
    se = vals.std(0, ddof=1) / np.sqrt(reps)
    # per-example traces 4d and d recovered from micro-batch means (4 standard errors)
    assert abs(vals[:, 1].mean() - 4 * d) < 4 * se[1]
    assert abs(vals[:, 2].mean() - d) < 4 * se[2]
    assert abs(vals[:, 0].mean() - d / 4) < 4 * se[0]


@pytest.mark.parametrize("n", [1, 16])
def test_online_estimator_converges_to_closed_form(n):
    rng = np.random.default_rng(3)
    d, rho = 3, 0.3
    state = init_mixing_state()
    for _ in range(300):
        state = update_mixing_state(
            state, *_gaussian_pairs(rng, 16, d, rho), decay=0.99, paired=True
        )
    exact = optimal_mixing_weight(np.zeros(d), np.full(d, 0.5), 4 * d, d, 2 * rho * d, batch_size=n)
    est = online_mixing_weight(state, n, n)
    # exact alpha* = 0.160 (n=1), 0.564 (n=16). Over 12 re-seeded runs the estimate's
    # standard deviation was 0.005 (n=1) and 0.017 (n=16); tolerance 0.07 is > 4 sd
    assert float(est.alpha) == pytest.approx(float(exact.alpha), abs=0.07)
    # model (A) with EXACT moments reproduces the closed form exactly (b_t = 0 here)
    exact_m = MixingMoments(d / 4, 4 * d, d, 2 * rho * d, 0.0)
    a = mixing_weight_from_moments(exact_m, n, n)
    assert float(a.alpha) == pytest.approx(float(exact.alpha), rel=1e-12)
    # variance-only model ignores the bias: alpha = (v_e - c) / (v_t + v_e - 2c)
    # (cross term 0.4 d, so the unclipped value 0.6 / 4.2 is interior; n cancels)
    mom_c = MixingMoments(d / 4, 4 * d, d, 0.4 * d, 0.0)
    c = mixing_weight_from_moments(mom_c, n, n, bias_model="variance_only")
    assert float(c.alpha) == pytest.approx(0.6 / 4.2, rel=1e-12)


def test_reference_bias_model():
    rng = np.random.default_rng(4)
    d = 3
    # mu = 0.2; g_t unbiased only up to b_t = 0.1, g_e bias 0.5 -> b_e (b_e - b_t) = d * 0.2
    ests = []
    for _ in range(300):
        gt = 0.3 + 2.0 * rng.normal(size=(16, d))
        ge = 0.7 + rng.normal(size=(16, d))
        ref = 0.2 + 0.1 * rng.normal(size=d)
        ests.append(estimate_mixing_moments(gt, ge, reference=ref).bias_cross)
    ests = np.array(ests)
    assert abs(ests.mean() - d * 0.5 * 0.4) < 4 * ests.std(ddof=1) / np.sqrt(len(ests))
    exact = optimal_mixing_weight(np.full(d, 0.1), np.full(d, 0.5), 4 * d, d, 0.0, batch_size=4)
    mom = MixingMoments(d * 0.16, 4 * d, d, 0.0, d * 0.2)
    got = mixing_weight_from_moments(mom, 4, 4, bias_model="reference")
    assert float(got.alpha) == pytest.approx(float(exact.alpha), rel=1e-12)


def test_random_projection_preserves_inner_products():
    key = jax.random.PRNGKey(0)
    rng = np.random.default_rng(5)
    u, v = rng.normal(size=50), rng.normal(size=50)
    P = np.asarray(jax.vmap(lambda k: random_projection(k, 50, 20))(jax.random.split(key, 200)))
    vals = np.sum((P @ u) * (P @ v), axis=1)
    # E[(Pu).(Pv)] = u.v; 4 standard errors over 200 sketches
    assert abs(vals.mean() - u @ v) < 4 * vals.std(ddof=1) / np.sqrt(len(vals))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="at least 2 rows"):
        estimate_mixing_moments(np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="n_rows"):
        estimate_mixing_moments(np.ones(3), np.ones((4, 3)))
    with pytest.raises(ValueError, match="same number of features"):
        estimate_mixing_moments(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="paired"):
        estimate_mixing_moments(np.ones((2, 3)), np.ones((4, 3)), paired=True)
    with pytest.raises(ValueError, match="bias_model"):
        mixing_weight_from_moments(MixingMoments(1.0, 1.0, 1.0, 0.0, 0.0), 1, 1, bias_model="x")
    with pytest.raises(ValueError, match="count = 0"):
        online_mixing_weight(init_mixing_state(), 1, 1)
    with pytest.raises(ValueError, match="decay"):
        update_mixing_state(init_mixing_state(), np.ones((2, 3)), np.ones((2, 3)), decay=1.0)


def test_online_estimator_inside_jit_matches_eager():
    # usable inside a jitted training step: same numbers as the eager calls
    rng = np.random.default_rng(6)
    gt, ge = _gaussian_pairs(rng, 8, 3, 0.3)

    @jax.jit
    def step(state, gt, ge, decay):
        state = update_mixing_state(state, gt, ge, decay=decay, paired=True)
        return state, online_mixing_weight(state, 4, 4).alpha

    state, alpha = step(init_mixing_state(), gt, ge, 0.9)
    eager = update_mixing_state(init_mixing_state(), gt, ge, decay=0.9, paired=True)
    # the outer jit (x64 off) receives float32 gradients: agreement to float32 rounding
    assert float(alpha) == pytest.approx(float(online_mixing_weight(eager, 4, 4).alpha), rel=1e-5)
    assert int(state.count) == 1
