"""Gaussian-mixture models: semi-supervised category discovery and trajectory forecasting."""

__all__: list[str] = []

# --- category discovery (issue 4): helper-owned block, edit only these lines ---
from ._cluster_metrics import cluster_accuracy, make_gcd_split  # noqa: E402
from ._gcd import GeneralizedCategoryDiscovery  # noqa: E402
from ._kmeans import SemiSupervisedKMeans, estimate_n_clusters  # noqa: E402
from ._niw import log_partition_posterior  # noqa: E402
from ._ssgmm import SemiSupervisedGMM  # noqa: E402

__all__ += [
    "GeneralizedCategoryDiscovery",
    "SemiSupervisedGMM",
    "SemiSupervisedKMeans",
    "cluster_accuracy",
    "estimate_n_clusters",
    "log_partition_posterior",
    "make_gcd_split",
]

# --- trajectory forecasting (issue 5): helper-owned block, edit only these lines ---
from gmm import datasets, kinematics, metrics  # noqa: E402
from gmm._forecaster import KinematicGMMForecaster, constant_velocity_forecast  # noqa: E402

__all__ += [
    "KinematicGMMForecaster",
    "constant_velocity_forecast",
    "datasets",
    "kinematics",
    "metrics",
]
