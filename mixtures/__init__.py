"""mixproc's common probabilistic layer: mixture distributions, inference, diagnostics."""

from mixtures._gaussian_mixture_model import GaussianMixtureModel
from mixtures.diagnostics import (
    check_convergence,
    draws_to_inference_data,
    summarize,
    to_inference_data,
)
from mixtures.distributions import (
    BurrXII,
    GaussianMixture,
    ScaleMixtureNormal,
    student_t_from_inverse_gamma,
)
from mixtures.inference import (
    EMResult,
    GaussianMixtureParams,
    NUTSResult,
    SVIResult,
    e_step,
    fit_em,
    m_step,
    run_nuts,
    run_svi,
)

__all__ = [
    "BurrXII",
    "EMResult",
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureParams",
    "NUTSResult",
    "SVIResult",
    "ScaleMixtureNormal",
    "check_convergence",
    "draws_to_inference_data",
    "e_step",
    "fit_em",
    "m_step",
    "run_nuts",
    "run_svi",
    "student_t_from_inverse_gamma",
    "summarize",
    "to_inference_data",
]
