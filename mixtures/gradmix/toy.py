r"""Exact, enumerable test bed for mixing trace and empty-trace preference gradients.

A small log-linear "reasoning policy" in which every quantity of BVPO (Zhu et al. 2025,
arXiv 2510.05095) can be enumerated: prompts ``x in {0..3}``, answers ``y in {0..4}``,
reasoning traces over ``{G, B}`` of length 0..6 (127 traces, index 0 is the empty trace),
generated autoregressively with actions ``{G, B, STOP}`` (STOP forced at length 6). The
answer depends on the trace through ``s(r) = 0`` (empty) else ``1 + min(#G, 3)``. 78
parameters laid out row-major as ``tok[4, 3], len[7, 3], ansx[4, 5], anss[5, 5]``; action
logits ``tok[x] + len[l]``, answer logits ``ansx[x] + anss[s]`` (``ansx`` is shared by the
empty and the traced mode, like one language model with two modes).

Everything is computed by enumeration in float64: the marginal DPO objective ``L_m``, its
gradient ``mu``, and mean, bias, covariance trace and cross-covariance of the trace-based
estimator ``g_t`` (BVPO Eq. 1, traces drawn from the reference posterior) and of the
empty-trace estimator ``g_e``.

Examples
--------
>>> world = make_world()
>>> m = exact_moments(world, world.theta_ref)
>>> round(float(m.alpha), 4), round(float(m.mse_t), 3), round(float(m.mse_e), 3)
(0.1865, 3.527, 0.954)
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from mixtures.base import random_state_to_generator, to_numpy, x64_scope
from mixtures.gradmix._core import (
    BIAS_MODELS,
    debias_moments,
    ema_update,
    moments_core,
    plug_in_weight_core,
    weight_from_mse_terms,
    zero_mixing_state,
)

__all__ = [
    "ExactMoments",
    "GradientSamples",
    "SGDResult",
    "ToyWorld",
    "enumerate_traces",
    "exact_moments",
    "gradient_descent",
    "log_joint",
    "make_world",
    "objective",
    "run_sgd",
    "sample_gradients",
    "smoothness_constant",
    "true_gradient",
]

N_PROMPTS = 4
N_ANSWERS = 5
MAX_LEN = 6
N_ACTIONS = 3  # G, B, STOP
N_SUMMARIES = 5
N_PARAMS = N_PROMPTS * N_ACTIONS + (MAX_LEN + 1) * N_ACTIONS + N_PROMPTS * N_ANSWERS + 25
SGD_METHODS = ("exact", "trace", "empty", "fixed", "oracle", "online")


class ToyWorld(NamedTuple):
    """The reference policy and the preference-data distributions (a pytree of arrays).

    Attributes
    ----------
    theta_ref : ndarray of shape (78,)
        Reference-policy parameters.
    rewards : ndarray of shape (4, 5)
        Distinct answer rewards per prompt.
    action_counts : ndarray of shape (127, 7, 3)
        ``action_counts[r, l, a] = 1`` if trace ``r`` takes action ``a`` at step ``l``.
    summaries : ndarray of shape (127,)
        ``s(r)`` in 0..4.
    prompt_probs : ndarray of shape (4,)
        ``P(x)`` (uniform).
    pairs_trace, pairs_empty : ndarray of shape (4, 5, 5)
        ``P(y+, y- | x)`` of the best and worst of ``n`` draws (conditioned on
        ``y+ != y-``) from ``pi_ref(y|x)`` (D_t) and from ``pi_ref(y|x, empty)`` (D_e).
    posterior_ref : ndarray of shape (4, 127, 5)
        ``pi_ref(r | x, y)``: the D_t traces.
    log_joint_ref : ndarray of shape (4, 127, 5)
        ``log pi_ref(r, y | x)``.
    beta : ndarray
        DPO inverse temperature.
    """

    theta_ref: Array
    rewards: Array
    action_counts: Array
    summaries: Array
    prompt_probs: Array
    pairs_trace: Array
    pairs_empty: Array
    posterior_ref: Array
    log_joint_ref: Array
    beta: Array


class ExactMoments(NamedTuple):
    """Exact moments of ``g_t`` and ``g_e`` at one ``theta`` (minibatch of ``batch_size``).

    Attributes
    ----------
    objective : ndarray
        ``L_m(theta)``.
    mu : ndarray of shape (78,)
        True marginal gradient.
    mean_t, mean_e, bias_t, bias_e : ndarray of shape (78,)
        ``E g``, ``E g - mu``.
    trace_cov_t, trace_cov_e, trace_cov_te : ndarray
        Per-example ``tr Sigma_t``, ``tr Sigma_e``, ``tr Sigma_te``.
    trace_cov_t_traces : ndarray
        Part of ``tr Sigma_t`` due to trace sampling, ``E tr Cov(g_t | x, y+-)``.
    mse_t, mse_e, cross : ndarray
        ``A(n)``, ``B(n)``, ``C(n)`` for the minibatch mean of ``n = batch_size``.
    alpha_unclipped, alpha, mse_alpha : ndarray
        The paper's ``alpha_unc = (B - C) / (A + B - 2C)``, ``alpha*`` (clipped) and
        ``MSE(alpha*)``.
    """

    objective: Array
    mu: Array
    mean_t: Array
    mean_e: Array
    bias_t: Array
    bias_e: Array
    trace_cov_t: Array
    trace_cov_e: Array
    trace_cov_te: Array
    trace_cov_t_traces: Array
    mse_t: Array
    mse_e: Array
    cross: Array
    alpha_unclipped: Array
    alpha: Array
    mse_alpha: Array


class GradientSamples(NamedTuple):
    """Independent single-example draws of both estimators.

    Attributes
    ----------
    grads_t, grads_e : ndarray of shape (n_samples, 78)
        ``g_t`` and ``g_e`` (the two share the prompt ``x`` of their row).
    prompts : ndarray of shape (n_samples,)
    pairs_t, pairs_e : ndarray of shape (n_samples, 2)
        ``(y+, y-)`` of the D_t and D_e pair.
    traces : ndarray of shape (n_samples, 2)
        ``(r+, r-)`` trace indices of the D_t pair.
    """

    grads_t: Array
    grads_e: Array
    prompts: Array
    pairs_t: Array
    pairs_e: Array
    traces: Array


class SGDResult(NamedTuple):
    """Trajectory of :func:`run_sgd`.

    Attributes
    ----------
    objective : ndarray of shape (n_steps + 1,)
        ``L_m(theta_k)``.
    grad_sq_norm : ndarray of shape (n_steps,)
        ``||grad L_m(theta_k)||^2`` (the left side of Theorem 3 is its mean).
    alpha : ndarray of shape (n_steps,)
        Weight of ``g_t`` used at each step (1 for ``trace``, 0 for ``empty``, NaN for
        ``exact``).
    theta : ndarray of shape (78,)
        Final parameters.
    """

    objective: Array
    grad_sq_norm: Array
    alpha: Array
    theta: Array


def enumerate_traces() -> list[tuple[int, ...]]:
    """All 127 traces as action tuples (0 = G, 1 = B), ordered by length; index 0 is empty.

    Examples
    --------
    >>> traces = enumerate_traces()
    >>> len(traces), traces[0], traces[1], traces[-1]
    (127, (), (0,), (1, 1, 1, 1, 1, 1))
    """
    return [t for n in range(MAX_LEN + 1) for t in itertools.product((0, 1), repeat=n)]


def _trace_tables() -> tuple[np.ndarray, np.ndarray]:
    traces = enumerate_traces()
    counts = np.zeros((len(traces), MAX_LEN + 1, N_ACTIONS))
    summaries = np.zeros(len(traces), dtype=np.int64)
    for i, tr in enumerate(traces):
        for step, action in enumerate(tr):
            counts[i, step, action] = 1.0
        if len(tr) < MAX_LEN:  # STOP is forced (probability 1) at the maximal length
            counts[i, len(tr), 2] = 1.0
        summaries[i] = 0 if len(tr) == 0 else 1 + min(tr.count(0), 3)
    return counts, summaries


def _unpack(theta: Array) -> tuple[Array, Array, Array, Array]:
    tok = theta[:12].reshape(N_PROMPTS, N_ACTIONS)
    lens = theta[12:33].reshape(MAX_LEN + 1, N_ACTIONS)
    ansx = theta[33:53].reshape(N_PROMPTS, N_ANSWERS)
    anss = theta[53:78].reshape(N_SUMMARIES, N_ANSWERS)
    return tok, lens, ansx, anss


def _log_joint(action_counts, summaries, theta) -> Array:
    tok, lens, ansx, anss = _unpack(theta)
    act = jax.nn.log_softmax(tok[:, None, :] + lens[None, :, :], axis=-1)  # (x, l, a)
    lp_trace = jnp.einsum("rla,xla->xr", action_counts, act)
    ans = jax.nn.log_softmax(ansx[:, None, :] + anss[None, :, :], axis=-1)  # (x, s, y)
    return lp_trace[:, :, None] + ans[:, summaries, :]


def log_joint(world: ToyWorld, theta: Any) -> Array:
    r"""``log pi_theta(r, y | x)`` for every prompt, trace and answer, shape (4, 127, 5).

    .. math:: \log\pi(r, y|x) = \sum_l \log\pi(a_l|x, l) + \log\pi(y|x, s(r))

    Examples
    --------
    >>> world = make_world()
    >>> lp = log_joint(world, world.theta_ref)
    >>> import numpy as np
    >>> np.allclose(np.exp(lp).sum(axis=(1, 2)), 1.0)
    True
    """
    with x64_scope():
        theta = jnp.asarray(theta, jnp.float64)
        return jax.jit(_log_joint)(world.action_counts, world.summaries, theta)


def _best_worst_pairs(probs: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """P(y+, y-) of the best and worst of ``n`` i.i.d. draws, conditioned on y+ != y-."""
    rank = np.argsort(np.argsort(rewards))  # 0 = worst
    by_rank = np.empty_like(probs)
    by_rank[rank] = probs
    c = np.concatenate([[0.0], np.cumsum(by_rank)])  # c[k] = P(rank < k)

    def mass(lo: int, hi: int) -> float:  # P(all n draws have rank in [lo, hi])
        return max(c[hi + 1] - c[lo], 0.0) ** n if hi >= lo else 0.0

    out = np.zeros((len(probs), len(probs)))
    answer = np.argsort(rank)  # answer[k] = y with rank k
    for a in range(len(probs)):
        for b in range(a):
            p = mass(b, a) - mass(b, a - 1) - mass(b + 1, a) + mass(b + 1, a - 1)
            out[answer[a], answer[b]] = p
    return out / out.sum()


def make_world(reason_gain: float = 0.35, *, seed: int = 0, beta: float = 1.0) -> ToyWorld:
    """Build the reference world, deterministic in ``seed``.

    Draws, with ``numpy.random.default_rng(seed)`` in this order: rewards
    ``R[x] = permutation(5)``; ``tok ~ N(0, 0.5^2)`` with ``tok[:, STOP] -= 1.5``;
    ``len[:, STOP] = linspace(-1, 1, 7)``; ``ansx ~ N(0, 0.7^2)``; ``anss ~ N(0, 0.3^2)``
    plus ``reason_gain * (s - 1) * (meanR - mean(meanR))`` for ``s >= 1`` (reasoning
    shifts mass towards better answers). Pairs are best/worst of 5 draws.

    Parameters
    ----------
    reason_gain : float, default=0.35
        How much reasoning helps (1.5 gives a world where reasoning matters more).
    seed : int, default=0
        Seed of the NumPy generator (any ``random_state`` accepted by
        :func:`mixtures.base.random_state_to_generator`).
    beta : float, default=1.0
        DPO inverse temperature.

    Returns
    -------
    ToyWorld
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0; got {beta}.")
    rng = random_state_to_generator(seed)
    rewards = np.stack([rng.permutation(N_ANSWERS) for _ in range(N_PROMPTS)])
    tok = rng.normal(0.0, 0.5, size=(N_PROMPTS, N_ACTIONS))
    tok[:, 2] -= 1.5
    lens = np.zeros((MAX_LEN + 1, N_ACTIONS))
    lens[:, 2] = np.linspace(-1.0, 1.0, MAX_LEN + 1)
    ansx = rng.normal(0.0, 0.7, size=(N_PROMPTS, N_ANSWERS))
    anss = rng.normal(0.0, 0.3, size=(N_SUMMARIES, N_ANSWERS))
    mean_r = rewards.mean(axis=0)
    for s in range(1, N_SUMMARIES):
        anss[s] += reason_gain * (s - 1) * (mean_r - mean_r.mean())
    theta = np.concatenate([tok.ravel(), lens.ravel(), ansx.ravel(), anss.ravel()])
    counts, summaries = _trace_tables()
    with x64_scope():
        lp = np.asarray(jax.jit(_log_joint)(jnp.asarray(counts), jnp.asarray(summaries), theta))
    marginal = np.exp(lp).sum(axis=1)  # pi_ref(y | x)
    empty = np.exp(lp[:, 0, :] - lp[:, 0, :].max(1, keepdims=True))
    empty /= empty.sum(1, keepdims=True)  # pi_ref(y | x, empty)
    pairs_t = np.stack([_best_worst_pairs(marginal[x], rewards[x], 5) for x in range(N_PROMPTS)])
    pairs_e = np.stack([_best_worst_pairs(empty[x], rewards[x], 5) for x in range(N_PROMPTS)])
    posterior = np.exp(lp) / marginal[:, None, :]
    return ToyWorld(
        theta_ref=theta,
        rewards=rewards,
        action_counts=counts,
        summaries=summaries,
        prompt_probs=np.full(N_PROMPTS, 1.0 / N_PROMPTS),
        pairs_trace=pairs_t,
        pairs_empty=pairs_e,
        posterior_ref=posterior,
        log_joint_ref=lp,
        beta=np.asarray(float(beta)),
    )


def _objective(world: ToyWorld, theta: Array) -> Array:
    lp = _log_joint(world.action_counts, world.summaries, theta)
    delta = jax.nn.logsumexp(lp, axis=1) - jax.nn.logsumexp(world.log_joint_ref, axis=1)
    margins = world.beta * (delta[:, :, None] - delta[:, None, :])  # (x, y+, y-)
    losses = jax.nn.softplus(-margins)
    return jnp.einsum("x,xab,xab->", world.prompt_probs, world.pairs_trace, losses)


def objective(world: ToyWorld, theta: Any) -> float:
    r"""Marginal DPO objective on the D_t pair distribution.

    .. math::

        L_m(\theta) = -E_{x, y^\pm}\log\sigma\Big(\beta\log\frac{\pi(y^+|x)}{\pi_{ref}(y^+|x)}
                      - \beta\log\frac{\pi(y^-|x)}{\pi_{ref}(y^-|x)}\Big)

    Examples
    --------
    >>> world = make_world()
    >>> round(objective(world, world.theta_ref), 6)  # log 2 at the reference
    0.693147
    """
    with x64_scope():
        return float(jax.jit(_objective)(world, jnp.asarray(theta, jnp.float64)))


def true_gradient(world: ToyWorld, theta: Any) -> np.ndarray:
    """``mu = grad L_m(theta)`` by automatic differentiation, shape (78,)."""
    with x64_scope():
        grad = jax.jit(jax.grad(_objective, argnums=1))
        return np.asarray(grad(world, jnp.asarray(theta, jnp.float64)))


def _lp_and_jacobian(world: ToyWorld, theta: Array) -> tuple[Array, Array]:
    f = partial(_log_joint, world.action_counts, world.summaries)
    return f(theta), jax.jacfwd(f)(theta)  # (x, r, y), (x, r, y, d)


def _exact_core(world, theta, lp, G, batch_size, *, shared_pairs: bool) -> ExactMoments:
    beta, px = world.beta, world.prompt_probs
    delta = (lp - world.log_joint_ref).transpose(0, 2, 1)  # (x, y, r)
    GT = G.transpose(0, 2, 1, 3)  # (x, y, r, d)
    q = world.posterior_ref.transpose(0, 2, 1)  # (x, y, r)
    pt = world.pairs_trace
    pe = pt if shared_pairs else world.pairs_empty
    # g_t = w (G[r+, y+] - G[r-, y-]), w = -beta sigmoid(-m); enumerate (y+, y-, r+, r-)
    m = beta * (delta[:, :, None, :, None] - delta[:, None, :, None, :])  # (x, a, b, r, s)
    w = -beta * jax.nn.sigmoid(-m)
    qq = q[:, :, None, :, None] * q[:, None, :, None, :]
    W = pt[:, :, :, None, None] * qq * w
    mean_t_x = jnp.einsum("xar,xard->xd", W.sum((2, 4)), GT) - jnp.einsum(
        "xbs,xbsd->xd", W.sum((1, 3)), GT
    )
    V = pt[:, :, :, None, None] * qq * w**2
    kd = jnp.sum(GT**2, axis=-1)  # (x, y, r)
    H = jnp.einsum("xabrs,xbsd->xard", V, GT)
    sq_t_x = (
        jnp.einsum("xar,xar->x", V.sum((2, 4)), kd)
        + jnp.einsum("xbs,xbs->x", V.sum((1, 3)), kd)
        - 2 * jnp.sum(H * GT, axis=(1, 2, 3))
    )
    # conditional mean given the pair (for the trace-sampling share and shared pairs)
    Wq = qq * w
    mean_t_pair = jnp.einsum("xabr,xard->xabd", Wq.sum(4), GT) - jnp.einsum(
        "xabs,xbsd->xabd", Wq.sum(3), GT
    )
    # g_e = w_e (G[empty, y'+] - G[empty, y'-])
    Ge = G[:, 0]  # (x, y, d)
    de = delta[:, :, 0]
    we = -beta * jax.nn.sigmoid(-beta * (de[:, :, None] - de[:, None, :]))
    ge_pair = we[..., None] * (Ge[:, :, None, :] - Ge[:, None, :, :])  # (x, a, b, d)
    mean_e_x = jnp.einsum("xab,xabd->xd", pe, ge_pair)
    sq_e_x = jnp.einsum("xab,xab->x", pe, jnp.sum(ge_pair**2, -1))
    if shared_pairs:
        dot_x = jnp.einsum("xab,xabd,xabd->x", pt, mean_t_pair, ge_pair)
    else:  # independent pairs given the prompt
        dot_x = jnp.sum(mean_t_x * mean_e_x, -1)
    mean_t, mean_e = px @ mean_t_x, px @ mean_e_x
    mu = jax.grad(_objective, argnums=1)(world, theta)
    tr_t = px @ sq_t_x - mean_t @ mean_t
    tr_e = px @ sq_e_x - mean_e @ mean_e
    tr_te = px @ dot_x - mean_t @ mean_e
    tr_t_traces = px @ sq_t_x - jnp.einsum("x,xab,xab->", px, pt, jnp.sum(mean_t_pair**2, -1))
    bt, be = mean_t - mu, mean_e - mu
    n = batch_size
    mse_t, mse_e, cross = bt @ bt + tr_t / n, be @ be + tr_e / n, bt @ be + tr_te / n
    mix = weight_from_mse_terms(mse_t, mse_e, cross, 0.0, 1.0)
    return ExactMoments(
        _objective(world, theta), mu, mean_t, mean_e, bt, be, tr_t, tr_e, tr_te, tr_t_traces,
        mse_t, mse_e, cross, mix.alpha_unclipped, mix.alpha, mix.mse,
    )  # fmt: skip


@partial(jax.jit, static_argnames=("shared_pairs",))
def _exact_jit(world, theta, batch_size, *, shared_pairs: bool) -> ExactMoments:
    lp, G = _lp_and_jacobian(world, theta)
    return _exact_core(world, theta, lp, G, batch_size, shared_pairs=shared_pairs)


def exact_moments(
    world: ToyWorld, theta: Any, batch_size: Any = 1, *, shared_pairs: bool = False
) -> ExactMoments:
    r"""Exact bias, covariance and MSE terms of ``g_t`` and ``g_e`` by enumeration.

    Sums over ``(x, y+, y-, r+, r-)`` with posterior trace weights (a 4 x 5 x 5 x 127 x 127
    tensor) and the Gram matrix of ``G = d log pi(r, y|x) / d theta``; the cross term
    ``E[g_t . g_e] = sum_x P(x) E[g_t|x] . E[g_e|x]`` for independent pairs. For a
    minibatch mean of ``n`` examples the covariance terms are divided by ``n``:

    .. math::

        A(n) = \|b_t\|^2 + \operatorname{tr}\Sigma_t/n,\;
        B(n) = \|b_e\|^2 + \operatorname{tr}\Sigma_e/n,\;
        C(n) = b_t^\top b_e + \operatorname{tr}\Sigma_{te}/n,\;
        \alpha^\star = \operatorname{clip}\frac{B - C}{A + B - 2C}

    Parameters
    ----------
    world : ToyWorld
    theta : array-like of shape (78,)
    batch_size : int, default=1
        Minibatch size ``n`` (traced).
    shared_pairs : bool, default=False
        Evaluate ``g_e`` on the D_t pairs instead of its own D_e pairs.

    Returns
    -------
    ExactMoments
    """
    with x64_scope():
        theta = jnp.asarray(theta, jnp.float64)
        out = _exact_jit(world, theta, jnp.asarray(batch_size, jnp.float64),
                         shared_pairs=shared_pairs)  # fmt: skip
    return to_numpy(out)


def _sample(world, lp, G, key, n, shared_pairs):
    beta = world.beta
    kx, kp, kr1, kr2, ke = jax.random.split(key, 5)
    x = jax.random.categorical(kx, jnp.log(world.prompt_probs), shape=(n,))
    pair = jax.random.categorical(kp, jnp.log(world.pairs_trace[x].reshape(n, -1)))
    a, b = pair // N_ANSWERS, pair % N_ANSWERS
    logq = jnp.log(world.posterior_ref)  # (x, r, y)
    r_pos = jax.random.categorical(kr1, logq[x, :, a])
    r_neg = jax.random.categorical(kr2, logq[x, :, b])
    if shared_pairs:
        ea, eb = a, b
    else:
        pair_e = jax.random.categorical(ke, jnp.log(world.pairs_empty[x].reshape(n, -1)))
        ea, eb = pair_e // N_ANSWERS, pair_e % N_ANSWERS
    delta = lp - world.log_joint_ref
    # grad of -log sigmoid(m) = -beta sigmoid(-m) (grad log pi(+) - grad log pi(-))
    m_t = beta * (delta[x, r_pos, a] - delta[x, r_neg, b])
    g_t = (-beta * jax.nn.sigmoid(-m_t))[:, None] * (G[x, r_pos, a] - G[x, r_neg, b])
    m_e = beta * (delta[x, 0, ea] - delta[x, 0, eb])
    g_e = (-beta * jax.nn.sigmoid(-m_e))[:, None] * (G[x, 0, ea] - G[x, 0, eb])
    return GradientSamples(
        g_t, g_e, x, jnp.stack([a, b], 1), jnp.stack([ea, eb], 1), jnp.stack([r_pos, r_neg], 1)
    )


@partial(jax.jit, static_argnames=("n_samples", "shared_pairs"))
def _sample_jit(world, theta, key, *, n_samples: int, shared_pairs: bool) -> GradientSamples:
    lp, G = _lp_and_jacobian(world, theta)
    return _sample(world, lp, G, key, n_samples, shared_pairs)


def sample_gradients(
    world: ToyWorld, theta: Any, key: Array, n_samples: int, *, shared_pairs: bool = False
) -> GradientSamples:
    r"""Draw ``n_samples`` independent examples of ``g_t`` and ``g_e`` (same prompt per row).

    ``x ~ P(x)``; ``(y+, y-) ~`` D_t pairs, ``r+- ~ pi_ref(r | x, y+-)``; ``(y'+, y'-) ~`` D_e
    pairs (or the D_t pair if ``shared_pairs``). Each gradient is the DPO gradient

    .. math:: g = -\beta\,\sigma(-m)\,(\nabla\log\pi(+) - \nabla\log\pi(-)).

    Parameters
    ----------
    world : ToyWorld
    theta : array-like of shape (78,)
    key : jax PRNG key
    n_samples : int
    shared_pairs : bool, default=False

    Returns
    -------
    GradientSamples
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
    with x64_scope():
        theta = jnp.asarray(theta, jnp.float64)
        out = _sample_jit(world, theta, key, n_samples=n_samples, shared_pairs=shared_pairs)
    return to_numpy(out)


def gradient_descent(
    world: ToyWorld, n_steps: int = 60, step_size: float = 2.0, theta: Any = None
) -> Array:
    """Exact gradient descent on ``L_m``, by default from ``theta_ref``.

    60 steps of size 2.0 give a policy away from the reference, where ``g_t`` is biased.
    """
    with x64_scope():
        theta = world.theta_ref if theta is None else jnp.asarray(theta, jnp.float64)
        out = _gd_jit(world, theta, jnp.asarray(step_size, jnp.float64), n_steps=n_steps)
    return np.asarray(out)


@partial(jax.jit, static_argnames=("n_steps",))
def _gd_jit(world, theta, step_size, *, n_steps: int):
    grad = jax.grad(_objective, argnums=1)

    def body(th, _):
        return th - step_size * grad(world, th), None

    return jax.lax.scan(body, theta, None, length=n_steps)[0]


def smoothness_constant(world: ToyWorld, theta: Any = None) -> float:
    """Largest absolute Hessian eigenvalue of ``L_m`` (smoothness ``L``); default theta_ref."""
    with x64_scope():
        theta = world.theta_ref if theta is None else jnp.asarray(theta, jnp.float64)
        hess = jax.jit(jax.hessian(_objective, argnums=1))(world, theta)
        return float(np.max(np.abs(np.linalg.eigvalsh(np.asarray(hess)))))


@partial(
    jax.jit,
    static_argnames=("method", "n_steps", "batch_size", "probe_size", "bias_model"),
)
def _sgd_jit(world, theta0, key, step_size, alpha_fixed, decay, *, method, n_steps,
             batch_size, probe_size, bias_model):  # fmt: skip
    grad = jax.grad(_objective, argnums=1)
    zero = jnp.zeros((), theta0.dtype)
    state0 = zero_mixing_state(theta0.dtype)

    def body(carry, k):
        theta, state = carry
        lp, G = _lp_and_jacobian(world, theta)
        mu = grad(world, theta)
        kb, kp = jax.random.split(k)
        batch = _sample(world, lp, G, kb, batch_size, False)
        gt, ge = batch.grads_t.mean(0), batch.grads_e.mean(0)
        if method == "exact":
            alpha, g = jnp.asarray(jnp.nan, theta.dtype), mu
        else:
            if method == "trace":
                alpha = jnp.ones((), theta.dtype)
            elif method == "empty":
                alpha = zero
            elif method == "fixed":
                alpha = alpha_fixed
            elif method == "oracle":
                bs = jnp.asarray(batch_size, theta.dtype)
                alpha = _exact_core(world, theta, lp, G, bs, shared_pairs=False).alpha
            else:  # online: running moments, rows share the prompt -> paired
                probe = batch if batch_size >= 2 else _sample(world, lp, G, kp, probe_size, False)
                one = jnp.ones((), theta.dtype)
                new = moments_core(probe.grads_t, probe.grads_e, None, one, one, paired=True)
                state = ema_update(state, new, decay)
                nb = jnp.asarray(batch_size, theta.dtype)
                alpha = plug_in_weight_core(
                    debias_moments(state), nb, nb, 0.0, 1.0, bias_model=bias_model
                ).alpha
            g = alpha * gt + (1 - alpha) * ge
        out = (_objective(world, theta), mu @ mu, alpha)
        return (theta - step_size * g, state), out

    keys = jax.random.split(key, n_steps)
    (theta, _), (obj, gsq, alphas) = jax.lax.scan(body, (theta0, state0), keys)
    obj = jnp.concatenate([obj, _objective(world, theta)[None]])
    return SGDResult(obj, gsq, alphas, theta)


def run_sgd(
    world: ToyWorld,
    key: Array,
    *,
    method: str,
    step_size: float,
    n_steps: int = 150,
    batch_size: int = 1,
    alpha: float = 0.5,
    bias_model: str = "unbiased_trace",
    probe_size: int = 8,
    decay: float = 0.9,
    theta: Any = None,
) -> SGDResult:
    r"""Plain SGD on the toy with one of the gradient estimators (the setting of BVPO Theorem 3).

    .. math:: \theta_{k+1} = \theta_k - \eta\, g_c(\theta_k)

    Parameters
    ----------
    world : ToyWorld
    key : jax PRNG key
    method : {"exact", "trace", "empty", "fixed", "oracle", "online"}
        ``exact``: ``mu``; ``trace``/``empty``: ``g_t``/``g_e``; ``fixed``: weight ``alpha``;
        ``oracle``: the exact batch-aware ``alpha_k*`` at every step; ``online``: the
        running-moment estimate (:func:`~mixtures.gradmix.online_mixing_weight` with
        ``bias_model``), from the update batch if ``batch_size >= 2`` else from an extra
        probe batch of ``probe_size`` examples.
    step_size : float
        ``eta``.
    n_steps, batch_size : int, default=150, 1
    alpha : float, default=0.5
        Weight for ``fixed``.
    bias_model : {"unbiased_trace", "variance_only", "reference"}, default="unbiased_trace"
        Bias model of ``online`` (see :func:`~mixtures.gradmix.mixing_weight_from_moments`);
        ``"reference"`` has no reference gradient here, so its bias term is 0.
    probe_size : int, default=8
    decay : float, default=0.9
        EMA decay of the online moments.
    theta : array-like of shape (78,), optional
        Start (default ``theta_ref``).

    Returns
    -------
    SGDResult
    """
    if method not in SGD_METHODS:
        raise ValueError(f"method must be one of {SGD_METHODS}; got {method!r}.")
    if bias_model not in BIAS_MODELS:
        raise ValueError(f"bias_model must be one of {BIAS_MODELS}; got {bias_model!r}.")
    if batch_size < 1 or n_steps < 1 or probe_size < 2:
        raise ValueError(
            f"need batch_size >= 1, n_steps >= 1, probe_size >= 2; got {batch_size}, "
            f"{n_steps}, {probe_size}."
        )
    with x64_scope():
        theta = world.theta_ref if theta is None else jnp.asarray(theta, jnp.float64)
        f64 = partial(jnp.asarray, dtype=jnp.float64)
        out = _sgd_jit(
            world, theta, key, f64(step_size), f64(alpha), f64(decay), method=method,
            n_steps=n_steps, batch_size=batch_size, probe_size=probe_size, bias_model=bias_model,
        )  # fmt: skip
    return to_numpy(out)
