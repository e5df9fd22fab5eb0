"""Trajectory-forecasting metrics: minADE/minFDE, miss rate, mixture NLL, calibration.

Conventions: ``future`` (ground truth) has shape (N, T, 2); mode trajectories ``modes``
have shape (N, K, T, 2); mixture weights ``weights`` (N, K) sum to one; per-mode per-step
position covariances ``covariances`` have shape (N, K, T, 2, 2). Metrics on mode means
use the K given modes (minADE_K); for best-of-20 on samples pass the samples as modes.
The NLL evaluates :class:`mixtures.distributions.GaussianMixture`, the density the
forecaster is trained on.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gmm._trajectory_mixture import step_mixture, trajectory_log_prob
from mixtures.base import x64_scope

__all__ = [
    "CoverageResult",
    "calibration_coverage",
    "min_ade",
    "min_fde",
    "miss_rate",
    "mixture_coverage",
    "nll",
]


def _check(future, modes):
    future = np.asarray(future, dtype=float)
    modes = np.asarray(modes, dtype=float)
    if future.ndim != 3 or future.shape[-1] != 2:
        raise ValueError(f"future must have shape (N, T, 2); got {future.shape}.")
    if modes.ndim == 3:  # a single mode per sample
        modes = modes[:, None]
    if modes.ndim != 4 or modes.shape[0] != future.shape[0] or modes.shape[2:] != future.shape[1:]:
        raise ValueError(
            f"modes must have shape (N, K, T, 2) = ({future.shape[0]}, K, {future.shape[1]}, 2) "
            f"to match future {future.shape}; got {modes.shape}."
        )
    for name, arr in (("future", future), ("modes", modes)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; remove non-finite trajectories.")
    return future, modes


def _reduce(values, reduce):
    return float(np.mean(values)) if reduce else values


def min_ade(future, modes, *, reduce=True):
    """Minimum over modes of the average displacement error.

    .. math:: \\text{minADE}_K = \\min_k \\frac{1}{T}\\sum_t \\lVert\\mu_{k,t} - y_t\\rVert_2

    Parameters
    ----------
    future : array-like of shape (N, T, 2)
    modes : array-like of shape (N, K, T, 2) (or (N, T, 2) for one mode)
    reduce : bool
        Average over the N agents (default) or return the per-agent values (N,).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.zeros((1, 2, 2)); m = np.stack([y + 1.0, y + [3.0, 4.0]], axis=1)
    >>> round(min_ade(y, m), 4)
    1.4142
    """
    future, modes = _check(future, modes)
    ade = np.linalg.norm(modes - future[:, None], axis=-1).mean(-1)
    return _reduce(ade.min(1), reduce)


def min_fde(future, modes, *, reduce=True):
    """Minimum over modes of the final displacement error.

    .. math:: \\text{minFDE}_K = \\min_k \\lVert\\mu_{k,T} - y_T\\rVert_2

    Examples
    --------
    >>> import numpy as np
    >>> y = np.zeros((1, 2, 2)); m = np.stack([y + 1.0, y + [3.0, 4.0]], axis=1)
    >>> round(min_fde(y, m), 4)
    1.4142
    """
    future, modes = _check(future, modes)
    fde = np.linalg.norm(modes[:, :, -1] - future[:, None, -1], axis=-1)
    return _reduce(fde.min(1), reduce)


def miss_rate(future, modes, *, threshold=2.0):
    """Fraction of agents whose best mode endpoint misses by more than ``threshold``.

    The simple miss rate (minFDE > threshold, 2 m by default); the speed-scaled
    lateral/longitudinal thresholds of the Waymo Open Motion Dataset are not implemented.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.zeros((2, 3, 2)); m = np.stack([y[0] + 1.0, y[1] + 3.0])[:, None]
    >>> miss_rate(y, m)
    0.5
    """
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a positive distance; got {threshold!r}.")
    fde = min_fde(future, modes, reduce=False)
    return float(np.mean(fde > threshold))


def _check_mixture(future, weights, means, covariances):
    future, means = _check(future, means)
    weights = np.asarray(weights, dtype=float)
    covariances = np.asarray(covariances, dtype=float)
    N, K, T, _ = means.shape
    if weights.shape != (N, K):
        raise ValueError(f"weights must have shape (N, K) = ({N}, {K}); got {weights.shape}.")
    if covariances.shape != (N, K, T, 2, 2):
        raise ValueError(
            f"covariances must have shape (N, K, T, 2, 2) = ({N}, {K}, {T}, 2, 2); "
            f"got {covariances.shape}."
        )
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(covariances))):
        raise ValueError("weights and covariances must be finite.")
    if np.any(weights < 0) or not np.allclose(weights.sum(-1), 1.0, atol=1e-6):
        raise ValueError("weights must be non-negative and sum to one over the K modes.")
    return future, weights, means, covariances


def _check_df(df):
    if df is not None and not (np.isscalar(df) and np.isreal(df) and df > 0):
        raise ValueError(
            f"df must be None (Gaussian modes) or a positive number (Student-t degrees of "
            f"freedom, e.g. a forecaster's df_); got {df!r}."
        )
    return df


@jax.jit
def _nll_terms(future, weights, means, covariances, df):
    """Per-step (N, T) and per-trajectory (N,) log-likelihoods, and the per-component
    log densities (N, T, K), non-finite where a covariance is not positive definite."""
    mixture = step_mixture(weights, means, covariances, df)
    component = mixture.component_log_prob(future)
    return mixture.log_prob(future), trajectory_log_prob(mixture, future), component


def nll(future, weights, means, covariances, *, per="step", df=None):
    """Negative log-likelihood of the ground truth under the predicted mixture.

    .. math::

        \\text{per step:}\\quad -\\frac{1}{NT}\\sum_{n,t}\\log\\sum_k p_k
        N(y_t; \\mu_{k,t}, \\Sigma_{k,t}), \\qquad
        \\text{per trajectory:}\\quad -\\frac{1}{N}\\sum_n \\log\\sum_k p_k
        \\prod_t N(y_t; \\mu_{k,t}, \\Sigma_{k,t})

    in nats, with the full Gaussian normaliser (log 2 pi included). The per-trajectory
    form is the likelihood of a forecaster whose modes each hold for the whole
    trajectory; the per-step form scores every step's marginal mixture. With ``df`` the
    modes are Student-t (``covariances`` are scale matrices; see
    :meth:`gmm.KinematicGMMForecaster` ``df``).

    Parameters
    ----------
    future : array-like of shape (N, T, 2)
    weights : array-like of shape (N, K)
    means : array-like of shape (N, K, T, 2)
    covariances : array-like of shape (N, K, T, 2, 2)
    per : {"step", "trajectory"}
    df : None or float
        Degrees of freedom of Student-t modes (``KinematicGMMForecaster.df_``).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> y = np.zeros((1, 1, 2)); c = np.eye(2)[None, None, None]
    >>> round(nll(y, np.ones((1, 1)), y[:, None], c), 4)  # log(2 pi)
    1.8379
    """
    if per not in ("step", "trajectory"):
        raise ValueError(f"per must be 'step' or 'trajectory'; got {per!r}.")
    future, weights, means, covariances = _check_mixture(future, weights, means, covariances)
    df = _check_df(df)
    with x64_scope():
        per_step, per_trajectory, component = _nll_terms(
            *(jnp.asarray(a) for a in (future, weights, means, covariances)),
            None if df is None else jnp.asarray(df, jnp.float64),
        )
    if not np.isfinite(np.asarray(component)).all():  # a NaN or zero Cholesky pivot
        raise ValueError("a covariance is not positive definite; add a variance floor (min_std).")
    lp = per_step if per == "step" else per_trajectory
    return float(-np.mean(np.asarray(lp)))


def _check_levels(levels):
    levels = np.asarray(levels, dtype=float)
    if levels.ndim != 1 or np.any(levels <= 0):
        raise ValueError(f"levels must be a 1-D sequence of positive radii; got {levels}.")
    return levels


class CoverageResult(NamedTuple):
    """Empirical vs nominal coverage of the positive mode's k-sigma ellipses.

    Attributes
    ----------
    levels : ndarray of shape (n_levels,)
        The radii r (in standard deviations).
    coverage : ndarray of shape (n_levels,)
        Fraction of (agent, step) pairs with squared Mahalanobis distance <= r**2.
    expected : ndarray of shape (n_levels,)
        Nominal 2-D coverage :math:`1 - e^{-r^2/2}` (0.393 at r = 1, 0.865 at r = 2).
    """

    levels: np.ndarray
    coverage: np.ndarray
    expected: np.ndarray


def calibration_coverage(future, means, covariances, *, levels=(1.0, 2.0), steps=None):
    """Coverage of the positive mode's 1-sigma / 2-sigma ellipses.

    The positive mode is the one with the smallest ADE to the ground truth (as in
    winner-takes-all training). For a calibrated Gaussian in 2-D,
    :math:`P(d_M^2 \\le r^2) = 1 - e^{-r^2/2}`.

    Parameters
    ----------
    future : array-like of shape (N, T, 2)
    means : array-like of shape (N, K, T, 2)
    covariances : array-like of shape (N, K, T, 2, 2)
    levels : sequence of float
        Ellipse radii in standard deviations.
    steps : None or sequence of int
        Time indices to include (all by default).

    Returns
    -------
    CoverageResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(4000, 1, 2)); c = np.tile(np.eye(2), (4000, 1, 1, 1, 1))
    >>> r = calibration_coverage(y, np.zeros((4000, 1, 1, 2)), c)
    >>> np.round(r.coverage, 1).tolist(), np.round(r.expected, 3).tolist()
    ([0.4, 0.9], [0.393, 0.865])
    """
    future, means = _check(future, means)
    covariances = np.asarray(covariances, dtype=float)
    if covariances.shape != means.shape + (2,):
        raise ValueError(
            f"covariances must have shape {means.shape + (2,)} to match means; "
            f"got {covariances.shape}."
        )
    levels = _check_levels(levels)
    best = np.linalg.norm(means - future[:, None], axis=-1).mean(-1).argmin(1)
    idx = np.arange(future.shape[0])
    mu, cov = means[idx, best], covariances[idx, best]  # (N, T, 2), (N, T, 2, 2)
    if steps is not None:
        steps = np.asarray(steps, dtype=int)
        mu, cov, future = mu[:, steps], cov[:, steps], future[:, steps]
    d = future - mu
    try:
        m2 = np.einsum("nti,nti->nt", d, np.linalg.solve(cov, d[..., None])[..., 0])
    except np.linalg.LinAlgError as err:
        raise ValueError("a covariance is singular; add a variance floor (min_std).") from err
    coverage = np.array([np.mean(m2 <= r**2) for r in levels])
    return CoverageResult(levels, coverage, 1.0 - np.exp(-(levels**2) / 2))


@jax.jit
def _truth_hdr_masses(weights, means, covariances, df, u, eps, future):
    """Monte Carlo P(p(X) > p(y_t)) per agent and step, shape (n, T).

    ``u`` (n, S, T) uniforms pick the mode of each draw and ``eps`` (n, S, T, 2) are the
    standardised draws (Student-t ones already divided by their gamma scale), so callers
    can reuse one set of random numbers for several predictives. One compiled program
    per shape; it may also be called inside a caller's jitted function.
    """
    K = weights.shape[-1]
    cum = jnp.cumsum(weights, axis=-1)[:, None, None, : K - 1]
    comp = jnp.minimum((u[..., None] > cum).sum(-1), K - 1)
    n, t = jnp.arange(weights.shape[0])[:, None, None], jnp.arange(means.shape[2])[None, None]
    L = jnp.linalg.cholesky(covariances)
    x = means[n, comp, t] + jnp.einsum("nstij,nstj->nsti", L[n, comp, t], eps)
    mix = step_mixture(weights, means, covariances, df)
    lp_x = mix.log_prob(jnp.moveaxis(x, 1, 0))  # (S, n, T)
    return (lp_x > mix.log_prob(future)[None]).mean(0)


def mixture_coverage(
    future, weights, means, covariances, *, levels=(1.0, 2.0), n_samples=1000,
    random_state=0, df=None,
):  # fmt: skip
    """Coverage of the predictive mixture's highest-density regions, per step.

    For each agent and step the predictive distribution is the mixture
    :math:`p = \\sum_k p_k N(\\mu_{k,t}, \\Sigma_{k,t})`. Its highest-density region of
    mass :math:`q` is :math:`\\{x: p(x) \\ge \\tau_q\\}` with :math:`P_p(p(X) \\ge \\tau_q) = q`;
    the truth :math:`y_t` lies inside it iff :math:`P_p(p(X) > p(y_t)) \\le q`, which is
    estimated from ``n_samples`` draws of the mixture. The nominal masses are those of the
    r-sigma ellipses of a bivariate normal, :math:`q = 1 - e^{-r^2/2}` (0.393 at r = 1,
    0.865 at r = 2): for a single Gaussian the region is that ellipse. Unlike
    :func:`calibration_coverage` no mode is picked with the ground truth, so this checks
    the calibration of the whole predictive distribution. With ``df`` the modes are
    bivariate Student-t (``covariances`` are their scale matrices).

    Parameters
    ----------
    future : array-like of shape (N, T, 2)
    weights : array-like of shape (N, K)
    means : array-like of shape (N, K, T, 2)
    covariances : array-like of shape (N, K, T, 2, 2)
    levels : sequence of float
        Radii r in standard deviations (nominal masses 1 - exp(-r^2 / 2)).
    n_samples : int
        Monte Carlo draws per agent and step (the Monte Carlo standard error of each
        agent's estimate is at most 0.5 / sqrt(n_samples)).
    random_state : int
    df : None or float
        Degrees of freedom of Student-t modes (``KinematicGMMForecaster.df_``).

    Returns
    -------
    CoverageResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(2000, 1, 2)); c = np.tile(np.eye(2), (2000, 1, 1, 1, 1))
    >>> r = mixture_coverage(y, np.ones((2000, 1)), np.zeros((2000, 1, 1, 2)), c)
    >>> np.round(r.coverage, 1).tolist()
    [0.4, 0.9]
    """
    future, weights, means, covariances = _check_mixture(future, weights, means, covariances)
    levels = _check_levels(levels)
    df = _check_df(df)
    if int(n_samples) != n_samples or n_samples < 10:
        raise ValueError(f"n_samples must be an integer >= 10; got {n_samples!r}.")
    S = int(n_samples)
    rng = np.random.default_rng(random_state)
    N, K, T = means.shape[:3]
    if not np.all(np.isfinite(np.linalg.cholesky(covariances))):
        raise ValueError("a covariance is not positive definite; add a variance floor (min_std).")
    frac = []
    step = max(1, 2**22 // (S * T * K))  # agents per chunk: bounded memory
    for a in range(0, N, step):
        b = min(a + step, N)
        n = b - a
        u = rng.random((n, S, T))
        eps = rng.standard_normal((n, S, T, 2))
        if df is not None:
            eps /= np.sqrt(rng.gamma(df / 2, 2 / df, (n, S, T, 1)))
        with x64_scope():
            m = _truth_hdr_masses(
                weights[a:b], means[a:b], covariances[a:b], df, u, eps, future[a:b]
            )
            frac.append(np.asarray(m))  # P(p(X) > p(y)) per agent and step
    frac = np.concatenate(frac)
    expected = 1.0 - np.exp(-(levels**2) / 2)
    coverage = np.array([np.mean(frac <= q) for q in expected])
    return CoverageResult(levels, coverage, expected)
