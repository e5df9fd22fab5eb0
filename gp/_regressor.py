"""scikit-learn shell of scale-mixture NNGP regression (note sections 2-4, 6)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy.linalg
import scipy.stats
from sklearn.base import RegressorMixin

from gp._type2 import fit_type2
from gp.kernels import (
    _cached_kernel_fn,
    _default_batch_size,
    kernel_diagonal,
    kernel_matrix,
    preset_kernel,
)
from gp.posterior import (
    GPStatistics,
    ScalePosterior,
    constant_posterior,
    gp_statistics,
    importance_posterior,
    log_mixture_normal,
    log_student_t,
    quadrature_posterior,
    student_t_posterior,
)
from gp.priors import Constant, InverseGamma, resolve_prior
from mixtures.base import MixprocEstimator, check_finite_result, random_state_to_key, x64_scope

__all__ = ["ScaleMixtureNNGPRegressor"]

_INFERENCES = ("auto", "closed_form", "quadrature", "importance", "nuts")
_JITTER_RETRIES = (1.0, 10.0, 100.0, 1000.0)
#: Largest n factorised by SciPy/LAPACK on the host (verified up to n = 8000); above it the
#: jitted JAX Cholesky is used, because SciPy's OpenBLAS potrf crashed (SIGSEGV) at n = 20000
#: on the development machine.
_HOST_MAX_N = 8192


def _prior_kind(prior) -> str:
    if isinstance(prior, Constant):
        return "constant"
    if isinstance(prior, dist.InverseGamma):
        return "inverse_gamma"
    return "other"


def _scale_model(quad, n_obs, prior):
    """NumPyro model of sigma^2 given the sufficient statistics (note section 4, NUTS)."""
    s2 = numpyro.sample("s2", prior)
    numpyro.factor("likelihood", -0.5 * n_obs * jnp.log(s2) - 0.5 * quad / s2)


def _host_statistics(k, work, Yn, jitter):
    r""":class:`~gp.posterior.GPStatistics` of :math:`\hat K = K + \eta I` by LAPACK.

    Same quantities as the jitted :func:`~gp.posterior.gp_statistics` (which type-II
    maximum likelihood differentiates), computed on the host: the factorisation
    overwrites ``work`` (Fortran order, so LAPACK needs no copy) and nothing else of
    size (n, n) is allocated. Returns None when :math:`\hat K` is not positive definite.
    """
    np.copyto(work, k)
    idx = np.arange(k.shape[0])
    work[idx, idx] += jitter  # (``work.flat`` would walk all n^2 entries of an F array)
    try:
        # upper factor U of the Fortran-ordered array: OpenBLAS's lower-triangular potrf
        # is ~5x slower here; L = U^T is then a C-ordered view (no copy)
        upper = scipy.linalg.cholesky(work, lower=False, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    d = np.diagonal(upper)
    if not (np.all(np.isfinite(d)) and np.all(d > 0)):
        return None
    chol = upper.T
    weights = scipy.linalg.cho_solve((upper, False), Yn, check_finite=False)  # R&W Alg. 2.1
    c = Yn.shape[1]
    return GPStatistics(
        chol=chol,
        weights=weights,
        quad=np.float64(np.sum(Yn * weights)),
        logdet=np.float64(2 * np.sum(np.log(d))),
        jitter=np.float64(jitter),
        n_obs=np.float64(Yn.size),
        n_outputs=np.float64(c),
    )


def _host_predict(chol, weights, k_sx, k_ss, full_cov):
    r"""Host version of :func:`~gp.posterior.predict_latent` (one triangular solve).

    :math:`\mu_* = K_{*X} W`, :math:`V = L^{-1}K_{X*}`, :math:`\Sigma_* = K_{**} - V^\top V`
    (only its diagonal :math:`K_{**,ii} - \sum_j V_{ji}^2` unless ``full_cov``).
    """
    mean = k_sx @ weights
    v = scipy.linalg.solve_triangular(chol, k_sx.T, lower=True, check_finite=False)
    if full_cov:
        cov = k_ss - v.T @ v
    else:
        cov = k_ss - np.einsum("ji,ji->i", v, v)
    return mean, cov


class ScaleMixtureNNGPRegressor(RegressorMixin, MixprocEstimator):
    r"""Regression with a scale mixture of neural-network Gaussian processes.

    The network's readout variance :math:`\sigma^2` gets a prior :math:`H` while the
    hidden layers keep fixed variances (Lee et al., 2022, note section 2):

    .. math::

        \sigma^2 \sim H,\qquad y \mid \sigma^2 \sim \mathcal N(0, \sigma^2 (K_{XX} + \eta I)).

    With the inverse-gamma prior the posterior predictive is a Student-t process (closed
    form, note section 3); other priors use 1-D quadrature over :math:`\ln\sigma^2`,
    the paper's importance sampling, or NUTS (note section 4). The posterior mean is the
    same for every prior; only the uncertainty differs.

    Parameters
    ----------
    prior : None, str or numpyro Distribution, default=None
        Prior on :math:`\sigma^2`: ``None`` = ``InverseGamma(2, 2)``; ``"constant"``,
        ``"inverse_gamma"``, ``"burr12"``; or any scalar NumPyro distribution with
        positive support (:class:`gp.priors.Constant`, :func:`gp.priors.InverseGamma`,
        :class:`gp.priors.BurrXII`, ``LogNormal``, ...).
    kernel : {"nngp", "ntk"}, default="nngp"
        ``"nngp"``: Bayesian posterior. ``"ntk"``: the infinite ensemble of networks
        trained by gradient descent from a random readout scale (note section 6); the
        scale is then *not* updated by the data (the Student-t keeps :math:`2\alpha`
        degrees of freedom) and ``log_marginal_likelihood_`` is nan.
    architecture : {"mlp", "cnn", "resnet"}, default="mlp"
        Preset network (ignored when ``kernel_fn`` is given).
    depth : int, default=2
        Hidden layers / residual blocks / conv layers.
    activation : {"relu", "erf", "gelu"}, default="relu"
    W_std, b_std : float, default=1.5, 0.05
        Hidden-layer weight and bias standard deviations (readout ``W_std = 1``).
    kernel_fn : callable, default=None
        A neural-tangents analytic ``kernel_fn`` with readout ``W_std = 1``; overrides the
        preset.
    noise : float, default=1e-3
        Relative noise/jitter :math:`\eta/(\mathrm{tr}K/n)`, scaled by :math:`\sigma^2`
        like the signal (note section 2). Raised automatically (x10, x100, x1000) when the
        Cholesky factorisation fails.
    inference : {"auto", "closed_form", "quadrature", "importance", "nuts"}, default="auto"
        ``"auto"``: closed form for constant/inverse-gamma priors, quadrature otherwise.
    optimizer : {None, "lbfgs", "adam"}, default=None
        Type-II maximum likelihood of ``W_std``, ``b_std`` (presets only), ``noise`` and
        the prior parameters (inverse-gamma ``alpha``, ``beta`` or constant value).
    n_samples : int, default=None
        Quadrature nodes (default 64), importance draws (default 1000, as in the paper) or
        NUTS draws (default 1000, after as many warm-up steps).
    normalize_y : bool, default=True
        Standardise targets with the training mean and std.
    random_state : None, int or numpy Generator, default=None
    image_shape : tuple, default=None
        ``(H, W, C)`` of flattened images for ``architecture="cnn"``; default a square
        single-channel image.
    max_iter : int, default=100
        Optimiser steps for type-II maximum likelihood.
    verbose : int, default=0

    Attributes
    ----------
    scale_posterior_ : ScalePosterior
        Posterior of :math:`\sigma^2` (``.mean``, ``.ess``, ...).
    log_marginal_likelihood_ : float
        :math:`\ln p(y)` of the (standardised, if ``normalize_y``) training targets.
    hyperparameters_ : dict
        ``W_std``, ``b_std``, ``noise`` and prior parameters used (after optimisation).
    inference_data_ : arviz.InferenceData
        Only with ``inference="nuts"``.
    y_mean_, y_std_ : ndarray of shape (n_outputs,)

    Examples
    --------
    >>> import numpy as np
    >>> from gp import ScaleMixtureNNGPRegressor
    >>> X = np.linspace(-1, 1, 20)[:, None]; y = np.sin(3 * X[:, 0])
    >>> reg = ScaleMixtureNNGPRegressor(random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    """

    def __init__(
        self,
        *,
        prior=None,
        kernel="nngp",
        architecture="mlp",
        depth=2,
        activation="relu",
        W_std=1.5,
        b_std=0.05,
        kernel_fn=None,
        noise=1e-3,
        inference="auto",
        optimizer=None,
        n_samples=None,
        normalize_y=True,
        random_state=None,
        image_shape=None,
        max_iter=100,
        verbose=0,
    ):
        self.prior = prior
        self.kernel = kernel
        self.architecture = architecture
        self.depth = depth
        self.activation = activation
        self.W_std = W_std
        self.b_std = b_std
        self.kernel_fn = kernel_fn
        self.noise = noise
        self.inference = inference
        self.optimizer = optimizer
        self.n_samples = n_samples
        self.normalize_y = normalize_y
        self.random_state = random_state
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.verbose = verbose

    # ------------------------------------------------------------------ kernels
    def _inputs(self, X):
        if self.kernel_fn is None and self.architecture == "cnn":
            shape = self.image_shape
            if shape is None:
                side = int(round(math.sqrt(X.shape[1])))
                if side * side != X.shape[1]:
                    raise ValueError(
                        f"architecture='cnn' needs image_shape for {X.shape[1]} features "
                        "(not a square image). Pass image_shape=(H, W, C)."
                    )
                shape = (side, side, 1)
            if int(np.prod(shape)) != X.shape[1]:
                raise ValueError(
                    f"image_shape {shape} has {int(np.prod(shape))} pixels; X has "
                    f"{X.shape[1]} features."
                )
            return X.reshape((X.shape[0], *shape))
        return X

    def _kernel_fn(self):
        if self.kernel_fn is not None:
            return self.kernel_fn
        hp = self.hyperparameters_
        return _cached_kernel_fn(
            self.architecture, int(self.depth), self.activation, hp["W_std"], hp["b_std"]
        )

    def _k(self, x1, x2=None, get="nngp"):
        n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
        batch = _default_batch_size(n)
        if self.kernel_fn is None and batch == 0 and jax.device_count() == 1:
            hp = self.hyperparameters_
            return np.asarray(
                preset_kernel(
                    x1,
                    x2,
                    hp["W_std"],
                    hp["b_std"],
                    architecture=self.architecture,
                    depth=int(self.depth),
                    activation=self.activation,
                    get=get,
                )
            )
        return kernel_matrix(self._kernel_fn(), x1, x2, get=get, batch_size=batch)

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        if self.kernel not in ("nngp", "ntk"):
            raise ValueError(f"kernel must be 'nngp' or 'ntk'; got {self.kernel!r}.")
        if self.inference not in _INFERENCES:
            raise ValueError(f"inference must be one of {_INFERENCES}; got {self.inference!r}.")
        if self.optimizer not in (None, "lbfgs", "adam"):
            raise ValueError(f"optimizer must be None, 'lbfgs' or 'adam'; got {self.optimizer!r}.")
        for name in ("W_std", "noise"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive float; got {v!r}.")
        if not (np.isfinite(self.b_std) and self.b_std >= 0):
            raise ValueError(f"b_std must be a non-negative float; got {self.b_std!r}.")
        if self.kernel_fn is not None and not callable(self.kernel_fn):
            raise ValueError("kernel_fn must be a neural-tangents kernel_fn (callable).")
        prior = resolve_prior(self.prior)
        kind = _prior_kind(prior)
        inference = self.inference
        if inference == "auto":
            inference = "closed_form" if kind != "other" else "quadrature"
        if inference == "closed_form" and kind == "other":
            raise ValueError(
                f"inference='closed_form' needs a Constant or InverseGamma prior; got "
                f"{type(prior).__name__}. Use inference='quadrature', 'importance' or 'nuts'."
            )
        if kind == "constant" and inference in ("quadrature", "importance", "nuts"):
            inference = "closed_form"  # a point mass has nothing to integrate
        if self.optimizer is not None and kind == "other":
            raise ValueError(
                "type-II maximum likelihood needs a Constant or InverseGamma prior (closed-form "
                f"marginal likelihood); got {type(prior).__name__}."
            )
        return prior, kind, inference

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Fit the scale-mixture NNGP to training data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        prior, kind, inference = self._check_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        X, y = self._validate_X(X, reset=True, y=y, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y[:, None] if y.ndim == 1 else y
        if self.normalize_y:
            self.y_mean_ = Y.mean(0)
            std = Y.std(0)
            self.y_std_ = np.where(std > 0, std, 1.0)
        else:
            self.y_mean_ = np.zeros(Y.shape[1])
            self.y_std_ = np.ones(Y.shape[1])
        Yn = (Y - self.y_mean_) / self.y_std_
        Xi = self._inputs(X)
        self.prior_ = prior
        hp = {"W_std": float(self.W_std), "b_std": float(self.b_std), "noise": float(self.noise)}
        if kind == "inverse_gamma":
            hp["alpha"] = float(prior.concentration)
            hp["beta"] = float(prior.rate)
        elif kind == "constant":
            hp["value"] = float(prior.value)
        self.hyperparameters_ = hp
        key = random_state_to_key(self.random_state)
        self.n_iter_ = 1  # one exact solve unless type-II optimisation runs
        with x64_scope():
            if self.optimizer is not None:
                self._optimise(Xi, Yn, kind)
                hp = self.hyperparameters_
                if kind == "inverse_gamma":
                    self.prior_ = InverseGamma(hp["alpha"], hp["beta"])
                else:
                    self.prior_ = Constant(hp["value"])
            k_xx = self._k(Xi, None, "nngp")
            check_finite_result(
                "the training kernel matrix", k_xx, "Check X and the kernel hyperparameters."
            )
            stats = self._factorise(k_xx, Yn, hp["noise"])
            self.X_fit_ = Xi
            self.chol_ = np.asarray(stats.chol)
            self.weights_ = np.asarray(stats.weights)
            self.jitter_ = float(stats.jitter)
            self.n_obs_ = int(Yn.size)
            if self.kernel == "ntk":
                self._fit_ntk(Xi, Yn, k_xx, prior, kind, key)
            else:
                self.scale_posterior_ = self._scale_posterior(stats, prior, kind, inference, key)
                self.log_marginal_likelihood_ = float(self.scale_posterior_.log_marginal_likelihood)
        return self

    def _factorise(self, k, Yn, noise):
        r"""Host (LAPACK) version of :func:`gp.posterior.gp_statistics`, jitter retries.

        ``k`` is not modified; one (n, n) work array holds :math:`\hat K` and then, in
        place, its Cholesky factor.
        """
        k = np.asarray(k, dtype=np.float64)
        n = k.shape[0]
        if n > _HOST_MAX_N:
            return self._factorise_jax(k, Yn, noise)
        diag = np.einsum("ii->i", k)  # a view
        base = float(np.sum(diag)) / n
        work = np.empty((n, n), dtype=np.float64, order="F")
        for factor in _JITTER_RETRIES:
            stats = _host_statistics(k, work, Yn, noise * factor * base)
            if stats is not None:
                self.noise_ = noise * factor
                return stats
        raise ValueError(
            "the kernel matrix K + noise * tr(K)/n * I is not positive definite even with "
            f"noise = {noise * _JITTER_RETRIES[-1]:g}. Remove duplicate/constant inputs or "
            "increase noise."
        )

    def _factorise_jax(self, k, Yn, noise):
        """Jitted :func:`gp.posterior.gp_statistics` with jitter retries (large n)."""
        for factor in _JITTER_RETRIES:
            stats = gp_statistics(jnp.asarray(k), jnp.asarray(Yn), noise * factor)
            if np.all(np.isfinite(np.asarray(stats.chol))) and np.isfinite(float(stats.logdet)):
                self.noise_ = noise * factor
                return GPStatistics(*(np.asarray(v) for v in stats))
        raise ValueError(
            "the kernel matrix K + noise * tr(K)/n * I is not positive definite even with "
            f"noise = {noise * _JITTER_RETRIES[-1]:g}. Remove duplicate/constant inputs or "
            "increase noise."
        )

    def _optimise(self, Xi, Yn, kind):
        hp = dict(self.hyperparameters_)
        fit_kernel = self.kernel_fn is None
        if fit_kernel:
            data = Xi
            init = dict(hp)
            if init["b_std"] <= 0:
                init["b_std"] = 1e-3
        else:
            data = kernel_matrix(self.kernel_fn, Xi)
            init = {k: v for k, v in hp.items() if k not in ("W_std", "b_std")}
        res = fit_type2(
            init,
            data,
            Yn,
            architecture=self.architecture,
            depth=int(self.depth),
            activation=self.activation,
            prior_kind=kind,
            fit_kernel=fit_kernel,
            optimizer=self.optimizer,
            max_iter=self.max_iter,
            verbose=self.verbose,
        )
        hp.update(res.params)
        self.hyperparameters_ = hp
        self.type2_losses_ = res.losses
        self.n_iter_ = int(res.n_iter)

    def _scale_posterior(self, stats, prior, kind, inference, key) -> ScalePosterior:
        hp = self.hyperparameters_
        if kind == "constant":
            return constant_posterior(stats, hp["value"])
        if inference == "closed_form":
            return student_t_posterior(stats, hp["alpha"], hp["beta"])
        if inference == "quadrature":
            return quadrature_posterior(stats, prior, n_nodes=int(self.n_samples or 64))
        if inference == "importance":
            return importance_posterior(stats, prior, key, n_samples=int(self.n_samples or 1000))
        return self._nuts(stats, prior, key)

    def _nuts(self, stats, prior, key) -> ScalePosterior:
        from mixtures.diagnostics import to_inference_data
        from mixtures.inference import run_nuts

        n = int(self.n_samples or 1000)
        res = run_nuts(
            _scale_model,
            stats.quad,
            stats.n_obs,
            prior,
            key=key,
            # warm-up as long as sampling: run_nuts compiles its scan per length, so equal
            # lengths compile once
            num_warmup=max(200, n),
            num_samples=n,
            verbose=self.verbose,
        )
        self.inference_data_ = to_inference_data(res)
        s2 = np.asarray(res.samples["s2"]).reshape(-1)
        # log p(y) is not a by-product of NUTS: report the quadrature value
        lml = quadrature_posterior(stats, prior).log_marginal_likelihood
        log_w = np.full(s2.shape, -math.log(s2.size))
        return ScalePosterior(
            kind="discrete", log_marginal_likelihood=lml, log_s2=np.log(s2), log_weights=log_w
        )

    def _fit_ntk(self, Xi, Yn, k_xx, prior, kind, key):
        """Trained-ensemble predictive (note section 6): scale stays at its prior."""
        t_xx = self._k(Xi, None, "ntk")
        check_finite_result("the training NTK", t_xx, "Check X and the hyperparameters.")
        stats = self._factorise(t_xx, Yn, self.noise_)
        self.ntk_chol_ = np.asarray(stats.chol)
        self.ntk_weights_ = np.asarray(stats.weights)
        self.k_train_train_ = np.asarray(k_xx)
        hp = self.hyperparameters_
        if kind == "constant":
            sp = ScalePosterior(kind="constant", log_marginal_likelihood=np.nan, value=hp["value"])
        elif kind == "inverse_gamma":
            sp = ScalePosterior(
                kind="inverse_gamma",
                log_marginal_likelihood=np.nan,
                alpha=hp["alpha"],
                beta=hp["beta"],
            )
        else:
            n = int(self.n_samples or 1000)
            s2 = np.asarray(prior.sample(key, (n,)))
            sp = ScalePosterior(
                kind="discrete",
                log_marginal_likelihood=np.nan,
                log_s2=np.log(s2),
                log_weights=np.full(n, -math.log(n)),
            )
        self.scale_posterior_ = sp
        self.log_marginal_likelihood_ = float("nan")

    # ------------------------------------------------------------------ predict
    def _latent(self, X, full_cov):
        """Unit-scale latent mean (m, C) and covariance ((m, m) or (m,)), standardised units."""
        self._check_is_fitted()
        X = self._validate_X(X, reset=False)
        Xi = self._inputs(X)
        with x64_scope():
            k_sx = self._k(Xi, self.X_fit_, "nngp")
            if full_cov:
                k_ss = self._k(Xi, None, "nngp")
            else:
                fn = self._kernel_fn()
                k_ss = kernel_diagonal(fn, Xi, get="nngp")
            if self.kernel == "nngp":
                return _host_predict(self.chol_, self.weights_, k_sx, k_ss, full_cov)
            return self._latent_ntk(Xi, k_sx, k_ss, full_cov)

    def _latent_ntk(self, Xi, k_sx, k_ss, full_cov):
        # Sigma_NTK = K** + A K A' - (A K_X* + K_*X A'), A = Theta_*X Theta^-1 (note section 6)
        t_sx = self._k(Xi, self.X_fit_, "ntk")
        L = self.ntk_chol_
        import scipy.linalg as sl

        a = sl.cho_solve((L, True), t_sx.T).T
        mean = t_sx @ self.ntk_weights_
        akx = a @ self.k_train_train_
        if full_cov:
            cov = k_ss + akx @ a.T - (a @ k_sx.T + k_sx @ a.T)
        else:
            cov = k_ss + np.sum(akx * a, 1) - 2 * np.sum(a * k_sx, 1)
        return mean, cov

    def _scale_factor_moments(self):
        """E[sigma^2 | y] (used for predictive std / cov)."""
        return self.scale_posterior_.mean

    def _to_output(self, arr):
        return arr[:, 0] if self._y_1d else arr

    def predict(self, X, return_std=False, return_cov=False):
        """Posterior predictive mean (and std / covariance of the latent function).

        The mean :math:`K_{*X}\\hat K^{-1}y` is the same for every prior. ``return_std`` /
        ``return_cov`` give the standard deviation / covariance of the latent
        :math:`f_*` under the scale mixture, :math:`E[\\sigma^2\\mid y]\\,\\Sigma_*` (for the
        Student-t, ``scale**2 * df / (df - 2)``), in the units of ``y``; for multi-output
        ``y`` they have shape (n, n_outputs) / (n, n, n_outputs) as in scikit-learn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std, return_cov : bool

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        y_std or y_cov : ndarray, optional
        """
        if return_std and return_cov:
            raise ValueError("At most one of return_std or return_cov can be requested.")
        mean, cov = self._latent(X, full_cov=return_cov)
        y_mean = self._to_output(mean * self.y_std_ + self.y_mean_)
        if not (return_std or return_cov):
            return y_mean
        s2 = self._scale_factor_moments()
        cov = np.maximum(cov, 0.0) if not return_cov else cov
        if return_std:
            std = np.sqrt(s2 * cov)[:, None] * self.y_std_
            return y_mean, self._to_output(std)
        full = (s2 * cov)[:, :, None] * self.y_std_**2
        return y_mean, (full[:, :, 0] if self._y_1d else full)

    def _marginals(self, X):
        """Standardised-unit mean (m, C) and noisy unit-scale variance (m, 1)."""
        mean, var = self._latent(X, full_cov=False)
        var = np.maximum(var, 0.0) + self.jitter_
        return mean, var[:, None]

    def predictive_distribution(self, X):
        """Per-point predictive distribution of noisy targets, a NumPyro distribution.

        Student-t (inverse-gamma prior), Normal (constant prior) or a mixture of normals
        over the :math:`\\sigma^2` nodes/draws (other priors), in the units of ``y``, with
        batch shape (n_samples,) or (n_samples, n_outputs). Observation noise is
        :math:`\\sigma^2\\eta` as in the model.
        """
        mean, var = self._marginals(X)
        loc = mean * self.y_std_ + self.y_mean_
        scale = np.sqrt(var) * self.y_std_  # unit-scale predictive std, (m, C)
        if self._y_1d:
            loc, scale = loc[:, 0], scale[:, 0]
        sp = self.scale_posterior_
        with x64_scope():
            loc, scale = jnp.asarray(loc), jnp.asarray(scale)
            if sp.kind == "constant":
                return dist.Normal(loc, math.sqrt(sp.value) * scale)
            if sp.kind == "inverse_gamma":
                return dist.StudentT(2 * sp.alpha, loc, math.sqrt(sp.beta / sp.alpha) * scale)
            k = sp.log_s2.size
            comp = dist.Normal(
                loc[..., None], jnp.exp(0.5 * jnp.asarray(sp.log_s2)) * scale[..., None]
            )
            logits = jnp.broadcast_to(jnp.asarray(sp.log_weights), loc.shape + (k,))
            return dist.MixtureSameFamily(dist.Categorical(logits=logits), comp)

    def log_predictive_density(self, X, y):
        """Per-point log predictive density of observed targets (noise included).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the units of ``y`` (subtract ``log(y_std_)`` for standardised units).
        """
        mean, var = self._marginals(X)
        y = np.asarray(y, dtype=np.float64)
        Y = y[:, None] if y.ndim == 1 else y
        if Y.shape != mean.shape:
            raise ValueError(
                f"y must have {mean.shape[0]} rows and {mean.shape[1]} output(s) like the "
                f"training targets; got shape {y.shape}."
            )
        z = (Y - self.y_mean_) / self.y_std_
        sp = self.scale_posterior_
        with x64_scope():
            if sp.kind == "constant":
                s2v = sp.value * var
                lp = -0.5 * (np.log(2 * np.pi * s2v) + (z - mean) ** 2 / s2v)
            elif sp.kind == "inverse_gamma":
                lp = np.asarray(
                    log_student_t(z, 2 * sp.alpha, mean, np.sqrt(sp.beta / sp.alpha * var))
                )
            else:
                lp = np.asarray(
                    log_mixture_normal(
                        jnp.asarray(z),
                        jnp.asarray(mean),
                        jnp.asarray(np.broadcast_to(var, z.shape)),
                        jnp.asarray(sp.log_s2),
                        jnp.asarray(sp.log_weights),
                    )
                )
        lp = lp - np.log(self.y_std_)
        return self._to_output(lp)

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw latent functions from the posterior (shared :math:`\\sigma^2` per draw).

        Returns
        -------
        ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_outputs, n_samples)
        """
        rng = (
            np.random.default_rng(random_state)
            if not isinstance(random_state, np.random.RandomState)
            else random_state
        )
        mean, cov = self._latent(X, full_cov=True)
        sp = self.scale_posterior_
        if sp.kind == "constant":
            s2 = np.full(n_samples, sp.value)
        elif sp.kind == "inverse_gamma":
            s2 = scipy.stats.invgamma(sp.alpha, scale=sp.beta).rvs(n_samples, random_state=rng)
        else:
            idx = rng.choice(
                sp.log_s2.size,
                size=n_samples,
                p=np.exp(sp.log_weights) / np.exp(sp.log_weights).sum(),
            )
            s2 = np.exp(sp.log_s2[idx])
        m = cov.shape[0]
        w, v = np.linalg.eigh((cov + cov.T) / 2)
        root = v * np.sqrt(np.clip(w, 0, None))
        c = mean.shape[1]
        z = (
            rng.standard_normal((m, c, n_samples))
            if hasattr(rng, "standard_normal")
            else rng.randn(m, c, n_samples)
        )
        f = mean[:, :, None] + np.einsum("ij,jcs->ics", root, z) * np.sqrt(s2)
        f = f * self.y_std_[None, :, None] + self.y_mean_[None, :, None]
        return f[:, 0, :] if self._y_1d else f

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags
