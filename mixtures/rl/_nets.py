"""Pure ``(init, apply)`` multilayer perceptrons and the policy/critic networks built on them.

Parameters are plain pytrees (lists of ``(W, b)`` tuples inside dicts), so they go through
``jax.jit``, ``optax`` and ``np.savez`` unchanged. No flax: every network is an ``init_*``
function taking an explicit key and an ``apply_*`` function taking the parameters.

Policy network (as in the official PMOE code, rlkit-pmoe): a shared trunk ``h(s)`` feeds
three heads, the primitive means ``mu`` (K*A outputs), the log standard deviations (K*A
outputs, clipped to ``[-20, 2]``) and the mixing logits ``z`` (K outputs). The mixing head
reads ``stop_gradient(h(s))`` by default, so the routing loss never updates the trunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "PolicyOutput",
    "apply_critic",
    "apply_mlp",
    "apply_policy",
    "init_critic",
    "init_linear",
    "init_mlp",
    "init_policy",
]

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0

Params = Any


class PolicyOutput(NamedTuple):
    """Raw policy-head outputs for a batch of observations.

    Attributes
    ----------
    logits : array of shape (B, K)
        Mixing logits ``z(s)`` (all zeros for the unimodal policy, K = 1).
    loc : array of shape (B, K, A)
        Pre-tanh means ``mu_k(s)``.
    log_scale : array of shape (B, K, A)
        Pre-tanh log standard deviations, clipped to ``[LOG_STD_MIN, LOG_STD_MAX]``.
    """

    logits: jax.Array
    loc: jax.Array
    log_scale: jax.Array


def init_linear(key: jax.Array, n_in: int, n_out: int, dtype=jnp.float32):
    """PyTorch's default ``nn.Linear`` initialisation: ``U(-1/sqrt(n_in), 1/sqrt(n_in))``."""
    key_w, key_b = jax.random.split(key)
    bound = 1.0 / jnp.sqrt(n_in)
    W = jax.random.uniform(key_w, (n_in, n_out), dtype, -bound, bound)
    b = jax.random.uniform(key_b, (n_out,), dtype, -bound, bound)
    return (W, b)


def init_mlp(key: jax.Array, sizes: Sequence[int], dtype=jnp.float32) -> list:
    """Initialise an MLP with layer widths ``sizes = (n_in, h1, ..., n_out)``."""
    keys = jax.random.split(key, max(len(sizes) - 1, 1))
    return [init_linear(k, a, b, dtype) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def apply_mlp(params: list, x: jax.Array, activation=jax.nn.relu, final_activation=None):
    """Apply an MLP; the activation follows every layer but the last (unless given)."""
    for i, (W, b) in enumerate(params):
        x = x @ W + b
        if i < len(params) - 1:
            x = activation(x)
        elif final_activation is not None:
            x = final_activation(x)
    return x


def init_policy(
    key: jax.Array,
    obs_dim: int,
    act_dim: int,
    n_components: int | None,
    hidden_sizes: Sequence[int] = (256, 256),
    dtype=jnp.float32,
) -> dict:
    """Initialise the tanh-Gaussian (``n_components=None``) or mixture policy network.

    The key is split into (trunk, mean, log-std, mixing) in that order, so the unimodal
    policy and the K = 1 mixture share identical trunk and head parameters for one key.

    Returns
    -------
    params : dict
        ``{"trunk", "mean", "log_std"}`` plus ``"logits"`` for a mixture.
    """
    K = 1 if n_components is None else int(n_components)
    key_trunk, key_mean, key_std, key_mix = jax.random.split(key, 4)
    sizes = (obs_dim, *hidden_sizes)
    trunk = init_mlp(key_trunk, sizes, dtype) if hidden_sizes else []
    h = sizes[-1]
    params = {
        "trunk": trunk,
        "mean": init_linear(key_mean, h, K * act_dim, dtype),
        "log_std": init_linear(key_std, h, K * act_dim, dtype),
    }
    if n_components is not None:
        params["logits"] = init_linear(key_mix, h, K, dtype)
    return params


def apply_policy(
    params: dict, obs: jax.Array, act_dim: int, *, detach_mixing: bool = True
) -> PolicyOutput:
    r"""Evaluate the policy heads on observations of shape (B, S).

    .. math::

        h = \mathrm{MLP}(s),\quad \mu = W_\mu h,\quad
        \log\sigma = \mathrm{clip}(W_\sigma h, -20, 2),\quad
        z = W_z\,\mathrm{sg}(h)

    (``sg`` is the stop-gradient when ``detach_mixing``, as in the official PMOE code.)
    """
    h = obs
    for W, b in params["trunk"]:
        h = jax.nn.relu(h @ W + b)
    W, b = params["mean"]
    loc = h @ W + b
    K = loc.shape[-1] // act_dim
    loc = loc.reshape(loc.shape[:-1] + (K, act_dim))
    W, b = params["log_std"]
    log_scale = jnp.clip(h @ W + b, LOG_STD_MIN, LOG_STD_MAX)
    log_scale = log_scale.reshape(loc.shape)
    if "logits" in params:
        W, b = params["logits"]
        h_mix = jax.lax.stop_gradient(h) if detach_mixing else h
        logits = h_mix @ W + b
    else:
        logits = jnp.zeros(loc.shape[:-1], loc.dtype)
    return PolicyOutput(logits, loc, log_scale)


def init_critic(
    key: jax.Array,
    obs_dim: int,
    act_dim: int,
    hidden_sizes: Sequence[int] = (256, 256),
    dtype=jnp.float32,
) -> tuple[list, list]:
    """Initialise twin Q networks ``Q1, Q2 : (s, a) -> R``."""
    key1, key2 = jax.random.split(key)
    sizes = (obs_dim + act_dim, *hidden_sizes, 1)
    return (init_mlp(key1, sizes, dtype), init_mlp(key2, sizes, dtype))


def apply_critic(params: tuple[list, list], obs: jax.Array, act: jax.Array):
    """Twin Q values ``(Q1(s, a), Q2(s, a))``, each of shape (B,)."""
    x = jnp.concatenate([obs, act], axis=-1)
    return tuple(apply_mlp(p, x)[..., 0] for p in params)
