"""Mixture and scale-mixture distributions as NumPyro ``Distribution`` classes.

All classes are pytrees (``jit``/``vmap``/``grad`` safe) and follow NumPyro's
conventions: declarative ``arg_constraints`` and ``support``, explicit PRNG keys.

- :class:`GaussianMixture` — finite mixture of multivariate normals with full, diagonal or
  spherical covariances and arbitrary batch dimensions.
- :class:`StudentTMixture` — the same with multivariate Student-t components (each a gamma
  scale mixture of the normal); :func:`multivariate_t_log_prob` is its closed form.
- :class:`BurrXII` — the Burr type XII distribution (NumPyro has none), a heavy-tailed
  positive law used as a prior on NNGP readout variances (Lee et al., 2022).
- :class:`ScaleMixtureNormal` — ``x | s ~ N(loc, s scale^2)`` with ``s`` drawn from any
  positive distribution (density by quadrature over ``log s``) or from a discrete law on
  given atoms (:meth:`ScaleMixtureNormal.from_atoms`, e.g. a posterior over the scale
  computed by quadrature or importance sampling);
  :func:`student_t_from_inverse_gamma` is the closed form for an inverse-gamma mixing law,
  a :class:`StudentT` whose log density stays accurate for any degrees of freedom.

These are the project's only mixture densities: the EM engine (:mod:`mixtures.em`), the GP
posterior predictive (``gp``) and the trajectory forecaster (``gmm``) all evaluate them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import betaln, gammaln, logsumexp
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes, validate_sample

__all__ = [
    "COVARIANCE_TYPES",
    "BurrXII",
    "GaussianMixture",
    "ScaleMixtureNormal",
    "StudentT",
    "StudentTMixture",
    "log_gamma_ratio",
    "multivariate_t_log_prob",
    "student_t_from_inverse_gamma",
    "vech_features",
]

COVARIANCE_TYPES = ("full", "diag", "spherical")
_LOG_2PI = math.log(2.0 * math.pi)


def _check_covariance_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )


def vech_features(x):
    r"""Quadratic features :math:`q(x) = [\mathrm{vech}(x x^\top), x]`, shape (..., D(D+1)/2 + D).

    The upper triangle of :math:`x x^\top` (row-major, as ``numpy.triu_indices``) then
    :math:`x`: a Gaussian log density is linear in them
    (:meth:`GaussianMixture.quadratic_coefficients`).
    """
    d = x.shape[-1]
    # row i of the upper triangle is x_i * x[i:], built from static slices (no gather)
    return jnp.concatenate([x[..., i : i + 1] * x[..., i:] for i in range(d)] + [x], axis=-1)


def _precision_factor_2x2(cov):
    r"""``L^{-T}`` and ``log|Sigma|`` of 2x2 covariances in closed form.

    With :math:`\Sigma = \begin{pmatrix} a & b \\ b & c \end{pmatrix} = L L^\top`,
    :math:`L_{11} = \sqrt a`, :math:`L_{21} = b / L_{11}`,
    :math:`L_{22} = \sqrt{c - L_{21}^2}`, and
    :math:`L^{-\top} = \begin{pmatrix} 1/L_{11} & -L_{21}/(L_{11} L_{22}) \\
    0 & 1/L_{22} \end{pmatrix}`: the numbers ``jnp.linalg.cholesky`` and a triangular
    solve give (NaN where ``Sigma`` is not positive definite), in a few element-wise ops.
    """
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    l11 = jnp.sqrt(a)
    l21 = b / l11
    l22 = jnp.sqrt(c - l21 * l21)
    zero = jnp.zeros_like(a)
    p = jnp.stack(
        [jnp.stack([1.0 / l11, -l21 / (l11 * l22)], -1), jnp.stack([zero, 1.0 / l22], -1)], -2
    )
    return p, 2.0 * (jnp.log(l11) + jnp.log(l22))


class GaussianMixture(dist.Distribution):
    r"""Finite mixture of multivariate normal distributions.

    .. math::

        p(x) = \sum_{k=1}^K \pi_k \, \mathcal N(x;\, \mu_k, \Sigma_k)

    Parameters
    ----------
    weights : array of shape (..., K)
        Mixing weights (non-negative, summing to one along the last axis).
    means : array of shape (..., K, D)
        Component means.
    covariances : array
        Shape (..., K, D, D) for ``"full"``, (..., K, D) for ``"diag"`` and (..., K) for
        ``"spherical"``.
    covariance_type : {"full", "diag", "spherical"}, default="full"
        How ``covariances`` is parameterised (scikit-learn's names).

    Notes
    -----
    The log-density is evaluated in the matmul form used by scikit-learn: with the
    precision Cholesky factor :math:`P_k = L_k^{-\top}` (:math:`\Sigma_k = L_k L_k^\top`),
    the Mahalanobis term is :math:`\|(x - \mu_k)^\top P_k\|^2` and
    :math:`\log|\Sigma_k| = 2\sum_i \log L_{k,ii}`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> gm = GaussianMixture(jnp.array([0.5, 0.5]), jnp.array([[0.0], [2.0]]),
    ...                      jnp.array([[[1.0]], [[1.0]]]))
    >>> round(float(gm.log_prob(jnp.array([1.0]))), 4)
    -1.4189
    """

    arg_constraints = {
        "weights": constraints.simplex,
        "means": constraints.independent(constraints.real_vector, 1),
        "covariances": constraints.dependent(is_discrete=False, event_dim=0),
    }
    support = constraints.real_vector
    pytree_data_fields = (
        "weights",
        "means",
        "covariances",
        "log_weights",
        "_precision_factor",
        "_log_det",
    )
    pytree_aux_fields = ("covariance_type",)

    def __init__(
        self, weights, means, covariances, covariance_type: str = "full", *, validate_args=None
    ):
        _check_covariance_type(covariance_type)
        weights = jnp.asarray(weights)
        means = jnp.asarray(means)
        covariances = jnp.asarray(covariances)
        if means.ndim < 2:
            raise ValueError(
                f"means must have shape (..., K, D); got shape {means.shape}. "
                "Use means[:, None] for one-dimensional data."
            )
        K, D = means.shape[-2:]
        if weights.shape[-1:] != (K,):
            raise ValueError(
                f"weights must have shape (..., {K}) to match means (..., {K}, {D}); "
                f"got {weights.shape}."
            )
        expected = {"full": (K, D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]
        n_event = len(expected)
        if covariances.shape[covariances.ndim - n_event :] != expected:
            raise ValueError(
                f"covariances for covariance_type={covariance_type!r} must have shape "
                f"(..., {', '.join(map(str, expected))}); got {covariances.shape}."
            )
        self.covariance_type = covariance_type
        self.weights = weights
        self.means = means
        self.covariances = covariances
        self.log_weights = jnp.log(weights)
        if covariance_type == "full":
            # P = L^{-T}: (x - mu)^T P has squared norm (x - mu)^T Sigma^{-1} (x - mu).
            if D == 2:  # closed form: the bivariate case (trajectories) is the hot one
                self._precision_factor, self._log_det = _precision_factor_2x2(covariances)
            else:
                chol = jnp.linalg.cholesky(covariances)
                eye = jnp.broadcast_to(jnp.eye(D, dtype=chol.dtype), chol.shape)
                self._precision_factor = jnp.swapaxes(
                    jax.scipy.linalg.solve_triangular(chol, eye, lower=True), -1, -2
                )
                self._log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, 0, -2, -1)), -1)
        elif covariance_type == "diag":
            self._precision_factor = 1.0 / jnp.sqrt(covariances)
            self._log_det = jnp.sum(jnp.log(covariances), -1)
        else:
            self._precision_factor = 1.0 / jnp.sqrt(covariances)
            self._log_det = D * jnp.log(covariances)
        batch_shape = jax.lax.broadcast_shapes(
            weights.shape[:-1], means.shape[:-2], covariances.shape[: covariances.ndim - n_event]
        )
        super().__init__(batch_shape=batch_shape, event_shape=(D,), validate_args=validate_args)

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def component_log_det(self):
        r""":math:`\log|\Sigma_k|`, shape (..., K)."""
        return self._log_det

    def component_mahalanobis(self, value):
        r"""Squared Mahalanobis distances :math:`(x-\mu_k)^\top\Sigma_k^{-1}(x-\mu_k)`, (..., K)."""
        diff = value[..., None, :] - self.means
        if self.covariance_type == "full":
            z = jnp.einsum("...kd,...kde->...ke", diff, self._precision_factor)
        elif self.covariance_type == "diag":
            z = diff * self._precision_factor
        else:
            z = diff * self._precision_factor[..., None]
        return jnp.sum(z * z, -1)

    def component_log_prob(self, value):
        r"""Per-component log densities :math:`\log \mathcal N(x; \mu_k, \Sigma_k)`, (..., K)."""
        D = self.event_shape[0]
        return -0.5 * (D * _LOG_2PI + self._log_det + self.component_mahalanobis(value))

    @validate_sample
    def log_prob(self, value):
        return logsumexp(self.log_weights + self.component_log_prob(value), axis=-1)

    def quadratic_coefficients(self):
        r"""Coefficients of the log joint as a linear function of :func:`vech_features`.

        Returns ``C`` of shape (D(D+1)/2 + D, K) and ``c`` of shape (K,) with
        :math:`\log\pi_k + \log\mathcal N(x;\mu_k,\Sigma_k) = q(x)^\top C_{:,k} + c_k`:

        .. math::

            -\tfrac12 (x - \mu_k)^\top \Lambda_k (x - \mu_k)
            = -\tfrac12 \sum_{i \le j} (2 - \delta_{ij}) \Lambda_{k,ij} x_i x_j
            + x^\top \Lambda_k \mu_k - \tfrac12 \mu_k^\top \Lambda_k \mu_k,

        so the log joint of a block of rows is one matrix product, the E-step of
        :mod:`mixtures.em`. Batch-free mixtures only. The expansion cancels terms of size
        :math:`|x|^2 |\Lambda|`: centre the data first.
        """
        if self.batch_shape != ():
            raise ValueError(
                f"quadratic_coefficients needs an unbatched mixture; got batch shape "
                f"{self.batch_shape}."
            )
        K, D = self.means.shape
        P = self._precision_factor
        if self.covariance_type == "full":
            prec = P @ jnp.swapaxes(P, -1, -2)  # Lambda_k = P_k P_k^T
            half_log_det = jnp.sum(jnp.log(jnp.diagonal(P, 0, -2, -1)), -1)
        else:
            p2 = P**2 if self.covariance_type == "diag" else (P**2)[:, None] * jnp.ones(D)
            prec = p2[:, :, None] * jnp.eye(D, dtype=p2.dtype)
            half_log_det = -0.5 * self._log_det
        iu, ju = np.triu_indices(D)
        sym_w = jnp.asarray(np.where(iu == ju, 1.0, 2.0), prec.dtype)
        quad = -0.5 * prec[:, iu, ju] * sym_w  # (K, P)
        lin = jnp.einsum("kde,ke->kd", prec, self.means)  # Lambda_k mu_k
        const = (
            self.log_weights + half_log_det - 0.5 * (D * _LOG_2PI + jnp.sum(lin * self.means, -1))
        )
        return jnp.concatenate([quad, lin], axis=1).T, const

    def responsibilities(self, value):
        r"""Posterior component probabilities :math:`p(z = k \mid x)`, shape (..., K)."""
        return jax.nn.softmax(self.log_weights + self.component_log_prob(value), axis=-1)

    def sample_with_intermediates(self, key, sample_shape=()):
        """Draw samples and return ``(x, [z])`` where ``z`` are the component indices."""
        shape = tuple(sample_shape) + self.batch_shape
        K, D = self.means.shape[-2:]
        key_z, key_eps = jax.random.split(key)
        z = jax.random.categorical(key_z, jnp.broadcast_to(self.log_weights, shape + (K,)))
        eps = jax.random.normal(key_eps, shape + (D,), dtype=self.means.dtype)
        means = jnp.broadcast_to(self.means, shape + (K, D))
        mu = jnp.take_along_axis(means, z[..., None, None], axis=-2)[..., 0, :]
        if self.covariance_type == "full":
            chol = jnp.linalg.cholesky(self.covariances)
            chol = jnp.broadcast_to(chol, shape + (K, D, D))
            L = jnp.take_along_axis(chol, z[..., None, None, None], axis=-3)[..., 0, :, :]
            x = mu + jnp.einsum("...de,...e->...d", L, eps)
        elif self.covariance_type == "diag":
            sd = jnp.broadcast_to(jnp.sqrt(self.covariances), shape + (K, D))
            x = mu + jnp.take_along_axis(sd, z[..., None, None], axis=-2)[..., 0, :] * eps
        else:
            sd = jnp.broadcast_to(jnp.sqrt(self.covariances), shape + (K,))
            x = mu + jnp.take_along_axis(sd, z[..., None], axis=-1) * eps
        return x, [z]

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    def _component_second_moment_diag(self):
        if self.covariance_type == "full":
            return jnp.diagonal(self.covariances, axis1=-2, axis2=-1)
        if self.covariance_type == "diag":
            return self.covariances
        return jnp.broadcast_to(self.covariances[..., None], self.means.shape)

    @property
    def mean(self):
        return jnp.sum(self.weights[..., None] * self.means, axis=-2)

    @property
    def variance(self):
        second = jnp.sum(
            self.weights[..., None] * (self._component_second_moment_diag() + self.means**2),
            axis=-2,
        )
        return second - self.mean**2


def multivariate_t_log_prob(mahalanobis, log_det, df, dim):
    r"""Log density of a ``dim``-variate Student-t from its Mahalanobis term and log-determinant.

    .. math::

        \log t_\nu(x; \mu, \Sigma) = \log\Gamma\big(\tfrac{\nu+D}2\big)
        - \log\Gamma\big(\tfrac\nu2\big) - \tfrac D2 \log(\nu\pi)
        - \tfrac12\log|\Sigma| - \tfrac{\nu+D}2 \log\Big(1 + \frac{\delta^2}{\nu}\Big),

    :math:`\delta^2 = (x-\mu)^\top\Sigma^{-1}(x-\mu)` (Kotz & Nadarajah, 2004, eq. 1.1):
    the density of :math:`x \mid g \sim \mathcal N(\mu, \Sigma / g)`,
    :math:`g \sim \mathrm{Gamma}(\nu/2, \text{rate } \nu/2)`. The gamma-function ratio
    comes from :func:`log_gamma_ratio`, so large ``df`` approaches the normal density
    without cancellation.

    Parameters
    ----------
    mahalanobis, log_det, df : arrays (broadcast together)
    dim : int
        Dimension D of the variable.

    Examples
    --------
    >>> round(float(multivariate_t_log_prob(0.0, 0.0, 1e8, 2)), 5)  # -log(2 pi)
    -1.83788
    """
    df = jnp.asarray(df)
    return (
        log_gamma_ratio(df / 2, dim / 2)
        - 0.5 * dim * jnp.log(df * jnp.pi)
        - 0.5 * log_det
        - 0.5 * (df + dim) * jnp.log1p(mahalanobis / df)
    )


class StudentTMixture(GaussianMixture):
    r"""Finite mixture of multivariate Student-t distributions.

    .. math::

        p(x) = \sum_{k=1}^K \pi_k\, t_\nu(x;\, \mu_k, \Sigma_k), \qquad
        t_\nu(x; \mu, \Sigma) = \int_0^\infty \mathcal N(x; \mu, \Sigma / g)\,
        \mathrm{Gamma}\big(g; \tfrac\nu2, \tfrac\nu2\big)\, dg,

    each component a gamma scale mixture of the normal :class:`GaussianMixture` component
    with the same parameters (Andrews & Mallows, 1974), with the closed form
    :func:`multivariate_t_log_prob`. ``covariances`` are the components' *scale*
    matrices :math:`\Sigma_k`; a component's covariance is
    :math:`\tfrac{\nu}{\nu-2}\Sigma_k` (:math:`\nu > 2`). As :math:`\nu \to \infty` it
    becomes the Gaussian mixture.

    Parameters
    ----------
    weights, means, covariances, covariance_type
        As :class:`GaussianMixture` (``covariances`` are scale matrices).
    df : float or array
        Degrees of freedom :math:`\nu > 0`, shared by the components; an array broadcasts
        against the batch shape.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> tm = StudentTMixture(jnp.ones(1), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)), df=1.0)
    >>> round(float(tm.log_prob(jnp.array([0.0]))), 4)  # Cauchy: -log(pi)
    -1.1447
    """

    pytree_data_fields = ("df",)

    def __init__(
        self, weights, means, covariances, df, covariance_type: str = "full", *,
        validate_args=None,
    ):  # fmt: skip
        df = jnp.asarray(df, dtype=jnp.result_type(float))
        if not isinstance(df, jax.core.Tracer) and not np.all(np.asarray(df) > 0):
            raise ValueError(f"df must be positive (degrees of freedom); got {df}.")
        self.df = df
        super().__init__(weights, means, covariances, covariance_type, validate_args=validate_args)

    def component_log_prob(self, value):
        r"""Per-component log densities :math:`\log t_\nu(x; \mu_k, \Sigma_k)`, (..., K)."""
        return multivariate_t_log_prob(
            self.component_mahalanobis(value),
            self._log_det,
            jnp.expand_dims(self.df, -1),
            self.event_shape[0],
        )

    def quadratic_coefficients(self):
        raise TypeError(
            "quadratic_coefficients is the Gaussian E-step's expansion; a Student-t log "
            "density is not linear in the quadratic features."
        )

    def sample_with_intermediates(self, key, sample_shape=()):
        """Draw ``mu_z + (x - mu_z) / sqrt(g)``, ``x`` a Gaussian mixture draw, ``g`` gamma."""
        key, key_g = jax.random.split(key)
        x, (z,) = super().sample_with_intermediates(key, sample_shape)
        shape = tuple(sample_shape) + self.batch_shape
        means = jnp.broadcast_to(self.means, shape + self.means.shape[-2:])
        mu = jnp.take_along_axis(means, z[..., None, None], axis=-2)[..., 0, :]
        half = jnp.broadcast_to(self.df / 2, shape)
        g = jax.random.gamma(key_g, half, dtype=x.dtype) / half
        return mu + (x - mu) / jnp.sqrt(g)[..., None], [z]

    def _component_second_moment_diag(self):
        df = jnp.expand_dims(self.df, (-1, -2))
        factor = jnp.where(df > 2, df / jnp.where(df > 2, df - 2, 1.0), jnp.inf)
        return factor * super()._component_second_moment_diag()


class BurrXII(dist.Distribution):
    r"""Burr type XII distribution on the positive reals.

    .. math::

        p(s) = \frac{c\,d}{\lambda} \Big(\frac{s}{\lambda}\Big)^{c-1}
               \Big(1 + \big(\tfrac{s}{\lambda}\big)^c\Big)^{-d-1},\qquad
        F(s) = 1 - \Big(1 + \big(\tfrac{s}{\lambda}\big)^c\Big)^{-d}

    with shape parameters ``c``, ``d`` and scale :math:`\lambda`; ``scipy.stats.burr12(c, d,
    scale=scale)``. The survival function decays like :math:`s^{-cd}`, so
    :math:`E[s^k] < \infty` iff :math:`k < c d`. Lee et al. (2022) use it, with
    :math:`\lambda = 1`, as a heavy-tailed prior on the readout variance of an NNGP.
    Sampling inverts the CDF, :math:`s = \lambda((1-u)^{-1/d} - 1)^{1/c}`, and is
    reparameterised in all three parameters.

    Python and NumPy parameters are stored as NumPy float64 arrays, so they keep their
    full precision whatever the global JAX x64 flag (evaluate inside
    :func:`mixtures.base.x64_scope` for float64 results); JAX arrays and tracers are kept
    as they are, so the class works under ``jit``, ``vmap`` and ``grad``.

    References
    ----------
    H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian
    Processes", ICLR 2022.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(BurrXII(2.0, 2.0).mean), 6)  # pi / 4 at c = d = 2
    0.785398
    """

    arg_constraints = {
        "c": constraints.positive,
        "d": constraints.positive,
        "scale": constraints.positive,
    }
    support = constraints.positive
    reparametrized_params = ["c", "d", "scale"]

    def __init__(self, c, d, scale=1.0, *, validate_args=None):
        # NumPy float64 for Python/NumPy input: jnp.asarray would truncate it to float32
        # when x64 is off, and a JAX float64 array warns when used outside x64 mode
        c, d, scale = (
            v if isinstance(v, jax.Array) else np.asarray(v, dtype=np.float64)
            for v in (c, d, scale)
        )
        self.c, self.d, self.scale = promote_shapes(c, d, scale)
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(self.c), jnp.shape(self.d), jnp.shape(self.scale)
        )
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @validate_sample
    def log_prob(self, value):
        log_z = jnp.log(value) - jnp.log(self.scale)
        # log1p(z^c) = softplus(c log z): finite even where z^c overflows.
        return (
            jnp.log(self.c)
            + jnp.log(self.d)
            - jnp.log(self.scale)
            + (self.c - 1.0) * log_z
            - (self.d + 1.0) * jax.nn.softplus(self.c * log_z)
        )

    def cdf(self, value):
        log_z = jnp.log(value) - jnp.log(self.scale)
        return -jnp.expm1(-self.d * jax.nn.softplus(self.c * log_z))

    def icdf(self, q):
        # ((1 - q)^(-1/d) - 1)^(1/c), in log space for q near 0 and 1.
        inner = jnp.expm1(-jnp.log1p(-q) / self.d)
        return self.scale * jnp.exp(jnp.log(inner) / self.c)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        dtype = jnp.result_type(self.c, float)
        u = jax.random.uniform(key, shape, dtype=dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)
        return self.icdf(u)

    def _raw_moment(self, k):
        finite = self.c * self.d > k
        safe_d = jnp.where(finite, self.d, k / self.c + 1.0)
        value = self.scale**k * self.d * jnp.exp(betaln(safe_d - k / self.c, 1.0 + k / self.c))
        return jnp.where(finite, value, jnp.inf)

    @property
    def mean(self):
        return self._raw_moment(1.0)

    @property
    def variance(self):
        m1 = self.mean
        return jnp.where(self.c * self.d > 2.0, self._raw_moment(2.0) - m1**2, jnp.inf)


def _stirling_tail(x):
    return 1 / (12 * x) - 1 / (360 * x**3) + 1 / (1260 * x**5)


def log_gamma_ratio(a, h):
    r""":math:`\ln\Gamma(a + h) - \ln\Gamma(a)` without cancellation for large ``a`` (``h > 0``).

    Below :math:`a = 10^3` the plain ``gammaln`` difference; above, the difference of the
    Stirling series,
    :math:`(a - \tfrac12)\,\mathrm{log1p}(h/a) + h\ln(a + h) - h + S(a + h) - S(a)` with
    :math:`S(x) = \frac1{12x} - \frac1{360x^3} + \frac1{1260x^5}` (Abramowitz & Stegun
    6.1.41), whose truncation error is below :math:`1/(1680 a^7)`. The plain difference
    loses about 1e-6 at :math:`a = 10^9`.

    Examples
    --------
    >>> import math
    >>> abs(float(log_gamma_ratio(3.0, 0.5)) - (math.lgamma(3.5) - math.lgamma(3.0))) < 1e-6
    True
    """
    a = jnp.asarray(a, dtype=jnp.result_type(a, float))
    small = a < 1e3
    a_small = jnp.where(small, a, 1.0)
    a_big = jnp.where(small, 1e3, a)
    direct = gammaln(a_small + h) - gammaln(a_small)
    series = (
        (a_big - 0.5) * jnp.log1p(h / a_big)
        + h * jnp.log(a_big + h)
        - h
        + _stirling_tail(a_big + h)
        - _stirling_tail(a_big)
    )
    return jnp.where(small, direct, series)


class StudentT(dist.StudentT):
    r"""NumPyro's location-scale Student-t with a log density accurate for any ``df``.

    .. math::

        \ln p(x) = \ln\Gamma(\tfrac{\nu+1}2) - \ln\Gamma(\tfrac\nu2)
        - \tfrac12\ln(\nu\pi) - \ln\sigma - \tfrac{\nu+1}2\,
        \mathrm{log1p}\Big(\frac{(x-\mu)^2}{\nu\sigma^2}\Big)

    This is the D = 1 case of :func:`multivariate_t_log_prob` (gamma-function ratio from
    :func:`log_gamma_ratio`), so that the Gaussian limit
    (:math:`\nu \to \infty`, e.g. a posterior after many observations) loses no digits.
    """

    @validate_sample
    def log_prob(self, value):
        z = (value - self.loc) / self.scale
        return multivariate_t_log_prob(z**2, 2.0 * jnp.log(self.scale), self.df, 1)


def student_t_from_inverse_gamma(loc, scale, alpha, beta) -> StudentT:
    r"""Closed form of the inverse-gamma scale mixture of normals.

    If :math:`x \mid s \sim \mathcal N(\mu, s\,\sigma^2)` and
    :math:`s \sim \mathrm{IG}(\alpha, \beta)`, then
    :math:`x \sim t_{2\alpha}(\mu, \sigma\sqrt{\beta/\alpha})` (Andrews & Mallows, 1974;
    Lee et al., 2022, section 3.1, the Student-t marginal of the inverse-gamma scale
    mixture).

    Examples
    --------
    >>> t = student_t_from_inverse_gamma(0.0, 1.0, 2.0, 2.0)
    >>> float(t.df), float(t.scale)
    (4.0, 1.0)
    """
    alpha = jnp.asarray(alpha)
    beta = jnp.asarray(beta)
    return StudentT(2.0 * alpha, loc, jnp.asarray(scale) * jnp.sqrt(beta / alpha))


class ScaleMixtureNormal(dist.Distribution):
    r"""Normal scale mixture ``x | s ~ N(loc, s scale^2)``, ``s ~ mixing``.

    .. math::

        p(x) = \int_0^\infty \mathcal N(x;\, \mu, s\sigma^2)\, h(s)\, ds
             = \int_{-\infty}^{\infty} \mathcal N(x;\, \mu, e^t\sigma^2)\, h(e^t)\, e^t\, dt

    (Andrews & Mallows, 1974). With a continuous mixing law the second integral is
    evaluated with the trapezoid rule on ``num_points`` nodes over ``t`` in
    ``log_scale_range``; the integrand is smooth and decays at both ends, so the rule
    converges geometrically, and with the defaults it matches the Student-t closed form for
    an inverse-gamma mixing law to about 1e-10. :meth:`from_atoms` builds the finite mixture
    :math:`p(x) = \sum_j w_j \mathcal N(x; \mu, s_j\sigma^2)` over given scales, e.g. the
    nodes of a quadrature or the draws of an importance sampler.

    Parameters
    ----------
    loc, scale : array-like
        Location and base scale :math:`\sigma`.
    mixing : numpyro.distributions.Distribution
        Any distribution on the positive reals with a ``log_prob`` (scalar batch is
        broadcast).
    num_points : int, default=2048
        Quadrature nodes.
    log_scale_range : tuple of float, default=(-30.0, 30.0)
        Integration range for ``t = log s``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> sm = ScaleMixtureNormal.from_atoms(0.0, 1.0, jnp.log(jnp.array([1.0, 4.0])),
    ...                                    jnp.log(jnp.array([0.5, 0.5])))
    >>> round(float(sm.variance), 6)
    2.5
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    pytree_data_fields = ("loc", "scale", "mixing", "log_scales", "log_weights")
    pytree_aux_fields = ("num_points", "log_scale_range")

    def __init__(
        self,
        loc,
        scale,
        mixing: dist.Distribution | None = None,
        *,
        num_points: int = 2048,
        log_scale_range: tuple[float, float] = (-30.0, 30.0),
        log_scales=None,
        log_weights=None,
        validate_args=None,
    ):
        if (mixing is None) == (log_scales is None):
            raise ValueError(
                "pass either a mixing distribution or atoms (ScaleMixtureNormal.from_atoms), "
                "not both or neither."
            )
        self.loc, self.scale = promote_shapes(jnp.asarray(loc), jnp.asarray(scale))
        self.mixing = mixing
        self.num_points = int(num_points)
        self.log_scale_range = tuple(float(v) for v in log_scale_range)
        if mixing is not None:
            if mixing.event_shape != ():
                raise ValueError(
                    f"mixing must be a scalar distribution; got event_shape {mixing.event_shape}."
                )
            self.log_scales = self.log_weights = None
            mix_batch = mixing.batch_shape
        else:
            log_scales = jnp.asarray(log_scales)
            log_weights = jnp.broadcast_to(jnp.asarray(log_weights), log_scales.shape)
            if log_scales.ndim < 1:
                raise ValueError(
                    f"log_scales must have a trailing atom axis; got shape {log_scales.shape}."
                )
            self.log_scales = log_scales
            self.log_weights = log_weights - logsumexp(log_weights, axis=-1, keepdims=True)
            mix_batch = log_scales.shape[:-1]
        batch_shape = jax.lax.broadcast_shapes(
            jnp.shape(self.loc), jnp.shape(self.scale), mix_batch
        )
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @classmethod
    def from_atoms(cls, loc, scale, log_scales, log_weights, *, validate_args=None):
        r"""Finite scale mixture over atoms :math:`s_j = e^{t_j}` with weights :math:`w_j`.

        Parameters
        ----------
        loc, scale : array-like
        log_scales : array of shape (..., M)
            :math:`t_j = \ln s_j` (a trailing atom axis; leading axes broadcast with the batch).
        log_weights : array of shape (..., M)
            Unnormalised log weights (normalised here).
        """
        return cls(loc, scale, log_scales=log_scales, log_weights=log_weights,
                   validate_args=validate_args)  # fmt: skip

    def _nodes(self, dtype):
        """Log scales ``t`` and log weights over the trailing node axis."""
        if self.mixing is None:
            return self.log_scales, self.log_weights
        lo, hi = self.log_scale_range
        t = jnp.linspace(lo, hi, self.num_points, dtype=dtype)
        dt = t[1] - t[0]
        nodes = jnp.exp(t).reshape((-1,) + (1,) * len(self.mixing.batch_shape))
        log_h = self.mixing.log_prob(nodes)
        log_h = jnp.moveaxis(log_h, 0, -1)
        # trapezoid weights: dt everywhere, dt/2 at the two end nodes; e^t is the Jacobian
        log_q = jnp.full_like(t, jnp.log(dt)).at[jnp.array([0, -1])].add(-jnp.log(2.0))
        return t, log_h + t + log_q

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        key_s, key_z = jax.random.split(key)
        if self.mixing is None:
            logits = jnp.broadcast_to(self.log_weights, shape + self.log_weights.shape[-1:])
            j = jax.random.categorical(key_s, logits)
            t = jnp.broadcast_to(self.log_scales, shape + self.log_scales.shape[-1:])
            s = jnp.exp(jnp.take_along_axis(t, j[..., None], axis=-1)[..., 0])
        else:
            s = jnp.broadcast_to(self.mixing.sample(key_s, sample_shape), shape)
        z = jax.random.normal(key_z, shape, dtype=jnp.result_type(self.loc, float))
        return self.loc + jnp.sqrt(s) * self.scale * z

    @validate_sample
    def log_prob(self, value):
        t, log_w = self._nodes(jnp.result_type(value, float))
        var = jnp.exp(t) * self.scale[..., None] ** 2
        diff = (value - self.loc)[..., None]
        log_normal = -0.5 * (_LOG_2PI + jnp.log(var) + diff**2 / var)
        return logsumexp(log_normal + log_w, axis=-1)

    @property
    def mean(self):
        return jnp.broadcast_to(self.loc, self.batch_shape)

    @property
    def variance(self):
        if self.mixing is None:
            s_mean = jnp.sum(jnp.exp(self.log_weights + self.log_scales), -1)
        else:
            s_mean = self.mixing.mean
        return jnp.broadcast_to(s_mean * self.scale**2, self.batch_shape)
