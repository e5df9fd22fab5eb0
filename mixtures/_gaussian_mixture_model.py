"""``GaussianMixtureModel``: a Gaussian mixture fitted by EM, NUTS or SVI.

The estimator shell follows scikit-learn's ``GaussianMixture`` (same parameter names,
fitted attributes and EM steps, on the EM engine :mod:`mixtures.em`), and adds Bayesian
fits of the NumPyro model of :mod:`mixtures.bayesian_gmm`.
"""

from __future__ import annotations

import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from mixtures._mixture_mixin import MixtureMixin
from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    check_finite_result,
    random_state_to_key,
    random_state_to_random_state,
    to_numpy,
    x64_scope,
)
from mixtures.bayesian_gmm import BAYESIAN_PARAMETER_CONSTRAINTS, fit_mixture_posterior
from mixtures.em import (
    GaussianMixtureParams,
    check_initial_parameters,
    covariances_from_full,
    fit_em,
    m_step,
)

__all__ = ["GaussianMixtureModel"]

_INFERENCE = ("em", "nuts", "svi")


_m_step_jit = jax.jit(m_step, static_argnames=("covariance_type",))


class GaussianMixtureModel(MixtureMixin, MixprocEstimator):
    """Gaussian mixture fitted by EM (maximum likelihood), NUTS or SVI (Bayesian).

    With ``inference="em"`` this is scikit-learn's ``GaussianMixture``: the same
    initialisation options, E- and M-steps (:func:`mixtures.em.e_step`,
    :func:`~mixtures.em.m_step`), convergence rule and fitted attributes, computed by a
    jitted JAX core in float64. With ``"nuts"`` or ``"svi"`` the mixture is a NumPyro model
    with marginalised assignments (module docstring), started from the EM solution; the
    draws are exposed as ``inference_data_`` for ArviZ, point attributes are posterior means
    and :meth:`score_samples` is the posterior predictive density.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {"full", "diag", "spherical"}, default="full"
        Covariance parameterisation.
    inference : {"em", "nuts", "svi"}, default="em"
        Fitting method.
    tol : float, default=1e-3
        EM convergence threshold on the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the covariance diagonals (EM).
    max_iter : int, default=100
        EM iterations per initialisation.
    n_init : int, default=1
        EM initialisations; the best lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the initial responsibilities are chosen (scikit-learn's options).
    weights_init : array-like of shape (n_components,), default=None
        Starting weights (as scikit-learn's ``GaussianMixture``); replaces those of
        ``init_params``.
    means_init : array-like of shape (n_components, n_features), default=None
        Starting means.
    precisions_init : array-like, default=None
        Starting precisions (inverse covariances) in scikit-learn's layout for
        ``covariance_type``. When all three are given ``init_params`` is not used.
    weight_concentration_prior : float, default=1.0
        Dirichlet concentration of the weights (NUTS/SVI).
    num_warmup, num_samples, num_chains : int, default=500, 500, 2
        NUTS settings.
    num_steps, learning_rate : int, float, default=2000, 1e-2
        SVI settings (Adam).
    num_draws : int, default=200
        Posterior draws used for predictions (SVI draws; NUTS thins to at most this many).
    random_state : None, int or numpy generator, default=None
        Seed.
    verbose : int, default=0
        ``> 0`` shows progress bars.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shape depends on ``covariance_type`` as in scikit-learn.
    converged_ : bool
        EM converged (NUTS: convergence checks passed; SVI: the loss plateaued).
    n_iter_ : int
        EM iterations of the best initialisation.
    lower_bound_ : float
        Mean log-likelihood of the best EM run.
    lower_bounds_ : ndarray of shape (n_iter,)
        Its history.
    inference_data_ : arviz.InferenceData or None
        Posterior draws (NUTS, SVI).
    posterior_samples_ : dict of str to ndarray or None
        Flattened posterior draws used for prediction.
    svi_losses_ : ndarray or None
        Negative ELBO per SVI step.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.r_[rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))]
    >>> gm = GaussianMixtureModel(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(gm.means_[:, 0])).tolist()
    [-4.0, 4.0]
    """

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions({"full", "diag", "spherical"})],
        "inference": [StrOptions(set(_INFERENCE))],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        **BAYESIAN_PARAMETER_CONSTRAINTS,
        "random_state": RANDOM_STATE,
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        inference="em",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        weight_concentration_prior=1.0,
        num_warmup=500,
        num_samples=500,
        num_chains=2,
        num_steps=2000,
        learning_rate=1e-2,
        num_draws=200,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.inference = inference
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.weight_concentration_prior = weight_concentration_prior
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.num_draws = num_draws
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Fit the mixture to ``X`` (``y`` is ignored).

        Raises
        ------
        ValueError
            If ``X`` has NaN/inf, is not 2-D, or has fewer samples than ``n_components``,
            or if a parameter is out of range.
        """
        self._validate_params()
        X = self._validate_X(X, reset=True, ensure_min_samples=2)
        n, D = X.shape
        if n < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components, got n_samples={n} and "
                f"n_components={self.n_components}. Pass more samples or reduce n_components."
            )
        rng = random_state_to_random_state(self.random_state)  # the stream sklearn draws
        with x64_scope():
            best = self._fit_em(X, rng)
        key = random_state_to_key(rng)  # NUTS / SVI continue the stream after the EM
        params = to_numpy(best.params)
        self.n_iter_ = int(best.n_iter)
        self.lower_bound_ = float(best.lower_bound)
        self.lower_bounds_ = np.asarray(best.lower_bounds)[: self.n_iter_]
        self.converged_ = bool(best.converged)
        self.inference_data_ = None
        self.posterior_samples_ = None
        self.svi_losses_ = None
        if self.inference == "em":
            if not self.converged_:
                warnings.warn(
                    f"EM did not converge in max_iter={self.max_iter} iterations (last change "
                    f"of the bound above tol={self.tol}). Increase max_iter or tol, or check "
                    "for degenerate data.",
                    ConvergenceWarning,
                    stacklevel=2,
                )
            self._set_point_params(params)
            return self
        fit = fit_mixture_posterior(self, X, params, key=key)
        self.svi_losses_ = fit.losses
        self.inference_data_ = fit.inference_data
        self.converged_ = fit.converged
        draws = fit.draws
        self.posterior_samples_ = draws
        self._set_point_params(
            (draws["weights"].mean(0), draws["means"].mean(0), draws["covariances"].mean(0))
        )
        return self

    def _initial_params(self, X, rng, given):
        """scikit-learn's initialisation (an M-step on the initial responsibilities of
        ``init_params``), then the user's ``*_init`` arrays in place of what they give.

        Hard starts ("kmeans", "k-means++", "random_from_data") are one-hot: the M-step is
        the EM engine's, with every sample (or only the chosen ones, by sample weight)
        clamped to its component, so no (n_samples, n_components) array is built.
        """
        w, m, c = given
        if w is None or m is None or c is None:
            n, K = X.shape[0], self.n_components
            y, weight = None, None
            if self.init_params == "kmeans":
                y = KMeans(K, n_init=1, random_state=rng).fit(X).labels_
            elif self.init_params in ("k-means++", "random_from_data"):
                if self.init_params == "k-means++":
                    _, idx = kmeans_plusplus(X, K, random_state=rng)
                else:
                    idx = rng.choice(n, size=K, replace=False)
                y, weight = np.full(n, -1), np.zeros(n)
                y[idx], weight[idx] = np.arange(K), 1.0
            if y is None:  # "random": soft responsibilities
                resp = rng.uniform(size=(n, K))
                resp /= resp.sum(1, keepdims=True)
                params = to_numpy(_m_step_jit(jnp.asarray(X), jnp.asarray(resp), self.reg_covar))
            else:
                start = GaussianMixtureParams(np.full(K, 1 / K), np.zeros((K, X.shape[1])),
                                              np.stack([np.eye(X.shape[1])] * K))  # fmt: skip
                params = to_numpy(
                    fit_em(X, start, y=y, sample_weight=weight, reg_covar=self.reg_covar,
                           max_iter=1).params
                )  # fmt: skip
            w = params[0] if w is None else w
            m = params[1] if m is None else m
            c = params[2] if c is None else c
        return GaussianMixtureParams(w, m, covariances_from_full(c, self.covariance_type))

    def _fit_em(self, X, rng):
        best = None
        given = check_initial_parameters(
            self.weights_init, self.means_init, self.precisions_init,
            n_components=self.n_components, n_features=X.shape[1],
            covariance_type=self.covariance_type,
        )  # fmt: skip
        inits = range(self.n_init)
        if self.verbose > 0 and self.n_init > 1:
            inits = tqdm(inits, desc="EM initialisations")
        for _ in inits:
            result = fit_em(
                X,
                self._initial_params(X, rng, given),
                covariance_type=self.covariance_type,
                reg_covar=self.reg_covar,
                tol=self.tol,
                max_iter=self.max_iter,
            )
            if best is None or float(result.lower_bound) > float(best.lower_bound):
                best = result
        check_finite_result(
            "The EM log-likelihood",
            best.lower_bound,
            "The covariances became singular: increase reg_covar, reduce n_components, or "
            "remove duplicated samples.",
        )
        return best

    def _set_point_params(self, params):
        weights, means, cov = (np.asarray(p, dtype=np.float64) for p in params)
        self.weights_ = weights
        self.means_ = means
        self.covariances_ = cov

    # -- prediction (MixtureMixin) -------------------------------------------------------

    def _mixture_draws(self):
        if self.posterior_samples_ is None:
            return super()._mixture_draws()
        return self.posterior_samples_
