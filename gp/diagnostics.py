r"""Diagnostics of the scale posterior: importance-sampling reliability and LOO likelihoods.

- :func:`check_importance_sampling` checks the paper's prior-proposal importance sampling
  over :math:`\sigma^2` (:func:`gp.posterior.importance_posterior`) by its Pareto
  :math:`\hat k` and Kish effective sample size, and warns with an
  :class:`ImportanceSamplingWarning` that says what to do.
- :func:`loo_log_likelihood` gives, per posterior draw of :math:`\sigma^2`, the
  leave-one-out conditionals :math:`\ln p(y_i \mid y_{-i}, \sigma^2)` of the
  non-factorised Gaussian likelihood: the ``log_likelihood`` group ArviZ's ``loo`` needs.

References
----------
A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, "Pareto Smoothed Importance
Sampling", JMLR 25(72), 2024.

P.-C. Bürkner, J. Gabry, A. Vehtari, "Efficient leave-one-out cross-validation for
Bayesian non-factorized normal and Student-t models", Computational Statistics 36,
2021.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.linalg import lapack

from gp.posterior import ScalePosterior

__all__ = [
    "IMPORTANCE_ESS_MIN",
    "ImportanceSamplingWarning",
    "check_importance_sampling",
    "khat_threshold",
    "loo_log_likelihood",
    "posterior_predictive",
]

#: Smallest acceptable Kish effective sample size of the importance weights (the ESS
#: that :func:`mixtures.diagnostics.check_convergence` asks of each MCMC chain).
IMPORTANCE_ESS_MIN = 100.0

_LOG_2PI = math.log(2 * math.pi)


class ImportanceSamplingWarning(UserWarning):
    """Importance sampling over the scale is unreliable (Pareto k-hat or ESS)."""


def khat_threshold(n_samples: int) -> float:
    r"""Largest reliable PSIS Pareto :math:`\hat k` for ``n_samples`` draws.

    .. math::

        \hat k_{\max} = \min(1 - 1/\log_{10} S,\ 0.7)

    (Vehtari et al., 2024): 0.7 from :math:`S \approx 2200` draws on, lower
    with fewer (0.67 at the paper's :math:`S = 1000`).

    Examples
    --------
    >>> round(khat_threshold(1000), 3), khat_threshold(10**6)
    (0.667, 0.7)
    """
    if n_samples <= 10:
        return 0.0
    return min(1.0 - 1.0 / math.log10(n_samples), 0.7)


def check_importance_sampling(
    posterior: ScalePosterior, *, warn: bool = True, stacklevel: int = 2
) -> list[str]:
    r"""Check an importance-sampling posterior of :math:`\sigma^2`; warn with what failed.

    Fails when the Pareto :math:`\hat k` exceeds :func:`khat_threshold` (the weights'
    tail is too heavy for the estimate to be trusted at any sample size) or when the
    Kish ESS is below :data:`IMPORTANCE_ESS_MIN`. Both happen when the prior, which is
    the proposal, puts almost no mass where the posterior is.

    Parameters
    ----------
    posterior : ScalePosterior
        From :func:`gp.posterior.importance_posterior` (``ess`` and ``khat`` set).
    warn : bool, default=True
        Issue an :class:`ImportanceSamplingWarning` listing the failures and remedies.
    stacklevel : int, default=2
        Passed to ``warnings.warn`` (2: the caller of this function).

    Returns
    -------
    list of str
        One line per failed check; empty when the sampling is reliable.
    """
    n_samples = int(np.size(posterior.log_weights))
    limit = khat_threshold(n_samples)
    failures = []
    if not posterior.khat <= limit:  # nan/inf: too few draws carry weight to fit a tail
        failures.append(f"Pareto k-hat = {posterior.khat:.2f} > {limit:.2f}")
    if not posterior.ess >= IMPORTANCE_ESS_MIN:
        failures.append(
            f"Kish ESS = {posterior.ess:.1f} of {n_samples} draws < {IMPORTANCE_ESS_MIN:.0f}"
        )
    if failures and warn:
        warnings.warn(
            "importance sampling over sigma^2 is unreliable: "
            + "; ".join(failures)
            + ". The prior (the proposal) puts almost no mass where the posterior is, so "
            "scale_posterior_ and the predictive are wrong. Use the default "
            "inference='auto' (closed form or quadrature, accurate to "
            "scale_posterior_.error), or more draws (n_samples), or a prior on the data's "
            "scale (optimizer='lbfgs' fits its parameters).",
            ImportanceSamplingWarning,
            stacklevel=stacklevel,
        )
    return failures


def loo_log_likelihood(chol, weights, log_s2) -> np.ndarray:
    r"""Leave-one-out conditionals :math:`\ln p(y_{ic} \mid y_{-i,c}, \sigma^2)` per draw.

    With :math:`y_{:,c} \mid \sigma^2 \sim \mathcal N(0, \sigma^2\hat K)`, :math:`W =
    \hat K^{-1}Y` and :math:`a_i = [\hat K^{-1}]_{ii}`, the conditional of one
    observation given the others is :math:`\mathcal N(y_{ic} - W_{ic}/a_i,\ \sigma^2/a_i)`
    (Bürkner et al., 2021):

    .. math::

        \ln p(y_{ic} \mid y_{-i,c}, \sigma^2) = -\tfrac12\ln(2\pi\sigma^2)
        + \tfrac12 \ln a_i - \frac{W_{ic}^2}{2\sigma^2 a_i}.

    The likelihood does not factorise over observations (they are correlated given
    :math:`\sigma^2`), so there is no per-observation :math:`\ln p(y_i \mid \sigma^2)`;
    these conditionals are what PSIS-LOO (``arviz.loo``) needs in its place. They do not
    sum to :math:`\ln p(Y \mid \sigma^2)`.

    Parameters
    ----------
    chol : ndarray of shape (n, n)
        Lower Cholesky factor of :math:`\hat K` (zeros above the diagonal).
    weights : ndarray of shape (n, C)
        :math:`\hat K^{-1}Y`.
    log_s2 : ndarray of any shape ``S``
        Draws of :math:`\ln\sigma^2`.

    Returns
    -------
    ndarray of shape ``S + (n, C)``

    Examples
    --------
    >>> k = np.array([[2.0, 0.5], [0.5, 1.0]]); y = np.array([[1.0], [-1.0]])
    >>> ll = loo_log_likelihood(np.linalg.cholesky(k), np.linalg.solve(k, y), np.zeros(3))
    >>> ll.shape
    (3, 2, 1)
    """
    chol = np.asarray(chol, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    inv, info = lapack.dtrtri(chol, lower=1)  # L^-1: Khat^-1 = L^-T L^-1
    if info != 0:
        raise ValueError(f"the Cholesky factor is singular (LAPACK dtrtri info = {info}).")
    inv = np.tril(inv)  # LAPACK leaves the input's upper triangle in place
    a = np.einsum("ki,ki->i", inv, inv)[:, None]  # diag(Khat^-1), shape (n, 1)
    t = np.asarray(log_s2, dtype=np.float64)[..., None, None]
    return -0.5 * (_LOG_2PI + t) + 0.5 * np.log(a) - 0.5 * weights**2 / a * np.exp(-t)


def posterior_predictive(
    rng: np.random.Generator, chol, log_s2, max_values: int = 4_000_000
) -> np.ndarray:
    r"""Replicated training targets for posterior predictive checks (``arviz.plot_ppc``).

    For each kept draw of :math:`\sigma^2`, one replicate of the (standardised) targets,
    :math:`y^{\mathrm{rep}}_{:,c} = \sigma L\varepsilon_c` with :math:`\hat K = LL^\top`
    and :math:`\varepsilon_c \sim \mathcal N(0, I)`: a draw of
    :math:`\mathcal N(0, \sigma^2 \hat K)` for every output column.

    Parameters
    ----------
    rng : numpy.random.Generator
    chol : ndarray of shape (n, n)
        Lower Cholesky factor of :math:`\hat K`.
    log_s2 : ndarray of shape (chains, draws)
        Draws of :math:`\ln\sigma^2`.
    max_values : int, default=4_000_000
        The draws are thinned evenly so that at most about this many values are stored.

    Returns
    -------
    ndarray of shape (chains, kept draws, n)
    """
    chol = np.asarray(chol, dtype=np.float64)
    log_s2 = np.asarray(log_s2, dtype=np.float64)
    n_chains, n_draws = log_s2.shape
    n = chol.shape[0]
    keep = int(np.clip(max_values // max(1, n_chains * n), 1, n_draws))
    idx = np.linspace(0, n_draws - 1, keep).round().astype(int)
    eps = rng.standard_normal((n_chains, keep, n))
    return np.exp(0.5 * log_s2[:, idx])[..., None] * np.einsum("ij,csj->csi", chol, eps)
