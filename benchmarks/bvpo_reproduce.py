"""Reproduce the BVPO checks on the exact toy test bed (mixtures.gradmix.toy).

Prints markdown tables:

1. exact MSE(alpha) terms, alpha*, MSE(alpha*) and MSE(0.5) at theta_ref, at the "moved"
   theta (60 exact GD steps of 2.0), with g_e on the same pairs, and with reason gain 1.5;
2. Monte Carlo MSE(alpha) against the exact curve (z-scores);
3. alpha* against the batch size n;
4. the online estimator's bias models (A) and (C) fed with exact moments;
5. SGD (Theorem 3 setting) with exact mu, g_t, g_e, alpha = 0.5, the oracle alpha_k* and the
   online estimate: mean over steps of ||grad L_m||^2 and the final L_m over seeds.

Usage::

    python benchmarks/bvpo_reproduce.py            # full run (~10-15 min on 2 cores)
    python benchmarks/bvpo_reproduce.py --quick    # smoke run (~1-2 min)
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from mixtures.gradmix import MixingMoments, mixing_mse, mixing_weight_from_moments, toy

GRID = np.linspace(0.0, 1.0, 101)


def exact_curve(m) -> np.ndarray:
    return np.asarray(mixing_mse(GRID, m.mse_t, m.mse_e, m.cross))


def table_exact(settings: dict) -> None:
    print("\n## 1. Exact MSE terms (batch 1)\n")
    print(
        "| setting | A=MSE(g_t) | B=MSE(g_e) | C | sq. bias b_t | sq. bias b_e | alpha* "
        "| grid argmin | MSE(alpha*) | MSE(0.5) | 0.5 beats both? | trace share of tr Sigma_t |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in settings.items():
        curve = exact_curve(m)
        half = float(mixing_mse(0.5, m.mse_t, m.mse_e, m.cross))
        print(
            f"| {name} | {m.mse_t:.4f} | {m.mse_e:.4f} | {m.cross:.4f} | {m.bias_t @ m.bias_t:.3g} "
            f"| {m.bias_e @ m.bias_e:.3g} | {m.alpha_unclipped:.4f} | {GRID[np.argmin(curve)]:.2f} "
            f"| {m.mse_alpha:.4f} | {half:.4f} | {half <= min(m.mse_t, m.mse_e)} "
            f"| {m.trace_cov_t_traces / m.trace_cov_t:.3f} |"
        )


def table_monte_carlo(world, thetas: dict, n_samples: dict, chunk: int) -> None:
    print("\n## 2. Monte Carlo MSE(alpha) vs exact (batch 1)\n")
    print("| setting | alpha | exact | Monte Carlo +- SE | z | samples |")
    print("|---|---|---|---|---|---|")
    for name, theta in thetas.items():
        m = toy.exact_moments(world, theta)
        alphas = np.array([0.0, 0.25, float(m.alpha), 0.5, 0.75, 1.0])
        s1 = np.zeros(len(alphas))
        s2 = np.zeros(len(alphas))
        n = n_samples[name]
        for k in range(n // chunk):
            s = toy.sample_gradients(world, theta, jax.random.PRNGKey(1000 + k), chunk)
            for i, a in enumerate(alphas):
                err = np.sum((a * s.grads_t + (1 - a) * s.grads_e - m.mu) ** 2, axis=1)
                s1[i] += err.sum()
                s2[i] += (err**2).sum()
        n = (n // chunk) * chunk
        mean = s1 / n
        se = np.sqrt((s2 / n - mean**2) / (n - 1))
        for i, a in enumerate(alphas):
            ex = float(mixing_mse(a, m.mse_t, m.mse_e, m.cross))
            print(f"| {name} | {a:.4f} | {ex:.4f} | {mean[i]:.4f} +- {se[i]:.4f} "
                  f"| {(mean[i] - ex) / se[i]:+.2f} | {n} |")  # fmt: skip


def table_batch(world, thetas: dict) -> None:
    ns = [1, 4, 16, 64, 256, 1024]
    print("\n## 3. alpha*(n) against the minibatch size n\n")
    print("| setting | " + " | ".join(f"n={n}" for n in ns) + " | n->inf (bias only) |")
    print("|---" * (len(ns) + 2) + "|")
    for name, theta in thetas.items():
        vals = [float(toy.exact_moments(world, theta, n).alpha) for n in ns]
        lim = float(toy.exact_moments(world, theta, 1e12).alpha)
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {lim:.4f} |")


def table_online(settings: dict) -> None:
    print("\n## 4. Online estimator bias models with exact moments (batch 1)\n")
    print("| setting | alpha* | MSE(alpha*) | (A) g_t unbiased | MSE(A) | (C) variance only "
          "| MSE(C) | MSE(g_e) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, m in settings.items():
        gap = float(np.sum((m.bias_t - m.bias_e) ** 2))
        mom = MixingMoments(gap, m.trace_cov_t, m.trace_cov_e, m.trace_cov_te, 0.0)
        a = float(mixing_weight_from_moments(mom, 1, 1).alpha)
        c = float(mixing_weight_from_moments(mom, 1, 1, bias_model="variance_only").alpha)

        def mse(al, m=m):
            return float(mixing_mse(al, m.mse_t, m.mse_e, m.cross))

        print(f"| {name} | {m.alpha:.4f} | {m.mse_alpha:.5f} | {a:.4f} | {mse(a):.5f} | {c:.4f} "
              f"| {mse(c):.5f} | {m.mse_e:.5f} |")  # fmt: skip


def table_sgd(world, n_seeds: int, n_steps: int, verbose: int) -> None:
    lip = toy.smoothness_constant(world)
    print(f"\n## 5. SGD from theta_ref, {n_steps} steps, {n_seeds} seeds (L = {lip:.4f})\n")
    print("mean over steps of ||grad L_m(theta_k)||^2 (Theorem 3 left side) and final L_m; "
          "mean +- standard error over seeds. online = running moments, bias model (A), "
          "decay 0.9 (batch 1: from an extra probe batch of 8).\n")  # fmt: skip
    methods = [
        ("exact", {}), ("trace", {}), ("empty", {}), ("alpha=0.5", {"alpha": 0.5}),
        ("oracle", {}), ("online (A)", {}), ("online (C)", {"bias_model": "variance_only"}),
    ]  # fmt: skip
    print("| eta | batch | method | mean sq. grad norm | final L_m | mean alpha |")
    print("|---|---|---|---|---|---|")
    configs = [(1.0, 1), (1.0, 8), (0.25, 1), (0.25, 8)]
    for eta_l, batch in tqdm(configs, disable=verbose <= 0, desc="sgd configs"):
        for label, kw in methods:
            method = {"alpha=0.5": "fixed"}.get(label, label.split(" ")[0])
            gsq, fin, alph = [], [], []
            for seed in range(n_seeds):
                r = toy.run_sgd(world, jax.random.PRNGKey(seed), method=method,
                                step_size=eta_l / lip, n_steps=n_steps, batch_size=batch,
                                **kw)  # fmt: skip
                gsq.append(r.grad_sq_norm.mean())
                fin.append(r.objective[-1])
                alph.append(np.nanmean(r.alpha) if method != "exact" else np.nan)
            se = lambda v: np.std(v, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.nan  # noqa: E731
            print(f"| {eta_l}/L | {batch} | {label} | {np.mean(gsq):.3e} +- {se(gsq):.1e} "
                  f"| {np.mean(fin):.4f} +- {se(fin):.4f} | {np.mean(alph):.3f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args()
    t0 = time.perf_counter()
    world = toy.make_world()
    world_g = toy.make_world(reason_gain=1.5)
    moved = toy.gradient_descent(world, n_steps=60, step_size=2.0)
    settings = {
        "theta_ref": toy.exact_moments(world, world.theta_ref),
        "theta_ref, shared pairs": toy.exact_moments(world, world.theta_ref, shared_pairs=True),
        "moved (60 GD steps)": toy.exact_moments(world, moved),
        "theta_ref, gain 1.5": toy.exact_moments(world_g, world_g.theta_ref),
    }
    table_exact(settings)
    thetas = {"theta_ref": world.theta_ref, "moved": moved}
    if args.quick:
        table_monte_carlo(world, thetas, {"theta_ref": 5_000, "moved": 5_000}, 5_000)
    else:
        table_monte_carlo(world, thetas, {"theta_ref": 20_000, "moved": 200_000}, 20_000)
    table_batch(world, thetas)
    table_online(settings)
    if args.quick:
        table_sgd(world, n_seeds=2, n_steps=20, verbose=args.verbose)
    else:
        table_sgd(world, n_seeds=6, n_steps=150, verbose=args.verbose)
    print(f"\ntotal time {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
