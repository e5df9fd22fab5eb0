"""Pieces of the scikit-learn estimator contract shared by every mixproc model.

Every estimator in ``mixtures``, ``gp`` and ``gmm`` follows the same shell:

1. validate its parameters against ``_parameter_constraints`` (scikit-learn's
   ``_validate_params``, with :data:`RANDOM_STATE` for seeds) and its data
   (:meth:`MixprocEstimator._validate_X`, :func:`encode_semi_labels`),
2. turn ``random_state`` into a JAX key (:func:`random_state_to_key`) or a NumPy generator
   (:func:`random_state_to_generator`); both accept the same values,
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
from typing import Any, NamedTuple

import jax
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "RANDOM_STATE",
    "MixprocEstimator",
    "SemiLabels",
    "check_finite_result",
    "check_no_overflow",
    "component_classes",
    "encode_semi_labels",
    "random_state_to_generator",
    "random_state_to_key",
    "random_state_to_random_state",
    "to_numpy",
    "x64_scope",
]

#: The ``_parameter_constraints`` entry of every ``random_state``: None, an int in
#: [0, 2**32), a ``numpy.random.RandomState`` or a ``numpy.random.Generator``.
RANDOM_STATE = ["random_state", np.random.Generator]


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


def _check_random_state_type(random_state: Any) -> None:
    generators = (np.random.RandomState, np.random.Generator)
    if random_state is None or isinstance(random_state, generators):
        return
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= int(random_state) < 2**32:
            raise ValueError(
                f"random_state must be an int in [0, 2**32); got {int(random_state)}. "
                "Pass a seed such as random_state=0, or None."
            )
        return
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or a numpy Generator; "
        f"got {type(random_state).__name__}. Pass e.g. random_state=0."
    )


def random_state_to_generator(random_state: Any) -> np.random.Generator:
    """Map a scikit-learn style ``random_state`` to a NumPy ``Generator``.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        ``None`` draws fresh entropy (non-reproducible, as in scikit-learn); an int (Python
        or NumPy) seeds ``numpy.random.default_rng``; a ``Generator`` is returned as is (so
        successive calls continue its stream); a ``RandomState`` seeds a new generator with
        one draw from it.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    ValueError
        If ``random_state`` is none of the accepted types, or a negative int.

    Examples
    --------
    >>> a = random_state_to_generator(0).integers(100, size=3)
    >>> b = random_state_to_generator(np.int64(0)).integers(100, size=3)
    >>> bool((a == b).all())
    True
    """
    _check_random_state_type(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(0, 2**31 - 1)))
    if random_state is None:
        return np.random.default_rng()
    return np.random.default_rng(int(random_state))


def random_state_to_random_state(random_state: Any) -> np.random.RandomState:
    """Map a ``random_state`` to the legacy ``numpy.random.RandomState`` that scikit-learn
    routines take, exactly as scikit-learn's ``check_random_state`` does for None, ints and
    ``RandomState`` (so a mixproc estimator and its scikit-learn counterpart seeded alike
    draw alike); a ``Generator`` seeds a new ``RandomState`` with one draw from it.

    Accepts exactly what :func:`random_state_to_generator` accepts.
    """
    _check_random_state_type(random_state)
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(int(random_state.integers(0, 2**31 - 1)))
    return check_random_state(random_state)


def random_state_to_key(random_state: Any) -> jax.Array:
    """Map a scikit-learn style ``random_state`` to a JAX PRNG key.

    Accepts exactly what :func:`random_state_to_generator` accepts.

    Parameters
    ----------
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        ``None`` draws fresh entropy from NumPy (non-reproducible, as in scikit-learn);
        an int (Python or NumPy) seeds the key directly; a NumPy generator is advanced by one
        draw.

    Returns
    -------
    key : jax.Array
        A ``jax.random.PRNGKey`` (uint32 array of shape (2,)).

    Raises
    ------
    ValueError
        If ``random_state`` is none of the accepted types, or a negative int.

    Examples
    --------
    >>> random_state_to_key(0).shape
    (2,)
    """
    _check_random_state_type(random_state)
    if random_state is None:
        seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(0, 2**31 - 1))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**31 - 1))
    else:
        seed = int(random_state)
    with x64_scope():
        return jax.random.PRNGKey(seed % (2**32))


def check_no_overflow(X, name: str = "X") -> None:
    """Raise ``ValueError`` when ``X`` is so large that squares and sums of it overflow.

    Every model here forms squared distances, scatter matrices or kernels, which overflow
    float64 (about 1.8e308) long before ``X`` itself does: with ``max|x| > 1e150`` a squared
    norm is already infinite, and the failure would surface later as a wrong clustering,
    NaN predictions or a "singular covariance". Say what happened instead.

    Examples
    --------
    >>> check_no_overflow(np.ones((3, 2)))
    >>> try:
    ...     check_no_overflow(np.full((3, 2), 1e300))
    ... except ValueError as err:
    ...     print(str(err)[:44])
    X has entries up to 1e+300 in absolute value
    """
    arr = np.asarray(X)
    if arr.dtype.kind not in "fc" or arr.size == 0:
        return
    biggest = float(np.max(np.abs(arr)))
    if biggest > 1e150:
        raise ValueError(
            f"{name} has entries up to {biggest:.3g} in absolute value: squared distances and "
            "covariances of such values overflow float64. Scale the data first, e.g. with "
            "sklearn.preprocessing.StandardScaler."
        )


class SemiLabels(NamedTuple):
    """Semi-supervised labels encoded for a model with one component per known class.

    Attributes
    ----------
    codes : ndarray of int64, shape (n_samples,)
        ``0..L-1`` for a labelled sample (the index of its class in ``known``), ``-1``
        for an unlabelled one.
    known : ndarray of shape (L,)
        The user's ids of the known classes, sorted (``np.unique`` order); component
        ``j < L`` of a fitted model is class ``known[j]``.
    """

    codes: np.ndarray
    known: np.ndarray


def _unlabelled_mask(y: np.ndarray, unlabelled: Any) -> np.ndarray:
    if not (isinstance(unlabelled, str) and unlabelled == "auto"):
        if unlabelled is None:
            return np.array([v is None for v in y.ravel()], dtype=bool)
        if isinstance(unlabelled, float) and np.isnan(unlabelled):
            return np.array([isinstance(v, float) and np.isnan(v) for v in y.tolist()])
        return np.asarray(y == unlabelled, dtype=bool).reshape(y.shape)
    if y.dtype.kind in "iu":
        return y == -1
    if y.dtype.kind == "b":
        return np.zeros(y.shape, dtype=bool)
    if y.dtype.kind == "f":
        return (y == -1) | np.isnan(y)
    if y.dtype.kind in "OUS":
        return np.array(
            [v is None or (isinstance(v, float) and np.isnan(v)) for v in y.tolist()],
            dtype=bool,
        )
    raise ValueError(
        f"Unknown label type: y has dtype {y.dtype}. Pass integer or string class ids "
        "(-1 or None for unlabelled samples)."
    )


def encode_semi_labels(
    y, n_samples: int, n_components: int | None = None, *, unlabelled: Any = "auto"
) -> SemiLabels:
    """Encode semi-supervised labels as scikit-learn estimators accept them.

    Class ids may be any integers or strings (any hashable values NumPy can sort);
    they are mapped to ``0..L-1`` in sorted order, so that component ``j < L`` of a
    model with one component per known class is the class ``known[j]``. Unlabelled
    samples are marked by ``unlabelled``: with ``"auto"``, ``-1`` for integer labels
    (as in ``sklearn.semi_supervised``), ``-1`` or NaN for float labels and ``None``
    (or NaN) for object or string labels. ``y=None`` means no labels at all.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or None
    n_samples : int
        Number of rows of ``X`` (``y`` must match).
    n_components : int, optional
        When the number of components is fixed: at most this many known classes.
    unlabelled : "auto" or scalar, default="auto"
        The value that marks an unlabelled sample.

    Returns
    -------
    SemiLabels
        ``codes`` (``-1`` unlabelled, ``0..L-1`` known) and the sorted ``known`` ids.

    Raises
    ------
    ValueError
        On a shape mismatch, non-integer float labels, labels that cannot be sorted
        (mixed types) or more known classes than ``n_components``.

    Examples
    --------
    >>> enc = encode_semi_labels(["cat", None, "dog", "cat"], 4)
    >>> enc.codes.tolist(), enc.known.tolist()
    ([0, -1, 1, 0], ['cat', 'dog'])
    >>> encode_semi_labels([7, -1, 5], 3).codes.tolist()
    [1, -1, 0]
    """
    if y is None:
        return SemiLabels(np.full(n_samples, -1, dtype=np.int64), np.array([], dtype=np.int64))
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"y must have shape ({n_samples},) to match X; got {y.shape}. Pass one label per "
            "sample, -1 (or None for string labels) for unlabelled samples."
        )
    missing = _unlabelled_mask(y, unlabelled)
    values = y[~missing]
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise ValueError(
                "y holds non-integer float values; class ids must be integers or strings "
                "(-1 or NaN for unlabelled samples). Round or re-encode the labels."
            )
        values = values.astype(np.int64)
    if values.dtype.kind == "O":
        kinds = {type(v) for v in values.tolist()}
        if (
            len(
                {
                    str if issubclass(t, str) else int if issubclass(t, numbers.Integral) else t
                    for t in kinds
                }
            )
            > 1
        ):
            raise ValueError(
                f"y mixes label types {sorted(t.__name__ for t in kinds)}; class ids must be "
                "all integers or all strings (None for unlabelled samples)."
            )
    try:
        known, codes = np.unique(values, return_inverse=True)
    except TypeError as err:
        raise ValueError(
            f"the class ids in y cannot be sorted ({err}); pass integers or strings."
        ) from err
    if n_components is not None and known.size > n_components:
        raise ValueError(
            f"y has {known.size} known classes but n_components={n_components}: each known "
            f"class needs its own component. Use n_components >= {known.size} (or None)."
        )
    out = np.full(n_samples, -1, dtype=np.int64)
    out[~missing] = codes.ravel()
    return SemiLabels(out, known)


def component_classes(known: np.ndarray, n_components: int) -> np.ndarray:
    """The ``classes_`` of a model whose first ``L`` components are the known classes.

    Component ``j < L`` is ``known[j]``; the other components get ids that cannot
    collide with a known one: for integer ids, ``max(known) + 1, max(known) + 2, ...``
    (``L, L+1, ...`` when the known ids are ``0..L-1``); for string ids, ``"new_0"``,
    ``"new_1"``, ... skipping any name already taken by a known class.

    Examples
    --------
    >>> component_classes(np.array([5, 7]), 4).tolist()
    [5, 7, 8, 9]
    >>> component_classes(np.array(["cat", "new_0"]), 4).tolist()
    ['cat', 'new_0', 'new_1', 'new_2']
    """
    known = np.asarray(known)
    n_new = int(n_components) - known.size
    if n_new < 0:
        raise ValueError(f"{known.size} known classes need at least {known.size} components.")
    if known.size == 0 or known.dtype.kind in "iub":
        start = int(known.max()) + 1 if known.size else 0
        return np.concatenate([known.astype(np.int64), np.arange(start, start + n_new)])
    taken = set(known.tolist())
    fresh, j = [], 0
    while len(fresh) < n_new:
        if f"new_{j}" not in taken:
            fresh.append(f"new_{j}")
        j += 1
    out = np.empty(int(n_components), dtype=object)
    out[: known.size] = known.tolist()
    out[known.size :] = fresh
    return out


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
            out = validate_data(self, X, reset=reset, **check_params)
            check_no_overflow(out)
            return out
        out = validate_data(self, X, y, reset=reset, **check_params)
        check_no_overflow(out[0])
        return out

    def _validate_params(self):
        """scikit-learn's ``_parameter_constraints`` check, plus: ``True``/``False`` are not
        accepted where a number is expected (``bool`` is an ``int`` to Python, and
        ``max_iter=True`` is always a mistake)."""
        super()._validate_params()
        params = self.get_params(deep=False)
        for name, options in getattr(self, "_parameter_constraints", {}).items():
            value = params.get(name)
            if not isinstance(value, (bool, np.bool_)) or "boolean" in options:
                continue
            if any(isinstance(o, Interval) for o in options):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be a number, not a "
                    f"bool; got {value!r}. Pass e.g. {name}=1."
                )

    def _check_is_fitted(self) -> None:
        check_is_fitted(self)

    def __getstate__(self):
        state = super().__getstate__()
        return to_numpy(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags
