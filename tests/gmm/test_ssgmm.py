"""Semi-supervised GMM: reductions to scikit-learn / closed forms, K recovery, errors."""

import pickle

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from gmm import (
    SemiSupervisedGMM,
    SemiSupervisedKMeans,
    cluster_accuracy,
    estimate_n_clusters,
    make_gcd_split,
)
from gmm._split_merge import split_merge_round
from mixtures.em import fit_em_blocks
from mixtures.niw import cluster_stats, default_prior, log_partition_posterior


def _blobs(k=6, d=4, n=80, seed=0, spread=6.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, d))
    X = np.concatenate([rng.normal(c, 1.0, (n, d)) for c in centres])
    return X, np.repeat(np.arange(k), n)


def test_all_labelled_equals_per_class_map():
    X, y = _blobs(k=3, d=3, n=50)
    m = SemiSupervisedGMM(3, split_merge=False, random_state=0).fit(X, y)
    prior = default_prior(X)
    n, d = X.shape
    for k in range(3):
        xk = X[y == k]
        nk, xbar = len(xk), xk.mean(0)
        dm = xbar - prior.mean
        want_mu = (nk * xbar + prior.kappa * prior.mean) / (nk + prior.kappa)
        want_cov = (
            prior.psi
            + (nk - 1) * np.cov(xk.T)
            + prior.kappa * nk / (prior.kappa + nk) * np.outer(dm, dm)
        ) / (prior.nu + nk + d + 2) + 1e-6 * np.eye(d)
        # clamped responsibilities are exactly one-hot: float64 rounding only
        np.testing.assert_allclose(m.means_[k], want_mu, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(m.covariances_[k], want_cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.weights_, np.bincount(y) / n, rtol=1e-9)
    np.testing.assert_array_equal(m.labels_, y)


# K0 = K/2 with the soft EM, K0 = 3K with GPC's hard E-step (many K buckets would each
# compile the soft EM core; the soft path's split/merge is the same code)
# K0 = None starts from 4 L = 12 for the L = 3 known classes
@pytest.mark.parametrize(("k0", "assignment"), [(3, "soft"), (18, "hard"), (None, "hard")])
def test_recovers_k_from_half_and_triple(k0, assignment):
    X, yt = _blobs()
    s = make_gcd_split(yt, old_classes=range(3), labelled_fraction=0.5, random_state=0)
    m = SemiSupervisedGMM(
        k0, assignment=assignment, acceptance="mh", max_rounds=15, random_state=0
    ).fit(X, s.y)
    assert m.n_components_ == 6
    assert m.history_["n_components"][0] == (k0 or 12)
    # history_["log_posterior"] is the DP-NIW objective of each round's partition
    h = m.history_
    assert len(h["log_posterior"]) == len(h["n_components"])
    # the estimator works on centred data; the evidence is translation invariant, so only
    # float64 rounding of the centring separates the two (sums of O(1e3) terms: 1e-9)
    want = log_partition_posterior(X, m.labels_, m.prior_)
    np.testing.assert_allclose(h["log_posterior"][-1], want, rtol=1e-9)
    u = ~s.labelled_mask
    assert cluster_accuracy(yt[u], m.labels_[u], s.old_mask[u])["all"] > 0.95
    # known classes keep their component ids
    np.testing.assert_array_equal(m.labels_[s.labelled_mask], s.y[s.labelled_mask])


def test_spurious_component_merges_into_known_class():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(8, 1, (60, 2))])
    y = np.r_[np.zeros(20, int), -np.ones(100, int)]
    y[60:70] = 1
    # component 2 is a spurious piece of class 0 (its unlabelled half on one side)
    labels = np.r_[np.zeros(20, int), np.where(X[20:60, 0] > 0, 2, 0), np.ones(60, int)]
    prior = default_prior(X)
    st = cluster_stats(X, labels, 3)
    w = st.n / st.n.sum()
    rr = split_merge_round(
        X, y, labels, w, st.mean, st.scatter / st.n[:, None, None], prior,
        protected=np.array([True, True, False]), n_fixed=2, min_size=1000, rng=0,
    )  # fmt: skip
    assert (rr.n_splits, rr.n_merges) == (0, 1)
    assert rr.means.shape[0] == 2
    np.testing.assert_allclose(rr.weights[0], 0.5)  # class 0 got its spurious half back


def test_released_bookkeeping_only_grows():
    """The released GPC bookkeeping (note, section 6): an accepted merge keeps both parts
    and appends their unweighted midpoint; labelled components never split or merge."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (40, 2)), rng.normal(10, 1, (60, 2))])
    y = np.r_[np.zeros(20, int), -np.ones(80, int)]
    # two unlabelled pieces of the second blob (a merge is favoured), 30 + 30 points
    labels = np.r_[np.zeros(40, int), np.where(X[40:, 0] > 10, 2, 1)]
    prior = default_prior(X)
    st = cluster_stats(X, labels, 3)
    kw = dict(protected=np.array([True, False, False]), n_fixed=1, min_size=1000)
    w = st.n / st.n.sum()
    cov = st.scatter / st.n[:, None, None]
    rel = split_merge_round(X, y, labels, w, st.mean, cov, prior, bookkeeping="released",
                            rng=0, **kw)  # fmt: skip
    cor = split_merge_round(X, y, labels, w, st.mean, cov, prior, rng=0, **kw)
    # released: 1 -> 2 and 2 -> 1 are both tested and accepted, each appends a midpoint
    assert (rel.n_splits, rel.n_merges) == (0, 2)
    assert rel.means.shape[0] == 3 + 2
    np.testing.assert_allclose(rel.means[:3], st.mean)  # the parts are kept
    mid = 0.5 * (st.mean[1] + st.mean[2])  # unweighted, whatever the sizes
    np.testing.assert_allclose(rel.means[3:], [mid, mid])
    # corrected: one merge that replaces both parts by their size-weighted union
    assert (cor.n_merges, cor.means.shape[0]) == (1, 2)
    np.testing.assert_allclose(cor.means[1], X[40:].mean(0), atol=1e-3)  # kappa0 shrinkage
    with pytest.raises(ValueError, match="bookkeeping"):
        split_merge_round(X, y, labels, w, st.mean, cov, prior, bookkeeping="gpc", **kw)


def test_released_bookkeeping_is_stuck_at_the_known_classes():
    """From K0 = |Y_l| every component holds labelled samples: the released code has no
    proposal and K stays at K0 (note, section 6, bug 2); the corrected one finds K."""
    X, yt = _blobs()
    s = make_gcd_split(yt, old_classes=range(3), labelled_fraction=0.5, random_state=0)
    m = SemiSupervisedGMM(3, assignment="hard", bookkeeping="released", max_rounds=5,
                          random_state=0).fit(X, s.y)  # fmt: skip
    assert m.history_["n_components"] == [3, 3, 3]  # stops after two quiet rounds
    assert sum(m.history_["n_splits"]) + sum(m.history_["n_merges"]) == 0


def test_new_class_hidden_in_a_known_class_splits_off():
    """A known class A (elongated, half labelled) whose component also holds a small new
    class B: the free 2-means cuts A in two (rejected by the labelled-fraction test), so
    the proposal seeded away from the labelled samples must find B (20/20 seeds in a
    scratch run at this geometry; the free proposal alone found it in 3/20)."""
    found = 0
    for seed in range(5):
        rng = np.random.default_rng(seed)
        A = rng.normal(size=(400, 2)) * [4.0, 0.5]
        B = rng.normal(size=(60, 2)) * 0.3 + [0.0, 5.0]
        X = np.vstack([A, B])
        y = np.where(np.r_[rng.random(400) < 0.5, np.zeros(60, bool)], 0, -1)
        labels = np.zeros(460, int)
        st = cluster_stats(X, labels, 1)
        rr = split_merge_round(
            X, y, labels, np.ones(1), st.mean, st.scatter / st.n[:, None, None],
            default_prior(X), protected=np.array([True]), n_fixed=1, min_size=5, rng=seed,
        )  # fmt: skip
        if rr.n_splits == 1:
            np.testing.assert_allclose(rr.means[1], [0.0, 5.0], atol=0.3)  # the new class
            np.testing.assert_allclose(rr.weights, [400 / 460, 60 / 460], atol=0.01)
            found += 1
    assert found == 5


def test_invalid_labels_raise():
    X, _ = _blobs(k=2, d=2, n=10)
    with pytest.raises(ValueError, match="3 known classes but n_components=2"):
        SemiSupervisedGMM(2).fit(X, np.r_[np.arange(3), -np.ones(17)].astype(int))
    with pytest.raises(ValueError, match="integer"):
        SemiSupervisedGMM(2).fit(X, np.full(20, 0.5))
    with pytest.raises(ValueError, match="shape"):
        SemiSupervisedGMM(2).fit(X, np.zeros(7, int))
    with pytest.raises(ValueError, match="mixes label types"):
        SemiSupervisedGMM(2).fit(X, np.array(["a", 1] + [None] * 18, dtype=object))
    with pytest.raises(ValueError, match="acceptance"):
        SemiSupervisedGMM(2, acceptance="always").fit(X)
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(ValueError, match="max_rounds"):
            SemiSupervisedGMM(2, max_rounds=bad).fit(X)


def test_predict_score_bic_and_pickle():
    X, yt = _blobs(k=3, d=3, n=50)
    m = SemiSupervisedGMM(3, split_merge=False, random_state=0).fit(X)
    proba = m.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(proba.argmax(1), m.predict(X))
    # log density against scipy on the fitted parameters
    from scipy.stats import multivariate_normal

    dens = sum(
        w * multivariate_normal(mu, c).pdf(X)
        for w, mu, c in zip(m.weights_, m.means_, m.covariances_)
    )
    np.testing.assert_allclose(m.score_samples(X), np.log(dens), rtol=1e-10)
    n_par = 3 * 6 + 3 * 3 + 2
    assert m.bic(X) == pytest.approx(-2 * np.log(dens).sum() + n_par * np.log(len(X)))
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(m2.score_samples(X), m.score_samples(X))
    # same clustering quality as scikit-learn's GMM on these (slightly overlapping) blobs
    ref = GaussianMixture(3, n_init=3, random_state=0).fit(X).predict(X)
    assert cluster_accuracy(yt, m.labels_)["all"] >= cluster_accuracy(yt, ref)["all"] - 0.02


def test_ss_kmeans_matches_sklearn_without_labels():
    X, _ = _blobs(k=4, d=3, n=40)
    ss = SemiSupervisedKMeans(4, n_init=5, random_state=0).fit(X)
    sk = KMeans(4, n_init=5, random_state=0).fit(X)
    # well separated blobs: both reach the same global optimum
    assert ss.inertia_ == pytest.approx(sk.inertia_, rel=1e-9)
    y = -np.ones(len(X), int)
    y[:5] = 0
    ss2 = SemiSupervisedKMeans(4, random_state=0).fit(X, y)
    assert np.all(ss2.labels_[:5] == 0)
    with pytest.raises(ValueError, match="3 known classes but n_components=2"):
        SemiSupervisedKMeans(2).fit(X, np.arange(len(X)) % 3)


def test_ss_kmeans_from_given_centres_matches_sklearn_lloyd():
    # overlapping blobs, so the fixed point depends on the start: Lloyd's algorithm from the
    # same centres must reach the same fixed point as scikit-learn's (tol=0: run to a fixed
    # point on both sides)
    X, _ = _blobs(k=5, d=3, n=60, spread=1.5, seed=3)
    C = X[[0, 70, 140, 210, 280]] + 0.1
    ss = SemiSupervisedKMeans(5, init=C, tol=0.0, max_iter=300).fit(X)
    sk = KMeans(5, init=C, n_init=1, tol=0.0, max_iter=300, algorithm="lloyd").fit(X)
    assert np.array_equal(ss.labels_, sk.labels_)
    np.testing.assert_allclose(ss.cluster_centers_, sk.cluster_centers_, rtol=1e-10, atol=1e-12)
    assert ss.inertia_ == pytest.approx(sk.inertia_, rel=1e-10)
    # with labels, the labelled samples stay in their class cluster from the given start
    y = -np.ones(len(X), int)
    y[[1, 2, 3]] = 4
    ss2 = SemiSupervisedKMeans(5, init=C, tol=0.0).fit(X, y)
    assert np.all(ss2.labels_[[1, 2, 3]] == 4)
    for bad, msg in (
        (C[:4], r"shape \(n_clusters, n_features\) = \(5, 3\)"),
        (np.where(C > 0, np.nan, C), "NaN"),
        ("k-means++", "'init' parameter"),
    ):
        with pytest.raises(ValueError, match=msg):
            SemiSupervisedKMeans(5, init=bad).fit(X)
    for name, bad in (("n_init", 0), ("max_iter", 2.5), ("n_init", True)):
        with pytest.raises(ValueError, match=f"{name}"):
            SemiSupervisedKMeans(5, **{name: bad}).fit(X)


def test_estimate_n_clusters_brent():
    X, yt = _blobs(k=6, d=4, n=40, spread=10.0)
    s = make_gcd_split(yt, old_classes=range(3), labelled_fraction=0.5, random_state=0)
    k_hat, scores = estimate_n_clusters(X, s.y, bounds=(3, 12), n_init=3, return_scores=True)
    lab = s.labelled_mask

    def f(k):  # independent objective: labelled Hungarian accuracy of plain k-means
        pred = KMeans(k, n_init=3, random_state=0).fit(X).labels_[lab]
        w = np.zeros((max(k, 3), max(k, 3)))
        np.add.at(w, (pred, s.y[lab]), 1)
        r, c = linear_sum_assignment(w, maximize=True)
        return w[r, c].sum() / lab.sum()

    grid = {k: f(k) for k in range(3, 13)}
    for k, v in scores.items():
        assert v == pytest.approx(grid[k], abs=1e-12)
    # Brent lands on a global maximiser of the (piecewise-constant) objective
    assert grid[k_hat] == pytest.approx(max(grid.values()), abs=1e-12)
    assert 3 <= k_hat <= 8


def test_second_fit_compiles_nothing():
    X, y = _blobs(k=3, d=3, n=50)
    SemiSupervisedGMM(3, split_merge=False, random_state=0).fit(X, y)
    before = fit_em_blocks._cache_size()
    # continuous hyperparameters are traced: changing them must not recompile
    SemiSupervisedGMM(3, split_merge=False, tol=1e-5, reg_covar=1e-4, random_state=1).fit(X, y)
    assert fit_em_blocks._cache_size() == before


def test_hard_assignment_is_a_semi_supervised_kmeans_fixed_point():
    X, yt = _blobs(k=4, d=3, n=40, seed=2, spread=3.0)
    y = np.where((yt < 2) & (np.arange(len(X)) % 2 == 0), yt, -1)
    m = SemiSupervisedGMM(4, assignment="hard", split_merge=False, random_state=0).fit(X, y)
    lab = m.labels_
    np.testing.assert_array_equal(lab[y >= 0], y[y >= 0])
    # brute force: unlabelled samples sit at their nearest mean, and each mean is the
    # NIW posterior mean (N xbar + kappa0 m0) / (N + kappa0) of its members
    d2 = ((X[:, None, :] - m.means_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(lab[y < 0], d2[y < 0].argmin(1))
    k0, m0 = m.prior_.kappa, m.prior_.mean
    for j in range(4):
        nj = (lab == j).sum()
        want = (nj * X[lab == j].mean(0) + k0 * m0) / (nj + k0)
        np.testing.assert_allclose(m.means_[j], want, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(m.predict(X)[y < 0], lab[y < 0])


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_unlabelled_equals_gaussian_mixture_model_from_the_same_start(covariance_type):
    """One EM engine: with no labels, no split/merge and no prior, SS-GMM is the GMM."""
    from mixtures import GaussianMixtureModel

    X, _ = _blobs(k=3, d=3, n=60, spread=3.0)
    rng = np.random.default_rng(1)
    w0, m0 = np.full(3, 1 / 3), X[rng.choice(len(X), 3, replace=False)]
    prec = {"full": np.stack([np.eye(3)] * 3), "diag": np.ones((3, 3)), "spherical": np.ones(3)}
    kw = dict(
        covariance_type=covariance_type, weights_init=w0, means_init=m0,
        precisions_init=prec[covariance_type], tol=1e-6, max_iter=300,
    )  # fmt: skip
    gm = GaussianMixtureModel(3, **kw).fit(X)
    ss = SemiSupervisedGMM(3, split_merge=False, prior="maximum_likelihood", **kw).fit(X)
    assert ss.n_iter_ == gm.n_iter_
    # same algorithm; only the row blocking (K padded to 16 inside SS-GMM) changes the
    # summation order
    assert ss.lower_bound_ == pytest.approx(gm.lower_bound_, rel=1e-10)
    for a, b in ((ss.weights_, gm.weights_), (ss.means_, gm.means_)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ss.covariances_, gm.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ss.score_samples(X), gm.score_samples(X), rtol=1e-10)
    assert ss.bic(X) == pytest.approx(gm.bic(X), rel=1e-10)
    with pytest.raises(ValueError, match="split_merge=False"):
        SemiSupervisedGMM(3, prior="maximum_likelihood").fit(X)


@pytest.mark.filterwarnings("ignore::mixtures.diagnostics.MixprocConvergenceWarning")
def test_nuts_and_svi_at_fixed_k_clamp_the_labelled_samples():
    from scipy.stats import multivariate_normal

    X, yt = _blobs(k=3, d=2, n=40, spread=4.0, seed=2)
    y = np.where((yt < 2) & (np.arange(len(X)) % 4 == 0), yt, -1)
    kw = dict(covariance_type="diag", split_merge=False, random_state=0)
    em = SemiSupervisedGMM(3, **kw).fit(X, y)
    nuts = SemiSupervisedGMM(3, inference="nuts", num_warmup=100, num_samples=100, **kw)
    nuts.fit(X, y)
    # known classes keep their ids; with 40 points per class the posterior means sit within
    # a few posterior s.d. (~ 1 / sqrt(40) = 0.16) of the MAP
    np.testing.assert_allclose(nuts.means_[:2], em.means_[:2], atol=0.5)
    np.testing.assert_array_equal(nuts.labels_[y >= 0], y[y >= 0])
    assert cluster_accuracy(yt, nuts.labels_)["all"] > 0.95
    # the log-likelihood counts a labelled sample with its own component only
    idata = nuts.inference_data_
    w, mu, var = (np.asarray(idata.posterior[k])[0, 5] for k in ("weights", "means", "covariances"))
    comp = np.stack(
        [np.log(w[k]) + multivariate_normal(mu[k], np.diag(var[k])).logpdf(X) for k in range(3)],
        1,
    )
    want = np.where(y >= 0, comp[np.arange(len(X)), np.maximum(y, 0)], np.logaddexp.reduce(comp, 1))
    np.testing.assert_allclose(np.asarray(idata.log_likelihood["obs"])[0, 5], want, rtol=1e-10)
    svi = SemiSupervisedGMM(3, inference="svi", num_steps=400, **kw).fit(X, y)
    np.testing.assert_allclose(svi.means_[:2], em.means_[:2], atol=0.5)
    assert svi.posterior_samples_["means"].shape == (200, 3, 2)


def test_first_hour_errors_instead_of_silent_answers():
    """Issue items: known labels 5 and 7 gave 8 components with 6 empty known classes;
    p_fixed=2 and tol=-1 were accepted; data near overflow gave wrong clusterings."""
    X, yt = _blobs(k=2, d=2, n=20)
    y = np.where(np.arange(len(X)) % 3 == 0, np.where(yt == 0, 5, 7), -1)
    m = SemiSupervisedGMM(split_merge=False, random_state=0).fit(X, y)
    assert m.classes_[:2].tolist() == [5, 7]  # one component per known class, no empty ones
    assert m.n_components_ == 8  # 4 L with L = 2 known classes
    np.testing.assert_array_equal(m.labels_[y >= 0], y[y >= 0])
    with pytest.raises(ValueError, match="p_fixed"):
        SemiSupervisedGMM(2, acceptance="gpc", p_fixed=2).fit(X)
    with pytest.raises(ValueError, match="tol"):
        SemiSupervisedKMeans(2, tol=-1).fit(X)
    from mixtures import GaussianMixtureModel

    for est in (SemiSupervisedKMeans(2), SemiSupervisedGMM(2), GaussianMixtureModel(2)):
        with pytest.raises(ValueError, match="overflow float64. Scale the data"):
            est.fit(X * 1e300)


def test_ss_kmeans_score_is_sklearn_kmeans_score_and_grid_search_works():
    from sklearn.model_selection import GridSearchCV

    X, _ = _blobs(k=3, d=2, n=30, spread=4.0)
    C = X[[0, 30, 60]]
    ss = SemiSupervisedKMeans(3, init=C).fit(X)
    sk = KMeans(3, init=C, n_init=1).fit(X)
    assert ss.score(X[:17]) == pytest.approx(sk.score(X[:17]), rel=1e-10)
    grid = GridSearchCV(SemiSupervisedKMeans(random_state=0), {"n_clusters": [2, 3, 6]}).fit(X)
    assert grid.best_params_["n_clusters"] == 6  # the objective always prefers more clusters


def test_unlabelled_equals_gaussian_mixture_model_from_the_same_seed():
    from mixtures import GaussianMixtureModel

    X, _ = _blobs(k=4, d=3, n=50, spread=2.5, seed=5)
    for rs in (0, np.int64(11)):
        gm = GaussianMixtureModel(4, random_state=rs).fit(X)
        ss = SemiSupervisedGMM(
            4, split_merge=False, prior="maximum_likelihood", random_state=rs
        ).fit(X)
        assert ss.n_iter_ == gm.n_iter_
        assert ss.lower_bound_ == pytest.approx(gm.lower_bound_, rel=1e-10)
        np.testing.assert_allclose(ss.means_, gm.means_, rtol=1e-8, atol=1e-10)
