"""Actor losses for the mixture policy: the PMOE frequency gradient, Gumbel-softmax and
the score function, plus the unimodal tanh-Gaussian SAC loss.

The frequency approximate gradient is PMOE's estimator (Ren et al. 2021, arXiv 2104.09122),
implemented as in the official code (rlkit-pmoe, ``PMOESACTrainer.train_from_torch``); the
Gumbel-softmax and score-function estimators are the paper's comparison arms.

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
    "ROUTINGS",
    "ENTROPIES",
    "ActorLoss",
    "boltzmann_routing_target",
    "evaluate_candidates",
    "frequency_actor_loss",
    "frequency_weight_loss",
    "mixture_log_prob_of_candidates",
    "gaussian_actor_loss",
    "gumbel_actor_loss",
    "score_actor_loss",
    "select_winners",
]

ESTIMATORS = ("frequency", "gumbel", "score")
ROUTINGS = ("argmax", "boltzmann")
ENTROPIES = ("primitive", "mixture")

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

    The observations are repeated to (B*K, S) so the critic runs once on all candidates.
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

    (the mean-reduced form of the official code since rlkit-pmoe commit d5649d6; not a
    cross-entropy.) For fixed ``s`` its minimiser is :math:`w_k(s) = P(k^* = k \mid s)`, the
    winning frequencies.

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


def boltzmann_routing_target(soft_q: jax.Array, alpha) -> jax.Array:
    r"""Soft routing target: the Boltzmann distribution over the candidates' soft values.

    .. math::

        t_k(s) = \operatorname{softmax}_k\big(\hat V_k(s) / \alpha\big),\qquad
        \hat V_k = Q(s, a_k) - \alpha \log\pi_k(a_k \mid s)

    It is the probability that primitive ``k`` wins when each candidate's soft value is
    perturbed by independent ``alpha * Gumbel(0, 1)`` noise (Gumbel-max), so regressing
    ``w`` on it has the same minimiser as regressing on the one-hot of that perturbed
    winner, with less variance. The minimiser ``w_k ~ exp(V_k / alpha)`` maximises
    ``sum_k w_k V_k + alpha H(w)``, the soft objective of a mixture whose primitives do
    not overlap; as ``alpha -> 0`` it becomes PMOE's hard winner.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> boltzmann_routing_target(jnp.array([[1.0, 1.0]]), 0.1).tolist()
    [[0.5, 0.5]]
    """
    return jax.nn.softmax(jax.lax.stop_gradient(soft_q) / alpha, axis=-1)


def mixture_log_prob_of_candidates(policy: MixturePolicy, pre_tanh: jax.Array) -> jax.Array:
    r"""Mixture log density of each primitive's candidate, weights held constant.

    .. math::

        \log\pi_{\mathrm{mix}}(a_k|s) = \log\sum_j \mathrm{sg}(w_j(s))\,
            \mathcal N(u_k;\mu_j, \sigma_j) - \sum_d \log(1 - \tanh^2 u_{kd})

    ``pre_tanh`` has shape (B, K, A); returns (B, K). Gradients reach every primitive's
    mean and scale (through ``u_k`` and through the densities), not the mixing head.
    """
    detached = MixturePolicy(jax.lax.stop_gradient(policy.logits), policy.loc, policy.scale)
    # Batch axis of the policy against the candidate axis: (B, 1, ...) vs (B, K, A).
    expanded = MixturePolicy(
        detached.logits[:, None], detached.loc[:, None], detached.scale[:, None]
    )
    return expanded.log_prob_pre_tanh(pre_tanh)


def frequency_actor_loss(
    policy: MixturePolicy,
    q_fn: QFn,
    obs: jax.Array,
    alpha,
    key: jax.Array,
    weight_coef=1.0,
    routing: str = "argmax",
    entropy: str = "primitive",
) -> ActorLoss:
    r"""PMOE's frequency approximate gradient, as in the official code.

    .. math::

        a_k = \tanh(\mu_k + \sigma_k\varepsilon_k),\quad
        k^* = \arg\max_k \min_i Q_i(s, a_k)

        L = \mathrm{mean}_s\big[\alpha \log\pi_{k^*}(a_{k^*}|s) - Q(s, a_{k^*})\big]
            + c_w\,\mathrm{mean}_{s,k}\big(w_k(s) - \mathbb 1[k=k^*]\big)^2

    Losing primitives receive no policy gradient at that state; with the defaults
    (``routing="argmax"``, ``entropy="primitive"``: the official code) the score used for
    the choice is Q only and the entropy bonus is the winner's own.

    Without the entropy term this is the reparameterised gradient of the best-of-K value
    :math:`\mathbb E[\max_k Q(s, a_k)]`, which does not reward covering several optima:
    on a task with two equally good actions one sharp primitive on one optimum already
    attains it, a second, wide primitive still wins with lucky samples that land on a peak
    (where :math:`\partial Q/\partial a = 0`, so it never moves) and keeps a routing
    weight equal to its win rate, which ``"sample"``-mode acting then spends on its bad
    mean.

    Maximum-entropy correction (``routing="boltzmann"``, ``entropy="mixture"``; ours, not
    in the paper's code): the objective of SAC for the mixture,
    :math:`\mathbb E_{k\sim w,\,a\sim\pi_k}[Q(s,a) - \alpha\log\pi_{\mathrm{mix}}(a|s)]`.

    - ``entropy="mixture"``: the SAC loss of the winner uses
      :math:`\log\pi_{\mathrm{mix}}(a_{k^*}|s)` (weights held constant,
      :func:`mixture_log_prob_of_candidates`). Its gradient pushes primitives apart when
      they overlap, since overlapping primitives lower the mixture entropy.
    - ``routing="boltzmann"``: for non-overlapping primitives the objective is
      :math:`\sum_k w_k (V_k - \alpha \log w_k)`, :math:`V_k = \mathbb E_{\pi_k}[Q -
      \alpha\log\pi_k]`, maximised by :math:`w_k \propto \exp(V_k/\alpha)`. So ``w`` is
      regressed on :math:`t = \mathrm{softmax}_k((Q_k - \alpha\log\pi_k(a_k|s))/\alpha)`
      (:func:`boltzmann_routing_target`) and the trained primitive is the Gumbel-max
      winner :math:`k^* = \arg\max_k(\log t_k + g_k)`, :math:`g_k\sim\mathrm{Gumbel}(0,1)`,
      whose frequency is :math:`t` (so the regression keeps the "frequency" meaning). Tied
      primitives keep equal weights; as :math:`\alpha\to 0` it is the hard winner again.

    Parameters
    ----------
    policy : MixturePolicy
        Batch shape (B,).
    q_fn : callable
        ``q_fn(obs, act) -> min(Q1, Q2)`` of shape (N,).
    obs : array of shape (B, S)
    alpha : scalar
        Temperature.
    key : PRNG key
    weight_coef : scalar, default=1.0
        :math:`c_w`.
    routing : {"argmax", "boltzmann"}, default="argmax"
    entropy : {"primitive", "mixture"}, default="primitive"

    Returns
    -------
    ActorLoss
    """
    if routing not in ROUTINGS or entropy not in ENTROPIES:
        raise ValueError(
            f"routing must be one of {ROUTINGS} and entropy one of {ENTROPIES}; got "
            f"routing={routing!r}, entropy={entropy!r}."
        )
    key_eps, key_g = jax.random.split(key) if routing == "boltzmann" else (key, None)
    draw = policy.rsample_components(key_eps)
    own_log_prob = draw.log_prob
    if entropy == "mixture":
        draw = draw._replace(log_prob=mixture_log_prob_of_candidates(policy, draw.pre_tanh))
    q = evaluate_candidates(q_fn, obs, draw.action)
    if routing == "argmax":
        winners = select_winners(q)
        weight_loss = frequency_weight_loss(policy.weights, winners)
    else:
        # Soft value of each primitive's candidate with its OWN density: the maximiser of
        # sum_k w_k (V_k - alpha log w_k) is w_k ~ exp(V_k / alpha) (see the docstring).
        soft_q = jax.lax.stop_gradient(q - alpha * own_log_prob)
        target = boltzmann_routing_target(soft_q, alpha)
        g = jax.random.gumbel(key_g, q.shape, q.dtype)
        winners = jnp.argmax(jnp.log(target) + g, axis=-1)
        weight_loss = jnp.mean((policy.weights - target) ** 2)
    log_prob = _take(draw.log_prob, winners)
    q_win = _take(q, winners)
    policy_loss = jnp.mean(alpha * log_prob - q_win)
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
    r"""Gumbel-softmax reparameterisation of the primitive choice (a comparison arm of PMOE).

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
    r"""Score-function (likelihood-ratio) gradient for the mixing weights (a PMOE comparison arm).

    .. math::

        k \sim \mathrm{Cat}(w(s)),\quad
        L = \mathrm{mean}_s\big[\alpha\log\pi_k(a_k|s) - Q(s, a_k)\big]
            - c_w\,\mathrm{mean}_s\big[\log w_k(s)\,\mathrm{sg}(A_k(s))\big]

        A_k = Q(s, a_k) - \alpha\log\pi_k(a_k|s) - b(s),\quad
        b(s) = \textstyle\sum_j w_j(s)\big(Q(s, a_j) - \alpha\log\pi_j(a_j|s)\big)

    The means and scales get the reparameterised gradient on the sampled primitive. The
    baseline includes the entropy term so that it is the expectation of the return being
    differentiated (the plain ``b = sum_j w_j Q_j`` is also unbiased; this one has lower
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
