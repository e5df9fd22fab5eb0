"""ScaleMixtureNNGPClassifier against the regressor, scipy and simple references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.stats as st
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import InvalidParameterError

from gp import Constant, InverseGamma, ScaleMixtureNNGPClassifier, ScaleMixtureNNGPRegressor
from gp._classifier import kl_inverse_gamma
from mixtures.base import x64_scope

X, Y = load_iris(return_X_y=True)
X = (X - X.mean(0)) / X.std(0)
XTR, XTE, YTR, YTE = train_test_split(X, Y, test_size=0.3, random_state=0)


def test_gaussian_likelihood_is_one_hot_regression():
    clf = ScaleMixtureNNGPClassifier(prior=InverseGamma(2.0, 2.0), noise=1e-2).fit(XTR, YTR)
    # the classifier fits no hyperparameters: compare with a regressor that fits none either
    reg = ScaleMixtureNNGPRegressor(
        prior=InverseGamma(2.0, 2.0), noise=1e-2, normalize_y=False, optimizer=None
    )
    reg.fit(XTR, np.eye(3)[YTR])
    # same computation: argmax of the posterior mean, mean per-coordinate log density
    np.testing.assert_array_equal(clf.predict(XTE), np.argmax(reg.predict(XTE), 1))
    lpd = reg.log_predictive_density(XTE, np.eye(3)[YTE]).mean(1)
    np.testing.assert_allclose(clf.log_predictive_density(XTE, YTE), lpd, rtol=1e-12)
    # shared scale: IG posterior alpha + N/2 with N = n C
    assert clf.regressor_.scale_posterior_.alpha == pytest.approx(2.0 + 1.5 * len(XTR))
    proba = clf.predict_proba(XTE)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    # P(class c has the largest latent) vs brute-force Monte Carlo of the shared-scale model
    mean, var = clf.regressor_.predict_latent(XTE[:5])
    sp = clf.regressor_.scale_posterior_
    rng = np.random.default_rng(0)
    s2 = sp.beta / rng.gamma(sp.alpha, size=100000)
    f = mean + np.sqrt(s2[:, None, None] * var[None, :, None]) * rng.standard_normal((100000, 5, 3))
    mc = np.stack([(f.argmax(-1) == c).mean(0) for c in range(3)], axis=1)
    # binomial MC error <= 0.5/sqrt(1e5) = 1.6e-3; quadrature error is far smaller
    np.testing.assert_allclose(proba[:5], mc, atol=8e-3)
    # accuracy identical for every prior (the mean is prior-free); reference: logistic-regression
    # level accuracy on iris (>= 0.9 on this split)
    const = ScaleMixtureNNGPClassifier(prior=Constant(1.0), noise=1e-2).fit(XTR, YTR)
    np.testing.assert_array_equal(const.predict(XTE), clf.predict(XTE))
    assert (clf.predict(XTE) == YTE).mean() >= 0.9
    # the paper's qualitative claim: the heavy-tailed prior has the lower NLL
    assert (
        -clf.log_predictive_density(XTE, YTE).mean()
        < -const.log_predictive_density(XTE, YTE).mean()
    )


@pytest.mark.parametrize(("a", "b", "alpha", "beta"), [(2.0, 2.0, 2.0, 2.0), (3.5, 1.2, 2.0, 2.5)])
def test_kl_inverse_gamma_equals_numerical_integration(a, b, alpha, beta):
    q, p = st.invgamma(a, scale=b), st.invgamma(alpha, scale=beta)

    def integrand(s):
        return q.pdf(s) * (q.logpdf(s) - p.logpdf(s))

    want = scipy.integrate.quad(integrand, 0, np.inf, limit=200)[0]
    with x64_scope():
        got = float(kl_inverse_gamma(a, b, alpha, beta))
    # adaptive quadrature of a smooth integrand: ~1e-8 absolute
    np.testing.assert_allclose(got, want, atol=1e-7)


def _softmax(prior, learn, m, verbose=0):
    return ScaleMixtureNNGPClassifier(
        likelihood="softmax",
        prior=prior,
        n_inducing=m,
        learn_inducing=learn,
        # 100 steps (runtime is compile-dominated) already clear the bounds below by a
        # margin (loss drop >= 0.75, accuracy >= 0.73, NLL - log 3 <= -0.6)
        max_iter=100,
        learning_rate=5e-2,
        random_state=0,
        verbose=verbose,
    ).fit(XTR, YTR)


@pytest.fixture(scope="module")
def softmax_fits():
    # SVTP with learned inducing inputs (the default), SVGP with fixed and learned ones
    return {
        "svtp": _softmax("inverse_gamma", True, 4),
        "svgp_fixed": _softmax("constant", False, 4),
        "svgp_learned": _softmax("constant", True, 4),
    }


@pytest.mark.parametrize("name", ["svtp", "svgp_fixed"])
def test_softmax_sparse_variational(softmax_fits, name):
    clf = softmax_fits[name]
    proba = clf.predict_proba(XTE)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    # the negative ELBO decreases and the classifier beats chance (1/3) by a wide margin
    assert clf.losses_[-1] < clf.losses_[0] - 0.3
    assert (clf.predict(XTE) == YTE).mean() > 0.7
    # its NLL beats the uniform predictor's log 3
    assert -clf.log_predictive_density(XTE, YTE).mean() < np.log(3) - 0.4


def test_learned_inducing_points_improve_the_elbo(softmax_fits):
    fixed, learned = softmax_fits["svgp_fixed"], softmax_fits["svgp_learned"]
    # same initial inducing points, key and steps: identical first loss
    np.testing.assert_allclose(learned.losses_[0], fixed.losses_[0], rtol=1e-10)
    assert not np.allclose(learned.inducing_points_, fixed.inducing_points_)
    # mean negative ELBO over the last 20 steps (16 MC samples each: its MC noise is
    # ~0.01, measured); moving 4 inducing points lowers it by far more
    assert learned.losses_[-20:].mean() < fixed.losses_[-20:].mean() - 0.03


def test_unknown_labels_raise():
    clf = ScaleMixtureNNGPClassifier().fit(XTR, YTR)
    with pytest.raises(ValueError, match="not seen"):
        clf.log_predictive_density(XTE[:2], [0, 7])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"likelihood": "softmax", "n_inducing": 0}, "'n_inducing'"),
        ({"likelihood": "probit"}, "'likelihood'"),
        ({"learning_rate": 0.0}, "'learning_rate'"),
        ({"n_mc": 0}, "'n_mc'"),
        ({"max_iter": True}, "'max_iter'"),
        ({"learn_inducing": 1.0}, "'learn_inducing'"),
        ({"random_state": "seed"}, "'random_state'"),
    ],
)
def test_invalid_parameters_raise_before_fitting(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        ScaleMixtureNNGPClassifier(**kwargs).fit(XTR, YTR)


def test_softmax_seeds_numpy_ints_and_generators():
    """``random_state`` seeds the inducing-point draw and the ELBO's Monte Carlo the same
    way for a Python int, a NumPy int and a NumPy Generator."""

    def fit(random_state):
        return ScaleMixtureNNGPClassifier(
            likelihood="softmax",
            prior="constant",
            n_inducing=4,
            learn_inducing=False,  # inducing_points_ stays the seeded initial draw
            max_iter=5,
            random_state=random_state,
        ).fit(XTR, YTR)

    a, b = fit(0), fit(np.int64(0))
    np.testing.assert_array_equal(a.inducing_points_, b.inducing_points_)
    np.testing.assert_array_equal(a.losses_, b.losses_)
    c, d = fit(3), fit(np.int64(3))
    np.testing.assert_array_equal(c.inducing_points_, d.inducing_points_)
    np.testing.assert_array_equal(c.losses_, d.losses_)
    assert not np.array_equal(a.inducing_points_, c.inducing_points_)
    # a Generator is used, not replaced by a fixed seed: its first draw is the one
    # default_rng(3) makes, and a fresh Generator of the same seed reproduces the fit
    g1, g2 = fit(np.random.default_rng(3)), fit(np.random.default_rng(3))
    np.testing.assert_array_equal(g1.inducing_points_, c.inducing_points_)
    np.testing.assert_array_equal(g1.losses_, g2.losses_)


@pytest.fixture(scope="module")
def gaussian_fit():
    return ScaleMixtureNNGPClassifier(prior=InverseGamma(2.0, 2.0), noise=1e-2).fit(XTR, YTR)


def test_overflowing_inputs_raise_in_fit_and_every_predict_method(gaussian_fit):
    match = r"(?s)X has entries up to .*overflow float64.*Scale the data"
    with pytest.raises(ValueError, match=match):
        ScaleMixtureNNGPClassifier().fit(XTR * 1e300, YTR)
    clf = gaussian_fit
    for call in (clf.predict, clf.predict_proba, lambda x: clf.log_predictive_density(x, YTE)):
        with pytest.raises(ValueError, match=match):
            call(XTE * 1e300)


def _frames():
    pd = pytest.importorskip("pandas")
    cols = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return pd.DataFrame(XTR, columns=cols), pd.DataFrame(XTE, columns=cols)


def test_feature_names_are_validated_by_the_classifier(gaussian_fit):
    """scikit-learn's ``validate_data(reset=False)`` contract, for the public estimator."""
    dtr, dte = _frames()
    clf = ScaleMixtureNNGPClassifier(prior=InverseGamma(2.0, 2.0), noise=1e-2).fit(dtr, YTR)
    np.testing.assert_array_equal(clf.feature_names_in_, dtr.columns)
    methods = {
        "predict": clf.predict,
        "predict_proba": clf.predict_proba,
        "log_predictive_density": lambda x: clf.log_predictive_density(x, YTE),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no feature-name warning from anything inside
        got = {name: call(dte) for name, call in methods.items()}
    # the same numbers as a fit on plain arrays
    ref = gaussian_fit
    np.testing.assert_array_equal(got["predict"], ref.predict(XTE))
    np.testing.assert_allclose(got["predict_proba"], ref.predict_proba(XTE), rtol=1e-12)
    np.testing.assert_allclose(
        got["log_predictive_density"], ref.log_predictive_density(XTE, YTE), rtol=1e-12
    )
    renamed = dte.rename(columns={"petal_width": "width"})
    for name, call in methods.items():
        with pytest.raises(ValueError, match="feature names should match") as err:
            call(renamed)
        assert "Regressor" not in str(err.value), name
        # a plain array is accepted with scikit-learn's warning, naming the classifier
        with pytest.warns(UserWarning) as rec:
            call(XTE)
        messages = [str(w.message) for w in rec]
        assert messages == [
            "X does not have valid feature names, but ScaleMixtureNNGPClassifier was fitted "
            "with feature names"
        ], (name, messages)


def test_validation_messages_name_the_classifier(gaussian_fit):
    _, dte = _frames()
    clf = gaussian_fit  # fitted on plain arrays
    methods = {
        "predict": clf.predict,
        "predict_proba": clf.predict_proba,
        "log_predictive_density": lambda x: clf.log_predictive_density(x, YTE),
    }
    for name, call in methods.items():
        with pytest.warns(UserWarning) as rec:
            call(dte)
        assert [str(w.message) for w in rec] == [
            "X has feature names, but ScaleMixtureNNGPClassifier was fitted without feature names"
        ], name
        with pytest.raises(ValueError, match="ScaleMixtureNNGPClassifier is expecting 4"):
            call(XTE[:, :3])


def test_softmax_fit_shows_progress_and_verbose_changes_nothing(softmax_fits, capsys):
    # verbose=1 runs the same Adam steps in chunks under an "ELBO" bar (tqdm, on stderr)
    shown = _softmax("constant", False, 4, verbose=1)
    err = capsys.readouterr().err
    assert "ELBO" in err and "100/100" in err
    np.testing.assert_allclose(shown.losses_, softmax_fits["svgp_fixed"].losses_, rtol=1e-12)
