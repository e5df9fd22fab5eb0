"""PPO (clipped objective, GAE) with a Gaussian or a PMOE Gaussian-mixture policy.

PMOE-PPO (Ren et al. 2021, arXiv 2104.09122) follows ``pmoe_ppo.py`` of the
Popular-RL-Algorithms repository (github.com/quantumiracle/Popular-RL-Algorithms): a Gaussian
mixture without tanh and with state-independent standard deviations; the clipped ratio uses
the full mixture log-likelihood; an extra critic ``Q(s, a)`` regressed on the GAE returns
scores one sampled action per primitive and the mixing weights are regressed onto the
winner's one-hot. Total loss: routing + clipped policy + ``vf_coef`` * clipped value + Q loss.
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
from sklearn.utils._param_validation import Interval
from tqdm.auto import tqdm

from mixtures.base import random_state_to_key
from mixtures.distributions import GaussianMixture
from mixtures.rl._actor_losses import frequency_weight_loss
from mixtures.rl._agent import Agent, random_state_to_seed
from mixtures.rl._nets import apply_mlp, init_linear, init_mlp

__all__ = [
    "PPO",
    "PPOHyper",
    "PPORollout",
    "PPOState",
    "compute_gae",
    "init_ppo_state",
    "ppo_act",
    "ppo_distribution",
    "ppo_update",
]


def _make_tx(learning_rate, max_grad_norm):
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(learning_rate))


# Learning rate and clipping norm live in the optimiser state (traced; no recompilation).
_tx = optax.inject_hyperparams(_make_tx)(learning_rate=3e-4, max_grad_norm=0.5)


class PPOState(NamedTuple):
    """Parameters (``{"actor", "value"}`` plus ``"q"`` for a mixture) and the optimiser state."""

    params: dict
    opt_state: Any


class PPOHyper(NamedTuple):
    """Traced loss coefficients of :func:`ppo_update` (changing them never recompiles)."""

    clip_range: jax.Array
    vf_coef: jax.Array
    weight_coef: jax.Array
    q_coef: jax.Array


class PPORollout(NamedTuple):
    """One rollout of ``T`` steps for :func:`ppo_update`; every field has leading shape (T,).

    ``log_prob`` and ``value`` are those of the acting policy; ``advantage`` and ``returns``
    come from :func:`compute_gae`.
    """

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    advantage: jax.Array
    returns: jax.Array
    value: jax.Array


def init_ppo_state(
    key,
    obs_dim: int,
    act_dim: int,
    *,
    n_components: int | None = None,
    hidden_sizes=(64, 64),
    learning_rate: float = 3e-4,
    max_grad_norm: float = 0.5,
) -> PPOState:
    """Actor (trunk, means, mixing logits, state-independent log-std), value and Q nets."""
    K = 1 if n_components is None else int(n_components)
    k_trunk, k_mean, k_mix, k_value, k_q = jax.random.split(key, 5)
    sizes = (obs_dim, *hidden_sizes)
    actor = {
        "trunk": init_mlp(k_trunk, sizes),
        "mean": init_linear(k_mean, sizes[-1], K * act_dim),
        "log_std": jnp.zeros((K, act_dim), jnp.float32),
    }
    params = {"actor": actor, "value": init_mlp(k_value, (*sizes, 1))}
    if n_components is not None:
        actor["logits"] = init_linear(k_mix, sizes[-1], K)
        params["q"] = init_mlp(k_q, (obs_dim + act_dim, *hidden_sizes, 1))
    opt_state = _tx.init(params)
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
    hp["max_grad_norm"] = jnp.asarray(max_grad_norm, jnp.float32)
    return PPOState(params, opt_state._replace(hyperparams=hp))


def ppo_distribution(actor: dict, obs) -> GaussianMixture:
    """The policy at observations (B, S): a diagonal Gaussian mixture (K = 1 if unimodal)."""
    h = obs
    for W, b in actor["trunk"]:
        h = jnp.tanh(h @ W + b)
    K, A = actor["log_std"].shape
    W, b = actor["mean"]
    means = (h @ W + b).reshape(h.shape[:-1] + (K, A))
    if "logits" in actor:
        W, b = actor["logits"]
        weights = jax.nn.softmax(h @ W + b, axis=-1)
    else:
        weights = jnp.ones(h.shape[:-1] + (1,), h.dtype)
    var = jnp.broadcast_to(jnp.exp(2.0 * actor["log_std"]), means.shape)
    return GaussianMixture(weights, means, var, "diag")


@partial(jax.jit, static_argnames=("mode",))
def ppo_act(params: dict, obs, key, mode: str = "stochastic"):
    """Returns ``(action, log_prob, value, next_key)`` for observations (B, S)."""
    key, next_key = jax.random.split(key)
    pi = ppo_distribution(params["actor"], obs)
    if mode == "stochastic":
        action = pi.sample(key)
    else:
        if mode == "sample":
            k = jax.random.categorical(key, jnp.log(pi.weights))
        else:
            k = jnp.argmax(pi.weights, axis=-1)
        action = jnp.take_along_axis(pi.means, k[:, None, None], axis=1)[:, 0]
    value = apply_mlp(params["value"], obs, jnp.tanh)[:, 0]
    return action, pi.log_prob(action), value, next_key


def compute_gae(rewards, values, next_values, terminated, episode_end, gamma, lam):
    r"""Generalised advantage estimation over one rollout (NumPy).

    .. math::

        \delta_t = r_t + \gamma (1 - d_t) V(s_{t+1}) - V(s_t),\qquad
        A_t = \delta_t + \gamma\lambda (1 - e_t) A_{t+1}

    ``terminated`` (``d_t``) stops bootstrapping; ``episode_end`` (``e_t``, termination or
    truncation) stops the recursion. ``next_values[t]`` is ``V(s_{t+1})`` of the same
    episode (the final observation at a truncation), so truncated episodes bootstrap.

    Returns
    -------
    advantages, returns : ndarray of shape (T,)

    Examples
    --------
    >>> adv, ret = compute_gae([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0, 1], [0, 1], 0.5, 1.0)
    >>> adv.tolist()
    [1.5, 1.0]
    """
    rewards = np.asarray(rewards, np.float64)
    values = np.asarray(values, np.float64)
    next_values = np.asarray(next_values, np.float64)
    terminated = np.asarray(terminated, np.float64)
    episode_end = np.asarray(episode_end, np.float64)
    adv = np.zeros_like(rewards)
    last = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        delta = rewards[t] + gamma * (1.0 - terminated[t]) * next_values[t] - values[t]
        last = delta + gamma * lam * (1.0 - episode_end[t]) * last
        adv[t] = last
    return adv, adv + values


def _ppo_loss(params, batch: PPORollout, key, hyper: PPOHyper, mixture: bool):
    pi = ppo_distribution(params["actor"], batch.obs)
    log_prob = pi.log_prob(batch.action)
    adv = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    ratio = jnp.exp(log_prob - batch.log_prob)
    clipped = jnp.clip(ratio, 1.0 - hyper.clip_range, 1.0 + hyper.clip_range)
    policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
    value = apply_mlp(params["value"], batch.obs, jnp.tanh)[:, 0]
    value_clipped = batch.value + jnp.clip(value - batch.value, -hyper.clip_range, hyper.clip_range)
    value_loss = 0.5 * jnp.mean(
        jnp.maximum((value - batch.returns) ** 2, (value_clipped - batch.returns) ** 2)
    )
    loss = policy_loss + hyper.vf_coef * value_loss
    weight_loss = jnp.zeros((), loss.dtype)
    if mixture:
        # Q(s, a) regressed on the returns; k* = argmax_k Q(s, a_k) with a_k ~ N_k.
        def q_fn(obs, act):
            return apply_mlp(params["q"], jnp.concatenate([obs, act], -1))[:, 0]

        q_loss = jnp.mean((q_fn(batch.obs, batch.action) - batch.returns) ** 2)
        B, K, A = pi.means.shape
        eps = jax.random.normal(key, pi.means.shape, pi.means.dtype)
        cand = jax.lax.stop_gradient(pi.means + jnp.sqrt(pi.covariances) * eps)
        q_cand = q_fn(jnp.repeat(batch.obs, K, 0), cand.reshape(B * K, A)).reshape(B, K)
        winners = jnp.argmax(jax.lax.stop_gradient(q_cand), axis=1)
        weight_loss = frequency_weight_loss(pi.weights, winners)
        loss = loss + hyper.weight_coef * weight_loss + hyper.q_coef * q_loss
    return loss, (policy_loss, value_loss, weight_loss)


@partial(jax.jit, static_argnames=("n_epochs", "n_minibatches", "mixture"))
def ppo_update(
    state: PPOState,
    rollout: PPORollout,
    key,
    hyper: PPOHyper,
    *,
    n_epochs: int,
    n_minibatches: int,
    mixture: bool,
):
    r"""``n_epochs`` passes of minibatch Adam steps on the clipped PPO loss.

    .. math::

        L = -\mathrm{mean}\,\min\big(\rho A, \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon) A\big)
            + c_v L_V + c_w \mathrm{mean}_{s,k}(w_k - \mathbb 1[k = k^*])^2 + L_Q

    Returns the new state and the mean (policy, value, routing) losses.
    """
    T = rollout.obs.shape[0]
    mb = T // n_minibatches

    def epoch(state, key):
        key_perm, key_mb = jax.random.split(key)
        perm = jax.random.permutation(key_perm, T)[: mb * n_minibatches]
        batches = jax.tree_util.tree_map(
            lambda x: x[perm].reshape((n_minibatches, mb) + x.shape[1:]), rollout
        )

        def step(state, xs):
            batch, k = xs
            grads, aux = jax.grad(_ppo_loss, has_aux=True)(state.params, batch, k, hyper, mixture)
            updates, opt_state = _tx.update(grads, state.opt_state, state.params)
            return PPOState(optax.apply_updates(state.params, updates), opt_state), aux

        return jax.lax.scan(step, state, (batches, jax.random.split(key_mb, n_minibatches)))

    state, aux = jax.lax.scan(epoch, state, jax.random.split(key, n_epochs))
    return state, jax.tree_util.tree_map(jnp.mean, aux)


class PPO(Agent):
    """Proximal policy optimisation with a Gaussian or PMOE Gaussian-mixture policy.

    Parameters
    ----------
    env : str or callable, default="Pendulum-v1"
    policy : {"gaussian", "mixture"}, default="gaussian"
    n_components : int, default=5
        K (``mix_num`` of pmoe_ppo.py).
    total_timesteps : int, default=100_000
    n_steps : int, default=2048
        Rollout length per update.
    n_minibatches : int, default=32
    n_epochs : int, default=10
    learning_rate : float, default=3e-4
    gamma : float, default=0.99
    gae_lambda : float, default=0.95
    clip_range : float, default=0.2
    vf_coef : float, default=0.5
    weight_coef : float, default=1.0
    q_coef : float, default=1.0
    max_grad_norm : float, default=0.5
    hidden_sizes : tuple of int, default=(64, 64)
    n_eval_episodes, eval_mode, env_kwargs, random_state, verbose
        As in :class:`SAC` (``eval_freq`` counts environment steps; evaluation happens after
        a rollout that crosses a multiple).

    Attributes
    ----------
    state_ : PPOState
    history_ : dict of ndarray
        ``episode_timesteps``, ``episode_returns``, ``update_timesteps``, ``policy_loss``,
        ``value_loss``, ``weight_loss``, ``eval_timesteps``, ``eval_returns``.
    """

    _parameter_constraints = {
        **Agent._parameter_constraints,
        "n_steps": [Interval(Integral, 2, None, closed="left")],
        "n_minibatches": [Interval(Integral, 1, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "gae_lambda": [Interval(Real, 0, 1, closed="both")],
        "clip_range": [Interval(Real, 0, None, closed="neither")],
        "vf_coef": [Interval(Real, 0, None, closed="left")],
        "q_coef": [Interval(Real, 0, None, closed="left")],
        "max_grad_norm": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        env="Pendulum-v1",
        *,
        policy="gaussian",
        n_components=5,
        total_timesteps=100_000,
        n_steps=2048,
        n_minibatches=32,
        n_epochs=10,
        learning_rate=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        vf_coef=0.5,
        weight_coef=1.0,
        q_coef=1.0,
        max_grad_norm=0.5,
        hidden_sizes=(64, 64),
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
        self.total_timesteps = total_timesteps
        self.n_steps = n_steps
        self.n_minibatches = n_minibatches
        self.n_epochs = n_epochs
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.clip_range = clip_range
        self.vf_coef = vf_coef
        self.weight_coef = weight_coef
        self.q_coef = q_coef
        self.max_grad_norm = max_grad_norm
        self.hidden_sizes = hidden_sizes
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.eval_mode = eval_mode
        self.env_kwargs = env_kwargs
        self.random_state = random_state
        self.verbose = verbose

    def _init_state(self, key):
        return init_ppo_state(
            key,
            self.obs_dim_,
            self.act_dim_,
            n_components=None if self.policy == "gaussian" else int(self.n_components),
            hidden_sizes=tuple(self.hidden_sizes),
            learning_rate=self.learning_rate,
            max_grad_norm=self.max_grad_norm,
        )

    def _act_batch(self, obs, key, mode):
        action, _, _, key = ppo_act(
            self.state_.params, jnp.asarray(obs, jnp.float32), key, mode=mode
        )
        return action, key

    def mixing_weights(self, obs) -> np.ndarray:
        """Mixing weights ``w(s)`` at observations of shape (n, obs_dim), shape (n, K)."""
        self._check_is_fitted()
        pi = ppo_distribution(self.state_.params["actor"], jnp.asarray(obs, jnp.float32))
        return np.asarray(pi.weights, np.float64)

    def primitive_actions(self, obs) -> np.ndarray:
        """Each primitive's deterministic action ``mu_k(s)`` clipped to ``[-1, 1]`` (as it is
        acted), shape (n, K, act_dim)."""
        self._check_is_fitted()
        pi = ppo_distribution(self.state_.params["actor"], jnp.asarray(obs, jnp.float32))
        return np.clip(np.asarray(pi.means, np.float64), -1.0, 1.0)

    def fit(self, X=None, y=None):
        """Train with PPO (``X`` and ``y`` are ignored); returns ``self``."""
        self._validate_params()
        seed = random_state_to_seed(self.random_state)
        env = self._make_env()
        self._setup_spaces(env)
        key_init, key = jax.random.split(random_state_to_key(seed))
        state = self._init_state(key_init)
        hyper = PPOHyper(
            *(
                jnp.asarray(v, jnp.float32)
                for v in (self.clip_range, self.vf_coef, self.weight_coef, self.q_coef)
            )
        )
        mixture = self.policy == "mixture"
        T = self.n_steps
        hist: dict[str, list] = {
            k: []
            for k in (
                "episode_timesteps",
                "episode_returns",
                "update_timesteps",
                "policy_loss",
                "value_loss",
                "weight_loss",
                "eval_timesteps",
                "eval_returns",
            )
        }
        obs, _ = env.reset(seed=seed)
        ep_return = 0.0
        act_key, upd_key = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
        n_updates = max(self.total_timesteps // T, 1)
        t0 = time.perf_counter()
        t_global = 0
        for _ in tqdm(range(n_updates), disable=self.verbose == 0, desc=f"PPO[{self.policy}]"):
            buf = {
                k: np.zeros((T,) + s, np.float32)
                for k, s in (
                    ("obs", (self.obs_dim_,)),
                    ("action", (self.act_dim_,)),
                    ("log_prob", ()),
                    ("value", ()),
                    ("reward", ()),
                    ("next_value", ()),
                    ("terminated", ()),
                    ("end", ()),
                )
            }
            for t in range(T):
                o = np.asarray(obs, np.float32)
                a, logp, v, act_key = ppo_act(state.params, o[None], act_key)
                # One transfer for the three outputs; index on the host.
                a, logp, v = jax.device_get((a, logp, v))
                action = a[0]
                next_obs, reward, terminated, truncated, _ = env.step(self._scale_action(action))
                buf["obs"][t], buf["action"][t] = o, action
                buf["log_prob"][t], buf["value"][t] = float(logp[0]), float(v[0])
                buf["reward"][t], buf["terminated"][t] = reward, float(terminated)
                ep_return += float(reward)
                t_global += 1
                end = terminated or truncated or t == T - 1
                buf["end"][t] = float(terminated or truncated)
                if end and not terminated:
                    # Bootstrap from the last observation of this episode (truncation or the
                    # end of the rollout).
                    _, _, nv, _ = ppo_act(
                        state.params, np.asarray(next_obs, np.float32)[None], act_key
                    )
                    buf["next_value"][t] = float(nv[0])
                if terminated or truncated:
                    hist["episode_timesteps"].append(t_global)
                    hist["episode_returns"].append(ep_return)
                    ep_return = 0.0
                    obs, _ = env.reset()
                else:
                    obs = next_obs
            # V(s_{t+1}) within an episode is the next stored value.
            inner = buf["end"][:-1] == 0
            buf["next_value"][:-1][inner] = buf["value"][1:][inner]
            adv, ret = compute_gae(
                buf["reward"],
                buf["value"],
                buf["next_value"],
                buf["terminated"],
                buf["end"],
                self.gamma,
                self.gae_lambda,
            )
            rollout = PPORollout(
                jnp.asarray(buf["obs"]),
                jnp.asarray(buf["action"]),
                jnp.asarray(buf["log_prob"]),
                jnp.asarray(adv, jnp.float32),
                jnp.asarray(ret, jnp.float32),
                jnp.asarray(buf["value"]),
            )
            upd_key, sub = jax.random.split(upd_key)
            state, (pl, vl, wl) = ppo_update(
                state,
                rollout,
                sub,
                hyper,
                n_epochs=self.n_epochs,
                n_minibatches=self.n_minibatches,
                mixture=mixture,
            )
            hist["update_timesteps"].append(t_global)
            hist["policy_loss"].append(float(pl))
            hist["value_loss"].append(float(vl))
            hist["weight_loss"].append(float(wl))
            if self.eval_freq and t_global // self.eval_freq != (t_global - T) // self.eval_freq:
                self.state_ = state
                hist["eval_timesteps"].append(t_global)
                hist["eval_returns"].append(
                    self.evaluate(self.n_eval_episodes, self.eval_mode, random_state=seed + 10_000)
                )
        env.close()
        self.state_ = jax.tree_util.tree_map(np.asarray, state)
        self.history_ = {k: np.asarray(v, np.float64) for k, v in hist.items()}
        if not hist["eval_returns"]:
            self.history_["eval_returns"] = np.zeros((0, self.n_eval_episodes))
        self.fit_time_ = time.perf_counter() - t0
        return self
