"""scikit-learn shell of scale-mixture NNGP regression (Lee et al., ICLR 2022)."""

from __future__ import annotations

import functools
import math
from numbers import Integral

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy.linalg
import scipy.stats
from scipy.linalg import lapack
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions

from gp._linalg import cholesky_lower_inplace, restore_lower, zero_strict_upper
from gp._network import PARAMETER_CONSTRAINTS, NetworkKernel
from gp._type2 import fit_type2, training_kernel
from gp.diagnostics import check_importance_sampling, loo_log_likelihood, posterior_predictive
from gp.kernels import kernel_matrix
from gp.posterior import (
    GPStatistics,
    ScalePosterior,
    constant_log_marginal,
    constant_posterior,
    gp_statistics,
    importance_posterior,
    predict_latent,
    quadrature_posterior,
    student_t_log_marginal,
    student_t_posterior,
)
from gp.priors import BurrXII, Constant, InverseGamma, prior_kind, resolve_prior
from mixtures.base import (
    MixprocEstimator,
    check_finite_result,
    check_no_overflow,
    random_state_to_generator,
    random_state_to_key,
    x64_scope,
)

__all__ = ["ScaleMixtureNNGPRegressor"]

_JITTER_RETRIES = (1.0, 10.0, 100.0, 1000.0)


def _on_host() -> bool:
    """Linear algebra on the host (SciPy/LAPACK, in place) when JAX computes on the CPU;
    on an accelerator the jitted JAX path keeps everything on the device."""
    return jax.default_backend() == "cpu"


def _not_pd_error(noise):
    return ValueError(
        "the kernel matrix K + noise * tr(K)/n * I is not positive definite even with "
        f"noise = {noise * _JITTER_RETRIES[-1]:g}. Remove duplicate/constant inputs or "
        "increase noise."
    )


def _check_finite_rows(kc, what, block=1024):
    """``check_finite_result`` in row blocks (no (n, n) boolean temporary)."""
    for i in range(0, kc.shape[0], block):
        check_finite_result(what, kc[i : i + block], "Check X and the kernel hyperparameters.")


def _scale_model(quad, n_obs, prior):
    """NumPyro model of sigma^2 given the sufficient statistics Q and N (for NUTS)."""
    s2 = numpyro.sample("s2", prior)
    numpyro.factor("likelihood", -0.5 * n_obs * jnp.log(s2) - 0.5 * quad / s2)


_HYPER_NAMES = ("W_std", "b_std", "noise")
#: log-sd of the weakly-informative log-normal hyperparameter priors
_HYPER_LOG_SD = {"W_std": 0.5, "b_std": 1.0, "noise": 1.0}


@functools.lru_cache(maxsize=32)
def _hyper_model(architecture, depth, activation, kind, names):
    """NumPyro model of the sampled hyperparameters (one function per structure, so
    ``run_nuts`` reuses its compiled code)."""

    def model(data, y, prior, centres):
        p = {}
        for name in _HYPER_NAMES:
            if name in names:
                p[name] = numpyro.sample(name, dist.LogNormal(centres[name], _HYPER_LOG_SD[name]))
            else:
                p[name] = jnp.exp(centres[name])
        rebuild = "W_std" in names or "b_std" in names
        k = training_kernel(data, p, rebuild, architecture, depth, activation)
        stats = gp_statistics(k, y, p["noise"])
        if kind == "inverse_gamma":  # scale marginalised: the Student-t process marginal
            lml = student_t_log_marginal(stats, prior.concentration, prior.rate)
        elif kind == "constant":
            lml = constant_log_marginal(stats, prior.value)
        else:
            s2 = numpyro.sample("s2", prior)
            lml = -0.5 * (
                stats.n_obs * jnp.log(2 * jnp.pi * s2)
                + stats.n_outputs * stats.logdet
                + stats.quad / s2
            )
        numpyro.factor("marginal_likelihood", lml)

    return model


def _host_factorise_inplace(kc, Yn, noise):
    r"""Host (LAPACK) version of :func:`~gp.posterior.gp_statistics`, in place.

    ``kc`` (C-ordered, symmetric :math:`K`) ends with :math:`L` in its lower triangle and
    zeros above; nothing else of size (n, n) is allocated. The jitter
    :math:`\eta = \mathrm{noise}\,\mathrm{tr}(K)/n` is raised x10, x100, x1000 when the
    factorisation fails (the strict upper triangle still holds :math:`K`, so each retry
    restores the lower one from it). Returns ``(stats, noise_used)``.
    """
    n = kc.shape[0]
    idx = np.arange(n)
    diag = kc[idx, idx].copy()
    base = float(np.sum(diag)) / n
    for factor in _JITTER_RETRIES:
        jitter = noise * factor * base
        kc[idx, idx] = diag + jitter
        if cholesky_lower_inplace(kc):
            d = kc[idx, idx]
            if np.all(np.isfinite(d)) and np.all(d > 0):
                break
        restore_lower(kc, diag)
    else:
        raise _not_pd_error(noise)
    zero_strict_upper(kc)
    # R&W Alg. 2.1, line 3; kc.T is F-ordered and holds U = L^T in its upper triangle
    weights, info = lapack.dpotrs(kc.T, Yn, lower=0)
    if info != 0:  # pragma: no cover (only for invalid arguments)
        raise ValueError(f"LAPACK dpotrs failed with info = {info}.")
    stats = GPStatistics(
        chol=kc,
        weights=weights,
        quad=np.float64(np.sum(Yn * weights)),
        logdet=np.float64(2 * np.sum(np.log(d))),
        jitter=np.float64(jitter),
        n_obs=np.float64(Yn.size),
        n_outputs=np.float64(Yn.shape[1]),
    )
    return stats, noise * factor


def _host_predict(chol, weights, k_sx, k_ss, full_cov):
    r"""Host version of :func:`~gp.posterior.predict_latent` (one triangular solve).

    :math:`\mu_* = K_{*X} W`, :math:`V = L^{-1}K_{X*}`, :math:`\Sigma_* = K_{**} - V^\top V`
    (only its diagonal :math:`K_{**,ii} - \sum_j V_{ji}^2` unless ``full_cov``). The solve
    overwrites ``k_sx`` when it is writable (no second (n, m) array).
    """
    mean = k_sx @ weights
    # L V = K_X*  <=>  U^T V = K_X* with U = chol.T (F-ordered, no copy)
    v = scipy.linalg.solve_triangular(
        chol.T, k_sx.T, lower=False, trans="T", overwrite_b=True, check_finite=False
    )
    if full_cov:
        cov = k_ss - v.T @ v
    else:
        cov = k_ss - np.einsum("ji,ji->i", v, v)
    return mean, cov


class ScaleMixtureNNGPRegressor(RegressorMixin, MixprocEstimator):
    r"""Regression with a scale mixture of neural-network Gaussian processes.

    The network's readout variance :math:`\sigma^2` gets a prior :math:`H` while the
    hidden layers keep fixed variances (Lee et al., 2022); the observation noise is
    scaled by :math:`\sigma^2` like the signal:

    .. math::

        \sigma^2 \sim H,\qquad y \mid \sigma^2 \sim \mathcal N(0, \sigma^2 (K_{XX} + \eta I)).

    With the inverse-gamma prior the model is a Student-t process and the posterior
    predictive is closed form; other priors use Gauss-Hermite quadrature over
    :math:`\ln\sigma^2`, the paper's importance sampling with the prior as proposal, or
    NUTS. The posterior mean is the same for every prior; only the uncertainty differs.
    By default ``fit`` first chooses the kernel, noise and prior parameters by type-II
    maximum likelihood (``optimizer="lbfgs"``); ``optimizer=None`` keeps the constructor
    values.

    Parameters
    ----------
    prior : None, str or numpyro Distribution, default=None
        Prior on :math:`\sigma^2`: ``None`` = ``InverseGamma(2, 2)``; ``"constant"``,
        ``"inverse_gamma"``, ``"burr12"``; or any scalar NumPyro distribution with
        positive support (:class:`gp.Constant`, :func:`gp.InverseGamma`,
        :class:`gp.BurrXII`, ``LogNormal``, ...).
    kernel : {"nngp", "ntk"}, default="nngp"
        ``"nngp"``: Bayesian posterior. ``"ntk"``: the infinite ensemble of networks
        trained by gradient descent from a random readout scale; the scale is then *not*
        updated by the data (the Student-t keeps :math:`2\alpha` degrees of freedom) and
        ``log_marginal_likelihood_`` is nan.
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
        like the signal. Raised automatically (x10, x100, x1000) when the Cholesky
        factorisation fails.
    inference : {"auto", "closed_form", "quadrature", "importance", "nuts"}, default="auto"
        ``"auto"``: closed form for constant/inverse-gamma priors, quadrature otherwise.
        ``"importance"`` warns (:class:`gp.diagnostics.ImportanceSamplingWarning`) when
        its weights collapse: Pareto :math:`\hat k` above 0.7 (fewer draws: lower, see
        :func:`gp.diagnostics.khat_threshold`) or a Kish ESS below 100.
    optimizer : {"lbfgs", "adam", None}, default="lbfgs"
        Type-II maximum likelihood of ``W_std``, ``b_std`` (presets only), ``noise`` and
        the prior parameters: inverse-gamma ``alpha``, ``beta`` or the constant value
        (closed-form marginal likelihood), Burr XII ``c``, ``d`` (differentiable quadrature,
        :func:`gp.posterior.quadrature_log_marginal`); other NumPyro priors keep their
        parameters and only the kernel and noise are fitted (quadrature). The constructor
        values are the starting point. ``None`` keeps them fixed. With ``kernel="ntk"``
        the NNGP marginal likelihood chooses them; with ``sample_hyperparameters`` no
        optimisation runs (the hyperparameters are sampled or kept). Each L-BFGS
        iteration factorises the (n, n) kernel once or a few times, so its cost grows
        as n cubed.
    n_samples : int, default=None
        Quadrature nodes (default 64), importance draws (default 1000, as in the paper) or
        NUTS draws per chain (default 1000, after as many warm-up steps).
    num_chains : int, default=2
        NUTS chains (``inference="nuts"``), run in parallel; at least two are needed for
        R-hat. Every NUTS fit is checked by :func:`mixtures.diagnostics.check_convergence`
        (a :class:`mixtures.diagnostics.MixprocConvergenceWarning` says what failed).
    normalize_y : bool, default=True
        Standardise targets with the training mean and std.
    random_state : None, int, numpy RandomState or Generator, default=None
        Seeds the importance draws, NUTS and the prior draws of ``kernel="ntk"``.
    image_shape : tuple, default=None
        ``(H, W, C)`` of flattened images for ``architecture="cnn"``; default a square
        single-channel image.
    max_iter : int, default=100
        Optimiser steps for type-II maximum likelihood.
    verbose : int, default=0
    sample_hyperparameters : bool or tuple of str, default=False
        With ``inference="nuts"``: also sample kernel hyperparameters (``True`` = all of
        ``("W_std", "b_std", "noise")``; ``W_std``/``b_std`` only for presets) under
        weakly-informative log-normal priors centred at the constructor values (log-sd
        0.5 for ``W_std``, 1 for ``b_std`` and ``noise``). The scale is marginalised in
        closed form (inverse gamma, constant) or sampled jointly (other priors). The joint
        draws are in ``inference_data_``; predictions plug in the posterior medians of the
        sampled hyperparameters and use the exact scale posterior given them. An empty
        tuple runs the same joint model with every hyperparameter fixed.

    Attributes
    ----------
    scale_posterior_ : ScalePosterior
        Posterior of :math:`\sigma^2` (``.mean``, ``.ess``, ...).
    log_marginal_likelihood_ : float
        :math:`\ln p(y)` of the (standardised, if ``normalize_y``) training targets.
    hyperparameters_ : dict
        ``W_std``, ``b_std``, ``noise`` and prior parameters used (after optimisation).
    inference_data_ : arviz.InferenceData
        Only with ``inference="nuts"``: ``posterior`` (``s2``; with
        ``sample_hyperparameters`` the joint hyperparameter draws), ``sample_stats`` and
        ``observed_data`` (``y``, the standardised training targets). For the scale alone
        also ``log_likelihood`` (``y``): the leave-one-out conditionals
        :math:`\ln p(y_i \mid y_{-i}, \sigma^2)` of each draw
        (:func:`gp.diagnostics.loo_log_likelihood`), because the observations are
        correlated and the likelihood has no per-observation factors; ``arviz.loo`` uses
        them as they are. The hyperparameter model has no ``log_likelihood`` group: each
        draw would need its own (n, n) inverse.
    convergence_report_ : mixtures.diagnostics.ConvergenceReport
        Only with ``inference="nuts"``: R-hat, ESS and divergences of the run.
    y_mean_, y_std_ : ndarray of shape (n_outputs,)

    References
    ----------
    H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian
    Processes", ICLR 2022.

    C. E. Rasmussen, C. K. I. Williams, "Gaussian Processes for Machine Learning", MIT
    Press, 2006 (Algorithm 2.1).

    Examples
    --------
    >>> import numpy as np
    >>> from gp import ScaleMixtureNNGPRegressor
    >>> X = np.linspace(-1, 1, 20)[:, None]; y = np.sin(3 * X[:, 0])
    >>> reg = ScaleMixtureNNGPRegressor(random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    >>> sorted(reg.hyperparameters_)  # chosen by type-II maximum likelihood
    ['W_std', 'alpha', 'b_std', 'beta', 'noise']
    """

    _parameter_constraints = {
        **PARAMETER_CONSTRAINTS,
        "optimizer": [None, StrOptions({"lbfgs", "adam"})],
        "num_chains": [Interval(Integral, 1, None, closed="left")],
        "normalize_y": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "sample_hyperparameters": [None, "boolean", tuple, list],
    }

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
        optimizer="lbfgs",
        n_samples=None,
        num_chains=2,
        normalize_y=True,
        random_state=None,
        image_shape=None,
        max_iter=100,
        verbose=0,
        sample_hyperparameters=False,
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
        self.num_chains = num_chains
        self.normalize_y = normalize_y
        self.random_state = random_state
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.verbose = verbose
        self.sample_hyperparameters = sample_hyperparameters

    # ------------------------------------------------------------------ kernels
    def _network(self, hp=None) -> NetworkKernel:
        """The kernel with ``hp["W_std"]``/``hp["b_std"]`` (default: the fitted ones)."""
        hp = self.hyperparameters_ if hp is None else hp
        return NetworkKernel(
            architecture=self.architecture,
            depth=int(self.depth),
            activation=self.activation,
            W_std=hp["W_std"],
            b_std=hp["b_std"],
            kernel_fn=self.kernel_fn,
            image_shape=None if self.image_shape is None else tuple(self.image_shape),
        )

    def _k(self, x1, x2=None, get="nngp", *, out=None, device=False):
        """Kernel matrix ``K(x1, x2)`` with the fitted hyperparameters (tiled on one
        device, sharded over several, in one call with ``device=True``)."""
        return self._network().matrix(x1, x2, get, out=out, device=device)

    # ------------------------------------------------------------------ validation
    def _resolve_inference(self, prior, kind) -> str:
        """The inference method actually run (``"auto"`` resolved) for this prior."""
        inference = self.inference
        if inference == "auto":
            inference = "closed_form" if kind != "other" else "quadrature"
        if inference == "closed_form" and kind == "other":
            raise ValueError(
                f"inference='closed_form' needs a Constant or InverseGamma prior; got "
                f"{type(prior).__name__}. Use inference='quadrature', 'importance' or 'nuts'."
            )
        joint = inference == "nuts" and self.sample_hyperparameters not in (None, False)
        if kind == "constant" and inference in ("quadrature", "importance", "nuts") and not joint:
            inference = "closed_form"  # a point mass has nothing to integrate
        return inference

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
        self._validate_params()
        prior = resolve_prior(self.prior)
        kind = prior_kind(prior)
        inference = self._resolve_inference(prior, kind)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        X, y = self._validate_X(X, reset=True, y=y, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        check_no_overflow(y, "y")  # its mean, std and y' Khat^-1 y would overflow to NaN
        for name in ("inference_data_", "convergence_report_"):  # from an earlier NUTS fit
            self.__dict__.pop(name, None)
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
        self.prior_ = prior
        hp = {"W_std": float(self.W_std), "b_std": float(self.b_std), "noise": float(self.noise)}
        Xi = self._network(hp).inputs(X)
        if kind == "inverse_gamma":
            hp["alpha"] = float(prior.concentration)
            hp["beta"] = float(prior.rate)
        elif kind == "constant":
            hp["value"] = float(prior.value)
        elif isinstance(prior, BurrXII):
            hp["c"], hp["d"] = float(prior.c), float(prior.d)
        self.hyperparameters_ = hp
        key = random_state_to_key(self.random_state)
        self.n_iter_ = 1  # one exact solve unless type-II optimisation runs
        with x64_scope():
            hyper = self._hyper_names(inference)
            if hyper:
                self._sample_hyperparameters(Xi, Yn, kind, prior, hyper, key)
                hp = self.hyperparameters_
            if self.optimizer is not None and not hyper:
                self._optimise(Xi, Yn, kind, prior)
                hp = self.hyperparameters_
                if kind == "inverse_gamma":
                    self.prior_ = InverseGamma(hp["alpha"], hp["beta"])
                elif kind == "constant":
                    self.prior_ = Constant(hp["value"])
                elif "c" in hp:
                    self.prior_ = BurrXII(hp["c"], hp["d"], float(prior.scale))
                prior = self.prior_
            stats, k_xx = self._fit_kernel_statistics(Xi, Yn, hp["noise"])
            self.X_fit_ = Xi
            # host: NumPy arrays; accelerator: JAX arrays left on the device for predict
            self.chol_ = stats.chol
            self.weights_ = stats.weights
            self.jitter_ = float(stats.jitter)
            self.n_obs_ = int(Yn.size)
            if self.kernel == "ntk":
                self._fit_ntk(Xi, Yn, k_xx, prior, kind, key)
            else:
                sp = self._scale_posterior(stats, Yn, prior, kind, inference, key)
                self.scale_posterior_ = sp
                self.log_marginal_likelihood_ = float(self.scale_posterior_.log_marginal_likelihood)
        return self

    def _fit_kernel_statistics(self, Xi, Yn, noise):
        """Training kernel and its :class:`~gp.posterior.GPStatistics`.

        Host: the kernel is written into one C-ordered (n, n) array that the Cholesky
        factor then overwrites in place (blocked LAPACK), so ``fit`` holds one (n, n)
        matrix (a second, the kernel itself, only for ``kernel="ntk"``). Accelerator:
        the kernel, factorisation and solves stay on the device (jitted
        :func:`~gp.posterior.gp_statistics`), and the factor stays there for ``predict``.
        Returns ``(stats, k_xx_or_None)``.
        """
        n = Xi.shape[0]
        if not _on_host():
            k = self._k(Xi, None, "nngp", device=True)
            stats = self._factorise_device(k, Yn, noise)
            return stats, (np.asarray(k) if self.kernel == "ntk" else None)
        kc = self._k(Xi, None, "nngp", out=np.empty((n, n)))
        _check_finite_rows(kc, "the training kernel matrix")
        k_xx = kc.copy() if self.kernel == "ntk" else None
        stats, self.noise_ = _host_factorise_inplace(kc, Yn, noise)
        return stats, k_xx

    def _factorise(self, k, Yn, noise):
        """:class:`~gp.posterior.GPStatistics` of a given kernel matrix (not modified)."""
        if not _on_host():
            return self._factorise_device(jnp.asarray(k), Yn, noise)
        stats, self.noise_ = _host_factorise_inplace(np.array(k, dtype=np.float64), Yn, noise)
        return stats

    def _factorise_device(self, k, Yn, noise):
        """Jitted :func:`gp.posterior.gp_statistics` with jitter retries (accelerators).

        The factor and the weights stay on the device (JAX arrays): ``predict`` uses them
        there, so the (n, n) factor never crosses to the host and back. The scalars are
        copied to the host."""
        yj = jnp.asarray(Yn)
        for factor in _JITTER_RETRIES:
            stats = gp_statistics(k, yj, noise * factor)
            # a failed JAX Cholesky returns NaNs, which reach the log-determinant
            if np.isfinite(float(stats.logdet)) and np.isfinite(float(stats.quad)):
                self.noise_ = noise * factor
                scalars = (np.asarray(v) for v in stats[2:])
                return GPStatistics(stats.chol, stats.weights, *scalars)
        raise _not_pd_error(noise)

    def _optimise(self, Xi, Yn, kind, prior):
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
            prior_kind="burr12" if "c" in hp else kind,
            prior=None if kind in ("inverse_gamma", "constant") else prior,
            fit_kernel=fit_kernel,
            optimizer=self.optimizer,
            max_iter=self.max_iter,
            verbose=self.verbose,
        )
        hp.update(res.params)
        self.hyperparameters_ = hp
        self.type2_losses_ = res.losses
        self.n_iter_ = int(res.n_iter)

    def _n_samples(self, default: int) -> int:
        return default if self.n_samples is None else int(self.n_samples)

    def _scale_posterior(self, stats, Yn, prior, kind, inference, key) -> ScalePosterior:
        hp = self.hyperparameters_
        if kind == "constant":
            return constant_posterior(stats, hp["value"])
        if inference == "closed_form" or (inference == "nuts" and self._hyper_names(inference)):
            # with sampled hyperparameters the scale is exact given their medians
            if kind == "inverse_gamma":
                return student_t_posterior(stats, hp["alpha"], hp["beta"])
            return quadrature_posterior(stats, prior, n_nodes=64)
        if inference == "quadrature":
            return quadrature_posterior(stats, prior, n_nodes=self._n_samples(64))
        if inference == "importance":
            sp = importance_posterior(stats, prior, key, n_samples=self._n_samples(1000))
            check_importance_sampling(sp, stacklevel=4)  # warn at the caller of fit
            return sp
        return self._nuts(stats, Yn, prior, key)

    def _store_nuts(self, res, Yn, log_likelihood=None, replicates=None):
        """``inference_data_`` (with the standardised targets as ``observed_data``) and
        its :func:`~mixtures.diagnostics.check_convergence` report, which warns on failure."""
        from mixtures.diagnostics import check_convergence, to_inference_data

        self.inference_data_ = to_inference_data(
            res,
            log_likelihood=None if log_likelihood is None else {"y": log_likelihood},
            observed_data={"y": self._to_output(Yn)},
            posterior_predictive=None if replicates is None else {"y": replicates},
        )
        self.convergence_report_ = check_convergence(self.inference_data_)

    def _hyper_names(self, inference):
        """Sampled hyperparameter names; ``()`` when the joint model is off. An empty
        tuple/list gives ``("none",)``: the joint model with everything fixed."""
        sh = self.sample_hyperparameters
        if sh is None or sh is False:
            return ()
        names = _HYPER_NAMES if sh is True else sh
        if isinstance(names, str) or any(n not in _HYPER_NAMES for n in names):
            raise ValueError(
                f"sample_hyperparameters must be a bool or a tuple of names from {_HYPER_NAMES}; "
                f"got {sh!r}."
            )
        if inference != "nuts":
            raise ValueError(
                f"sample_hyperparameters needs inference='nuts'; got inference={inference!r}."
            )
        if self.kernel_fn is not None and ("W_std" in names or "b_std" in names):
            raise ValueError(
                "sampling W_std/b_std needs a preset architecture (kernel_fn is given); sample "
                "only ('noise',)."
            )
        return tuple(n for n in _HYPER_NAMES if n in names) or ("none",)

    def _sample_hyperparameters(self, Xi, Yn, kind, prior, names, key):
        r"""Joint NUTS over the hyperparameters (and the scale for non-conjugate priors).

        No ``log_likelihood`` group: its leave-one-out conditionals need
        :math:`\mathrm{diag}(\hat K^{-1})` of every draw's kernel, an (n, n) inverse each.
        """
        from mixtures.inference import run_nuts

        hp = self.hyperparameters_
        names = tuple(n for n in names if n != "none")
        kernel_sampled = "W_std" in names or "b_std" in names
        data = Xi if kernel_sampled else self._k(Xi, None, "nngp")
        model = _hyper_model(self.architecture, int(self.depth), self.activation, kind, names)
        centres = {k: math.log(max(hp[k], 1e-12)) for k in _HYPER_NAMES}
        n = self._n_samples(1000)
        res = run_nuts(
            model,
            data,
            Yn,
            prior,
            centres,
            key=key,
            num_warmup=max(200, n),
            num_samples=n,
            num_chains=int(self.num_chains),
            verbose=self.verbose,
        )
        self._store_nuts(res, Yn)
        hp = dict(hp)
        for name in names:
            hp[name] = float(np.median(np.asarray(res.samples[name])))
        self.hyperparameters_ = hp

    def _nuts(self, stats, Yn, prior, key) -> ScalePosterior:
        """NUTS over the scale alone, given the sufficient statistics."""
        from mixtures.inference import run_nuts

        n = self._n_samples(1000)
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
            num_chains=int(self.num_chains),
            verbose=self.verbose,
        )
        log_s2 = np.log(np.asarray(res.samples["s2"], dtype=np.float64))  # (chains, draws)
        ll = loo_log_likelihood(stats.chol, stats.weights, log_s2)  # (chains, draws, n, C)
        rng = random_state_to_generator(self.random_state)
        n_out = Yn.shape[1]  # replicate each output column: (chains, kept, n, C)
        rep = np.stack(
            [posterior_predictive(rng, stats.chol, log_s2) for _ in range(n_out)], axis=-1
        )
        if self._y_1d:
            ll, rep = ll[..., 0], rep[..., 0]
        self._store_nuts(res, Yn, ll, rep)
        s2 = np.exp(log_s2).reshape(-1)
        # log p(y) is not a by-product of NUTS: report the quadrature value
        lml = quadrature_posterior(stats, prior).log_marginal_likelihood
        log_w = np.full(s2.shape, -math.log(s2.size))
        return ScalePosterior(
            kind="discrete", log_marginal_likelihood=lml, log_s2=np.log(s2), log_weights=log_w
        )

    def _fit_ntk(self, Xi, Yn, k_xx, prior, kind, key):
        """Trained-ensemble predictive: the infinite ensemble of networks trained by
        gradient descent (NTK regime) from a readout variance drawn from the prior, which
        training never updates, so the scale keeps its prior (Lee et al., 2022)."""
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
            n = self._n_samples(1000)
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

    # ------------------------------------------------------------------ predict
    def _latent(self, X, full_cov):
        """Unit-scale latent mean (m, C) and covariance ((m, m) or (m,)), standardised units."""
        self._check_is_fitted()
        X = self._validate_X(X, reset=False)
        net = self._network()
        Xi = net.inputs(X)
        with x64_scope():
            k_ss = net.matrix(Xi, None, "nngp") if full_cov else net.diagonal(Xi, "nngp")
            if self.kernel == "nngp" and not _on_host():
                k_sx = net.matrix(Xi, self.X_fit_, "nngp", device=True)
                stats = GPStatistics(
                    jnp.asarray(self.chol_), jnp.asarray(self.weights_), *([0.0] * 5)
                )
                mean, cov = predict_latent(stats, k_sx, jnp.asarray(k_ss), full_cov=full_cov)
                return np.asarray(mean), np.asarray(cov)
            k_sx = net.matrix(Xi, self.X_fit_, "nngp")
            if self.kernel == "nngp":
                return _host_predict(self.chol_, self.weights_, k_sx, k_ss, full_cov)
            return self._latent_ntk(Xi, k_sx, k_ss, full_cov)

    def _latent_ntk(self, Xi, k_sx, k_ss, full_cov):
        r"""Trained-ensemble mean :math:`\Theta_{*X}\hat\Theta^{-1}y` and covariance

        .. math::

            \Sigma_{\mathrm{NTK}} = K_{**} + A K_{XX} A^\top - (A K_{X*} + K_{*X} A^\top),
            \qquad A = \Theta_{*X}\hat\Theta^{-1}

        (the ``nt.predict.gradient_descent_mse_ensemble`` covariance at :math:`t\to\infty`).
        """
        t_sx = self._k(Xi, self.X_fit_, "ntk")
        a = scipy.linalg.cho_solve((self.ntk_chol_, True), t_sx.T).T
        mean = t_sx @ self.ntk_weights_
        akx = a @ self.k_train_train_
        if full_cov:
            cov = k_ss + akx @ a.T - (a @ k_sx.T + k_sx @ a.T)
        else:
            cov = k_ss + np.sum(akx * a, 1) - 2 * np.sum(a * k_sx, 1)
        return mean, cov

    def _to_output(self, arr):
        return arr[:, 0] if self._y_1d else arr

    def predict_latent(self, X, full_cov=False):
        r"""Prior-free latent mean and unit-scale covariance, in standardised units.

        Given :math:`\sigma^2` the latent function at ``X`` is
        :math:`\mathcal N(\mu_*, \sigma^2\Sigma_*)` in the units of
        ``(y - y_mean_) / y_std_`` (:func:`gp.posterior.predict_latent`; the NTK ensemble's
        mean and covariance with ``kernel="ntk"``). :meth:`predict` scales these by
        :math:`E[\sigma^2 \mid y]` and by ``y_std_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        full_cov : bool, default=False
            Return the full covariance instead of its diagonal.

        Returns
        -------
        mean : ndarray of shape (n_samples, n_outputs)
        cov : ndarray of shape (n_samples,) or (n_samples, n_samples)
        """
        return self._latent(X, full_cov=full_cov)

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
        s2 = self.scale_posterior_.mean  # E[sigma^2 | y]
        cov = np.maximum(cov, 0.0) if not return_cov else cov
        if return_std:
            std = np.sqrt(s2 * cov)[:, None] * self.y_std_
            return y_mean, self._to_output(std)
        full = (s2 * cov)[:, :, None] * self.y_std_**2
        return y_mean, (full[:, :, 0] if self._y_1d else full)

    def predictive_distribution(self, X):
        r"""Per-point predictive distribution of noisy targets, a NumPyro distribution.

        Given :math:`\sigma^2` a target is :math:`\mathcal N(\mu_*, \sigma^2(\Sigma_* + \eta))`
        (the observation noise :math:`\sigma^2\eta` as in the model); mixing over the
        scale posterior (:meth:`gp.posterior.ScalePosterior.predictive`) gives a Normal
        (constant prior), a :class:`~mixtures.distributions.StudentT` (inverse-gamma
        prior) or a :class:`~mixtures.distributions.ScaleMixtureNormal` over the
        :math:`\sigma^2` nodes/draws (other priors). In the units of ``y``, with batch
        shape (n_samples,) or (n_samples, n_outputs). Its parameters are float64; call
        ``log_prob`` inside :func:`mixtures.base.x64_scope` to keep that precision.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        numpyro.distributions.Distribution
        """
        mean, var = self._latent(X, full_cov=False)
        var = np.maximum(var, 0.0) + self.jitter_  # noisy targets, unit scale
        loc = mean * self.y_std_ + self.y_mean_
        scale = np.sqrt(var)[:, None] * self.y_std_  # (m, C)
        loc, scale = self._to_output(loc), self._to_output(scale)
        with x64_scope():
            return self.scale_posterior_.predictive(jnp.asarray(loc), jnp.asarray(scale))

    def log_predictive_density(self, X, y):
        """Per-point log predictive density of observed targets (noise included).

        ``predictive_distribution(X).log_prob(y)``, evaluated in float64.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            In the units of ``y`` (subtract ``log(y_std_)`` for standardised units).
        """
        predictive = self.predictive_distribution(X)
        y = np.asarray(y, dtype=np.float64)
        check_no_overflow(y, "y")
        Y = y[:, None] if y.ndim == 1 else y
        expected = (predictive.batch_shape[0], self.y_mean_.size)
        if Y.shape != expected:
            raise ValueError(
                f"y must have {expected[0]} rows and {expected[1]} output(s) like the "
                f"training targets; got shape {y.shape}."
            )
        with x64_scope():
            return np.asarray(predictive.log_prob(jnp.asarray(self._to_output(Y))))

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw latent functions from the posterior (shared :math:`\\sigma^2` per draw).

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        n_samples : int, default=1
        random_state : None, int, numpy RandomState or Generator, default=0

        Returns
        -------
        ndarray of shape (n_samples_X, n_samples) or (n_samples_X, n_outputs, n_samples)
        """
        rng = random_state_to_generator(random_state)
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
        z = rng.standard_normal((m, c, n_samples))
        f = mean[:, :, None] + np.einsum("ij,jcs->ics", root, z) * np.sqrt(s2)
        f = f * self.y_std_[None, :, None] + self.y_mean_[None, :, None]
        return f[:, 0, :] if self._y_1d else f

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        return tags
