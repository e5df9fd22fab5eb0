r"""Result types and jitted cores shared by :mod:`mixtures.gradmix` and its toy test bed.

Pure functions over float arrays; every continuous quantity (batch sizes, clipping
interval, EMA decay) is traced and only ``paired`` and ``bias_model`` are static, so a
sweep never recompiles. The validated public API lives in :mod:`mixtures.gradmix`.

Notation (Zhu et al. 2025, arXiv 2510.05095, Theorem 2): ``b_t = E g_t - mu`` and
``b_e = E g_e - mu`` are the biases of the two estimators of the true gradient ``mu``,
``Sigma_t``, ``Sigma_e``, ``Sigma_te`` their (cross-)covariances, and

.. math::

    A = E\|g_t - \mu\|^2,\quad B = E\|g_e - \mu\|^2,\quad
    C = E[(g_t - \mu)^\top (g_e - \mu)].
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

__all__ = [
    "BIAS_MODELS",
    "MixingMoments",
    "MixingState",
    "MixingWeight",
    "debias_moments",
    "ema_update",
    "moments_core",
    "plug_in_weight_core",
    "weight_from_mse_terms",
    "zero_mixing_state",
]

#: Bias models of the plug-in weight (see :func:`mixtures.gradmix.mixing_weight_from_moments`).
BIAS_MODELS = ("unbiased_trace", "variance_only", "reference")


class MixingWeight(NamedTuple):
    """Optimal mixing weight and the scalar MSE terms behind it.

    Attributes
    ----------
    alpha : Array
        Weight of ``g_t`` after clipping to ``[alpha_min, alpha_max]`` (default ``[0, 1]``).
    alpha_unclipped : Array
        ``(B - C) / (A + B - 2 C)`` before clipping (0.5 when the denominator is 0).
    mse : Array
        ``MSE(alpha)`` of the mixed estimator at ``alpha``.
    mse_t, mse_e, cross : Array
        ``A = E||g_t - mu||^2``, ``B = E||g_e - mu||^2``,
        ``C = E[(g_t - mu)^T (g_e - mu)]`` at the batch size used.
    """

    alpha: Array
    alpha_unclipped: Array
    mse: Array
    mse_t: Array
    mse_e: Array
    cross: Array


class MixingMoments(NamedTuple):
    """Per-example moment estimates that determine the optimal weight.

    All variances are *per example* (the trace of one example's gradient covariance),
    so they can be averaged over steps with different batch sizes.

    Attributes
    ----------
    gap_sq : Array
        Unbiased (unclipped) estimate of ``||b_t - b_e||^2 = ||E g_t - E g_e||^2``.
    var_t, var_e : Array
        Estimates of ``tr Sigma_t`` and ``tr Sigma_e``.
    cov_te : Array
        Estimate of ``tr Sigma_te`` (exactly 0 when the two batches are independent).
    bias_cross : Array
        Estimate of ``b_e^T (b_e - b_t)`` from a reference gradient (bias model ``"reference"``);
        0 when no reference was given.
    """

    gap_sq: Array
    var_t: Array
    var_e: Array
    cov_te: Array
    bias_cross: Array


class MixingState(NamedTuple):
    """Running (exponentially weighted) moments of the online estimator.

    Attributes
    ----------
    moments : MixingMoments
        Exponentially weighted sums of per-step :class:`MixingMoments` (not yet debiased).
    weight : Array
        Sum of the EMA weights, ``1 - decay**count``, used to debias ``moments``.
    count : Array
        Number of updates.
    """

    moments: MixingMoments
    weight: Array
    count: Array


@jax.jit
def weight_from_mse_terms(mse_t, mse_e, cross, alpha_min, alpha_max) -> MixingWeight:
    r"""Clipped minimiser of :math:`\alpha^2 A + (1-\alpha)^2 B + 2\alpha(1-\alpha) C`.

    .. math::

        \alpha^\star = \operatorname{clip}_{[\alpha_{min}, \alpha_{max}]}
        \frac{B - C}{A + B - 2C},

    and 0.5 when ``A + B - 2C = 0`` (every weight is optimal).
    """
    den = mse_t + mse_e - 2 * cross  # = E||g_t - g_e||^2 >= 0
    num = mse_e - cross
    safe = den > 0
    alpha_unc = jnp.where(safe, num / jnp.where(safe, den, 1.0), 0.5)
    alpha = jnp.clip(alpha_unc, alpha_min, alpha_max)
    mse = alpha**2 * mse_t + (1 - alpha) ** 2 * mse_e + 2 * alpha * (1 - alpha) * cross
    return MixingWeight(alpha, alpha_unc, mse, mse_t, mse_e, cross)


@jax.jit(static_argnames=("paired",))
def moments_core(gt, ge, reference, mb_t, mb_e, *, paired: bool) -> MixingMoments:
    """Per-example moments from gradient rows ``gt`` (m_t, d) and ``ge`` (m_e, d).

    Each row is the mean gradient of ``mb_t`` (``mb_e``) examples; ``reference`` is a
    low-bias gradient of shape (d,) or ``None``. See
    :func:`mixtures.gradmix.estimate_mixing_moments` for the estimators.
    """
    m_t, m_e = gt.shape[0], ge.shape[0]
    mean_t, mean_e = gt.mean(0), ge.mean(0)
    dt, de = gt - mean_t, ge - mean_e
    # per-example variance from m row means of b examples: v = b/(m-1) sum ||gbar_j - gbar||^2
    var_t = mb_t * jnp.sum(dt * dt) / (m_t - 1)
    var_e = mb_e * jnp.sum(de * de) / (m_e - 1)
    n_t, n_e = mb_t * m_t, mb_e * m_e
    cov = mb_t * jnp.sum(dt * de) / (m_t - 1) if paired else jnp.zeros((), gt.dtype)
    noise = var_t / n_t + var_e / n_e - 2 * cov / jnp.maximum(n_t, n_e)
    diff = mean_t - mean_e
    gap_sq = diff @ diff - noise  # E||gbar_t - gbar_e||^2 = ||b_t - b_e||^2 + noise
    if reference is None:
        bias_cross = jnp.zeros((), gt.dtype)
    else:
        # E[(gbar_e - ref)^T (gbar_e - gbar_t)] = b_e^T (b_e - b_t) + var_e/n_e - cov/n
        # for a reference independent of both batches.
        bias_cross = (mean_e - reference) @ (mean_e - mean_t) - (
            var_e / n_e - cov / jnp.maximum(n_t, n_e)
        )
    return MixingMoments(gap_sq, var_t, var_e, cov, bias_cross)


@jax.jit(static_argnames=("bias_model",))
def plug_in_weight_core(
    moments: MixingMoments, n_t, n_e, alpha_min, alpha_max, *, bias_model: str
) -> MixingWeight:
    """Plug-in optimal weight for batch sizes ``n_t``, ``n_e`` under ``bias_model``.

    Returns ``A - C`` and ``B - C`` in ``mse_t`` and ``mse_e`` (``cross`` = 0): without
    ``mu`` the data determine the MSE only up to the constant ``C``.
    """
    noise_t = moments.var_t / n_t
    noise_e = moments.var_e / n_e
    noise_te = moments.cov_te / jnp.maximum(n_t, n_e)
    gap_sq = jnp.maximum(moments.gap_sq, 0.0)
    if bias_model == "unbiased_trace":  # b_t = 0, so b_e^T (b_e - b_t) = ||b_t - b_e||^2
        bias_cross = gap_sq
    elif bias_model == "variance_only":  # ignore bias altogether
        gap_sq = jnp.zeros_like(gap_sq)
        bias_cross = gap_sq
    else:  # "reference": bias from a reference gradient
        bias_cross = moments.bias_cross
    # With mu unknown, only A - C, B - C and A + B - 2C are needed:
    # B - C = b_e^T (b_e - b_t) + noise_e - noise_te,
    # A + B - 2C = gap_sq + noise_t + noise_e - 2 noise_te
    mse_e = bias_cross + noise_e - noise_te  # B - C, so C := 0 below
    mse_t = gap_sq + noise_t + noise_e - 2 * noise_te - mse_e  # A - C
    return weight_from_mse_terms(mse_t, mse_e, jnp.zeros_like(mse_t), alpha_min, alpha_max)


def zero_mixing_state(dtype) -> MixingState:
    """A :class:`MixingState` with no data (all moments 0, ``count`` 0) in ``dtype``."""
    zero = jnp.zeros((), dtype)
    return MixingState(MixingMoments(zero, zero, zero, zero, zero), zero, jnp.zeros((), int))


@jax.jit
def ema_update(state: MixingState, new: MixingMoments, decay) -> MixingState:
    """Fold ``new`` into the exponential moving averages of ``state`` with weight ``1 - decay``."""
    moments = jax.tree_util.tree_map(lambda s, x: decay * s + (1 - decay) * x, state.moments, new)
    return MixingState(moments, decay * state.weight + (1 - decay), state.count + 1)


def debias_moments(state: MixingState) -> MixingMoments:
    """The EMA moments divided by the accumulated weight ``1 - decay**count`` (Adam-style)."""
    return jax.tree_util.tree_map(lambda m: m / state.weight, state.moments)
