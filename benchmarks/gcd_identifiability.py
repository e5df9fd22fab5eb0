"""Does the DP-NIW posterior identify K? (issue 4, BENCHMARKS.md diagnosis 6)

For each seed's GCD split of one set, fit ``SemiSupervisedGMM`` (hard E-step, "mh") from
several starts, under several empirical-Bayes NIW priors (``mixtures.niw.empirical_bayes_prior``:
the scale alone or scale, nu0 and kappa0 by type-II ML on the labelled classes; isotropic or
within-class shape) and with 1 or 3 nearest-neighbour merge candidates. Each run reports
K-hat, its partition's DP-NIW log posterior minus the true classes'
(``gmm.log_partition_posterior``, same prior), the number of components with fewer than 10
samples, and the "v2" All accuracy on the unlabelled samples. ``--absorb N`` then merges
every component with fewer than N samples, one at a time, into the component for which the
merge raises the log posterior most (if any does) and reports K-hat and the log posterior
after that: a merge search that the nearest-mean candidates miss.

The reference is not only the true partition, which no hard E-step (nearest mean) can
produce, but also its *anchor*: SS-k-means started from the true class means and run to
convergence, the fixed point of the search nearest the truth (K clusters, Voronoi cells).

If the model identified K, the partitions it prefers (the most probable ones found) would
sit near the true K, and the searches from every start would agree. The summary gives,
per (prior, merges), the range of K-hat over starts and seeds and the K-hat of the most
probable partition found on each seed.

Usage: ``python benchmarks/gcd_identifiability.py [--set imagenet50_128] [--seeds 0 1 2]
[--priors scale-iso all-iso scale-within all-within iso-nu2D ... within-nu32D]
[--merges 1 3] [--starts ...] [--max-rounds 30] [--absorb 25] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
PRIORS = {
    "scale-iso": {},
    "all-iso": {"fit": "all"},
    "scale-within": {"shape": "within"},
    "all-within": {"shape": "within", "fit": "all"},
}
for _m in (2, 8, 32):  # nu0 = m * D fixed (covariances pulled toward Psi0), scale fitted
    PRIORS[f"iso-nu{_m}D"] = {"nu_mult": _m}
    PRIORS[f"within-nu{_m}D"] = {"shape": "within", "nu_mult": _m}


def main(argv=None):
    from gcd_reproduce import SETS, load_set

    from gmm import (
        SemiSupervisedGMM,
        SemiSupervisedKMeans,
        cluster_accuracy,
        log_partition_posterior,
        make_gcd_split,
    )
    from mixtures.niw import empirical_bayes_prior

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", default="imagenet50_128", choices=SETS)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--priors", nargs="*", default=list(PRIORS)[:4], choices=list(PRIORS))
    ap.add_argument("--merges", type=int, nargs="*", default=[1, 3])
    ap.add_argument(
        "--starts", nargs="*", default=["|Old|+1", "2K", "4K"],
        choices=("|Old|+1", "K", "2K", "3K", "4K"),
    )  # fmt: skip
    ap.add_argument("--max-rounds", type=int, default=30)
    ap.add_argument("--absorb", type=int, default=0, help="absorb components below this size")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("MIXPROC_GCD_DATA", str(ROOT.parent / "shared" / "data" / "gcd")),
    )
    a = ap.parse_args(argv)
    X, y, n_old = load_set(a.set, pathlib.Path(a.data_dir))
    K = int(np.unique(y).size)
    k0_of = {"|Old|+1": n_old + 1, "K": K, "2K": 2 * K, "3K": 3 * K, "4K": 4 * K}
    rows = []
    means = np.stack([X[y == c].mean(0) for c in range(K)])  # true class means
    for seed in a.seeds:
        s = make_gcd_split(y, range(n_old), 0.5, random_state=seed)
        u = ~s.labelled_mask
        # the anchor depends on the split only, not on the prior
        anchor = SemiSupervisedKMeans(K, init=means, max_iter=50, tol=1e-10).fit(X, s.y)
        anchor = anchor.labels_
        for pname in a.priors:
            kw = dict(PRIORS[pname])
            if "nu_mult" in kw:
                kw["nu"] = kw.pop("nu_mult") * X.shape[1]
            prior = empirical_bayes_prior(X, s.y, **kw)
            lp_true = log_partition_posterior(X, y, prior)
            rows.append({
                "set": a.set, "seed": seed, "prior": pname, "merges": 0, "start": "anchor",
                "k_hat": K, "n_small": 0,
                "log_post_vs_truth": float(log_partition_posterior(X, anchor, prior) - lp_true),
                "all": float(cluster_accuracy(y[u], anchor[u], s.old_mask[u])["all"]),
                "seconds": 0.0,
            })  # fmt: skip
            print(
                f"seed {seed} {pname:12s} anchor (SS-k-means from the true means): log p - "
                f"log p(truth) {rows[-1]['log_post_vs_truth']:+9.0f} All {rows[-1]['all']:.3f}",
                flush=True,
            )
            for nn in a.merges:
                for start in a.starts:
                    t = time.perf_counter()
                    m = SemiSupervisedGMM(
                        k0_of[start], assignment="hard", prior=prior, acceptance="mh",
                        max_rounds=a.max_rounds, max_iter=50, merge_neighbors=nn,
                        random_state=seed,
                    ).fit(X, s.y)  # fmt: skip
                    acc = cluster_accuracy(y[u], m.labels_[u], s.old_mask[u])
                    row = {
                        "set": a.set, "seed": seed, "prior": pname, "nu0": float(prior.nu),
                        "kappa0": float(prior.kappa), "merges": nn, "start": start,
                        "k_hat": int(m.n_components_),
                        "n_small": int((np.bincount(m.labels_) < 10).sum()),
                        "log_post_vs_truth": float(
                            log_partition_posterior(X, m.labels_, prior) - lp_true
                        ),
                        "all": float(acc["all"]), "seconds": time.perf_counter() - t,
                    }  # fmt: skip
                    if a.absorb:
                        lab, gain = absorb_small(X, m.labels_, prior, a.absorb)
                        row["k_hat_absorbed"] = int(np.unique(lab).size)
                        row["log_post_vs_truth_absorbed"] = row["log_post_vs_truth"] + gain
                        row["all_absorbed"] = float(
                            cluster_accuracy(y[u], lab[u], s.old_mask[u])["all"]
                        )
                    rows.append(row)
                    print(
                        f"seed {seed} {pname:12s} merges={nn} K0={start:7s} K-hat {row['k_hat']:3d}"
                        f" (<10 samples: {row['n_small']}) log p - log p(truth) "
                        f"{row['log_post_vs_truth']:+9.0f} All {row['all']:.3f}",
                        flush=True,
                    )
                    if a.absorb:
                        print(
                            f"    absorbed (<{a.absorb} samples): K-hat {row['k_hat_absorbed']}"
                            f" log p - log p(truth) {row['log_post_vs_truth_absorbed']:+.0f}"
                            f" All {row['all_absorbed']:.3f}",
                            flush=True,
                        )
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(rows, f, indent=1)
    summarize(rows, K)
    return rows


def absorb_small(X, labels, prior, size):
    """Greedily merge each component smaller than ``size`` into the partner that raises the
    DP-NIW log posterior most; returns the labels and the total gain (nats)."""
    from gmm import log_partition_posterior

    def term(idx):  # one cluster's term of the log posterior
        return log_partition_posterior(X[idx], np.zeros(idx.size, dtype=int), prior)

    lab = labels.copy()
    t = {int(j): term(np.flatnonzero(lab == j)) for j in np.unique(lab)}  # cluster terms
    gain = 0.0
    for k in np.flatnonzero(np.bincount(lab) < size):
        a = np.flatnonzero(lab == k)
        if a.size == 0 or len(t) < 2:
            continue
        best = (0.0, None, None)
        for j in t:
            if j == k:
                continue
            t_ab = term(np.r_[a, np.flatnonzero(lab == j)])
            g = t_ab - t[k] - t[j]
            if g > best[0]:
                best = (g, j, t_ab)
        g, j, t_ab = best
        if j is not None:
            lab[a] = j
            t[j] = t_ab
            del t[k]
            gain += g
    return lab, gain


def summarize(rows, K):
    """Per (prior, merges): K-hat range, K-hat of each seed's most probable partition."""
    print(f"\n| prior | merges | K-hat range (all starts, seeds) | K-hat within 10 % of {K} "
          "| K-hat of the most probable partition, per seed | log p - log p(truth) range "
          "| anchor: log p - log p(truth) | All (mean) | anchor All (mean) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["prior"], r["merges"]) for r in rows if r["start"] != "anchor"})
    for p, nn in keys:
        rs = [r for r in rows if r["prior"] == p and r["merges"] == nn and r["start"] != "anchor"]
        an = [r for r in rows if r["prior"] == p and r["start"] == "anchor"]
        an_lp = [r["log_post_vs_truth"] for r in an]
        an_txt = f"{min(an_lp):+.0f} to {max(an_lp):+.0f}" if an else "-"
        an_all = f"{np.mean([r['all'] for r in an]):.3f}" if an else "-"
        ks = [r["k_hat"] for r in rs]
        lps = [r["log_post_vs_truth"] for r in rs]
        best = []
        for seed in sorted({r["seed"] for r in rs}):
            b = max((r for r in rs if r["seed"] == seed), key=lambda r: r["log_post_vs_truth"])
            best.append(str(b["k_hat"]))
        within = sum(abs(k - K) <= 0.1 * K for k in ks)
        print(
            f"| {p} | {nn} | {min(ks)}-{max(ks)} | {within}/{len(ks)} | {', '.join(best)} "
            f"| {min(lps):+.0f} to {max(lps):+.0f} | {an_txt} "
            f"| {np.mean([r['all'] for r in rs]):.3f} | {an_all} |"
        )


if __name__ == "__main__":
    main()
