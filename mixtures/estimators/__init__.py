"""Bias-variance optimal mixing of gradient estimators and preference losses (BVPO)."""

from mixtures.estimators._losses import (
    BVPOLoss,
    PreferenceBatch,
    PreferenceLoss,
    bvpo_loss,
    dpo_loss,
    empty_trace_dpo_loss,
    trace_dpo_loss,
)
from mixtures.estimators._mixing import (
    MixingMoments,
    MixingState,
    MixingWeight,
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
