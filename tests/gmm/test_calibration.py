"""Calibrating the NIW prior on held-out known classes (prior="calibrated"), the
two-sided search and the posterior over K.

The synthetic set is built so that the uncalibrated priors fail: every class is two
Gaussian sub-blobs 5 standard deviations apart, so the evidence-maximising prior of the
labelled classes is too tight and split/merge finds about 15 "classes" instead of 10.
Hiding known classes shows the calibration that a wider prior recovers them whole.
"""

import numpy as np
import pytest

from gmm import SemiSupervisedGMM, cluster_accuracy


def _bimodal_classes(k=10, d=4, n=120, spread=15.0, sep=5.0, seed=1):
    rng = np.random.default_rng(seed)
    parts = []
    for c in rng.normal(0, spread, (k, d)):
        off = rng.normal(0, 1, d)
        off *= sep / 2 / np.linalg.norm(off)
        parts += [rng.normal(c + off, 1, (n // 2, d)), rng.normal(c - off, 1, (n // 2, d))]
    X = np.concatenate(parts)
    truth = np.repeat(np.arange(k), n)
    y = np.where((truth < k // 2) & (rng.random(k * n) < 0.5), truth, -1)
    return X, y, truth


@pytest.fixture(scope="module")
def data():
    return _bimodal_classes()


def test_uncalibrated_prior_overshoots_on_multimodal_classes(data):
    X, y, truth = data
    m = SemiSupervisedGMM(20, prior="empirical_bayes", random_state=0).fit(X, y)
    assert m.n_components_ >= 13  # the premise of the calibration tests below
    assert m.calibration_ is None


@pytest.fixture(scope="module")
def calibrated_fits(data):
    X, y, _ = data
    return {
        k0: SemiSupervisedGMM(k0, prior="calibrated", search="two_sided", random_state=0).fit(X, y)
        for k0 in (6, 20, 30)  # |Old| + 1, 2K, 3K
    }


def test_calibration_recovers_k_from_every_start(data, calibrated_fits):
    X, y, truth = data
    u = y < 0
    ref = calibrated_fits[6]
    for m in calibrated_fits.values():
        assert m.n_components_ == 10
        assert cluster_accuracy(truth[u], m.labels_[u])["all"] > 0.99
        # the calibration and the two-sided search do not read the start
        np.testing.assert_array_equal(m.labels_, ref.labels_)
        assert m.calibration_["psi_factor"] == ref.calibration_["psi_factor"]


def test_calibration_record_and_two_sided_history(data, calibrated_fits):
    X, y, _ = data
    m = calibrated_fits[20]
    cal = m.calibration_
    # the chosen candidate is the best mean held-out accuracy, and a wider prior than
    # the evidence maximum (factor 1), which splits every hidden bimodal class
    mean = cal["accuracy"].mean(-1)[0]
    best = list(cal["factors"]).index(cal["psi_factor"])
    assert mean[best] == np.nanmax(mean)
    assert cal["psi_factor"] > 1
    assert mean[list(cal["factors"]).index(1.0)] < 0.7
    # folds are disjoint and cover the five known classes
    hidden = np.concatenate(cal["folds"])
    assert sorted(hidden.tolist()) == [0, 1, 2, 3, 4]
    assert cal["n_hidden"].tolist() == [f.size for f in cal["folds"]]
    np.testing.assert_array_equal(cal["n_found"][0, best], cal["n_hidden"])
    # the final prior is the empirical-Bayes one scaled by the chosen factor
    eb = SemiSupervisedGMM(prior="empirical_bayes", split_merge=False).fit(X, y).prior_
    np.testing.assert_allclose(m.prior_.psi, eb.psi * cal["psi_factor"], rtol=1e-10)
    # two starts, recorded; the chosen one has the higher log posterior
    starts = m.history_["starts"]
    assert [s["K0"] for s in starts] == [20, 6]  # 4 L and L + 1
    lp = [s["log_posterior"] for s in starts]
    assert m.history_["chosen_start"] == int(np.argmax(lp))
    assert m.n_components_posterior_.get(10, 0) >= 0.5


def test_calibration_options_and_errors(data):
    X, y, _ = data
    opts = {"kind": "calibrated", "factors": [1, 4], "n_folds": 2, "max_extend": 0}
    m = SemiSupervisedGMM(12, prior=opts, random_state=0).fit(X, y)
    assert m.calibration_["accuracy"].shape == (1, 2, 2)
    assert m.calibration_["psi_factor"] == 4
    # the best factor at the top of the grid: the grid grows by doubling
    m = SemiSupervisedGMM(12, prior=dict(opts, factors=[2, 4], max_extend=3), random_state=0)
    cal = m.fit(X, y).calibration_
    # 4 beats 2 at the top of the grid, so 8 is tried; 8 ties with 4: the grid stops
    assert cal["factors"].tolist() == [2, 4, 8]
    assert cal["psi_factor"] == 4  # ties go to the factor nearer the evidence maximum
    with pytest.raises(ValueError, match="at least 2 labelled classes"):
        SemiSupervisedGMM(prior="calibrated").fit(X, np.where(y == 0, 0, -1))
    with pytest.raises(ValueError, match="unknown calibration options"):
        SemiSupervisedGMM(prior={"kind": "calibrated", "fold": 2}).fit(X, y)
    with pytest.raises(ValueError, match="positive numbers"):
        SemiSupervisedGMM(prior={"kind": "calibrated", "factors": [0]}).fit(X, y)
    with pytest.raises(ValueError, match="does not use weights_init"):
        SemiSupervisedGMM(3, search="two_sided", means_init=X[:3]).fit(X, y)


def test_search_prunes_empty_components_and_reports_k_visits():
    """While K is searched, components holding less than one sample are not clusters."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 1.0, (100, 2)) for c in ((0, 0), (12, 0), (0, 12))])
    m = SemiSupervisedGMM(25, random_state=0).fit(X)
    assert m.n_components_ == 3
    assert np.all(m.weights_ * len(X) >= 1)
    ks = m.history_["n_components"]
    half = ks[len(ks) // 2 :]
    want = {k: half.count(k) / len(half) for k in set(half)}
    assert m.n_components_posterior_ == pytest.approx(want)
    assert sum(m.n_components_posterior_.values()) == pytest.approx(1.0)


def test_restarts_keep_the_highest_posterior(data):
    """n_restarts reruns the whole search; the first run is the n_restarts=1 fit (same
    random stream), so the kept partition's log posterior can only be higher."""
    X, y, _ = data
    kw = dict(prior="empirical_bayes", max_rounds=3, random_state=0)
    one = SemiSupervisedGMM(20, **kw).fit(X, y)
    three = SemiSupervisedGMM(20, n_restarts=3, **kw).fit(X, y)
    starts = three.history_["starts"]
    assert [s["K0"] for s in starts] == [20, 20, 20]
    assert starts[0]["K"] == one.n_components_
    np.testing.assert_allclose(starts[0]["log_posterior"], one.history_["log_posterior"][-1])
    lp = [s["log_posterior"] for s in starts]
    assert three.history_["chosen_start"] == int(np.argmax(lp))
    np.testing.assert_allclose(three.history_["log_posterior"][-1], max(lp))
    assert max(lp) >= one.history_["log_posterior"][-1]
    assert len(set(np.round(lp, 6))) > 1  # the restarts explore different partitions
    # two-sided: both starts per restart
    two = SemiSupervisedGMM(prior="empirical_bayes", search="two_sided", n_restarts=2,
                            max_rounds=3, random_state=0).fit(X, y)  # fmt: skip
    assert [s["K0"] for s in two.history_["starts"]] == [20, 6, 20, 6]
    with pytest.raises(ValueError, match="n_restarts"):
        SemiSupervisedGMM(n_restarts=0).fit(X, y)
