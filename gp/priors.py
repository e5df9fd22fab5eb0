r"""Priors on the readout variance :math:`\sigma^2 = \sigma_v^2` (note section 2).

Any NumPyro distribution with positive support can serve as the scale prior. This module
adds :class:`Constant` (the plain NNGP) and names the two heavy-tailed priors of the
paper: :func:`InverseGamma` (a Student-t process, closed form) and :func:`BurrXII`.
Build priors under float64 (these constructors do): a NumPyro distribution created
outside float64 mode stores float32 parameters.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints

from mixtures.base import x64_scope
from mixtures.distributions import BurrXII as _BurrXII

__all__ = ["BurrXII", "Constant", "InverseGamma", "resolve_prior"]


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
        with x64_scope():  # keep a Python float's full precision
            self.value = jnp.asarray(value, dtype=jnp.result_type(float))
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
        return jnp.zeros_like(self.value)


def InverseGamma(alpha=2.0, beta=2.0) -> dist.InverseGamma:  # noqa: N802 (a constructor)
    r"""Inverse-gamma prior :math:`\mathrm{IG}(\alpha, \beta)` (note section 2).

    :math:`p(s) = \frac{\beta^\alpha}{\Gamma(\alpha)} s^{-\alpha-1} e^{-\beta/s}`; the scale
    mixture is a Student-t process with :math:`2\alpha` degrees of freedom. Returns
    ``numpyro.distributions.InverseGamma(concentration=alpha, rate=beta)`` with float64
    parameters (a NumPyro distribution built outside float64 mode stores float32).
    """
    with x64_scope():
        return dist.InverseGamma(
            concentration=jnp.asarray(alpha, jnp.float64), rate=jnp.asarray(beta, jnp.float64)
        )


def BurrXII(c=2.0, d=2.0, scale=1.0):  # noqa: N802 (a constructor)
    r"""Burr type XII prior (note section 2), :class:`mixtures.distributions.BurrXII`.

    :math:`p(s) = c\,d\,s^{c-1}(1 + s^c)^{-d-1}`, a power tail of index :math:`cd`
    (scale 1 in the paper). Built with float64 parameters.
    """
    with x64_scope():
        return _BurrXII(
            jnp.asarray(c, jnp.float64),
            jnp.asarray(d, jnp.float64),
            jnp.asarray(scale, jnp.float64),
        )


_NAMED = {
    "constant": lambda: Constant(1.0),
    "inverse_gamma": lambda: InverseGamma(2.0, 2.0),
    "burr12": lambda: BurrXII(2.0, 2.0),
}


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

    ``None`` is ``InverseGamma(2, 2)`` (the note's recommended default); the strings
    ``"constant"``, ``"inverse_gamma"``, ``"burr12"`` give those priors with default
    parameters; a NumPyro distribution with positive support is used as given.
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
