"""Closed-form arc-cosine NNGP / NTK recursions for dense ReLU and Erf networks.

These are the infinite-width kernels of fully connected networks in NTK
parameterisation (the arc-cosine kernel of Cho & Saul, 2009, for ReLU and Williams,
1997, for Erf, with the NTK recursion of Jacot et al., 2018). They are an independent
reference for the neural-tangents kernels (``tests/gp/test_neural_tangents_compat.py``
compares the two in float64) and a kernel in their own right for the ``"mlp"`` and
``"resnet"`` presets with ReLU or Erf activations.

References
----------
Y. Cho, L. K. Saul, "Kernel Methods for Deep Learning", NeurIPS 2009.

C. K. I. Williams, "Computing with Infinite Networks", NeurIPS 1997.

A. Jacot, F. Gabriel, C. Hongler, "Neural Tangent Kernel: Convergence and Generalization
in Neural Networks", NeurIPS 2018.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ArccosKernel", "arccos_kernel"]

_ACTIVATIONS = ("relu", "erf")
_ARCHITECTURES = ("mlp", "resnet")


class ArccosKernel(NamedTuple):
    """NNGP kernel and NTK of a dense network, each of shape (n1, n2)."""

    nngp: jax.Array
    ntk: jax.Array


def _moments(activation: str, k11, k22, k12):
    """E[phi(u) phi(u')], E[phi'(u) phi'(u')] for (u, u') ~ N(0, [[k11, k12], [k12, k22]])."""
    if activation == "relu":
        norm = jnp.sqrt(k11[:, None] * k22[None, :])
        cos = jnp.clip(k12 / norm, -1.0, 1.0)
        theta = jnp.arccos(cos)
        sin = jnp.sqrt(jnp.clip(1.0 - cos**2, 0.0, 1.0))
        e_phi = norm / (2 * jnp.pi) * (sin + (jnp.pi - theta) * cos)
        e_dphi = (jnp.pi - theta) / (2 * jnp.pi)
        # diagonals: E[relu(u)^2] = k / 2
        d11, d22 = k11 / 2, k22 / 2
    else:  # erf
        a1, a2 = 1 + 2 * k11, 1 + 2 * k22
        denom = a1[:, None] * a2[None, :]
        e_phi = 2 / jnp.pi * jnp.arcsin(jnp.clip(2 * k12 / jnp.sqrt(denom), -1.0, 1.0))
        e_dphi = 4 / jnp.pi / jnp.sqrt(denom - 4 * k12**2)
        d11 = 2 / jnp.pi * jnp.arcsin(2 * k11 / a1)
        d22 = 2 / jnp.pi * jnp.arcsin(2 * k22 / a2)
    return e_phi, e_dphi, d11, d22


@partial(jax.jit, static_argnames=("depth", "activation", "architecture"))
def arccos_kernel(
    x1: jax.Array,
    x2: jax.Array | None = None,
    *,
    depth: int = 2,
    W_std=1.5,
    b_std=0.05,
    readout_W_std=1.0,
    activation: str = "relu",
    architecture: str = "mlp",
) -> ArccosKernel:
    r"""Closed-form NNGP kernel and NTK of a dense ReLU/Erf network.

    With :math:`\sigma_w, \sigma_b` the hidden ``W_std, b_std`` and :math:`\sigma_v` the
    readout ``readout_W_std`` (no readout bias), NTK parameterisation:

    .. math::

        K^1 = \sigma_w^2\, x^\top x'/d + \sigma_b^2,\qquad \Theta^1 = K^1,\\
        K^{l+1} = \sigma_w^2\, \mathbb{E}[\phi(u)\phi(u')] + \sigma_b^2,\qquad
        \Theta^{l+1} = K^{l+1} + \sigma_w^2\, \mathbb{E}[\phi'(u)\phi'(u')]\,\Theta^l,\\
        K_{\mathrm{out}} = \sigma_v^2\, \mathbb{E}[\phi\phi'],\qquad
        \Theta_{\mathrm{out}} = K_{\mathrm{out}} + \sigma_v^2\, \mathbb{E}[\phi'\phi'']\,\Theta^L,

    with :math:`(u, u') \sim \mathcal N(0, K^l)`; for ReLU
    :math:`\mathbb E[\phi\phi'] =
    \frac{\sqrt{k_{11}k_{22}}}{2\pi}(\sin\theta + (\pi-\theta)\cos\theta)`,
    :math:`\mathbb E[\phi'\phi''] = \frac{\pi-\theta}{2\pi}`; for Erf
    :math:`\frac{2}{\pi}\arcsin\frac{2k_{12}}{\sqrt{(1+2k_{11})(1+2k_{22})}}` and
    :math:`\frac{4}{\pi}\big((1+2k_{11})(1+2k_{22}) - 4k_{12}^2\big)^{-1/2}`.

    ``architecture="mlp"`` is ``Dense -> act -> [Dense -> act] * (depth - 1) -> Dense``;
    ``"resnet"`` is ``Dense -> [x + Dense(act(x))] * depth -> act -> Dense``, whose
    block updates are :math:`K \leftarrow K + \sigma_w^2 \mathbb E[\phi\phi'] + \sigma_b^2`
    and :math:`\Theta \leftarrow \Theta + \sigma_w^2 \mathbb E[\phi\phi'] + \sigma_b^2
    + \sigma_w^2 \mathbb E[\phi'\phi'']\Theta`.

    Parameters
    ----------
    x1 : array of shape (n1, n_features)
    x2 : array of shape (n2, n_features), optional
        Defaults to ``x1``.
    depth : int
        Number of hidden layers (``"mlp"``) or residual blocks (``"resnet"``), >= 1.
    W_std, b_std : float
        Hidden-layer weight and bias standard deviations (may be traced).
    readout_W_std : float
        Readout weight standard deviation; 1 gives the kernel with the scale factored out.
    activation : {"relu", "erf"}
    architecture : {"mlp", "resnet"}

    Returns
    -------
    ArccosKernel
        ``nngp`` and ``ntk`` of shape (n1, n2).

    Examples
    --------
    >>> import numpy as np
    >>> from mixtures.base import x64_scope
    >>> with x64_scope():
    ...     k = arccos_kernel(np.eye(2), depth=1, W_std=1.0, b_std=0.0)
    >>> np.round(np.asarray(k.nngp), 4)
    array([[0.25  , 0.0796],
           [0.0796, 0.25  ]])
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}; got {activation!r}.")
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"architecture must be one of {_ARCHITECTURES}; got {architecture!r}.")
    if depth < 1:
        raise ValueError(f"depth must be >= 1; got {depth}.")
    x1 = jnp.asarray(x1)
    x2 = x1 if x2 is None else jnp.asarray(x2)
    d = x1.shape[-1]
    sw2, sb2, sv2 = W_std**2, b_std**2, readout_W_std**2
    k12 = sw2 * (x1 @ x2.T) / d + sb2
    k11 = sw2 * jnp.sum(x1**2, axis=-1) / d + sb2
    k22 = sw2 * jnp.sum(x2**2, axis=-1) / d + sb2
    t12 = k12
    if architecture == "mlp":
        for _ in range(depth - 1):
            e_phi, e_dphi, d11, d22 = _moments(activation, k11, k22, k12)
            k12_new = sw2 * e_phi + sb2
            t12 = k12_new + sw2 * e_dphi * t12
            k12, k11, k22 = k12_new, sw2 * d11 + sb2, sw2 * d22 + sb2
    else:
        for _ in range(depth):
            e_phi, e_dphi, d11, d22 = _moments(activation, k11, k22, k12)
            branch = sw2 * e_phi + sb2
            t12 = t12 + branch + sw2 * e_dphi * t12
            k12, k11, k22 = k12 + branch, k11 + sw2 * d11 + sb2, k22 + sw2 * d22 + sb2
    e_phi, e_dphi, _, _ = _moments(activation, k11, k22, k12)
    nngp = sv2 * e_phi
    ntk = nngp + sv2 * e_dphi * t12
    return ArccosKernel(nngp=nngp, ntk=ntk)
