"""GCD evaluation protocol: the "v2" clustering accuracy and the Old/New data split.

The protocol of generalized category discovery (Vaze et al., 2022), as evaluated by GPC
(Zhao, Wen & Han, 2023).

References
----------
S. Vaze, K. Han, A. Vedaldi, A. Zisserman, "Generalized Category Discovery", CVPR 2022.

B. Zhao, X. Wen, K. Han, "Learning Semi-supervised Gaussian Mixture Models for
Generalized Category Discovery", ICCV 2023.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from mixtures.base import random_state_to_generator

__all__ = ["GCDSplit", "cluster_accuracy", "make_gcd_split"]


def _as_labels(a, name: str) -> np.ndarray:
    """Class or cluster ids as a 1-d array: integers (integer-valued floats are cast) or
    any other sortable values such as strings."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d; got shape {a.shape}. Pass a flat array of labels.")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(
                f"{name} must hold class ids (integers or strings); got non-integer floats. "
                "Round or re-encode them (e.g. sklearn.preprocessing.LabelEncoder)."
            )
        return a.astype(np.int64)
    if a.dtype.kind in "iub":
        return a.astype(np.int64)
    try:
        np.unique(a)
    except TypeError as err:
        raise ValueError(
            f"{name} must hold ids of one sortable type (integers or strings); {err}."
        ) from err
    return a


def cluster_accuracy(y_true, y_pred, old_mask=None) -> dict[str, float]:
    """GCD clustering accuracy, protocol "v2" (one Hungarian matching).

    Predicted ids are compacted, the square contingency matrix
    ``w[p, t] = #{i : yhat_i = p, y_i = t}`` of size ``max(#clusters, #classes)`` is built
    (padding with empty phantom clusters/classes when the numbers differ) and one
    assignment maximising the matched count is found. Then

    .. math::

        \\mathrm{All} = \\frac{1}{M}\\sum_t w_{m(t), t},\\qquad
        \\mathrm{Old} = \\frac{\\sum_{t \\in \\mathrm{Old}} w_{m(t), t}}
        {\\#\\{i : y_i \\in \\mathrm{Old}\\}}

    and New likewise, all with the *same* matching. (The earlier "v1" protocol matched
    the Old and New subsets separately, which scores higher; the two are not comparable.)

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class ids (integers or strings).
    y_pred : array-like of shape (n_samples,)
        Predicted cluster ids (integers or strings, e.g. a model's ``classes_`` ids).
    old_mask : array-like of bool of shape (n_samples,), optional
        True where the sample's *true* class is an Old (labelled) class. If omitted, only
        ``"all"`` is meaningful and ``"old"``/``"new"`` are NaN.

    Returns
    -------
    dict with keys ``"all"``, ``"old"``, ``"new"`` (floats in [0, 1]).

    Examples
    --------
    >>> cluster_accuracy([0, 0, 1, 2], [1, 1, 0, 0], [True, True, False, False])
    {'all': 0.75, 'old': 1.0, 'new': 0.5}
    """
    y_true = _as_labels(y_true, "y_true")
    y_pred = _as_labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length; got {y_true.shape[0]} and "
            f"{y_pred.shape[0]}."
        )
    if y_true.size == 0:
        raise ValueError("cluster_accuracy needs at least one sample; got 0.")
    _, t = np.unique(y_true, return_inverse=True)
    classes = np.unique(y_true)
    _, p = np.unique(y_pred, return_inverse=True)
    size = max(p.max(), t.max()) + 1
    w = np.zeros((size, size), dtype=np.int64)
    np.add.at(w, (p, t), 1)
    rows, cols = linear_sum_assignment(w, maximize=True)
    matched = np.zeros(size, dtype=np.int64)  # matched count per (compact) true class
    matched[cols] = w[rows, cols]
    out = {"all": float(matched.sum() / y_true.size)}
    if old_mask is None:
        out["old"] = float("nan")
        out["new"] = float("nan")
        return out
    old_mask = np.asarray(old_mask, dtype=bool)
    if old_mask.shape != y_true.shape:
        raise ValueError(
            f"old_mask must have shape {y_true.shape}; got {old_mask.shape}. It flags the "
            "samples whose true class is an Old class."
        )
    old_classes = np.unique(y_true[old_mask])
    is_old_class = np.isin(classes, old_classes)
    for name, sel, cls in (("old", old_mask, is_old_class), ("new", ~old_mask, ~is_old_class)):
        denom = int(sel.sum())
        out[name] = float(matched[: classes.size][cls].sum() / denom) if denom else float("nan")
    return out


class GCDSplit(NamedTuple):
    """Result of :func:`make_gcd_split`."""

    y: np.ndarray  # (n_samples,) compact Old-class ids for labelled samples, -1 otherwise
    labelled_mask: np.ndarray  # (n_samples,) bool
    old_mask: np.ndarray  # (n_samples,) bool: true class is an Old class


def make_gcd_split(y, old_classes, labelled_fraction: float = 0.5, random_state=0) -> GCDSplit:
    """The GCD split: label a random fraction of the Old-class samples.

    As in Vaze et al. (2022), the labelled subset is drawn globally over all Old-class
    samples (not per class), without replacement. Labelled samples get the index of their
    class in ``old_classes`` (so ``old_classes = range(L)`` keeps the labels); every other
    sample gets ``-1``.

    Parameters
    ----------
    y : array-like of int of shape (n_samples,)
    old_classes : sequence of int
    labelled_fraction : float in (0, 1], default=0.5
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator

    Returns
    -------
    GCDSplit(y, labelled_mask, old_mask)

    Examples
    --------
    >>> s = make_gcd_split([0, 0, 1, 1, 2, 2], old_classes=[0, 1], labelled_fraction=0.5)
    >>> int(s.labelled_mask.sum()), s.old_mask.tolist()
    (2, [True, True, True, True, False, False])
    """
    y = _as_labels(y, "y")
    old_classes = _as_labels(np.asarray(list(old_classes)), "old_classes")
    if old_classes.size == 0 or np.unique(old_classes).size != old_classes.size:
        raise ValueError(
            f"old_classes must be a non-empty list of distinct class ids; got {old_classes}."
        )
    if not 0.0 < labelled_fraction <= 1.0:
        raise ValueError(f"labelled_fraction must be in (0, 1]; got {labelled_fraction}.")
    old_mask = np.isin(y, old_classes)
    idx = np.flatnonzero(old_mask)
    rng = random_state_to_generator(random_state)
    n_lab = int(round(labelled_fraction * idx.size))
    chosen = rng.choice(idx, size=n_lab, replace=False)
    labelled = np.zeros(y.shape, dtype=bool)
    labelled[chosen] = True
    lookup = {c: i for i, c in enumerate(old_classes.tolist())}
    y_semi = np.full(y.shape, -1, dtype=np.int64)
    y_semi[labelled] = [lookup[v] for v in y[labelled].tolist()]
    return GCDSplit(y_semi, labelled, old_mask)
