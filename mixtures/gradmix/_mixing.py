"""MSE-optimal mixing of an unbiased, noisy and a biased, quieter gradient estimator.

Closed form (BVPO, Zhu et al. 2025, Theorem 2) and an online estimator of the optimal
weight from per-example gradients (running moments with explicit batch-size handling).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from mixtures.base import x64_scope
from mixtures.gradmix._core import (
    BIAS_MODELS,
    MixingMoments,
    MixingState,
    MixingWeight,
    debias_moments,
    ema_update,
    moments_core,
    plug_in_weight_core,
    weight_from_mse_terms,
    zero_mixing_state,
)

__all__ = [
    "estimate_mixing_moments",
    "init_mixing_state",
    "mix_gradients",
    "mixing_mse",
    "mixing_weight_from_moments",
    "online_mixing_weight",
    "optimal_mixing_weight",
    "random_projection",
    "update_mixing_state",
]


def mixing_mse(alpha: Any, mse_t: Any, mse_e: Any, cross: Any) -> Array:
    r"""MSE of the convex combination ``alpha g_t + (1 - alpha) g_e``.

    .. math::

        \mathrm{MSE}(\alpha) = \alpha^2 A + (1-\alpha)^2 B + 2\alpha(1-\alpha) C

    with ``A = MSE(g_t)``, ``B = MSE(g_e)``, ``C = E[(g_t - mu)^T (g_e - mu)]``
    (scalar form of BVPO Theorem 2).

    Examples
    --------
    >>> float(mixing_mse(0.5, 4.0, 1.0, 0.0))
    1.25
    """
    with x64_scope():
        alpha = jnp.asarray(alpha, jnp.float64)
        return alpha**2 * mse_t + (1 - alpha) ** 2 * mse_e + 2 * alpha * (1 - alpha) * cross


def optimal_mixing_weight(
    bias_t: Any,
    bias_e: Any,
    trace_cov_t: Any,
    trace_cov_e: Any,
    trace_cov_te: Any = 0.0,
    *,
    batch_size: Any = 1,
    alpha_min: float = 0.0,
    alpha_max: float = 1.0,
) -> MixingWeight:
    r"""Closed-form MSE-optimal weight of ``g_t`` in ``alpha g_t + (1 - alpha) g_e``.

    BVPO Theorem 2 (per example), extended to minibatch means of ``batch_size``
    i.i.d. examples (the covariance terms are divided by ``n``):

    .. math::

        A = \|b_t\|^2 + \tfrac{1}{n}\operatorname{tr}\Sigma_t,\quad
        B = \|b_e\|^2 + \tfrac{1}{n}\operatorname{tr}\Sigma_e,\quad
        C = b_t^\top b_e + \tfrac{1}{n}\operatorname{tr}\Sigma_{te},

        \alpha^\star = \operatorname{clip}_{[0,1]}\frac{B - C}{A + B - 2C}.

    ``MSE(alpha)`` is a convex quadratic, so the clipped value is optimal on ``[0, 1]``
    and ``MSE(alpha*) <= min(A, B)``. If ``A + B - 2C = 0`` (``g_t = g_e`` almost surely),
    every weight is optimal and 0.5 is returned.

    Parameters
    ----------
    bias_t, bias_e : array-like of shape (n_features,)
        ``E g_t - mu`` and ``E g_e - mu`` (``mu`` the true gradient).
    trace_cov_t, trace_cov_e : float
        ``tr Cov(g_t)`` and ``tr Cov(g_e)`` of one example.
    trace_cov_te : float, default=0.0
        ``tr E[(g_t - E g_t)(g_e - E g_e)^T]`` of one example (0 for independent data).
    batch_size : int or float, default=1
        Effective number of i.i.d. examples averaged into each gradient (count gradient
        accumulation steps). Traced, so changing it does not recompile.
    alpha_min, alpha_max : float, default=0.0, 1.0
        Clipping interval (a sub-interval of [0, 1]).

    Returns
    -------
    MixingWeight
        ``alpha``, ``alpha_unclipped``, ``mse`` and the terms ``A``, ``B``, ``C``.

    Raises
    ------
    ValueError
        If the bias vectors have different shapes or the clipping interval is invalid.

    Examples
    --------
    >>> w = optimal_mixing_weight([0.0, 0.0], [0.3, 0.0], 4.0, 1.0)
    >>> round(float(w.alpha), 4), round(float(w.mse), 4)
    (0.2141, 0.8566)
    """
    _check_interval(alpha_min, alpha_max)
    with x64_scope():
        bt = jnp.atleast_1d(jnp.asarray(bias_t, jnp.float64))
        be = jnp.atleast_1d(jnp.asarray(bias_e, jnp.float64))
        if bt.shape != be.shape:
            raise ValueError(
                f"bias_t and bias_e must have the same shape; got {bt.shape} and {be.shape}. "
                "Pass both biases as vectors over the same parameters."
            )
        n = jnp.asarray(batch_size, jnp.float64)
        mse_t = bt @ bt + jnp.asarray(trace_cov_t, jnp.float64) / n
        mse_e = be @ be + jnp.asarray(trace_cov_e, jnp.float64) / n
        cross = bt @ be + jnp.asarray(trace_cov_te, jnp.float64) / n
        return weight_from_mse_terms(mse_t, mse_e, cross, alpha_min, alpha_max)


def _check_interval(alpha_min, alpha_max) -> None:
    if not (0.0 <= float(alpha_min) <= float(alpha_max) <= 1.0):
        raise ValueError(
            "expected 0 <= alpha_min <= alpha_max <= 1; "
            f"got alpha_min={alpha_min}, alpha_max={alpha_max}. Pass a sub-interval of [0, 1]."
        )


def mix_gradients(g_t: Any, g_e: Any, alpha: Any) -> Any:
    r"""Convex combination of two gradient pytrees (BVPO Eq. 2).

    .. math:: g_c = \alpha\, g_t + (1 - \alpha)\, g_e

    Parameters
    ----------
    g_t, g_e : pytree of arrays
        Gradients with the same structure (e.g. from the trace and the empty-trace loss).
    alpha : float or scalar Array
        Weight of ``g_t`` (traced; no recompilation when it changes).

    Returns
    -------
    pytree
        The mixed gradient.

    Examples
    --------
    >>> import numpy as np
    >>> mix_gradients({"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 0.0])}, 0.25)["w"]
    array([2.5, 0.5])
    """
    return jax.tree_util.tree_map(lambda a, b: alpha * a + (1 - alpha) * b, g_t, g_e)


def _as_rows(grads: Any, name: str) -> Array:
    g = jnp.asarray(grads)
    if g.ndim == 1:
        raise ValueError(
            f"{name} must have shape (n_rows, n_features) with n_rows >= 2; got shape {g.shape}. "
            "Pass per-example (or per-micro-batch) gradients stacked along axis 0."
        )
    g = g.reshape(g.shape[0], -1)
    if g.shape[0] < 2:
        raise ValueError(
            f"{name} needs at least 2 rows to estimate a variance; got {g.shape[0]}. "
            "Use a batch of >= 2 examples or micro-batches (or a probe batch)."
        )
    return g


def estimate_mixing_moments(
    grads_t: Any,
    grads_e: Any,
    *,
    paired: bool = False,
    microbatch_size_t: Any = 1,
    microbatch_size_e: Any = 1,
    reference: Any = None,
) -> MixingMoments:
    r"""Per-example moment estimates from one batch of gradients of the two estimators.

    With ``m`` rows, each the mean gradient of ``b`` examples (``b = 1``: per-example
    gradients from ``jax.vmap(jax.grad(loss))``), ``n = m b`` and

    .. math::

        v = \frac{b}{m-1}\sum_j \|\bar g_j - \bar g\|^2,\qquad
        \widehat{\|b_t - b_e\|^2} = \|\bar g_t - \bar g_e\|^2
            - \Big(\frac{v_t}{n_t} + \frac{v_e}{n_e} - \frac{2c}{n}\Big),

    an unbiased estimate of the squared gap (may be negative; clipping happens in
    :func:`mixing_weight_from_moments`). The paired cross term ``c`` is estimated the
    same way when row ``j`` of both batches comes from the same prompt(s).

    Parameters
    ----------
    grads_t, grads_e : array-like of shape (n_rows, n_features)
        Per-example (or per-micro-batch mean) gradients of ``l_t`` and ``l_e``; at least 2
        rows each. Compress large models with :func:`random_projection` first.
    paired : bool, default=False
        Whether rows are paired (same prompts); requires equal shapes. Otherwise the
        cross term is exactly 0 (independent batches).
    microbatch_size_t, microbatch_size_e : int, default=1
        Number of examples averaged into each row.
    reference : array-like of shape (n_features,), optional
        A low-bias estimate of the true gradient (e.g. self-normalised importance
        sampling over several traces), independent of both batches; enables the
        ``"reference"`` bias model.

    Returns
    -------
    MixingMoments

    Raises
    ------
    ValueError
        On fewer than 2 rows, mismatched feature dimensions, or unequal shapes when paired.
    """
    with x64_scope():
        gt = _as_rows(jnp.asarray(grads_t, jnp.float64), "grads_t")
        ge = _as_rows(jnp.asarray(grads_e, jnp.float64), "grads_e")
        if gt.shape[1] != ge.shape[1]:
            raise ValueError(
                f"grads_t and grads_e must have the same number of features; got "
                f"{gt.shape[1]} and {ge.shape[1]}. Flatten both gradients the same way."
            )
        if paired and gt.shape != ge.shape:
            raise ValueError(
                f"paired=True needs grads_t and grads_e of equal shape; got {gt.shape} and "
                f"{ge.shape}. Use paired=False for independent batches."
            )
        ref = None if reference is None else jnp.asarray(reference, jnp.float64).reshape(-1)
        if ref is not None and ref.shape[0] != gt.shape[1]:
            raise ValueError(
                f"reference must have {gt.shape[1]} entries; got {ref.shape[0]}. "
                "Flatten it like the gradients."
            )
        mb_t = jnp.asarray(microbatch_size_t, jnp.float64)
        mb_e = jnp.asarray(microbatch_size_e, jnp.float64)
        return moments_core(gt, ge, ref, mb_t, mb_e, paired=paired)


def mixing_weight_from_moments(
    moments: MixingMoments,
    n_t: Any,
    n_e: Any,
    *,
    bias_model: str = "unbiased_trace",
    alpha_min: float = 0.0,
    alpha_max: float = 1.0,
) -> MixingWeight:
    r"""Plug-in estimate of the optimal weight for an update with batch sizes ``n_t``, ``n_e``.

    The denominator :math:`E\|\bar g_t - \bar g_e\|^2` is fully estimable; the numerator's
    bias part :math:`b_e^\top(b_e - b_t)` needs a bias model because ``mu`` is unknown:

    .. math::

        \alpha = \frac{\beta_{te} + v_e/n_e - c/n}{d^2 + v_t/n_t + v_e/n_e - 2c/n},\qquad
        d^2 = \max(0, \widehat{\|b_t - b_e\|^2})

    with :math:`\beta_{te} = d^2` for ``"unbiased_trace"`` (g_t unbiased, exact at the
    reference policy), :math:`\beta_{te} = d^2 = 0` for ``"variance_only"``, and the
    reference-based estimate for ``"reference"``.

    Parameters
    ----------
    moments : MixingMoments
        Per-example moments (from :func:`estimate_mixing_moments` or a running state).
    n_t, n_e : int
        Effective batch sizes of the ACTUAL update (including gradient accumulation).
    bias_model : {"unbiased_trace", "variance_only", "reference"}, default="unbiased_trace"
    alpha_min, alpha_max : float, default=0.0, 1.0
        Clipping interval.

    Returns
    -------
    MixingWeight
        ``alpha``; ``mse_t`` and ``mse_e`` hold the estimated ``A - C`` and ``B - C``,
        ``cross`` is 0 and ``mse`` is ``MSE(alpha) - C``: without ``mu`` the data determine
        the MSE only up to the constant ``C``.

    Raises
    ------
    ValueError
        For an unknown bias model or an invalid clipping interval.
    """
    if bias_model not in BIAS_MODELS:
        raise ValueError(
            f"bias_model must be one of {BIAS_MODELS}; got {bias_model!r}. "
            "Use 'unbiased_trace' near the reference policy."
        )
    _check_interval(alpha_min, alpha_max)
    with x64_scope():
        moments = MixingMoments(*(jnp.asarray(m, jnp.float64) for m in moments))
        return plug_in_weight_core(
            moments,
            jnp.asarray(n_t, jnp.float64),
            jnp.asarray(n_e, jnp.float64),
            alpha_min,
            alpha_max,
            bias_model=bias_model,
        )


def init_mixing_state() -> MixingState:
    """Empty running-moment state for :func:`update_mixing_state` (float64)."""
    with x64_scope():
        return zero_mixing_state(jnp.float64)


def update_mixing_state(
    state: MixingState,
    grads_t: Any,
    grads_e: Any,
    *,
    decay: Any = 0.9,
    paired: bool = False,
    microbatch_size_t: Any = 1,
    microbatch_size_e: Any = 1,
    reference: Any = None,
) -> MixingState:
    r"""Fold one batch's per-example moments into exponential moving averages.

    EMAs are kept of the *moments* (not of alpha), debiased Adam-style by the
    accumulated weight :math:`1 - \text{decay}^k`, so the first steps are not biased toward
    0. Because the moments are per example, steps with different batch sizes mix freely.

    Parameters
    ----------
    state : MixingState
        From :func:`init_mixing_state` or a previous update.
    grads_t, grads_e, paired, microbatch_size_t, microbatch_size_e, reference
        As in :func:`estimate_mixing_moments`.
    decay : float, default=0.9
        EMA decay in [0, 1); 0 uses the current batch only. Traced.

    Returns
    -------
    MixingState
    """
    if not isinstance(decay, jax.core.Tracer) and not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"decay must be in [0, 1); got {decay}. Use e.g. decay=0.9.")
    new = estimate_mixing_moments(
        grads_t,
        grads_e,
        paired=paired,
        microbatch_size_t=microbatch_size_t,
        microbatch_size_e=microbatch_size_e,
        reference=reference,
    )
    with x64_scope():
        return ema_update(state, new, jnp.asarray(decay, jnp.float64))


def online_mixing_weight(
    state: MixingState,
    n_t: Any,
    n_e: Any,
    *,
    bias_model: str = "unbiased_trace",
    alpha_min: float = 0.0,
    alpha_max: float = 1.0,
) -> MixingWeight:
    """Optimal-weight estimate from the debiased running moments of ``state``.

    Parameters
    ----------
    state : MixingState
        After at least one :func:`update_mixing_state`.
    n_t, n_e, bias_model, alpha_min, alpha_max
        As in :func:`mixing_weight_from_moments`.

    Returns
    -------
    MixingWeight

    Raises
    ------
    ValueError
        If the state has never been updated.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> state = init_mixing_state()
    >>> for _ in range(200):
    ...     gt = rng.normal(0.0, 2.0, size=(8, 3))  # unbiased, tr Sigma_t = 12
    ...     ge = 0.5 + rng.normal(0.0, 1.0, size=(8, 3))  # ||b_e||^2 = 0.75, tr Sigma_e = 3
    ...     state = update_mixing_state(state, gt, ge, decay=0.99)
    >>> round(float(online_mixing_weight(state, 1, 1).alpha), 1)  # exact 3.75 / 15.75 = 0.24
    0.2
    """
    if not isinstance(state.count, jax.core.Tracer) and int(state.count) == 0:
        raise ValueError(
            "the mixing state has no data yet (count = 0). Call update_mixing_state first."
        )
    with x64_scope():
        moments = debias_moments(state)
    return mixing_weight_from_moments(
        moments, n_t, n_e, bias_model=bias_model, alpha_min=alpha_min, alpha_max=alpha_max
    )


def random_projection(key: Array, n_features: int, n_components: int) -> Array:
    r"""Gaussian sketch ``P`` of shape (n_components, n_features) with ``E[P^T P] = I``.

    Project per-example gradients of a large model (``grads @ P.T``) before
    :func:`estimate_mixing_moments`; inner products, hence all moments, are preserved in
    expectation.

    .. math:: P_{ij} \sim \mathcal N(0, 1/k)

    Examples
    --------
    >>> import jax
    >>> random_projection(jax.random.PRNGKey(0), 10, 4).shape
    (4, 10)
    """
    if n_components < 1 or n_features < 1:
        raise ValueError(
            f"n_features and n_components must be >= 1; got {n_features} and {n_components}."
        )
    with x64_scope():
        return jax.random.normal(key, (n_components, n_features), jnp.float64) / jnp.sqrt(
            n_components
        )
