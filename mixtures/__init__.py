"""mixproc's common probabilistic layer.

The foundation, which ``gp`` and ``gmm`` build on, is the set of top-level modules:

- :mod:`mixtures.distributions` -- ``GaussianMixture``, ``StudentTMixture``,
  ``ScaleMixtureNormal``, the closed-form ``StudentT``, ``BurrXII`` (NumPyro distributions;
  the only mixture densities in the project);
- :mod:`mixtures.em` -- the one EM engine (blocked GEMM E-step, sharded over devices,
  optional NIW-MAP prior, clamped labels, soft or hard assignment);
- :mod:`mixtures.niw` -- conjugate Normal-Inverse-Wishart algebra (MAP, evidence, split/merge
  Hastings ratios, partition posterior);
- :mod:`mixtures.inference` -- NUTS and SVI drivers compiled once per model and shape;
- :mod:`mixtures.diagnostics` -- ArviZ conversion and convergence checks;
- :mod:`mixtures.base` -- the estimator shell (validation, ``random_state``, float64) and
  :class:`MixtureMixin` (``score_samples``, ``predict_proba``, ``bic``, ``sample``, ...).

Applications stand on it as subpackages: :mod:`mixtures.experts` (mixture-of-experts layers),
:mod:`mixtures.rl` (mixture policies) and :mod:`mixtures.gradmix` (mixing of gradient
estimators).
"""

from mixtures._gaussian_mixture_model import GaussianMixtureModel
from mixtures._mixture_mixin import MixtureMixin
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
    StudentT,
    StudentTMixture,
    multivariate_t_log_prob,
    student_t_from_inverse_gamma,
)
from mixtures.em import EMResult, GaussianMixtureParams, e_step, fit_em, m_step
from mixtures.inference import NUTSResult, SVIResult, run_nuts, run_svi
from mixtures.niw import NIWPrior, log_partition_posterior

__all__ = [
    "BurrXII",
    "EMResult",
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureParams",
    "MixtureMixin",
    "NIWPrior",
    "NUTSResult",
    "SVIResult",
    "ScaleMixtureNormal",
    "StudentT",
    "StudentTMixture",
    "check_convergence",
    "draws_to_inference_data",
    "e_step",
    "fit_em",
    "log_partition_posterior",
    "m_step",
    "multivariate_t_log_prob",
    "run_nuts",
    "run_svi",
    "student_t_from_inverse_gamma",
    "summarize",
    "to_inference_data",
]
