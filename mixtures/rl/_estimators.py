"""Actor losses for the mixture policy: the PMOE frequency gradient, Gumbel-softmax and
the score function, plus the unimodal tanh-Gaussian SAC loss.

Each loss takes the policy distribution for a batch of states, a critic ``q_fn(obs, act)``
returning ``min(Q1, Q2)`` of shape (N,), the temperature ``alpha`` and a PRNG key, and returns
an :class:`ActorLoss`. The functions are pure and are traced inside the jitted SAC update;
``q_fn`` closes over critic parameters that are constants for the actor gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mixtures.rl._policy import MixturePolicy

__all__ = [
    "ESTIMATORS",
    "ActorLoss",
    "evaluate_candidates",
    "frequency_actor_loss",
    "frequency_weight_loss",
    "gaussian_actor_loss",
    "gumbel_actor_loss",
    "score_actor_loss",
    "select_winners",
]

ESTIMATORS = ("frequency", "gumbel", "score")

QFn = Callable[[jax.Array, jax.Array], jax.Array]


class ActorLoss(NamedTuple):
    """Result of an actor loss.

    Attributes
    ----------
    loss : scalar
        Total loss to differentiate (policy loss + weighted routing loss).
    policy_loss : scalar
        The SAC part, ``mean(alpha * log pi - Q)``.
    weight_loss : scalar
        The routing (mixing-weight) loss; 0 for the unimodal policy.
    log_prob : array of shape (B,)
        The log-probability entering the temperature loss (per-primitive for the
        frequency and score estimators, the mixture's for Gumbel).
    chosen : array of shape (B,)
        Primitive used per state (winner ``k*``, sampled ``k`` or Gumbel argmax).
    """

    loss: jax.Array
    policy_loss: jax.Array
    weight_loss: jax.Array
    log_prob: jax.Array
    chosen: jax.Array


def evaluate_candidates(q_fn: QFn, obs: jax.Array, actions: jax.Array) -> jax.Array:
    """Critic values of K candidate actions per state: obs (B, S), actions (B, K, A) -> (B, K).

    The observations are repeated to (B*K, S) so the critic runs once (PMOE note, section 8).
    """
    B, K, A = actions.shape
    q = q_fn(jnp.repeat(obs, K, axis=0), actions.reshape(B * K, A))
    return q.reshape(B, K)


def select_winners(q: jax.Array) -> jax.Array:
    r"""Winning primitive :math:`k^*(s) = \arg\max_k Q_k(s)` (no gradient), shape (B,)."""
    return jnp.argmax(jax.lax.stop_gradient(q), axis=-1)


def frequency_weight_loss(weights: jax.Array, winners: jax.Array) -> jax.Array:
    r"""Routing loss of PMOE: mean-reduced squared error to the winner's one-hot.

    .. math::

        L_w = \frac{1}{BK}\sum_{s,k}\big(w_k(s) - \mathbb 1[k = k^*(s)]\big)^2

    (PMOE note, section 3, step 5; rlkit-pmoe HEAD d5649d6.) For fixed ``s`` its minimiser
    is :math:`w_k(s) = P(k^* = k \mid s)`, the winning frequencies.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> float(frequency_weight_loss(jnp.array([[0.5, 0.5]]), jnp.array([0])))
    0.25
    """
    one_hot = jax.nn.one_hot(winners, weights.shape[-1], dtype=weights.dtype)
    return jnp.mean((weights - one_hot) ** 2)


def _take(x: jax.Array, idx: jax.Array) -> jax.Array:
    """``x[b, idx[b]]`` for x of shape (B, K, ...)."""
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 1))
    return jnp.take_along_axis(x, idx, axis=1)[:, 0]


def gaussian_actor_loss(
    policy: MixturePolicy, q_fn: QFn, obs: jax.Array, alpha, key: jax.Array
) -> ActorLoss:
    r"""Plain SAC actor loss for the unimodal tanh-Gaussian (the mixture's first primitive).

    .. math::

        L_\pi = \mathrm{mean}_s\big[\alpha \log\pi(a|s) - \min_i Q_i(s, a)\big],\quad
        a = \tanh(\mu(s) + \sigma(s)\,\varepsilon)
    """
    loc, scale = policy.loc[:, 0], policy.scale[:, 0]
    unimodal = MixturePolicy(
        jnp.zeros(loc.shape[:-1] + (1,), loc.dtype), loc[:, None], scale[:, None]
    )
    eps = jax.random.normal(key, loc.shape, loc.dtype)
    u = loc + scale * eps
    log_prob = unimodal.log_prob_pre_tanh(u)
    q = q_fn(obs, jnp.tanh(u))
    policy_loss = jnp.mean(alpha * log_prob - q)
    zero = jnp.zeros((), loc.dtype)
    return ActorLoss(policy_loss, policy_loss, zero, log_prob, jnp.zeros(loc.shape[0], jnp.int32))


def frequency_actor_loss(
    policy: MixturePolicy,
    q_fn: QFn,
    obs: jax.Array,
    alpha,
    key: jax.Array,
    weight_coef=1.0,
) -> ActorLoss:
    r"""PMOE's frequency approximate gradient (PMOE note, section 3, steps 1-5).

    .. math::

        a_k = \tanh(\mu_k + \sigma_k\varepsilon_k),\quad
        k^* = \arg\max_k \min_i Q_i(s, a_k)

        L = \mathrm{mean}_s\big[\alpha \log\pi_{k^*}(a_{k^*}|s) - Q(s, a_{k^*})\big]
            + c_w\,\mathrm{mean}_{s,k}\big(w_k(s) - \mathbb 1[k=k^*]\big)^2

    Losing primitives receive no policy gradient at that state; the score used for the
    choice is Q only (no entropy term).
    """
    draw = policy.rsample_components(key)
    q = evaluate_candidates(q_fn, obs, draw.action)
    winners = select_winners(q)
    log_prob = _take(draw.log_prob, winners)
    q_win = _take(q, winners)
    policy_loss = jnp.mean(alpha * log_prob - q_win)
    weight_loss = frequency_weight_loss(policy.weights, winners)
    return ActorLoss(
        policy_loss + weight_coef * weight_loss, policy_loss, weight_loss, log_prob, winners
    )


def gumbel_actor_loss(
    policy: MixturePolicy,
    q_fn: QFn,
    obs: jax.Array,
    alpha,
    key: jax.Array,
    temperature=1.0,
    hard: bool = True,
) -> ActorLoss:
    r"""Gumbel-softmax reparameterisation of the primitive choice (PMOE note, section 6).

    .. math::

        y = \mathrm{softmax}\big((z(s) + g)/\tau\big),\ g \sim \mathrm{Gumbel}(0, 1),\quad
        u = \textstyle\sum_k y_k u_k,\quad a = \tanh(u)

        L_\pi = \mathrm{mean}_s\big[\alpha\log\pi_{\mathrm{mix}}(a|s) - Q(s, a)\big]

    The relaxed sample is mixed in pre-tanh space so that the mixture density at ``a`` is
    exact. With ``hard=True`` (straight-through) the forward pass uses
    ``one_hot(argmax y)``, i.e. an exact draw from the mixture (Gumbel-max), and the
    backward pass the relaxed ``y``.
    """
    key_g, key_eps = jax.random.split(key)
    draw = policy.rsample_components(key_eps)
    g = jax.random.gumbel(key_g, policy.logits.shape, policy.logits.dtype)
    y = jax.nn.softmax((policy.logits + g) / temperature, axis=-1)
    chosen = jnp.argmax(y, axis=-1)
    if hard:
        y_hard = jax.nn.one_hot(chosen, y.shape[-1], dtype=y.dtype)
        y = y_hard + y - jax.lax.stop_gradient(y)
    u = jnp.sum(y[..., None] * draw.pre_tanh, axis=-2)
    log_prob = policy.log_prob_pre_tanh(u)
    q = q_fn(obs, jnp.tanh(u))
    policy_loss = jnp.mean(alpha * log_prob - q)
    zero = jnp.zeros((), policy_loss.dtype)
    return ActorLoss(policy_loss, policy_loss, zero, log_prob, chosen)


def score_actor_loss(
    policy: MixturePolicy,
    q_fn: QFn,
    obs: jax.Array,
    alpha,
    key: jax.Array,
    weight_coef=1.0,
) -> ActorLoss:
    r"""Score-function (likelihood-ratio) gradient for the mixing weights (note, section 6).

    .. math::

        k \sim \mathrm{Cat}(w(s)),\quad
        L = \mathrm{mean}_s\big[\alpha\log\pi_k(a_k|s) - Q(s, a_k)\big]
            - c_w\,\mathrm{mean}_s\big[\log w_k(s)\,\mathrm{sg}(A_k(s))\big]

        A_k = Q(s, a_k) - \alpha\log\pi_k(a_k|s) - b(s),\quad
        b(s) = \textstyle\sum_j w_j(s)\big(Q(s, a_j) - \alpha\log\pi_j(a_j|s)\big)

    The means and scales get the reparameterised gradient on the sampled primitive. The
    baseline includes the entropy term so that it is the expectation of the return being
    differentiated (the note's ``b = sum_j w_j Q_j`` is also unbiased; ours has lower
    variance when ``alpha`` is large).
    """
    key_k, key_eps = jax.random.split(key)
    draw = policy.rsample_components(key_eps)
    q = evaluate_candidates(q_fn, obs, draw.action)
    chosen = jax.random.categorical(key_k, policy.logits)
    log_prob = _take(draw.log_prob, chosen)
    policy_loss = jnp.mean(alpha * log_prob - _take(q, chosen))
    soft_q = jax.lax.stop_gradient(q - alpha * draw.log_prob)
    baseline = jnp.sum(jax.lax.stop_gradient(policy.weights) * soft_q, axis=-1)
    advantage = _take(soft_q, chosen) - baseline
    weight_loss = -jnp.mean(_take(policy.log_weights, chosen) * advantage)
    return ActorLoss(
        policy_loss + weight_coef * weight_loss, policy_loss, weight_loss, log_prob, chosen
    )
