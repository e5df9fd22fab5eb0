"""PMOE reproduction on a CPU budget: SAC vs PMOE-SAC (K in {2, 4}) vs Gumbel / score arms.

Prints markdown tables: final return (mean of the last 3 evaluations), AUC (mean evaluation
return over training) with 95% bootstrap confidence intervals over seeds, and mode usage
(winner frequencies, entropy of the mean mixing weights, active primitives with mean weight
> 0.05). On the bimodal toy it also reports the coverage of each optimum (share of
"sample"-mode actions within +-0.1).

Budgets (environment steps per run; far below the paper's millions):

=================  ========  =========  ======  ===============
env                full      --quick    seeds   networks
=================  ========  =========  ======  ===============
Bimodal-v0         2,000     1,500      5 / 3   (32, 32)
Pendulum-v1        10,000    3,000      5 / 2   (64, 64)
MountainCarCont.   50,000    --         3       (64, 64)
Hopper-v5          50,000    --         2       (256, 256)
HalfCheetah-v5     50,000    --         2       (256, 256)
=================  ========  =========  ======  ===============

Usage::

    python benchmarks/pmoe_reproduce.py --quick                   # ~5 min on 2 cores
    python benchmarks/pmoe_reproduce.py --envs bimodal pendulum   # ~30-60 min
    python benchmarks/pmoe_reproduce.py --envs hopper halfcheetah # hours on 2 cores
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mixtures.rl import SAC, bimodal_reward

ARMS = {
    "SAC": dict(policy="gaussian"),
    "PMOE K=2": dict(policy="mixture", n_components=2, estimator="frequency"),
    "PMOE K=4": dict(policy="mixture", n_components=4, estimator="frequency"),
    "Gumbel K=4": dict(policy="mixture", n_components=4, estimator="gumbel"),
    "Score K=4": dict(policy="mixture", n_components=4, estimator="score"),
}

ENVS = {
    "bimodal": dict(
        id="mixproc/Bimodal-v0",
        steps=2000,
        quick=1500,
        seeds=5,
        quick_seeds=3,
        eval_freq=250,
        kw=dict(
            hidden_sizes=(32, 32),
            batch_size=64,
            learning_starts=200,
            learning_rate=3e-3,
            train_freq=50,
            gradient_steps=50,
            n_eval_episodes=20,
        ),
    ),
    "pendulum": dict(
        id="Pendulum-v1",
        steps=10_000,
        quick=3000,
        seeds=5,
        quick_seeds=2,
        eval_freq=1000,
        kw=dict(
            hidden_sizes=(64, 64),
            batch_size=64,
            learning_starts=500,
            learning_rate=1e-3,
            train_freq=50,
            gradient_steps=100,
            n_eval_episodes=5,
        ),
    ),
    "mountaincar": dict(
        id="MountainCarContinuous-v0",
        steps=50_000,
        quick=None,
        seeds=3,
        quick_seeds=0,
        eval_freq=5000,
        kw=dict(
            hidden_sizes=(64, 64),
            batch_size=128,
            learning_starts=1000,
            train_freq=50,
            n_eval_episodes=5,
        ),
    ),
    "hopper": dict(
        id="Hopper-v5",
        steps=50_000,
        quick=None,
        seeds=2,
        quick_seeds=0,
        eval_freq=5000,
        kw=dict(
            hidden_sizes=(256, 256),
            batch_size=256,
            learning_starts=5000,
            train_freq=50,
            n_eval_episodes=5,
        ),
    ),
    "halfcheetah": dict(
        id="HalfCheetah-v5",
        steps=50_000,
        quick=None,
        seeds=2,
        quick_seeds=0,
        eval_freq=5000,
        kw=dict(
            hidden_sizes=(256, 256),
            batch_size=256,
            learning_starts=5000,
            train_freq=50,
            n_eval_episodes=5,
        ),
    ),
}


def bootstrap_ci(x, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_boot, len(x))).mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def fmt(x) -> str:
    lo, hi = bootstrap_ci(x)
    return f"{np.mean(x):.3g} [{lo:.3g}, {hi:.3g}]"


def run_arm(env_name: str, arm: str, seed: int, steps: int, cfg: dict) -> dict:
    agent = SAC(
        cfg["id"],
        total_timesteps=steps,
        eval_freq=cfg["eval_freq"],
        random_state=seed,
        verbose=0,
        **cfg["kw"],
        **ARMS[arm],
    )
    t0 = time.perf_counter()
    agent.fit()
    evals = agent.history_["eval_returns"].mean(1)
    out = {
        "final": float(np.mean(evals[-3:])),
        "auc": float(np.mean(evals)),
        "curve": evals,
        "seconds": time.perf_counter() - t0,
    }
    w = agent.history_["mean_weights"][-1]
    out["weight_entropy"] = float(-np.sum(w * np.log(np.maximum(w, 1e-12))))
    out["active"] = int(np.sum(w > 0.05))
    out["winner_freq"] = agent.history_["mode_frequencies"][-5:].mean(0)
    if env_name == "bimodal":
        obs = np.linspace(-1, 1, 1000)[:, None]
        acts = agent.predict(obs, mode="sample", random_state=seed)[:, 0]
        out["cover+"] = float(np.mean(np.abs(acts - 0.6) < 0.1))
        out["cover-"] = float(np.mean(np.abs(acts + 0.6) < 0.1))
        out["both"] = float(min(out["cover+"], out["cover-"]) > 0.2)
        out["greedy_reward"] = float(bimodal_reward(acts).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run")
    parser.add_argument("--envs", nargs="+", default=None, choices=list(ENVS))
    parser.add_argument("--arms", nargs="+", default=None, choices=list(ARMS))
    args = parser.parse_args()
    envs = args.envs or (["bimodal", "pendulum"] if args.quick else ["bimodal", "pendulum"])
    for env_name in envs:
        cfg = ENVS[env_name]
        steps = cfg["quick"] if args.quick else cfg["steps"]
        if steps is None:
            print(f"\n{env_name}: no --quick budget; run without --quick.")
            continue
        n_seeds = cfg["quick_seeds"] if args.quick else cfg["seeds"]
        arms = args.arms or (
            list(ARMS) if env_name == "bimodal" or not args.quick else ["SAC", "PMOE K=4"]
        )
        print(
            f"\n## {cfg['id']}: {steps} steps, seeds 0..{n_seeds - 1}, eval every "
            f"{cfg['eval_freq']} steps ({cfg['kw']['n_eval_episodes']} episodes, 'sample' mode)\n"
        )
        header = "| arm | final return [95% CI] | AUC [95% CI] | active prims | H(mean w) | s/run |"
        extra = " greedy reward | seeds covering both modes |" if env_name == "bimodal" else ""
        print(header + extra)
        print("|---" * (6 + (2 if extra else 0)) + "|")
        curves = {}
        for arm in arms:
            res = [run_arm(env_name, arm, s, steps, cfg) for s in range(n_seeds)]
            curves[arm] = np.stack([r["curve"] for r in res])
            row = (
                f"| {arm} | {fmt([r['final'] for r in res])} | {fmt([r['auc'] for r in res])} "
                f"| {np.mean([r['active'] for r in res]):.1f} "
                f"| {np.mean([r['weight_entropy'] for r in res]):.2f} "
                f"| {np.mean([r['seconds'] for r in res]):.0f} |"
            )
            if extra:
                row += (
                    f" {fmt([r['greedy_reward'] for r in res])} "
                    f"| {int(sum(r['both'] for r in res))}/{n_seeds} |"
                )
            print(row, flush=True)
        print("\nLearning curves (mean evaluation return over seeds, per evaluation):\n")
        for arm, c in curves.items():
            print(f"- {arm}: " + ", ".join(f"{v:.3g}" for v in c.mean(0)))


if __name__ == "__main__":
    main()
