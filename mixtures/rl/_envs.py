r"""Bimodal one-step toy tasks as gymnasium environments.

Small tasks that separate a multimodal policy from a unimodal one: mode coverage (two equally
good actions) and exploration (a broad local optimum next to a narrow global one). They are
test tasks of this library, not benchmarks of the PMOE paper.

Registered ids (registration happens when :mod:`mixtures.rl` is imported):

- ``"mixproc/Bimodal-v0"`` -- symmetric: two equally good actions at ``a = +-0.6`` and a
  bad average between them, :math:`r(a) = e^{-(a-0.6)^2/(2\cdot0.1^2)} +
  e^{-(a+0.6)^2/(2\cdot0.1^2)}`; a policy averaging the modes earns about 0.
- ``"mixproc/BimodalDeceptive-v0"`` -- a broad local optimum (height 0.5, width 0.4) at
  ``a = -0.5`` and a narrow global optimum (height 1.0, width 0.05) at ``a = +0.7``.

Each episode is one step: observe ``s ~ U[-1, 1]`` (shape (1,), irrelevant to the reward),
act in ``[-1, 1]``, receive the reward, terminate. This is a contextual bandit, so the
optimal Q function is the reward itself.
"""

from __future__ import annotations

import numpy as np

from mixtures.rl._gym import gym

__all__ = ["BIMODAL_OPTIMA", "BimodalEnv", "bimodal_reward", "register_envs"]

#: Location of the optimal actions per variant.
BIMODAL_OPTIMA = {"symmetric": (-0.6, 0.6), "deceptive": (0.7,)}


def bimodal_reward(action, variant: str = "symmetric"):
    """Reward of the toy task for actions of any shape (closed form, NumPy).

    Examples
    --------
    >>> round(float(bimodal_reward(0.6)), 4), round(float(bimodal_reward(0.0)), 4)
    (1.0, 0.0)
    """
    a = np.asarray(action, dtype=np.float64)
    if variant == "symmetric":
        return np.exp(-((a - 0.6) ** 2) / (2 * 0.1**2)) + np.exp(-((a + 0.6) ** 2) / (2 * 0.1**2))
    if variant == "deceptive":
        return 0.5 * np.exp(-((a + 0.5) ** 2) / (2 * 0.4**2)) + np.exp(
            -((a - 0.7) ** 2) / (2 * 0.05**2)
        )
    raise ValueError(f"variant must be 'symmetric' or 'deceptive'; got {variant!r}.")


class BimodalEnv(gym.Env):
    """One-step bimodal bandit with a uniform (reward-irrelevant) context.

    Parameters
    ----------
    variant : {"symmetric", "deceptive"}, default="symmetric"
    fixed_state : bool, default=False
        Observe ``s = 0`` instead of ``s ~ U[-1, 1]``.
    """

    metadata = {"render_modes": []}

    def __init__(self, variant: str = "symmetric", fixed_state: bool = False):
        if variant not in BIMODAL_OPTIMA:
            raise ValueError(f"variant must be one of {tuple(BIMODAL_OPTIMA)}; got {variant!r}.")
        self.variant = variant
        self.fixed_state = fixed_state
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._obs = np.zeros(1, np.float32)

    def _draw_obs(self):
        if self.fixed_state:
            return np.zeros(1, np.float32)
        return self.np_random.uniform(-1.0, 1.0, 1).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._obs = self._draw_obs()
        return self._obs.copy(), {}

    def step(self, action):
        a = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        reward = float(bimodal_reward(a, self.variant))
        return self._obs.copy(), reward, True, False, {}


def register_envs() -> None:
    """Register the toy tasks with gymnasium (idempotent)."""
    specs = {
        "mixproc/Bimodal-v0": {"variant": "symmetric"},
        "mixproc/BimodalDeceptive-v0": {"variant": "deceptive"},
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="mixtures.rl._envs:BimodalEnv",
                kwargs=kwargs,
            )
