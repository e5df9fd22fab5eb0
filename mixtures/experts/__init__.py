"""Mixture-of-experts layers: top-k routing, THOR stochastic experts, loss-free balancing.

Pure ``init`` / ``apply`` functions over parameter pytrees (:func:`init_moe`,
:func:`apply_moe`, a small Transformer built on them), the THOR loss, the auxiliary-loss-free
balancer with its dual-subgradient reading, and an exact LP reference for balanced routing.

References
----------
- W. Fedus, B. Zoph, N. Shazeer. Switch Transformers: scaling to trillion parameter models
  with simple and efficient sparsity. JMLR 2022.
- S. Zuo et al. Taming sparsely activated Transformer with stochastic experts (THOR).
  ICLR 2022, arXiv 2110.04260.
- L. Wang, H. Gao, C. Zhao, X. Sun, D. Dai. Auxiliary-loss-free load balancing strategy for
  mixture-of-experts. arXiv 2408.15664, 2024.
- X. Y. Han, Y. Zhong. A theoretical framework for auxiliary-loss-free load balancing of
  sparse mixture-of-experts in large-scale AI models. arXiv 2512.03915, 2025.
"""

from mixtures.experts._balancing import (
    AuxLossFreeBalancer,
    BalancerState,
    dual_objective,
    dual_step,
    lagrangian,
    max_violation,
    routed_objective,
    sign_rule_step_size,
    topk_assignment,
    topk_loads,
)
from mixtures.experts._layer import (
    MoEAux,
    MoEConfig,
    apply_moe,
    expert_capacity,
    init_moe,
    route_topk,
)
from mixtures.experts._lp import BalancedAssignment, solve_balanced_assignment
from mixtures.experts._thor import (
    ThorLoss,
    label_smoothed_cross_entropy,
    symmetric_kl,
    thor_loss,
)
from mixtures.experts._transformer import (
    TrainResult,
    TransformerConfig,
    apply_transformer,
    count_parameters,
    evaluate_lm,
    greedy_decode,
    init_transformer,
    load_checkpoint,
    n_moe_layers,
    save_checkpoint,
    split_pass_keys,
    train_transformer,
)

__all__ = [
    "AuxLossFreeBalancer",
    "BalancedAssignment",
    "BalancerState",
    "MoEAux",
    "MoEConfig",
    "ThorLoss",
    "TrainResult",
    "TransformerConfig",
    "apply_moe",
    "apply_transformer",
    "count_parameters",
    "dual_objective",
    "dual_step",
    "evaluate_lm",
    "expert_capacity",
    "greedy_decode",
    "init_moe",
    "init_transformer",
    "label_smoothed_cross_entropy",
    "lagrangian",
    "load_checkpoint",
    "max_violation",
    "n_moe_layers",
    "route_topk",
    "routed_objective",
    "save_checkpoint",
    "sign_rule_step_size",
    "solve_balanced_assignment",
    "split_pass_keys",
    "symmetric_kl",
    "thor_loss",
    "topk_assignment",
    "topk_loads",
    "train_transformer",
]
