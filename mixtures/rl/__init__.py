"""Probabilistic mixture-of-experts policies for reinforcement learning (PMOE).

SAC and PPO agents with a mixture-of-tanh-Gaussians policy trained by PMOE's frequency
approximate gradient (or Gumbel-softmax / score-function comparison arms), as pure jitted
cores (``init_*``, ``*_update``, ``*_act``) and scikit-learn style shells (:class:`SAC`,
:class:`PPO`).

This package needs gymnasium (``pip install "mixproc[rl]"``); importing it without gymnasium
raises an ImportError that says so. Importing it registers the bimodal toy tasks
``"mixproc/Bimodal-v0"`` and ``"mixproc/BimodalDeceptive-v0"`` with gymnasium.

References
----------
J. Ren, Y. Li, Z. Ding, W. Pan, H. Dong. Probabilistic mixture-of-experts for efficient deep
reinforcement learning. arXiv 2104.09122, 2021. Official code: github.com/JieRen98/rlkit-pmoe.
"""

from mixtures.rl._actor_losses import (
    ENTROPIES,
    ESTIMATORS,
    ROUTINGS,
    ActorLoss,
    boltzmann_routing_target,
    evaluate_candidates,
    frequency_actor_loss,
    frequency_weight_loss,
    gaussian_actor_loss,
    gumbel_actor_loss,
    mixture_log_prob_of_candidates,
    score_actor_loss,
    select_winners,
)
from mixtures.rl._agent import make_env
from mixtures.rl._buffer import ReplayBuffer, Transition
from mixtures.rl._envs import BIMODAL_OPTIMA, BimodalEnv, bimodal_reward, register_envs
from mixtures.rl._policy import ComponentSample, MixturePolicy, tanh_log_det_jacobian
from mixtures.rl._ppo import (
    PPO,
    PPOHyper,
    PPORollout,
    PPOState,
    compute_gae,
    init_ppo_state,
    ppo_act,
    ppo_distribution,
    ppo_update,
)
from mixtures.rl._sac import (
    SAC,
    SACHyper,
    SACMetrics,
    SACState,
    init_sac_state,
    policy_distribution,
    sac_act,
    sac_update,
)

register_envs()

__all__ = [
    "BIMODAL_OPTIMA",
    "ENTROPIES",
    "ESTIMATORS",
    "ActorLoss",
    "BimodalEnv",
    "ComponentSample",
    "MixturePolicy",
    "PPO",
    "PPOHyper",
    "PPORollout",
    "PPOState",
    "ROUTINGS",
    "ReplayBuffer",
    "SAC",
    "SACHyper",
    "SACMetrics",
    "SACState",
    "Transition",
    "bimodal_reward",
    "boltzmann_routing_target",
    "compute_gae",
    "evaluate_candidates",
    "frequency_actor_loss",
    "frequency_weight_loss",
    "gaussian_actor_loss",
    "gumbel_actor_loss",
    "init_ppo_state",
    "init_sac_state",
    "make_env",
    "mixture_log_prob_of_candidates",
    "policy_distribution",
    "ppo_act",
    "ppo_distribution",
    "ppo_update",
    "register_envs",
    "sac_act",
    "sac_update",
    "score_actor_loss",
    "select_winners",
    "tanh_log_det_jacobian",
]
