"""scikit-learn shell of scale-mixture NNGP regression (note sections 2-4, 6)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy.linalg
import scipy.stats
from scipy.linalg import lapack
from sklearn.base import RegressorMixin

from gp._linalg import cholesky_lower_inplace, restore_lower, zero_strict_upper
from gp._type2 import fit_type2, training_kernel
from gp.kernels import (
    _cached_kernel_fn,
    _default_batch_size,
    _jitted,
    _symmetric_block_size,
    kernel_diagonal,
    kernel_matrix,
    preset_kernel,
    rectangular_kernel_matrix,
    symmetric_kernel_matrix,
)
from gp.posterior import (
    GPStatistics,
    ScalePosterior,
    constant_log_marginal,
    constant_posterior,
    gp_statistics,
    importance_posterior,
    log_mixture_normal,
    log_student_t,
    predict_latent,
    quadrature_posterior,
    student_t_log_marginal,
    student_t_posterior,
)
from gp.priors import BurrXII, Constant, InverseGamma, resolve_prior
from mixtures.base import MixprocEstimator, check_finite_result, random_state_to_key, x64_scope
from mixtures.distributions import BurrXII as _BurrXII

__all__ = ["ScaleMixtureNNGPRegressor"]

_INFERENCES = ("auto", "closed_form", "quadrature", "importance", "nuts")
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
        if kind == "inverse_gamma":  # scale marginalised: the Student-t marginal (note sec. 3)
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
        the prior parameters: inverse-gamma ``alpha``, ``beta`` or the constant value
        (closed-form marginal likelihood), Burr XII ``c``, ``d`` (differentiable quadrature,
        :func:`gp.posterior.quadrature_log_marginal`); other NumPyro priors keep their
        parameters and only the kernel and noise are fitted (quadrature).
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
        Only with ``inference="nuts"`` (joint hyperparameter draws with
        ``sample_hyperparameters``).
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
        self.normalize_y = normalize_y
        self.random_state = random_state
        self.image_shape = image_shape
        self.max_iter = max_iter
        self.verbose = verbose
        self.sample_hyperparameters = sample_hyperparameters

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

    def _block_fn(self, get="nngp"):
        """``(x1, x2_or_None) -> K`` for one block: the jitted preset kernel (traced
        ``W_std``/``b_std``, so refits with other values never recompile) or the user's
        ``kernel_fn`` jitted once per function."""
        if self.kernel_fn is not None:
            return _jitted(self.kernel_fn, get)
        hp = self.hyperparameters_
        w, b = hp["W_std"], hp["b_std"]
        static = dict(architecture=self.architecture, depth=int(self.depth))
        static.update(activation=self.activation, get=get)
        return lambda x1, x2: preset_kernel(x1, x2, w, b, **static)

    def _k(self, x1, x2=None, get="nngp", *, out=None, device=False):
        """Kernel matrix ``K(x1, x2)`` (``x2=None``: symmetric ``K(x1, x1)``).

        One device: square tiles of one padded shape (~512 rows), only the lower ones
        for a symmetric matrix (:func:`~gp.kernels.symmetric_kernel_matrix`), written
        into ``out`` when given. Several devices: ``nt.batch`` shards row blocks over
        them. ``device=True`` returns a JAX array computed in one call (accelerators).
        """
        n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
        if device:
            return self._block_fn(get)(x1, x2)
        if jax.device_count() > 1:
            k = kernel_matrix(self._kernel_fn(), x1, x2, get=get, batch_size=_default_batch_size(n))
            if out is None:
                return k
            out[...] = k
            return out
        fn = self._block_fn(get)
        bs = _symmetric_block_size(n)
        if x2 is None:
            return symmetric_kernel_matrix(fn, x1, block_size=bs, out=out)
        return rectangular_kernel_matrix(fn, x1, x2, block_size=bs, out=out)

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
        joint = inference == "nuts" and self.sample_hyperparameters not in (None, False)
        if kind == "constant" and inference in ("quadrature", "importance", "nuts") and not joint:
            inference = "closed_form"  # a point mass has nothing to integrate
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
        elif isinstance(prior, _BurrXII):
            hp["c"], hp["d"] = float(prior.c), float(prior.d)
        self.hyperparameters_ = hp
        key = random_state_to_key(self.random_state)
        self.n_iter_ = 1  # one exact solve unless type-II optimisation runs
        with x64_scope():
            hyper = self._hyper_names(inference)
            if hyper:
                self._sample_hyperparameters(Xi, Yn, kind, prior, hyper, key)
                hp = self.hyperparameters_
            if self.optimizer is not None:
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

    def _fit_kernel_statistics(self, Xi, Yn, noise):
        """Training kernel and its :class:`~gp.posterior.GPStatistics`.

        Host: the kernel is written into one C-ordered (n, n) array that the Cholesky
        factor then overwrites in place (:mod:`gp._linalg`), so ``fit`` holds one (n, n)
        matrix (a second, the kernel itself, only for ``kernel="ntk"``). Accelerator:
        the kernel, factorisation and solves stay on the device (jitted
        :func:`~gp.posterior.gp_statistics`); only the factor is copied back.
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
        """Jitted :func:`gp.posterior.gp_statistics` with jitter retries (accelerators)."""
        yj = jnp.asarray(Yn)
        for factor in _JITTER_RETRIES:
            stats = gp_statistics(k, yj, noise * factor)
            # a failed JAX Cholesky returns NaNs, which reach the log-determinant
            if np.isfinite(float(stats.logdet)) and np.isfinite(float(stats.quad)):
                self.noise_ = noise * factor
                return GPStatistics(*(np.asarray(v) for v in stats))
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

    def _scale_posterior(self, stats, prior, kind, inference, key) -> ScalePosterior:
        hp = self.hyperparameters_
        if kind == "constant":
            return constant_posterior(stats, hp["value"])
        if inference == "closed_form" or (inference == "nuts" and self._hyper_names(inference)):
            # with sampled hyperparameters the scale is exact given their medians
            if kind == "inverse_gamma":
                return student_t_posterior(stats, hp["alpha"], hp["beta"])
            return quadrature_posterior(stats, prior, n_nodes=64)
        if inference == "quadrature":
            return quadrature_posterior(stats, prior, n_nodes=int(self.n_samples or 64))
        if inference == "importance":
            return importance_posterior(stats, prior, key, n_samples=int(self.n_samples or 1000))
        return self._nuts(stats, prior, key)

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
        """Joint NUTS over the hyperparameters (and the scale for non-conjugate priors)."""
        from mixtures.diagnostics import to_inference_data
        from mixtures.inference import run_nuts

        hp = self.hyperparameters_
        names = tuple(n for n in names if n != "none")
        kernel_sampled = "W_std" in names or "b_std" in names
        data = Xi if kernel_sampled else self._k(Xi, None, "nngp")
        model = _hyper_model(self.architecture, int(self.depth), self.activation, kind, names)
        centres = {k: math.log(max(hp[k], 1e-12)) for k in _HYPER_NAMES}
        n = int(self.n_samples or 1000)
        res = run_nuts(
            model,
            data,
            Yn,
            prior,
            centres,
            key=key,
            num_warmup=max(200, n),
            num_samples=n,
            verbose=self.verbose,
        )
        self.inference_data_ = to_inference_data(res)
        hp = dict(hp)
        for name in names:
            hp[name] = float(np.median(np.asarray(res.samples[name])))
        self.hyperparameters_ = hp

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
            if full_cov:
                k_ss = self._k(Xi, None, "nngp")
            else:
                k_ss = kernel_diagonal(self._kernel_fn(), Xi, get="nngp")
            if self.kernel == "nngp" and not _on_host():
                k_sx = self._k(Xi, self.X_fit_, "nngp", device=True)
                stats = GPStatistics(
                    jnp.asarray(self.chol_), jnp.asarray(self.weights_), *([0.0] * 5)
                )
                mean, cov = predict_latent(stats, k_sx, jnp.asarray(k_ss), full_cov=full_cov)
                return np.asarray(mean), np.asarray(cov)
            k_sx = self._k(Xi, self.X_fit_, "nngp")
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
