"""scikit-learn's estimator checks over every estimator in the project.

ESTIMATORS is the one shared list: each package adds its estimators (small, fast
settings) and, for checks that cannot pass for a principled reason, an entry in
EXPECTED_FAILED with the reason.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

import gmm
import gp
from mixtures import GaussianMixtureModel

ESTIMATORS = [
    GaussianMixtureModel(n_components=1, random_state=0),
    gmm.SemiSupervisedGMM(n_components=3, max_rounds=1, max_iter=10, random_state=0),
    gmm.SemiSupervisedKMeans(n_clusters=3, random_state=0),
    # fixed kernel hyperparameters: the type-II optimiser compiles once per data shape and
    # the checks use some forty shapes (its fits are tested in tests/gp/test_regressor.py)
    gp.ScaleMixtureNNGPRegressor(random_state=0, optimizer=None),
    gp.ScaleMixtureNNGPClassifier(random_state=0),
]

_KNOWN_CLASS_NEEDS_COMPONENT = (
    "the check passes labels y with more known classes than n_components; a known class "
    "needs its own component, so fit must raise instead of silently dropping labels"
)
_SEMI_SUPERVISED_FAILURES = {
    name: _KNOWN_CLASS_NEEDS_COMPONENT
    for name in (
        "check_dont_overwrite_parameters",
        "check_dtype_object",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1feature",
        "check_fit2d_predict1d",
    )
}

EXPECTED_FAILED: dict[str, dict[str, str]] = {
    "SemiSupervisedGMM": _SEMI_SUPERVISED_FAILURES,
    "SemiSupervisedKMeans": {
        **_SEMI_SUPERVISED_FAILURES,
    },
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    # each check raises on failure; it must also leave the shared instance exactly as
    # constructed (the estimator contract: only fit-time attributes end in "_")
    before = estimator.get_params(deep=False)
    check(estimator)
    assert estimator.get_params(deep=False) == before


# Estimators deliberately left out of ESTIMATORS, each with the reason.
NOT_CHECKED = {
    "GeneralizedCategoryDiscovery": "trains a projection head for many epochs per fit; its "
    "SemiSupervisedGMM core is checked above",
    "KinematicGMMForecaster": "takes (N, H, 2) trajectories, not a 2-D X; sklearn skips every "
    "check for 3-D input (its own tests cover clone, params, pickling, not-fitted errors)",
}


def test_every_public_estimator_is_checked_or_excused():
    import inspect

    from sklearn.base import BaseEstimator

    import mixtures

    public = {
        name
        for module in (mixtures, gp, gmm)
        for name in module.__all__
        if inspect.isclass(obj := getattr(module, name)) and issubclass(obj, BaseEstimator)
    }
    listed = {type(e).__name__ for e in ESTIMATORS}
    assert public - listed == set(NOT_CHECKED), public - listed
