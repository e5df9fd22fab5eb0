"""Soft actor-critic with the unimodal tanh-Gaussian or the PMOE mixture policy.

The mixture agent follows the official PMOE code (rlkit-pmoe, ``PMOESACTrainer``; Ren et al.
2021, arXiv 2104.09122): one reparameterised candidate per primitive, the critic's best
candidate trains its primitive and the mixing weights, the critic target samples a primitive
by the mixing weights.

Functional core: :func:`init_sac_state` and :func:`sac_update` (one jitted ``lax.scan`` over
pre-sampled minibatches: critic step, actor step, temperature step, Polyak averaging). Only
structural choices are static (policy kind, estimator, straight-through flag, temperature
tuning); the discount, Polyak rate, target entropy, reward scale, routing-loss weight, Gumbel
temperature and learning rates are traced, so changing them never recompiles.

Shell: :class:`SAC`, which runs the gymnasium interaction loop in Python/NumPy.
"""

from __future__ import annotations

import time
from functools import partial
from numbers import Integral, Real
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from mixtures.base import check_finite_result, random_state_to_generator, random_state_to_key
from mixtures.rl._actor_losses import (
    ENTROPIES,
    ESTIMATORS,
    ROUTINGS,
    frequency_actor_loss,
    gaussian_actor_loss,
    gumbel_actor_loss,
    score_actor_loss,
)
from mixtures.rl._agent import Agent, random_state_to_seed
from mixtures.rl._buffer import ReplayBuffer, Transition
from mixtures.rl._nets import apply_critic, apply_policy, init_critic, init_policy
from mixtures.rl._policy import MixturePolicy

__all__ = [
    "SAC",
    "SACHyper",
    "SACMetrics",
    "SACState",
    "init_sac_state",
    "policy_distribution",
    "sac_act",
    "sac_update",
]

# Adam with the learning rate in its state, so it is a traced value (no recompilation).
_adam = optax.inject_hyperparams(optax.adam)(learning_rate=3e-4)


class SACState(NamedTuple):
    """Parameters and optimiser states of a SAC agent (a pytree)."""

    actor: dict
    critic: tuple
    critic_target: tuple
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any


class SACHyper(NamedTuple):
    """Traced continuous hyperparameters of :func:`sac_update`."""

    gamma: jax.Array
    tau: jax.Array
    target_entropy: jax.Array
    reward_scale: jax.Array
    weight_coef: jax.Array
    gumbel_temperature: jax.Array


class SACMetrics(NamedTuple):
    """Per-gradient-step diagnostics (stacked over the scan)."""

    critic_loss: jax.Array
    actor_loss: jax.Array
    weight_loss: jax.Array
    alpha: jax.Array
    log_prob: jax.Array
    chosen_counts: jax.Array
    mean_weights: jax.Array


def _init_adam(params, learning_rate: float):
    state = _adam.init(params)
    hp = dict(state.hyperparams)
    hp["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    return state._replace(hyperparams=hp)


def init_sac_state(
    key: jax.Array,
    obs_dim: int,
    act_dim: int,
    *,
    n_components: int | None = None,
    hidden_sizes=(256, 256),
    learning_rate: float = 3e-4,
    init_alpha: float = 1.0,
) -> SACState:
    """Initialise actor, twin critics, target critics, temperature and Adam states.

    ``n_components=None`` builds the unimodal tanh-Gaussian policy; an int builds the
    mixture. The key is split (actor, critic) in the same way for both, so the unimodal
    agent and the K = 1 mixture start from identical networks.
    """
    key_actor, key_critic = jax.random.split(key)
    actor = init_policy(key_actor, obs_dim, act_dim, n_components, tuple(hidden_sizes))
    critic = init_critic(key_critic, obs_dim, act_dim, tuple(hidden_sizes))
    log_alpha = jnp.log(jnp.asarray(init_alpha, jnp.float32))
    return SACState(
        actor=actor,
        critic=critic,
        critic_target=jax.tree_util.tree_map(jnp.copy, critic),
        log_alpha=log_alpha,
        actor_opt=_init_adam(actor, learning_rate),
        critic_opt=_init_adam(critic, learning_rate),
        alpha_opt=_init_adam(log_alpha, learning_rate),
    )


def policy_distribution(actor: dict, obs: jax.Array) -> MixturePolicy:
    """The policy at observations (B, S) as a :class:`MixturePolicy` (K = 1 if unimodal)."""
    K = actor["logits"][1].shape[0] if "logits" in actor else 1
    act_dim = actor["mean"][1].shape[0] // K
    out = apply_policy(actor, obs, act_dim)
    return MixturePolicy.from_log_scale(out.logits, out.loc, out.log_scale)


def _min_q(critic, obs, act):
    q1, q2 = apply_critic(critic, obs, act)
    return jnp.minimum(q1, q2)


def _next_action(actor, obs, key, policy_kind: str, estimator: str, entropy: str = "primitive"):
    """Action and log-probability at the next state for the critic target.

    As in the official code the primitive is sampled, ``k' ~ Cat(w(s'))``, and the entropy
    term uses its own ``log pi_k'``; the mixture density is used instead where the actor
    loss regularises the mixture entropy (Gumbel, or ``entropy="mixture"``).
    """
    pi = policy_distribution(actor, obs)
    key_k, key_eps = jax.random.split(key)
    if policy_kind == "gaussian":
        loc, scale = pi.loc[:, 0], pi.scale[:, 0]
        u = loc + scale * jax.random.normal(key_eps, loc.shape, loc.dtype)
        return jnp.tanh(u), pi.log_prob_pre_tanh(u)
    a, (k, u) = pi.sample_with_intermediates(key)
    if estimator == "gumbel" or (estimator == "frequency" and entropy == "mixture"):
        # The Gumbel arm regularises the mixture entropy, so its target uses log pi_mix.
        return a, pi.log_prob_pre_tanh(u)
    comp = pi.component_log_prob_pre_tanh(u)
    return a, jnp.take_along_axis(comp, k[:, None], axis=1)[:, 0]


def _actor_loss(actor, critic, obs, alpha, key, hyper, static):
    policy_kind, estimator, gumbel_hard, _, routing, entropy = static
    pi = policy_distribution(actor, obs)
    q_fn = partial(_min_q, critic)
    if policy_kind == "gaussian":
        return gaussian_actor_loss(pi, q_fn, obs, alpha, key)
    if estimator == "frequency":
        return frequency_actor_loss(pi, q_fn, obs, alpha, key, hyper.weight_coef, routing, entropy)
    if estimator == "gumbel":
        return gumbel_actor_loss(pi, q_fn, obs, alpha, key, hyper.gumbel_temperature, gumbel_hard)
    return score_actor_loss(pi, q_fn, obs, alpha, key, hyper.weight_coef)


def _sac_step(state: SACState, batch: Transition, key, hyper: SACHyper, static):
    policy_kind, estimator, gumbel_hard, autotune, _, entropy = static
    key_target, key_actor = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha)

    # Critic: y = r_scale r + gamma (1 - done) [min Q_targ(s', a') - alpha log pi(a'|s')].
    next_a, next_logp = _next_action(
        state.actor, batch.next_obs, key_target, policy_kind, estimator, entropy
    )
    q_next = _min_q(state.critic_target, batch.next_obs, next_a) - alpha * next_logp
    y = hyper.reward_scale * batch.reward + hyper.gamma * (1.0 - batch.done) * q_next
    y = jax.lax.stop_gradient(y)

    def critic_loss_fn(critic):
        q1, q2 = apply_critic(critic, batch.obs, batch.action)
        return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)

    critic_loss, grads = jax.value_and_grad(critic_loss_fn)(state.critic)
    updates, critic_opt = _adam.update(grads, state.critic_opt, state.critic)
    critic = optax.apply_updates(state.critic, updates)

    # Actor on the updated critic (constants for this gradient).
    def actor_loss_fn(actor):
        out = _actor_loss(actor, critic, batch.obs, alpha, key_actor, hyper, static)
        return out.loss, out

    (_, aux), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor)
    updates, actor_opt = _adam.update(grads, state.actor_opt, state.actor)
    actor = optax.apply_updates(state.actor, updates)

    # Temperature: L = -log_alpha * sg(log pi + target_entropy), with the log pi of the
    # actor loss (the winner's own density in the official code).
    log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    if autotune:
        target = jax.lax.stop_gradient(jnp.mean(aux.log_prob) + hyper.target_entropy)
        grad = -target
        updates, alpha_opt = _adam.update(grad, state.alpha_opt, state.log_alpha)
        log_alpha = optax.apply_updates(state.log_alpha, updates)

    critic_target = jax.tree_util.tree_map(
        lambda t, s: (1.0 - hyper.tau) * t + hyper.tau * s, state.critic_target, critic
    )
    pi = policy_distribution(state.actor, batch.obs)
    K = pi.n_components
    metrics = SACMetrics(
        critic_loss=critic_loss,
        actor_loss=aux.policy_loss,
        weight_loss=aux.weight_loss,
        alpha=alpha,
        log_prob=jnp.mean(aux.log_prob),
        chosen_counts=jnp.zeros(K, jnp.int32).at[aux.chosen].add(1),
        mean_weights=jnp.mean(pi.weights, axis=0),
    )
    new_state = SACState(actor, critic, critic_target, log_alpha, actor_opt, critic_opt, alpha_opt)
    return new_state, metrics


@partial(
    jax.jit,
    static_argnames=("policy_kind", "estimator", "gumbel_hard", "autotune", "routing", "entropy"),
)
def sac_update(
    state: SACState,
    batches: Transition,
    key: jax.Array,
    hyper: SACHyper,
    *,
    policy_kind: str = "mixture",
    estimator: str = "frequency",
    gumbel_hard: bool = True,
    autotune: bool = True,
    routing: str = "argmax",
    entropy: str = "primitive",
) -> tuple[SACState, SACMetrics]:
    r"""Run ``n`` SAC gradient steps on minibatches stacked along the leading axis.

    Per step (the official PMOE-SAC trainer): critic MSE to

    .. math::

        y = r_{\mathrm{scale}}\, r + \gamma (1 - d)\big[\min_i Q^{\mathrm{targ}}_i(s', a')
            - \alpha \log\pi_{k'}(a'|s')\big],\quad k' \sim \mathrm{Cat}(w(s'))

    then one Adam step on the estimator's actor loss, the temperature loss
    :math:`-\log\alpha\,\mathrm{sg}(\log\pi + \bar H)` and Polyak averaging with ``tau``.

    Parameters
    ----------
    state : SACState
    batches : Transition
        Arrays of shape (n, batch_size, ...).
    key : PRNG key
    hyper : SACHyper
    policy_kind : {"gaussian", "mixture"}
    estimator : {"frequency", "gumbel", "score"}
        Ignored for the Gaussian policy.
    gumbel_hard : bool
        Straight-through Gumbel-softmax.
    autotune : bool
        Learn the temperature.
    routing : {"argmax", "boltzmann"}
        Routing target of the frequency estimator (see :func:`frequency_actor_loss`).
    entropy : {"primitive", "mixture"}
        Log-density in the frequency estimator's SAC and temperature losses and in the
        critic target: the winner's own ``log pi_k`` (official) or the mixture's.

    Returns
    -------
    state : SACState
    metrics : SACMetrics
        Stacked over the ``n`` steps.
    """
    static = (policy_kind, estimator, gumbel_hard, autotune, routing, entropy)
    n = batches.reward.shape[0]
    keys = jax.random.split(key, n)

    def body(carry, xs):
        batch, k = xs
        return _sac_step(carry, batch, k, hyper, static)

    return jax.lax.scan(body, state, (batches, keys))


@partial(jax.jit, static_argnames=("mode",))
def sac_act(actor: dict, obs: jax.Array, key: jax.Array, mode: str = "stochastic"):
    """Normalised actions for observations (B, S); returns ``(actions, next_key)``.

    Modes: ``"stochastic"`` (``k ~ Cat(w)``, ``a ~ TanhNormal_k``), ``"sample"`` (the
    official "deterministic" evaluation: ``k ~ Cat(w)``, ``a = tanh(mu_k)``), ``"argmax"``
    (``k = argmax_k w_k``, ``a = tanh(mu_k)``, an extension).
    """
    key, next_key = jax.random.split(key)
    pi = policy_distribution(actor, obs)
    if mode == "stochastic":
        return pi.sample(key), next_key
    if mode == "sample":
        k = jax.random.categorical(key, pi.logits)
    else:
        k = jnp.argmax(pi.logits, axis=-1)
    modes = pi.component_modes()
    return jnp.take_along_axis(modes, k[:, None, None], axis=1)[:, 0], next_key


class SAC(Agent):
    """Soft actor-critic with a tanh-Gaussian or PMOE mixture-of-experts policy.

    Parameters
    ----------
    env : str or callable, default="Pendulum-v1"
        A gymnasium id (e.g. ``"mixproc/Bimodal-v0"``) or a zero-argument factory.
    policy : {"mixture", "gaussian"}, default="mixture"
        ``"gaussian"`` is plain SAC (the unimodal baseline).
    n_components : int, default=4
        Number of primitives K (ignored for ``policy="gaussian"``).
    estimator : {"frequency", "gumbel", "score"}, default="frequency"
        Gradient estimator for the primitive choice: PMOE's frequency approximate gradient,
        Gumbel-softmax or the score function.
    routing : {"argmax", "boltzmann"}, default="argmax"
        Routing target of the frequency estimator. ``"argmax"`` is the official PMOE code
        (one-hot of the critic's best candidate). ``"boltzmann"`` regresses the weights on
        ``softmax((Q_k - alpha log pi_k) / alpha)`` and picks the trained primitive by the
        Gumbel-max of the same scores: the soft-optimal weights when the entropy of the
        primitive choice is part of the objective. It keeps tied primitives alive (see
        :func:`mixtures.rl.frequency_actor_loss`). Ignored by the other estimators.
    entropy : {"primitive", "mixture"}, default="primitive"
        Density in the frequency estimator's entropy bonus, temperature loss and critic
        target: the winning primitive's own ``log pi_k`` (official) or the mixture's
        ``log pi_mix`` (weights held constant), which penalises overlapping primitives.
        ``routing="boltzmann", entropy="mixture"`` is the maximum-entropy correction (ours,
        not in the official code), which keeps several primitives on equally good actions.
    total_timesteps : int, default=50_000
        Environment steps.
    learning_starts : int, default=1000
        Uniform random actions before the first update.
    batch_size : int, default=256
    buffer_size : int, default=1_000_000
    hidden_sizes : tuple of int, default=(256, 256)
    learning_rate : float, default=3e-4
    gamma : float, default=0.99
    tau : float, default=0.005
    train_freq : int, default=50
        Environment steps between bursts of updates.
    gradient_steps : int or None, default=None
        Updates per burst (one ``lax.scan``); ``None`` means ``train_freq`` (one update per
        environment step).
    init_alpha : float, default=1.0
    autotune_alpha : bool, default=True
    target_entropy : float or None, default=None
        ``None`` means ``-act_dim``.
    reward_scale : float, default=1.0
    weight_coef : float, default=1.0
        Weight of the routing loss.
    gumbel_temperature : float, default=1.0
    gumbel_hard : bool, default=True
    eval_freq : int, default=0
        Evaluate every ``eval_freq`` environment steps (0: never during training).
    n_eval_episodes : int, default=5
    eval_mode : {"sample", "argmax", "stochastic"}, default="sample"
        Action mode of the evaluations (see :meth:`evaluate`).
    env_kwargs : dict or None
        Keyword arguments of ``gymnasium.make`` (or of the factory).
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Seeds the network initialisation, the replay sampling, the action noise and the
        environment (an int is also the environment's seed).
    verbose : int, default=1
        0 silences the progress bar.

    Attributes
    ----------
    state_ : SACState
        Parameters (NumPy arrays).
    history_ : dict of ndarray
        ``episode_timesteps``, ``episode_returns``, ``update_timesteps``, ``critic_loss``,
        ``actor_loss``, ``weight_loss``, ``alpha``, ``log_prob``, ``mode_frequencies``
        (n_bursts, K), ``mean_weights`` (n_bursts, K), ``eval_timesteps``,
        ``eval_returns`` (n_evals, n_eval_episodes).

    Examples
    --------
    >>> agent = SAC("mixproc/Bimodal-v0", n_components=2, total_timesteps=40,
    ...             learning_starts=20, batch_size=8, hidden_sizes=(8,), train_freq=10,
    ...             random_state=0, verbose=0).fit()
    >>> agent.predict([[0.0]]).shape
    (1, 1)
    """

    _parameter_constraints = {
        **Agent._parameter_constraints,
        "estimator": [StrOptions(set(ESTIMATORS))],
        "routing": [StrOptions(set(ROUTINGS))],
        "entropy": [StrOptions(set(ENTROPIES))],
        "learning_starts": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "buffer_size": [Interval(Integral, 1, None, closed="left")],
        "tau": [Interval(Real, 0, 1, closed="both")],
        "train_freq": [Interval(Integral, 1, None, closed="left")],
        "gradient_steps": [Interval(Integral, 1, None, closed="left"), None],
        "init_alpha": [Interval(Real, 0, None, closed="neither")],
        "autotune_alpha": ["boolean"],
        "target_entropy": [Real, None],
        "reward_scale": [Interval(Real, 0, None, closed="neither")],
        "gumbel_temperature": [Interval(Real, 0, None, closed="neither")],
        "gumbel_hard": ["boolean"],
    }

    def __init__(
        self,
        env="Pendulum-v1",
        *,
        policy="mixture",
        n_components=4,
        estimator="frequency",
        routing="argmax",
        entropy="primitive",
        total_timesteps=50_000,
        learning_starts=1000,
        batch_size=256,
        buffer_size=1_000_000,
        hidden_sizes=(256, 256),
        learning_rate=3e-4,
        gamma=0.99,
        tau=0.005,
        train_freq=50,
        gradient_steps=None,
        init_alpha=1.0,
        autotune_alpha=True,
        target_entropy=None,
        reward_scale=1.0,
        weight_coef=1.0,
        gumbel_temperature=1.0,
        gumbel_hard=True,
        eval_freq=0,
        n_eval_episodes=5,
        eval_mode="sample",
        env_kwargs=None,
        random_state=None,
        verbose=1,
    ):
        self.env = env
        self.policy = policy
        self.n_components = n_components
        self.estimator = estimator
        self.routing = routing
        self.entropy = entropy
        self.total_timesteps = total_timesteps
        self.learning_starts = learning_starts
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.hidden_sizes = hidden_sizes
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.tau = tau
        self.train_freq = train_freq
        self.gradient_steps = gradient_steps
        self.init_alpha = init_alpha
        self.autotune_alpha = autotune_alpha
        self.target_entropy = target_entropy
        self.reward_scale = reward_scale
        self.weight_coef = weight_coef
        self.gumbel_temperature = gumbel_temperature
        self.gumbel_hard = gumbel_hard
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.eval_mode = eval_mode
        self.env_kwargs = env_kwargs
        self.random_state = random_state
        self.verbose = verbose

    # --- state plumbing ------------------------------------------------------------------
    @property
    def _n_components(self):
        return None if self.policy == "gaussian" else int(self.n_components)

    def _init_state(self, key):
        return init_sac_state(
            key,
            self.obs_dim_,
            self.act_dim_,
            n_components=self._n_components,
            hidden_sizes=tuple(self.hidden_sizes),
            learning_rate=self.learning_rate,
            init_alpha=self.init_alpha,
        )

    def _act_batch(self, obs, key, mode):
        return sac_act(self.state_.actor, jnp.asarray(obs, jnp.float32), key, mode=mode)

    def _hyper(self) -> SACHyper:
        target_entropy = (
            -float(self.act_dim_) if self.target_entropy is None else float(self.target_entropy)
        )
        f = partial(jnp.asarray, dtype=jnp.float32)
        return SACHyper(
            f(self.gamma),
            f(self.tau),
            f(target_entropy),
            f(self.reward_scale),
            f(self.weight_coef),
            f(self.gumbel_temperature),
        )

    # --- training ------------------------------------------------------------------------
    def fit(self, X=None, y=None):
        """Train the agent in its environment (``X`` and ``y`` are ignored).

        Returns
        -------
        self : SAC
        """
        self._validate_params()
        seed = random_state_to_seed(self.random_state)
        env = self._make_env()
        self._setup_spaces(env)
        rng = random_state_to_generator(seed)
        key_init, key = jax.random.split(random_state_to_key(seed))
        state = self._init_state(key_init)
        hyper = self._hyper()
        n_grad = self.train_freq if self.gradient_steps is None else self.gradient_steps
        static = dict(
            policy_kind=self.policy,
            estimator=self.estimator,
            gumbel_hard=bool(self.gumbel_hard),
            autotune=bool(self.autotune_alpha),
            routing=self.routing,
            entropy=self.entropy,
        )
        buffer = ReplayBuffer(
            min(self.buffer_size, self.total_timesteps), self.obs_dim_, self.act_dim_
        )
        K = 1 if self._n_components is None else self._n_components
        hist: dict[str, list] = {
            name: []
            for name in (
                "episode_timesteps",
                "episode_returns",
                "update_timesteps",
                "critic_loss",
                "actor_loss",
                "weight_loss",
                "alpha",
                "log_prob",
                "mode_frequencies",
                "mean_weights",
                "eval_timesteps",
                "eval_returns",
            )
        }
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        ep_return = 0.0
        act_key = jax.random.fold_in(key, 1)
        update_key = jax.random.fold_in(key, 2)
        t0 = time.perf_counter()
        bar = tqdm(
            total=self.total_timesteps, disable=self.verbose == 0, desc=f"SAC[{self.policy}]"
        )
        for t in range(self.total_timesteps):
            if t < self.learning_starts:
                action = rng.uniform(-1.0, 1.0, self.act_dim_)
            else:
                # Host-side indexing: one dispatch and one transfer per environment step.
                a, act_key = sac_act(state.actor, np.asarray(obs, np.float32)[None], act_key)
                action = np.asarray(a, np.float64)[0]
            next_obs, reward, terminated, truncated, _ = env.step(self._scale_action(action))
            buffer.add(obs, action, reward, next_obs, float(terminated))
            ep_return += float(reward)
            obs = next_obs
            if terminated or truncated:
                hist["episode_timesteps"].append(t + 1)
                hist["episode_returns"].append(ep_return)
                ep_return = 0.0
                obs, _ = env.reset()
            if t + 1 >= self.learning_starts and (t + 1) % self.train_freq == 0:
                batches = buffer.sample(rng, self.batch_size, n_grad)
                update_key, sub = jax.random.split(update_key)
                state, m = sac_update(state, batches, sub, hyper, **static)
                hist["update_timesteps"].append(t + 1)
                for name in ("critic_loss", "actor_loss", "weight_loss", "alpha", "log_prob"):
                    hist[name].append(float(jnp.mean(getattr(m, name))))
                counts = np.asarray(jnp.sum(m.chosen_counts, 0), np.float64)
                hist["mode_frequencies"].append(counts / counts.sum())
                hist["mean_weights"].append(np.asarray(jnp.mean(m.mean_weights, 0)))
            if self.eval_freq and (t + 1) % self.eval_freq == 0:
                self.state_ = state
                hist["eval_timesteps"].append(t + 1)
                hist["eval_returns"].append(
                    self.evaluate(self.n_eval_episodes, self.eval_mode, random_state=seed + 10_000)
                )
            if (t + 1) % 200 == 0 or t + 1 == self.total_timesteps:
                bar.update(200 if (t + 1) % 200 == 0 else (t + 1) % 200)
                if hist["episode_returns"]:
                    bar.set_postfix(ret=f"{np.mean(hist['episode_returns'][-10:]):.1f}")
        bar.close()
        env.close()
        if hist["critic_loss"]:
            check_finite_result(
                "the SAC critic loss",
                hist["critic_loss"][-1],
                "Lower learning_rate or reward_scale.",
            )
        self.state_ = jax.tree_util.tree_map(np.asarray, state)
        self.history_ = {
            k: np.asarray(v, np.float64)
            if v
            else np.zeros((0,) if k not in ("mode_frequencies", "mean_weights") else (0, K))
            for k, v in hist.items()
        }
        if hist["eval_returns"] == []:
            self.history_["eval_returns"] = np.zeros((0, self.n_eval_episodes))
        self.fit_time_ = time.perf_counter() - t0
        return self

    def mixing_weights(self, obs) -> np.ndarray:
        """Mixing weights ``w(s)`` at observations of shape (n, obs_dim), shape (n, K)."""
        self._check_is_fitted()
        pi = policy_distribution(self.state_.actor, jnp.asarray(obs, jnp.float32))
        return np.asarray(pi.weights, np.float64)

    def primitive_actions(self, obs) -> np.ndarray:
        """Each primitive's deterministic action ``tanh(mu_k(s))``, shape (n, K, act_dim)."""
        self._check_is_fitted()
        pi = policy_distribution(self.state_.actor, jnp.asarray(obs, jnp.float32))
        return np.asarray(pi.component_modes(), np.float64)
