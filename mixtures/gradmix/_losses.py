"""Preference-optimisation losses over sequence log-probabilities (DPO, trace, empty trace, BVPO).

Framework-agnostic (computed in the dtype of the inputs): every loss takes per-example
*summed* log-probabilities of the chosen and rejected responses under the policy and the
frozen reference model, so a user with a real language model computes those four arrays
and plugs them in.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

__all__ = [
    "BVPOLoss",
    "PreferenceBatch",
    "PreferenceLoss",
    "bvpo_loss",
    "dpo_loss",
    "empty_trace_dpo_loss",
    "trace_dpo_loss",
]


class PreferenceBatch(NamedTuple):
    """Summed log-probabilities of one batch of preference pairs, each of shape (n_pairs,).

    Attributes
    ----------
    policy_chosen, policy_rejected : Array
        ``log pi_theta`` of the chosen / rejected response.
    reference_chosen, reference_rejected : Array
        ``log pi_ref`` of the same responses (no gradient flows through them).
    """

    policy_chosen: Any
    policy_rejected: Any
    reference_chosen: Any
    reference_rejected: Any


class PreferenceLoss(NamedTuple):
    """Result of a DPO-type loss.

    Attributes
    ----------
    loss : Array
        Mean loss over the batch (the quantity to differentiate).
    losses : Array of shape (n_pairs,)
        Per-example losses ``-log sigmoid(margin)``.
    margins : Array of shape (n_pairs,)
        ``beta * (Delta_chosen - Delta_rejected)``.
    """

    loss: Array
    losses: Array
    margins: Array


class BVPOLoss(NamedTuple):
    """Result of :func:`bvpo_loss`: the combined loss and its parts for logging.

    Attributes
    ----------
    loss : Array
        ``alpha * loss_trace + (1 - alpha) * loss_empty`` (BVPO Eq. 2).
    loss_trace, loss_empty : Array
        Mean trace-based and empty-trace DPO losses.
    losses_trace, losses_empty : Array
        Per-example losses of the two batches.
    margins_trace, margins_empty : Array
        Per-example margins of the two batches.
    alpha : Array
        The weight used (gradient stopped).
    """

    loss: Array
    loss_trace: Array
    loss_empty: Array
    losses_trace: Array
    losses_empty: Array
    margins_trace: Array
    margins_empty: Array
    alpha: Array


def _check_batch(batch: PreferenceBatch, name: str) -> tuple[Array, ...]:
    arrays = tuple(jnp.asarray(a) for a in batch)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 1:
        raise ValueError(
            f"{name}: expected four arrays of the same shape (n_pairs,); got shapes "
            f"{[a.shape for a in arrays]}. Sum token log-probs per sequence first."
        )
    if not all(jnp.issubdtype(a.dtype, jnp.floating) for a in arrays):
        raise ValueError(
            f"{name}: log-probabilities must be floating point; got "
            f"{[str(a.dtype) for a in arrays]}."
        )
    return arrays


def _check_beta(beta: Any) -> None:
    if not isinstance(beta, jax.core.Tracer) and not float(beta) > 0:
        raise ValueError(f"beta must be > 0; got {beta}. DPO uses e.g. beta=0.1.")


@jax.jit
def _dpo_core(pc, pr, rc, rr, beta) -> PreferenceLoss:
    rc, rr = jax.lax.stop_gradient(rc), jax.lax.stop_gradient(rr)
    margins = beta * ((pc - rc) - (pr - rr))
    losses = jax.nn.softplus(-margins)  # -log sigmoid(m), stable for large |m|
    return PreferenceLoss(losses.mean(), losses, margins)


def dpo_loss(
    policy_chosen: Any,
    policy_rejected: Any,
    reference_chosen: Any,
    reference_rejected: Any,
    beta: Any = 0.1,
) -> PreferenceLoss:
    r"""Direct preference optimisation loss (Rafailov et al. 2023).

    .. math::

        \ell = -\log\sigma(m),\qquad
        m = \beta\big[(\log\pi_\theta(y^+) - \log\pi_{ref}(y^+))
                     - (\log\pi_\theta(y^-) - \log\pi_{ref}(y^-))\big]

    Parameters
    ----------
    policy_chosen, policy_rejected : array-like of shape (n_pairs,)
        Summed log-probabilities under the policy (differentiable).
    reference_chosen, reference_rejected : array-like of shape (n_pairs,)
        Summed log-probabilities under the reference model (gradient stopped).
    beta : float, default=0.1
        Inverse temperature (> 0). Traced: changing it does not recompile.

    Returns
    -------
    PreferenceLoss
        ``loss`` (batch mean), per-example ``losses`` and ``margins``.

    Raises
    ------
    ValueError
        If the four arrays are not 1-D of equal shape, or ``beta <= 0``.

    Examples
    --------
    >>> out = dpo_loss([-1.0], [-2.0], [-1.5], [-1.5], beta=1.0)
    >>> round(float(out.loss), 4), float(out.margins[0])
    (0.3133, 1.0)
    """
    _check_beta(beta)
    arrays = _check_batch(
        PreferenceBatch(policy_chosen, policy_rejected, reference_chosen, reference_rejected),
        "dpo_loss",
    )
    return _dpo_core(*arrays, beta)


def trace_dpo_loss(
    policy_chosen: Any,
    policy_rejected: Any,
    reference_chosen: Any,
    reference_rejected: Any,
    beta: Any = 0.1,
) -> PreferenceLoss:
    r"""Trace-based loss ``l_t`` of BVPO Eq. (1): DPO on joint trace-and-answer log-probs.

    .. math::

        \ell_t = -\log\sigma\Big(\beta\log\frac{\pi_\theta(r^+, y^+|x)}{\pi_{ref}(r^+, y^+|x)}
                 - \beta\log\frac{\pi_\theta(r^-, y^-|x)}{\pi_{ref}(r^-, y^-|x)}\Big)

    Pass ``log pi(r, y | x)`` summed over the reasoning-trace *and* answer tokens of each
    response sampled in thinking mode. Its gradient ``g_t`` is a single-trace Monte Carlo
    estimate of the marginal DPO gradient, unbiased at the reference policy. Arguments
    and return value as in :func:`dpo_loss`.
    """
    _check_beta(beta)
    arrays = _check_batch(
        PreferenceBatch(policy_chosen, policy_rejected, reference_chosen, reference_rejected),
        "trace_dpo_loss",
    )
    return _dpo_core(*arrays, beta)


def empty_trace_dpo_loss(
    policy_chosen: Any,
    policy_rejected: Any,
    reference_chosen: Any,
    reference_rejected: Any,
    beta: Any = 0.1,
) -> PreferenceLoss:
    r"""Empty-trace loss ``l_e`` of BVPO: DPO on answers generated with an empty trace.

    .. math::

        \ell_e = -\log\sigma\Big(\beta\log\frac{\pi_\theta(y'^+|x, \varnothing)}
                 {\pi_{ref}(y'^+|x, \varnothing)}
                 - \beta\log\frac{\pi_\theta(y'^-|x, \varnothing)}
                 {\pi_{ref}(y'^-|x, \varnothing)}\Big)

    The factor ``log pi(empty | x)`` of the joint log-probability cancels in the margin,
    so pass the answer tokens' log-probs with the empty think block appended to the
    prompt. Arguments and return value as in :func:`dpo_loss`.
    """
    _check_beta(beta)
    arrays = _check_batch(
        PreferenceBatch(policy_chosen, policy_rejected, reference_chosen, reference_rejected),
        "empty_trace_dpo_loss",
    )
    return _dpo_core(*arrays, beta)


@jax.jit
def _bvpo_core(trace, empty, beta, alpha) -> BVPOLoss:
    alpha = jax.lax.stop_gradient(alpha)
    lt = _dpo_core(*trace, beta)
    le = _dpo_core(*empty, beta)
    loss = alpha * lt.loss + (1 - alpha) * le.loss
    return BVPOLoss(loss, lt.loss, le.loss, lt.losses, le.losses, lt.margins, le.margins, alpha)


def bvpo_loss(
    trace_batch: PreferenceBatch,
    empty_batch: PreferenceBatch,
    *,
    beta: Any = 0.1,
    alpha: Any = 0.5,
) -> BVPOLoss:
    r"""BVPO combined loss (Eq. 2): a convex combination of trace and empty-trace DPO.

    .. math:: L_c = \alpha L_t + (1 - \alpha) L_e,\qquad g_c = \alpha g_t + (1-\alpha) g_e

    ``alpha`` is traced and gradient-stopped, so a weight re-estimated every step (e.g.
    :func:`~mixtures.gradmix.online_mixing_weight`) neither recompiles nor receives
    gradient. The paper's fixed ``alpha = 0.5`` is *not* guaranteed to beat either
    component; only the MSE-optimal weight is (Theorem 2).

    Parameters
    ----------
    trace_batch : PreferenceBatch
        Joint (trace + answer) log-probs of thinking-mode pairs, each of shape (n_t,).
    empty_batch : PreferenceBatch
        Answer log-probs of empty-trace pairs, each of shape (n_e,); may differ in size
        and prompts from ``trace_batch``.
    beta : float, default=0.1
        DPO inverse temperature.
    alpha : float, default=0.5
        Weight of the trace loss in [0, 1].

    Returns
    -------
    BVPOLoss

    Raises
    ------
    ValueError
        On malformed batches, ``beta <= 0`` or a concrete ``alpha`` outside [0, 1].

    Examples
    --------
    >>> t = PreferenceBatch([-3.0], [-4.0], [-3.5], [-3.5])
    >>> e = PreferenceBatch([-1.0], [-1.2], [-1.0], [-1.0])
    >>> round(float(bvpo_loss(t, e, beta=1.0, alpha=0.25).loss), 4)
    0.5269
    """
    _check_beta(beta)
    if not isinstance(alpha, jax.core.Tracer) and not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}. Clip the mixing weight.")
    trace = _check_batch(PreferenceBatch(*trace_batch), "trace_batch")
    empty = _check_batch(PreferenceBatch(*empty_batch), "empty_batch")
    return _bvpo_core(trace, empty, beta, alpha)
