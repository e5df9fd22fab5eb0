"""``calibrate``: one covariance factor chosen on the held-out windows (by NLL or coverage)."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone

import gmm._forecaster as core
from gmm import KinematicGMMForecaster
from gmm import metrics as gmm_metrics
from mixtures.base import x64_scope


def _walkers(n, seed, noise=0.1):
    """Straight walkers at 1 m/s (dt 0.4 s) with Gaussian noise on the future."""
    rng = np.random.default_rng(seed)
    H, T, dt = 5, 6, 0.4
    hist = np.zeros((n, H, 2))
    hist[..., 0] = np.arange(-H + 1, 1) * dt
    hist += 0.02 * rng.standard_normal(hist.shape)
    fut = np.zeros((n, T, 2))
    fut[..., 0] = np.arange(1, T + 1) * dt
    fut += noise * rng.standard_normal(fut.shape)
    return hist, fut


KW = dict(
    n_modes=1, dt=0.4, hidden_sizes=(16,), epochs=3, batch_size=100,
    validation_fraction=0.25, min_std=1e-5, random_state=0,
)  # fmt: skip


def test_scale_minimises_the_held_out_nll_closed_form():
    """For one Gaussian mode, -log N(y; mu, c S) = log c + m^2 / (2 c) + const per step,
    minimised at c = mean(m^2) / 2 (m^2 the Mahalanobis distance under S)."""
    hist, fut = _walkers(400, 0)
    f = KinematicGMMForecaster(formulation="position", **KW).fit(hist, fut)
    vh, vf = _walkers(300, 1, noise=0.2)  # wider than the model: c well above 1
    scale_1 = f.variance_scale_
    f.variance_scale_ = 1.0
    _, means, covs = f.predict_gaussians(vh)
    d = vf - means[:, 0]
    m2 = np.einsum("nti,ntij,ntj->nt", d, np.linalg.inv(covs[:, 0]), d)
    want = m2.mean() / 2
    p0, R, _, inp = f._inputs(vh)
    y = np.einsum("nji,ntj->nti", R, vf - p0[:, None])
    with x64_scope():
        got = core._calibrated_scale([(f.params_, inp, y, f._hyper(1.0))], f._cfg(6), None)
    # the bounded search stops at 1e-3 in log c; the floor (1e-10 m^2) is negligible
    assert want > 1.3
    np.testing.assert_allclose(got, want, rtol=2e-3)
    assert 0.5 < scale_1 < 2.0  # on its own held-out windows the model is about right


@pytest.fixture(scope="module")
def pair():
    hist, fut = _walkers(400, 2, noise=0.15)
    kw = dict(KW, formulation="acceleration", df=4.0)
    raw = KinematicGMMForecaster(**kw).fit(hist, fut)
    cal = KinematicGMMForecaster(**kw, calibrate=True).fit(hist, fut)
    return hist, fut, raw, cal


def test_calibration_scales_every_covariance_and_the_samples(pair):
    hist, fut, raw, cal = pair
    c = cal.variance_scale_
    assert raw.variance_scale_ == 1.0 and abs(np.log(c)) > 0.05
    # the same training (calibration draws no random numbers): same means, and the
    # linear kinematics carry the control factor c to the position scale matrices
    for a, b in zip(raw.params_["head"], cal.params_["head"]):
        np.testing.assert_array_equal(a[0], b[0])
    floor = KW["min_std"] ** 2 * np.eye(2)
    p_r, m_r, s_r = raw.predict_gaussians(hist[:20])
    p_c, m_c, s_c = cal.predict_gaussians(hist[:20])
    np.testing.assert_allclose(m_c, m_r, atol=1e-12)
    np.testing.assert_allclose(s_c - floor, c * (s_r - floor), rtol=1e-9, atol=1e-15)
    # samples without the floor's noise: the same draws of the controls, spread by
    # sqrt(c) about the mean
    kw = dict(n_samples=50, random_state=3, observation_noise=False)
    d_r = raw.sample(hist[:5], **kw) - m_r[:5, :1]
    d_c = cal.sample(hist[:5], **kw) - m_c[:5, :1]
    np.testing.assert_allclose(d_c, np.sqrt(c) * d_r, rtol=1e-8, atol=1e-12)
    back = pickle.loads(pickle.dumps(cal))
    assert back.variance_scale_ == c and back.score(hist, fut) == cal.score(hist, fut)


def test_calibration_needs_held_out_windows(pair):
    hist, fut, raw, _ = pair
    with pytest.raises(ValueError, match="validation_fraction"):
        clone(raw).set_params(calibrate=True, validation_fraction=0.0).fit(hist, fut)


def test_coverage_scale_matches_the_closed_form_calibration_error():
    """For one Gaussian mode the HDR mass of the truth is exactly 1 - exp(-m^2 / (2 c)),
    so the calibration error of every c is known in closed form; the Monte Carlo search
    (256 draws per step) must land at its minimiser."""
    hist, fut = _walkers(400, 0)
    f = KinematicGMMForecaster(formulation="position", **KW).fit(hist, fut)
    vh, vf = _walkers(300, 1, noise=0.2)  # wider than the model: c well above 1
    _, means, covs = f.predict_gaussians(vh)
    d = vf - means[:, 0]
    m2 = np.einsum("nti,ntij,ntj->nt", d, np.linalg.inv(covs[:, 0]), d).ravel()
    q = np.arange(1, 20) / 20

    def error(c):
        cdf = ((1 - np.exp(-m2[:, None] / (2 * c))) <= q).mean(0)
        return np.sum((cdf - q) ** 2)

    cs = np.exp(np.linspace(np.log(0.5), np.log(8), 2001))
    want = cs[np.argmin([error(c) for c in cs])]
    p0, R, _, inp = f._inputs(vh)
    y = np.einsum("nji,ntj->nti", R, vf - p0[:, None])
    with x64_scope():
        sets = [(f.params_, inp, y, f._hyper(1.0))]
        got, df, _ = core._coverage_calibration(sets, f._cfg(6), None, np.random.default_rng(0))
    assert df is None and want > 1.3
    # grid step 2**(1/6) refined by tenths; Monte Carlo masses blur the CDF slightly
    np.testing.assert_allclose(got, want, rtol=0.1)
    assert error(got) < error(1.0) / 4


@pytest.mark.parametrize(
    "truth_nu, model_df, lo, hi",
    [(2.0, 8.0, 1.4, 2.9), (0.5, 2.0, 0.35, 0.71)],
    ids=["nu2-from-8", "nu-half-from-2"],
)
def test_coverage_chooses_df_and_scale_by_the_closed_form_calibration_error(
    truth_nu, model_df, lo, hi
):
    """For one bivariate Student-t mode with scale matrix c S and nu degrees of freedom
    the HDR mass of the truth is 1 - (1 + m^2 / (c nu))^(-nu / 2) (m^2 its Mahalanobis
    distance under S: m^2 / 2 is F(2, nu)-distributed), so the calibration error of every
    (c, nu) is known in closed form. Held-out steps drawn about the model's means with
    ``truth_nu`` degrees of freedom and scale 1.5^2 S, under a model trained with
    ``model_df``: the search must walk nu from ``model_df`` to about ``truth_nu`` (below
    1 too: tails heavier than Cauchy) and land at the closed-form minimiser, well below
    the best error at ``model_df``."""
    hist, fut = _walkers(400, 0)
    kw = dict(KW, formulation="position", df=model_df)
    f = KinematicGMMForecaster(**kw).fit(hist, fut)
    vh, _ = _walkers(300, 1)
    _, means, covs = f.predict_gaussians(vh)
    rng = np.random.default_rng(7)
    g = rng.gamma(truth_nu / 2, 2 / truth_nu, (300, 6, 1))  # Gamma(nu / 2, rate nu / 2)
    e = 1.5 * rng.standard_normal((300, 6, 2)) / np.sqrt(g)
    vf = means[:, 0] + np.einsum("ntij,ntj->nti", np.linalg.cholesky(covs[:, 0]), e)
    d = vf - means[:, 0]
    m2 = np.einsum("nti,ntij,ntj->nt", d, np.linalg.inv(covs[:, 0]), d).ravel()
    q = np.arange(1, 20) / 20

    def error(c, nu):
        cdf = ((1 - (1 + m2[:, None] / (c * nu)) ** (-nu / 2)) <= q).mean(0)
        return np.sum((cdf - q) ** 2)

    cs = np.exp(np.linspace(np.log(1 / 16), np.log(64), 1501))
    table = np.array([[error(c, nu) for c in cs] for nu in core._COVERAGE_DF])
    j, i = np.unravel_index(np.argmin(table), table.shape)
    want_c, want_nu = cs[i], core._COVERAGE_DF[j]
    p0, R, _, inp = f._inputs(vh)
    y = np.einsum("nji,ntj->nti", R, vf - p0[:, None])
    with x64_scope():
        sets = [(f.params_, inp, y, f._hyper(1.0))]
        got_c, got_nu, _ = core._coverage_calibration(
            sets, f._cfg(6), model_df, np.random.default_rng(0)
        )
    assert lo < want_nu < hi
    # one quarter octave of nu; c within the refined grid step and the Monte Carlo blur
    assert abs(np.log2(got_nu / want_nu)) <= 0.25 + 1e-9
    np.testing.assert_allclose(got_c, want_c, rtol=0.15)
    best_at_model_df = table[list(core._COVERAGE_DF).index(model_df)].min()
    # the Monte Carlo masses (256 draws) blur the empirical CDF by about 0.01 per level
    assert error(got_c, got_nu) < 0.005
    assert error(got_c, got_nu) < best_at_model_df / 4


def test_coverage_calibration_fit_and_pickle():
    hist, fut = _walkers(400, 2, noise=0.15)
    kw = dict(KW, formulation="acceleration", df=4.0)
    f = KinematicGMMForecaster(**kw, calibrate="coverage").fit(hist, fut)
    nll = KinematicGMMForecaster(**kw, calibrate="nll").fit(hist, fut)
    assert f.variance_scale_ != 1.0 and f.variance_scale_ != nll.variance_scale_
    assert f.df_ in core._COVERAGE_DF and nll.df_ == 4.0  # coverage chose the tails too
    back = pickle.loads(pickle.dumps(f))
    assert back.variance_scale_ == f.variance_scale_ and back.df_ == f.df_
    assert back.score(hist, fut) == f.score(hist, fut)
    # the predictive, its score and its samples all use the chosen df_ and c
    probs, means, covs = f.predict_gaussians(hist)
    want = -gmm_metrics.nll(fut, probs, means, covs, per="step", df=f.df_)
    np.testing.assert_allclose(f.score(hist, fut), want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"calibrate='coverage'.*validation_fraction.*got 0\.0\)"):
        clone(f).set_params(validation_fraction=0.0).fit(hist, fut)


@pytest.fixture(scope="module")
def two_groups():
    """Two recordings of the same walkers, one with four times the other's noise."""
    ha, fa = _walkers(200, 10, noise=0.075)
    hb, fb = _walkers(200, 11, noise=0.3)
    groups = np.repeat(np.array(["quiet", "noisy"]), 200)
    return np.concatenate([ha, hb]), np.concatenate([fa, fb]), groups


def _held_out_m2(hist, fut, groups, kw):
    """Per group, the Mahalanobis distances m^2 of its steps under a fit without it
    (the reference: the fits the estimator makes, rebuilt from public parts)."""
    out = []
    for g in np.unique(groups):
        out_g = groups != g
        aux = KinematicGMMForecaster(**kw).fit(hist[out_g], fut[out_g])
        _, means, covs = aux.predict_gaussians(hist[~out_g])
        d = fut[~out_g] - means[:, 0]
        out.append(np.einsum("nti,ntij,ntj->nt", d, np.linalg.inv(covs[:, 0]), d).ravel())
    return out


def test_calibration_on_held_out_groups_matches_the_closed_forms(two_groups):
    """With ``groups`` the factor is chosen on each group under the fit without it, the
    groups weighted equally. For one Gaussian mode the per-step NLL is
    log c + m^2 / (2 c) + const, so the NLL factor is mean_g(mean(m_g^2)) / 2; the HDR
    mass of a step is 1 - exp(-m^2 / (2 c)), so the coverage factor minimises the
    calibration error of the mean of the groups' empirical CDFs. A fit on the quiet
    recording is far too confident on the noisy one (and one on the noisy recording far
    too wide on the quiet one), which the held-out windows (drawn from both recordings,
    as the training windows are) cannot show."""
    hist, fut, groups = two_groups
    kw = dict(KW, formulation="position", epochs=40, learning_rate=1e-2)  # variances learned
    m2 = _held_out_m2(hist, fut, groups, kw)
    want_nll = np.mean([m.mean() for m in m2]) / 2
    q = np.arange(1, 20) / 20

    def error(c):
        cdf = np.mean([((1 - np.exp(-m[:, None] / (2 * c))) <= q).mean(0) for m in m2], 0)
        return np.sum((cdf - q) ** 2)

    cs = np.exp(np.linspace(np.log(1 / 4), np.log(64), 3001))
    want_cov = cs[np.argmin([error(c) for c in cs])]
    nll = KinematicGMMForecaster(**kw, calibrate="nll").fit(hist, fut, groups=groups)
    cov = KinematicGMMForecaster(**kw, calibrate="coverage").fit(hist, fut, groups=groups)
    windows = KinematicGMMForecaster(**kw, calibrate="nll").fit(hist, fut)
    c_windows = windows.variance_scale_
    assert 0.5 < c_windows < 2  # on held-out windows the fit looks about right
    # on held-out groups it is not: far from that factor, each way for one criterion
    assert want_nll > 2 * c_windows and want_cov < c_windows / 2
    np.testing.assert_allclose(nll.variance_scale_, want_nll, rtol=2e-3)  # xatol 1e-3
    np.testing.assert_allclose(cov.variance_scale_, want_cov, rtol=0.1)  # as above
    assert error(cov.variance_scale_) < error(c_windows)
    # the main fit is the same with or without groups: only the factor changes
    np.testing.assert_array_equal(nll.predict(hist[:5])[0], windows.predict(hist[:5])[0])
    back = pickle.loads(pickle.dumps(cov))
    assert back.variance_scale_ == cov.variance_scale_
    # held-out groups need no held-out windows
    no_val = clone(nll).set_params(validation_fraction=0.0).fit(hist, fut, groups=groups)
    assert no_val.best_epoch_ == kw["epochs"] and no_val.variance_scale_ > 2 * c_windows


def test_groups_errors(two_groups):
    hist, fut, groups = two_groups
    f = KinematicGMMForecaster(**dict(KW, formulation="position"))
    with pytest.raises(ValueError, match=r"groups are used only.*calibrate=False.*'coverage'"):
        f.fit(hist, fut, groups=groups)
    f.set_params(calibrate="coverage")
    with pytest.raises(ValueError, match=r"shape \(n_samples,\) = \(400,\).*got \(200,\)"):
        f.fit(hist, fut, groups=groups[:200])
    with pytest.raises(ValueError, match=r"at least two labels.*got 1"):
        f.fit(hist, fut, groups=np.zeros(400))


def test_coverage_chooses_the_floor_by_the_closed_form_calibration_error():
    """For one Gaussian mode with covariance c S_t + s^2 I the HDR mass of the truth is
    1 - exp(-m^2 / 2), m^2 its Mahalanobis distance, so the calibration error of every
    (c, s) is known in closed form. A model trained with a floor of 0.3 m on walkers with
    0.05 m noise is far too wide; a factor c narrows S_t but not the floor, so the search
    must lower the floor to the closed-form minimiser on its grid."""
    hist, fut = _walkers(400, 0, noise=0.05)
    kw = dict(KW, formulation="position", min_std=0.3, epochs=30)  # means within 0.07 m
    f = KinematicGMMForecaster(**kw).fit(hist, fut)
    vh, vf = _walkers(300, 1, noise=0.05)
    f.min_std_ = 1e-9  # S_t alone (the floor is added below)
    _, means, S = f.predict_gaussians(vh)
    d = (vf - means[:, 0])[..., None, :]
    q = np.arange(1, 20) / 20
    eye = np.eye(2)

    def error(c, s):
        cov = c * S[:, 0] + s**2 * eye
        m2 = np.einsum("nti,ntij,ntj->nt", d[..., 0, :], np.linalg.inv(cov), d[..., 0, :])
        cdf = ((1 - np.exp(-m2.ravel()[:, None] / 2)) <= q).mean(0)
        return np.sum((cdf - q) ** 2)

    floors = [0.3 * 2.0**j for j in range(-4, 3)]
    cs = np.exp(np.linspace(np.log(2.0**-8), np.log(2.0**8), 161))
    table = np.array([[error(c, s) for c in cs] for s in floors])
    want_s = floors[np.unravel_index(np.argmin(table), table.shape)[0]]
    p0, R, _, inp = f._inputs(vh)
    y = np.einsum("nji,ntj->nti", R, vf - p0[:, None])
    with x64_scope():
        sets = [(f.params_, inp, y, f._hyper(1.0))]
        rng = np.random.default_rng(0)
        got_c, df, got_s = core._coverage_calibration(sets, f._cfg(6), None, rng, floor=0.3)
    assert df is None and want_s < 0.1
    # within one octave of the closed-form minimiser on the floor's grid: the errors of
    # neighbouring floors differ by less than the Monte Carlo blur of the masses (256
    # draws: about 0.01 per level of the CDF, 19 levels)
    assert abs(np.log2(got_s / want_s)) <= 1 + 1e-9
    assert error(got_c, got_s) < table.min() + 0.01
    assert error(got_c, got_s) < table[floors.index(0.3)].min() / 4  # c alone cannot


def test_calibrate_floor_fit_pickle_and_errors():
    hist, fut = _walkers(400, 2, noise=0.05)
    kw = dict(KW, formulation="acceleration", df=4.0, min_std=0.3, calibrate="coverage")
    plain = KinematicGMMForecaster(**kw).fit(hist, fut)
    f = KinematicGMMForecaster(**kw, calibrate_floor=True).fit(hist, fut)
    assert plain.min_std_ == 0.3 and f.min_std_ < 0.15
    # the chosen floor is the predictive's: every covariance is at least min_std_**2 I
    _, _, cov = f.predict_gaussians(hist[:50])
    assert np.linalg.eigvalsh(cov).min() >= f.min_std_**2 * (1 - 1e-9)
    assert np.linalg.eigvalsh(cov).min() < 0.3**2
    assert f.score(hist, fut) > plain.score(hist, fut)  # narrower and truer
    back = pickle.loads(pickle.dumps(f))
    assert back.min_std_ == f.min_std_ and back.score(hist, fut) == f.score(hist, fut)
    with pytest.raises(ValueError, match="calibrate_floor=True chooses the floor"):
        KinematicGMMForecaster(**dict(kw, calibrate="nll"), calibrate_floor=True).fit(hist, fut)
