"""GaussianMixtureModel: EM vs scikit-learn, Bayesian fits, bad input, pickling, compiles."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from mixtures import GaussianMixtureModel


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(-3, 1.0, (120, 2)), rng.normal(3, 0.7, (80, 2))]


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_em_fit_matches_sklearn_from_same_kmeans_init(covariance_type):
    X = load_iris().data
    ours = GaussianMixtureModel(3, covariance_type=covariance_type, random_state=0).fit(X)
    sk = SkGaussianMixture(3, covariance_type=covariance_type, random_state=0)
    sk.fit(X)
    # Both start from k-means on the same RandomState stream and run the same
    # float64 EM; the fitted parameters agree to ~1e-6 (the tol=1e-3 stopping rule is
    # hit at the same iteration); compare after sorting components by their means.
    o, s = np.argsort(ours.means_[:, 0]), np.argsort(sk.means_[:, 0])
    np.testing.assert_allclose(ours.means_[o], sk.means_[s], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.weights_[o], sk.weights_[s], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.covariances_[o], sk.covariances_[s], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-6)
    np.testing.assert_allclose(ours.bic(X), sk.bic(X), rtol=1e-6)
    np.testing.assert_allclose(ours.aic(X), sk.aic(X), rtol=1e-6)
    assert ours.converged_ and ours.n_iter_ == sk.n_iter_


@pytest.fixture(scope="module")
def nuts_fit():
    """One two-chain NUTS fit shared by the tests that read its posterior (one compile)."""
    import warnings

    from mixtures.diagnostics import MixprocConvergenceWarning

    X = _blobs()
    # diagonal covariances keep the compile short; "full" (LKJ) runs in the notebook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixprocConvergenceWarning)
        m = GaussianMixtureModel(
            2, inference="nuts", num_warmup=150, num_samples=150, num_chains=2,
            covariance_type="diag", random_state=0,
        ).fit(X)  # fmt: skip
    return X, m


def test_nuts_fit_posterior_and_inference_data(nuts_fit):
    X, m = nuts_fit
    em = GaussianMixtureModel(2, covariance_type="diag", random_state=0).fit(X)
    idata = m.inference_data_
    assert set(idata.posterior.data_vars) == {"weights", "means", "covariances"}
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 150
    # with n = 200 the posterior means sit within a few posterior s.d. of the MLE:
    # s.d. of a component mean is ~ sigma / sqrt(n_k) ~ 0.1
    o = np.argsort(em.means_[:, 0])
    np.testing.assert_allclose(m.means_, em.means_[o], atol=0.3)
    np.testing.assert_allclose(m.weights_, em.weights_[o], atol=0.1)
    # posterior predictive density is close to the plug-in density on the training data
    assert abs(m.score(X) - em.score(X)) < 0.05
    assert (m.predict(X) == (X[:, 0] > 0)).mean() > 0.99


def test_svi_fit_close_to_em():
    X = _blobs(1)
    m = GaussianMixtureModel(
        2, inference="svi", covariance_type="diag", num_steps=800, random_state=0
    ).fit(X)
    em = GaussianMixtureModel(2, covariance_type="diag", random_state=0).fit(X)
    o = np.argsort(em.means_[:, 0])
    np.testing.assert_allclose(m.means_, em.means_[o], atol=0.3)
    assert m.svi_losses_.shape == (800,)
    assert m.inference_data_.posterior.sizes["draw"] == 200
    assert abs(m.score(X) - em.score(X)) < 0.05


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), "infinity"),
        (np.arange(6.0), "Expected 2D array"),
        (np.ones((2, 2, 2)), "dim 3"),
    ],
)
def test_bad_input_raises_clear_value_error(X, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixtureModel(1).fit(X)


def test_fewer_samples_than_components_and_zero_components():
    with pytest.raises(ValueError, match="n_samples >= n_components.*reduce n_components"):
        GaussianMixtureModel(5).fit(np.random.default_rng(0).normal(size=(3, 2)))
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixtureModel(0).fit(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixtureModel(2, covariance_type="tied").fit(np.ones((10, 2)))


def test_predict_with_wrong_number_of_features_raises():
    m = GaussianMixtureModel(2, random_state=0).fit(_blobs())
    with pytest.raises(ValueError, match="features"):
        m.predict(np.ones((3, 5)))


def test_pickle_round_trip_unchanged():
    X = _blobs()
    m = GaussianMixtureModel(2, random_state=0).fit(X)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m.score_samples(X), m2.score_samples(X))
    assert all(
        isinstance(getattr(m2, a), np.ndarray) for a in ("weights_", "means_", "covariances_")
    )


def test_refit_same_shapes_compiles_nothing(compile_counter):
    X = _blobs()
    m = GaussianMixtureModel(2, random_state=0)
    m.fit(X)
    m.score_samples(X)
    with compile_counter() as n:
        m.set_params(reg_covar=1e-4, tol=1e-4).fit(X + 0.5)
        m.score_samples(X)
    assert n[0] == 0


def test_sample_matches_fitted_moments():
    m = GaussianMixtureModel(2, random_state=0).fit(_blobs())
    x, z = m.sample(50_000, random_state=1)
    mean = m.weights_ @ m.means_
    # Monte Carlo mean: s.e. <= sqrt(max var / n) ~ 0.015; allow 0.05
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.bincount(z) / len(z), m.weights_, atol=0.01)


def test_same_start_log_likelihood_equals_sklearn_to_1e8():
    """From the same start (scikit-learn's ``*_init`` arguments) the fits agree to rounding."""
    X = load_iris().data
    rng = np.random.default_rng(3)
    w0 = np.full(3, 1 / 3)
    m0 = X[rng.choice(len(X), 3, replace=False)]
    p0 = np.stack([np.linalg.inv(np.cov(X.T))] * 3)
    kw = dict(weights_init=w0, means_init=m0, precisions_init=p0, tol=1e-8, max_iter=500)
    ours = GaussianMixtureModel(3, **kw).fit(X)
    sk = SkGaussianMixture(3, **kw).fit(X)
    assert ours.n_iter_ == sk.n_iter_
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-8)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_init_from_the_same_random_state_equals_sklearn(init_params):
    """Same seed, same draws, same start, same EM: the fits agree to rounding."""
    X = _blobs(4)
    for rs in (0, np.int64(7)):
        ours = GaussianMixtureModel(2, init_params=init_params, random_state=rs).fit(X)
        sk = SkGaussianMixture(2, init_params=init_params, random_state=rs).fit(X)
        assert ours.n_iter_ == sk.n_iter_
        np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-10, atol=1e-12)
        assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-12)


def test_init_arrays_are_validated():
    X = _blobs()
    with pytest.raises(ValueError, match="means_init"):
        GaussianMixtureModel(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixtureModel(2, weights_init=[0.2, 0.2]).fit(X)
    with pytest.raises(ValueError, match="positive-definite"):
        GaussianMixtureModel(2, precisions_init=-np.stack([np.eye(2)] * 2)).fit(X)


@pytest.mark.filterwarnings("ignore::mixtures.diagnostics.MixprocConvergenceWarning")
def test_one_chain_one_component_nuts_runs_and_says_what_is_skipped():
    """Issue: num_chains=1 crashed (chain axis dropped); K=1 crashed in check_convergence
    (R-hat of the constant weight is NaN). One fit covers both."""
    from mixtures import check_convergence

    X = _blobs()
    m = GaussianMixtureModel(
        1, inference="nuts", num_chains=1, covariance_type="diag", num_warmup=50,
        num_samples=50, random_state=0,
    ).fit(X)  # fmt: skip
    assert m.inference_data_.posterior.sizes["chain"] == 1
    report = check_convergence(m.inference_data_, warn=False)
    assert any("2 chains" in f for f in report.failures)
    assert report.skipped == ["weights[0]"]
    assert np.isnan(report.max_rhat) and np.isfinite(report.min_ess_bulk)
    np.testing.assert_allclose(m.weights_, [1.0])


def test_inference_data_has_the_groups_arviz_loo_needs(nuts_fit):
    import arviz as az
    from scipy.stats import multivariate_normal

    X, m = nuts_fit
    idata = m.inference_data_
    assert {"posterior", "log_likelihood", "observed_data", "sample_stats"} <= set(idata.groups())
    # pointwise log-likelihood of one draw against scipy
    post = idata.posterior
    w, mu, var = (np.asarray(post[k])[1, 7] for k in ("weights", "means", "covariances"))
    want = np.log(sum(w[k] * multivariate_normal(mu[k], np.diag(var[k])).pdf(X) for k in range(2)))
    np.testing.assert_allclose(np.asarray(idata.log_likelihood["obs"])[1, 7], want, rtol=1e-10)
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    np.testing.assert_allclose(np.asarray(idata.observed_data["obs"]), X)
    # posterior_predictive: one replicated data set per draw, for az.plot_ppc
    rep = np.asarray(idata.posterior_predictive["obs"])
    assert rep.shape == (2, 150) + X.shape
    # the replicates' mean over draws and points is the posterior mean of the mixture
    # mean sum_k w_k mu_k; Monte-Carlo s.e. about sd(X) / sqrt(300 * n) = 3 / 245 = 0.012
    w, mu = np.asarray(post["weights"]), np.asarray(post["means"])
    mixture_mean = np.einsum("cdk,cdkj->j", w, mu) / (w.shape[0] * w.shape[1])
    np.testing.assert_allclose(rep.mean(axis=(0, 1, 2)), mixture_mean, atol=0.08)
    import matplotlib

    matplotlib.use("Agg")
    az.plot_ppc(idata, num_pp_samples=10)


def test_posterior_predictive_clamps_labelled_points_and_thins_draws():
    from mixtures.bayesian_gmm import posterior_predictive

    # two fixed components far apart; point 0 is labelled with component 1, point 1 with 0,
    # the rest are unlabelled and come from the 0.25 / 0.75 mixture
    draws = {
        "weights": np.tile([0.25, 0.75], (2, 50, 1)),
        "means": np.tile([[-10.0, 0.0], [10.0, 0.0]], (2, 50, 1, 1)),
        "covariances": np.tile([1.0, 4.0], (2, 50, 1)),  # spherical variances
    }
    y = np.r_[1, 0, np.full(398, -1)]
    rep = posterior_predictive(np.random.default_rng(0), y, draws, "spherical", 2)
    assert rep.shape == (2, 50, 400, 2)
    assert np.all(rep[:, :, 0, 0] > 0) and np.all(rep[:, :, 1, 0] < 0)
    # unlabelled: fraction from component 1 is 0.75 (s.e. sqrt(.75 * .25 / 39800) = 0.002)
    assert abs((rep[:, :, 2:, 0] > 0).mean() - 0.75) < 0.01
    # component variances 1 and 4 in the second coordinate (s.e. of a variance ~0.01-0.03)
    second = rep[:, :, 2:, 1]
    np.testing.assert_allclose(second[rep[:, :, 2:, 0] < 0].var(), 1.0, rtol=0.05)
    np.testing.assert_allclose(second[rep[:, :, 2:, 0] > 0].var(), 4.0, rtol=0.05)
    # thinning: at most max_values values, at least one draw per chain
    small = posterior_predictive(np.random.default_rng(0), y, draws, "spherical", 2, 16000)
    assert small.shape == (2, 10, 400, 2)
    tiny = posterior_predictive(np.random.default_rng(0), y, draws, "spherical", 2, 10)
    assert tiny.shape == (2, 1, 400, 2)
