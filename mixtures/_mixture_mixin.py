"""``MixtureMixin``: the prediction side that every Gaussian-mixture estimator shares."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from sklearn.base import DensityMixin
from sklearn.utils.validation import check_is_fitted

from mixtures.base import random_state_to_key, x64_scope
from mixtures.distributions import GaussianMixture
from mixtures.em import (
    GaussianMixtureParams,
    covariances_to_full,
    log_joint_blocks,
    make_mesh,
    n_parameters,
    to_blocks,
)

__all__ = ["MixtureMixin"]


@partial(jax.jit, static_argnames=("n",))
def _accumulate(log_norm_sum, resp_sum, log_joint, n):
    """Add one draw's log evidence (logsumexp over draws) and responsibilities."""
    lj = log_joint.reshape(-1, log_joint.shape[-1])[:n]
    log_norm = logsumexp(lj, axis=1)
    return (
        jnp.logaddexp(log_norm_sum, log_norm),
        resp_sum + jnp.exp(lj - log_norm[:, None]),
    )


class MixtureMixin(DensityMixin):
    """``score_samples``, ``score``, ``predict_proba``, ``predict``, ``bic``, ``aic`` and
    ``sample`` for every Gaussian-mixture estimator.

    The estimator provides the fitted attributes ``weights_``, ``means_``, ``covariances_``
    (scikit-learn's layout for its ``covariance_type``) and ``n_features_in_``; a Bayesian
    fit may override :meth:`_mixture_draws` to return posterior draws, and then the density
    is the posterior predictive

    .. math::

        \\log p(x \\mid \\mathcal D) \\approx \\log \\frac1S \\sum_s p(x \\mid \\theta_s),\\qquad
        \\bar r_{ik} = \\frac1S \\sum_s p(z_i = k \\mid x_i, \\theta_s)

    (a point estimate is the case :math:`S = 1`). Densities are the log joints of
    :class:`mixtures.distributions.GaussianMixture`, evaluated in row blocks by the EM
    engine (:func:`mixtures.em.log_joint_blocks`), so memory stays at one block times K.
    """

    def _mixture_draws(self) -> dict[str, np.ndarray]:
        """Parameter draws with a leading draw axis (default: the point estimate)."""
        return {
            "weights": self.weights_[None],
            "means": self.means_[None],
            "covariances": self.covariances_[None],
        }

    def _n_mixture_components(self) -> int:
        return int(np.asarray(self.weights_).shape[0])

    def _validate_mixture_X(self, X):
        check_is_fitted(self)
        return self._validate_X(X, reset=False)

    def _posterior_predictive(self, X):
        X = self._validate_mixture_X(X)
        draws = self._mixture_draws()
        n, d = X.shape
        k = self._n_mixture_components()
        n_draws = draws["weights"].shape[0]
        with x64_scope():
            mesh = make_mesh()
            data = to_blocks(X, n_components=k, mesh=mesh)
            log_norm = jnp.full((n,), -jnp.inf)
            resp = jnp.zeros((n, k))
            for s in range(n_draws):
                params = GaussianMixtureParams(
                    jnp.asarray(draws["weights"][s]),
                    jnp.asarray(draws["means"][s] - data.offset),
                    jnp.asarray(
                        covariances_to_full(draws["covariances"][s], self.covariance_type, d)
                    ),
                )
                lj = log_joint_blocks(data, params, mesh=mesh)
                log_norm, resp = _accumulate(log_norm, resp, lj, n)
            log_pred = np.asarray(log_norm) - math.log(n_draws)
            resp = np.asarray(resp) / n_draws
        return log_pred, resp

    def score_samples(self, X):
        """Log density of each sample (the posterior predictive for Bayesian fits).

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
        """
        return self._posterior_predictive(X)[0]

    def score(self, X, y=None):
        """Mean log density of ``X`` (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X):
        """Posterior component probabilities, shape (n_samples, n_components)."""
        return self._posterior_predictive(X)[1]

    def predict(self, X):
        """Most probable component of each sample."""
        return np.argmax(self.predict_proba(X), axis=1)

    def _n_parameters(self) -> int:
        return n_parameters(self._n_mixture_components(), self.n_features_in_, self.covariance_type)

    def bic(self, X):
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = self._validate_mixture_X(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X`` (lower is better)."""
        n = self._validate_mixture_X(X).shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def sample(self, n_samples=1, random_state=None):
        """Draw samples from the fitted (point-estimate) mixture.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int or numpy generator, optional
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component labels.
        """
        check_is_fitted(self)
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)):
            raise ValueError(f"n_samples must be a positive int; got {n_samples!r}.")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1; got {n_samples}.")
        key = random_state_to_key(self.random_state if random_state is None else random_state)
        with x64_scope():
            gm = GaussianMixture(
                jnp.asarray(self.weights_),
                jnp.asarray(self.means_),
                jnp.asarray(self.covariances_),
                self.covariance_type,
            )
            x, (z,) = gm.sample_with_intermediates(key, (int(n_samples),))
        return np.asarray(x), np.asarray(z)
