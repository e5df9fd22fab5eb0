"""Semi-supervised Gaussian mixture with NIW split/merge (GPC; Zhao, Wen & Han, ICCV 2023)."""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
import numpy as np
from sklearn.base import ClusterMixin, clone
from sklearn.cluster import KMeans
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from mixtures import MixtureMixin
from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    check_finite_result,
    component_classes,
    encode_semi_labels,
    random_state_to_generator,
    random_state_to_key,
    random_state_to_random_state,
    x64_scope,
)
from mixtures.bayesian_gmm import BAYESIAN_PARAMETER_CONSTRAINTS, fit_mixture_posterior
from mixtures.em import (
    GaussianMixtureParams,
    check_initial_parameters,
    covariances_from_full,
    fit_em_blocks,
    log_joint_blocks,
    make_mesh,
    maximum_likelihood_prior,
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

from ._cluster_metrics import cluster_accuracy
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


#: Calibration defaults (``prior="calibrated"``): multiples of the empirical-Bayes NIW
#: scale tried, concentrations tried (default: the estimator's ``split_alpha``) and the
#: number of disjoint folds of known classes held out in turn.
_CALIBRATION_DEFAULTS = {
    "factors": (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
    "n_folds": 3,
    "max_extend": 3,
}


def _wants_calibration(prior) -> bool:
    if isinstance(prior, str):
        return prior == "calibrated"
    return isinstance(prior, dict) and prior.get("kind") == "calibrated"


def _n_clusters_found(y_true, y_pred, share: float = 0.1) -> int:
    """Number of predicted clusters that hold at least ``share`` of some true class: the
    number of clusters the model spends on these classes (a split class counts twice, two
    merged classes once)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    used = set()
    for c in np.unique(y_true):
        ids, counts = np.unique(y_pred[y_true == c], return_counts=True)
        used.update(ids[counts >= share * counts.sum()].tolist())
    return len(used)


def _visit_frequencies(chains) -> dict[int, float]:
    """Frequencies of K over the second half of each split/merge chain (pooled)."""
    visits = []
    for chain in chains:
        chain = list(chain)
        visits += chain[len(chain) // 2 :] if len(chain) > 1 else chain
    ks, counts = np.unique(np.asarray(visits, dtype=np.int64), return_counts=True)
    return {int(k): float(c / counts.sum()) for k, c in zip(ks, counts)}


class SemiSupervisedGMM(ClusterMixin, MixtureMixin, MixprocEstimator):
    """Semi-supervised GMM with NIW-MAP EM and split/merge moves on K (GPC).

    Generalised category discovery (Vaze et al., 2022) with the semi-supervised Gaussian
    mixture of GPC (Zhao, Wen & Han, 2023): a mixture whose labelled samples have their
    responsibilities clamped to their class's component (one component per known class),
    fitted by EM with the NIW MAP M-step (:func:`mixtures.em.fit_em`,
    :func:`mixtures.niw.niw_map`). Between EM phases, split/merge rounds propose 2-means
    sub-cluster splits and nearest-neighbour merges, accepted with the NIW
    marginal-likelihood Hastings ratios of the sub-cluster DP sampler (Chang & Fisher,
    2013; Ronen et al., 2022, which GPC's released code copies)

    .. math::

        \\log H_s = \\log\\alpha + \\ln\\Gamma(N_1) + \\log f(X_1) + \\ln\\Gamma(N_2)
        + \\log f(X_2) - \\ln\\Gamma(N) - \\log f(X), \\qquad \\log H_m = -\\log H_s,

    under the ``"mh"`` rule (accept with probability ``min(1, H)``, as DeepDPM) or the
    ``"gpc"`` rule of GPC's released code (accept if ``H > 1``, otherwise with the fixed
    probability ``p_fixed``). The bookkeeping is corrected (a split replaces its parent, a
    merge replaces both parts, one move per component per round), so K can grow and shrink
    from any start; ``bookkeeping="released"`` reproduces the released code's.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components (the starting K when ``split_merge=True``). ``None`` starts
        from ``max(4 L, L + 1, 2)`` for ``L`` known classes (inside the 2-6 ``L`` range of
        starts for which the corrected search is designed), or from ``len(means_init)``.
    covariance_type : {"full", "diag", "spherical"}, default="full"
    assignment : {"soft", "hard"}, default="soft"
        ``"soft"``: clamped soft EM with NIW-MAP updates between split/merge rounds.
        ``"hard"``: the E-step of GPC's released code: semi-supervised k-means
        warm-started from the current means (nearest centre, labelled samples clamped), with
        weights and NIW-MAP covariances computed from the hard clusters and used only by
        the split/merge evidence; ``predict`` is then the nearest centre. The isotropic,
        equal-weight rule is the more robust classifier when classes have few samples in
        many dimensions (noisy full covariances).
    split_merge : bool, default=True
    max_rounds : int, default=10
        Split/merge rounds (stops early after two rounds without an accepted move).
    acceptance : {"mh", "gpc"}, default="mh"
    split_alpha : float, default=1.0
        The concentration ``alpha`` of the Hastings ratios (GPC: 1, DeepDPM: 10).
    p_fixed : float in [0, 1], default=0.1
        Acceptance probability of the ``"gpc"`` rule when ``H <= 1``.
    min_split_size : int, default=5
        No split when the parent or a child has at most this many samples (GPC's gate).
    merge_neighbors : int, default=1
        Number of nearest components tested for a merge (GPC: 1, DeepDPM: 3).
    bookkeeping : {"corrected", "released"}, default="corrected"
        ``"corrected"``: a split replaces its parent and a merge replaces both parts, so K
        grows and shrinks. ``"released"``: the bookkeeping of GPC's released code, kept to
        reproduce its behaviour. Labelled components never split or merge, and an accepted
        merge keeps both parts and appends their unweighted midpoint, so K only grows (a
        component left empty by the EM phase is still dropped); from ``K0 = L`` it never
        moves.
    prior : None, "empirical_bayes", "maximum_likelihood", dict or NIWPrior, default=None
        ``None`` uses :func:`mixtures.niw.default_prior` (GPC's values scaled to the data);
        ``"empirical_bayes"`` fits the scale of ``Psi0`` to the labelled classes by
        maximising their NIW evidence (:func:`mixtures.niw.empirical_bayes_prior`; needs two
        or more labelled classes; a dict with ``kind="empirical_bayes"`` passes its other
        keys to it); ``"maximum_likelihood"`` drops the prior (plain EM, as
        :class:`mixtures.GaussianMixtureModel`; needs ``split_merge=False``); any other
        dict is passed to :func:`mixtures.niw.default_prior` as keyword arguments
        (``kind``, ``psi_scale``, ``kappa``, ``nu``); a :class:`mixtures.NIWPrior` is used
        as given.

        ``"calibrated"`` chooses the prior on the known classes, the only labelled
        validation data in category discovery: the known classes are split into
        ``n_folds`` disjoint folds; each fold in turn is hidden (its labels set to
        unlabelled, as if its classes were novel) and the whole search runs under each
        candidate prior, the empirical-Bayes prior with ``Psi0`` multiplied by each of
        ``factors`` (and each concentration in ``split_alpha``). The candidate whose search
        best recovers the hidden classes (mean clustering accuracy of their labelled
        samples, one-to-one Hungarian matching, so a split or a merged class costs
        accuracy) is used for the final fit on all labels. While the best factor is the
        largest (smallest) of the grid and strictly better than every other, the grid
        is extended by doubling (halving), at most ``max_extend`` times. The fold
        searches start from the default K0, so the chosen prior does not depend on
        ``n_components``. ``dict(kind="calibrated",
        factors=(1/8, 1/4, 1/2, 1, 2, 4, 8), split_alpha=(1.0,), n_folds=3,
        max_extend=3)`` sets the candidates (these are the defaults, with ``split_alpha``
        the estimator's). The prior is tuned only to the labelled classes, never to the
        unlabelled data; the cost is that of about ``n_folds * len(factors)`` searches.
    search : {"single", "two_sided"}, default="single"
        ``"two_sided"`` runs the split/merge search twice, from above (the default start,
        ``max(4 L, L + 1, 2)`` components) and from below (``L + 1``), and keeps the end
        state whose partition has the higher DP-NIW log posterior
        (:func:`mixtures.log_partition_posterior`); ``history_["starts"]`` records both.
        ``n_components`` and the ``*_init`` parameters are then not used as starts, so the
        answer does not depend on them (``n_components`` still bounds the number of known
        classes).
    n_restarts : int, default=1
        Independent runs of the whole search (each start of ``"two_sided"``), from new
        random initialisations; the end state with the highest DP-NIW log posterior is
        kept (``history_["starts"]`` lists every run). The split/merge chain is a local
        search, so restarts find partitions of higher posterior more often. With
        ``prior="calibrated"`` the fold searches run once each.
    reg_covar : float, default=1e-6
    n_init : int, default=1
        Initialisations of the first EM phase (semi-supervised k-means from GCD's seeding;
        without labels, scikit-learn's ``KMeans``, seeded as
        :class:`mixtures.GaussianMixtureModel` seeds it); the best log-likelihood is kept.
    max_iter : int, default=100
        EM iterations per phase.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    weights_init, means_init, precisions_init : array-like, default=None
        Starting parameters as in :class:`sklearn.mixture.GaussianMixture` (they replace
        those of the semi-supervised k-means start).
    inference : {"em", "nuts", "svi"}, default="em"
        ``"nuts"`` / ``"svi"``: after the EM (and split/merge) phase, sample the Bayesian
        mixture at the fitted K with NUTS or fit it by SVI, labelled samples clamped to
        their class (:mod:`mixtures.bayesian_gmm`, the model of
        :class:`mixtures.GaussianMixtureModel`), starting from the EM solution; the point
        attributes become posterior means and ``score_samples`` / ``predict_proba`` the
        posterior predictive.
    weight_concentration_prior : float, default=1.0
        Dirichlet concentration of the weights (NUTS/SVI).
    num_warmup, num_samples, num_chains : int, default=500, 500, 2
        NUTS settings.
    num_steps, learning_rate : int, float, default=2000, 1e-2
        SVI settings (Adam).
    num_draws : int, default=200
        Posterior draws kept for prediction.
    random_state : None, int, numpy RandomState or Generator, default=None
    unlabelled : "auto" or scalar, default="auto"
        The label of an unlabelled sample: with ``"auto"``, ``-1`` for integer labels and
        ``None`` for string labels (:func:`mixtures.base.encode_semi_labels`).
    verbose : int, default=0

    Attributes
    ----------
    classes_ : ndarray of shape (n_components,)
        The class of each component, as returned by ``predict``: the known classes' own
        ids (any integers or strings, sorted) for the first ``L`` components, then ids
        that cannot collide with them for the new ones (``max + 1, max + 2, ...`` for
        integers, ``"new_0", "new_1", ...`` for strings;
        :func:`mixtures.base.component_classes`). ``predict_proba``'s columns follow
        this order.
    n_components_ : int
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray, shape as in :class:`sklearn.mixture.GaussianMixture`
    labels_ : ndarray of shape (n_samples,)
        Training assignments in ``classes_`` ids (labelled samples keep their class).
    history_ : dict of lists
        ``"n_components"``, ``"log_likelihood"``, ``"n_splits"``, ``"n_merges"`` and
        ``"log_posterior"`` per round (entry 0 is the initial EM phase).
        ``"log_posterior"`` is the DP-NIW log posterior of the round's hard partition
        (:func:`mixtures.log_partition_posterior`), whose differences are the Hastings
        ratios: a rise means the model prefers the new partition. It need not rise every
        round, because the EM phase after the moves reassigns samples by likelihood
        (``"soft"``) or nearest mean (``"hard"``), not by this objective (NaN under
        ``prior="maximum_likelihood"``).
        With ``search="two_sided"`` the lists are those of the chosen start, and
        ``"starts"`` (one dict per start: ``K0``, final ``K``, final ``log_posterior``)
        and ``"chosen_start"`` (its index) are added.
    n_components_posterior_ : dict of int to float
        How often each K was visited in the second half of the split/merge rounds
        (pooled over the starts of a two-sided search): a rough posterior over the number
        of components. A single value means that the search settled early and stayed.
    calibration_ : dict or None
        With ``prior="calibrated"``: ``"factors"``, ``"split_alpha"`` (the candidates),
        ``"folds"`` (the known class ids hidden in each fold), ``"accuracy"`` and
        ``"n_found"`` (arrays of shape (n_split_alpha, n_factors, n_folds): the hidden
        classes' clustering accuracy and the number of clusters holding at least 10 % of
        a hidden class, to compare with ``"n_hidden"``; NaN and -1 for factors not tried
        with a concentration), and the chosen ``"psi_factor"``,
        ``"psi_scale"`` (mean diagonal of ``Psi0``) and ``"chosen_split_alpha"``.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    prior_ : NIWPrior
    inference_data_ : arviz.InferenceData or None
        Posterior draws with the ``log_likelihood`` and ``observed_data`` groups (NUTS, SVI).
    posterior_samples_ : dict of str to ndarray or None
        The draws used for prediction.
    svi_losses_ : ndarray or None
        Negative ELBO per SVI step.

    References
    ----------
    B. Zhao, X. Wen, K. Han. Learning semi-supervised Gaussian mixture models for
    generalized category discovery. ICCV 2023.
    S. Vaze, K. Han, A. Vedaldi, A. Zisserman. Generalized category discovery. CVPR 2022.
    J. Chang, J. W. Fisher III. Parallel sampling of DP mixture models using sub-cluster
    splits. NeurIPS 2013.
    M. Ronen, S. E. Finder, O. Freifeld. DeepDPM: deep clustering with an unknown number of
    clusters. CVPR 2022.

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
        search="single",
        n_restarts=1,
        reg_covar=1e-6,
        n_init=1,
        max_iter=100,
        tol=1e-3,
        weights_init=None,
        means_init=None,
        precisions_init=None,
        inference="em",
        weight_concentration_prior=1.0,
        num_warmup=500,
        num_samples=500,
        num_chains=2,
        num_steps=2000,
        learning_rate=1e-2,
        num_draws=200,
        random_state=None,
        unlabelled="auto",
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
        self.search = search
        self.n_restarts = n_restarts
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.inference = inference
        self.weight_concentration_prior = weight_concentration_prior
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.num_chains = num_chains
        self.num_steps = num_steps
        self.learning_rate = learning_rate
        self.num_draws = num_draws
        self.unlabelled = unlabelled
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
        "prior": [
            None,
            StrOptions({"empirical_bayes", "maximum_likelihood", "calibrated"}),
            dict,
            NIWPrior,
        ],
        "search": [StrOptions({"single", "two_sided"})],
        "n_restarts": [Interval(numbers.Integral, 1, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0.0, None, closed="left")],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="left")],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "random_state": RANDOM_STATE,
        "inference": [StrOptions({"em", "nuts", "svi"})],
        **BAYESIAN_PARAMETER_CONSTRAINTS,
        "unlabelled": "no_validation",
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ helpers
    def _make_prior(self, X, y) -> NIWPrior:
        if self.prior is None:
            return default_prior(X)
        if isinstance(self.prior, str) and self.prior == "maximum_likelihood":
            return maximum_likelihood_prior(X.shape[1])
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

    def _calibrate(self, X, y, known_ids):
        """Choose the NIW scale (and concentration) by recovering held-out known classes.

        Returns the chosen prior, the chosen concentration and the ``calibration_``
        record (see the class docstring).
        """
        cfg = dict(_CALIBRATION_DEFAULTS, split_alpha=(float(self.split_alpha),))
        if isinstance(self.prior, dict):
            extra = set(self.prior) - set(cfg) - {"kind"}
            if extra:
                raise ValueError(
                    f"unknown calibration options {sorted(extra)}; prior=dict(kind="
                    f"'calibrated', ...) takes {sorted(cfg)}."
                )
            cfg.update({k: v for k, v in self.prior.items() if k != "kind"})
        factors = np.asarray(cfg["factors"], dtype=np.float64).ravel()
        alphas = np.asarray(cfg["split_alpha"], dtype=np.float64).ravel()
        if not (factors.size and np.all(factors > 0) and alphas.size and np.all(alphas > 0)):
            raise ValueError(
                "calibration factors and split_alpha must be non-empty lists of positive "
                f"numbers; got factors={cfg['factors']!r}, split_alpha={cfg['split_alpha']!r}."
            )
        n_known = int(known_ids.size)
        if n_known < 2:
            raise ValueError(
                "prior='calibrated' hides known classes to see whether the search finds them "
                f"again, so it needs at least 2 labelled classes; got {n_known}. Use prior=None "
                "or 'empirical_bayes'."
            )
        n_folds = int(min(int(cfg["n_folds"]), n_known))
        if n_folds < 1:
            raise ValueError(f"calibration n_folds must be >= 1; got {cfg['n_folds']}.")
        rng = random_state_to_generator(self.random_state)
        folds = np.array_split(rng.permutation(n_known), n_folds)
        seeds = rng.integers(2**31 - 1, size=n_folds)
        base = empirical_bayes_prior(X, y)
        # the folds start from the default K0 (not the user's n_components), so the chosen
        # prior does not depend on the start of the final search
        inner = clone(self).set_params(
            inference="em", verbose=0, n_components=None, n_restarts=1,
            weights_init=None, means_init=None, precisions_init=None,
        )  # fmt: skip
        results: dict[tuple[float, float], tuple[list, list]] = {}
        bar = tqdm(disable=not self.verbose, desc="calibration", unit="fit")

        def evaluate(alpha, factor):
            if (alpha, factor) in results:
                return
            acc, nf = [], []
            for j, fold in enumerate(folds):
                hidden = np.isin(y, fold)
                est = clone(inner).set_params(
                    prior=NIWPrior(base.mean, base.kappa, base.nu, np.asarray(base.psi) * factor),
                    split_alpha=float(alpha),
                    random_state=int(seeds[j]),
                )
                est.fit(X, np.where(hidden, -1, y))
                acc.append(cluster_accuracy(y[hidden], est.labels_[hidden])["all"])
                nf.append(_n_clusters_found(y[hidden], est.labels_[hidden]))
                bar.update()
            results[(alpha, factor)] = (acc, nf)

        for alpha in alphas.tolist():
            grid = sorted(float(f) for f in factors)
            for f in grid:
                evaluate(alpha, f)
            # while the factor at an edge of the grid is strictly better than all others,
            # extend the grid by doubling (or halving) it, at most max_extend times
            for _ in range(int(cfg["max_extend"]) if len(grid) > 1 else 0):
                means = [np.mean(results[(alpha, f)][0]) for f in grid]
                if means[-1] > max(means[:-1]):
                    grid.append(grid[-1] * 2.0)
                    evaluate(alpha, grid[-1])
                elif means[0] > max(means[1:]):
                    grid.insert(0, grid[0] / 2.0)
                    evaluate(alpha, grid[0])
                else:
                    break
        bar.close()
        factors = np.array(sorted({f for _, f in results}))
        shape = (alphas.size, factors.size, n_folds)
        accuracy = np.full(shape, np.nan)
        found = np.full(shape, -1, dtype=np.int64)
        for (alpha, f), (acc, nf) in results.items():
            i = int(np.flatnonzero(alphas == alpha)[0])
            k = int(np.flatnonzero(factors == f)[0])
            accuracy[i, k], found[i, k] = acc, nf
        mean = accuracy.mean(-1)  # NaN where a factor was not tried for this alpha
        # best mean held-out accuracy; ties go to the evidence-maximising scale (factor 1)
        key = np.where(np.isnan(mean), -np.inf, np.round(mean, 12))
        key = key - 1e-9 * np.abs(np.log(factors))[None, :]
        a_best, f_best = np.unravel_index(np.argmax(key), key.shape)
        psi = np.asarray(base.psi) * factors[f_best]
        record = {
            "factors": factors,
            "split_alpha": alphas,
            "folds": [known_ids[fold] for fold in folds],
            "accuracy": accuracy,
            "n_found": found,
            "n_hidden": np.array([fold.size for fold in folds]),
            "psi_factor": float(factors[f_best]),
            "psi_scale": float(np.trace(psi) / psi.shape[0]),
            "chosen_split_alpha": float(alphas[a_best]),
        }
        return NIWPrior(base.mean, base.kappa, base.nu, psi), float(alphas[a_best]), record

    def _run_hard(self, ctx, means, rng):
        """GPC's E-step: SS-k-means warm-started at ``means``; NIW-MAP Gaussians of the
        hard clusters (GPC's released E-step). Empty components above the known ids are
        dropped."""
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
        kb = _bucket_k(k) if self.split_merge else k  # padding only when K moves
        pad = kb - k
        denom = prior.nu + d + 2  # 0 without a prior: padding gets the identity
        fallback = np.asarray(prior.psi) / denom if denom > 0 else np.eye(d)
        fallback = fallback + self.reg_covar * np.eye(d)
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
                clamp=bool((y >= 0).any()),
            )
            w = np.asarray(res.params.weights)[:k]
            m = np.asarray(res.params.means)[:k]
            c = np.asarray(res.params.covariances)[:k]
            lb = float(res.lower_bound)
        check_finite_result(
            "the EM parameters", c, "Increase reg_covar or use a stronger prior (psi_scale)."
        )
        if self.split_merge:
            # while K is searched, a component that holds less than one sample's worth of
            # responsibility is not a cluster: drop it (known classes always stay)
            keep = (w * X.shape[0] >= 1.0) | (np.arange(k) < ctx["n_fixed"])
            w, m, c = w[keep], m[keep], c[keep]
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
        if self.prior == "maximum_likelihood":  # no proper NIW prior, no evidence
            return labels, float("nan")
        lp = log_partition_posterior(ctx["X"], labels, ctx["prior"], ctx["alpha"])
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
            protected=prot, n_fixed=ctx["n_fixed"], alpha=ctx["alpha"],
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

    def _search_from(self, ctx, X, k0, known, offset, rng, *, use_init):
        """EM from a start with ``k0`` components (the best of ``n_init``), then the
        split/merge descent; returns the state, its history and its hard partition."""
        Xc, y, prior = ctx["X"], ctx["y"], ctx["prior"]
        d = X.shape[1]
        if use_init:
            w_init, m_init, c_init = check_initial_parameters(
                self.weights_init, self.means_init, self.precisions_init, n_components=k0,
                n_features=d, covariance_type=self.covariance_type,
            )  # fmt: skip
        else:
            w_init = m_init = c_init = None
        best = None
        # without labels the semi-supervised k-means start is k-means: scikit-learn's, seeded
        # as GaussianMixtureModel seeds it (the same random_state gives the same start)
        kmeans_rs = random_state_to_random_state(self.random_state) if not known.size else None
        for _ in range(int(self.n_init)):
            if w_init is None or m_init is None or c_init is None:
                if known.size:
                    _, labels, _, _ = ss_kmeans(Xc, y, k0, n_init=1, max_iter=20, rng=rng)
                else:
                    labels = KMeans(k0, n_init=1, random_state=kmeans_rs).fit(X).labels_
                st = cluster_stats(Xc, labels, k0)
                m, c = map_gaussian(st, prior, self.reg_covar)
                w = (st.n + 1e-10) / (st.n + 1e-10).sum()
            w = w if w_init is None else w_init
            m = m if m_init is None else m_init - offset
            c = _project_cov(c if c_init is None else c_init, self.covariance_type)
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
        state = (w, m, c, lb, n_iter, conv)
        if self.split_merge:
            state, labels = self._descend(ctx, state, labels, rng, history, known)
        return state, history, labels

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Fit on ``X`` with semi-supervised labels ``y`` (``-1`` = unlabelled).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), optional
            Class ids of the labelled samples (any integers or strings) and the
            ``unlabelled`` marker (``-1``, or ``None`` for strings) for the others;
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
        if self.prior == "maximum_likelihood" and self.split_merge:
            raise ValueError(
                "prior='maximum_likelihood' has no NIW evidence, which the split/merge moves "
                "need; pass split_merge=False, or a proper prior (None, 'empirical_bayes')."
            )
        if self.search == "two_sided" and any(
            v is not None for v in (self.weights_init, self.means_init, self.precisions_init)
        ):
            raise ValueError(
                "search='two_sided' starts from its own two K0 (4 L and L + 1 components), so "
                "it does not use weights_init / means_init / precisions_init; pass "
                "search='single' to start from given parameters."
            )
        enc = encode_semi_labels(y, n, self.n_components, unlabelled=self.unlabelled)
        y = enc.codes  # 0..L-1 for the known classes (components 0..L-1), -1 unlabelled
        known = np.arange(enc.known.size)
        n_fixed = int(known.size)
        if self.n_components is None and self.means_init is not None:
            k0 = int(np.shape(self.means_init)[0])
        elif self.n_components is None:
            k0 = max(4 * known.size, n_fixed + 1, 2)
        else:
            k0 = int(self.n_components)
        k0 = max(min(k0, n), n_fixed)
        offset = X.mean(0)
        Xc = X - offset
        alpha = float(self.split_alpha)
        self.calibration_ = None
        if _wants_calibration(self.prior):
            prior, alpha, self.calibration_ = self._calibrate(X, y, enc.known)
        else:
            prior = self._make_prior(X, y)
        prior = NIWPrior(np.asarray(prior.mean) - offset, prior.kappa, prior.nu, prior.psi)
        if np.asarray(prior.mean).shape != (d,) or np.asarray(prior.psi).shape != (d, d):
            raise ValueError(
                f"prior must have mean of shape ({d},) and psi of shape ({d}, {d}) to match X."
            )
        rng = random_state_to_generator(self.random_state)
        ctx = {
            "X": Xc, "y": y, "mesh": make_mesh(), "prior": prior, "n_fixed": n_fixed,
            "alpha": alpha,
        }  # fmt: skip
        two_sided = self.search == "two_sided" and self.split_merge
        restarts = int(self.n_restarts) if self.split_merge else 1
        if two_sided:
            # from above (the default start) and from below (one new component), whatever
            # n_components says: keep the partition the model prefers
            starts = (min(max(4 * n_fixed, n_fixed + 1, 2), n), min(n_fixed + 1, n)) * restarts
        else:
            starts = (k0,) * restarts
        runs = [
            self._search_from(ctx, X, k, known, offset, rng, use_init=not two_sided) for k in starts
        ]
        pick = int(np.argmax([r[1]["log_posterior"][-1] for r in runs]))
        state, history, labels = runs[pick]
        if len(runs) > 1:
            history["starts"] = [
                {
                    "K0": int(k),
                    "K": int(r[1]["n_components"][-1]),
                    "log_posterior": float(r[1]["log_posterior"][-1]),
                }
                for k, r in zip(starts, runs)
            ]
            history["chosen_start"] = pick
        visits = [r[1]["n_components"] for r in runs]
        w, m, c, lb, n_iter, conv = state
        self.n_components_posterior_ = _visit_frequencies(visits)
        self.prior_ = NIWPrior(
            np.asarray(prior.mean) + offset, prior.kappa, prior.nu, np.asarray(prior.psi)
        )
        self.n_components_ = int(m.shape[0])
        self.weights_ = w
        self.means_ = m + offset
        c = _project_cov(c, self.covariance_type)
        self.covariances_ = np.array(covariances_from_full(c, self.covariance_type))
        self.classes_ = component_classes(enc.known, self.n_components_)
        # the hard partition scored last (history_["log_posterior"]), in the user's ids
        self.labels_ = self.classes_[labels]
        self.inference_data_ = None
        self.posterior_samples_ = None
        self.svi_losses_ = None
        self.history_ = history
        self.lower_bound_ = lb
        self.n_iter_ = n_iter
        self.converged_ = conv
        if self.inference != "em":
            self._fit_bayesian(X, y, n_fixed)
        return self

    def _fit_bayesian(self, X, y, n_known):
        """NUTS / SVI on the shared Bayesian mixture at the fitted K, from the EM solution."""
        key = random_state_to_key(random_state_to_generator(self.random_state))
        start = (self.weights_, self.means_, self.covariances_)
        fit = fit_mixture_posterior(self, X, start, y=y, n_known=n_known, key=key)
        self.inference_data_ = fit.inference_data
        self.posterior_samples_ = fit.draws
        self.svi_losses_ = fit.losses
        self.converged_ = fit.converged
        self.weights_ = fit.draws["weights"].mean(0)
        self.means_ = fit.draws["means"].mean(0)
        self.covariances_ = fit.draws["covariances"].mean(0)
        free = np.argmax(self.predict_proba(X), axis=1)
        self.labels_ = self.classes_[np.where(y >= 0, y, free)]

    def _mixture_draws(self):
        if getattr(self, "posterior_samples_", None) is None:
            return super()._mixture_draws()
        return self.posterior_samples_

    # ------------------------------------------------------------------ inference
    # score_samples, score, predict_proba, bic, aic and sample come from MixtureMixin.

    def predict(self, X):
        """Class of the most probable component (``assignment="hard"``: of the nearest
        mean), as ``classes_[component]``: a known class's own id, or a new id."""
        if self.assignment == "hard":
            check_is_fitted(self)
            X = self._validate_X(X, reset=False)
            return self.classes_[squared_distances(X, self.means_).argmin(1)]
        component = super().predict(X)  # checks that the model is fitted
        return self.classes_[component]

    def sample(self, n_samples=1, random_state=None):
        """Draw from the fitted mixture; returns ``(X, y)`` with ``y`` in ``classes_``
        ids (see :meth:`mixtures.MixtureMixin.sample`)."""
        x, z = super().sample(n_samples, random_state=random_state)
        return x, self.classes_[z]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags
