"""Shared shell of the RL agents: environments, seeding, action scaling, evaluation, saving."""

from __future__ import annotations

import json
import numbers
import pathlib
from numbers import Integral, Real
from typing import Any

import gymnasium as gym
import jax
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from mixtures.base import MixprocEstimator

__all__ = ["make_env", "seed_from_random_state"]


def seed_from_random_state(random_state: Any) -> int:
    """An int seed from a scikit-learn style ``random_state`` (None draws fresh entropy)."""
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(
                f"random_state must be a non-negative int; got {random_state}. "
                "Pass a seed in [0, 2**31) or None."
            )
        return int(random_state) % (2**31 - 1)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or a numpy Generator; "
        f"got {type(random_state).__name__}. Pass e.g. random_state=0."
    )


def make_env(env: Any, env_kwargs: dict | None = None) -> gym.Env:
    """Build a gymnasium environment from an id string or a zero-argument factory.

    Raises
    ------
    ValueError
        If the action or observation space is not a one-dimensional ``Box``.
    """
    from mixtures.rl._envs import register_envs

    register_envs()
    if isinstance(env, str):
        instance = gym.make(env, **(env_kwargs or {}))
    elif callable(env):
        instance = env(**(env_kwargs or {}))
    else:
        raise ValueError(
            f"env must be a gymnasium id (str) or a callable returning an Env; got "
            f"{type(env).__name__}. Pass e.g. env='Pendulum-v1'."
        )
    for name in ("action_space", "observation_space"):
        space = getattr(instance, name)
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(
                f"{name} must be a one-dimensional gymnasium.spaces.Box; got {space}. "
                "Wrap the environment (e.g. FlattenObservation) or use a continuous task."
            )
    return instance


class _Agent(MixprocEstimator):
    """Base of :class:`SAC` and :class:`PPO`: env handling, evaluation and saving."""

    _act_modes: tuple[str, ...] = ("sample", "argmax", "stochastic")
    # Constraints of the parameters both agents share; each subclass adds its own.
    _shared_constraints: dict = {
        "policy": [StrOptions({"mixture", "gaussian"})],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "total_timesteps": [Interval(Integral, 1, None, closed="left")],
        "hidden_sizes": ["array-like"],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "gamma": [Interval(Real, 0, 1, closed="both")],
        "weight_coef": [Interval(Real, 0, None, closed="left")],
        "eval_freq": [Interval(Integral, 0, None, closed="left")],
        "n_eval_episodes": [Interval(Integral, 1, None, closed="left")],
        "eval_mode": [StrOptions(set(_act_modes))],
        "env_kwargs": [dict, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # --- environment helpers -------------------------------------------------------------
    def _make_env(self) -> gym.Env:
        return make_env(self.env, self.env_kwargs)

    def _setup_spaces(self, env: gym.Env) -> None:
        low = np.asarray(env.action_space.low, np.float64)
        high = np.asarray(env.action_space.high, np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(
                f"the action space must be bounded; got low={low}, high={high}. "
                "Clip the actions with gymnasium.wrappers.ClipAction."
            )
        self.obs_dim_ = int(env.observation_space.shape[0])
        self.act_dim_ = int(env.action_space.shape[0])
        self.action_low_ = low
        self.action_high_ = high

    def _scale_action(self, a: np.ndarray) -> np.ndarray:
        """Map a normalised action in ``[-1, 1]`` to the environment's box."""
        a = np.clip(a, -1.0, 1.0)
        return self.action_low_ + 0.5 * (a + 1.0) * (self.action_high_ - self.action_low_)

    # --- acting and evaluation -----------------------------------------------------------
    def _act_batch(self, obs: np.ndarray, key: jax.Array, mode: str):
        raise NotImplementedError

    def predict(self, obs, mode: str = "sample", random_state=None) -> np.ndarray:
        """Normalised actions in ``[-1, 1]`` for observations of shape (n, obs_dim).

        Parameters
        ----------
        obs : array-like of shape (n_samples, obs_dim)
        mode : str
            See :meth:`evaluate`.
        random_state : int or None
            Seed of the action noise.
        """
        self._check_is_fitted()
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim_:
            raise ValueError(
                f"obs must have shape (n_samples, {self.obs_dim_}); got {obs.shape}. "
                "Use obs[None] for a single observation."
            )
        key = jax.random.PRNGKey(seed_from_random_state(random_state))
        return np.asarray(self._act_batch(obs, key, mode)[0], np.float64)

    def evaluate(self, n_episodes: int = 10, mode: str = "sample", random_state=None) -> np.ndarray:
        """Run evaluation episodes and return their undiscounted returns.

        Parameters
        ----------
        n_episodes : int, default=10
        mode : str, default="sample"
            For SAC: ``"sample"`` (the official "deterministic" mode: ``k ~ Cat(w)``,
            ``a = tanh(mu_k)``), ``"argmax"`` (``k = argmax w``), ``"stochastic"`` (a full
            draw from the policy). For PPO: ``"mean"`` / ``"sample"`` / ``"argmax"`` /
            ``"stochastic"`` likewise.
        random_state : int or None
            Seeds the evaluation environment and the action noise.

        Returns
        -------
        returns : ndarray of shape (n_episodes,)
        """
        self._check_is_fitted()
        if mode not in self._act_modes:
            raise ValueError(f"mode must be one of {self._act_modes}; got {mode!r}.")
        seed = seed_from_random_state(random_state)
        env = self._make_env()
        key = jax.random.PRNGKey(seed)
        returns = np.zeros(n_episodes)
        for ep in range(n_episodes):
            obs, _ = env.reset(seed=seed + ep)
            done = False
            while not done:
                action, key = self._act_batch(self._preprocess_obs(obs)[None], key, mode)
                obs, reward, terminated, truncated, _ = env.step(
                    self._scale_action(np.asarray(action, np.float64)[0])
                )
                returns[ep] += float(reward)
                done = terminated or truncated
        env.close()
        return returns

    def _preprocess_obs(self, obs) -> np.ndarray:
        return np.asarray(obs, np.float32)

    # --- saving --------------------------------------------------------------------------
    def _state_tree(self):
        raise NotImplementedError

    def _template_tree(self):
        raise NotImplementedError

    def _set_state_tree(self, tree) -> None:
        raise NotImplementedError

    def save(self, path) -> None:
        """Save parameters (NumPy arrays) and settings to an ``.npz`` file."""
        self._check_is_fitted()
        leaves = jax.tree_util.tree_leaves(self._state_tree())
        params = {k: v for k, v in self.get_params().items() if k != "env" or isinstance(v, str)}
        meta = {
            "class": type(self).__name__,
            "params": params,
            "obs_dim": self.obs_dim_,
            "act_dim": self.act_dim_,
            "action_low": self.action_low_.tolist(),
            "action_high": self.action_high_.tolist(),
        }
        arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
        history = {f"history_{k}": np.asarray(v) for k, v in self.history_.items()}
        np.savez(
            pathlib.Path(path), meta=np.array(json.dumps(meta, default=list)), **arrays, **history
        )

    @classmethod
    def load(cls, path, env=None):
        """Load an agent written by :meth:`save` (pass ``env`` if it was not an id string)."""
        with np.load(pathlib.Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta["class"] != cls.__name__:
                raise ValueError(
                    f"{path} holds a {meta['class']} agent; got load() on {cls.__name__}. "
                    f"Use {meta['class']}.load."
                )
            params = meta["params"]
            for k, v in params.items():
                if isinstance(v, list):
                    params[k] = tuple(v)
            if env is not None:
                params["env"] = env
            agent = cls(**params)
            agent.obs_dim_ = meta["obs_dim"]
            agent.act_dim_ = meta["act_dim"]
            agent.action_low_ = np.asarray(meta["action_low"])
            agent.action_high_ = np.asarray(meta["action_high"])
            template = agent._template_tree()
            leaves, treedef = jax.tree_util.tree_flatten(template)
            stored = [data[f"leaf_{i:05d}"] for i in range(len(leaves))]
            for a, b in zip(stored, leaves):
                if np.shape(a) != np.shape(b):
                    raise ValueError(
                        f"{path}: stored parameter of shape {a.shape}; expected {b.shape}."
                    )
            agent._set_state_tree(jax.tree_util.tree_unflatten(treedef, stored))
            agent.history_ = {
                k[len("history_") :]: data[k] for k in data.files if k.startswith("history_")
            }
        return agent
