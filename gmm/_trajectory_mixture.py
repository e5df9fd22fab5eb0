"""The trajectory forecaster's predictive distribution as one mixture.

A forecast holds, per agent, K mode probabilities and per mode and future step a
bivariate position Gaussian (or Student-t). :func:`step_mixture` packs it into one
:class:`mixtures.distributions.GaussianMixture` (or
:class:`~mixtures.distributions.StudentTMixture`) with batch shape (..., T) (the same mode
weights at every step), and :func:`trajectory_log_prob` evaluates the per-trajectory
mixture with that distribution's per-component densities. The training loss of
:class:`gmm.KinematicGMMForecaster` and :func:`gmm.metrics.nll` both use these, so the
project has one mixture log density.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from mixtures.distributions import GaussianMixture, StudentTMixture, multivariate_t_log_prob

__all__ = ["step_mixture", "trajectory_log_prob"]


def step_mixture(weights, means, covariances, df=None) -> GaussianMixture:
    r"""Per-step predictive mixture over positions.

    .. math::

        p(y_t) = \sum_{k=1}^K p_k\, \mathcal N(y_t;\, \mu_{k,t}, \Sigma_{k,t})

    or, with ``df`` = :math:`\nu`, the same with bivariate Student-t components
    :math:`t_\nu(y_t; \mu_{k,t}, \Sigma_{k,t})` (``covariances`` are then scale matrices).

    Parameters
    ----------
    weights : array of shape (..., K)
        Mode probabilities (the same at every step).
    means : array of shape (..., K, T, 2)
    covariances : array of shape (..., K, T, 2, 2)
    df : None, float or array of shape (...)
        Degrees of freedom of Student-t components; ``None`` for Gaussian ones.

    Returns
    -------
    GaussianMixture or StudentTMixture
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
    args = (
        weights[..., None, :],
        jnp.swapaxes(jnp.asarray(means), -3, -2),
        jnp.swapaxes(jnp.asarray(covariances), -4, -3),
    )
    if df is None:
        return GaussianMixture(*args)
    return StudentTMixture(*args, df=jnp.asarray(df)[..., None])  # broadcast over steps


def trajectory_log_prob(mixture: GaussianMixture, future):
    r"""Per-trajectory log-likelihood: every step of a trajectory shares one mode.

    .. math::

        \log p(y_{1:T}) = \log \sum_{k=1}^K p_k \prod_{t=1}^T
        \mathcal N(y_t;\, \mu_{k,t}, \Sigma_{k,t})

    For a :class:`~mixtures.distributions.StudentTMixture` the steps of a mode also share
    one gamma scale :math:`g` (a whole trajectory is off by one factor, as when a walker
    is faster than predicted): the mode's density is
    :math:`\int \prod_t \mathcal N(y_t; \mu_{k,t}, \Sigma_{k,t}/g)\,
    \mathrm{Gamma}(g; \tfrac\nu2, \tfrac\nu2)\,dg`, the 2T-variate Student-t with
    block-diagonal scale, whose Mahalanobis term and log-determinant are the sums over
    steps; each step's marginal is the bivariate :math:`t_\nu` of :func:`step_mixture`.

    Parameters
    ----------
    mixture : GaussianMixture
        From :func:`step_mixture`, batch shape (..., T).
    future : array of shape (..., T, 2)

    Returns
    -------
    array of shape (...)
    """
    if isinstance(mixture, StudentTMixture):
        maha = mixture.component_mahalanobis(future).sum(-2)  # (..., K)
        log_det = jnp.broadcast_to(mixture.component_log_det, mixture.means.shape[:-1])
        T = future.shape[-2]
        component = multivariate_t_log_prob(maha, log_det.sum(-2), mixture.df, 2 * T)
    else:
        component = mixture.component_log_prob(future).sum(-2)  # (..., K)
    return logsumexp(mixture.log_weights[..., 0, :] + component, axis=-1)
