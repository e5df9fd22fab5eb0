"""Reproduce the stochastic-kinematic-forecasting experiments at CPU scale (issue 5).

(1) propagation accuracy: every formulation x method vs Monte Carlo rollouts;
(2) synthetic traffic at 1 %, 10 %, 100 % of the training set, several seeds: kinematic
    formulations (exact and paper propagation) vs the position-GMM and learned-variance
    (DKM-style) baselines on minADE6, minFDE6, miss rate @ 2 m, NLL, 1-sigma coverage;
(3) ETH/UCY leave-one-scene-out best-of-20 ADE/FDE vs constant velocity and the
    published Trajectron++ average.

Shardable: pick sections, seeds, arms, fractions and scenes on the command line, write the
raw per-run records with ``--json``, and print the tables of several shards with
``--merge``. Examples::

    python benchmarks/kinematic_reproduce.py --quick                 # smoke run
    python benchmarks/kinematic_reproduce.py --sections 2 --seeds 0 \\
        --arms velocity/exact position --fractions 0.01 --json /tmp/a.json
    python benchmarks/kinematic_reproduce.py --merge /tmp/a.json /tmp/b.json

On a many-core machine run one process per (seed, arm) shard with
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` and ``taskset`` so shards do not share
cores; every shard writes its own JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np

from gmm import KinematicGMMForecaster, constant_velocity_forecast
from gmm.datasets import ETH_UCY_SCENES, load_eth_ucy, make_bicycle_traffic
from gmm.kinematics import monte_carlo_moments, propagate
from gmm.metrics import (
    calibration_coverage,
    min_ade,
    min_fde,
    miss_rate,
    mixture_coverage,
    nll,
)
from mixtures.base import x64_scope

# Trajectron++ (Salzmann et al., ECCV 2020): published best-of-20 ADE/FDE averaged over the
# five scenes; its preprocessing took velocities by central differences, i.e. with one
# future position (Trajectron++ issues #26, #40, #53), so it is not leak-free.
TRAJECTRON_PP_AVG = (0.19, 0.41)
#: five-scene averages: as published, and re-run with backward differences (Trajectron++
#: repository, issue #53: ETH 0.67/1.18, Hotel 0.18/0.28, Univ 0.30/0.54, Zara1 0.25/0.41,
#: Zara2 0.18/0.32)
TRAJECTRON_PP = {"(published, leaks)": TRAJECTRON_PP_AVG, "(re-run without leak)": (0.32, 0.55)}

#: ETH/UCY file -> the place it was recorded (zara01-03 share a street, students001/003
#: and uni_examples a campus): the groups held out in turn by --eth-calibration-groups
LOCATION = {
    "biwi_eth": "eth",
    "biwi_hotel": "hotel",
    "students001": "univ",
    "students003": "univ",
    "uni_examples": "univ",
    "crowds_zara01": "zara",
    "crowds_zara02": "zara",
    "crowds_zara03": "zara",
}

#: --eth-calibration-groups recordings: the number of folds over the training recordings
RECORDING_FOLDS = 4


def _recording_folds(sources, n_folds):
    """Fold index of each window under ``GroupKFold(n_folds)`` over its recording."""
    from sklearn.model_selection import GroupKFold

    sources = np.asarray(sources)
    labels = np.empty(len(sources), dtype=int)
    for k, (_, held) in enumerate(GroupKFold(n_folds).split(sources, groups=sources)):
        labels[held] = k
    return labels


#: arm name -> (formulation, method, variance)
ARMS = {
    "velocity/exact": ("velocity", "exact", "propagated"),
    "velocity/paper": ("velocity", "paper", "propagated"),
    "acceleration/exact": ("acceleration", "exact", "propagated"),
    "acceleration/paper": ("acceleration", "paper", "propagated"),
    "speed_heading/exact": ("speed_heading", "exact", "propagated"),
    "speed_heading/paper": ("speed_heading", "paper", "propagated"),
    "accel_steering/exact": ("accel_steering", "exact", "propagated"),
    "accel_steering/paper": ("accel_steering", "paper", "propagated"),
    "position": ("position", "exact", "propagated"),
    "accel_steering/learned-var": ("accel_steering", "exact", "learned"),
}
H, T = 11, 30  # synthetic traffic: 1.1 s history, 3 s horizon at dt = 0.1 s


def epochs_for(n, batch_size, min_epochs, min_steps, max_epochs):
    """Epochs giving at least ``min_steps`` Adam steps (and ``min_epochs`` passes)."""
    n_batches = -(-n // batch_size)
    return int(np.clip(-(-min_steps // n_batches), min_epochs, max_epochs))


# ------------------------------------------------------------------------------ (1)


def propagation_runs(n_samples):
    dt = 0.1
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
    out = []
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
                out.append(
                    dict(
                        section=1,
                        formulation=f,
                        method=method,
                        n_mc=n_samples,
                        rel_err_sx=float(err[0]),
                        rel_err_sy=float(err[1]),
                        mean_err=float(me),
                    )
                )
    return out


def print_propagation(recs):
    if not recs:
        return
    print(f"\n(1) propagation vs Monte Carlo ({recs[0]['n_mc']} rollouts, T={T}, dt=0.1 s)")
    print("| formulation | method | rel. err std x | rel. err std y | mean err (m) |")
    print("|---|---|---|---|---|")
    for r in recs:
        print(
            f"| {r['formulation']} | {r['method']} | {r['rel_err_sx']:+.4f} | "
            f"{r['rel_err_sy']:+.4f} | {r['mean_err']:.3f} |"
        )


# ------------------------------------------------------------------------------ (2)


def small_data_runs(arms, fractions, seeds, cfg, verbose=True):
    test = make_bicycle_traffic(cfg["n_test"], history=H, horizon=T, random_state=10_000)
    cv = constant_velocity_forecast(test.history, T)
    out = [
        dict(
            section=2,
            arm="constant velocity",
            fraction=None,
            n=0,
            seed=None,
            minADE6=min_ade(test.future, cv),
            minFDE6=min_fde(test.future, cv),
            MR=miss_rate(test.future, cv),
        )
    ]
    for seed in seeds:
        full = make_bicycle_traffic(cfg["n_full"], history=H, horizon=T, random_state=seed)
        for frac in fractions:
            n = max(int(round(frac * cfg["n_full"])), 8)
            # nested subsets: the 1 % set is inside the 10 % set is inside the full set
            hist, fut = full.history[:n], full.future[:n]
            epochs = epochs_for(n, cfg["batch_size"], *cfg["epochs"])
            for arm in arms:
                f, method, var = ARMS[arm]
                c0, t0 = time.process_time(), time.perf_counter()
                m = KinematicGMMForecaster(
                    n_modes=6,
                    formulation=f,
                    method=method,
                    variance=var,
                    hidden_sizes=cfg["hidden"],
                    epochs=epochs,
                    batch_size=cfg["batch_size"],
                    random_state=seed,
                ).fit(hist, fut)
                fit_cpu, fit_wall = time.process_time() - c0, time.perf_counter() - t0
                p, mu, cov = m.predict_gaussians(test.history)
                rec = dict(
                    section=2,
                    arm=arm,
                    fraction=frac,
                    n=n,
                    seed=seed,
                    epochs=epochs,
                    minADE6=min_ade(test.future, mu),
                    minFDE6=min_fde(test.future, mu),
                    MR=miss_rate(test.future, mu),
                    NLL=nll(test.future, p, mu, cov),
                    cov1=float(calibration_coverage(test.future, mu, cov).coverage[0]),
                    final_loss=float(m.loss_curve_[-1]),
                    min_mode_usage=float(m.mode_usage_.min()),
                    fit_cpu_s=fit_cpu,
                    fit_wall_s=fit_wall,
                )
                out.append(rec)
                if verbose:
                    print(
                        f"  seed {seed} {frac:>5.0%} n={n:<5d} {arm:27s} "
                        f"minADE6 {rec['minADE6']:.3f} NLL {rec['NLL']:.2f} "
                        f"fit {fit_cpu:.1f} cpu-s ({epochs} epochs)",
                        flush=True,
                    )
    return out


def _ms(vals, fmt):
    vals = np.asarray(vals, float)
    if len(vals) == 1:
        return format(vals[0], fmt)
    return f"{format(vals.mean(), fmt)} ± {format(vals.std(ddof=1), fmt.lstrip('+'))}"


def print_small_data(recs):
    if not recs:
        return
    groups = defaultdict(list)
    for r in recs:
        groups[(r["arm"], r["fraction"])].append(r)
    seeds = sorted({r["seed"] for r in recs if r["seed"] is not None})
    print(f"\n(2) synthetic traffic: mean ± std over seeds {seeds} (minADE6/minFDE6 in m)")
    print("| arm | train frac | n | seeds | minADE6 | minFDE6 | MR@2m | NLL | cov1σ | fit cpu-s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = ["constant velocity", *ARMS]
    keys = sorted(groups, key=lambda k: (order.index(k[0]), k[1] or 0))
    for arm, frac in keys:
        g = groups[(arm, frac)]
        if frac is None:
            r = g[0]
            print(
                f"| {arm} | - | - | - | {r['minADE6']:.3f} | {r['minFDE6']:.3f} | "
                f"{r['MR']:.3f} | - | - | - |"
            )
            continue
        print(
            f"| {arm} | {frac:.0%} | {g[0]['n']} | {len(g)} | "
            f"{_ms([r['minADE6'] for r in g], '.3f')} | {_ms([r['minFDE6'] for r in g], '.3f')} | "
            f"{_ms([r['MR'] for r in g], '.3f')} | {_ms([r['NLL'] for r in g], '.2f')} | "
            f"{_ms([r['cov1'] for r in g], '.2f')} | {np.mean([r['fit_cpu_s'] for r in g]):.1f} |"
        )
    # paired gains over the baselines (same seed = same training subset)
    by = {(r["arm"], r["fraction"], r["seed"]): r for r in recs if r["fraction"] is not None}
    fracs = sorted({k[1] for k in by})
    for base in ("position", "accel_steering/learned-var"):
        if not any(k[0] == base for k in by):
            continue
        print(f"\nminADE6 change vs {base} (paired by seed, mean ± std, negative = better)")
        print("| arm | " + " | ".join(f"{f:.0%}" for f in fracs) + " |")
        print("|---|" + "---|" * len(fracs))
        for arm in ARMS:
            if arm == base or not any(k[0] == arm for k in by):
                continue
            cells = []
            for f in fracs:
                d = [
                    by[(arm, f, s)]["minADE6"] / by[(base, f, s)]["minADE6"] - 1
                    for s in seeds
                    if (arm, f, s) in by and (base, f, s) in by
                ]
                cells.append(_ms(100 * np.asarray(d), "+.1f") + " %" if d else "-")
            print(f"| {arm} | " + " | ".join(cells) + " |")


# ------------------------------------------------------------------------------ (3)


def eth_ucy_runs(directory, scenes, arms, seeds, cfg, verbose=True, on_record=None):
    """Leave-one-scene-out: train on the other scenes (10 % of their windows held out for
    early stopping), test on the scene's own files; arms share encoder and budget."""
    out = []
    M = cfg["eth_neighbours"]
    for scene in scenes:
        te = load_eth_ucy(directory, scene, max_neighbours=M)
        tr = load_eth_ucy(directory, scene, split="train", max_neighbours=M)
        cv = constant_velocity_forecast(te.history, 12)
        out.append(
            dict(section=3, scene=scene, arm="constant velocity", seed=None,
                 n_test=len(te.history), n_train=0, ade=min_ade(te.future, cv),
                 fde=min_fde(te.future, cv))
        )  # fmt: skip
        for seed in seeds:
            idx = np.random.default_rng(seed).permutation(len(tr.history))[: cfg["eth_max"]]
            for arm in arms:
                f, method, var = ARMS[arm]
                c0 = time.process_time()
                social = "attention" if cfg["eth_social"] else None
                mean_output = cfg.get("eth_mean_output") or "controls"
                mean_output = "controls" if f not in ("acceleration", "velocity") else mean_output
                m = KinematicGMMForecaster(
                    n_modes=cfg["eth_modes"], formulation=f, method=method, variance=var,
                    dt=0.4, encoder=cfg["eth_encoder"], social=social,
                    hidden_sizes=cfg["eth_hidden"], epochs=cfg["eth_epochs"],
                    batch_size=cfg["batch_size"], learning_rate_schedule="cosine",
                    validation_fraction=0.1, min_std=cfg["eth_min_std"], random_state=seed,
                    df=cfg["eth_df"], augment=cfg["eth_augment"],
                    calibrate=cfg.get("eth_calibrate") or False,
                    calibrate_floor=bool(cfg.get("eth_calibrate_floor")),
                    mean_output=mean_output,
                )  # fmt: skip
                fit_kw = {}  # neighbours and calibration groups
                if social:
                    fit_kw = dict(
                        neighbours=tr.neighbours[idx], neighbour_mask=tr.neighbour_mask[idx]
                    )
                groups = cfg.get("eth_calibration_groups") if cfg.get("eth_calibrate") else None
                if groups == "locations":
                    fit_kw["groups"] = np.array([LOCATION[src] for src in tr.sources[idx]])
                elif groups == "recordings":
                    fit_kw["groups"] = _recording_folds(tr.sources[idx], RECORDING_FOLDS)
                m.fit(tr.history[idx], tr.future[idx], **fit_kw)
                fit_cpu = time.process_time() - c0
                nbt = dict(neighbours=te.neighbours, neighbour_mask=te.neighbour_mask)
                nbt = nbt if social else {}
                probs, means, covs = m.predict_gaussians(te.history, **nbt)
                s = m.sample(te.history, n_samples=20, random_state=seed, **nbt)
                # the same draws without the floor's noise (kinematic: the smooth paths)
                sp = m.sample(
                    te.history, n_samples=20, random_state=seed, observation_noise=False, **nbt
                )
                cov = mixture_coverage(te.future, probs, means, covs, random_state=seed, df=m.df_)
                tail = "" if cfg["eth_df"] is None else f" + Student-t (df {cfg['eth_df']})"
                tail += f" + {cfg['eth_augment']}" if cfg["eth_augment"] else ""
                on = f" on held-out {groups}" if "groups" in fit_kw else ""
                on += " with its floor" if m.calibrate_floor else ""
                tail += f" + calibrated ({m.calibrate}{on})" if m.calibrate else ""
                tail += {
                    "path": " + path output",
                    "cv_offset": " + cv-offset output",
                    "speed_fan": " + speed-fan output",
                }.get(mean_output, "")
                rec = dict(
                    section=3, scene=scene, arm=arm + tail, seed=seed, n_test=len(te.history),
                    n_train=len(idx), ade=min_ade(te.future, means), fde=min_fde(te.future, means),
                    ade_samples=min_ade(te.future, s), fde_samples=min_fde(te.future, s),
                    ade_paths=min_ade(te.future, sp), fde_paths=min_fde(te.future, sp),
                    nll=nll(te.future, probs, means, covs, df=m.df_), cov1=float(cov.coverage[0]),
                    cov2=float(cov.coverage[1]), best_epoch=m.best_epoch_, fit_cpu_s=fit_cpu,
                    df=m.df_, variance_scale=m.variance_scale_, min_std=m.min_std_,
                )  # fmt: skip
                if m.calibrate:  # the same fit without its factor (and trained df)
                    df_fit = m.df_
                    if "df" in m.params_:  # learned: 1 + softplus(raw)
                        df_fit = 1.0 + float(np.logaddexp(0.0, m.params_["df"]))
                    elif m.df_ is not None:
                        df_fit = float(m.df)
                    c, df_cal, floor = m.variance_scale_, m.df_, m.min_std_
                    m.variance_scale_, m.df_, m.min_std_ = 1.0, df_fit, m.min_std
                    p1, mu1, cv1 = m.predict_gaussians(te.history, **nbt)
                    m.variance_scale_, m.df_, m.min_std_ = c, df_cal, floor
                    raw = mixture_coverage(te.future, p1, mu1, cv1, random_state=seed, df=df_fit)
                    rec.update(
                        df_uncalibrated=df_fit,
                        nll_uncalibrated=nll(te.future, p1, mu1, cv1, df=df_fit),
                        cov1_uncalibrated=float(raw.coverage[0]),
                        cov2_uncalibrated=float(raw.coverage[1]),
                    )
                out.append(rec)
                if on_record is not None:
                    on_record(rec)
                if verbose:
                    print(
                        f"  {scene:6s} seed {seed} {arm:20s} 20 modes ADE {rec['ade']:.3f} "
                        f"FDE {rec['fde']:.3f}, 20 samples {rec['ade_samples']:.3f} / "
                        f"{rec['fde_samples']:.3f}, NLL {rec['nll']:.2f}, coverage "
                        f"{rec['cov1']:.2f} / {rec['cov2']:.2f}, df {m.df_ or 'normal'}, "
                        f"variance scale {m.variance_scale_:.3f}, floor {m.min_std_:.3f}, "
                        f"epoch {m.best_epoch_}, "
                        f"fit {fit_cpu:.0f} cpu-s",
                        flush=True,
                    )
    return out


def print_eth_ucy(recs):
    if not recs:
        return
    arms = [a for a in dict.fromkeys(r["arm"] for r in recs)]
    learned = [a for a in arms if a != "constant velocity"]
    scenes = [s for s in ETH_UCY_SCENES if any(r["scene"] == s for r in recs)]
    seeds = sorted({r["seed"] for r in recs if r["seed"] is not None})
    print(
        f"\n(3) ETH/UCY leave-one-scene-out, ADE / FDE (m) of the 20 modes (best of 20), "
        f"mean over seeds {seeds}; constant velocity is one deterministic forecast"
    )
    print("| scene | n test | " + " | ".join(arms) + " |")
    print("|---|---|" + "---|" * len(arms))
    avg = defaultdict(list)
    for scene in scenes + ["average"]:
        cells = []
        for a in arms:
            if scene == "average":
                v = np.asarray(avg[a])
                part = "" if len(v) == len(ETH_UCY_SCENES) else " (partial)"
                cells.append(f"**{v[:, 0].mean():.3f} / {v[:, 1].mean():.3f}**{part}")
                continue
            g = [r for r in recs if r["scene"] == scene and r["arm"] == a]
            if not g:
                cells.append("-")
                continue
            ade, fde = np.mean([r["ade"] for r in g]), np.mean([r["fde"] for r in g])
            avg[a].append((ade, fde))
            sd = (
                f" (± {np.std([r['ade'] for r in g]):.3f} / {np.std([r['fde'] for r in g]):.3f})"
                if len(g) > 1 else ""
            )  # fmt: skip
            cells.append(f"{ade:.3f} / {fde:.3f}{sd}")
        n_test = next((r["n_test"] for r in recs if r["scene"] == scene), "-")
        print(f"| {scene} | {n_test} | " + " | ".join(cells) + " |")
    for name, (ade, fde) in TRAJECTRON_PP.items():
        cells = ["-"] * len(arms)
        cells[arms.index(learned[0]) if learned else 0] = f"{ade} / {fde}"
        print(f"| Trajectron++ {name} | - | " + " | ".join(cells) + " |")
    print(
        "\nPer arm, averaged over scenes (mean over seeds): 20 samples drawn from the "
        "predictive mixture, the same draws without the floor min_std (observation_noise="
        "False: the kinematic heads' smooth paths), per-step NLL (nats), highest-density "
        "coverage at the 1-sigma / 2-sigma masses (nominal 0.393 / 0.865), fit CPU seconds"
    )
    print(
        "| arm | 20 samples ADE / FDE | without the floor ADE / FDE | NLL | coverage 1σ / 2σ "
        "| fit cpu-s |"
    )
    print("|---|---|---|---|---|---|")
    for a in learned:
        g = [r for r in recs if r["arm"] == a]
        by = defaultdict(list)
        for r in g:
            by[r["scene"]].append(r)

        def sc(key, by=by):
            return np.mean([np.mean([r[key] for r in v]) for v in by.values()])

        def pair(kind, g=g, sc=sc):  # "-" where a record lacks them
            if not all(f"ade_{kind}" in r for r in g):
                return "-"
            return f"{sc(f'ade_{kind}'):.3f} / {sc(f'fde_{kind}'):.3f}"

        print(
            f"| {a} | {pair('samples')} | {pair('paths')} | {sc('nll'):.2f} | "
            f"{sc('cov1'):.3f} / {sc('cov2'):.3f} | {sc('fit_cpu_s'):.0f} |"
        )
    # the kinematic head against the same network with a position head, paired by seed
    by = {(r["arm"], r["scene"], r["seed"]): r for r in recs if r["seed"] is not None}
    for a in learned:
        p = "position" + (a[a.index(" + ") :] if " + " in a else "")  # same predictive tails
        # calibration moves no mode mean and the path output is the kinematic head's
        p = re.sub(r" \+ calibrated \([^)]*\)", "", p)
        for out in (" + path output", " + cv-offset output", " + speed-fan output"):
            p = p.replace(out, "")
        if a.startswith("position") or p not in learned:
            continue
        d = [
            (by[(a, sc, s)]["ade"] - by[(p, sc, s)]["ade"],
             by[(a, sc, s)]["fde"] - by[(p, sc, s)]["fde"])
            for sc in scenes for s in seeds if (a, sc, s) in by and (p, sc, s) in by
        ]  # fmt: skip
        if d:
            d = np.asarray(d)
            se = d.std(0, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else [np.nan] * 2
            print(
                f"\n{a} - {p} (same encoder and budget, paired over {len(d)} "
                f"scene x seed runs): ADE {d[:, 0].mean():+.3f} (SE {se[0]:.3f}), "
                f"FDE {d[:, 1].mean():+.3f} (SE {se[1]:.3f})"
            )
        # the predictives, where the position head ran with the same calibration
        cal = re.search(r" \+ calibrated \([^)]*\)", a)
        pc = p + cal.group(0) if cal else p
        keys = ("ade_samples", "fde_samples", "nll", "cov1", "cov2")
        pairs = [
            (by[(a, sc, s)], by[(pc, sc, s)])
            for sc in scenes for s in seeds if (a, sc, s) in by and (pc, sc, s) in by
        ]  # fmt: skip
        pairs = [(x, y) for x, y in pairs if all(k in x and k in y for k in keys)]
        if len(pairs) > 1:
            d = np.array([[x[k] - y[k] for k in keys] for x, y in pairs])
            se = d.std(0, ddof=1) / np.sqrt(len(d))
            print(
                f"  predictive against {pc} (paired over {len(d)} runs): 20 samples ADE "
                f"{d[:, 0].mean():+.3f} (SE {se[0]:.3f}), FDE {d[:, 1].mean():+.3f} "
                f"(SE {se[1]:.3f}); NLL {d[:, 2].mean():+.3f} (SE {se[2]:.3f}); coverage "
                f"{d[:, 3].mean():+.3f} / {d[:, 4].mean():+.3f}"
            )


# ------------------------------------------------------------------------------ main


def print_all(recs):
    print_propagation([r for r in recs if r["section"] == 1])
    print_small_data([r for r in recs if r["section"] == 2])
    print_eth_ucy([r for r in recs if r["section"] == 3])


def _dedupe(recs):
    """Drop duplicate records (same section and keys) when shards overlap."""
    seen, out = set(), []
    for r in recs:
        key = tuple(
            (k, r.get(k)) for k in ("section", "formulation", "method", "arm", "fraction", "seed")
        ) + ((("scene", r.get("scene")),) if r["section"] == 3 else ())
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    ap.add_argument("--sections", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3])
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="default 0 1 2")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    ap.add_argument("--scenes", nargs="+", default=list(ETH_UCY_SCENES), choices=ETH_UCY_SCENES)
    ap.add_argument(
        "--eth-arms", nargs="+", default=["acceleration/exact", "position"], choices=list(ARMS)
    )
    ap.add_argument("--eth-seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--eth-encoder", default="gru", choices=("gru", "mlp"))
    ap.add_argument("--eth-no-social", action="store_true", help="own history only")
    ap.add_argument("--eth-modes", type=int, default=20)
    ap.add_argument("--eth-min-std", type=float, default=0.05, help="position std floor (m)")
    ap.add_argument(
        "--eth-df", default="learn", help="predictive tails: 'learn', 'normal' or a number"
    )
    ap.add_argument(
        "--eth-augment",
        default="mirror+scale",
        choices=("none", "mirror", "scale", "mirror+scale"),
        help="training augmentation (mirror: every window and its mirror image; scale: and a "
        "copy scaled about the agent by a log-uniform factor in [2/3, 3/2])",
    )
    ap.add_argument(
        "--eth-calibrate",
        nargs="?",
        const="nll",
        default=None,
        choices=("nll", "coverage"),
        help="one covariance factor fitted on held-out data (see --eth-calibration-groups), "
        "by its NLL (the default) or by the calibration error of its HDR masses (the "
        "uncalibrated NLL and coverage of the same fit are recorded beside it)",
    )
    ap.add_argument(
        "--eth-calibration-groups",
        default="locations",
        choices=("locations", "recordings", "windows"),
        help="with --eth-calibrate: choose the factor on each training location (eth, hotel, "
        "univ, zara) under a fit without it (the default; fit(..., groups=...)), on "
        f"{RECORDING_FOLDS} folds of the training recordings (GroupKFold over the files: a "
        "recording is held out while its place may stay in training), or on the held-out "
        "training windows",
    )
    ap.add_argument(
        "--eth-calibrate-floor",
        default="off",
        choices=("on", "off"),
        help="with --eth-calibrate coverage: also choose the position standard-deviation "
        "floor on the held-out data (KinematicGMMForecaster(calibrate_floor=True))",
    )
    ap.add_argument(
        "--eth-mean-output",
        default="speed_fan",
        choices=("controls", "path", "cv_offset", "speed_fan"),
        help="kinematic heads (acceleration, velocity): the network outputs each mode's mean "
        "path, its offset from the constant-velocity path, its offset from a fan of "
        "constant-speed anchors (the default), or the mean controls "
        "(KinematicGMMForecaster(mean_output=...))",
    )
    ap.add_argument("--n-full", type=int, default=None, help="full synthetic training set")
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--mc", type=int, default=None, help="Monte Carlo rollouts for (1)")
    ap.add_argument("--eth-epochs", type=int, default=None)
    ap.add_argument("--eth-max", type=int, default=None, help="max ETH/UCY training windows")
    ap.add_argument(
        "--data",
        default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "eth_ucy"),
    )
    ap.add_argument("--json", help="write the raw per-run records to this file")
    ap.add_argument("--merge", nargs="+", help="print the tables of these JSON files and exit")
    args = ap.parse_args(argv)
    if args.merge:
        recs = []
        for p in args.merge:
            recs += json.loads(Path(p).read_text())["records"]
        print_all(_dedupe(recs))
        return
    if args.quick:
        cfg = dict(
            mc=20_000,
            n_full=400,
            n_test=200,
            seeds=[0],
            epochs=(3, 20, 20),
            eth_epochs=2,
            eth_max=1000,
            eth_hidden=(32,),
        )
    else:
        cfg = dict(
            mc=100_000,
            n_full=2000,
            n_test=1000,
            seeds=[0, 1, 2],
            # >= 30 passes and >= 400 Adam steps, at most 400 passes (1 %: 400 steps)
            epochs=(30, 400, 400),
            eth_epochs=None,  # 20 passes' Adam steps over the augmented windows (below)
            eth_max=None,
            eth_hidden=(128, 128),
        )
    cfg.update(hidden=(64, 64), batch_size=64, eth_neighbours=8)
    cfg.update(eth_encoder=args.eth_encoder, eth_social=not args.eth_no_social)
    cfg.update(
        eth_modes=args.eth_modes,
        eth_min_std=args.eth_min_std,
        eth_augment=None if args.eth_augment == "none" else args.eth_augment,
        eth_calibrate=args.eth_calibrate,
        eth_calibration_groups=args.eth_calibration_groups,
        eth_calibrate_floor=args.eth_calibrate == "coverage" and args.eth_calibrate_floor == "on",
        eth_mean_output=args.eth_mean_output,
    )
    if cfg["eth_epochs"] is None:  # equal Adam steps: 20 epochs of the caller's windows
        copies = 1 if cfg["eth_augment"] is None else 2 ** len(cfg["eth_augment"].split("+"))
        cfg["eth_epochs"] = 20 // copies
    df = args.eth_df
    cfg.update(eth_df=None if df == "normal" else df if df == "learn" else float(df))
    for k in ("mc", "n_full", "n_test", "eth_epochs", "eth_max"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    if args.seeds is not None:
        cfg["seeds"] = args.seeds
    print(f"config: {json.dumps({k: v for k, v in cfg.items()})}", flush=True)
    recs = []
    t0 = time.process_time()

    def save(extra=()):
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "config": {**cfg, "argv": sys.argv[1:] if argv is None else argv},
                        "records": recs + list(extra),
                    },
                    indent=1,
                    default=str,
                )
            )

    if 1 in args.sections:
        recs += propagation_runs(cfg["mc"])
        print_propagation(recs)
    if 2 in args.sections:
        recs += small_data_runs(args.arms, args.fractions, cfg["seeds"], cfg)
    if 3 in args.sections:
        if Path(args.data).is_dir():
            seeds = args.eth_seeds if not args.quick else [0]
            part = []  # written after every fit

            def on_record(rec):
                part.append(rec)
                save(part)

            recs += eth_ucy_runs(
                args.data, args.scenes, args.eth_arms, seeds, cfg, on_record=on_record
            )
        else:
            print(f"ETH/UCY data not found at {args.data}; section 3 skipped")
    print_small_data([r for r in recs if r["section"] == 2])
    print_eth_ucy([r for r in recs if r["section"] == 3])
    print(f"\ntotal process CPU time: {time.process_time() - t0:.0f} s")
    save()


if __name__ == "__main__":
    main()
