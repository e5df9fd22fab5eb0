"""Mixture-of-experts feed-forward layer as pure ``init`` / ``apply`` functions.

Three routers share one layer (experts stacked as ``w1 [E, d, f]``, ``b1 [E, f]``,
``w2 [E, f, d]``, ``b2 [E, d]``):

* ``"topk"`` -- learned gate (softmax or sigmoid), top-k, expert capacity with token
  dropping and the load-balancing auxiliary loss of the Switch Transformer (Fedus et al. 2022)
  and DeepSeekMoE;
* ``"loss_free"`` -- the same gate, but the top-k *selection* uses ``score + bias`` with a
  per-expert bias that receives no gradient (auxiliary-loss-free balancing, "ALF-LB": Wang et
  al. 2024, arXiv 2408.15664, Eq. 3); the gate weights come from the unbiased scores;
* ``"random"`` -- THOR (Zuo et al., ICLR 2022): no gate; in training one expert drawn
  uniformly per layer per forward pass (``granularity="batch"``, as in the official code), or
  per sequence / per token; at inference a random expert per token or per sequence, the mean of
  all experts, or a fixed expert.

The layer returns the expert mixture only; the caller adds the residual (a dropped token's
output is zero, so the residual carries it through, as in the Switch Transformer).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

__all__ = ["MoEAux", "MoEConfig", "apply_moe", "expert_capacity", "init_moe", "route_topk"]

_ROUTERS = ("topk", "loss_free", "random")
_GATES = ("softmax", "sigmoid")
_GRANULARITIES = ("batch", "sequence", "token")
_INFERENCE = ("batch", "sequence", "token", "mean", "fixed")


class MoEConfig(NamedTuple):
    """Structural (static, hashable) configuration of a mixture-of-experts layer.

    Attributes
    ----------
    n_experts : int
        Number of routed experts ``N`` (``E`` in THOR).
    router : {"topk", "loss_free", "random"}
        Routing rule (see the module docstring).
    k : int
        Experts per token for ``"topk"`` / ``"loss_free"`` (1 = Switch). Ignored by ``"random"``.
    capacity_factor : float or None
        Expert capacity ``C = ceil(capacity_factor * k * T / N)``; token slots beyond ``C`` are
        dropped (Switch, Fedus et al. 2022). ``None`` drops nothing (the setting of the
        auxiliary-loss-free paper).
    gate : {"softmax", "sigmoid"}
        Score nonlinearity ``G`` (softmax: Switch; sigmoid: DeepSeekMoE).
    renormalize : bool
        Divide the selected gate weights by their sum (DeepSeek-V3; GShard top-2).
    jitter : float
        Multiplicative router-input jitter ``U(1 - jitter, 1 + jitter)`` in training (Switch).
    granularity : {"batch", "sequence", "token"}
        THOR training draw: one expert for the whole batch (official code), per sequence
        (axis 0 of the input) or per token.
    inference : {"sequence", "token", "batch", "mean", "fixed"}
        THOR evaluation mode. ``"sequence"`` and ``"token"`` are the paper's inference levels;
        ``"mean"`` (average of all expert outputs) and ``"fixed"`` are deterministic extensions
        that are not in the paper.
    fixed_expert : int
        Expert used by ``inference="fixed"``.
    """

    n_experts: int = 4
    router: str = "topk"
    k: int = 1
    capacity_factor: float | None = 1.25
    gate: str = "softmax"
    renormalize: bool = False
    jitter: float = 0.0
    granularity: str = "batch"
    inference: str = "sequence"
    fixed_expert: int = 0


class MoEAux(NamedTuple):
    """Auxiliary outputs of :func:`apply_moe`.

    Attributes
    ----------
    aux_loss : Array
        Unscaled balance loss ``sum_i f_i P_i`` with ``f_i = N/(kT) * count_i`` and
        ``P_i = mean_t s_{i,t}`` (1 at perfectly uniform softmax routing); multiply by the
        coefficient ``alpha`` yourself. Zero for ``"random"``.
    loads : Array of shape (n_experts,)
        Token slots *selected* for each expert (before capacity dropping), float.
    dropped_fraction : Array
        Fraction of selected token slots dropped by the capacity limit.
    expert_index : Array of shape (n_tokens, k)
        Selected experts per token (int32).
    gates : Array of shape (n_tokens, k)
        Gate weights of the selected experts (zero where dropped).
    """

    aux_loss: Array
    loads: Array
    dropped_fraction: Array
    expert_index: Array
    gates: Array


def _check_config(config: MoEConfig) -> None:
    if config.router not in _ROUTERS:
        raise ValueError(
            f"router must be one of {_ROUTERS}; got {config.router!r}. Use 'topk' for Switch / "
            "top-k gating, 'loss_free' for bias-balanced top-k, 'random' for THOR."
        )
    if config.gate not in _GATES:
        raise ValueError(f"gate must be one of {_GATES}; got {config.gate!r}.")
    if config.granularity not in _GRANULARITIES:
        raise ValueError(
            f"granularity must be one of {_GRANULARITIES}; got {config.granularity!r}."
        )
    if config.inference not in _INFERENCE:
        raise ValueError(f"inference must be one of {_INFERENCE}; got {config.inference!r}.")
    if config.n_experts < 1:
        raise ValueError(f"n_experts must be >= 1; got {config.n_experts}.")
    if config.router != "random" and not 1 <= config.k <= config.n_experts:
        raise ValueError(
            f"k must satisfy 1 <= k <= n_experts = {config.n_experts}; got k={config.k}."
        )
    if config.capacity_factor is not None and config.capacity_factor <= 0:
        raise ValueError(
            f"capacity_factor must be > 0 or None; got {config.capacity_factor}. "
            "Use None to disable token dropping."
        )
    if not 0 <= config.fixed_expert < config.n_experts:
        raise ValueError(
            f"fixed_expert must be in [0, {config.n_experts}); got {config.fixed_expert}."
        )


def expert_capacity(n_tokens: int, n_experts: int, k: int, capacity_factor: float | None) -> int:
    """Expert capacity ``C = ceil(capacity_factor * k * T / N)`` (``T`` if ``None``), at most ``T``.

    Examples
    --------
    >>> expert_capacity(64, 4, 1, 1.25)
    20
    """
    if capacity_factor is None:
        return int(n_tokens)
    return int(min(n_tokens, max(1, math.ceil(capacity_factor * k * n_tokens / n_experts))))


def init_moe(
    key: Array,
    d_model: int,
    d_ff: int,
    config: MoEConfig,
    *,
    dtype: Any = jnp.float32,
) -> dict[str, Array]:
    """Initialise the stacked expert FFNs (and the router for learned gates).

    Expert ``i`` is ``FFN_i(x) = W2_i relu(W1_i x + c1_i) + c2_i`` (the expert FFN of THOR's
    official code); weights use Glorot-uniform scaling, the router ``W_r`` ``[d, N]`` a small
    normal scale ``sqrt(0.1 / d)`` (the reduced initialisation scale of the Switch Transformer,
    Fedus et al. 2022).

    Returns
    -------
    params : dict
        ``{"w1", "b1", "w2", "b2"}`` and ``"router"`` unless ``config.router == "random"``.
    """
    _check_config(config)
    e = config.n_experts
    k1, k2, k3 = jax.random.split(key, 3)
    lim1 = math.sqrt(6.0 / (d_model + d_ff))
    params = {
        "w1": jax.random.uniform(k1, (e, d_model, d_ff), dtype, -lim1, lim1),
        "b1": jnp.zeros((e, d_ff), dtype),
        "w2": jax.random.uniform(k2, (e, d_ff, d_model), dtype, -lim1, lim1),
        "b2": jnp.zeros((e, d_model), dtype),
    }
    if config.router != "random":
        params["router"] = math.sqrt(0.1 / d_model) * jax.random.normal(k3, (d_model, e), dtype)
    return params


def _ffn_one(params, idx, x, dropout_key, dropout_rate):
    """Expert ``idx`` (traced scalar) on tokens ``x [T, d]``: only that expert is computed."""
    h = jax.nn.relu(x @ params["w1"][idx] + params["b1"][idx])
    h = _dropout(h, dropout_key, dropout_rate)
    return h @ params["w2"][idx] + params["b2"][idx]


def _ffn_all(params, x, dropout_key, dropout_rate):
    """All experts on all tokens: ``[E, T, d]``."""
    h = jax.nn.relu(jnp.einsum("td,edf->etf", x, params["w1"]) + params["b1"][:, None])
    h = _dropout(h, dropout_key, dropout_rate)
    return jnp.einsum("etf,efd->etd", h, params["w2"]) + params["b2"][:, None]


def _dropout(h, key, rate):
    if key is None:
        return h
    keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
    return jnp.where(keep, h / (1.0 - rate), 0.0)


def route_topk(scores: Array, k: int, bias: Array | None = None) -> tuple[Array, Array]:
    """Top-k selection on ``scores + bias`` with gate weights from the *unbiased* scores.

    .. math::

        g_{i,t} = s_{i,t}\\,\\mathbb 1\\{s_{i,t} + b_i \\in
        \\operatorname{TopK}(\\{s_{j,t} + b_j\\}_j, K)\\}

    (auxiliary-loss-free balancing, Wang et al. 2024, Eq. 3; ``bias=None`` is plain top-k,
    Eq. 1). The bias is wrapped in ``stop_gradient``: it only chooses experts.

    Parameters
    ----------
    scores : Array of shape (n_tokens, n_experts)
    k : int
    bias : Array of shape (n_experts,) or None

    Returns
    -------
    expert_index : Array of shape (n_tokens, k), int32
    gates : Array of shape (n_tokens, k)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> idx, g = route_topk(jnp.array([[0.9, 0.5, 0.1]]), 1, bias=jnp.array([0.0, 0.5, 0.0]))
    >>> int(idx[0, 0]), float(g[0, 0])
    (1, 0.5)
    """
    select = scores if bias is None else scores + jax.lax.stop_gradient(bias)
    _, idx = jax.lax.top_k(select, k)
    gates = jnp.take_along_axis(scores, idx, axis=-1)
    return idx.astype(jnp.int32), gates


def _dispatch_combine(params, x, idx, gates, capacity, dropout_key, dropout_rate):
    """Capacity-limited gather/scatter dispatch (Switch / GShard priority: all first choices
    before second choices, tokens in order). Returns ``(y, keep [T, k])``."""
    t, d = x.shape
    n = params["w1"].shape[0]
    k = idx.shape[1]
    e_flat = idx.T.reshape(-1)  # [k*T], choice-major priority
    onehot = jax.nn.one_hot(e_flat, n, dtype=jnp.int32)
    pos = jnp.take_along_axis(jnp.cumsum(onehot, axis=0) - 1, e_flat[:, None], axis=1)[:, 0]
    keep = pos < capacity
    tok = jnp.tile(jnp.arange(t), k)
    slot = jnp.full((n, capacity), t, dtype=jnp.int32)
    slot = slot.at[e_flat, jnp.where(keep, pos, capacity)].set(tok, mode="drop")
    x_pad = jnp.concatenate([x, jnp.zeros((1, d), x.dtype)], axis=0)
    xin = x_pad[slot]  # [N, C, d]
    h = jax.nn.relu(jnp.einsum("ncd,ndf->ncf", xin, params["w1"]) + params["b1"][:, None])
    h = _dropout(h, dropout_key, dropout_rate)
    yout = jnp.einsum("ncf,nfd->ncd", h, params["w2"]) + params["b2"][:, None]
    picked = yout[e_flat, jnp.clip(pos, 0, capacity - 1)]  # [k*T, d]
    w = (gates.T.reshape(-1) * keep).astype(x.dtype)
    y = (picked * w[:, None]).reshape(k, t, d).sum(0)
    return y, keep.reshape(k, t).T


def apply_moe(
    params: dict[str, Array],
    x: Array,
    config: MoEConfig,
    *,
    key: Array | None = None,
    bias: Array | None = None,
    train: bool = False,
    dropout_rate: float | Array = 0.0,
) -> tuple[Array, MoEAux]:
    """Apply the mixture-of-experts FFN to ``x`` (residual not included).

    Learned routers (``"topk"``, ``"loss_free"``):

    .. math::

        y_t = \\sum_{i} g_{i,t}\\, \\mathrm{FFN}_i(x_t), \\qquad
        s_{i,t} = G(x_t^\\top e_i),

    with ``g`` from :func:`route_topk` (ALF-LB Eq. 1 / Eq. 3; Switch: ``y = p_{i^*} FFN_{i^*}``)
    and the balance loss (ALF-LB Eq. 2; Switch with ``k = 1``)

    .. math::

        L_\\mathrm{bal} = \\sum_{i=1}^N f_i P_i, \\quad
        f_i = \\frac{N}{kT}\\sum_t \\mathbb 1[t \\to i], \\quad P_i = \\frac1T \\sum_t s_{i,t}.

    ``f_i`` carries no gradient; ``P_i`` does. THOR (``"random"``) has no gate: the output is
    ``FFN_{idx}(x)`` with ``idx ~ Uniform{0..E-1}`` drawn once per call (``granularity="batch"``).

    Parameters
    ----------
    params : dict
        From :func:`init_moe`.
    x : Array of shape (..., d_model)
        Tokens; all leading axes are flattened. For ``"sequence"`` draws axis 0 indexes the
        sequences.
    config : MoEConfig
        Static configuration.
    key : PRNG key, optional
        Needed by ``"random"`` (train, or random inference modes), by jitter and by dropout.
    bias : Array of shape (n_experts,), optional
        Balancing bias of ``"loss_free"`` (no gradient flows into it). Ignored otherwise.
    train : bool
        Training mode (THOR draw granularity, jitter, dropout).
    dropout_rate : float
        Dropout inside the experts (train only; traced).

    Returns
    -------
    y : Array of the shape of ``x``
    aux : MoEAux
    """
    _check_config(config)
    shape = x.shape
    d = shape[-1]
    if params["w1"].shape[1] != d:
        raise ValueError(
            f"x has feature size {d} but the experts expect {params['w1'].shape[1]}; "
            "initialise the layer with d_model equal to x.shape[-1]."
        )
    n = config.n_experts
    xt = x.reshape(-1, d)
    t = xt.shape[0]
    if key is None:
        k_route = k_drop = k_jit = None
    else:
        k_route, k_drop, k_jit = jax.random.split(key, 3)
    drop_key = k_drop if (train and key is not None) else None

    if config.router == "random":
        return _apply_random(params, x, xt, config, k_route, train, drop_key, dropout_rate)

    if config.router == "loss_free" and bias is None:
        raise ValueError(
            "router='loss_free' needs the balancing bias: pass bias=state.bias from "
            "AuxLossFreeBalancer (a zeros(n_experts) vector gives plain top-k)."
        )
    xr = xt.astype(jnp.float32)  # router in float32 (Switch)
    if train and config.jitter > 0 and k_jit is not None:
        xr = xr * jax.random.uniform(
            k_jit, xr.shape, xr.dtype, 1 - config.jitter, 1 + config.jitter
        )
    logits = xr @ params["router"].astype(jnp.float32)
    scores = jax.nn.softmax(logits, -1) if config.gate == "softmax" else jax.nn.sigmoid(logits)
    use_bias = bias if config.router == "loss_free" else None
    idx, gates = route_topk(scores, config.k, use_bias)
    if config.renormalize:
        gates = gates / jnp.sum(gates, axis=-1, keepdims=True)
    loads = jnp.sum(jax.nn.one_hot(idx, n, dtype=jnp.float32), axis=(0, 1))
    f = jax.lax.stop_gradient(loads) * (n / (config.k * t))
    aux_loss = jnp.sum(f * jnp.mean(scores, axis=0))
    cap = expert_capacity(t, n, config.k, config.capacity_factor)
    y, keep = _dispatch_combine(params, xt, idx, gates, cap, drop_key, dropout_rate)
    aux = MoEAux(
        aux_loss=aux_loss,
        loads=loads,
        dropped_fraction=jnp.sum(~keep).astype(jnp.float32) / keep.size,
        expert_index=idx,
        gates=gates * keep,
    )
    return y.reshape(shape).astype(x.dtype), aux


def _apply_random(params, x, xt, config, key, train, drop_key, dropout_rate):
    n = config.n_experts
    t = xt.shape[0]
    mode = config.granularity if train else config.inference
    if mode in ("sequence", "token", "batch") and key is None:
        raise ValueError(
            f"router='random' with {'training' if train else 'inference'} mode {mode!r} draws "
            "experts at random and needs key=...; for deterministic evaluation use "
            "inference='mean' or 'fixed'."
        )
    if mode in ("batch", "fixed"):
        if mode == "batch":
            e = jax.random.randint(key, (), 0, n)
        else:
            e = jnp.asarray(config.fixed_expert)
        y = _ffn_one(params, e, xt, drop_key, dropout_rate)
        idx = jnp.full((t, 1), e, jnp.int32)
    else:
        ys = _ffn_all(params, xt, drop_key, dropout_rate)  # [E, T, d]
        if mode == "mean":
            y = jnp.mean(ys, axis=0)
            idx = jnp.full((t, 1), -1, jnp.int32)
        else:
            if mode == "sequence":
                n_seq = x.shape[0] if x.ndim > 2 else t
                per_seq = jax.random.randint(key, (n_seq,), 0, n)
                e_tok = jnp.repeat(per_seq, t // n_seq)
            else:
                e_tok = jax.random.randint(key, (t,), 0, n)
            y = jnp.take_along_axis(ys, e_tok[None, :, None], axis=0)[0]
            idx = e_tok[:, None].astype(jnp.int32)
    valid = idx >= 0
    loads = jnp.sum(jax.nn.one_hot(jnp.where(valid, idx, 0), n) * valid[..., None], axis=(0, 1))
    if not train and mode == "mean":
        loads = jnp.full((n,), t / n, jnp.float32)
    aux = MoEAux(
        aux_loss=jnp.zeros((), jnp.float32),
        loads=loads.astype(jnp.float32),
        dropped_fraction=jnp.zeros((), jnp.float32),
        expert_index=idx,
        gates=jnp.ones((t, 1), xt.dtype),
    )
    return y.reshape(x.shape).astype(x.dtype), aux
