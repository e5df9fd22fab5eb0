"""NNGP / NTK kernels with the readout variance factored out.

Any neural-tangents ``stax`` network defines a kernel. The presets build
``"mlp"``, ``"cnn"`` and ``"resnet"`` networks whose readout has ``W_std = 1`` and no
bias, so the readout variance :math:`\\sigma_v^2` is left to the scale prior:
:math:`f \\mid \\sigma_v^2 \\sim \\mathcal{GP}(0, \\sigma_v^2 K)`.

Kernel matrices are computed in float64. Large inputs are computed in row blocks with
``nt.batch``, which also spreads the blocks over ``jax.devices()`` when there are
several.

References
----------
H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian Processes",
ICLR 2022.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial

import jax
import numpy as np

from gp._neural_tangents import nt, stax

__all__ = [
    "ARCHITECTURES",
    "ACTIVATIONS",
    "build_network",
    "default_batch_size",
    "jitted_kernel_fn",
    "kernel_diagonal",
    "kernel_matrix",
    "preset_kernel",
    "preset_kernel_fn",
    "rectangular_kernel_matrix",
    "symmetric_kernel_matrix",
]

ARCHITECTURES = ("mlp", "cnn", "resnet")
ACTIVATIONS = ("relu", "erf", "gelu")
_GETS = ("nngp", "ntk")


def _activation(name: str):
    if name == "relu":
        return stax.Relu()
    if name == "erf":
        return stax.Erf()
    if name == "gelu":
        return stax.Gelu()
    raise ValueError(f"activation must be one of {ACTIVATIONS}; got {name!r}.")


def _check_structure(architecture: str, depth: int, activation: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"architecture must be one of {ARCHITECTURES}; got {architecture!r}. "
            "Pass kernel_fn=... for other networks."
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {activation!r}.")
    if not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"depth must be an int >= 1; got {depth!r}.")


def build_network(
    architecture: str = "mlp",
    depth: int = 2,
    activation: str = "relu",
    W_std=1.5,
    b_std=0.05,
    *,
    width: int = 512,
    n_outputs: int = 1,
    readout_W_std=1.0,
):
    """Return the ``(init_fn, apply_fn, kernel_fn)`` triple of a preset network.

    ``"mlp"``: ``[Dense(width, W_std, b_std) -> act] * depth -> Dense(n_outputs, readout_W_std)``.
    ``"resnet"``: ``Dense -> [x + Dense(act(x))] * depth -> act -> Dense`` (dense ResNet of
    the NeurIPS experiments). ``"cnn"``: ``[Conv(width, 3x3, SAME) -> act] * depth ->
    Flatten -> Dense`` (no pooling, as in the classification experiments of Lee et al.,
    2022); its inputs are images of shape
    (n, H, W, C). The readout has no bias; ``W_std``/``b_std`` may be traced.

    Examples
    --------
    >>> _, _, kernel_fn = build_network("mlp", depth=1, W_std=1.0, b_std=0.0)
    >>> import numpy as np
    >>> float(np.round(kernel_fn(np.ones((1, 2)), None, "nngp")[0, 0], 4))
    0.5
    """
    _check_structure(architecture, depth, activation)
    act = _activation(activation)
    if architecture == "mlp":
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(width, W_std, b_std), act]
    elif architecture == "resnet":
        block = stax.serial(
            stax.FanOut(2),
            stax.parallel(stax.Identity(), stax.serial(act, stax.Dense(width, W_std, b_std))),
            stax.FanInSum(),
        )
        layers = [stax.Dense(width, W_std, b_std)] + [block] * depth + [act]
    else:
        layers = []
        for _ in range(depth):
            layers += [stax.Conv(width, (3, 3), padding="SAME", W_std=W_std, b_std=b_std), act]
        layers += [stax.Flatten()]
    layers += [stax.Dense(n_outputs, readout_W_std)]
    return stax.serial(*layers)


@partial(jax.jit, static_argnames=("architecture", "depth", "activation", "get"))
def preset_kernel(
    x1: jax.Array,
    x2: jax.Array | None,
    W_std,
    b_std,
    *,
    architecture: str = "mlp",
    depth: int = 2,
    activation: str = "relu",
    get: str = "nngp",
) -> jax.Array:
    """Kernel block of a preset network, jitted with traced ``W_std`` and ``b_std``.

    Differentiable in ``W_std`` and ``b_std`` (used by type-II maximum likelihood) and a
    grid over them never recompiles. Readout ``W_std = 1``.
    """
    kernel_fn = build_network(architecture, depth, activation, W_std, b_std)[2]
    return kernel_fn(x1, x2, get)


@functools.lru_cache(maxsize=32)
def preset_kernel_fn(
    architecture: str, depth: int, activation: str, W_std: float, b_std: float
) -> Callable:
    """The analytic ``kernel_fn`` of a preset network (:func:`build_network`), cached per
    argument tuple so that its jitted wrappers are reused across calls."""
    return build_network(architecture, depth, activation, W_std, b_std)[2]


@functools.lru_cache(maxsize=32)
def jitted_kernel_fn(kernel_fn: Callable, get: str) -> Callable:
    """``jax.jit`` of ``(x1, x2_or_None) -> kernel_fn(x1, x2, get)``, one per function and
    ``get`` (cached, so repeated calls with the same ``kernel_fn`` never recompile)."""
    return jax.jit(lambda a, b: kernel_fn(a, b, get))


@functools.lru_cache(maxsize=32)
def _jitted_diag(kernel_fn: Callable, get: str):
    return jax.jit(jax.vmap(lambda x: kernel_fn(x[None], None, get)[0, 0]))


@functools.lru_cache(maxsize=32)
def _batched(kernel_fn: Callable, batch_size: int, device_count: int):
    return nt.batch(
        kernel_fn, batch_size=batch_size, device_count=device_count, store_on_device=False
    )


def _pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    n = x.shape[0]
    n_pad = (-n) % multiple
    if n_pad == 0:
        return x
    return np.concatenate([x, np.zeros((n_pad,) + x.shape[1:], x.dtype)], axis=0)


def _check_get(get: str) -> None:
    if get not in _GETS:
        raise ValueError(f"get must be one of {_GETS}; got {get!r}.")


def kernel_matrix(
    kernel_fn: Callable,
    x1,
    x2=None,
    *,
    get: str = "nngp",
    batch_size: int = 0,
) -> np.ndarray:
    """Kernel matrix ``kernel_fn(x1, x2, get)`` in float64, in blocks when asked.

    Parameters
    ----------
    kernel_fn : callable
        A neural-tangents analytic ``kernel_fn`` (e.g. the third element of a
        ``stax.serial``), with the readout variance factored out.
    x1 : array-like of shape (n1, ...)
    x2 : array-like of shape (n2, ...), optional
        Defaults to ``x1`` (symmetric matrix).
    get : {"nngp", "ntk"}
    batch_size : int
        Row/column block size; ``0`` computes in one piece. With several
        ``jax.devices()`` the blocks are spread over them (``nt.batch``). Inputs are
        zero-padded to a multiple of ``batch_size * device_count`` and the padding cut off.

    Returns
    -------
    ndarray of shape (n1, n2)
        Must be called inside :func:`mixtures.base.x64_scope` for float64.
    """
    _check_get(get)
    x1 = np.asarray(x1, dtype=np.float64)
    x2a = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    n1, n2 = x1.shape[0], x2a.shape[0]
    n_dev = jax.device_count()
    if batch_size <= 0 or (max(n1, n2) <= batch_size and n_dev == 1):
        return np.asarray(jitted_kernel_fn(kernel_fn, get)(x1, None if x2 is None else x2a))
    device_count = n_dev if n_dev > 1 else 0
    multiple = batch_size * max(device_count, 1)
    batched = _batched(kernel_fn, int(batch_size), device_count)
    p1 = _pad_rows(x1, multiple)
    if x2 is None:
        out = batched(p1, None, get)
    else:
        out = batched(p1, _pad_rows(x2a, batch_size), get)
    return np.asarray(out)[:n1, :n2]


def kernel_diagonal(kernel_fn: Callable, x, *, get: str = "nngp", batch_size: int = 1024):
    """Diagonal ``k(x_i, x_i)`` without forming the full matrix, in blocks of ``batch_size``."""
    _check_get(get)
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    fn = _jitted_diag(kernel_fn, get)
    bs = max(1, min(batch_size, n))
    xp = _pad_rows(x, bs)
    parts = [np.asarray(fn(xp[i : i + bs])) for i in range(0, xp.shape[0], bs)]
    return np.concatenate(parts)[:n]


def _symmetric_block_size(n: int, target: int = 512) -> int:
    """Block size for :func:`symmetric_kernel_matrix`: ~``target`` rows, a multiple of 8,
    splitting ``n`` into equal blocks (so the padding is < 8 rows per block)."""
    n_blocks = max(1, math.ceil(n / target))
    return int(math.ceil(math.ceil(n / n_blocks) / 8) * 8)


def symmetric_kernel_matrix(
    block_fn: Callable, x, *, block_size: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    r"""Symmetric kernel matrix :math:`K_{XX}` from its lower-triangular blocks only.

    With :math:`b` blocks per side only the :math:`b(b+1)/2` blocks :math:`K_{IJ}`,
    :math:`J \le I`, are evaluated (about half the kernel cost for large :math:`b`); each
    off-diagonal block is written to both :math:`(I, J)` and, mirrored, :math:`(J, I)`.
    Every block has the same padded shape, so a jitted ``block_fn`` compiles twice (a
    diagonal block ``block_fn(x_I, None)`` and an off-diagonal one ``block_fn(x_I, x_J)``)
    whatever ``n``.

    Parameters
    ----------
    block_fn : callable
        ``block_fn(x1, x2_or_None) -> array of shape (n1, n2)`` (float64).
    x : array-like of shape (n, ...)
    block_size : int
        Rows per block; ``0`` picks ~512 (see ``_symmetric_block_size``).
    out : ndarray of shape (n, n), optional
        Written in place (any memory order); a new C-ordered array otherwise. Nothing
        else of size (n, n) is allocated.

    Returns
    -------
    ndarray of shape (n, n)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(5.0)[:, None]
    >>> k = symmetric_kernel_matrix(lambda a, b: a @ (a if b is None else b).T, x, block_size=2)
    >>> bool(np.array_equal(k, x @ x.T))
    True
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    b = int(block_size) if block_size > 0 else _symmetric_block_size(n)
    if out is None:
        out = np.empty((n, n), dtype=np.float64)
    if n <= b:
        out[...] = np.asarray(block_fn(x, None))
        return out
    xp = _pad_rows(x, b)
    starts = range(0, n, b)
    for i in starts:
        ie = min(i + b, n)
        xi = xp[i : i + b]
        out[i:ie, i:ie] = np.asarray(block_fn(xi, None))[: ie - i, : ie - i]
        for j in range(0, i, b):
            blk = np.asarray(block_fn(xi, xp[j : j + b]))[: ie - i]
            out[i:ie, j : j + b] = blk
            out[j : j + b, i:ie] = blk.T
    return out


def rectangular_kernel_matrix(
    block_fn: Callable, x1, x2, *, block_size: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """Cross kernel matrix ``K(x1, x2)`` in (block, block) tiles of one padded shape.

    Uses the same compiled off-diagonal ``block_fn(a, b)`` as
    :func:`symmetric_kernel_matrix` with the same ``block_size``.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    n1, n2 = x1.shape[0], x2.shape[0]
    b = int(block_size) if block_size > 0 else _symmetric_block_size(max(n1, n2))
    if out is None:
        out = np.empty((n1, n2), dtype=np.float64)
    if max(n1, n2) <= b:
        out[...] = np.asarray(block_fn(x1, x2))
        return out
    p1, p2 = _pad_rows(x1, b), _pad_rows(x2, b)
    for i in range(0, n1, b):
        ie = min(i + b, n1)
        for j in range(0, n2, b):
            je = min(j + b, n2)
            out[i:ie, j:je] = np.asarray(block_fn(p1[i : i + b], p2[j : j + b]))[: ie - i, : je - j]
    return out


def default_batch_size(n: int) -> int:
    """``batch_size`` of :func:`kernel_matrix` used by the estimators on several devices:
    the whole matrix up to 4096 rows, else 2048."""
    return 0 if n <= 4096 else 2048
