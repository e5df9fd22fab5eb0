"""Reproduce the stochastic-kinematic-forecasting experiments at CPU scale (issue 5).

(1) propagation accuracy: every formulation x method vs Monte Carlo;
(2) synthetic traffic at 1 %, 10 %, 100 % of the training set: kinematic formulations
    (exact and paper propagation) vs the position-GMM and learned-variance baselines;
(3) ETH/UCY leave-one-scene-out best-of-20 ADE/FDE vs constant velocity and the
    published Trajectron++ average.

Usage: python benchmarks/kinematic_reproduce.py [--quick] [--data ../shared/data/eth_ucy]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np

from gmm import KinematicGMMForecaster, constant_velocity_forecast
from gmm.datasets import ETH_UCY_SCENES, load_eth_ucy, make_bicycle_traffic
from gmm.kinematics import monte_carlo_moments, propagate
from gmm.metrics import calibration_coverage, min_ade, min_fde, miss_rate, nll
from mixtures.base import x64_scope

TRAJECTRON_PP_AVG = (0.19, 0.41)  # best-of-20 ADE/FDE averaged over 5 scenes (note 11.2)


def propagation_table(n_samples):
    T, dt = 30, 0.1
    t = np.linspace(0, 1, T)
    cases = {
        "velocity": (np.column_stack([10 + 0 * t, 2 * t]), [[1.0, 0.3], [0.3, 0.5]]),
        "acceleration": (np.column_stack([0.5 + 0 * t, t - 0.5]), [[1.0, 0.2], [0.2, 0.6]]),
        "speed_heading": (np.column_stack([10 + 0 * t, 0.8 * t]), [[1.0, 0.0], [0.0, 0.09]]),
        "accel_steering": (
            np.column_stack([0.5 + 0 * t, 0.02 + 0 * t]),
            [[0.25, 0.0], [0.0, 0.02**2]],
        ),
    }
    z0 = np.array([0.0, 0.0, 0.3, 8.0])
    print(f"\n(1) propagation vs Monte Carlo ({n_samples} rollouts, T={T}, dt={dt})")
    print("| formulation | method | rel. err std x | rel. err std y | mean err (m) |")
    print("|---|---|---|---|---|")
    with x64_scope():
        for f, (m, c) in cases.items():
            C = np.tile(np.asarray(c), (T, 1, 1))
            mc = monte_carlo_moments(
                m, C, z0, dt=dt, formulation=f, n_samples=n_samples, key=jax.random.PRNGKey(0)
            )
            sd_mc = np.sqrt(np.diagonal(np.asarray(mc.position_cov[-1])))
            for method in ("exact", "moment", "paper"):
                r = propagate(m, C, z0, dt=dt, formulation=f, method=method)
                sd = np.sqrt(np.diagonal(np.asarray(r.position_cov[-1])))
                err = sd / sd_mc - 1
                me = np.linalg.norm(np.asarray(r.position_mean[-1] - mc.position_mean[-1]))
                print(f"| {f} | {method} | {err[0]:+.3f} | {err[1]:+.3f} | {me:.3f} |")


VARIANTS = [
    ("velocity", "exact", "propagated"),
    ("velocity", "paper", "propagated"),
    ("acceleration", "exact", "propagated"),
    ("acceleration", "paper", "propagated"),
    ("speed_heading", "exact", "propagated"),
    ("speed_heading", "paper", "propagated"),
    ("accel_steering", "exact", "propagated"),
    ("accel_steering", "paper", "propagated"),
    ("position", "exact", "learned"),
    ("accel_steering", "exact", "learned"),
]


def small_data(n_full, n_test, fractions, seeds, epochs_for):
    print(f"\n(2) synthetic traffic: full train = {n_full}, test = {n_test}, seeds = {seeds}")
    print("| variant | train frac | n | minADE6 | minFDE6 | MR@2m | NLL | cov1s | fit s |")
    print("|---|---|---|---|---|---|---|---|---|")
    test = make_bicycle_traffic(n_test, history=11, horizon=30, random_state=10_000)
    cv = constant_velocity_forecast(test.history, 30)
    print(
        f"| constant velocity | - | - | {min_ade(test.future, cv):.3f} | "
        f"{min_fde(test.future, cv):.3f} | {miss_rate(test.future, cv):.3f} | - | - | - |"
    )
    for f, method, var in VARIANTS:
        name = f"{f}/{method}" if var == "propagated" else f"{f}/learned-var"
        if f == "position":
            name = "position GMM"
        for frac in fractions:
            n = max(int(round(frac * n_full)), 8)
            rows = []
            for seed in seeds:
                tr = make_bicycle_traffic(n, history=11, horizon=30, random_state=seed)
                t0 = time.perf_counter()
                m = KinematicGMMForecaster(
                    n_modes=6,
                    formulation=f,
                    method=method,
                    variance=var,
                    hidden_sizes=(64, 64),
                    epochs=epochs_for(n),
                    batch_size=min(64, n),
                    random_state=seed,
                ).fit(tr.history, tr.future)
                fit_s = time.perf_counter() - t0
                p, mu, cov = m.predict_gaussians(test.history)
                rows.append(
                    [
                        min_ade(test.future, mu),
                        min_fde(test.future, mu),
                        miss_rate(test.future, mu),
                        nll(test.future, p, mu, cov),
                        calibration_coverage(test.future, mu, cov).coverage[0],
                        fit_s,
                    ]
                )
            r = np.mean(rows, 0)
            print(
                f"| {name} | {frac:.0%} | {n} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | "
                f"{r[3]:.2f} | {r[4]:.2f} | {r[5]:.1f} |",
                flush=True,
            )


def eth_ucy(directory, epochs, max_train, formulation):
    print(
        f"\n(3) ETH/UCY leave-one-scene-out, best-of-20 (m); {formulation} formulation, "
        f"{epochs} epochs, <= {max_train} training windows (random subset)"
    )
    print("| scene | n test | CV ADE | CV FDE | ours ADE | ours FDE |")
    print("|---|---|---|---|---|---|")
    res = []
    for scene in ETH_UCY_SCENES:
        te = load_eth_ucy(directory, scene)
        tr = load_eth_ucy(directory, scene, split="train")
        rng = np.random.default_rng(0)
        idx = rng.permutation(len(tr.history))[:max_train]
        m = KinematicGMMForecaster(
            n_modes=6,
            formulation=formulation,
            dt=0.4,
            hidden_sizes=(64, 64),
            epochs=epochs,
            min_std=0.05,
            random_state=0,
        ).fit(tr.history[idx], tr.future[idx])
        s = m.sample(te.history, n_samples=20, random_state=0)
        cv = constant_velocity_forecast(te.history, 12)
        r = [
            min_ade(te.future, cv),
            min_fde(te.future, cv),
            min_ade(te.future, s),
            min_fde(te.future, s),
        ]
        res.append(r)
        print(
            f"| {scene} | {len(te.history)} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} |",
            flush=True,
        )
    a = np.mean(res, 0)
    print(f"| average | - | {a[0]:.3f} | {a[1]:.3f} | {a[2]:.3f} | {a[3]:.3f} |")
    print(
        f"| Trajectron++ (published, note 11.2) | - | - | - | {TRAJECTRON_PP_AVG[0]} | "
        f"{TRAJECTRON_PP_AVG[1]} |"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    ap.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "eth_ucy"),
    )
    ap.add_argument("--skip", default="", help="comma list of sections to skip: 1,2,3")
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}
    if args.quick:
        cfg = dict(
            mc=20_000,
            n_full=400,
            n_test=200,
            seeds=[0],
            epochs=lambda n: 10,
            eth_epochs=3,
            eth_max=1000,
        )
    else:
        cfg = dict(
            mc=100_000,
            n_full=2000,
            n_test=500,
            seeds=[0, 1, 2],
            epochs=lambda n: int(np.clip(6000 // n, 15, 200)),
            eth_epochs=15,
            eth_max=8000,
        )
    if "1" not in skip:
        propagation_table(cfg["mc"])
    if "2" not in skip:
        small_data(cfg["n_full"], cfg["n_test"], (0.01, 0.1, 1.0), cfg["seeds"], cfg["epochs"])
    if "3" not in skip and Path(args.data).is_dir():
        eth_ucy(args.data, cfg["eth_epochs"], cfg["eth_max"], "velocity")


if __name__ == "__main__":
    main()
