"""The PMOE policy distribution: a mixture of tanh-squashed diagonal Gaussians.

:class:`MixturePolicy` is a NumPyro ``Distribution`` (a pytree, ``jit``/``vmap``/``grad``
safe) in the style of :mod:`mixtures.distributions`. Besides ``log_prob`` and ``sample`` it
draws one reparameterised action per primitive (:meth:`MixturePolicy.rsample_components`),
the sampling step of PMOE's frequency approximate gradient (Ren et al. 2021, arXiv
2104.09122; the policy of the official code rlkit-pmoe).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints
from numpyro.distributions.util import validate_sample

__all__ = ["ComponentSample", "MixturePolicy", "tanh_log_det_jacobian"]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
    r"""Elementwise :math:`\log(1 - \tanh(u)^2)` in the overflow-free form.

    .. math::

        \log(1 - \tanh^2 u) = 2\,(\log 2 - u - \operatorname{softplus}(-2u))

    (RLkit, on which the official PMOE code is built, adds an epsilon inside the log
    instead.)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(tanh_log_det_jacobian(jnp.array(0.0))), 6)
    0.0
    """
    return 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))


class ComponentSample(NamedTuple):
    """One reparameterised draw per primitive.

    Attributes
    ----------
    action : array of shape (..., K, A)
        ``a_k = tanh(mu_k + sigma_k * eps_k)``.
    pre_tanh : array of shape (..., K, A)
        ``u_k = mu_k + sigma_k * eps_k``.
    log_prob : array of shape (..., K)
        Each primitive's own log-density ``log pi_k(a_k | s)`` (tanh correction included,
        summed over action dimensions) -- not the mixture density.
    """

    action: jax.Array
    pre_tanh: jax.Array
    log_prob: jax.Array


class MixturePolicy(dist.Distribution):
    r"""Mixture of K tanh-squashed diagonal Gaussians with mixing logits.

    .. math::

        \pi(a \mid s) = \sum_{k=1}^K w_k(s)\,\mathrm{TanhNormal}(a;\, \mu_k(s), \sigma_k(s)),
        \qquad w(s) = \mathrm{softmax}(z(s))

        \log \pi_k(a \mid s) = \sum_d \Big[\log \mathcal N(u_d;\, \mu_{kd}, \sigma_{kd})
            - \log(1 - \tanh^2 u_d)\Big],\qquad u = \operatorname{artanh}(a)

    With K = 1 this is the tanh-Gaussian policy of SAC.

    Parameters
    ----------
    logits : array of shape (..., K)
        Mixing logits ``z(s)``.
    loc : array of shape (..., K, A)
        Pre-tanh means.
    scale : array of shape (..., K, A)
        Pre-tanh standard deviations (positive).

    Notes
    -----
    ``log_prob(a)`` inverts the tanh, which loses precision as ``|a| -> 1`` in float32; when
    the pre-tanh value is known use :meth:`log_prob_pre_tanh`. The tanh correction is shared
    by all components because they all map the same ``u`` to ``a``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> pi = MixturePolicy(jnp.zeros(2), jnp.array([[-1.0], [1.0]]), jnp.ones((2, 1)))
    >>> round(float(pi.log_prob(jnp.array([0.0]))), 4)  # 2 * N(0; 1, 1) / 2
    -1.4189
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "loc": constraints.independent(constraints.real_vector, 1),
        "scale": constraints.independent(constraints.positive, 2),
    }
    support = constraints.independent(constraints.interval(-1.0, 1.0), 1)
    pytree_data_fields = ("logits", "loc", "scale")

    def __init__(self, logits, loc, scale, *, validate_args=None):
        logits = jnp.asarray(logits)
        loc = jnp.asarray(loc)
        scale = jnp.asarray(scale)
        if loc.ndim < 2:
            raise ValueError(
                f"loc must have shape (..., K, A); got shape {loc.shape}. "
                "Use loc[..., None, :] for a single primitive."
            )
        K, A = loc.shape[-2:]
        if logits.shape[-1:] != (K,):
            raise ValueError(
                f"logits must have shape (..., {K}) to match loc (..., {K}, {A}); "
                f"got {logits.shape}."
            )
        if scale.shape[-2:] != (K, A):
            raise ValueError(
                f"scale must have shape (..., {K}, {A}) to match loc; got {scale.shape}."
            )
        self.logits = logits
        self.loc = loc
        self.scale = scale
        batch_shape = jax.lax.broadcast_shapes(logits.shape[:-1], loc.shape[:-2], scale.shape[:-2])
        super().__init__(batch_shape=batch_shape, event_shape=(A,), validate_args=validate_args)

    @classmethod
    def from_log_scale(cls, logits, loc, log_scale, **kwargs) -> MixturePolicy:
        """Build from log standard deviations (the network's output)."""
        return cls(logits, loc, jnp.exp(log_scale), **kwargs)

    @property
    def n_components(self) -> int:
        return self.loc.shape[-2]

    @property
    def weights(self) -> jax.Array:
        """Mixing weights ``w(s) = softmax(z(s))``, shape (..., K)."""
        return jax.nn.softmax(self.logits, axis=-1)

    @property
    def log_weights(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits, axis=-1)

    def component_log_prob_pre_tanh(self, u):
        """Per-primitive log densities at ``a = tanh(u)``: ``u`` (..., A) -> (..., K)."""
        z = (u[..., None, :] - self.loc) / self.scale
        log_normal = -0.5 * z**2 - jnp.log(self.scale) - 0.5 * _LOG_2PI
        return jnp.sum(log_normal, -1) - jnp.sum(tanh_log_det_jacobian(u), -1)[..., None]

    def _atanh(self, value):
        eps = jnp.finfo(jnp.result_type(value, float)).eps
        return jnp.arctanh(jnp.clip(value, -1.0 + eps, 1.0 - eps))

    def component_log_prob(self, value):
        """Per-primitive log densities ``log pi_k(a | s)``, shape (..., K)."""
        return self.component_log_prob_pre_tanh(self._atanh(value))

    def log_prob_pre_tanh(self, u):
        """Mixture log density at ``a = tanh(u)`` (no artanh round trip)."""
        return logsumexp(self.log_weights + self.component_log_prob_pre_tanh(u), axis=-1)

    @validate_sample
    def log_prob(self, value):
        return self.log_prob_pre_tanh(self._atanh(value))

    def responsibilities(self, value):
        r"""Posterior primitive probabilities :math:`p(k \mid a, s)`, shape (..., K)."""
        return jax.nn.softmax(self.log_weights + self.component_log_prob(value), axis=-1)

    def rsample_components(self, key, sample_shape=()) -> ComponentSample:
        """One reparameterised action per primitive with its own log density (not the mixture's)."""
        shape = tuple(sample_shape) + self.batch_shape + self.loc.shape[-2:]
        eps = jax.random.normal(key, shape, dtype=jnp.result_type(self.loc, float))
        u = self.loc + self.scale * eps
        z = eps  # (u - loc) / scale, exactly
        log_normal = -0.5 * z**2 - jnp.log(self.scale) - 0.5 * _LOG_2PI
        log_prob = jnp.sum(log_normal - tanh_log_det_jacobian(u), -1)
        return ComponentSample(jnp.tanh(u), u, log_prob)

    def sample_with_intermediates(self, key, sample_shape=()):
        """Draw ``k ~ Cat(w)`` then ``a ~ TanhNormal_k``; returns ``(a, [k, u])``."""
        shape = tuple(sample_shape) + self.batch_shape
        K, A = self.loc.shape[-2:]
        key_k, key_eps = jax.random.split(key)
        k = jax.random.categorical(key_k, jnp.broadcast_to(self.logits, shape + (K,)))
        eps = jax.random.normal(key_eps, shape + (A,), dtype=jnp.result_type(self.loc, float))
        idx = k[..., None, None]
        loc = jnp.take_along_axis(jnp.broadcast_to(self.loc, shape + (K, A)), idx, -2)[..., 0, :]
        scale = jnp.take_along_axis(jnp.broadcast_to(self.scale, shape + (K, A)), idx, -2)
        u = loc + scale[..., 0, :] * eps
        return jnp.tanh(u), [k, u]

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    def component_modes(self) -> jax.Array:
        """The primitives' deterministic actions ``tanh(mu_k)``, shape (..., K, A)."""
        return jnp.tanh(self.loc)
