"""Shared shell of the RL agents: environments, seeding, action scaling, evaluation, saving."""

from __future__ import annotations

import json
import pathlib
from numbers import Integral, Real
from typing import Any

import jax
import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    random_state_to_generator,
    random_state_to_key,
)
from mixtures.rl._envs import register_envs
from mixtures.rl._gym import gym

__all__ = ["Agent", "make_env", "random_state_to_seed"]

#: Seeds handed to gymnasium and NumPy lie in [0, 2**31 - 1).
_SEED_BOUND = 2**31 - 1


def random_state_to_seed(random_state: Any) -> int:
    """An int seed in ``[0, 2**31 - 1)`` from a scikit-learn style ``random_state``.

    gymnasium seeds environments with ints, so the agents derive one int from
    ``random_state`` and build their JAX key and NumPy generator from it
    (:func:`mixtures.base.random_state_to_key`, :func:`mixtures.base.random_state_to_generator`).
    An int maps to itself modulo ``2**31 - 1``; anything else yields one draw from
    ``random_state_to_generator(random_state)`` (a ``Generator`` is advanced by one draw,
    ``None`` draws fresh entropy).

    Raises
    ------
    ValueError
        If ``random_state`` is not accepted by :func:`mixtures.base.random_state_to_generator`.

    Examples
    --------
    >>> random_state_to_seed(7), random_state_to_seed(np.int64(7))
    (7, 7)
    """
    generator = random_state_to_generator(random_state)  # validates every accepted type
    if isinstance(random_state, Integral):
        return int(random_state) % _SEED_BOUND
    return int(generator.integers(0, _SEED_BOUND))


def make_env(env: Any, env_kwargs: dict | None = None) -> gym.Env:
    """Build a gymnasium environment from an id string or a zero-argument factory.

    Parameters
    ----------
    env : str or callable
        A gymnasium id (the toy tasks ``"mixproc/Bimodal-v0"`` and
        ``"mixproc/BimodalDeceptive-v0"`` are registered first) or a factory returning an Env.
    env_kwargs : dict, optional
        Keyword arguments of ``gymnasium.make`` or of the factory.

    Returns
    -------
    gymnasium.Env

    Raises
    ------
    ValueError
        If the action or observation space is not a one-dimensional ``Box``.
    """
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


class Agent(MixprocEstimator):
    """Base of :class:`~mixtures.rl.SAC` and :class:`~mixtures.rl.PPO`: environment handling,
    seeding, evaluation and saving.

    Subclasses extend ``_parameter_constraints`` (here: the constraints of the parameters
    both agents share), implement ``_init_state``, ``_act_batch`` and ``fit``, and store
    their parameter pytree (NumPy leaves) in ``state_``.
    """

    _act_modes: tuple[str, ...] = ("sample", "argmax", "stochastic")
    _parameter_constraints: dict = {
        "env": [str, callable],
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
        "random_state": RANDOM_STATE,
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
        mode : {"sample", "argmax", "stochastic"}, default="sample"
            See :meth:`evaluate`.
        random_state : None, int, numpy.random.RandomState or numpy.random.Generator
            Seed of the action noise (as in :func:`mixtures.base.random_state_to_key`).

        Returns
        -------
        actions : ndarray of shape (n_samples, act_dim)
        """
        self._check_is_fitted()
        obs = np.asarray(obs, np.float32)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim_:
            raise ValueError(
                f"obs must have shape (n_samples, {self.obs_dim_}); got {obs.shape}. "
                "Use obs[None] for a single observation."
            )
        if mode not in self._act_modes:
            raise ValueError(f"mode must be one of {self._act_modes}; got {mode!r}.")
        key = random_state_to_key(random_state_to_seed(random_state))
        return np.asarray(self._act_batch(obs, key, mode)[0], np.float64)

    def evaluate(self, n_episodes: int = 10, mode: str = "sample", random_state=None) -> np.ndarray:
        """Run evaluation episodes and return their undiscounted returns.

        Parameters
        ----------
        n_episodes : int, default=10
        mode : {"sample", "argmax", "stochastic"}, default="sample"
            ``"sample"``: ``k ~ Cat(w(s))`` and the primitive's deterministic action (the
            "deterministic" evaluation of the official PMOE code); ``"argmax"``:
            ``k = argmax_k w_k(s)``; ``"stochastic"``: a full draw from the policy. The
            deterministic action is ``tanh(mu_k)`` for SAC and ``mu_k`` for PPO.
        random_state : None, int, numpy.random.RandomState or numpy.random.Generator
            Seeds the evaluation environment (episode ``i`` with ``seed + i``) and the action
            noise.

        Returns
        -------
        returns : ndarray of shape (n_episodes,)
        """
        self._check_is_fitted()
        if mode not in self._act_modes:
            raise ValueError(f"mode must be one of {self._act_modes}; got {mode!r}.")
        seed = random_state_to_seed(random_state)
        env = self._make_env()
        key = random_state_to_key(seed)
        returns = np.zeros(n_episodes)
        for ep in range(n_episodes):
            obs, _ = env.reset(seed=seed + ep)
            done = False
            while not done:
                action, key = self._act_batch(np.asarray(obs, np.float32)[None], key, mode)
                obs, reward, terminated, truncated, _ = env.step(
                    self._scale_action(np.asarray(action, np.float64)[0])
                )
                returns[ep] += float(reward)
                done = terminated or truncated
        env.close()
        return returns

    # --- subclass hooks ------------------------------------------------------------------
    def _init_state(self, key: jax.Array):
        """Freshly initialised parameter/optimiser pytree (needs ``obs_dim_``, ``act_dim_``)."""
        raise NotImplementedError

    # --- saving --------------------------------------------------------------------------
    def save(self, path) -> pathlib.Path:
        """Save parameters (NumPy arrays), settings and history to ``path``.

        The file is written exactly at ``path`` (NumPy's ``.npz`` format, no suffix added),
        so :meth:`load` takes the same path. An environment given as a factory rather than an
        id string is not stored (pass it to :meth:`load`), nor is a ``random_state`` other
        than None or an int (it is stored as None).

        Returns
        -------
        path : pathlib.Path
            The file written.
        """
        self._check_is_fitted()
        path = pathlib.Path(path)
        leaves = jax.tree_util.tree_leaves(self.state_)
        params = self.get_params()
        if not isinstance(params["env"], str):
            del params["env"]
        if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
            params["random_state"] = None
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
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # a file object: np.savez appends no ".npz"
            np.savez(fh, meta=np.array(json.dumps(meta, default=_to_json)), **arrays, **history)
        return path

    @classmethod
    def load(cls, path, env=None):
        """Load an agent written by :meth:`save` from the same ``path``.

        Parameters
        ----------
        path : str or pathlib.Path
            The path given to :meth:`save`.
        env : str or callable, optional
            The environment; required if the agent was trained on a factory (not stored).

        Returns
        -------
        agent
            A fitted agent of this class.

        Raises
        ------
        ValueError
            If the file holds another agent class, its parameter shapes do not match the
            stored settings, or the environment is needed but not given.
        """
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
            elif "env" not in params:
                raise ValueError(
                    f"{path} was trained on an environment factory, which is not stored; "
                    f"pass it again: {cls.__name__}.load(path, env=...)."
                )
            agent = cls(**params)
            agent.obs_dim_ = meta["obs_dim"]
            agent.act_dim_ = meta["act_dim"]
            agent.action_low_ = np.asarray(meta["action_low"])
            agent.action_high_ = np.asarray(meta["action_high"])
            template = agent._init_state(random_state_to_key(0))
            leaves, treedef = jax.tree_util.tree_flatten(template)
            stored = [data[f"leaf_{i:05d}"] for i in range(len(leaves))]
            for a, b in zip(stored, leaves):
                if np.shape(a) != np.shape(b):
                    raise ValueError(
                        f"{path}: stored parameter of shape {a.shape}; expected {b.shape}."
                    )
            agent.state_ = jax.tree_util.tree_map(
                np.asarray, jax.tree_util.tree_unflatten(treedef, stored)
            )
            agent.history_ = {
                k[len("history_") :]: data[k] for k in data.files if k.startswith("history_")
            }
        return agent


def _to_json(value):
    """JSON fallback for :meth:`Agent.save`: NumPy scalars as Python numbers, else a list."""
    if isinstance(value, np.generic):
        return value.item()
    return list(value)
