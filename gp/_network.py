"""The network kernel and parameter constraints shared by the gp estimators.

:class:`NetworkKernel` holds what the estimators' ``architecture``, ``depth``,
``activation``, ``W_std``, ``b_std``, ``kernel_fn`` and ``image_shape`` parameters
describe, and computes the kernel blocks they need (:mod:`gp.kernels` does the work).
:data:`PARAMETER_CONSTRAINTS` is the ``_parameter_constraints`` entry of every parameter
the regressor and the classifier share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import NamedTuple

import jax
import numpy as np
import numpyro.distributions as dist
from sklearn.utils._param_validation import Interval, StrOptions

from gp.kernels import (
    ACTIVATIONS,
    ARCHITECTURES,
    default_batch_size,
    jitted_kernel_fn,
    kernel_diagonal,
    kernel_matrix,
    preset_kernel,
    preset_kernel_fn,
    rectangular_kernel_matrix,
    symmetric_kernel_matrix,
)
from gp.priors import PRIOR_NAMES
from mixtures.base import RANDOM_STATE

__all__ = ["INFERENCES", "PARAMETER_CONSTRAINTS", "NetworkKernel"]

#: the ``inference`` options of the estimators
INFERENCES = ("auto", "closed_form", "quadrature", "importance", "nuts")

_POSITIVE = Interval(Real, 0, np.inf, closed="neither")

#: ``_parameter_constraints`` of the parameters both gp estimators take
PARAMETER_CONSTRAINTS = {
    "prior": [None, StrOptions(set(PRIOR_NAMES)), dist.Distribution],
    "kernel": [StrOptions({"nngp", "ntk"})],
    "architecture": [StrOptions(set(ARCHITECTURES))],
    "depth": [Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "W_std": [_POSITIVE],
    "b_std": [Interval(Real, 0, np.inf, closed="left")],
    "kernel_fn": [None, callable],
    "noise": [_POSITIVE],
    "inference": [StrOptions(set(INFERENCES))],
    "n_samples": [None, Interval(Integral, 1, None, closed="left")],
    "random_state": RANDOM_STATE,
    "image_shape": [None, tuple, list],
    "verbose": ["verbose"],
}


class NetworkKernel(NamedTuple):
    """NNGP/NTK kernel of a preset network or of a user's neural-tangents ``kernel_fn``.

    Attributes
    ----------
    architecture, depth, activation, W_std, b_std :
        The preset network (:func:`gp.kernels.build_network`); ignored when
        ``kernel_fn`` is given.
    kernel_fn : callable or None
        A neural-tangents analytic ``kernel_fn`` with readout ``W_std = 1``.
    image_shape : tuple or None
        ``(H, W, C)`` of flattened images for ``architecture="cnn"``.
    """

    architecture: str = "mlp"
    depth: int = 2
    activation: str = "relu"
    W_std: float = 1.5
    b_std: float = 0.05
    kernel_fn: Callable | None = None
    image_shape: tuple | None = None

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """``X`` as the network takes it: images of shape (n, H, W, C) for the CNN preset
        (a square single-channel image unless ``image_shape`` is given), else unchanged.

        Raises
        ------
        ValueError
            If the number of features does not match the image shape.
        """
        if self.kernel_fn is not None or self.architecture != "cnn":
            return X
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
                f"image_shape {tuple(shape)} has {int(np.prod(shape))} pixels; X has "
                f"{X.shape[1]} features."
            )
        return X.reshape((X.shape[0], *shape))

    def analytic_kernel_fn(self) -> Callable:
        """The neural-tangents ``kernel_fn``: the user's, or the (cached) preset's."""
        if self.kernel_fn is not None:
            return self.kernel_fn
        return preset_kernel_fn(
            self.architecture, int(self.depth), self.activation, self.W_std, self.b_std
        )

    def block_fn(self, get: str = "nngp") -> Callable:
        """``(x1, x2_or_None) -> K`` for one block: the jitted preset kernel (traced
        ``W_std``/``b_std``, so refits with other values never recompile) or the user's
        ``kernel_fn`` jitted once per function."""
        if self.kernel_fn is not None:
            return jitted_kernel_fn(self.kernel_fn, get)
        w, b = self.W_std, self.b_std
        static = dict(architecture=self.architecture, depth=int(self.depth))
        static.update(activation=self.activation, get=get)
        return lambda x1, x2: preset_kernel(x1, x2, w, b, **static)

    def matrix(self, x1, x2=None, get: str = "nngp", *, out=None, device: bool = False):
        """Kernel matrix ``K(x1, x2)`` (``x2=None``: symmetric ``K(x1, x1)``), float64.

        One device: square tiles of one padded shape (~512 rows), only the lower ones
        for a symmetric matrix (:func:`~gp.kernels.symmetric_kernel_matrix`), written
        into ``out`` when given. Several devices: ``nt.batch`` shards row blocks over
        them. ``device=True`` returns a JAX array computed in one call (accelerators).
        Call inside :func:`mixtures.base.x64_scope`.
        """
        if device:
            return self.block_fn(get)(x1, x2)
        if jax.device_count() > 1:
            n = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
            k = kernel_matrix(
                self.analytic_kernel_fn(), x1, x2, get=get, batch_size=default_batch_size(n)
            )
            if out is None:
                return k
            out[...] = k
            return out
        fn = self.block_fn(get)
        if x2 is None:
            return symmetric_kernel_matrix(fn, x1, out=out)
        return rectangular_kernel_matrix(fn, x1, x2, out=out)

    def diagonal(self, x, get: str = "nngp") -> np.ndarray:
        """Diagonal :math:`k(x_i, x_i)` (:func:`~gp.kernels.kernel_diagonal`)."""
        return kernel_diagonal(self.analytic_kernel_fn(), x, get=get)
