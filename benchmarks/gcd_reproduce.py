"""Reproduce the clustering / K-estimation half of GPC on frozen features (note, section 11).

Sets: MoCo ImageNet-50 (2500 x 128, Old = 0-24), UMAP USPS / MNIST (Old = 0-4),
scikit-learn digits (standardise -> PCA 32 -> L2, Old = 0-4). 50 % of the Old-class samples
are labelled (global draw, seed = run seed). ``imagenet50`` projects the MoCo features by
PCA to 32 dims and re-normalises them (GPC's Fig. 1 runs the E-step in a PCA space);
``imagenet50_128`` keeps the raw 128-d unit-norm features, the note's protocol (11.2) and
the space of its sanity numbers (11.3). Accuracy is GCD "v2" (one Hungarian matching) on
the unlabelled samples.

Arms: ``sskm`` SS-k-means with the true K; ``brent`` GCD Brent K-hat + SS-k-means;
``ssgmm`` SS-GMM split/merge from K0 in {|Old|+1, K, 2K, 3K} with acceptance "mh" and
"gpc" (``--assignment`` / ``--prior`` choose the SS-GMM variant; default: GPC's hard
E-step with the scaled GPC prior); ``gcd`` the full alternating method
(GeneralizedCategoryDiscovery, short schedule). Tables give mean +- std over seeds.

Sharding: ``--seeds 0 1 2 --sets imagenet50 --arms ssgmm --json part1.json`` runs one shard
and writes its raw rows; ``--merge part1.json part2.json ...`` prints the tables of several
shards without running anything.

Usage: ``python benchmarks/gcd_reproduce.py [--quick] [--seeds 0 1 2 3 4] [--sets ...]
[--arms sskm brent ssgmm gcd] [--json PATH] [--merge PATH ...] [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETS = ("digits", "imagenet50", "imagenet50_128", "umap_usps", "umap_mnist")
ARMS = ("sskm", "brent", "ssgmm", "gcd")


def _l2(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def load_set(name: str, data_dir: pathlib.Path):
    """Features, labels and the number of Old classes of one benchmark set."""
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        d = load_digits()
        X = _l2(PCA(32, random_state=0).fit_transform(StandardScaler().fit_transform(d.data)))
        return X, d.target.astype(int), 5
    if name == "imagenet50":
        f = np.load(data_dir / "moco_imagenet50.npz")
        X = _l2(PCA(32, random_state=0).fit_transform(f["X"].astype(np.float64)))
        return X, f["y"].astype(int), 25
    if name == "imagenet50_128":  # the note's protocol (11.2): raw 128-d, L2-normalised
        f = np.load(data_dir / "moco_imagenet50.npz")
        return _l2(f["X"].astype(np.float64)), f["y"].astype(int), 25
    if name in ("umap_usps", "umap_mnist"):
        f = np.load(data_dir / f"{name}.npz")
        return f["X"].astype(np.float64), f["y"].astype(int), 5
    raise ValueError(f"unknown set {name!r}; expected one of {SETS}.")


def run_set(
    name,
    X,
    y,
    n_old,
    seeds,
    arms,
    starts,
    rules,
    max_rounds,
    assignment,
    prior,
    bookkeeping="corrected",
    search="single",
    restarts=1,
    flush=None,
):
    """Run the chosen arms on one set; return one dict per (seed, method).

    ``flush(rows)``, if given, is called with the rows so far after every seed.
    """
    from gmm import (
        GeneralizedCategoryDiscovery,
        SemiSupervisedGMM,
        SemiSupervisedKMeans,
        cluster_accuracy,
        estimate_n_clusters,
        log_partition_posterior,
        make_gcd_split,
    )
    from mixtures.niw import default_prior, empirical_bayes_prior

    K = int(np.unique(y).size)
    out = []
    niw = {}
    anchors = {}

    def record(method, seed, labels, k_hat, secs, u, s, traj=None, extra=None):
        acc = cluster_accuracy(y[u], labels[u], s.old_mask[u])
        if seed not in niw:  # the SS-GMM prior of this split, and the truth's log posterior
            pr = empirical_bayes_prior(X, s.y) if prior else default_prior(X)
            niw[seed] = (pr, log_partition_posterior(X, y, pr))
        pr, lp_true = niw[seed]
        row = {
            "set": name, "method": method, "seed": int(seed), "K": K, "k_hat": int(k_hat),
            "all": acc["all"], "old": acc["old"], "new": acc["new"], "seconds": secs,
            "k_trajectory": traj,
            "log_post_vs_truth": log_partition_posterior(X, labels, pr) - lp_true,
            **(extra or {}),
        }  # fmt: skip
        out.append(row)
        print(
            f"  {name} seed={seed} {method}: All {acc['all']:.3f} Old {acc['old']:.3f} "
            f"New {acc['new']:.3f} K-hat {k_hat} ({secs:.1f} s)",
            flush=True,
        )

    k0_of = {"|Old|": n_old, "|Old|+1": n_old + 1, "K": K, "2K": 2 * K, "3K": 3 * K}
    for seed in seeds:
        s = make_gcd_split(y, range(n_old), 0.5, random_state=seed)
        u = ~s.labelled_mask
        if "sskm" in arms:
            t = time.perf_counter()
            km = SemiSupervisedKMeans(K, n_init=5, random_state=seed).fit(X, s.y)
            record("SS-k-means (true K)", seed, km.labels_, K, time.perf_counter() - t, u, s)
        if "brent" in arms:
            t = time.perf_counter()
            sub = np.random.default_rng(seed).choice(len(X), min(len(X), 10000), replace=False)
            k_hat = estimate_n_clusters(X[sub], s.y[sub], bounds=(n_old, 4 * K), n_init=3)
            km = SemiSupervisedKMeans(k_hat, n_init=5, random_state=seed).fit(X, s.y)
            record("GCD Brent + SS-k-means", seed, km.labels_, k_hat,
                   time.perf_counter() - t, u, s)  # fmt: skip
        if "ssgmm" in arms:
            for rule in rules:
                two_sided = None  # search="two_sided" ignores K0: one fit serves every start
                for label in starts:
                    t = time.perf_counter()
                    if two_sided is not None:
                        m, secs = two_sided
                    else:
                        m = SemiSupervisedGMM(
                            k0_of[label], assignment=assignment, prior=prior, acceptance=rule,
                            max_rounds=max_rounds, max_iter=50, random_state=seed,
                            bookkeeping=bookkeeping, search=search, n_restarts=restarts,
                        ).fit(X, s.y)  # fmt: skip
                        secs = time.perf_counter() - t
                        if search == "two_sided":
                            two_sided = (m, secs)
                    tag = f"{assignment}" + {
                        None: "", "empirical_bayes": ", EB prior", "calibrated": ", calibrated"
                    }[prior]  # fmt: skip
                    if search != "single":
                        tag += f", {search}"
                    if restarts > 1:
                        tag += f" x{restarts}"
                    extra = None
                    if m.calibration_ is not None:
                        cal = m.calibration_
                        extra = {
                            "psi_factor": cal["psi_factor"],
                            "fold_accuracy": cal["accuracy"].mean(-1)[0].tolist(),
                            "factors": cal["factors"].tolist(),
                            "n_found": cal["n_found"][0].tolist(),
                            "n_hidden": cal["n_hidden"].tolist(),
                        }
                        acc = np.round(extra["fold_accuracy"], 3).tolist()
                        print(f"    calibration: factor {cal['psi_factor']}, held-out acc {acc}")
                        extra.update(_diagnose(X, y, s, m, anchors))
                    if m.history_.get("starts"):
                        extra = dict(extra or {}, starts=m.history_["starts"])
                    if bookkeeping != "corrected":
                        tag += f", {bookkeeping} bookkeeping, {max_rounds} rounds"
                    record(f"SS-GMM ({tag}) {rule} K0={label}", seed, m.labels_, m.n_components_,
                           secs, u, s,
                           [int(k) for k in m.history_["n_components"]], extra)  # fmt: skip
        if "gcd" in arms:
            t = time.perf_counter()
            g = GeneralizedCategoryDiscovery(
                2 * K, hidden_dim=64, n_epochs=3, steps_per_epoch=30, batch_size=128,
                gmm_params={"assignment": assignment, "prior": prior}, random_state=seed,
            ).fit(X, s.y)  # fmt: skip
            record("GPC alternating (K0=2K, 3 epochs)", seed, g.labels_, g.n_components_,
                   time.perf_counter() - t, u, s)  # fmt: skip
        if flush is not None:
            flush(out)
    return out


def _diagnose(X, y, split, model, anchors):
    """Why a calibrated fit ends where it does, under the prior it chose.

    Compares the DP-NIW log posterior (the search's objective, with the chosen prior and
    concentration) of the fitted partition with that of the true classes and of the
    *anchor*, SS-k-means started from the true class means (the hard-assignment fixed
    point nearest the truth). Fitted above the anchor: the model prefers its partition
    (no search can fix that). Below it: the search missed a better partition.
    """
    from gmm import SemiSupervisedKMeans, cluster_accuracy, log_partition_posterior

    K = int(np.unique(y).size)
    key = id(split)
    if key not in anchors:
        means = np.stack([X[y == c].mean(0) for c in range(K)])
        km = SemiSupervisedKMeans(K, init=means, max_iter=50, tol=1e-10).fit(X, split.y)
        anchors[key] = km.labels_
    anchor = anchors[key]
    prior, alpha = model.prior_, model.calibration_["chosen_split_alpha"]
    lp = log_partition_posterior(X, model.labels_, prior, alpha)
    u = ~split.labelled_mask
    return {
        "fit_vs_anchor": lp - log_partition_posterior(X, anchor, prior, alpha),
        "fit_vs_truth_chosen_prior": lp - log_partition_posterior(X, y, prior, alpha),
        "anchor_all": cluster_accuracy(y[u], anchor[u], split.old_mask[u])["all"],
        "k_anchor": int(np.unique(anchor).size),
    }


def print_diagnosis(rows):
    """Per set and seed: K-hat, All, and the log posterior against the anchor."""
    sub = [r for r in rows if "fit_vs_anchor" in r]
    if not sub:
        return
    print(
        "\n### Diagnosis under the chosen prior: log p(fit) - log p(anchor), anchor = "
        "SS-k-means from the true means (> 0: the model prefers its partition; < 0: the "
        "search missed a better one)"
    )
    print("| set | seed | K | K-hat | All | anchor All | psi factor | log p(fit) - log p(anchor) |")
    print("|---|---|---|---|---|---|---|---|")
    seen = set()
    for r in sub:
        if (r["set"], r["seed"]) in seen:
            continue
        seen.add((r["set"], r["seed"]))
        print(
            f"| {r['set']} | {r['seed']} | {r['K']} | {r['k_hat']} | {r['all']:.3f} | "
            f"{r['anchor_all']:.3f} | {r['psi_factor']:g} | {r['fit_vs_anchor']:+.0f} |"
        )


def print_tables(rows):
    """Markdown tables (mean +- std over seeds) from raw result rows."""
    for name in dict.fromkeys(r["set"] for r in rows):
        sub = [r for r in rows if r["set"] == name]
        K = sub[0]["K"]
        seeds = sorted({r["seed"] for r in sub})
        print(f"\n### {name}: K = {K}, seeds = {seeds}")
        ref = {r["seed"]: r["all"] for r in sub if r["method"] == "SS-k-means (true K)"}
        print(
            "| method | n | All | Old | New | K-hat | mean abs(K-hat-K)/K | K-hat within 10% "
            "| paired All - SS-k-means (SE) | log p(partition) - log p(truth) | s/run |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for method in dict.fromkeys(r["method"] for r in sub):
            v = [r for r in sub if r["method"] == method]
            a = np.array([[r["all"], r["old"], r["new"], r["k_hat"], r["seconds"]] for r in v])
            mu, sd = a.mean(0), a.std(0)
            kerr = np.abs(a[:, 3] - K) / K
            label = method.replace("|", "\\|")  # keep markdown columns intact
            diff = [r["all"] - ref[r["seed"]] for r in v if r["seed"] in ref]
            paired = "-"
            if diff and method != "SS-k-means (true K)":
                se = np.std(diff, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
                paired = f"{np.mean(diff):+.3f} ({se:.3f})"
            lp = [r["log_post_vs_truth"] for r in v if "log_post_vs_truth" in r]
            lp = f"{np.mean(lp):+.0f}" if lp else "-"
            print(
                f"| {label} | {len(v)} | {mu[0]:.3f} ± {sd[0]:.3f} | {mu[1]:.3f} | "
                f"{mu[2]:.3f} | {mu[3]:.1f} ± {sd[3]:.1f} | {kerr.mean():.2f} | "
                f"{int((kerr <= 0.1).sum())}/{len(v)} | {paired} | {lp} | {mu[4]:.1f} |"
            )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="seed 0, K0 in {|Old|+1, 2K}, no MNIST")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default 0 1 2 3 4")
    ap.add_argument("--sets", nargs="*", default=None, choices=SETS)
    ap.add_argument("--arms", nargs="*", default=list(ARMS), choices=ARMS)
    ap.add_argument(
        "--starts", nargs="*", default=None, choices=("|Old|", "|Old|+1", "K", "2K", "3K")
    )
    ap.add_argument("--rules", nargs="*", default=["mh", "gpc"], choices=("mh", "gpc"))
    ap.add_argument("--max-rounds", type=int, default=10)
    ap.add_argument("--assignment", default="hard", choices=("hard", "soft"))
    ap.add_argument(
        "--prior", default="default", choices=("default", "empirical_bayes", "calibrated")
    )
    ap.add_argument(
        "--search", default="single", choices=("single", "two_sided"),
        help="SS-GMM search: one start, or from below and above keeping the better posterior",
    )  # fmt: skip
    ap.add_argument(
        "--bookkeeping", default="corrected", choices=("corrected", "released"),
        help="'released': the GPC code's grow-only bookkeeping (note, section 6)",
    )  # fmt: skip
    ap.add_argument(
        "--restarts", type=int, default=1, help="SS-GMM n_restarts (whole-search restarts)"
    )
    ap.add_argument("--json", default=None, help="write the raw rows to this path")
    ap.add_argument("--merge", nargs="*", default=None, help="print tables of JSON shards")
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("MIXPROC_GCD_DATA", str(ROOT.parent / "shared" / "data" / "gcd")),
    )
    a = ap.parse_args(argv)
    if a.merge:
        rows = []
        for path in a.merge:
            with open(path) as f:
                rows += json.load(f)
        print_tables(rows)
        print_diagnosis(rows)
        return rows
    seeds = a.seeds if a.seeds is not None else ([0] if a.quick else list(range(5)))
    sets = a.sets or (
        [s for s in SETS if s not in ("umap_mnist", "imagenet50_128")] if a.quick else list(SETS)
    )
    starts = a.starts or (["|Old|+1", "2K"] if a.quick else ["|Old|+1", "K", "2K", "3K"])
    prior = None if a.prior == "default" else a.prior
    rows = []

    def flush(new):  # write after every seed so a cut-off shard keeps its rows
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows + new, f, indent=1)

    for name in sets:
        X, y, n_old = load_set(name, pathlib.Path(a.data_dir))
        rows += run_set(name, X, y, n_old, seeds, a.arms, starts, a.rules, a.max_rounds,
                        a.assignment, prior, a.bookkeeping, a.search, a.restarts,
                        flush)  # fmt: skip
    print_tables(rows)
    print_diagnosis(rows)
    return rows


if __name__ == "__main__":
    main()
