"""Demo: PMOE-SAC (K = 2) vs plain SAC on the bimodal toy task (< 30 s on 2 cores)."""

from __future__ import annotations

import pathlib

import numpy as np

from mixtures.rl._envs import bimodal_reward
from mixtures.rl._sac import SAC

__all__ = ["run_demo"]


def run_demo(output_dir: pathlib.Path, verbose: int = 1) -> dict[str, float]:
    """Train both agents for 1500 steps, plot their actions, return greedy rewards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    kw = dict(
        total_timesteps=1500,
        learning_starts=200,
        batch_size=64,
        hidden_sizes=(32, 32),
        train_freq=50,
        gradient_steps=50,
        learning_rate=3e-3,
        random_state=2,
        verbose=0,
    )
    agents = {
        "SAC": SAC("mixproc/Bimodal-v0", policy="gaussian", **kw).fit(),
        "PMOE K=2": SAC("mixproc/Bimodal-v0", policy="mixture", n_components=2, **kw).fit(),
    }
    obs = np.linspace(-1, 1, 1000)[:, None]
    grid = np.linspace(-1, 1, 400)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(grid, bimodal_reward(grid), "k-", label="reward r(a)")
    metrics = {}
    for name, agent in agents.items():
        acts = agent.predict(obs, mode="stochastic", random_state=0)[:, 0]
        metrics[f"{name} greedy reward"] = float(
            bimodal_reward(agent.predict(obs, mode="sample", random_state=0)).mean()
        )
        ax.hist(acts, bins=60, range=(-1, 1), density=True, alpha=0.5, label=f"{name} actions")
    ax.set_xlabel("action")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "pmoe_bimodal.png", dpi=100)
    plt.close(fig)
    if verbose:
        for k, v in metrics.items():
            print(f"{k}: {v:.3f}")
    return metrics
