"""Pieces of the scikit-learn estimator contract shared by every mixproc model.

Every estimator in ``mixtures``, ``gp`` and ``gmm`` follows the same shell:

1. validate (:func:`check_array_finite` / :meth:`MixprocEstimator._validate_X`),
2. turn ``random_state`` into a JAX key (:func:`random_state_to_key`),
3. make one call into a jitted functional core inside :func:`x64_scope`, so the result
   is float64-accurate whatever the user's global JAX configuration,
4. check the result outside ``jit`` (:func:`check_finite_result`),
5. store NumPy fitted attributes (:func:`to_numpy`) and return ``self``.

Fitted estimators hold only NumPy arrays and plain Python objects, so they pickle
unchanged; :meth:`MixprocEstimator.__getstate__` converts any JAX array that slipped
through.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "MixprocEstimator",
    "check_finite_result",
    "random_state_to_key",
    "to_numpy",
    "x64_scope",
]


@contextlib.contextmanager
def x64_scope() -> Iterator[None]:
    """Compute in float64 inside this block, leaving the global JAX flag untouched.

    JAX silently downcasts float64 input to float32 unless x64 is enabled, and a
    float32 Cholesky returns NaN instead of raising. Every estimator runs its core in
    this scope.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> with x64_scope():
    ...     jnp.ones(2, dtype=jnp.float64).dtype
    dtype('float64')
    """
    with jax.enable_x64(True):
        yield


def random_state_to_key(random_state: Any) -> jax.Array:
    """Map a scikit-learn style ``random_state`` to a JAX PRNG key.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        ``None`` draws fresh entropy from NumPy (non-reproducible, as in scikit-learn);
        an int seeds the key directly; a NumPy generator is advanced by one draw.

    Returns
    -------
    key : jax.Array
        A ``jax.random.PRNGKey`` (uint32 array of shape (2,)).

    Raises
    ------
    ValueError
        If ``random_state`` is none of the accepted types.

    Examples
    --------
    >>> random_state_to_key(0).shape
    (2,)
    """
    if random_state is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(
                f"random_state must be a non-negative int; got {seed}. "
                "Pass a seed in [0, 2**32) or None."
            )
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(0, 2**31 - 1))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**31 - 1))
    else:
        raise ValueError(
            "random_state must be None, an int, a numpy RandomState or a numpy Generator; "
            f"got {type(random_state).__name__}. Pass e.g. random_state=0."
        )
    with x64_scope():
        return jax.random.PRNGKey(seed % (2**32))


def to_numpy(tree: Any) -> Any:
    """Convert every JAX array in a pytree to a NumPy array (fitted attributes are NumPy)."""
    return jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf, tree
    )


def check_finite_result(name: str, value: Any, remedy: str) -> None:
    """Raise ``ValueError`` if a computed quantity is not finite (checked outside ``jit``).

    Parameters
    ----------
    name : str
        What was computed, for the message.
    value : array-like
        The quantity.
    remedy : str
        What the user can change to fix it.
    """
    arr = np.asarray(value)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} is not finite ({n_bad} of {arr.size} entries are NaN or inf). {remedy}"
        )


class MixprocEstimator(BaseEstimator):
    """Base class of mixproc estimators: validation helpers and NumPy-only pickling.

    Subclasses follow scikit-learn's contract: ``__init__`` only stores its arguments,
    ``fit`` returns ``self`` and sets attributes ending in ``_``.
    """

    def _validate_X(self, X, *, reset: bool, y=None, **check_params):
        """Validate ``X`` (and ``y``) with scikit-learn's ``validate_data``.

        Rejects NaN/inf, wrong dimensionality and complex data with messages that say
        what was expected; returns float64 NumPy arrays.
        """
        check_params.setdefault("dtype", np.float64)
        check_params.setdefault("ensure_all_finite", True)
        if y is None:
            return validate_data(self, X, reset=reset, **check_params)
        return validate_data(self, X, y, reset=reset, **check_params)

    def _check_is_fitted(self) -> None:
        check_is_fitted(self)

    def __getstate__(self):
        state = super().__getstate__()
        return to_numpy(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def as_jax(x: Any, dtype=jnp.float64) -> jax.Array:
    """``jnp.asarray`` with an explicit dtype (call inside :func:`x64_scope`)."""
    return jnp.asarray(x, dtype=dtype)
