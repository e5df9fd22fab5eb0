"""THOR's training objective: two stochastic passes, cross-entropy plus symmetric KL.

Zuo et al., "Taming Sparsely Activated Transformer with Stochastic Experts", ICLR 2022 (arXiv
2110.04260). The loss follows the criterion of the official fairseq code
(github.com/microsoft/Stochastic-Mixture-of-Experts).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

__all__ = ["ThorLoss", "label_smoothed_cross_entropy", "symmetric_kl", "thor_loss"]


class ThorLoss(NamedTuple):
    """Result of :func:`thor_loss` (sums are over non-masked target positions).

    Attributes
    ----------
    loss : Array
        ``(sum CE_a + sum CE_b + alpha * sum CR) / n_tokens`` -- differentiate this.
    ce_a, ce_b : Array
        Summed (label-smoothed) cross-entropies of the two passes.
    consistency : Array
        Summed symmetric KL ``CR(p_a, p_b)``.
    n_tokens : Array
        Number of non-masked target positions.
    """

    loss: Array
    ce_a: Array
    ce_b: Array
    consistency: Array
    n_tokens: Array


def label_smoothed_cross_entropy(
    logits: Array, labels: Array, label_smoothing: float | Array = 0.0
) -> Array:
    """Per-position label-smoothed cross-entropy (fairseq's form).

    .. math::

        \\mathrm{CE}_\\epsilon = (1 - \\epsilon - \\tfrac{\\epsilon}{V-1})(-\\log p_y)
        + \\tfrac{\\epsilon}{V-1} \\sum_v (-\\log p_v),

    i.e. cross-entropy against the target ``1 - eps`` on the label and ``eps/(V-1)`` on every
    other class. Computed from ``log_softmax`` in float32.
    """
    lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    v = lp.shape[-1]
    nll = -jnp.take_along_axis(lp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    smooth = -jnp.sum(lp, axis=-1)
    eps_i = label_smoothing / max(v - 1, 1)
    return (1.0 - label_smoothing - eps_i) * nll + eps_i * smooth


def symmetric_kl(logits_a: Array, logits_b: Array) -> Array:
    """Per-position symmetric KL ``CR = 1/2 [KL(p_a||p_b) + KL(p_b||p_a)]``.

    Equivalently ``1/2 sum_v (p_a - p_b)(log p_a - log p_b)``.

    Symmetric and non-negative; zero iff the two distributions agree.
    """
    la = jax.nn.log_softmax(logits_a.astype(jnp.float32), axis=-1)
    lb = jax.nn.log_softmax(logits_b.astype(jnp.float32), axis=-1)
    return 0.5 * jnp.sum((jnp.exp(la) - jnp.exp(lb)) * (la - lb), axis=-1)


def thor_loss(
    logits_a: Array,
    logits_b: Array,
    labels: Array,
    alpha: float | Array,
    *,
    label_smoothing: float | Array = 0.0,
    mask: Array | None = None,
    stop_gradient_b: bool = False,
) -> ThorLoss:
    """THOR loss of two forward passes with independent expert draws.

    .. math::

        L = \\frac{1}{n_\\text{tok}} \\sum_t \\Big[\\mathrm{CE}_\\epsilon(p^{(1)}_t, y_t)
        + \\mathrm{CE}_\\epsilon(p^{(2)}_t, y_t)
        + \\alpha\\, \\tfrac12\\big(\\mathrm{KL}(p^{(1)}_t\\|p^{(2)}_t)
        + \\mathrm{KL}(p^{(2)}_t\\|p^{(1)}_t)\\big)\\Big]

    As in fairseq the normaliser is the number of target tokens, *not* doubled for the two
    passes. Gradients flow into both passes ("mutual teaching"); ``stop_gradient_b=True`` is the
    teacher-student ablation (not from the paper).

    Parameters
    ----------
    logits_a, logits_b : Array of shape (..., vocab)
        Logits of the two passes.
    labels : int Array of shape (...)
    alpha : float
        Consistency weight (1.0 default in the code, 5.0 in the IWSLT script).
    label_smoothing : float
        ``eps`` (0.1 in the released script).
    mask : Array of shape (...), optional
        1 for real target positions, 0 for padding. Default: all positions.
    stop_gradient_b : bool
        Treat pass ``b`` as a fixed teacher inside the KL.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[2.0, 0.0]])
    >>> out = thor_loss(z, z, jnp.array([0]), alpha=5.0)
    >>> round(float(out.consistency), 6), round(float(out.loss), 4)
    (0.0, 0.2539)
    """
    if logits_a.shape != logits_b.shape:
        raise ValueError(
            f"logits_a and logits_b must have the same shape; got {logits_a.shape} and "
            f"{logits_b.shape}. Run the same batch through the model twice."
        )
    if labels.shape != logits_a.shape[:-1]:
        raise ValueError(
            f"labels must have shape {logits_a.shape[:-1]} (logits without the vocab axis); "
            f"got {labels.shape}."
        )
    m = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    ce_a = jnp.sum(m * label_smoothed_cross_entropy(logits_a, labels, label_smoothing))
    ce_b = jnp.sum(m * label_smoothed_cross_entropy(logits_b, labels, label_smoothing))
    lb = jax.lax.stop_gradient(logits_b) if stop_gradient_b else logits_b
    cr = jnp.sum(m * symmetric_kl(logits_a, lb))
    n_tok = jnp.maximum(jnp.sum(m), 1.0)
    return ThorLoss(
        loss=(ce_a + ce_b + alpha * cr) / n_tok,
        ce_a=ce_a,
        ce_b=ce_b,
        consistency=cr,
        n_tokens=n_tok,
    )
