"""Semi-supervised Gaussian mixture with NIW split/merge (GPC, Zhao, Wen & Han, ICCV 2023)."""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
import numpy as np
from sklearn.base import ClusterMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from mixtures import MixtureMixin
from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    check_finite_result,
    random_state_to_generator,
    validate_semi_labels,
    x64_scope,
)
from mixtures.em import (
    GaussianMixtureParams,
    covariances_from_full,
    fit_em_blocks,
    log_joint_blocks,
    make_mesh,
    to_blocks,
)
from mixtures.niw import (
    NIWPrior,
    cluster_stats,
    default_prior,
    empirical_bayes_prior,
    log_partition_posterior,
    map_gaussian,
)

from ._kmeans import squared_distances, ss_kmeans
from ._split_merge import split_merge_round

__all__ = ["SemiSupervisedGMM"]


def _bucket_k(k: int) -> int:
    """Pad K to a few sizes so split/merge rounds rarely recompile the EM kernel."""
    if k <= 16:
        return 16
    step = max(8, (1 << int(math.floor(math.log2(k)))) // 4)
    return -(-k // step) * step


def _project_cov(cov, covariance_type):
    d = cov.shape[-1]
    if covariance_type == "diag":
        return np.diagonal(cov, 0, -2, -1)[..., :, None] * np.eye(d)
    if covariance_type == "spherical":
        return np.diagonal(cov, 0, -2, -1).mean(-1)[..., None, None] * np.eye(d)
    return cov


class SemiSupervisedGMM(ClusterMixin, MixtureMixin, MixprocEstimator):
    """Semi-supervised GMM with NIW-MAP soft EM and split/merge moves on K.

    Soft EM on a Gaussian mixture whose labelled samples have their responsibilities
    clamped to their class's component (one component per known class), with the NIW
    MAP M-step of the note (section 4). Between EM phases, split/merge rounds propose
    2-means sub-cluster splits and nearest-neighbour merges, accepted with the NIW
    marginal-likelihood Hastings ratios (note, eq. of section 5.1)

    .. math::

        \\log H_s = \\log\\alpha + \\ln\\Gamma(N_1) + \\log f(X_1) + \\ln\\Gamma(N_2)
        + \\log f(X_2) - \\ln\\Gamma(N) - \\log f(X), \\qquad \\log H_m = -\\log H_s,

    under the ``"mh"`` rule (accept with probability ``min(1, H)``, DeepDPM) or the
    ``"gpc"`` rule (accept if ``H > 1``, otherwise with fixed probability ``p_fixed``).
    Bookkeeping is the corrected one (a split replaces its parent, a merge replaces both
    parts, one move per component per round), so K can grow and shrink from any start.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components (the starting K when ``split_merge=True``). ``None`` starts
        from ``max(4 L, L + 1, 2)`` for ``L`` known classes, the middle of the
        ``2-6 |Y_l|`` range the note recommends (section 6): the search then mostly
        merges, and on ImageNet-50 and digits searches that start above K end at
        partitions of higher DP-NIW log posterior (``history_["log_posterior"]``) than
        searches that grow from below (BENCHMARKS.md).
    covariance_type : {"full", "diag", "spherical"}, default="full"
    assignment : {"soft", "hard"}, default="soft"
        ``"soft"``: clamped soft EM with NIW-MAP updates between split/merge rounds (note
        3.3). ``"hard"``: the E-step of the released GPC code (note 3.2): semi-supervised
        k-means warm-started from the current means (nearest centre, labelled samples
        clamped), with weights and NIW-MAP covariances computed from the hard clusters and
        used only by the split/merge evidence; ``predict`` is then the nearest centre.
        On overlapping, non-Gaussian classes with few samples per class (ImageNet-50 MoCo
        features: about 50 per class in 32-d) the isotropic equal-weight rule is the more
        accurate classifier, because 32-d full covariances from ~50 samples are noisy.
    split_merge : bool, default=True
    max_rounds : int, default=10
        Split/merge rounds (stops early after two rounds without an accepted move).
    acceptance : {"mh", "gpc"}, default="mh"
    split_alpha : float, default=1.0
        The concentration ``alpha`` of the Hastings ratios (GPC: 1, DeepDPM: 10).
    p_fixed : float, default=0.1
        Acceptance probability of the ``"gpc"`` rule when ``H <= 1``.
    min_split_size : int, default=5
        No split when the parent or a child has at most this many samples.
    merge_neighbors : int, default=1
        Number of nearest components tested for a merge (GPC: 1, DeepDPM: 3).
    bookkeeping : {"corrected", "released"}, default="corrected"
        ``"corrected"``: the note's corrected bookkeeping (section 6), a split replaces
        its parent and a merge replaces both parts, so K grows and shrinks.
        ``"released"``: the released GPC code's bookkeeping, kept to reproduce its
        behaviour. Labelled components never split or merge, and an accepted merge keeps
        both parts and appends their unweighted midpoint, so K only grows (a component
        left empty by the EM phase is still dropped). From ``K0 = |Y_l|`` it never moves
        (:func:`gmm._split_merge.split_merge_round`).
    prior : None, "empirical_bayes", dict or NIWPrior, default=None
        ``None`` uses :func:`mixtures.niw.default_prior` (GPC's values scaled to the data);
        ``"empirical_bayes"`` fits the scale of ``Psi0`` to the labelled classes by
        maximising their NIW evidence (:func:`mixtures.niw.empirical_bayes_prior`; needs two or
        more labelled classes; a dict with ``kind="empirical_bayes"`` passes its other keys
        to it); any other dict is passed to :func:`~mixtures.niw.default_prior` as keyword
        arguments (``kind``, ``psi_scale``, ``kappa``, ``nu``); a
        :class:`~mixtures.niw.NIWPrior` is used as given.
    reg_covar : float, default=1e-6
    n_init : int, default=1
        Initialisations (semi-supervised k-means++) of the first EM phase; the best
        log-likelihood is kept.
    max_iter : int, default=100
        EM iterations per phase.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    random_state : int, Generator or None
    verbose : int, default=0

    Attributes
    ----------
    n_components_ : int
    weights_ : ndarray of shape (n_components_,)
    means_ : ndarray of shape (n_components_, n_features)
    covariances_ : ndarray, shape as in :class:`sklearn.mixture.GaussianMixture`
    labels_ : ndarray of shape (n_samples,)
        Training assignments (labelled samples keep their class).
    history_ : dict of lists
        ``"n_components"``, ``"log_likelihood"``, ``"n_splits"``, ``"n_merges"`` and
        ``"log_posterior"`` per round (entry 0 is the initial EM phase).
        ``"log_posterior"`` is the DP-NIW log posterior of the round's hard partition
        (:func:`gmm.log_partition_posterior`), whose differences are the Hastings ratios:
        a rise means the model prefers the new partition. It need not rise every round,
        because the EM phase after the moves reassigns samples by likelihood (``"soft"``)
        or nearest mean (``"hard"``), not by this objective.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    prior_ : NIWPrior

    References
    ----------
    B. Zhao, X. Wen, K. Han. Learning semi-supervised Gaussian mixture models for
    generalized category discovery. ICCV 2023.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(c, 0.3, (40, 2)) for c in (0, 4, 8)])
    >>> y = np.r_[np.zeros(10), -np.ones(30), np.ones(10), -np.ones(70)].astype(int)
    >>> m = SemiSupervisedGMM(n_components=3, split_merge=False, random_state=0).fit(X, y)
    >>> sorted(np.bincount(m.labels_).tolist())
    [40, 40, 40]
    """

    def __init__(
        self,
        n_components=None,
        *,
        covariance_type="full",
        assignment="soft",
        split_merge=True,
        max_rounds=10,
        acceptance="mh",
        split_alpha=1.0,
        p_fixed=0.1,
        min_split_size=5,
        merge_neighbors=1,
        bookkeeping="corrected",
        prior=None,
        reg_covar=1e-6,
        n_init=1,
        max_iter=100,
        tol=1e-3,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.assignment = assignment
        self.split_merge = split_merge
        self.max_rounds = max_rounds
        self.acceptance = acceptance
        self.split_alpha = split_alpha
        self.p_fixed = p_fixed
        self.min_split_size = min_split_size
        self.merge_neighbors = merge_neighbors
        self.bookkeeping = bookkeeping
        self.prior = prior
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "covariance_type": [StrOptions({"full", "diag", "spherical"})],
        "assignment": [StrOptions({"soft", "hard"})],
        "split_merge": ["boolean"],
        "max_rounds": [Interval(numbers.Integral, 0, None, closed="left")],
        "acceptance": [StrOptions({"mh", "gpc"})],
        "split_alpha": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "p_fixed": [Interval(numbers.Real, 0.0, 1.0, closed="both")],
        "min_split_size": [Interval(numbers.Integral, 0, None, closed="left")],
        "merge_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "bookkeeping": [StrOptions({"corrected", "released"})],
        "prior": [None, StrOptions({"empirical_bayes"}), dict, NIWPrior],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "random_state": RANDOM_STATE,
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ helpers
    def _make_prior(self, X, y) -> NIWPrior:
        if self.prior is None:
            return default_prior(X)
        if isinstance(self.prior, str) and self.prior == "empirical_bayes":
            return empirical_bayes_prior(X, y)
        if isinstance(self.prior, dict) and self.prior.get("kind") == "empirical_bayes":
            kw = {k: v for k, v in self.prior.items() if k != "kind"}
            return empirical_bayes_prior(X, y, **kw)
        if isinstance(self.prior, NIWPrior):
            return self.prior
        if isinstance(self.prior, dict):
            return default_prior(X, **self.prior)
        raise ValueError(
            "prior must be None, 'empirical_bayes', a dict of default_prior arguments or an "
            f"NIWPrior; got {self.prior!r}."
        )

    def _run_hard(self, ctx, means, rng):
        """GPC's E-step: SS-k-means warm-started at ``means``; NIW-MAP Gaussians of the
        hard clusters (note 3.2). Empty components above the known ids are dropped."""
        X, y, prior = ctx["X"], ctx["y"], ctx["prior"]
        n_fixed = ctx["n_fixed"]
        k = means.shape[0]
        _, labels, inertia, n_iter = ss_kmeans(
            X, y, k, n_init=1, max_iter=int(self.max_iter), tol=1e-10, rng=rng, init=means
        )
        st = cluster_stats(X, labels, k)
        keep = (st.n > 0) | (np.arange(k) < n_fixed)
        st = type(st)(st.n[keep], st.mean[keep], st.scatter[keep])
        m, c = map_gaussian(st, prior, self.reg_covar)
        c = _project_cov(c, self.covariance_type)
        w = (st.n + 1e-10) / (st.n + 1e-10).sum()
        return w, m, c, -inertia / X.shape[0], n_iter, n_iter < int(self.max_iter)

    def _run_em(self, ctx, weights, means, covs, rng=None):
        """Pad to the K bucket, run the EM engine (:func:`mixtures.em.fit_em_blocks`), unpad."""
        if self.assignment == "hard":
            return self._run_hard(ctx, means, rng)
        X, y, mesh, prior = ctx["X"], ctx["y"], ctx["mesh"], ctx["prior"]
        d = X.shape[1]
        k = means.shape[0]
        kb = _bucket_k(k)
        pad = kb - k
        fallback = np.asarray(prior.psi) / (prior.nu + d + 2) + self.reg_covar * np.eye(d)
        w0 = np.r_[weights, np.zeros(pad)]
        m0 = np.concatenate([means, np.broadcast_to(prior.mean, (pad, d))])
        c0 = np.concatenate([covs, np.broadcast_to(fallback, (pad, d, d))])
        active = np.r_[np.ones(k, bool), np.zeros(pad, bool)]
        with x64_scope():
            data = to_blocks(X, y, n_components=kb, mesh=mesh, center=False)
            res = fit_em_blocks(
                data,
                GaussianMixtureParams(jnp.asarray(w0), jnp.asarray(m0), jnp.asarray(c0)),
                jnp.asarray(active),
                NIWPrior(*(jnp.asarray(v, dtype=jnp.float64) for v in prior)),
                jnp.asarray(self.reg_covar, dtype=jnp.float64),
                jnp.asarray(self.tol, dtype=jnp.float64),
                max_iter=int(self.max_iter),
                mesh=mesh,
                covariance_type=self.covariance_type,
            )
            w = np.asarray(res.params.weights)[:k]
            m = np.asarray(res.params.means)[:k]
            c = np.asarray(res.params.covariances)[:k]
            lb = float(res.lower_bound)
        check_finite_result(
            "the EM parameters", c, "Increase reg_covar or use a stronger prior (psi_scale)."
        )
        return w / w.sum(), m, c, lb, int(res.n_iter), bool(res.converged)

    def _log_prob(self, X, weights, means, covs):
        """(N, K) log pi_k N(x | k) in row blocks (``X`` already centred, full covariances)."""
        n = X.shape[0]
        k = means.shape[0]
        with x64_scope():
            mesh = make_mesh()
            data = to_blocks(X, n_components=k, mesh=mesh, center=False)
            params = GaussianMixtureParams(
                jnp.asarray(weights), jnp.asarray(means), jnp.asarray(covs)
            )
            lp = log_joint_blocks(data, params, mesh=mesh)
            return np.asarray(lp).reshape(-1, k)[:n]

    def _hard_labels(self, X, y, w, m, c):
        if self.assignment == "hard":
            return np.where(y >= 0, y, squared_distances(X, m).argmin(1))
        lp = self._log_prob(X, w, m, c)
        return np.where(y >= 0, y, lp.argmax(1))

    # ------------------------------------------------------------------ search
    def _score(self, ctx, w, m, c):
        """Hard partition of a state and its DP-NIW log posterior."""
        labels = self._hard_labels(ctx["X"], ctx["y"], w, m, c)
        lp = log_partition_posterior(ctx["X"], labels, ctx["prior"], float(self.split_alpha))
        return labels, lp

    def _round(self, ctx, state, labels, rng, history, known):
        """One split/merge round and the EM phase after it; ``labels`` is the hard
        partition of ``state`` (scored in the previous round, so it is not recomputed)."""
        w, m, c = state[:3]
        X, y = ctx["X"], ctx["y"]
        prot = np.zeros(m.shape[0], dtype=bool)
        prot[known] = True
        rr = split_merge_round(
            X, y, labels, w, m, c, ctx["prior"],
            protected=prot, n_fixed=ctx["n_fixed"], alpha=float(self.split_alpha),
            acceptance=self.acceptance, p_fixed=float(self.p_fixed),
            min_size=int(self.min_split_size), merge_neighbors=int(self.merge_neighbors),
            reg_covar=float(self.reg_covar), covariance_type=self.covariance_type,
            bookkeeping=self.bookkeeping, rng=rng,
        )  # fmt: skip
        moved = rr.n_splits + rr.n_merges
        lp = history["log_posterior"][-1]  # unchanged state: same partition, same score
        if moved:
            state = self._run_em(ctx, rr.weights, rr.means, rr.covariances, rng)
            labels, lp = self._score(ctx, *state[:3])
        m, lb = state[1], state[3]
        history["n_components"].append(m.shape[0])
        history["log_likelihood"].append(lb)
        history["n_splits"].append(rr.n_splits)
        history["n_merges"].append(rr.n_merges)
        history["log_posterior"].append(lp)
        if self.verbose > 1:
            print(
                f"K={m.shape[0]} splits={rr.n_splits} merges={rr.n_merges} ll={lb:.4f} "
                f"log posterior={lp:.1f}"
            )
        return state, labels, moved

    def _descend(self, ctx, state, labels, rng, history, known):
        """Metropolis-Hastings split/merge rounds until two rounds pass without a move;
        returns the final state and its hard partition."""
        quiet = 0
        for _ in tqdm(range(int(self.max_rounds)), disable=not self.verbose, desc="split/merge"):
            state, labels, moved = self._round(ctx, state, labels, rng, history, known)
            quiet = 0 if moved else quiet + 1
            if quiet >= 2:
                break
        return state, labels

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit on ``X`` with semi-supervised labels ``y`` (``-1`` = unlabelled).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of int of shape (n_samples,), optional
            Known-class ids ``0..L-1`` for labelled samples and ``-1`` for the others;
            ``None`` means no labels (an unsupervised NIW-MAP GMM).

        Returns
        -------
        self
        """
        self._validate_params()
        X = self._validate_X(X, reset=True, ensure_min_samples=2)
        n, d = X.shape
        if self.n_components is not None and self.n_components > n:
            raise ValueError(
                f"n_components must be in [1, n_samples={n}] or None; got {self.n_components}. "
                "Pass more samples or fewer components."
            )
        y = validate_semi_labels(y, n, self.n_components)
        known = np.unique(y[y >= 0])
        n_fixed = int(known.max()) + 1 if known.size else 0
        if n_fixed > n:
            raise ValueError(
                f"labels up to {n_fixed - 1} need {n_fixed} components but there are only "
                f"{n} samples. Re-encode the known classes as 0..L-1."
            )
        if self.n_components is None:
            k0 = max(4 * known.size, n_fixed + 1, 2)
        else:
            k0 = int(self.n_components)
        k0 = max(min(k0, n), n_fixed)
        offset = X.mean(0)
        Xc = X - offset
        prior = self._make_prior(X, y)
        prior = NIWPrior(np.asarray(prior.mean) - offset, prior.kappa, prior.nu, prior.psi)
        if np.asarray(prior.mean).shape != (d,) or np.asarray(prior.psi).shape != (d, d):
            raise ValueError(
                f"prior must have mean of shape ({d},) and psi of shape ({d}, {d}) to match X."
            )
        rng = random_state_to_generator(self.random_state)
        ctx = {"X": Xc, "y": y, "mesh": make_mesh(), "prior": prior, "n_fixed": n_fixed}
        protected = np.zeros(k0, dtype=bool)
        protected[known] = True

        best = None
        for _ in range(int(self.n_init)):
            _, labels, _, _ = ss_kmeans(Xc, y, k0, n_init=1, max_iter=20, rng=rng)
            st = cluster_stats(Xc, labels, k0)
            m, c = map_gaussian(st, prior, self.reg_covar)
            c = _project_cov(c, self.covariance_type)
            w = (st.n + 1e-10) / (st.n + 1e-10).sum()
            out = self._run_em(ctx, w, m, c, rng)
            if best is None or out[3] > best[3]:
                best = out
        w, m, c, lb, n_iter, conv = best
        labels, lp = self._score(ctx, w, m, c)
        history = {
            "n_components": [m.shape[0]],
            "log_likelihood": [lb],
            "n_splits": [0],
            "n_merges": [0],
            "log_posterior": [lp],
        }
        if self.split_merge:
            state = (w, m, c, lb, n_iter, conv)
            state, labels = self._descend(ctx, state, labels, rng, history, known)
            w, m, c, lb, n_iter, conv = state
        self.prior_ = NIWPrior(
            np.asarray(prior.mean) + offset, prior.kappa, prior.nu, np.asarray(prior.psi)
        )
        self.n_components_ = int(m.shape[0])
        self.weights_ = w
        self.means_ = m + offset
        c = _project_cov(c, self.covariance_type)
        self.covariances_ = np.array(covariances_from_full(c, self.covariance_type))
        self.labels_ = labels  # the hard partition scored last (history_["log_posterior"])
        self.history_ = history
        self.lower_bound_ = lb
        self.n_iter_ = n_iter
        self.converged_ = conv
        return self

    # ------------------------------------------------------------------ inference
    # score_samples, score, predict_proba, bic, aic and sample come from MixtureMixin.

    def predict(self, X):
        """Most probable component (``assignment="hard"``: nearest mean); ids ``< L`` are
        the known classes."""
        if self.assignment == "hard":
            check_is_fitted(self)
            X = self._validate_X(X, reset=False)
            return squared_distances(X, self.means_).argmin(1)
        return super().predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
