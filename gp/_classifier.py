"""Classification with scale mixtures of NNGPs (Lee et al., ICLR 2022).

``likelihood="gaussian"``: exact regression on raw 0/1 one-hot targets with one shared
scale. ``likelihood="softmax"``: sparse variational inference with inducing points,
SVGP for a constant scale and SVTP with a variational inverse-gamma scale shared across
classes.

References
----------
H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian Processes",
ICLR 2022.
"""

from __future__ import annotations

import math
from functools import partial
from numbers import Integral, Real
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats
from jax.scipy.linalg import cho_solve
from jax.scipy.special import digamma, gammaln, logsumexp
from sklearn.base import ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets

from gp._network import PARAMETER_CONSTRAINTS, NetworkKernel
from gp._regressor import ScaleMixtureNNGPRegressor
from gp.kernels import preset_kernel
from gp.priors import prior_kind, resolve_prior
from mixtures.base import (
    MixprocEstimator,
    check_finite_result,
    random_state_to_generator,
    random_state_to_key,
    x64_scope,
)
from mixtures.inference import chunk_sizes, compile_ahead, progress_chunks

__all__ = [
    "ScaleMixtureNNGPClassifier",
    "SVParams",
    "kl_inverse_gamma",
    "sparse_conditionals",
    "svtp_loss",
]


class SVParams(NamedTuple):
    """Variational parameters: means (M, C), raw diagonal covariances (M, C), log a, log b,
    and the inducing inputs (M, ...) when they are learned (else None)."""

    mean: jax.Array
    raw_var: jax.Array
    log_a: jax.Array
    log_b: jax.Array
    inducing: jax.Array | None = None


def _kernel_from_spec(spec, w_std, b_std):
    """``(x1, x2) -> K`` from a static spec: ``("preset", arch, depth, act)`` or
    ``("fn", kernel_fn)``."""
    if spec[0] == "fn":
        return lambda a, b: spec[1](a, b, "nngp")
    _, arch, depth, act = spec
    return lambda a, b: preset_kernel(
        a, b, w_std, b_std, architecture=arch, depth=depth, activation=act, get="nngp"
    )


def sparse_conditionals(z, x, k_xx_diag, kernel, noise):
    r"""Whitening-free SVGP conditionals from inducing inputs ``z`` (traceable in ``z``).

    :math:`\hat K_{ZZ} = K_{ZZ} + \eta\,\mathrm{tr}(K_{ZZ})/M\,I = LL^\top`,
    :math:`A = K_{xZ}\hat K_{ZZ}^{-1}` and the conditional variances
    :math:`k_{xx} - \mathrm{diag}(A K_{Zx})` (clipped at 0). Returns ``(A, var, L)``.
    """
    k_zz = kernel(z, None)
    m = k_zz.shape[0]
    k_zz = k_zz + noise * jnp.trace(k_zz) / m * jnp.eye(m, dtype=k_zz.dtype)
    chol = jnp.linalg.cholesky(k_zz)
    k_xz = kernel(x, z)
    a_mat = cho_solve((chol, True), k_xz.T).T
    kdc = jnp.maximum(k_xx_diag - jnp.sum(a_mat * k_xz, axis=1), 0.0)
    return a_mat, kdc, chol


def kl_inverse_gamma(a, b, alpha, beta):
    r""":math:`\mathrm{KL}(\mathrm{IG}(a, b)\,\|\,\mathrm{IG}(\alpha, \beta))`, the SVTP scale term.

    .. math::

        (a - \alpha)\psi(a) - \ln\Gamma(a) + \ln\Gamma(\alpha) + \alpha\ln(b/\beta)
        + a(\beta - b)/b
    """
    return (
        (a - alpha) * digamma(a)
        - gammaln(a)
        + gammaln(alpha)
        + alpha * jnp.log(b / beta)
        + a * (beta - b) / b
    )


def _marginals(params: SVParams, a_mat, k_diag_cond):
    """q(f_c(x) | sigma^2 = 1) mean (n, C) and variance (n, C) from A = K_xZ K_ZZ^-1."""
    s = jax.nn.softplus(params.raw_var)  # (M, C), the diagonal of S_c
    mean = a_mat @ params.mean
    var = (a_mat**2) @ s + k_diag_cond[:, None]
    return mean, var


@partial(jax.jit, static_argnames=("n_mc", "student_t"))
def svtp_loss(
    params, key, a_mat, k_diag_cond, chol_zz, y, n_train, alpha, beta, *, n_mc, student_t
):
    r"""Negative ELBO per training point of SVTP / SVGP (Lee et al., 2022).

    .. math::

        -\frac1B \sum_i E_q[\ln \mathrm{softmax}(f(x_i))_{y_i}] + \mathrm{KL}/N_{\mathrm{train}},

    with :math:`\sigma^2 \sim q = \mathrm{IG}(a, b)` drawn once per Monte-Carlo sample and
    shared across the classes (SVTP), or fixed to 1 (SVGP, ``student_t=False``). With
    :math:`q(u_c \mid \sigma^2) = \mathcal N(m_c, \sigma^2 S_c)` and
    :math:`q(\sigma^2) = \mathrm{IG}(a, b)`,

    .. math::

        \mathrm{KL} = \tfrac12 \sum_c \big[\ln|K_{ZZ}| - \ln|S_c| - M
        + \mathrm{tr}(K_{ZZ}^{-1} S_c) + \tfrac ab\, m_c^\top K_{ZZ}^{-1} m_c\big]
        + \mathrm{KL}(\mathrm{IG}(a, b)\,\|\,\mathrm{IG}(\alpha, \beta)).
    """
    mean, var = _marginals(params, a_mat, k_diag_cond)
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, (n_mc, *mean.shape), mean.dtype)
    m_dim = params.mean.shape[0]
    s = jax.nn.softplus(params.raw_var)
    kzz_inv_m = cho_solve((chol_zz, True), params.mean)
    logdet_kzz = 2 * jnp.sum(jnp.log(jnp.diag(chol_zz)))
    kzz_inv_diag = jnp.diag(cho_solve((chol_zz, True), jnp.eye(m_dim, dtype=mean.dtype)))
    quad = jnp.sum(params.mean * kzz_inv_m, axis=0)  # (C,)
    if student_t:
        a, b = jnp.exp(params.log_a), jnp.exp(params.log_b)
        s2 = b / jax.random.gamma(k2, a, (n_mc,), mean.dtype)  # differentiable in a
        inv_scale = a / b  # E_q[1 / sigma^2]
        kl_scale = kl_inverse_gamma(a, b, alpha, beta)
    else:
        s2 = jnp.ones((n_mc,), mean.dtype)
        inv_scale = 1.0
        kl_scale = 0.0
    f = mean + jnp.sqrt(s2[:, None, None] * var) * z
    log_p = jax.nn.log_softmax(f, axis=-1)
    ell = jnp.mean(jnp.sum(log_p * y, axis=-1))
    kl_u = 0.5 * jnp.sum(
        logdet_kzz - jnp.sum(jnp.log(s), axis=0) - m_dim + kzz_inv_diag @ s + inv_scale * quad
    )
    return -ell + (kl_u + kl_scale) / n_train


@partial(jax.jit, static_argnames=("n_mc", "student_t"))
def _fit_sv(
    params, state, keys, a_mat, k_diag_cond, chol_zz, y, alpha, beta, lr, *, n_mc, student_t
):
    """Adam steps on the ELBO at fixed inducing inputs, one per key in ``keys``."""
    opt = optax.adam(lr)
    n_train = y.shape[0]

    def body(carry, k):
        p, st = carry
        loss, g = jax.value_and_grad(svtp_loss)(
            p,
            k,
            a_mat,
            k_diag_cond,
            chol_zz,
            y,
            n_train,
            alpha,
            beta,
            n_mc=n_mc,
            student_t=student_t,
        )
        upd, st = opt.update(g, st, p)
        return (optax.apply_updates(p, upd), st), loss

    (params, state), losses = jax.lax.scan(body, (params, state), keys)
    return params, state, losses


@partial(jax.jit, static_argnames=("n_mc", "student_t", "spec"))
def _fit_sv_inducing(
    params,
    state,
    keys,
    x,
    k_xx_diag,
    y,
    alpha,
    beta,
    lr,
    w_std,
    b_std,
    noise,
    *,
    n_mc,
    student_t,
    spec,
):
    """Adam on the ELBO with the inducing inputs ``params.inducing`` learned too: the
    conditionals are recomputed from them at every step (one step per key in ``keys``)."""
    opt = optax.adam(lr)
    n_train = y.shape[0]
    kernel = _kernel_from_spec(spec, w_std, b_std)

    def loss_fn(p, k):
        a_mat, kdc, chol = sparse_conditionals(p.inducing, x, k_xx_diag, kernel, noise)
        return svtp_loss(
            p, k, a_mat, kdc, chol, y, n_train, alpha, beta, n_mc=n_mc, student_t=student_t
        )

    def body(carry, k):
        p, st = carry
        loss, g = jax.value_and_grad(loss_fn)(p, k)
        upd, st = opt.update(g, st, p)
        return (optax.apply_updates(p, upd), st), loss

    (params, state), losses = jax.lax.scan(body, (params, state), keys)
    return params, state, losses


def _adam_in_chunks(fit_fn, params, key, args, static, n_steps, verbose):
    """``n_steps`` Adam steps of ``fit_fn`` (:func:`_fit_sv` or :func:`_fit_sv_inducing`),
    in one scan when silent, else in about 20 chunks under a progress bar
    (:func:`mixtures.inference.progress_chunks`). The keys are the same either way, so the
    result does not depend on ``verbose``."""
    keys = jax.random.split(key, n_steps)
    state = optax.adam(0.0).init(params)  # Adam's state does not depend on the step size

    def compile_chunk(size):
        return compile_ahead(fit_fn, params, state, keys[:size], *args, **static)

    losses, done = [], 0
    sizes = chunk_sizes(n_steps, verbose)
    for size, step, bar in progress_chunks(sizes, compile_chunk, verbose=verbose, desc="ELBO"):
        params, state, part = step(params, state, keys[done : done + size], *args)
        losses.append(part)
        done += size
        if verbose > 0:
            bar.set_postfix(loss=f"{float(part[-1]):.4g}")
    return params, jnp.concatenate(losses)


@partial(jax.jit, static_argnames=("n_mc", "student_t"))
def _predict_proba_sv(params, key, a_mat, k_diag_cond, *, n_mc, student_t):
    mean, var = _marginals(params, a_mat, k_diag_cond)
    k1, k2 = jax.random.split(key)
    # the same standard-normal draws for every test point: each point's estimate is then
    # independent of which other points are predicted with it (order/subset invariant)
    z = jax.random.normal(k1, (n_mc, 1, mean.shape[1]), mean.dtype)
    if student_t:
        a, b = jnp.exp(params.log_a), jnp.exp(params.log_b)
        s2 = b / jax.random.gamma(k2, a, (n_mc,), mean.dtype)
    else:
        s2 = jnp.ones((n_mc,), mean.dtype)
    f = mean + jnp.sqrt(s2[:, None, None] * var) * z
    return jnp.exp(logsumexp(jax.nn.log_softmax(f, -1), axis=0) - math.log(n_mc))


class ScaleMixtureNNGPClassifier(ClassifierMixin, MixprocEstimator):
    r"""Classification with a scale mixture of NNGPs.

    Parameters
    ----------
    likelihood : {"gaussian", "softmax"}, default="gaussian"
        ``"gaussian"``: exact scale-mixture regression on 0/1 one-hot targets, one shared
        :math:`\sigma^2`; accuracy is the argmax of the posterior mean (identical for
        every prior). ``"softmax"``: sparse variational inference (SVGP for a constant
        prior, SVTP for the inverse-gamma prior).
    prior, kernel, architecture, depth, activation, W_std, b_std, kernel_fn :
        As in :class:`ScaleMixtureNNGPRegressor`.
    noise, inference, n_samples, random_state, image_shape, verbose :
        As in :class:`ScaleMixtureNNGPRegressor` (``kernel``, ``inference`` and
        ``n_samples`` are used with the Gaussian likelihood only). ``random_state`` also
        seeds the inducing-point initialisation and the ELBO's Monte-Carlo draws. The
        hyperparameters are used as given: the classifier runs no type-II optimisation.
    n_inducing : int, default=100
        Inducing points for ``"softmax"``, initialised at class-proportional random
        training points.
    learn_inducing : bool, default=True
        Optimise the inducing inputs with the variational parameters (as in the paper's
        code); ``False`` keeps them at their initial training points.
    max_iter : int, default=500
        Full-batch Adam steps for ``"softmax"``.
    learning_rate : float, default=1e-2
    n_mc : int, default=16
        Monte-Carlo samples per training step (1000 at prediction).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    regressor_ : ScaleMixtureNNGPRegressor
        The fitted one-hot regression (``"gaussian"``). It sees plain arrays: the
        classifier validates ``X`` (``n_features_in_``, ``feature_names_in_``) itself.
    losses_ : ndarray
        Negative ELBO per step (``"softmax"``).

    References
    ----------
    H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian
    Processes", ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from gp import ScaleMixtureNNGPClassifier
    >>> X = np.r_[np.zeros((5, 2)) - 1, np.ones((5, 2))]; y = np.r_[[0] * 5, [1] * 5]
    >>> ScaleMixtureNNGPClassifier(random_state=0).fit(X, y).predict([[1.0, 1.0]])
    array([1])
    """

    _parameter_constraints = {
        "likelihood": [StrOptions({"gaussian", "softmax"})],
        **PARAMETER_CONSTRAINTS,
        "n_inducing": [Interval(Integral, 1, None, closed="left")],
        "learn_inducing": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, np.inf, closed="neither")],
        "n_mc": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        likelihood="gaussian",
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
        n_samples=None,
        random_state=None,
        image_shape=None,
        n_inducing=100,
        learn_inducing=True,
        max_iter=500,
        learning_rate=1e-2,
        n_mc=16,
        verbose=0,
    ):
        self.likelihood = likelihood
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
        self.n_samples = n_samples
        self.random_state = random_state
        self.image_shape = image_shape
        self.n_inducing = n_inducing
        self.learn_inducing = learn_inducing
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.n_mc = n_mc
        self.verbose = verbose

    def _regressor(self):
        return ScaleMixtureNNGPRegressor(
            prior=self.prior,
            kernel=self.kernel,
            architecture=self.architecture,
            depth=self.depth,
            activation=self.activation,
            W_std=self.W_std,
            b_std=self.b_std,
            kernel_fn=self.kernel_fn,
            noise=self.noise,
            inference=self.inference,
            optimizer=None,  # the hyperparameters are the classifier's, as given
            n_samples=self.n_samples,
            normalize_y=False,
            random_state=self.random_state,
            image_shape=self.image_shape,
            verbose=self.verbose,
        )

    def fit(self, X, y):
        """Fit on labels ``y`` of shape (n_samples,).

        Returns
        -------
        self
        """
        self._validate_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        X, y = self._validate_X(X, reset=True, y=y)
        check_classification_targets(y)
        self.n_iter_ = 1  # one exact solve (Gaussian likelihood)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"need samples of at least 2 classes; got 1 class ({self.classes_[0]!r})."
            )
        onehot = np.eye(len(self.classes_))[y_idx]
        if self.likelihood == "gaussian":
            self.regressor_ = self._regressor().fit(X, onehot)
            return self
        prior = resolve_prior(self.prior)
        kind = prior_kind(prior)
        if kind == "other":
            raise ValueError(
                "likelihood='softmax' supports Constant (SVGP) and InverseGamma (SVTP) priors; "
                f"got {type(prior).__name__}."
            )
        self._fit_softmax(X, y_idx, onehot, prior, kind)
        return self

    def _network(self) -> NetworkKernel:
        return NetworkKernel(
            architecture=self.architecture,
            depth=int(self.depth),
            activation=self.activation,
            W_std=float(self.W_std),
            b_std=float(self.b_std),
            kernel_fn=self.kernel_fn,
            image_shape=None if self.image_shape is None else tuple(self.image_shape),
        )

    def _fit_softmax(self, X, y_idx, onehot, prior, kind):
        rng = random_state_to_generator(self.random_state)
        n = X.shape[0]
        m = int(min(self.n_inducing, n))
        # class-proportional initialisation, as in the paper's code: a stratified random
        # subset of the training points
        order = rng.permutation(n)
        order = order[np.argsort(y_idx[order], kind="stable")]
        idx = np.sort(order[np.linspace(0, n - 1, m).astype(int)])
        net = self._network()
        Xi = net.inputs(X)
        self.inducing_points_ = Xi[idx]
        key = random_state_to_key(self.random_state)
        with x64_scope():
            a_mat, kdc, chol = self._conditionals(net, Xi)
            c = onehot.shape[1]
            student_t = kind == "inverse_gamma"
            alpha = float(prior.concentration) if student_t else 1.0
            beta = float(prior.rate) if student_t else 1.0
            # S_c starts at the conditional variances 1 / diag(K_ZZ^-1), so that
            # tr(K_ZZ^-1 S_c) = M and the KL starts small
            kzz_inv_diag = jnp.diag(cho_solve((chol, True), jnp.eye(m)))
            s0 = jnp.broadcast_to((1.0 / kzz_inv_diag)[:, None], (m, c))
            init = SVParams(
                mean=jnp.zeros((m, c)),
                raw_var=s0 + jnp.log(-jnp.expm1(-s0)),  # softplus^-1
                log_a=jnp.asarray(math.log(alpha)),
                log_b=jnp.asarray(math.log(beta)),
            )
            if self.learn_inducing:
                spec = (
                    ("fn", self.kernel_fn)
                    if self.kernel_fn is not None
                    else ("preset", self.architecture, int(self.depth), self.activation)
                )
                params, losses = _adam_in_chunks(
                    _fit_sv_inducing,
                    init._replace(inducing=jnp.asarray(self.inducing_points_)),
                    key,
                    (
                        jnp.asarray(Xi),
                        jnp.asarray(net.diagonal(Xi)),
                        jnp.asarray(onehot),
                        alpha,
                        beta,
                        jnp.asarray(self.learning_rate),
                        float(self.W_std),
                        float(self.b_std),
                        float(self.noise),
                    ),
                    dict(n_mc=int(self.n_mc), student_t=student_t, spec=spec),
                    int(self.max_iter),
                    self.verbose,
                )
                self.inducing_points_ = np.asarray(params.inducing)
                params = params._replace(inducing=None)
            else:
                params, losses = _adam_in_chunks(
                    _fit_sv,
                    init,
                    key,
                    (a_mat, kdc, chol, jnp.asarray(onehot), alpha, beta,
                     jnp.asarray(self.learning_rate)),
                    dict(n_mc=int(self.n_mc), student_t=student_t),
                    int(self.max_iter),
                    self.verbose,
                )  # fmt: skip
        self.losses_ = np.asarray(losses)
        self.n_iter_ = int(self.max_iter)
        check_finite_result("the ELBO", self.losses_[-1:], "Lower learning_rate or raise noise.")
        self.sv_params_ = SVParams(*(np.asarray(p) for p in params[:4]))
        self.student_t_ = student_t
        if student_t:
            self.scale_posterior_ = (float(np.exp(params.log_a)), float(np.exp(params.log_b)))

    def _conditionals(self, net, Xi):
        """:func:`sparse_conditionals` at the fitted inducing points (host kernel blocks)."""
        z = self.inducing_points_
        k_zz = net.matrix(z, None, "nngp")
        m = k_zz.shape[0]
        k_zz = k_zz + self.noise * np.trace(k_zz) / m * np.eye(m)
        chol = jnp.linalg.cholesky(jnp.asarray(k_zz))
        check_finite_result("the inducing-point Cholesky factor", chol, "Increase noise.")
        k_xz = jnp.asarray(net.matrix(Xi, z, "nngp"))
        k_xx = jnp.asarray(net.diagonal(Xi))
        a_mat = cho_solve((chol, True), k_xz.T).T
        kdc = jnp.maximum(k_xx - jnp.sum(a_mat * k_xz, axis=1), 0.0)
        return a_mat, kdc, chol

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes).

        ``"softmax"``: Monte-Carlo mean of the softmax (1000 samples, shared scale).
        ``"gaussian"``: the predictive probability that each class has the largest latent
        value (1000 draws of the shared scale and the per-class marginals).
        """
        self._check_is_fitted()
        return self._predict_proba(self._validate_X(X, reset=False))

    def _predict_proba(self, X):
        """:meth:`predict_proba` of validated ``X``."""
        if self.likelihood == "gaussian":
            return self._proba_gaussian(X)
        net = self._network()
        Xi = net.inputs(X)
        with x64_scope():
            a_mat, kdc, _ = self._conditionals(net, Xi)
            params = SVParams(*(jnp.asarray(p) for p in self.sv_params_[:4]))
            proba = _predict_proba_sv(
                params, jax.random.PRNGKey(0), a_mat, kdc, n_mc=1000, student_t=self.student_t_
            )
        return np.asarray(proba)

    def _proba_gaussian(self, X):
        r"""P(class c has the largest latent value), deterministic per point.

        Given :math:`\sigma^2`, :math:`P(c) = \int \phi(z) \prod_{j \ne c}
        \Phi((\mu_c + s_c z - \mu_j)/s_j)\,dz` (40 Gauss-Hermite nodes), averaged over 64
        quantiles (IG) or the nodes/draws (other priors) of the scale posterior.
        """
        reg = self.regressor_
        mean, var = reg.predict_latent(X)
        sd1 = np.sqrt(np.maximum(var, 1e-300))[:, None]  # (n, 1) unit-scale latent std
        sp = reg.scale_posterior_
        if sp.kind == "constant":
            s2, w = np.array([sp.value]), np.array([1.0])
        elif sp.kind == "inverse_gamma":
            q = (np.arange(64) + 0.5) / 64
            s2, w = scipy.stats.invgamma(sp.alpha, scale=sp.beta).ppf(q), np.full(64, 1 / 64)
        else:
            s2, w = np.exp(sp.log_s2), np.exp(sp.log_weights)
            keep = w > 1e-12 * w.max()
            s2, w = s2[keep], w[keep] / w[keep].sum()
        z, wz = np.polynomial.hermite_e.hermegauss(40)
        wz = wz / wz.sum()
        proba = np.zeros_like(mean)
        for s2_k, w_k in zip(s2, w):
            sd = sd1 * np.sqrt(s2_k)  # (n, 1)
            f_c = mean[:, :, None] + sd[:, :, None] * z  # (n, C, nodes)
            # log prod_j Phi((f_c - mu_j)/sd_j) over all j, then remove j = c
            logcdf = scipy.stats.norm.logcdf(
                (f_c[:, :, None, :] - mean[:, None, :, None]) / sd[:, :, None, None]
            )  # (n, C, C, nodes)
            total = logcdf.sum(axis=2) - np.diagonal(logcdf, axis1=1, axis2=2).transpose(0, 2, 1)
            proba += w_k * (np.exp(total) @ wz)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predicted labels: argmax of the posterior mean (``"gaussian"``) or of the
        predictive probabilities (``"softmax"``)."""
        self._check_is_fitted()
        if self.likelihood == "gaussian":
            X = self._validate_X(X, reset=False)
            return self.classes_[np.argmax(self.regressor_.predict(X), axis=1)]
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def log_predictive_density(self, X, y):
        """Per-point log predictive density of the labels ``y``.

        ``"softmax"``: :math:`\\ln p(y_i \\mid x_i)` (categorical). ``"gaussian"``: the
        per-coordinate score of Lee et al. (2022): the mean over classes of the log
        predictive density of the 0/1 one-hot coordinates; it is *not* a categorical NLL.
        """
        self._check_is_fitted()
        X = self._validate_X(X, reset=False)
        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        if np.any(idx >= len(self.classes_)) or np.any(
            self.classes_[np.minimum(idx, len(self.classes_) - 1)] != y
        ):
            raise ValueError(f"y contains labels not seen in fit; known classes {self.classes_}.")
        if self.likelihood == "gaussian":
            onehot = np.eye(len(self.classes_))[idx]
            return self.regressor_.log_predictive_density(X, onehot).mean(axis=1)
        proba = self._predict_proba(X)
        return np.log(np.maximum(proba[np.arange(len(idx)), idx], 1e-300))
