"""``GaussianMixtureModel``: a Gaussian mixture fitted by EM, NUTS or SVI.

The estimator shell follows scikit-learn's ``GaussianMixture`` (same parameter names,
fitted attributes and EM steps), and adds Bayesian fits through NumPyro with the component
assignments marginalised out:

.. math::

    \\pi \\sim \\mathrm{Dir}(\\alpha_0 \\mathbf 1),\\quad
    \\mu_{kd} \\sim \\mathcal N(\\bar x_d, (2 s_d)^2),\\quad
    \\sigma_{kd} \\sim \\mathrm{LogNormal}(\\log s_d, 1),\\quad
    \\Omega_k \\sim \\mathrm{LKJ}(2),\\quad
    x_i \\mid \\theta \\sim \\sum_k \\pi_k \\mathcal N(\\mu_k, \\mathrm{diag}(\\sigma_k)
    \\Omega_k \\mathrm{diag}(\\sigma_k))

with :math:`\\bar x, s` the data mean and standard deviation. The first coordinate of the
means is ordered (:math:`\\mu_{1,1} < \\dots < \\mu_{K,1}`) to remove label switching, so
chains are comparable and R-hat is meaningful; NUTS and SVI start from the EM solution.
"""

from __future__ import annotations

import numbers
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from tqdm.auto import tqdm

from mixtures._mixture_mixin import MixtureMixin
from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    check_finite_result,
    random_state_to_generator,
    random_state_to_key,
    to_numpy,
    x64_scope,
)
from mixtures.diagnostics import check_convergence, draws_to_inference_data, to_inference_data
from mixtures.distributions import GaussianMixture
from mixtures.em import GaussianMixtureParams, fit_em, m_step
from mixtures.inference import run_nuts, run_svi

__all__ = ["GaussianMixtureModel"]

_INFERENCE = ("em", "nuts", "svi")


# ---------------------------------------------------------------------------------------
# NumPyro model and guide (module level, so compiled samplers are cached across fits)
# ---------------------------------------------------------------------------------------


def _site_constraints(covariance_type: str, n_features: int) -> dict:
    sites = {
        "weights": constraints.simplex,
        "mu_first": constraints.ordered_vector,
        "sigma": constraints.positive,
    }
    if n_features > 1:
        sites["mu_rest"] = constraints.real
        if covariance_type == "full":
            sites["L_omega"] = constraints.corr_cholesky
    return sites


def _assemble(values: dict, covariance_type: str):
    """Means and covariances from the latent sites (works with leading sample axes)."""
    mu_first = values["mu_first"][..., None]
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
    elif covariance_type == "diag":
        cov = sigma**2
    else:
        cov = sigma**2
    return means, cov


def _mixture_model(X, hyper, covariance_type):
    concentration = hyper["concentration"]
    K = concentration.shape[0]
    D = X.shape[1]
    loc, scale, sd = hyper["mean_loc"], hyper["mean_scale"], hyper["data_scale"]
    values = {"weights": numpyro.sample("weights", dist.Dirichlet(concentration))}
    mu_first = numpyro.sample(
        "mu_first", dist.ImproperUniform(constraints.ordered_vector, (), event_shape=(K,))
    )
    # iid normal prior restricted to the ordered region (the K! constant is dropped)
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
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample(
            "obs", GaussianMixture(values["weights"], means, cov, covariance_type), obs=X
        )


def _model_full(X, hyper):
    _mixture_model(X, hyper, "full")


def _model_diag(X, hyper):
    _mixture_model(X, hyper, "diag")


def _model_spherical(X, hyper):
    _mixture_model(X, hyper, "spherical")


_MODELS = {"full": _model_full, "diag": _model_diag, "spherical": _model_spherical}


def _mean_field_guide(X, hyper, init):
    """Mean-field normal guide in unconstrained space, initialised at ``init``."""
    del X, hyper
    for name in sorted(init):
        loc = numpyro.param(f"{name}_loc", init[name])
        scale = numpyro.param(
            f"{name}_scale", 0.05 * jnp.ones_like(init[name]), constraint=constraints.positive
        )
        base = dist.Normal(loc, scale).to_event(jnp.ndim(init[name]))
        numpyro.sample(name, dist.TransformedDistribution(base, biject_to(_CONSTRAINT_OF[name])))


_CONSTRAINT_OF = {
    "weights": constraints.simplex,
    "mu_first": constraints.ordered_vector,
    "mu_rest": constraints.real,
    "sigma": constraints.positive,
    "L_omega": constraints.corr_cholesky,
}


def _make_svi_model(model):
    def svi_model(X, hyper, init):
        del init
        model(X, hyper)

    return svi_model


_SVI_MODELS = {k: _make_svi_model(v) for k, v in _MODELS.items()}


@partial(jax.jit, static_argnames=("covariance_type", "num_draws"))
def _guide_draws(params, X, hyper, init, key, covariance_type, num_draws):
    def one(k):
        tr = handlers.trace(
            handlers.seed(handlers.substitute(_mean_field_guide, data=params), k)
        ).get_trace(X, hyper, init)
        return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}

    draws = jax.vmap(one)(jax.random.split(key, num_draws))
    means, cov = _assemble(draws, covariance_type)
    draws["means"], draws["covariances"] = means, cov
    return draws


_m_step_jit = jax.jit(m_step, static_argnames=("covariance_type",))


def _unconstrained(values: dict) -> dict:
    return {k: biject_to(_CONSTRAINT_OF[k]).inv(v) for k, v in values.items()}


def _latent_from_params(params: GaussianMixtureParams, covariance_type: str) -> dict:
    """Latent-site values of the NumPyro model equal to given mixture parameters."""
    order = jnp.argsort(params.means[:, 0])
    weights = params.weights[order]
    means = params.means[order]
    cov = params.covariances[order]
    D = means.shape[1]
    # keep the ordering strict and the weights inside the open simplex
    weights = jnp.clip(weights, 1e-6, None)
    weights = weights / weights.sum()
    mu_first = means[:, 0] + 1e-9 * jnp.arange(means.shape[0])
    values = {"weights": weights, "mu_first": mu_first}
    if D > 1:
        values["mu_rest"] = means[:, 1:]
    if covariance_type == "full":
        sd = jnp.sqrt(jnp.diagonal(cov, axis1=-2, axis2=-1))
        values["sigma"] = sd
        if D > 1:
            corr = cov / (sd[:, :, None] * sd[:, None, :])
            values["L_omega"] = jnp.linalg.cholesky(corr)
    else:
        values["sigma"] = jnp.sqrt(cov)
    return values


class GaussianMixtureModel(MixtureMixin, MixprocEstimator):
    """Gaussian mixture fitted by EM (maximum likelihood), NUTS or SVI (Bayesian).

    With ``inference="em"`` this is scikit-learn's ``GaussianMixture``: the same
    initialisation options, E- and M-steps (:func:`mixtures.inference.e_step`,
    :func:`~mixtures.inference.m_step`), convergence rule and fitted attributes, computed by a
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
    lower_bounds_ : ndarray of shape (n_iter_,)
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
        "weight_concentration_prior": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "num_warmup": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_chains": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "num_draws": [Interval(numbers.Integral, 1, None, closed="left")],
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
        rng = random_state_to_generator(self.random_state)
        key = random_state_to_key(rng)
        with x64_scope():
            best = self._fit_em(X, rng)
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
        with x64_scope():
            init = _latent_from_params(
                GaussianMixtureParams(*(jnp.asarray(p) for p in params)), self.covariance_type
            )
            hyper = self._hyper(X)
            Xj = jnp.asarray(X)
            if self.inference == "nuts":
                draws = self._fit_nuts(Xj, hyper, init, key)
            else:
                draws = self._fit_svi(Xj, hyper, init, key)
        self.posterior_samples_ = draws
        self._set_point_params(
            (draws["weights"].mean(0), draws["means"].mean(0), draws["covariances"].mean(0))
        )
        return self

    def _hyper(self, X):
        mean = X.mean(0)
        sd = X.std(0) + 1e-12
        return {
            "concentration": jnp.full((self.n_components,), float(self.weight_concentration_prior)),
            "mean_loc": jnp.asarray(mean),
            "mean_scale": jnp.asarray(2.0 * sd),
            "data_scale": jnp.asarray(sd),
        }

    def _initial_resp(self, X, rng):
        n, K = X.shape[0], self.n_components
        resp = np.zeros((n, K))
        seed = int(rng.integers(0, 2**31 - 1))
        if self.init_params == "kmeans":
            labels = KMeans(K, n_init=1, random_state=seed).fit(X).labels_
            resp[np.arange(n), labels] = 1
        elif self.init_params == "k-means++":
            _, idx = kmeans_plusplus(X, K, random_state=seed)
            resp[idx, np.arange(K)] = 1
        elif self.init_params == "random":
            resp = rng.uniform(size=(n, K))
            resp /= resp.sum(1, keepdims=True)
        else:
            idx = rng.choice(n, size=K, replace=False)
            resp[idx, np.arange(K)] = 1
        return resp

    def _fit_em(self, X, rng):
        best = None
        inits = range(self.n_init)
        if self.verbose > 0 and self.n_init > 1:
            inits = tqdm(inits, desc="EM initialisations")
        for _ in inits:
            resp = self._initial_resp(X, rng)
            params = _m_step_jit(
                jnp.asarray(X), jnp.asarray(resp), self.reg_covar,
                covariance_type=self.covariance_type,
            )  # fmt: skip
            result = fit_em(
                X,
                to_numpy(params),
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

    def _fit_nuts(self, X, hyper, init, key):
        C = self.num_chains
        z0 = {k: jnp.broadcast_to(v, (C,) + v.shape) for k, v in _unconstrained(init).items()}
        if C == 1:
            z0 = {k: v[0] for k, v in z0.items()}
        result = run_nuts(
            _MODELS[self.covariance_type],
            X,
            hyper,
            key=key,
            num_warmup=self.num_warmup,
            num_samples=self.num_samples,
            num_chains=C,
            init_params=z0,
            verbose=self.verbose,
        )
        keep = ("weights", "means", "covariances")
        samples = {k: v for k, v in result.samples.items() if k in keep}
        self.inference_data_ = to_inference_data(result._replace(samples=samples))
        if C >= 2:
            report = check_convergence(self.inference_data_, var_names=["weights", "means"])
            self.converged_ = bool(report.ok)
        flat = {k: np.asarray(v).reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
        step = max(1, flat["weights"].shape[0] // self.num_draws)
        return {k: v[::step][: self.num_draws] for k, v in flat.items()}

    def _fit_svi(self, X, hyper, init, key):
        init_z = _unconstrained(init)
        key_fit, key_draw = jax.random.split(key)
        result = run_svi(
            _SVI_MODELS[self.covariance_type],
            _mean_field_guide,
            X,
            hyper,
            init_z,
            key=key_fit,
            num_steps=self.num_steps,
            learning_rate=self.learning_rate,
            verbose=self.verbose,
        )
        losses = np.asarray(result.losses)
        check_finite_result(
            "The SVI loss",
            losses[-1],
            "Lower learning_rate or standardise X.",
        )
        self.svi_losses_ = losses
        tail = losses[-max(10, len(losses) // 10) :]
        self.converged_ = bool(np.std(tail) < 0.05 * (abs(np.mean(tail)) + 1.0))
        draws = _guide_draws(
            result.params, X, hyper, init_z, key_draw, self.covariance_type, self.num_draws
        )
        draws = {k: np.asarray(v) for k, v in draws.items()}
        keep = ("weights", "means", "covariances")
        self.inference_data_ = draws_to_inference_data({k: draws[k] for k in keep})
        return {k: draws[k] for k in keep}

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
