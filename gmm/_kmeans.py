"""GCD baselines: semi-supervised k-means and Brent class-number estimation (Vaze et al., 2022)."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.base import ClusterMixin
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    component_classes,
    encode_semi_labels,
    random_state_to_generator,
)
from mixtures.niw import cluster_sums

from ._cluster_metrics import cluster_accuracy

__all__ = ["SemiSupervisedKMeans", "estimate_n_clusters", "squared_distances", "ss_kmeans"]


def squared_distances(X, C, xx=None):
    """Squared Euclidean distances (N, K); ``xx`` = precomputed ``(X * X).sum(1)``.

    ``|x|^2 - 2 x.c + |c|^2`` evaluated in place in one (N, K) buffer (the same
    floating-point operations, in the same order, as the textbook expression).
    """
    xx = (X * X).sum(1) if xx is None else xx
    d = X @ C.T
    d *= -2.0
    d += xx[:, None]
    d += (C * C).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def _seed_centres(X, y, n_clusters, rng):
    """Labelled class means, then k-means++ seeds from the unlabelled data (GCD init)."""
    d = X.shape[1]
    centres = np.zeros((n_clusters, d))
    have = np.zeros(n_clusters, dtype=bool)
    lab = y >= 0
    for c in np.unique(y[lab]):
        centres[c] = X[y == c].mean(0)
        have[c] = True
    pool = X[~lab] if (~lab).any() else X
    xx = (pool * pool).sum(1)
    todo = np.flatnonzero(~have)
    if todo.size:
        if have.any():
            d2 = squared_distances(pool, centres[have], xx).min(1)
        else:
            first = pool[rng.integers(pool.shape[0])]
            centres[todo[0]] = first
            have[todo[0]] = True
            todo = todo[1:]
            d2 = squared_distances(pool, first[None], xx).ravel()
        for k in todo:
            tot = d2.sum()
            i = rng.choice(pool.shape[0], p=d2 / tot) if tot > 0 else rng.integers(pool.shape[0])
            centres[k] = pool[i]
            np.minimum(d2, squared_distances(pool, pool[i][None], xx).ravel(), out=d2)
    return centres


def ss_kmeans(X, y, n_clusters, *, n_init=10, max_iter=100, tol=1e-4, rng=None, init=None):
    """Semi-supervised k-means of GCD (Vaze et al., 2022); NumPy.

    Labelled samples stay in their class cluster; unlabelled ones go to the nearest centre;
    each centre becomes the mean of its members. The lowest-inertia iterate of each run and
    the lowest-inertia run are kept.

    Returns
    -------
    centres (K, D), labels (N,), inertia, n_iter
    """
    rng = np.random.default_rng(rng)
    X = np.asarray(X, dtype=np.float64)
    lab = y >= 0
    xx = (X * X).sum(1)
    best = None
    for run in range(n_init):
        c = (
            np.array(init, dtype=np.float64)
            if (init is not None and run == 0)
            else _seed_centres(X, y, n_clusters, rng)
        )
        run_best = None
        for it in range(max_iter):
            dist = squared_distances(X, c, xx)
            labels = np.where(lab, y, dist.argmin(1))
            inertia = float(dist[np.arange(X.shape[0]), labels].sum())
            if run_best is None or inertia < run_best[2]:
                run_best = (c.copy(), labels, inertia, it + 1)
            counts = np.bincount(labels, minlength=n_clusters)
            sums = cluster_sums(X, labels, n_clusters)
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c)
            shift = float(((new - c) ** 2).sum())
            c = new
            if shift < tol:
                break
        if best is None or run_best[2] < best[2]:
            best = run_best
    return best


class SemiSupervisedKMeans(ClusterMixin, MixprocEstimator):
    """Semi-supervised k-means of GCD (Vaze, Han, Vedaldi & Zisserman, CVPR 2022).

    Parameters
    ----------
    n_clusters : int, default=8
    n_init : int, default=10
        Number of runs from GCD's seeding (labelled class means, then k-means++ on the
        unlabelled samples); the run with the lowest inertia is kept. Ignored (one run)
        when ``init`` is an array.
    max_iter : int, default=100
    tol : float, default=1e-4
        Stop when the squared centre shift is below ``tol``.
    random_state : int, Generator or None
    init : {"gcd"} or array-like of shape (n_clusters, n_features), default="gcd"
        ``"gcd"``: the seeding above. An array: start from these centres (as
        ``sklearn.cluster.KMeans(init=array)``; row ``j`` is cluster ``classes_[j]``, so
        the known classes' centres come first, in sorted order of their ids). Starting
        from the true class means of a benchmark gives the fixed point of the search
        nearest the true partition, the reference that tells a search failure from a
        model preference.
    unlabelled : "auto" or scalar, default="auto"
        The label of an unlabelled sample: with ``"auto"``, ``-1`` for integer labels and
        ``None`` for string labels (:func:`mixtures.base.encode_semi_labels`).

    Attributes
    ----------
    classes_ : ndarray of shape (n_clusters,)
        The id of each cluster, as returned by ``predict``: the known classes' own ids
        (sorted) first, then new ids that cannot collide with them
        (:func:`mixtures.base.component_classes`).
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray of shape (n_samples,)
        Training assignments in ``classes_`` ids.
    inertia_ : float
    n_iter_ : int

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> SemiSupervisedKMeans(2, random_state=0).fit(X, [0, -1, -1, -1]).labels_.tolist()
    [0, 0, 1, 1]
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        n_init=10,
        max_iter=100,
        tol=1e-4,
        random_state=None,
        init="gcd",
        unlabelled="auto",
    ):
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.init = init
        self.unlabelled = unlabelled

    _parameter_constraints = {
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "random_state": RANDOM_STATE,
        "init": [StrOptions({"gcd"}), "array-like"],
        "unlabelled": "no_validation",
    }

    def _check_init(self, k, d):
        if isinstance(self.init, str):
            if self.init != "gcd":
                raise ValueError(
                    f"init must be 'gcd' or an array of {k} centres; got {self.init!r}. Use "
                    "init='gcd' for GCD's seeding or pass the starting centres."
                )
            return None
        c = np.asarray(self.init, dtype=np.float64)
        if c.shape != (k, d):
            raise ValueError(
                f"init must have shape (n_clusters, n_features) = ({k}, {d}); got {c.shape}. "
                "Pass one starting centre per cluster."
            )
        if not np.all(np.isfinite(c)):
            raise ValueError("init contains NaN or inf; pass finite starting centres.")
        return c

    def fit(self, X, y=None):
        """Fit on ``X`` with semi-supervised labels ``y`` (``-1`` = unlabelled).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Class ids of the labelled samples (any integers or strings) and the
            ``unlabelled`` marker (``-1``, or ``None`` for strings) for the others.

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._validate_X(X, reset=True)
        k = int(self.n_clusters)
        if k > X.shape[0]:
            raise ValueError(
                f"n_clusters must be in [1, n_samples={X.shape[0]}]; got {self.n_clusters}. "
                "Pass more samples or fewer clusters."
            )
        enc = encode_semi_labels(y, X.shape[0], k, unlabelled=self.unlabelled)
        y = enc.codes
        rng = random_state_to_generator(self.random_state)
        init = self._check_init(k, X.shape[1])
        n_init = 1 if init is not None else self.n_init
        c, labels, inertia, n_iter = ss_kmeans(
            X, y, k, n_init=n_init, max_iter=self.max_iter, tol=self.tol, rng=rng, init=init
        )
        self.classes_ = component_classes(enc.known, k)
        self.cluster_centers_ = c
        self.labels_ = self.classes_[labels]
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        return self

    def predict(self, X):
        """Id (``classes_``) of the nearest centre (labels of new data are not used)."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self.classes_[squared_distances(X, self.cluster_centers_).argmin(1)]

    def score(self, X, y=None):
        """Opposite of the k-means objective on ``X`` (higher is better), as
        ``sklearn.cluster.KMeans.score``: minus the sum of squared distances of each sample
        to its nearest centre. Labels are not used."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return -float(squared_distances(X, self.cluster_centers_).min(1).sum())


def estimate_n_clusters(
    X,
    y,
    *,
    method: str = "brent",
    bounds: tuple[int, int] | None = None,
    n_init: int = 10,
    random_state: int = 0,
    return_scores: bool = False,
):
    """GCD class-number estimation (Vaze et al., 2022): maximise the labelled accuracy.

    ``f(K)`` is the v2 Hungarian accuracy, *on the labelled samples only*, of plain
    ``sklearn.cluster.KMeans(K)`` run on all samples; ``K`` is found by a bounded Brent
    search (``scipy.optimize.minimize_scalar(method="bounded")``) on ``-f`` over
    ``[#known classes, min(1000, n_samples)]``, with ``f`` cached per integer ``K``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
        Class ids (integers or strings); ``-1`` (``None`` for strings) marks unlabelled
        samples.
    method : {"brent"}
    bounds : (int, int), optional
    n_init : int, default=10
        Passed to ``KMeans`` (GCD ran scikit-learn's old default of 10).
    random_state : int, default=0
    return_scores : bool, default=False
        Also return the dict ``{K: f(K)}`` of evaluated values.

    Returns
    -------
    k_hat : int  (and ``scores`` if requested)
    """
    if method != "brent":
        raise ValueError(f"method must be 'brent'; got {method!r}.")
    X = np.asarray(X, dtype=np.float64)
    y = encode_semi_labels(y, X.shape[0]).codes
    lab = y >= 0
    if not lab.any():
        raise ValueError("estimate_n_clusters needs labelled samples (y >= 0); got none.")
    n_known = int(np.unique(y[lab]).size)
    lo, hi = bounds if bounds is not None else (n_known, min(1000, X.shape[0]))
    lo, hi = int(max(1, lo)), int(min(hi, X.shape[0]))
    if hi <= lo:
        raise ValueError(f"bounds must satisfy lower < upper <= n_samples; got ({lo}, {hi}).")
    cache: dict[int, float] = {}

    def f(k):
        k = int(round(k))
        if k not in cache:
            km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(X)
            cache[k] = cluster_accuracy(y[lab], km.labels_[lab])["all"]
        return -cache[k]

    res = minimize_scalar(f, bounds=(lo, hi), method="bounded")
    k_hat = int(round(res.x))
    f(k_hat)
    best = max(cache.items(), key=lambda kv: (kv[1], -abs(kv[0] - k_hat)))[0]
    return (best, cache) if return_scores else best
