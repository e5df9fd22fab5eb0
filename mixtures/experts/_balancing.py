"""Auxiliary-loss-free load balancing as a dual (sub)gradient method, and its metrics.

Wang et al. (2024, arXiv 2408.15664; "ALF-LB" below) update a per-expert routing bias after
each batch by the sign rule ``b_i += u * sign(Lbar - load_i)`` (their Algorithm 1). Han & Zhong
(2025, arXiv 2512.03915) analyse this rule as a primal-dual method for an assignment problem.
The formulation used here is the balanced-assignment LP of
:func:`~mixtures.experts.solve_balanced_assignment`: with multipliers ``p = b`` on its load
constraints, the biased top-k routing maximises the Lagrangian, the dual function is

.. math::

    D(p) = \\sum_t \\operatorname{TopKSum}_i(\\gamma_{t,i} + p_i) - \\bar L \\sum_i p_i,
    \\qquad \\partial D / \\partial p_i = \\mathrm{load}_i(p) - \\bar L,

so the dual subgradient step is ``p_i <- p_i + eps_i (Lbar - load_i(p))``, and the sign rule is
this step with the per-expert step ``eps_i = u / |Lbar - load_i|``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

__all__ = [
    "AuxLossFreeBalancer",
    "BalancerState",
    "dual_objective",
    "dual_step",
    "lagrangian",
    "max_violation",
    "routed_objective",
    "sign_rule_step_size",
    "topk_assignment",
    "topk_loads",
]

_RULES = ("sign", "magnitude", "dual")
_SCHEDULES = ("constant", "inv_t", "inv_sqrt_t")


def max_violation(loads: Array) -> Array:
    """MaxVio of expert loads (ALF-LB Eq. 4), over the last axis.

    .. math::

        \\mathrm{MaxVio} = \\frac{\\max_i \\mathrm{Load}_i - \\overline{\\mathrm{Load}}}
        {\\overline{\\mathrm{Load}}}

    ``loads`` counted over one batch gives MaxVio_batch, over a whole validation set
    MaxVio_global. A row with no load at all has MaxVio 0 (nothing is violated).

    Examples
    --------
    >>> float(max_violation(jnp.array([6.0, 2.0, 2.0, 2.0])))
    1.0
    """
    loads = jnp.asarray(loads)
    mean = jnp.mean(loads, axis=-1)
    safe = jnp.where(mean > 0, mean, 1.0)
    return jnp.where(mean > 0, (jnp.max(loads, axis=-1) - mean) / safe, 0.0)


def topk_assignment(scores: Array, bias: Array, k: int) -> Array:
    """0/1 assignment ``x(p)`` ``[T, N]``: top-k of ``scores + bias`` per token (the Lagrangian
    maximiser for fixed multipliers ``p = bias``)."""
    _, idx = jax.lax.top_k(scores + bias, k)
    return jnp.sum(jax.nn.one_hot(idx, scores.shape[-1], dtype=scores.dtype), axis=-2)


def topk_loads(scores: Array, bias: Array, k: int) -> Array:
    """Loads ``load_i(p)`` ``[N]`` of the top-k routing on ``scores + bias``."""
    return jnp.sum(topk_assignment(scores, bias, k), axis=0)


def dual_objective(scores: Array, bias: Array, k: int) -> Array:
    """Dual function ``D(p)`` of the balanced-assignment LP; ``D(p) >= OPT_LP`` (weak duality).

    .. math::

        D(p) = \\sum_t \\operatorname{TopKSum}_i(\\gamma_{t,i} + p_i) - \\bar L \\sum_i p_i,
        \\qquad \\bar L = kT/N.
    """
    t, n = scores.shape
    top, _ = jax.lax.top_k(scores + bias, k)
    return jnp.sum(top) - (k * t / n) * jnp.sum(bias)


def routed_objective(scores: Array, bias: Array, k: int) -> Array:
    """Routed score ``sum_{t,i} gamma_{t,i} x_{t,i}(p)`` of the biased top-k routing."""
    return jnp.sum(scores * topk_assignment(scores, bias, k))


def lagrangian(scores: Array, assignment: Array, bias: Array, k: int) -> Array:
    """``Lag(x, p) = sum (gamma + p) x - Lbar sum p`` (equals ``D(p)`` at ``x = x(p)``)."""
    t, n = scores.shape
    return jnp.sum((scores + bias) * assignment) - (k * t / n) * jnp.sum(bias)


def dual_step(bias: Array, loads: Array, step_size: Array | float) -> Array:
    """One dual subgradient step ``p_i + eps_i (Lbar - load_i)`` (scalar or per-expert ``eps``).

    ``Lbar`` is the mean load over the last axis (``= kT/N`` for a top-k routing).
    """
    lbar = jnp.mean(loads, axis=-1, keepdims=True)
    return bias + step_size * (lbar - loads)


def sign_rule_step_size(loads: Array, rate: Array | float) -> Array:
    """Per-expert step ``eps_i = u / |Lbar - load_i|`` that turns :func:`dual_step` into the sign
    rule (``eps_i = 0`` where the expert is exactly balanced, where the sign rule does not move).
    """
    err = jnp.abs(jnp.mean(loads, axis=-1, keepdims=True) - loads)
    return jnp.where(err > 0, rate / jnp.where(err > 0, err, 1.0), 0.0)


class BalancerState(NamedTuple):
    """Dual state of :class:`AuxLossFreeBalancer`.

    Attributes
    ----------
    bias : Array of shape (..., n_experts)
        Routing bias ``b`` = dual variables ``p`` (one row per MoE layer if batched).
    rate : Array
        Base rate ``u`` (sign rule) or ``c0`` (dual step); traced, so a sweep never recompiles.
    step : Array
        Number of updates applied so far (int32).
    """

    bias: Array
    rate: Array
    step: Array


class AuxLossFreeBalancer(NamedTuple):
    """Auxiliary-loss-free balancer: the dual state and its update (pure ``init`` / ``update``).

    After each batch, with ``e_i = Lbar - load_i`` and ``eta_n = rate * s(n)`` (``n`` = update
    count starting at 1, ``s(n)`` = 1, 1/n or 1/sqrt(n)):

    * ``"sign"``: ``b_i += eta_n sign(e_i)`` (ALF-LB Algorithm 1 with ``u = rate``);
    * ``"magnitude"``: ``b_i += eta_n e_i / Lbar`` (the magnitude rule of ALF-LB Table 3; the
      division by ``Lbar``, ours, keeps the step from scaling with the batch size);
    * ``"dual"``: ``b_i += eta_n e_i`` -- the plain dual subgradient step on ``D(p)``.

    The loads passed to ``update`` are those of batch ``n``; the new bias is used for batch
    ``n + 1`` (no leakage of future tokens). The bias never enters a gradient.

    Parameters
    ----------
    rule : {"sign", "magnitude", "dual"}
    schedule : {"constant", "inv_t", "inv_sqrt_t"}
    center : bool
        Subtract the mean bias after each update (routing is shift invariant, so this changes
        nothing but keeps the logged bias bounded).

    Examples
    --------
    >>> bal = AuxLossFreeBalancer("sign")
    >>> s = bal.init(4, rate=0.1)
    >>> s = bal.update(s, jnp.array([5.0, 1.0, 1.0, 1.0]))
    >>> [round(float(v), 3) for v in s.bias]
    [-0.1, 0.1, 0.1, 0.1]
    """

    rule: str = "sign"
    schedule: str = "constant"
    center: bool = False

    def _check(self) -> None:
        if self.rule not in _RULES:
            raise ValueError(f"rule must be one of {_RULES}; got {self.rule!r}.")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}; got {self.schedule!r}.")

    def init(
        self, n_experts: int, rate: float = 1e-3, shape: tuple[int, ...] = ()
    ) -> BalancerState:
        """Zero bias of shape ``shape + (n_experts,)`` (ALF-LB initialises ``b = 0``)."""
        self._check()
        if isinstance(rate, int | float) and rate < 0:
            raise ValueError(f"rate must be >= 0; got {rate}. Use 1e-3 (the paper's u).")
        return BalancerState(
            bias=jnp.zeros((*shape, n_experts), jnp.float32),
            rate=jnp.asarray(rate, jnp.float32),
            step=jnp.zeros((), jnp.int32),
        )

    def step_size(self, step: Array, rate: Array) -> Array:
        """``eta_n`` for the ``n = step + 1``-th update."""
        n = (step + 1).astype(jnp.float32)
        if self.schedule == "constant":
            return rate
        if self.schedule == "inv_t":
            return rate / n
        return rate / jnp.sqrt(n)

    def update(self, state: BalancerState, loads: Array) -> BalancerState:
        """Apply one bias update from the loads ``[..., N]`` of the last batch."""
        self._check()
        loads = jax.lax.stop_gradient(jnp.asarray(loads, jnp.float32))
        eta = self.step_size(state.step, state.rate)
        lbar = jnp.mean(loads, axis=-1, keepdims=True)
        err = lbar - loads
        if self.rule == "sign":
            bias = state.bias + eta * jnp.sign(err)
        elif self.rule == "magnitude":
            bias = state.bias + eta * err / jnp.where(lbar > 0, lbar, 1.0)
        else:
            bias = dual_step(state.bias, loads, eta)
        if self.center:
            bias = bias - jnp.mean(bias, axis=-1, keepdims=True)
        return BalancerState(bias=bias, rate=state.rate, step=state.step + 1)
