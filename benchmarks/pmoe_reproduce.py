"""PMOE reproduction on a CPU budget: SAC vs PMOE-SAC vs Gumbel / score arms, PPO vs PMOE-PPO.

One run = one (env, method, seed). Every run prints one line with its wall time and the time
per 10k environment steps; ``--json PATH`` stores the raw per-run results (learning curve,
final return, AUC, mode usage over training, bimodal coverage) and ``--merge A.json B.json``
prints the tables from any number of such files. Runs are independent, so the grid can be
sharded one process per (env, method, seed); ``--print-shards`` prints those commands.

Tables: final return (mean of the last 3 evaluations) and AUC (mean evaluation return) with
95% bootstrap confidence intervals over seeds, mode usage (entropy of the mean mixing
weights, active primitives with mean weight > 0.05, dead primitives that never won in the
last 10% of training), learning curves (mean over seeds at each evaluation).

Bimodal toy (``mixproc/Bimodal-v0``, optima a = +-0.6, average a = 0 earns ~0), exact and
state-wise, on 200 contexts s in [-1, 1] with the "sample"-mode policy (k ~ Cat(w),
a = tanh(mu_k)), m_+(s) / m_-(s) = probability of acting within 0.1 of +0.6 / -0.6:

- reaches the optimum: mean over s of E[r(a)] >= 0.9 (r = 0.9 needs |a -+ 0.6| < 0.046);
- covers both modes: mean over s of min(m_+(s), m_-(s)) >= 0.2 (a unimodal deterministic
  action scores 0 by construction; an even split scores 0.5);
- averages the modes: share of contexts whose most likely action is within 0.3 of 0.

Methods (SAC family unless PPO in the name):

=================  ==================================================================
SAC                unimodal tanh-Gaussian (the baseline)
PMOE-K2, PMOE-K4   frequency estimator exactly as the official code (argmax routing,
                   per-primitive entropy)
PMOE-ME-K2/K4      frequency estimator with the maximum-entropy correction
                   (routing="boltzmann", entropy="mixture"; see BENCHMARKS.md)
Gumbel-K4          straight-through Gumbel-softmax, mixture entropy
Score-K4           score-function gradient for the weights
PPO, PMOE-PPO-K5   clipped PPO + GAE; PMOE-PPO as Popular-RL pmoe_ppo.py (K = 5)
=================  ==================================================================

Usage::

    python benchmarks/pmoe_reproduce.py --quick                      # smoke, ~2 min
    python benchmarks/pmoe_reproduce.py --envs bimodal --seeds 0 1 2 3 4 --json b.json
    python benchmarks/pmoe_reproduce.py --envs hopper --methods SAC PMOE-K4 --seeds 0 \\
        --steps 100000 --json hopper_sac_0.json
    python benchmarks/pmoe_reproduce.py --merge b.json hopper_*.json
    python benchmarks/pmoe_reproduce.py --print-shards --envs hopper halfcheetah

On a many-core machine run one process per shard, e.g. on 16 cores::

    python benchmarks/pmoe_reproduce.py --print-shards --envs hopper halfcheetah \\
        --seeds 0 1 2 3 4 --steps 100000 > shards.txt
    export JAX_PLATFORMS=cpu XLA_FLAGS=--xla_cpu_multi_thread_eigen=false OMP_NUM_THREADS=1
    xargs -P 16 -I{} sh -c {} < shards.txt
    python benchmarks/pmoe_reproduce.py --merge pmoe_*.json

(about one core per run; the XLA flag is accepted by jax 0.10.2; every run prints its
wall and CPU seconds per 10k environment steps).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

METHODS: dict[str, dict] = {
    "SAC": dict(algo="sac", policy="gaussian"),
    "PMOE-K2": dict(algo="sac", policy="mixture", n_components=2),
    "PMOE-K4": dict(algo="sac", policy="mixture", n_components=4),
    "PMOE-ME-K2": dict(
        algo="sac", policy="mixture", n_components=2, routing="boltzmann", entropy="mixture"
    ),
    "PMOE-ME-K4": dict(
        algo="sac", policy="mixture", n_components=4, routing="boltzmann", entropy="mixture"
    ),
    "Gumbel-K4": dict(algo="sac", policy="mixture", n_components=4, estimator="gumbel"),
    "Score-K4": dict(algo="sac", policy="mixture", n_components=4, estimator="score"),
    "PPO": dict(algo="ppo", policy="gaussian"),
    "PMOE-PPO-K5": dict(algo="ppo", policy="mixture", n_components=5),
}

_SAC_MUJOCO = dict(
    hidden_sizes=(256, 256),
    batch_size=256,
    learning_starts=5000,
    train_freq=50,
    n_eval_episodes=5,
)
_PPO_DEFAULT = dict(n_steps=2048, n_minibatches=32, n_epochs=10, hidden_sizes=(64, 64))

ENVS: dict[str, dict] = {
    "bimodal": dict(
        id="mixproc/Bimodal-v0",
        steps=4000,
        quick_steps=2000,
        seeds=(0, 1, 2, 3, 4),
        eval_freq=500,
        methods=(
            "SAC",
            "PMOE-K2",
            "PMOE-K4",
            "PMOE-ME-K2",
            "PMOE-ME-K4",
            "Gumbel-K4",
            "Score-K4",
            "PPO",
            "PMOE-PPO-K5",
        ),
        sac=dict(
            hidden_sizes=(32, 32),
            batch_size=64,
            learning_starts=200,
            learning_rate=3e-3,
            train_freq=50,
            gradient_steps=50,
            n_eval_episodes=20,
        ),
        ppo=dict(
            n_steps=64,
            n_minibatches=1,
            n_epochs=10,
            learning_rate=3e-3,
            hidden_sizes=(32,),
            n_eval_episodes=20,
        ),
    ),
    "pendulum": dict(
        id="Pendulum-v1",
        steps=10_000,
        quick_steps=2000,
        seeds=(0, 1, 2, 3, 4),
        eval_freq=1000,
        methods=("SAC", "PMOE-K4", "PMOE-ME-K4", "Gumbel-K4", "Score-K4", "PPO", "PMOE-PPO-K5"),
        sac=dict(
            hidden_sizes=(64, 64),
            batch_size=64,
            learning_starts=500,
            learning_rate=1e-3,
            train_freq=50,
            gradient_steps=100,
            n_eval_episodes=5,
        ),
        ppo=dict(_PPO_DEFAULT, n_eval_episodes=5),
    ),
    "mountaincar": dict(
        id="MountainCarContinuous-v0",
        steps=50_000,
        quick_steps=3000,
        seeds=(0, 1, 2),
        eval_freq=5000,
        methods=("SAC", "PMOE-K4", "PMOE-ME-K4", "PPO", "PMOE-PPO-K5"),
        sac=dict(
            hidden_sizes=(64, 64),
            batch_size=128,
            learning_starts=1000,
            learning_rate=1e-3,
            train_freq=50,
            n_eval_episodes=5,
        ),
        ppo=dict(_PPO_DEFAULT, n_eval_episodes=5),
    ),
    "hopper": dict(
        id="Hopper-v5",
        steps=100_000,
        quick_steps=6000,
        seeds=(0, 1, 2, 3, 4),
        eval_freq=5000,
        methods=("SAC", "PMOE-K4", "PMOE-ME-K4", "PPO", "PMOE-PPO-K5"),
        sac=_SAC_MUJOCO,
        ppo=dict(_PPO_DEFAULT, n_eval_episodes=5),
    ),
    "halfcheetah": dict(
        id="HalfCheetah-v5",
        steps=100_000,
        quick_steps=6000,
        seeds=(0, 1, 2, 3, 4),
        eval_freq=5000,
        methods=("SAC", "PMOE-K4", "PMOE-ME-K4", "PPO", "PMOE-PPO-K5"),
        sac=_SAC_MUJOCO,
        ppo=dict(_PPO_DEFAULT, n_eval_episodes=5),
    ),
}

QUICK = {"bimodal": ("SAC", "PMOE-K2", "PMOE-ME-K2"), "pendulum": ("SAC", "PMOE-ME-K4")}


# --- statistics ------------------------------------------------------------------------------
def bootstrap_ci(x, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean (nan for fewer than 2 values)."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_boot, len(x))).mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def fmt_ci(x) -> str:
    lo, hi = bootstrap_ci(x)
    return f"{np.mean(x):.3g} [{lo:.3g}, {hi:.3g}]"


# --- one run ---------------------------------------------------------------------------------
def _visited_states(env_id: str, n: int, seed: int) -> np.ndarray:
    """Observations of random-action rollouts (for mode-usage statistics)."""
    from mixtures.rl import make_env

    env = make_env(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    while len(out) < n:
        out.append(np.asarray(obs, np.float32))
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    env.close()
    return np.stack(out)


def bimodal_metrics(weights: np.ndarray, modes: np.ndarray) -> dict:
    """Exact "sample"-mode statistics on the bimodal toy (see the module docstring)."""
    from mixtures.rl import bimodal_reward

    a = modes[..., 0]
    m_plus = np.sum(weights * (np.abs(a - 0.6) < 0.1), 1)
    m_minus = np.sum(weights * (np.abs(a + 0.6) < 0.1), 1)
    reward = np.sum(weights * bimodal_reward(a), 1)
    top = a[np.arange(len(a)), np.argmax(weights, 1)]
    return {
        "expected_reward": float(reward.mean()),
        "coverage": float(np.minimum(m_plus, m_minus).mean()),
        "mass_plus": float(m_plus.mean()),
        "mass_minus": float(m_minus.mean()),
        "averaging_share": float(np.mean(np.abs(top) < 0.3)),
        "reaches_optimum": bool(reward.mean() >= 0.9),
        "covers_both": bool(np.minimum(m_plus, m_minus).mean() >= 0.2),
    }


def run_one(env_name: str, method: str, seed: int, steps: int | None = None) -> dict:
    """Train one agent and return its JSON-serialisable record."""
    from mixtures.rl import PPO, SAC

    cfg = ENVS[env_name]
    spec = dict(METHODS[method])
    algo = spec.pop("algo")
    steps = int(steps or cfg["steps"])
    common = dict(total_timesteps=steps, eval_freq=cfg["eval_freq"], random_state=seed, verbose=0)
    if algo == "sac":
        agent = SAC(cfg["id"], **common, **cfg["sac"], **spec)
    else:
        kw = dict(cfg["ppo"])
        kw["n_steps"] = min(kw["n_steps"], steps)
        kw["n_minibatches"] = min(kw["n_minibatches"], kw["n_steps"])
        agent = PPO(cfg["id"], **common, **kw, **spec)
    t0, c0 = time.perf_counter(), time.process_time()
    agent.fit()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    h = agent.history_
    if len(h["eval_returns"]) == 0:
        # Budget shorter than eval_freq (or than one PPO rollout past it): evaluate once at
        # the end so every run has a final return.
        h["eval_timesteps"] = np.array([steps], np.float64)
        h["eval_returns"] = agent.evaluate(
            agent.n_eval_episodes, agent.eval_mode, random_state=seed + 10_000
        )[None]
    evals = h["eval_returns"].mean(1)
    rec = {
        "env": env_name,
        "env_id": cfg["id"],
        "method": method,
        "seed": seed,
        "steps": steps,
        "seconds": seconds,
        "sec_per_10k": seconds / steps * 10_000,
        "cpu_seconds": cpu,
        "cpu_per_10k": cpu / steps * 10_000,
        "eval_timesteps": h["eval_timesteps"].astype(int).tolist(),
        "eval_returns": evals.tolist(),
        "final": float(np.mean(evals[-3:])) if len(evals) else float("nan"),
        "auc": float(np.mean(evals)) if len(evals) else float("nan"),
    }
    if algo == "sac" and spec["policy"] == "mixture" and len(h["mean_weights"]):
        n = len(h["mean_weights"])
        idx = np.unique(np.linspace(0, n - 1, min(n, 20)).astype(int))
        rec["usage_timesteps"] = h["update_timesteps"][idx].astype(int).tolist()
        rec["mean_weights_curve"] = h["mean_weights"][idx].tolist()
        rec["winner_freq_curve"] = h["mode_frequencies"][idx].tolist()
        late = h["mode_frequencies"][-max(n // 10, 1) :].mean(0)
        rec["dead"] = int(np.sum(late == 0.0))
    if METHODS[method]["policy"] == "mixture":
        obs = (
            np.linspace(-1, 1, 200)[:, None].astype(np.float32)
            if env_name == "bimodal"
            else _visited_states(cfg["id"], 1000, seed + 7)
        )
        w, modes = agent.mixing_weights(obs), agent.primitive_actions(obs)
        w_bar = w.mean(0)
        rec["final_mean_weights"] = w_bar.tolist()
        rec["weight_entropy"] = float(-np.sum(w_bar * np.log(np.maximum(w_bar, 1e-12))))
        rec["active"] = int(np.sum(w_bar > 0.05))
        if modes.shape[1] > 1:
            iu = np.triu_indices(modes.shape[1], 1)
            diff = np.linalg.norm(modes[:, :, None] - modes[:, None], axis=-1)
            rec["distinguishability"] = float(diff[:, iu[0], iu[1]].mean())
    if env_name == "bimodal":
        obs = np.linspace(-1, 1, 200)[:, None].astype(np.float32)
        if METHODS[method]["policy"] == "mixture":
            w, modes = agent.mixing_weights(obs), agent.primitive_actions(obs)
        else:
            modes = agent.predict(obs, mode="sample", random_state=seed)[:, None, :]
            w = np.ones((len(obs), 1))
        rec.update(bimodal_metrics(w, modes))
    return rec


# --- tables ----------------------------------------------------------------------------------
def print_tables(records: list[dict]) -> None:
    envs = list(dict.fromkeys(r["env"] for r in records))
    for env_name in envs:
        recs = [r for r in records if r["env"] == env_name]
        methods = [m for m in METHODS if any(r["method"] == m for r in recs)]
        steps = sorted({r["steps"] for r in recs})
        print(f"\n## {recs[0]['env_id']} ({', '.join(map(str, steps))} steps)\n")
        head = (
            "| method | seeds | final return [95% CI] | AUC [95% CI] | H(mean w) | active "
            "| dead | wall s / CPU s per 10k steps |"
        )
        bim = env_name == "bimodal"
        if bim:
            head += " E[r] sample mode | coverage | reaches opt. | covers both | averages |"
        print(head)
        print("|---" * (8 + (5 if bim else 0)) + "|")
        for m in methods:
            rs = sorted((r for r in recs if r["method"] == m), key=lambda r: r["seed"])

            def mean_of(key, rs=rs, mix=METHODS[m]["policy"] == "mixture"):
                vals = [r[key] for r in rs if key in r and (mix or "per_10k" in key)]
                return f"{np.mean(vals):.2f}" if vals else "-"

            row = (
                f"| {m} | {len(rs)} | {fmt_ci([r['final'] for r in rs])} "
                f"| {fmt_ci([r['auc'] for r in rs])} | {mean_of('weight_entropy')} "
                f"| {mean_of('active')} | {mean_of('dead')} "
                f"| {mean_of('sec_per_10k')} / {mean_of('cpu_per_10k')} |"
            )
            if bim:
                n = len(rs)
                row += (
                    f" {fmt_ci([r['expected_reward'] for r in rs])} "
                    f"| {np.mean([r['coverage'] for r in rs]):.2f} "
                    f"| {sum(r['reaches_optimum'] for r in rs)}/{n} "
                    f"| {sum(r['covers_both'] for r in rs)}/{n} "
                    f"| {np.mean([r['averaging_share'] for r in rs]):.2f} |"
                )
            print(row)
        print("\nLearning curves (mean evaluation return over seeds):\n")
        for m in methods:
            rs = [r for r in recs if r["method"] == m]
            n = min(len(r["eval_returns"]) for r in rs)
            if n == 0:
                continue
            ts = rs[0]["eval_timesteps"][:n]
            mean = np.mean([r["eval_returns"][:n] for r in rs], 0)
            print(f"- {m}: " + ", ".join(f"{t}: {v:.3g}" for t, v in zip(ts, mean)))
        usage = [
            m
            for m in methods
            if METHODS[m]["policy"] == "mixture"
            and any("mean_weights_curve" in r for r in recs if r["method"] == m)
        ]
        if usage:
            print(
                "\nMode usage over training (entropy of the batch-mean mixing weights, mean over"
                " seeds, at ~5 points):\n"
            )
            for m in usage:
                rs = [r for r in recs if r["method"] == m and "mean_weights_curve" in r]
                n = min(len(r["mean_weights_curve"]) for r in rs)
                ent = np.mean(
                    [
                        [
                            -np.sum(np.asarray(w) * np.log(np.maximum(w, 1e-12)))
                            for w in r["mean_weights_curve"][:n]
                        ]
                        for r in rs
                    ],
                    0,
                )
                ts = rs[0]["usage_timesteps"][:n]
                pick = np.unique(np.linspace(0, n - 1, min(n, 5)).astype(int))
                print(f"- {m}: " + ", ".join(f"{ts[i]}: {ent[i]:.2f}" for i in pick))


# --- CLI -------------------------------------------------------------------------------------
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fast smoke run")
    p.add_argument("--envs", nargs="+", choices=list(ENVS))
    p.add_argument("--methods", nargs="+", choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--steps", type=int, help="environment steps per run (default per env)")
    p.add_argument("--json", type=pathlib.Path, help="write the raw per-run records here")
    p.add_argument("--merge", nargs="+", type=pathlib.Path, help="print tables from JSON files")
    p.add_argument("--print-shards", action="store_true", help="one command per run")
    args = p.parse_args(argv)
    if args.merge:
        records = [r for f in args.merge for r in json.loads(f.read_text())]
        print_tables(records)
        return
    envs = args.envs or (list(QUICK) if args.quick else ["bimodal", "pendulum"])
    jobs = []
    for e in envs:
        methods = args.methods or (
            QUICK.get(e, ENVS[e]["methods"][:2]) if args.quick else ENVS[e]["methods"]
        )
        seeds = args.seeds or ((0, 1) if args.quick else ENVS[e]["seeds"])
        steps = args.steps or (ENVS[e]["quick_steps"] if args.quick else ENVS[e]["steps"])
        jobs += [(e, m, s, steps) for m in methods for s in seeds]
    if args.print_shards:
        for e, m, s, steps in jobs:
            print(
                f"python benchmarks/pmoe_reproduce.py --envs {e} --methods {m} --seeds {s} "
                f"--steps {steps} --json pmoe_{e}_{m}_{s}.json"
            )
        return
    records = []
    for e, m, s, steps in jobs:
        rec = run_one(e, m, s, steps)
        records.append(rec)
        print(
            f"[{e} {m} seed {s}] {steps} steps in {rec['seconds']:.1f} s "
            f"({rec['sec_per_10k']:.1f} s wall, {rec['cpu_per_10k']:.1f} s CPU per 10k env "
            f"steps, JIT compilation included), final {rec['final']:.3g}",
            file=sys.stderr,
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(records))
    print_tables(records)


if __name__ == "__main__":
    main()
