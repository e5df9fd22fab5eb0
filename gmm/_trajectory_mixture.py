"""The trajectory forecaster's predictive distribution as one Gaussian mixture.

A forecast holds, per agent, K mode probabilities and per mode and future step a
bivariate position Gaussian. :func:`step_mixture` packs it into one
:class:`mixtures.distributions.GaussianMixture` with batch shape (..., T) (the same mode
weights at every step), and :func:`trajectory_log_prob` evaluates the per-trajectory
mixture with that distribution's per-component densities. The training loss of
:class:`gmm.KinematicGMMForecaster` and :func:`gmm.metrics.nll` both use these, so the
project has one Gaussian-mixture log density.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from mixtures.distributions import GaussianMixture

__all__ = ["step_mixture", "trajectory_log_prob"]


def step_mixture(weights, means, covariances) -> GaussianMixture:
    r"""Per-step predictive mixture over positions.

    .. math::

        p(y_t) = \sum_{k=1}^K p_k\, \mathcal N(y_t;\, \mu_{k,t}, \Sigma_{k,t})

    Parameters
    ----------
    weights : array of shape (..., K)
        Mode probabilities (the same at every step).
    means : array of shape (..., K, T, 2)
    covariances : array of shape (..., K, T, 2, 2)

    Returns
    -------
    GaussianMixture
        Batch shape (..., T), K full-covariance components, event shape (2,). Its
        ``log_weights`` have shape (..., 1, K) (broadcast over the steps).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> gm = step_mixture(jnp.ones((3, 2)) / 2, jnp.zeros((3, 2, 4, 2)),
    ...                   jnp.broadcast_to(jnp.eye(2), (3, 2, 4, 2, 2)))
    >>> gm.batch_shape, gm.event_shape, gm.n_components
    ((3, 4), (2,), 2)
    """
    weights = jnp.asarray(weights)
    return GaussianMixture(
        weights[..., None, :],
        jnp.swapaxes(jnp.asarray(means), -3, -2),
        jnp.swapaxes(jnp.asarray(covariances), -4, -3),
    )


def trajectory_log_prob(mixture: GaussianMixture, future):
    r"""Per-trajectory log-likelihood: every step of a trajectory shares one mode.

    .. math::

        \log p(y_{1:T}) = \log \sum_{k=1}^K p_k \prod_{t=1}^T
        \mathcal N(y_t;\, \mu_{k,t}, \Sigma_{k,t})

    Parameters
    ----------
    mixture : GaussianMixture
        From :func:`step_mixture`, batch shape (..., T).
    future : array of shape (..., T, 2)

    Returns
    -------
    array of shape (...)
    """
    component = mixture.component_log_prob(future)  # (..., T, K)
    return logsumexp(mixture.log_weights[..., 0, :] + component.sum(-2), axis=-1)
