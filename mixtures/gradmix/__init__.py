"""Bias-variance optimal mixing of gradient estimators and preference losses.

BVPO (Zhu et al. 2025, arXiv 2510.05095) trains a reasoning model on the convex
combination ``alpha g_t + (1 - alpha) g_e`` of a trace-based preference gradient (unbiased
at the reference policy, noisy) and an empty-trace one (quieter, biased). This package
holds the preference losses, the closed-form MSE-optimal weight and an online estimator of
it; :mod:`mixtures.gradmix.toy` is an exactly enumerable test bed.
"""

from mixtures.gradmix._core import MixingMoments, MixingState, MixingWeight
from mixtures.gradmix._losses import (
    BVPOLoss,
    PreferenceBatch,
    PreferenceLoss,
    bvpo_loss,
    dpo_loss,
    empty_trace_dpo_loss,
    trace_dpo_loss,
)
from mixtures.gradmix._mixing import (
    estimate_mixing_moments,
    init_mixing_state,
    mix_gradients,
    mixing_mse,
    mixing_weight_from_moments,
    online_mixing_weight,
    optimal_mixing_weight,
    random_projection,
    update_mixing_state,
)

__all__ = [
    "BVPOLoss",
    "MixingMoments",
    "MixingState",
    "MixingWeight",
    "PreferenceBatch",
    "PreferenceLoss",
    "bvpo_loss",
    "dpo_loss",
    "empty_trace_dpo_loss",
    "estimate_mixing_moments",
    "init_mixing_state",
    "mix_gradients",
    "mixing_mse",
    "mixing_weight_from_moments",
    "online_mixing_weight",
    "optimal_mixing_weight",
    "random_projection",
    "trace_dpo_loss",
    "update_mixing_state",
]
