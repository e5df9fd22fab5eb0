r"""Priors on the readout variance :math:`\sigma^2 = \sigma_v^2` of the network.

Any NumPyro distribution with positive support can serve as the scale prior. This module
adds :class:`Constant` (the plain NNGP) and names the two heavy-tailed priors of Lee et
al. (2022): :func:`InverseGamma` (a Student-t process, closed form) and :class:`BurrXII`
(the class :class:`mixtures.distributions.BurrXII`). Python and NumPy parameters are
stored as NumPy float64 arrays: they keep their full precision whatever the global JAX
x64 flag, and constructing a prior emits no dtype warning.

References
----------
H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian Processes",
ICLR 2022.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from mixtures.distributions import BurrXII

__all__ = ["PRIOR_NAMES", "BurrXII", "Constant", "InverseGamma", "prior_kind", "resolve_prior"]


def _float64_param(value):
    """NumPy float64 for Python/NumPy input (``jnp.asarray`` would truncate it to float32
    when x64 is off); JAX arrays and tracers unchanged."""
    return value if isinstance(value, jax.Array) else np.asarray(value, dtype=np.float64)


class Constant(dist.Distribution):
    r"""Point mass at ``value`` on the positive reals: :math:`\sigma^2 = \mathrm{lv}`.

    The scale mixture is then the plain NNGP with readout variance ``value``.

    Examples
    --------
    >>> import jax
    >>> float(Constant(4.0).sample(jax.random.PRNGKey(0)))
    4.0
    """

    arg_constraints = {"value": constraints.positive}
    support = constraints.positive

    def __init__(self, value=1.0, *, validate_args=None):
        self.value = _float64_param(value)
        super().__init__(batch_shape=jnp.shape(self.value), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return jnp.broadcast_to(self.value, tuple(sample_shape) + self.batch_shape)

    def log_prob(self, value):
        return jnp.where(value == self.value, 0.0, -jnp.inf)

    @property
    def mean(self):
        return self.value

    @property
    def variance(self):
        return jnp.zeros_like(jnp.asarray(self.value))


def InverseGamma(alpha=2.0, beta=2.0) -> dist.InverseGamma:  # noqa: N802 (a constructor)
    r"""Inverse-gamma prior :math:`\mathrm{IG}(\alpha, \beta)` on the readout variance.

    .. math::

        p(s) = \frac{\beta^\alpha}{\Gamma(\alpha)} s^{-\alpha-1} e^{-\beta/s}

    The scale mixture is then a Student-t process with :math:`2\alpha` degrees of
    freedom. Returns ``numpyro.distributions.InverseGamma(concentration=alpha, rate=beta)``
    with float64 parameters.

    Examples
    --------
    >>> InverseGamma(2.0, 3.0).rate.dtype
    dtype('float64')
    """
    return dist.InverseGamma(concentration=_float64_param(alpha), rate=_float64_param(beta))


_NAMED = {
    "constant": lambda: Constant(1.0),
    "inverse_gamma": lambda: InverseGamma(2.0, 2.0),
    "burr12": lambda: BurrXII(2.0, 2.0),
}

#: the ``prior`` strings an estimator accepts
PRIOR_NAMES = tuple(_NAMED)


def prior_kind(prior: dist.Distribution) -> str:
    """``"constant"``, ``"inverse_gamma"`` (both closed form) or ``"other"``.

    Examples
    --------
    >>> prior_kind(InverseGamma(2.0, 2.0)), prior_kind(BurrXII(2.0, 2.0))
    ('inverse_gamma', 'other')
    """
    if isinstance(prior, Constant):
        return "constant"
    if isinstance(prior, dist.InverseGamma):
        return "inverse_gamma"
    return "other"


def _check_prior_params(prior: dist.Distribution) -> None:
    for name, constraint in getattr(prior, "arg_constraints", {}).items():
        if not hasattr(prior, name):
            continue
        val = np.asarray(getattr(prior, name))
        ok = np.all(np.isfinite(val)) and np.all(np.asarray(constraint(val)))
        if not ok:
            raise ValueError(
                f"prior parameter {name} of {type(prior).__name__} must satisfy {constraint} "
                f"and be finite; got {val}. Pass e.g. positive shape/scale parameters."
            )


def resolve_prior(prior) -> dist.Distribution:
    """Turn the estimator's ``prior`` argument into a NumPyro distribution.

    ``None`` is ``InverseGamma(2, 2)`` (a Student-t process with 4 degrees of freedom);
    the strings ``"constant"``, ``"inverse_gamma"``, ``"burr12"`` give ``Constant(1)``,
    ``InverseGamma(2, 2)`` and ``BurrXII(2, 2)``; a NumPyro distribution with positive
    support is used as given.

    Raises
    ------
    ValueError
        For an unknown string, a batched or non-scalar distribution, a distribution
        whose support is not positive, or parameters outside their constraints.
    """
    if prior is None:
        return InverseGamma(2.0, 2.0)
    if isinstance(prior, str):
        if prior not in _NAMED:
            raise ValueError(
                f"prior must be one of {sorted(_NAMED)}, None or a NumPyro distribution; "
                f"got {prior!r}."
            )
        return _NAMED[prior]()
    if not isinstance(prior, dist.Distribution):
        raise ValueError(
            "prior must be None, a string or a numpyro Distribution with positive support; "
            f"got {type(prior).__name__}."
        )
    if prior.batch_shape != () or prior.event_shape != ():
        raise ValueError(
            f"prior must be a scalar distribution; got batch_shape={prior.batch_shape}, "
            f"event_shape={prior.event_shape}."
        )
    support = prior.support
    lower = getattr(support, "lower_bound", None)
    if lower is None or np.any(np.asarray(lower) < 0):
        raise ValueError(
            f"prior must have positive support; {type(prior).__name__} has support {support}. "
            "Use e.g. InverseGamma, BurrXII, LogNormal, Gamma or HalfCauchy."
        )
    _check_prior_params(prior)
    return prior
