"""Gaussian-mixture applications: semi-supervised category discovery and trajectory forecasting.

Built on the :mod:`mixtures` foundation (its EM engine, NIW algebra and mixture
distributions).
"""

from gmm import datasets, kinematics, metrics
from gmm._cluster_metrics import cluster_accuracy, make_gcd_split
from gmm._forecaster import (
    KinematicGMMForecaster,
    constant_velocity_forecast,
    social_attention,
)
from gmm._gcd import GeneralizedCategoryDiscovery
from gmm._kmeans import SemiSupervisedKMeans, estimate_n_clusters
from gmm._ssgmm import SemiSupervisedGMM
from mixtures.niw import NIWPrior, log_partition_posterior

__all__ = [
    "GeneralizedCategoryDiscovery",
    "KinematicGMMForecaster",
    "NIWPrior",
    "SemiSupervisedGMM",
    "SemiSupervisedKMeans",
    "cluster_accuracy",
    "constant_velocity_forecast",
    "datasets",
    "estimate_n_clusters",
    "kinematics",
    "log_partition_posterior",
    "make_gcd_split",
    "metrics",
    "social_attention",
]
