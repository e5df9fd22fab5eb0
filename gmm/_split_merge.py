"""Split/merge rounds with NIW Hastings ratios and corrected bookkeeping.

The moves of GPC (Zhao, Wen & Han, 2023), whose released code takes the proposals and the
Hastings ratios of DeepDPM (Ronen et al., 2022) after Chang & Fisher (2013). Runs on the
host in NumPy (K changes from round to round); the NIW evidence itself is a jitted, padded
kernel (:func:`mixtures.niw.niw_log_evidence`). Differences from the released GPC code, all
deliberate:

- a split *replaces* its parent by its two children and a merge *replaces* both parts by
  their union, so K can both grow and shrink;
- each component takes part in at most one accepted move per round;
- known-class (protected) components keep their ids ``0..n_fixed-1``. They may **merge**
  with an unlabelled component (a spurious component that is really part of a known class
  is absorbed) and may **split off** a sub-cluster, so K can grow from ``K0 = |Y_l|``;
  two known classes never merge. A known class proposes two 2-means splits, a free one
  and one seeded away from its labelled samples (:func:`_known_class_proposals`), and keeps
  one only when its new child holds less than a quarter of the parent's labelled fraction
  ``f`` (its few labelled samples are then moved to the class child): the labelled
  samples are a random subset of their class (GCD's split), so a child that is part of
  the class holds about ``f`` of them (binomial), and cutting through them would only
  fragment a known class (the Gaussian evidence favours splitting a non-Gaussian class).
  Symmetrically, an unlabelled component whose cell (nearest mean, labels
  not clamped) holds labelled samples of its nearest known class at a rate of at least
  ``f / 4`` is part of that class and is merged into it whatever the evidence.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mixtures.niw import (
    ClusterStats,
    NIWPrior,
    cluster_stats,
    log_hastings_merge,
    log_hastings_split,
    map_gaussian,
    pool_stats,
)

from ._kmeans import squared_distances

__all__ = ["RoundResult", "merge_moments", "split_merge_round", "two_means"]


class RoundResult(NamedTuple):
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    n_splits: int
    n_merges: int


def merge_moments(weights, means, covariances):
    """Moment-matched Gaussian of a weighted set of Gaussians (the inverse of a split).

    .. math::

        \\pi = \\sum_j \\pi_j,\\quad \\mu = \\sum_j \\tfrac{\\pi_j}{\\pi}\\mu_j,\\quad
        \\Sigma = \\sum_j \\tfrac{\\pi_j}{\\pi}(\\Sigma_j + \\mu_j\\mu_j^T) - \\mu\\mu^T

    Examples
    --------
    >>> import numpy as np
    >>> w, m, c = merge_moments([0.5, 0.5], [[-1.0], [1.0]], [[[1.0]], [[1.0]]])
    >>> float(w), m.tolist(), c.tolist()
    (1.0, [0.0], [[2.0]])
    """
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    cov = np.asarray(covariances, dtype=np.float64)
    tot = w.sum()
    p = w / tot
    mean = p @ mu
    second = np.einsum("j,jde->de", p, cov + mu[:, :, None] * mu[:, None, :])
    return tot, mean, second - np.outer(mean, mean)


def two_means(X, labelled, rng, n_iter: int = 10) -> np.ndarray:
    """2-means sub-cluster proposal (k-means++ seeds, Lloyd iterations).

    If some rows are ``labelled`` they are clamped to sub-cluster 0, whose seed is their
    mean; sub-cluster 1 is seeded among the unlabelled rows with probability proportional
    to the squared distance to the nearest labelled row (a k-means++ step against the
    labelled samples, at most 256 of them), so that a new class hidden in a known-class
    component, whose samples are far from every labelled sample, seeds it.

    Returns
    -------
    ndarray of int of shape (n_rows,), values in {0, 1}
    """
    n = X.shape[0]
    free = ~labelled
    if labelled.any():
        c0 = X[labelled].mean(0)
    else:
        c0 = X[rng.integers(n)]
    pool = np.flatnonzero(free)
    if pool.size == 0:
        return np.zeros(n, dtype=np.int64)
    if labelled.any():
        ref = np.flatnonzero(labelled)
        if ref.size > 256:
            ref = rng.choice(ref, 256, replace=False)
        d2 = squared_distances(X[pool], X[ref]).min(1)
    else:
        d2 = ((X[pool] - c0) ** 2).sum(1)
    tot = d2.sum()
    i = pool[rng.choice(pool.size, p=d2 / tot)] if tot > 0 else pool[rng.integers(pool.size)]
    c = np.stack([c0, X[i]])
    sub = np.zeros(n, dtype=np.int64)
    for _ in range(n_iter):
        new = np.where(labelled, 0, squared_distances(X, c).argmin(1))
        if np.array_equal(new, sub) and _ > 0:
            break
        sub = new
        for j in (0, 1):
            if (sub == j).any():
                c[j] = X[sub == j].mean(0)
    return sub


def _accept(log_h: float, acceptance: str, p_fixed: float, rng) -> bool:
    u = rng.random()
    if acceptance == "mh":  # Metropolis-Hastings: accept with probability min(1, H)
        return bool(np.log(max(u, 1e-300)) < log_h)
    # "gpc": H > 1, or a fixed probability whatever H is (released GPC code)
    return bool(log_h > 0 or u < p_fixed)


def _project(cov, covariance_type):
    d = cov.shape[-1]
    if covariance_type == "diag":
        return np.diagonal(cov, 0, -2, -1)[..., :, None] * np.eye(d)
    if covariance_type == "spherical":
        return np.diagonal(cov, 0, -2, -1).mean(-1)[..., None, None] * np.eye(d)
    return cov


def _take(stats: ClusterStats, idx) -> ClusterStats:
    return ClusterStats(stats.n[idx], stats.mean[idx], stats.scatter[idx])


def _label_test(Xk, lab, sub) -> np.ndarray | None:
    """Orient a 2-way proposal of a known class and apply the labelled-fraction test.

    Child 0 keeps the class id. The labelled samples are assigned to the nearer child
    centre *without clamping*; the proposal is kept only if child 1 then holds less than a
    quarter of the parent's labelled fraction ``f`` (a child that is part of the class
    would hold about ``f`` of its samples labelled, binomially). Its few labelled samples
    are then moved to child 0. Returns ``None`` when the test fails.
    """
    if not ((sub == 0).any() and (sub == 1).any()):
        return None
    c = np.stack([Xk[sub == 0].mean(0), Xk[sub == 1].mean(0)])
    free = squared_distances(Xk, c).argmin(1)
    frac = [lab[free == j].sum() / max((free == j).sum(), 1) for j in (0, 1)]
    if frac[1] > frac[0]:
        sub, free, frac = 1 - sub, 1 - free, frac[::-1]
    if frac[1] >= 0.25 * lab.mean():
        return None
    return np.where(lab, 0, sub)


def _known_class_proposals(Xk, lab, rng) -> list[np.ndarray]:
    """Split proposals for a known-class component (a new class hidden in it).

    Two 2-means proposals, each kept only if it passes :func:`_label_test`: a free one
    (which never cuts through a multi-modal known class on purpose) and one with the
    labelled samples clamped to child 0 (which finds an unlabelled class when the free
    2-means cuts elsewhere, e.g. a component holding the known class and two new ones).
    :func:`split_merge_round` scores them with the batched Hastings ratios of all
    proposals and keeps the larger one per component.
    """
    out = []
    for clamp in (False, True):
        sub = two_means(Xk, lab if clamp else np.zeros(lab.size, dtype=bool), rng)
        sub = _label_test(Xk, lab, sub)
        if sub is not None:
            out.append(sub)
    return out


def split_merge_round(
    X,
    y,
    labels,
    weights,
    means,
    covariances,
    prior: NIWPrior,
    *,
    protected,
    n_fixed: int,
    alpha: float = 1.0,
    acceptance: str = "mh",
    p_fixed: float = 0.1,
    min_size: int = 5,
    merge_neighbors: int = 1,
    reg_covar: float = 1e-6,
    covariance_type: str = "full",
    bookkeeping: str = "corrected",
    rng=None,
) -> RoundResult:
    """One split round followed by one merge round (GPC's moves, corrected bookkeeping).

    Parameters
    ----------
    X : ndarray (N, D) ; y : ndarray (N,) int, -1 unlabelled
    labels : ndarray (N,) current hard assignment (labelled samples clamped)
    weights, means, covariances : current parameters of the K components
    prior : NIWPrior
    protected : bool array (K,)
        Components of known classes (never merged with each other).
    n_fixed : int
        Ids below ``n_fixed`` are never removed (ids of known classes).
    alpha : float
        Concentration in the Hastings ratios.
    acceptance : {"mh", "gpc"}
    p_fixed : float
        Fixed acceptance probability of the "gpc" rule.
    min_size : int
        No split if the parent or a child has ``<= min_size`` samples (GPC gate).
    merge_neighbors : int
        Each component is tested against its ``merge_neighbors`` nearest components.
    bookkeeping : {"corrected", "released"}, default="corrected"
        ``"released"`` reproduces the released GPC code's bookkeeping: components holding
        labelled samples never split or merge;
        every other component is tested against its single nearest candidate (a pair may
        be tested twice and a component may join several merges); an accepted merge
        *keeps* both parts and *appends* their unweighted midpoint, so
        ``K_new = K + n_splits + n_merges`` and K never shrinks. Kept only to show that
        behaviour; ``merge_neighbors`` is ignored there.

    Returns
    -------
    RoundResult
    """
    if bookkeeping not in ("corrected", "released"):
        raise ValueError(f"bookkeeping must be 'corrected' or 'released'; got {bookkeeping!r}.")
    released = bookkeeping == "released"
    rng = np.random.default_rng(rng)
    K = means.shape[0]
    d = X.shape[1]
    stats = cluster_stats(X, labels, K)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(K + 1))
    members = [order[bounds[k] : bounds[k + 1]] for k in range(K)]
    lab_all = y >= 0

    # ---- split proposals: 2-means on each component's members
    cand, c1, c2 = [], [], []
    for k in range(K):
        idx = members[k]
        if idx.size <= 2 * (min_size + 1) - 1:
            continue
        lab = lab_all[idx]
        if lab.all() or (released and lab.any()):
            continue
        if lab.any():
            proposals = _known_class_proposals(X[idx], lab, rng)
        else:
            proposals = [two_means(X[idx], lab, rng)]
        for sub in proposals:
            st = cluster_stats(X[idx], sub, 2)
            cand.append(k)
            c1.append(_take(st, [0]))
            c2.append(_take(st, [1]))
    used = np.zeros(K, dtype=bool)
    new_comp: dict[int, tuple] = {}  # id -> (weight, mean, cov)
    appended: list[tuple] = []
    removed = np.zeros(K, dtype=bool)
    n_splits = n_merges = 0
    if cand:
        s1 = ClusterStats(*[np.concatenate(z) for z in zip(*c1)])
        s2 = ClusterStats(*[np.concatenate(z) for z in zip(*c2)])
        log_h = log_hastings_split(s1, s2, prior, alpha)
        mu1, cov1 = map_gaussian(s1, prior, reg_covar)
        mu2, cov2 = map_gaussian(s2, prior, reg_covar)
        best: dict[int, int] = {}  # component -> its proposal with the largest ratio
        for j, k in enumerate(cand):
            if k not in best or log_h[j] > log_h[best[k]]:
                best[k] = j
        for k, j in best.items():
            n1 = s1.n[j]
            if n1 <= min_size or members[k].size - n1 <= min_size:
                continue  # GPC's size gate
            if not np.isfinite(log_h[j]) or not _accept(log_h[j], acceptance, p_fixed, rng):
                continue
            used[k] = True
            n_splits += 1
            frac = s1.n[j] / (s1.n[j] + s2.n[j])
            new_comp[k] = (weights[k] * frac, mu1[j], _project(cov1[j], covariance_type))
            appended.append((weights[k] * (1 - frac), mu2[j], _project(cov2[j], covariance_type)))

    # ---- merge proposals: nearest-neighbour pairs of components not split this round
    free = np.flatnonzero(~used & (stats.n > 0))
    if released:  # GPC: unlabelled clusters only, keep both parts, append the midpoint
        free = free[np.bincount(labels[lab_all], minlength=K)[free] == 0]
    pairs = []
    if released and free.size >= 2:
        cm = stats.mean[free]
        dist = squared_distances(cm, cm)
        np.fill_diagonal(dist, np.inf)
        nn = dist.argmin(1)
        a_ids, b_ids = free, free[nn]
        sa, sb = _take(stats, a_ids), _take(stats, b_ids)
        log_h = log_hastings_merge(sa, sb, prior, alpha)
        _, cov = map_gaussian(pool_stats(sa, sb), prior, reg_covar)
        for j, (a, b) in enumerate(zip(a_ids, b_ids)):
            if not _accept(log_h[j], acceptance, p_fixed, rng):
                continue
            n_merges += 1
            appended.append((
                0.5 * (weights[a] + weights[b]),
                0.5 * (stats.mean[a] + stats.mean[b]),  # unweighted midpoint, as released
                _project(cov[j], covariance_type),
            ))  # fmt: skip
    elif not released and free.size >= 2:
        cm = stats.mean[free]
        dist = squared_distances(cm, cm)
        np.fill_diagonal(dist, np.inf)
        nn = np.argsort(dist, axis=1)[:, : max(1, merge_neighbors)]
        seen = set()
        for a_pos in range(free.size):
            for b_pos in nn[a_pos]:
                a, b = int(free[a_pos]), int(free[b_pos])
                key = (min(a, b), max(a, b))
                if key in seen or not np.isfinite(dist[a_pos, b_pos]):
                    continue
                seen.add(key)
                if protected[a] and protected[b]:
                    continue  # two known classes never merge
                keep = a if protected[a] else b if protected[b] else min(a, b)
                drop = b if keep == a else a
                if drop < n_fixed:
                    continue  # ids of known classes are never removed
                pairs.append((float(dist[a_pos, b_pos]), keep, drop))
    if pairs:
        pairs.sort()
        keep_ids = np.array([p[1] for p in pairs])
        drop_ids = np.array([p[2] for p in pairs])
        sa, sb = _take(stats, keep_ids), _take(stats, drop_ids)
        log_h = log_hastings_merge(sa, sb, prior, alpha)
        pooled = pool_stats(sa, sb)
        mu, cov = map_gaussian(pooled, prior, reg_covar)
        # the merge counterpart of the known-class split rule: an unlabelled component
        # whose cell (nearest mean, labels not clamped) holds labelled samples of the known
        # class at >= 1/4 of that class's labelled fraction is part of the class: merge it
        lab_idx = np.flatnonzero(lab_all)
        near = squared_distances(X[lab_idx], means).argmin(1) if lab_idx.size else lab_idx
        for j, (_, keep, drop) in enumerate(pairs):
            if not protected[keep] or protected[drop] or not members[keep].size:
                continue
            l_in = int((y[lab_idx][near == drop] == keep).sum())
            f = lab_all[members[keep]].mean()
            if l_in and l_in / (stats.n[drop] + l_in) >= 0.25 * f:
                log_h[j] = np.inf
        for j, (_, keep, drop) in enumerate(pairs):
            if used[keep] or used[drop]:
                continue
            if not _accept(log_h[j], acceptance, p_fixed, rng):
                continue
            used[keep] = used[drop] = True
            n_merges += 1
            new_comp[keep] = (
                weights[keep] + weights[drop],
                mu[j],
                _project(cov[j], covariance_type),
            )
            removed[drop] = True

    w_out, m_out, c_out = [], [], []
    for k in range(K):
        if removed[k]:
            continue
        w, m, c = new_comp.get(k, (weights[k], means[k], covariances[k]))
        w_out.append(w)
        m_out.append(m)
        c_out.append(c)
    for w, m, c in appended:
        w_out.append(w)
        m_out.append(m)
        c_out.append(c)
    w_out = np.asarray(w_out, dtype=np.float64)
    w_out = w_out / w_out.sum()
    return RoundResult(
        w_out,
        np.asarray(m_out).reshape(-1, d),
        np.asarray(c_out).reshape(-1, d, d),
        n_splits,
        n_merges,
    )
