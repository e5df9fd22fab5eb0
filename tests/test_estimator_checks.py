"""scikit-learn's estimator checks over every estimator in the project.

ESTIMATORS is the one shared list: each package adds its estimators (small, fast
settings) and, for checks that cannot pass for a principled reason, an entry in
EXPECTED_FAILED with the reason.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from mixtures import GaussianMixtureModel

ESTIMATORS = [
    GaussianMixtureModel(n_components=1, random_state=0),
]

EXPECTED_FAILED: dict[str, dict[str, str]] = {}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
