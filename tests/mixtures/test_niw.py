"""NIW evidence, Hastings ratios, MAP updates and moment-preserving split/merge."""

import numpy as np
import pytest
from scipy.special import gammaln
from scipy.stats import invwishart, multivariate_normal

from gmm._split_merge import merge_moments, two_means
from mixtures.niw import (
    ClusterStats,
    NIWPrior,
    cluster_stats,
    default_prior,
    empirical_bayes_prior,
    log_hastings_merge,
    log_hastings_split,
    log_partition_posterior,
    map_gaussian,
    niw_log_evidence,
    pool_stats,
)


def _scipy_log_evidence(X, prior):
    """Independent NIW evidence by the candidate's (Chib) identity with scipy densities:
    log p(X) = log p(X | mu, S) + log p(mu, S) - log p(mu, S | X) at any (mu, S)."""
    n, d = X.shape
    m0, k0, v0, psi0 = prior
    xbar = X.mean(0)
    S = (X - xbar).T @ (X - xbar)
    kn, vn = k0 + n, v0 + n
    mn = (k0 * m0 + n * xbar) / kn
    psin = psi0 + S + (k0 * n / kn) * np.outer(xbar - m0, xbar - m0)
    sig = psin / (vn + d + 1)  # posterior mode of Sigma: any point works
    mu = mn
    lik = multivariate_normal(mu, sig).logpdf(X).sum()
    lprior = multivariate_normal(m0, sig / k0).logpdf(mu) + invwishart(v0, psi0).logpdf(sig)
    lpost = multivariate_normal(mn, sig / kn).logpdf(mu) + invwishart(vn, psin).logpdf(sig)
    return lik + lprior - lpost


@pytest.fixture
def blobs():
    rng = np.random.default_rng(1)
    a = rng.normal(0.0, 1.0, (40, 3))
    b = rng.normal(0.0, 1.0, (30, 3)) @ np.diag([1.0, 0.5, 2.0]) + 4.0
    return a, b


def test_log_evidence_matches_scipy(blobs):
    a, b = blobs
    X = np.concatenate([a, b])
    prior = NIWPrior(X.mean(0) + 0.3, 0.5, 6.0, np.diag([1.0, 2.0, 0.5]))
    st = cluster_stats(X, np.r_[np.zeros(40, int), np.ones(30, int)], 2)
    got = niw_log_evidence(st, prior)
    want = [_scipy_log_evidence(a, prior), _scipy_log_evidence(b, prior)]
    # both sides are float64 sums of O(100) terms of size O(100): 1e-9 relative is ample
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("alpha", [1.0, 10.0])
def test_hastings_ratios_match_scipy(blobs, alpha):
    a, b = blobs
    X = np.concatenate([a, b])
    prior = default_prior(X)
    st = cluster_stats(X, np.r_[np.zeros(40, int), np.ones(30, int)], 2)
    s1 = ClusterStats(st.n[:1], st.mean[:1], st.scatter[:1])
    s2 = ClusterStats(st.n[1:], st.mean[1:], st.scatter[1:])
    lf1, lf2, lf = (_scipy_log_evidence(Z, prior) for Z in (a, b, X))
    want = np.log(alpha) + gammaln(40) + lf1 + gammaln(30) + lf2 - gammaln(70) - lf
    got_s = log_hastings_split(s1, s2, prior, alpha)
    got_m = log_hastings_merge(s1, s2, prior, alpha)
    np.testing.assert_allclose(got_s, [want], rtol=1e-9)
    np.testing.assert_allclose(got_m, [-want], rtol=1e-9)
    assert want > 0  # two well separated blobs: the split is favoured


@pytest.mark.parametrize("alpha", [1.0, 10.0])
def test_partition_posterior_matches_scipy_and_hastings(blobs, alpha):
    a, b = blobs
    X = np.concatenate([a, b])
    prior = default_prior(X)
    labels = np.r_[np.full(40, 7), np.full(30, 3)]  # arbitrary, non-contiguous ids
    got2 = log_partition_posterior(X, labels, prior, alpha)
    got1 = log_partition_posterior(X, np.zeros(70, int), prior, alpha)
    lf1, lf2, lf = (_scipy_log_evidence(Z, prior) for Z in (a, b, X))
    # sum_k [log alpha + ln Gamma(N_k) + log f(X_k)], scipy evidence as the reference
    want2 = 2 * np.log(alpha) + gammaln(40) + lf1 + gammaln(30) + lf2
    want1 = np.log(alpha) + gammaln(70) + lf
    np.testing.assert_allclose([got2, got1], [want2, want1], rtol=1e-9)
    # its difference is the split Hastings ratio (note 5.1)
    st = cluster_stats(X, (labels == 3).astype(int), 2)
    s1 = ClusterStats(st.n[:1], st.mean[:1], st.scatter[:1])
    s2 = ClusterStats(st.n[1:], st.mean[1:], st.scatter[1:])
    np.testing.assert_allclose(got2 - got1, log_hastings_split(s1, s2, prior, alpha)[0], rtol=1e-9)


def test_partition_posterior_bad_input_raises(blobs):
    X = np.concatenate(blobs)
    prior = default_prior(X)
    with pytest.raises(ValueError, match="one entry per row"):
        log_partition_posterior(X, np.zeros(5, int), prior)
    with pytest.raises(ValueError, match="features"):
        log_partition_posterior(X[:, :2], np.zeros(70, int), prior)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        log_partition_posterior(X, np.zeros(70, int), prior)


def test_hastings_degenerate_cases():
    prior = NIWPrior(np.zeros(2), 1e-4, 3.0, np.eye(2))
    empty = ClusterStats(np.zeros(1), np.zeros((1, 2)), np.zeros((1, 2, 2)))
    full = ClusterStats(np.full(1, 5.0), np.ones((1, 2)), np.eye(2)[None])
    assert log_hastings_split(empty, full, prior)[0] == -np.inf  # never accepted
    assert log_hastings_merge(empty, full, prior)[0] == 1.0  # released-code convention


def test_supplied_centre_equals_textbook_at_sample_mean(blobs):
    a, _ = blobs
    prior = default_prior(a)
    st = cluster_stats(a, np.zeros(40, int), 1)
    np.testing.assert_allclose(
        niw_log_evidence(st, prior, centre=st.mean), niw_log_evidence(st, prior), rtol=1e-12
    )


def test_map_gaussian_closed_form(blobs):
    a, _ = blobs
    prior = NIWPrior(np.array([0.5, -1.0, 2.0]), 0.3, 7.0, 0.2 * np.eye(3))
    mu, cov = map_gaussian(cluster_stats(a, np.zeros(40, int), 1), prior)
    n, d = a.shape
    xbar = a.mean(0)
    want_mu = (n * xbar + 0.3 * prior.mean) / (n + 0.3)
    # (n-1) * np.cov is the scatter about the sample mean
    want_cov = (
        prior.psi
        + (n - 1) * np.cov(a.T)
        + 0.3 * n / (0.3 + n) * np.outer(xbar - prior.mean, xbar - prior.mean)
    ) / (7.0 + n + d + 2)
    np.testing.assert_allclose(mu[0], want_mu, rtol=1e-12)
    np.testing.assert_allclose(cov[0], want_cov, rtol=1e-12)


def test_split_then_inverse_merge_preserves_two_moments(blobs):
    a, b = blobs
    X = np.concatenate([a, b])
    sub = two_means(X, np.zeros(len(X), bool), np.random.default_rng(0))
    st = cluster_stats(X, sub, 2)
    pooled = pool_stats(
        ClusterStats(st.n[:1], st.mean[:1], st.scatter[:1]),
        ClusterStats(st.n[1:], st.mean[1:], st.scatter[1:]),
    )
    # pooled statistics == statistics of the parent (exact algebra, float64 rounding)
    np.testing.assert_allclose(pooled.mean[0], X.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pooled.scatter[0], (len(X) - 1) * np.cov(X.T), rtol=1e-11)
    # moment-matched merge of the two ML children == the parent's ML Gaussian
    w, m, c = merge_moments(st.n / st.n.sum(), st.mean, st.scatter / st.n[:, None, None])
    np.testing.assert_allclose(w, 1.0)
    np.testing.assert_allclose(m, X.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c, np.cov(X.T, bias=True), rtol=1e-11)
    # and the 2-means split found the two blobs
    assert {int(st.n[0]), int(st.n[1])} == {40, 30}


def test_default_prior_values_and_errors():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    p = default_prior(X)
    assert p.nu == 9.0 and p.kappa == 1e-4
    # unit-norm isotropic data: total variance ~ 1, so Psi0 ~ 0.005 I as in GPC (note, 4)
    np.testing.assert_allclose(np.diag(p.psi), 0.005, rtol=0.1)
    with pytest.raises(ValueError, match="nu"):
        default_prior(X, nu=3)
    with pytest.raises(ValueError, match="kind"):
        default_prior(X, kind="nope")


def test_empirical_bayes_prior_maximises_labelled_evidence():
    rng = np.random.default_rng(3)
    A = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.3, 0.5]])
    X = np.concatenate([rng.normal(c, 1.0, (30, 3)) @ A for c in (0.0, 3.0, 6.0, 9.0)])
    y = np.repeat(np.arange(4), 30)
    y[::3] = -1  # unlabelled samples do not enter the fit

    def total(prior):  # independent evidence (scipy densities, Chib's identity)
        return sum(_scipy_log_evidence(X[y == c], prior) for c in range(4))

    # the optimisers stop at 1e-4 in log space, far inside the 5 % perturbations below
    p = empirical_bayes_prior(X, y)  # scale of an isotropic Psi0 only
    assert (p.kappa, p.nu) == (1e-4, 4.0)
    np.testing.assert_allclose(p.psi, p.psi[0, 0] * np.eye(3))
    for f in (1.05, 1 / 1.05):
        assert total(NIWPrior(p.mean, p.kappa, p.nu, p.psi * f)) < total(p)
    q = empirical_bayes_prior(X, y, shape="within", fit="all")
    assert q.nu > 2.0 and total(q) > total(p)  # more freedom, higher evidence
    for dnu, ds, dk in [(1.05, 1, 1), (1 / 1.05, 1, 1), (1, 1.05, 1), (1, 1 / 1.05, 1),
                        (1, 1, 1.05), (1, 1, 1 / 1.05)]:  # fmt: skip
        nu = 2.01 + (q.nu - 2.01) * dnu
        assert total(NIWPrior(q.mean, q.kappa * dk, nu, q.psi * ds)) < total(q)
    with pytest.raises(ValueError, match="two labelled classes"):
        empirical_bayes_prior(X, np.where(y == 0, 0, -1))
