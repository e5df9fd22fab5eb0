"""Checks of BVPO's claims on the exact enumerable test bed (mixtures.gradmix.toy)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtures.base import x64_scope
from mixtures.gradmix import (
    init_mixing_state,
    mixing_mse,
    online_mixing_weight,
    toy,
    trace_dpo_loss,
    update_mixing_state,
)


@pytest.fixture(scope="module")
def world():
    return toy.make_world()


@pytest.fixture(scope="module")
def ref(world):
    return toy.exact_moments(world, world.theta_ref)


N_MC = 12_800  # one sample size for all Monte Carlo tests: one compilation


@pytest.fixture(scope="module")
def samples(world):
    return toy.sample_gradients(world, world.theta_ref, jax.random.PRNGKey(0), N_MC)


@pytest.fixture(scope="module")
def moved(world):
    theta = toy.gradient_descent(world, n_steps=60, step_size=2.0)
    return theta, toy.exact_moments(world, theta)


def test_enumeration_is_a_distribution_and_fisher_identity(world, ref):
    lp = np.asarray(toy.log_joint(world, world.theta_ref))
    np.testing.assert_allclose(np.exp(lp).sum(axis=(1, 2)), 1.0, rtol=1e-13)
    np.testing.assert_allclose(world.pairs_trace.sum((1, 2)), 1.0, rtol=1e-13)
    # mu by autodiff of L_m vs the Fisher identity grad log pi(y|x) = sum_r pi(r|x,y) G[x,r,y]
    # (an independent route through the enumeration); at theta_ref sigmoid(-m) = 1/2
    with x64_scope():
        G = np.asarray(jax.jacfwd(lambda t: toy.log_joint(world, t))(world.theta_ref))
    score = np.einsum("xry,xryd->xyd", np.asarray(world.posterior_ref), G)
    diff = score[:, :, None, :] - score[:, None, :, :]
    mu = -0.5 * np.einsum("x,xab,xabd->d", world.prompt_probs, world.pairs_trace, diff)
    np.testing.assert_allclose(ref.mu, mu, rtol=1e-10, atol=1e-14)
    assert float(ref.objective) == pytest.approx(np.log(2.0), rel=1e-14)


def test_reference_numbers_of_the_world(ref):
    m = ref
    # reference values of the default world (4 significant digits, an independent
    # NumPy enumeration of the same world)
    assert m.mse_t == pytest.approx(3.527, abs=5e-4)
    assert m.mse_e == pytest.approx(0.9541, abs=5e-5)
    assert m.alpha == pytest.approx(0.1865, abs=5e-5)
    assert m.mse_alpha == pytest.approx(0.8114, abs=5e-5)
    # trace sampling causes 82-88 % of tr Sigma_t
    assert 0.82 < m.trace_cov_t_traces / m.trace_cov_t < 0.88


def test_trace_estimator_unbiased_at_reference(ref):
    m = ref
    # every DPO weight is sigmoid(0) = 1/2 and posterior traces give the Fisher identity:
    # ||b_t||^2 is rounding error (float64 eps^2 * ||mu||^2 scale), while ||b_e||^2 is not
    assert m.bias_t @ m.bias_t < 1e-25 * (m.mu @ m.mu)
    assert m.bias_e @ m.bias_e > 1e-3


@pytest.mark.parametrize("where", ["ref", "moved", "shared"])
def test_closed_form_is_grid_minimum_and_dominates(world, ref, moved, where):
    if where == "ref":
        m = ref
    elif where == "moved":
        m = moved[1]
    else:
        m = toy.exact_moments(world, world.theta_ref, shared_pairs=True)
    grid = np.linspace(0, 1, 101)
    # MSE(alpha) evaluated directly from the bias vectors and covariance traces
    bias = grid[:, None] * m.bias_t + (1 - grid[:, None]) * m.bias_e
    mse = (
        np.sum(bias**2, 1)
        + grid**2 * m.trace_cov_t
        + (1 - grid) ** 2 * m.trace_cov_e
        + 2 * grid * (1 - grid) * m.trace_cov_te
    )
    # the grid minimiser is within half a grid step of alpha*
    assert abs(grid[np.argmin(mse)] - m.alpha) <= 0.005 + 1e-12
    assert m.mse_alpha <= mse.min() + 1e-12
    # Theorem 2 / Corollary 1: strict domination when alpha* is interior
    assert 0 < m.alpha < 1
    assert m.mse_alpha < min(m.mse_t, m.mse_e)
    np.testing.assert_allclose(mse[[0, 100]], [m.mse_e, m.mse_t], rtol=1e-12)


def test_fixed_half_is_not_guaranteed(ref, moved):
    # the paper's fixed alpha = 0.5 is worse than g_e alone here: MSE(0.5) = (A + B + 2C) / 4
    for m in (ref, moved[1]):
        assert float(mixing_mse(0.5, m.mse_t, m.mse_e, m.cross)) > m.mse_e


def test_alpha_depends_on_batch_size(world, ref, moved):
    ns = [1, 4, 16, 64, 256, 1024]
    a_ref = [float(toy.exact_moments(world, world.theta_ref, n).alpha) for n in ns]
    a_mov = [float(toy.exact_moments(world, moved[0], n).alpha) for n in ns]
    assert np.all(np.diff(a_ref) > 0) and np.all(np.diff(a_mov) <= 0)
    # n -> infinity: bias alone decides, clip((||b_e||^2 - b_t.b_e) / ||b_t - b_e||^2)
    for theta, m in ((world.theta_ref, ref), moved):
        lim = np.clip((m.bias_e @ (m.bias_e - m.bias_t)) / np.sum((m.bias_t - m.bias_e) ** 2), 0, 1)
        big = toy.exact_moments(world, theta, 1e12)
        # variance terms are scaled by 1e-12, i.e. negligible against the O(1e-3) biases
        assert float(big.alpha) == pytest.approx(lim, abs=1e-6)
    assert a_ref[-1] > 0.9 and a_mov[-1] == 0.0  # 0.92 at n = 1024 (-> 1); 0 at moved


def test_monte_carlo_agrees_with_exact(ref, samples):
    m, n = ref, N_MC
    gt, ge = samples.grads_t, samples.grads_e
    for alpha in (0.0, m.alpha, 0.5, 1.0):
        err = np.sum((alpha * gt + (1 - alpha) * ge - m.mu) ** 2, axis=1)
        mc, se = err.mean(), err.std(ddof=1) / np.sqrt(n)
        exact = mixing_mse(alpha, m.mse_t, m.mse_e, m.cross)
        # z-test: squared errors are heavy tailed (up to ~90), so compare within 4 SE
        assert abs(mc - float(exact)) < 4 * se, (alpha, mc, se, float(exact))
    # cross term tr Sigma_te = E[(g_t - E g_t).(g_e - E g_e)]
    prod = np.sum((gt - m.mean_t) * (ge - m.mean_e), axis=1)
    assert abs(prod.mean() - m.trace_cov_te) < 4 * prod.std(ddof=1) / np.sqrt(n)


def test_sampled_gradient_is_grad_of_trace_loss(world):
    theta = world.theta_ref + 0.3 * np.sin(np.arange(78.0))  # off the reference
    s = toy.sample_gradients(world, theta, jax.random.PRNGKey(1), N_MC)
    k = 5
    with x64_scope():
        x, (a, b), (rp, rn) = s.prompts[:k], s.pairs_t[:k].T, s.traces[:k].T
        ref_lp = world.log_joint_ref

        def loss(t):
            lp = toy.log_joint(world, t)
            return trace_dpo_loss(
                lp[x, rp, a], lp[x, rn, b], ref_lp[x, rp, a], ref_lp[x, rn, b], beta=1.0
            ).losses.sum()

        g = jax.grad(loss)(jnp.asarray(theta))
    # per-example autodiff gradients of the library loss sum to the sampled g_t
    np.testing.assert_allclose(g, s.grads_t[:k].sum(0), rtol=1e-10, atol=1e-13)


def test_online_estimator_converges_to_alpha_star(world, ref, samples):
    m = ref
    gt = samples.grads_t.reshape(200, 64, -1)
    ge = samples.grads_e.reshape(200, 64, -1)
    state = init_mixing_state()
    for k in range(200):  # rows share the prompt -> paired cross term
        state = update_mixing_state(state, gt[k], ge[k], decay=0.99, paired=True)
    for n, exact in (
        (1, m.alpha),
        (16, float(toy.exact_moments(world, world.theta_ref, 16).alpha)),
    ):
        est = float(online_mixing_weight(state, n, n).alpha)
        # exact 0.1865 (n=1), 0.2839 (n=16); model (A) is exact at theta_ref, so only
        # moment noise remains. Over 6 other seeds the estimate's sd was 0.001 (n=1) and
        # 0.004 (n=16); tolerance 0.02 is > 4 sd
        assert est == pytest.approx(exact, abs=0.02), (n, est, exact)


def test_sgd_exact_matches_gradient_descent(world):
    res = toy.run_sgd(world, jax.random.PRNGKey(0), method="exact", step_size=2.0, n_steps=5)
    theta = toy.gradient_descent(world, n_steps=5, step_size=2.0)
    np.testing.assert_allclose(res.theta, theta, rtol=1e-12, atol=1e-14)
    assert float(res.objective[-1]) == pytest.approx(float(toy.objective(world, theta)), 1e-12)
    mu0 = np.asarray(toy.true_gradient(world, world.theta_ref))
    assert float(res.grad_sq_norm[0]) == pytest.approx(mu0 @ mu0, rel=1e-12)
