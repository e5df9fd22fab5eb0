"""Scale mixtures of neural-network Gaussian processes on neural-tangents kernels."""

from gp._arccos import ArccosKernel, arccos_kernel
from gp._classifier import ScaleMixtureNNGPClassifier
from gp._regressor import ScaleMixtureNNGPRegressor
from gp.diagnostics import ImportanceSamplingWarning
from gp.kernels import build_network, kernel_diagonal, kernel_matrix, preset_kernel
from gp.posterior import ScalePosterior
from gp.priors import BurrXII, Constant, InverseGamma

__all__ = [
    "ArccosKernel",
    "BurrXII",
    "Constant",
    "ImportanceSamplingWarning",
    "InverseGamma",
    "ScaleMixtureNNGPClassifier",
    "ScaleMixtureNNGPRegressor",
    "ScalePosterior",
    "arccos_kernel",
    "build_network",
    "kernel_diagonal",
    "kernel_matrix",
    "preset_kernel",
]
