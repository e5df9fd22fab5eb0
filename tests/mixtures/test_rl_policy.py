"""MixturePolicy and the PMOE gradient estimators against NumPy/SciPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

from mixtures.base import x64_scope
from mixtures.rl import (
    MixturePolicy,
    frequency_actor_loss,
    frequency_weight_loss,
    gumbel_actor_loss,
    mixture_log_prob_of_candidates,
    score_actor_loss,
    tanh_log_det_jacobian,
)
from mixtures.rl._nets import apply_policy, init_policy


def numpy_mixture_log_prob(logits, loc, scale, a):
    """Reference: u = artanh(a), log N(u) per dim (scipy), minus log(1 - a^2), mixed."""
    u = np.arctanh(a)
    comp = stats.norm.logpdf(u[..., None, :], loc, scale).sum(-1)
    comp = comp - np.log1p(-(a**2)).sum(-1)[..., None]
    log_w = logits - logsumexp(logits, axis=-1, keepdims=True)
    return logsumexp(log_w + comp, axis=-1), comp


@jax.jit
def _log_probs(logits, loc, scale, a):
    pi = MixturePolicy(logits, loc, scale)
    return pi.log_prob(a), pi.component_log_prob(a), pi.log_prob_pre_tanh(jnp.arctanh(a))


@pytest.mark.parametrize("K, A", [(1, 1), (3, 2)])
@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_log_prob_matches_numpy_reference(K, A, seed):
    B = 6
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, K))
    loc = rng.normal(size=(B, K, A))
    scale = np.exp(rng.normal(scale=0.5, size=(B, K, A)))
    a = np.tanh(rng.normal(scale=1.5, size=(B, A)))
    ref, ref_comp = numpy_mixture_log_prob(logits, loc, scale, a)
    with x64_scope():
        got, got_comp, got_pre = map(np.asarray, _log_probs(logits, loc, scale, a))
    # float64 end to end: the only error is rounding in artanh / softplus (~1e-13).
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_comp, ref_comp, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got_pre, ref, rtol=1e-10, atol=1e-10)


def test_tanh_jacobian_is_stable_and_exact():
    u = np.linspace(-30.0, 30.0, 13)
    with x64_scope():
        got = np.asarray(tanh_log_det_jacobian(jnp.asarray(u)))
    # log(1 - tanh^2) = log(sech^2) = -2 log cosh(u); closed form via logaddexp.
    ref = -2.0 * (np.logaddexp(u, -u) - np.log(2.0))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(got))


def test_sample_histogram_matches_density():
    """Monte Carlo: bin frequencies of 200k draws vs the integrated density per bin."""
    logits = jnp.array([0.3, -0.3])
    loc = jnp.array([[-1.0], [0.8]])
    scale = jnp.array([[0.4], [0.6]])
    n = 200_000
    edges = np.linspace(-1.0, 1.0, 21)
    fine = np.linspace(-1 + 1e-9, 1 - 1e-9, 20_001)

    @jax.jit
    def draw_and_density(logits, loc, scale, grid):
        pi = MixturePolicy(logits, loc, scale)
        return pi.sample(jax.random.PRNGKey(0), (n,))[:, 0], jnp.exp(pi.log_prob(grid[:, None]))

    with x64_scope():
        draws, dens = map(np.asarray, draw_and_density(logits, loc, scale, fine))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(fine))])
    prob = np.diff(np.interp(edges, fine, cdf))
    assert abs(cdf[-1] - 1.0) < 1e-3  # the density integrates to one (trapezoid error)
    counts, _ = np.histogram(draws, edges)
    z = (counts - n * prob) / np.sqrt(n * prob * (1 - prob) + 1e-12)
    # 20 binomial z-scores: |z| < 4.5 fails with probability < 1e-4 under the null.
    assert np.max(np.abs(z)) < 4.5


def test_rsample_components_log_prob_is_each_primitives_own_density():
    rng = np.random.default_rng(1)
    logits, loc = rng.normal(size=(4, 3)), rng.normal(size=(4, 3, 2))
    scale = np.exp(rng.normal(scale=0.3, size=(4, 3, 2)))
    with x64_scope():
        draw = jax.jit(lambda *p: MixturePolicy(*p).rsample_components(jax.random.PRNGKey(3)))(
            logits, loc, scale
        )
        a = np.asarray(draw.action)
    # Reference: primitive k's own TanhNormal density at its own sample a_k.
    ref = np.stack(
        [numpy_mixture_log_prob(logits, loc, scale, a[:, k])[1][:, k] for k in range(3)], 1
    )
    np.testing.assert_allclose(np.asarray(draw.log_prob), ref, rtol=1e-9, atol=1e-9)


def test_invalid_shapes_raise():
    with pytest.raises(ValueError, match="logits must have shape"):
        MixturePolicy(jnp.zeros(3), jnp.zeros((2, 1)), jnp.ones((2, 1)))
    with pytest.raises(ValueError, match="loc must have shape"):
        MixturePolicy(jnp.zeros(2), jnp.zeros(2), jnp.ones(2))


def fixed_q(obs, act):
    """A fixed critic with its maximum at a = 0.2."""
    return -((act[:, 0] - 0.2) ** 2)


def test_frequency_weights_converge_to_winning_frequencies():
    """Fixed primitives and a fixed critic: minimising the PMOE loss over the mixing logits
    drives w to P(k* = k), estimated independently by NumPy Monte Carlo."""
    loc = np.array([[-0.5], [0.1], [0.6]], np.float32)
    scale = np.array([[0.5], [0.3], [0.4]], np.float32)
    rng = np.random.default_rng(0)
    n_mc = 1_000_000
    a = np.tanh(loc[None, :, 0] + scale[None, :, 0] * rng.normal(size=(n_mc, 3)))
    winners = np.argmax(-((a - 0.2) ** 2), axis=1)
    ref = np.bincount(winners, minlength=3) / n_mc  # SE < 5e-4
    B = 512
    obs = jnp.zeros((B, 1))
    opt = optax.adam(optax.exponential_decay(0.05, 100, 0.5))

    def step(carry, key):
        logits, opt_state = carry

        def loss_fn(z):
            pi = MixturePolicy(
                jnp.broadcast_to(z, (B, 3)),
                jnp.broadcast_to(loc, (B, 3, 1)),
                jnp.broadcast_to(scale, (B, 3, 1)),
            )
            return frequency_actor_loss(pi, fixed_q, obs, 0.1, key).loss

        grads = jax.grad(loss_fn)(logits)
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(logits, updates), opt_state), None

    logits = jnp.zeros(3)
    keys = jax.random.split(jax.random.PRNGKey(0), 600)
    logits = jax.jit(lambda c, k: jax.lax.scan(step, c, k)[0][0])((logits, opt.init(logits)), keys)
    w = np.asarray(jax.nn.softmax(logits))
    # The minimiser is ref exactly; the remaining error is the SGD noise of 512-sample
    # one-hot targets after the learning rate decays ~64-fold (std ~ 0.003) plus float32.
    np.testing.assert_allclose(w, ref, atol=0.02)
    assert ref.min() > 0.1  # the reference is non-degenerate (all three primitives win)


@pytest.mark.parametrize("routing, entropy", [("argmax", "primitive"), ("boltzmann", "mixture")])
def test_routing_and_policy_gradients_are_separated(routing, entropy):
    """The mixing head gets no gradient from L_pi; the trunk none from L_w (official code),
    also with the maximum-entropy correction (weights held constant in log pi_mix)."""
    params = init_policy(jax.random.PRNGKey(0), 2, 1, 3, (8,))
    obs = jax.random.normal(jax.random.PRNGKey(1), (16, 2))

    def losses(p):
        out = apply_policy(p, obs, 1)
        pi = MixturePolicy.from_log_scale(out.logits, out.loc, out.log_scale)
        res = frequency_actor_loss(
            pi, fixed_q, obs, 0.2, jax.random.PRNGKey(2), 1.0, routing, entropy
        )
        return res.policy_loss, res.weight_loss

    g_pi, g_w = jax.jit(jax.jacrev(losses))(params)
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree_util.tree_leaves(g_pi["logits"]))
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree_util.tree_leaves(g_w["trunk"]))
    assert float(jnp.max(jnp.abs(g_w["logits"][0]))) > 0.0
    assert float(jnp.max(jnp.abs(g_pi["trunk"][0][0]))) > 0.0


def test_mixture_log_prob_of_candidates_matches_reference():
    rng = np.random.default_rng(2)
    B, K, A = 4, 3, 2
    logits, loc = rng.normal(size=(B, K)), rng.normal(size=(B, K, A))
    scale = np.exp(rng.normal(scale=0.3, size=(B, K, A)))
    u = rng.normal(size=(B, K, A))
    with x64_scope():
        got = jax.jit(lambda *p: mixture_log_prob_of_candidates(MixturePolicy(*p[:3]), p[3]))(
            logits, loc, scale, u
        )
    # Reference: the full mixture density (scipy) at each primitive's candidate a_k.
    ref = np.stack(
        [numpy_mixture_log_prob(logits, loc, scale, np.tanh(u[:, k]))[0] for k in range(K)], 1
    )
    # float64; |u| < 4 so the artanh round trip of the reference costs < 1e-12.
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-9, atol=1e-9)


def test_boltzmann_winners_follow_the_soft_value_distribution():
    """Boltzmann routing: the Gumbel-max winners are distributed as
    E_a[softmax((Q(a_k) - alpha log pi_k(a_k)) / alpha)], computed by NumPy Monte Carlo."""
    alpha, B = 0.2, 40_000
    loc = np.array([[-0.5], [0.1], [0.6]])
    scale = np.array([[0.5], [0.3], [0.4]])
    pi = MixturePolicy(
        jnp.zeros((B, 3)),
        jnp.broadcast_to(jnp.asarray(loc, jnp.float32), (B, 3, 1)),
        jnp.broadcast_to(jnp.asarray(scale, jnp.float32), (B, 3, 1)),
    )
    res = jax.jit(
        lambda pi, key: frequency_actor_loss(
            pi, fixed_q, jnp.zeros((B, 1)), alpha, key, 1.0, "boltzmann"
        )
    )(pi, jax.random.PRNGKey(0))
    freq = np.bincount(np.asarray(res.chosen), minlength=3) / B
    rng = np.random.default_rng(0)
    u = loc[None, :, 0] + scale[None, :, 0] * rng.normal(size=(200_000, 3))
    a = np.tanh(u)
    log_pi = stats.norm.logpdf(u, loc[None, :, 0], scale[None, :, 0]) - np.log1p(-(a**2))
    soft = -((a - 0.2) ** 2) - alpha * log_pi
    t = np.exp(soft / alpha - logsumexp(soft / alpha, axis=1, keepdims=True))
    ref = t.mean(0)
    # binomial SE of 40k winners <= 0.0025 (the 200k-sample reference adds < 0.002): 5 SE.
    np.testing.assert_allclose(freq, ref, atol=0.0125)
    assert ref.min() > 0.05  # every primitive wins sometimes


def test_frequency_weight_loss_closed_form():
    w = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    k = np.array([1, 0])
    ref = np.mean((w - np.eye(3)[k]) ** 2)
    assert float(frequency_weight_loss(jnp.asarray(w), jnp.asarray(k))) == pytest.approx(ref)


def _policy_batch(logits):
    B = logits.shape[0]
    loc = jnp.broadcast_to(jnp.array([[-0.8], [0.0], [0.7]]), (B, 3, 1))
    return MixturePolicy(logits, loc, jnp.full((B, 3, 1), 0.3))


def test_straight_through_gumbel_draws_from_the_mixture():
    """Hard Gumbel-max choices are Cat(w): frequencies over 40k states vs w (binomial SE)."""
    B = 40_000
    logits = jnp.broadcast_to(jnp.log(jnp.array([0.2, 0.5, 0.3])), (B, 3))
    res = jax.jit(gumbel_actor_loss, static_argnums=1)(
        _policy_batch(logits), fixed_q, jnp.zeros((B, 1)), 0.1, jax.random.PRNGKey(0)
    )
    freq = np.bincount(np.asarray(res.chosen), minlength=3) / B
    # binomial SE <= sqrt(0.25 / 40000) = 0.0025; 5 SE.
    np.testing.assert_allclose(freq, [0.2, 0.5, 0.3], atol=0.0125)


def test_score_function_gradient_is_unbiased():
    """E_k[score gradient wrt logits] equals the exact gradient of
    -sum_k w_k sg(Q_k - alpha log pi_k) on the same candidates (Monte Carlo over keys)."""
    alpha = 0.3
    z0 = jnp.array([[0.4, -0.2, 0.1]])

    def score_grad(key):
        def f(z):
            return score_actor_loss(
                _policy_batch(z), fixed_q, jnp.zeros((1, 1)), alpha, key
            ).weight_loss

        return jax.grad(f)(z0)[0]

    def exact_grad(key):
        _, key_eps = jax.random.split(key)
        draw = _policy_batch(z0).rsample_components(key_eps)
        soft_q = fixed_q(None, draw.action[0]) - alpha * draw.log_prob[0]
        return jax.grad(lambda z: -jnp.sum(jax.nn.softmax(z) * soft_q))(z0[0])

    keys = jax.random.split(jax.random.PRNGKey(0), 20_000)
    diff = np.asarray(jax.jit(lambda k: jax.vmap(score_grad)(k) - jax.vmap(exact_grad)(k))(keys))
    se = diff.std(0) / np.sqrt(len(keys))
    # Mean difference within 5 standard errors of zero in each coordinate.
    assert np.all(np.abs(diff.mean(0)) < 5 * se + 1e-6)
