r"""The Bayesian Gaussian mixture as a NumPyro model, fitted by NUTS or SVI.

One model for every mixture estimator (``GaussianMixtureModel``, and
``gmm.SemiSupervisedGMM`` at a fixed number of components), with the component assignments
marginalised out:

.. math::

    \pi \sim \mathrm{Dir}(\alpha_0 \mathbf 1),\quad
    \mu_{kd} \sim \mathcal N(\bar x_d, (2 s_d)^2),\quad
    \sigma_{kd} \sim \mathrm{LogNormal}(\log s_d, 1),\quad
    \Omega_k \sim \mathrm{LKJ}(2),\quad
    \Sigma_k = \mathrm{diag}(\sigma_k)\,\Omega_k\,\mathrm{diag}(\sigma_k),

.. math::

    \log p(x_i \mid \theta) = \begin{cases}
        \log\pi_{y_i} + \log\mathcal N(x_i; \mu_{y_i}, \Sigma_{y_i}) & y_i \ge 0
        \ \text{(a labelled sample, clamped to its class)}\\
        \log\sum_k \pi_k \mathcal N(x_i; \mu_k, \Sigma_k) & y_i = -1,
    \end{cases}

with :math:`\bar x, s` the data mean and standard deviation. Label switching is removed by
ordering the first coordinate of the means of the components that no label identifies
(:math:`\mu_{L+1,1} < \dots < \mu_{K,1}` for ``L`` known classes), so chains are comparable
and R-hat is meaningful (Stephens, 2000; Jasra, Holmes & Stephens, 2005). Both samplers
start from given (EM) parameters.

The models are module-level functions cached per structure (covariance type, number of
known classes), so :func:`mixtures.inference.run_nuts` / ``run_svi`` compile once per
structure and data shape.
"""

from __future__ import annotations

import functools
import numbers
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from sklearn.utils._param_validation import Interval

from mixtures.base import check_finite_result, x64_scope
from mixtures.diagnostics import check_convergence, draws_to_inference_data, to_inference_data
from mixtures.distributions import GaussianMixture
from mixtures.em import GaussianMixtureParams
from mixtures.inference import run_nuts, run_svi

__all__ = [
    "BAYESIAN_PARAMETER_CONSTRAINTS",
    "BayesianFit",
    "fit_mixture_posterior",
    "fit_mixture_nuts",
    "fit_mixture_svi",
    "mixture_hyperparameters",
    "mixture_model",
    "pointwise_log_likelihood",
    "posterior_predictive",
]

_CONSTRAINT_OF = {
    "weights": constraints.simplex,
    "mu_first": constraints.ordered_vector,
    "mu_known": constraints.real,
    "mu_rest": constraints.real,
    "sigma": constraints.positive,
    "L_omega": constraints.corr_cholesky,
}


class BayesianFit(NamedTuple):
    """Result of :func:`fit_mixture_nuts` / :func:`fit_mixture_svi`.

    Attributes
    ----------
    draws : dict of str to ndarray
        ``weights`` (S, K), ``means`` (S, K, D), ``covariances`` (S, ...) -- at most
        ``num_draws`` draws (NUTS: thinned over all chains), for prediction.
    inference_data : arviz.InferenceData
        Every draw with sampler statistics (NUTS), the pointwise log-likelihood and the
        observed data.
    converged : bool
        NUTS: every convergence check of :func:`mixtures.check_convergence` passed; SVI:
        the loss plateaued.
    losses : ndarray or None
        Negative ELBO per SVI step.
    """

    draws: dict
    inference_data: object
    converged: bool
    losses: np.ndarray | None


def mixture_hyperparameters(X, n_components: int, concentration: float = 1.0) -> dict:
    """Data-scaled hyperparameters of :func:`mixture_model` (module docstring)."""
    X = np.asarray(X)
    sd = X.std(0) + 1e-12
    return {
        "concentration": jnp.full((int(n_components),), float(concentration)),
        "mean_loc": jnp.asarray(X.mean(0)),
        "mean_scale": jnp.asarray(2.0 * sd),
        "data_scale": jnp.asarray(sd),
    }


def _assemble(values: dict, covariance_type: str):
    """Means and covariances from the latent sites (works with leading sample axes)."""
    mu_first = values["mu_first"]
    if "mu_known" in values:
        mu_first = jnp.concatenate([values["mu_known"], mu_first], axis=-1)
    mu_first = mu_first[..., None]
    means = (
        mu_first
        if "mu_rest" not in values
        else jnp.concatenate([mu_first, values["mu_rest"]], axis=-1)
    )
    sigma = values["sigma"]
    if covariance_type == "full":
        D = means.shape[-1]
        if "L_omega" in values:
            L = sigma[..., :, None] * values["L_omega"]
        else:
            L = sigma[..., None] * jnp.ones((1, 1))
        cov = L @ jnp.swapaxes(L, -1, -2) + 1e-10 * jnp.eye(D)
    else:
        cov = sigma**2
    return means, cov


def _log_likelihood(X, y, weights, means, cov, covariance_type):
    """Per-sample log-likelihood with labelled samples clamped (module docstring)."""
    gm = GaussianMixture(weights, means, cov, covariance_type)
    joint = gm.log_weights + gm.component_log_prob(X)
    labelled = y >= 0
    own = jnp.take_along_axis(joint, jnp.where(labelled, y, 0)[:, None], axis=1)[:, 0]
    return jnp.where(labelled, own, logsumexp(joint, axis=1))


def _model(X, y, hyper, covariance_type, n_known):
    concentration = hyper["concentration"]
    K = concentration.shape[0]
    D = X.shape[1]
    loc, scale, sd = hyper["mean_loc"], hyper["mean_scale"], hyper["data_scale"]
    values = {"weights": numpyro.sample("weights", dist.Dirichlet(concentration))}
    if n_known:
        values["mu_known"] = numpyro.sample(
            "mu_known", dist.Normal(loc[0], scale[0]).expand([n_known]).to_event(1)
        )
    mu_first = numpyro.sample(
        "mu_first", dist.ImproperUniform(constraints.ordered_vector, (), event_shape=(K - n_known,))
    )
    # iid normal prior restricted to the ordered region (the constant (K - L)! is dropped)
    numpyro.factor("mu_first_prior", dist.Normal(loc[0], scale[0]).log_prob(mu_first).sum())
    values["mu_first"] = mu_first
    if D > 1:
        values["mu_rest"] = numpyro.sample(
            "mu_rest", dist.Normal(loc[1:], scale[1:]).expand([K, D - 1]).to_event(2)
        )
    if covariance_type == "spherical":
        sigma_prior = dist.LogNormal(jnp.log(jnp.mean(sd)), 1.0).expand([K]).to_event(1)
    else:
        sigma_prior = dist.LogNormal(jnp.log(sd), 1.0).expand([K, D]).to_event(2)
    values["sigma"] = numpyro.sample("sigma", sigma_prior)
    if covariance_type == "full" and D > 1:
        values["L_omega"] = numpyro.sample(
            "L_omega", dist.LKJCholesky(D, 2.0).expand([K]).to_event(1)
        )
    means, cov = _assemble(values, covariance_type)
    numpyro.deterministic("means", means)
    numpyro.deterministic("covariances", cov)
    if n_known:
        ll = _log_likelihood(X, y, values["weights"], means, cov, covariance_type)
        numpyro.factor("obs", ll.sum())
    else:
        with numpyro.plate("data", X.shape[0]):
            numpyro.sample(
                "obs", GaussianMixture(values["weights"], means, cov, covariance_type), obs=X
            )


@functools.cache
def mixture_model(covariance_type: str, n_known: int = 0):
    """The NumPyro model ``model(X, y, hyper)`` for one structure (cached: same object).

    ``y`` holds the class of each labelled sample (ids ``0..n_known-1``) and ``-1`` for the
    others; with ``n_known = 0`` the observations are the plain mixture ``obs`` site.
    """

    def model(X, y, hyper):
        _model(X, y, hyper, covariance_type, n_known)

    model.__name__ = f"mixture_model_{covariance_type}_{n_known}"
    return model


@functools.cache
def _svi_model(covariance_type: str, n_known: int):
    base = mixture_model(covariance_type, n_known)

    def model(X, y, hyper, init):
        del init
        base(X, y, hyper)

    return model


def _mean_field_guide(X, y, hyper, init):
    """Mean-field normal guide in unconstrained space, initialised at ``init``."""
    del X, y, hyper
    for name in sorted(init):
        loc = numpyro.param(f"{name}_loc", init[name])
        scale = numpyro.param(
            f"{name}_scale", 0.05 * jnp.ones_like(init[name]), constraint=constraints.positive
        )
        base = dist.Normal(loc, scale).to_event(jnp.ndim(init[name]))
        numpyro.sample(name, dist.TransformedDistribution(base, biject_to(_CONSTRAINT_OF[name])))


@partial(jax.jit, static_argnames=("covariance_type", "num_draws"))
def _guide_draws(params, X, y, hyper, init, key, covariance_type, num_draws):
    def one(k):
        tr = handlers.trace(
            handlers.seed(handlers.substitute(_mean_field_guide, data=params), k)
        ).get_trace(X, y, hyper, init)
        return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}

    draws = jax.vmap(one)(jax.random.split(key, num_draws))
    means, cov = _assemble(draws, covariance_type)
    return {"weights": draws["weights"], "means": means, "covariances": cov}


def _latent_from_params(params: GaussianMixtureParams, covariance_type: str, n_known: int):
    """Latent-site values (unconstrained) of :func:`mixture_model` equal to ``params``.

    Known-class components keep their ids; the others are sorted by the first coordinate.
    """
    w, m, c = (jnp.asarray(p) for p in params)
    free = n_known + jnp.argsort(m[n_known:, 0])
    order = jnp.concatenate([jnp.arange(n_known), free])
    weights, means, cov = w[order], m[order], c[order]
    D = means.shape[1]
    # keep the ordering strict and the weights inside the open simplex
    weights = jnp.clip(weights, 1e-6, None)
    weights = weights / weights.sum()
    n_free = means.shape[0] - n_known
    values = {"weights": weights, "mu_first": means[n_known:, 0] + 1e-9 * jnp.arange(n_free)}
    if n_known:
        values["mu_known"] = means[:n_known, 0]
    if D > 1:
        values["mu_rest"] = means[:, 1:]
    if covariance_type == "full":
        sd = jnp.sqrt(jnp.diagonal(cov, axis1=-2, axis2=-1))
        values["sigma"] = sd
        if D > 1:
            values["L_omega"] = jnp.linalg.cholesky(cov / (sd[:, :, None] * sd[:, None, :]))
    else:
        values["sigma"] = jnp.sqrt(cov)
    return {k: biject_to(_CONSTRAINT_OF[k]).inv(v) for k, v in values.items()}


@partial(jax.jit, static_argnames=("covariance_type",))
def _pointwise(X, y, weights, means, cov, covariance_type):
    return jax.vmap(lambda w, m, c: _log_likelihood(X, y, w, m, c, covariance_type))(
        weights, means, cov
    )


def pointwise_log_likelihood(X, y, draws: dict, covariance_type: str) -> np.ndarray:
    """Log-likelihood of each sample under each draw, shape (..., n_samples).

    ``draws`` has leading draw axes (e.g. ``(chains, draws)``); labelled samples count with
    their own component (module docstring). This is the ``log_likelihood`` group ArviZ's
    ``loo`` and ``waic`` read.
    """
    w = np.asarray(draws["weights"])
    lead = w.shape[:-1]
    flat = {k: np.asarray(v).reshape((-1,) + np.shape(v)[len(lead) :]) for k, v in draws.items()}
    ll = _pointwise(
        jnp.asarray(X), jnp.asarray(y), jnp.asarray(flat["weights"]),
        jnp.asarray(flat["means"]), jnp.asarray(flat["covariances"]), covariance_type,
    )  # fmt: skip
    return np.asarray(ll).reshape(lead + (np.shape(X)[0],))


def _check_arguments(y, n_known, params):
    k = np.shape(params.weights)[0]
    if not 0 <= n_known < k + 1:
        raise ValueError(f"n_known must be in [0, {k}]; got {n_known}.")
    if y is not None and np.size(y) and np.max(y) >= max(n_known, 0) and n_known:
        raise ValueError(
            f"labels must be below n_known={n_known} (ids of the known classes); got "
            f"{int(np.max(y))}."
        )


#: Most values a ``posterior_predictive`` group holds: the posterior draws are thinned
#: evenly to stay below it (at least one replicated data set per chain).
MAX_PREDICTIVE_VALUES = 4_000_000


def posterior_predictive(
    rng: np.random.Generator, y, draws: dict, covariance_type: str, n_features: int,
    max_values: int = MAX_PREDICTIVE_VALUES,
) -> np.ndarray:  # fmt: skip
    r"""Replicated data sets for posterior predictive checks (``arviz.plot_ppc``).

    For each kept draw :math:`(\pi, \mu, \Sigma)` of the posterior, one data set the size
    of the observed one: :math:`x^{\mathrm{rep}}_i \sim \mathcal N(\mu_{z_i}, \Sigma_{z_i})`
    with :math:`z_i \sim \mathrm{Cat}(\pi)`, or :math:`z_i = y_i` for a labelled point
    (its component is clamped in :func:`mixture_model`).

    Parameters
    ----------
    rng : numpy.random.Generator
    y : array of shape (n,)
        Known labels, -1 for unlabelled points.
    draws : dict
        ``weights`` (chains, draws, K), ``means`` (chains, draws, K, D) and ``covariances``
        in the layout of ``covariance_type`` with the same two leading axes.
    covariance_type : {"full", "diag", "spherical"}
    n_features : int
    max_values : int, default=MAX_PREDICTIVE_VALUES
        The draws are thinned evenly so that at most about this many values are stored.

    Returns
    -------
    ndarray of shape (chains, kept draws, n, D)
    """
    y = np.asarray(y)
    w = np.asarray(draws["weights"], dtype=np.float64)
    n_chains, n_draws, _ = w.shape
    n, d = y.shape[0], int(n_features)
    keep = int(np.clip(max_values // max(1, n_chains * n * d), 1, n_draws))
    idx = np.linspace(0, n_draws - 1, keep).round().astype(int)
    means = np.asarray(draws["means"], dtype=np.float64)[:, idx]
    cov = np.asarray(draws["covariances"], dtype=np.float64)[:, idx]
    eye = np.eye(d)
    if covariance_type == "diag":
        cov = cov[..., None] * eye
    elif covariance_type == "spherical":
        cov = cov[..., None, None] * eye
    chol = np.linalg.cholesky(cov)  # (chains, kept, K, D, D)
    labelled = y >= 0
    out = np.empty((n_chains, keep, n, d))
    for c in range(n_chains):
        for s, j in enumerate(idx):
            p = w[c, j] / w[c, j].sum()
            z = np.where(labelled, y, rng.choice(p.size, size=n, p=p))
            eps = rng.standard_normal((n, d))
            out[c, s] = means[c, s, z] + np.einsum("nij,nj->ni", chol[c, s, z], eps)
    return out


def _rng_from_key(key) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.randint(key, (4,), 0, 2**31 - 1)))


def fit_mixture_nuts(
    X, params: GaussianMixtureParams, *, y=None, n_known: int = 0, covariance_type="full",
    concentration=1.0, num_warmup=500, num_samples=500, num_chains=2, num_draws=200, key,
    verbose=0,
) -> BayesianFit:  # fmt: skip
    """NUTS on :func:`mixture_model` from ``params`` (covariances in the layout of
    ``covariance_type``); call inside :func:`mixtures.base.x64_scope`.

    Every chain starts at ``params``. ``inference_data`` has the ``posterior`` (weights,
    means, covariances), ``sample_stats``, ``log_likelihood`` (``obs``) and
    ``observed_data`` groups, so ``arviz.loo`` / ``waic`` work on it, and a
    ``posterior_predictive`` group (:func:`posterior_predictive`) for ``arviz.plot_ppc``.
    """
    _check_arguments(y, n_known, params)
    X = jnp.asarray(X)
    y = jnp.full(X.shape[0], -1, jnp.int32) if y is None else jnp.asarray(y, jnp.int32)
    hyper = mixture_hyperparameters(X, np.shape(params.weights)[0], concentration)
    C = int(num_chains)
    z0 = _latent_from_params(params, covariance_type, n_known)
    z0 = {k: jnp.broadcast_to(v, (C,) + v.shape) for k, v in z0.items()}
    result = run_nuts(
        mixture_model(covariance_type, n_known), X, y, hyper, key=key,
        num_warmup=int(num_warmup), num_samples=int(num_samples), num_chains=C,
        init_params=z0, verbose=verbose,
    )  # fmt: skip
    keep = ("weights", "means", "covariances")
    samples = {k: np.asarray(v) for k, v in result.samples.items() if k in keep}
    ll = pointwise_log_likelihood(X, y, samples, covariance_type)
    rep = posterior_predictive(
        _rng_from_key(jax.random.fold_in(key, 1)), y, samples, covariance_type, X.shape[1]
    )
    idata = to_inference_data(
        result._replace(samples=samples),
        log_likelihood={"obs": ll},
        observed_data={"obs": np.asarray(X)},
        posterior_predictive={"obs": rep},
    )
    report = check_convergence(idata, warn=False)
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
    step = max(1, flat["weights"].shape[0] // int(num_draws))
    draws = {k: v[::step][: int(num_draws)] for k, v in flat.items()}
    return BayesianFit(draws, idata, bool(report.ok), None)


def fit_mixture_svi(
    X, params: GaussianMixtureParams, *, y=None, n_known: int = 0, covariance_type="full",
    concentration=1.0, num_steps=2000, learning_rate=1e-2, num_draws=200, key, verbose=0,
) -> BayesianFit:  # fmt: skip
    """Mean-field SVI on :func:`mixture_model` from ``params``; call inside
    :func:`mixtures.base.x64_scope`. ``converged`` says whether the loss plateaued (the
    spread of the last tenth of the losses below 5 % of their mean)."""
    _check_arguments(y, n_known, params)
    X = jnp.asarray(X)
    y = jnp.full(X.shape[0], -1, jnp.int32) if y is None else jnp.asarray(y, jnp.int32)
    hyper = mixture_hyperparameters(X, np.shape(params.weights)[0], concentration)
    init_z = _latent_from_params(params, covariance_type, n_known)
    key_fit, key_draw = jax.random.split(key)
    result = run_svi(
        _svi_model(covariance_type, n_known), _mean_field_guide, X, y, hyper, init_z,
        key=key_fit, num_steps=int(num_steps), learning_rate=learning_rate, verbose=verbose,
    )  # fmt: skip
    losses = np.asarray(result.losses)
    check_finite_result("The SVI loss", losses[-1], "Lower learning_rate or standardise X.")
    tail = losses[-max(10, len(losses) // 10) :]
    converged = bool(np.std(tail) < 0.05 * (abs(np.mean(tail)) + 1.0))
    draws = _guide_draws(
        result.params, X, y, hyper, init_z, key_draw, covariance_type, int(num_draws)
    )
    draws = {k: np.asarray(v) for k, v in draws.items()}
    ll = pointwise_log_likelihood(X, y, draws, covariance_type)
    rep = posterior_predictive(
        _rng_from_key(jax.random.fold_in(key, 1)),
        y,
        {k: v[None] for k, v in draws.items()},
        covariance_type,
        X.shape[1],
    )[0]
    idata = draws_to_inference_data(
        draws,
        log_likelihood={"obs": ll},
        observed_data={"obs": np.asarray(X)},
        posterior_predictive={"obs": rep},
    )
    return BayesianFit(draws, idata, converged, losses)


#: ``_parameter_constraints`` of the Bayesian settings every mixture estimator shares.
BAYESIAN_PARAMETER_CONSTRAINTS = {
    "weight_concentration_prior": [Interval(numbers.Real, 0.0, None, closed="neither")],
    "num_warmup": [Interval(numbers.Integral, 1, None, closed="left")],
    "num_samples": [Interval(numbers.Integral, 1, None, closed="left")],
    "num_chains": [Interval(numbers.Integral, 1, None, closed="left")],
    "num_steps": [Interval(numbers.Integral, 1, None, closed="left")],
    "learning_rate": [Interval(numbers.Real, 0.0, None, closed="neither")],
    "num_draws": [Interval(numbers.Integral, 1, None, closed="left")],
}


def fit_mixture_posterior(
    estimator, X, params: GaussianMixtureParams, *, y=None, n_known: int = 0, key
) -> BayesianFit:
    """NUTS or SVI (``estimator.inference``) with the estimator's Bayesian settings.

    ``estimator`` holds the settings of :data:`BAYESIAN_PARAMETER_CONSTRAINTS`,
    ``covariance_type`` and ``verbose``. A NUTS fit that fails a convergence check (R-hat,
    ESS, divergences of every parameter, what ``check_convergence(idata)`` checks) warns
    with what failed. Runs in float64.
    """
    e = estimator
    settings = dict(
        y=y, n_known=n_known, covariance_type=e.covariance_type,
        concentration=e.weight_concentration_prior, num_draws=e.num_draws, key=key,
        verbose=e.verbose,
    )  # fmt: skip
    with x64_scope():
        start = GaussianMixtureParams(*(jnp.asarray(p) for p in params))
        if e.inference == "nuts":
            fit = fit_mixture_nuts(
                X, start, num_warmup=e.num_warmup, num_samples=e.num_samples,
                num_chains=e.num_chains, **settings,
            )  # fmt: skip
            check_convergence(fit.inference_data)
            return fit
        return fit_mixture_svi(
            X, start, num_steps=e.num_steps, learning_rate=e.learning_rate, **settings
        )
