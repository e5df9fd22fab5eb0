"""Reproduce the clustering / K-estimation half of GPC on frozen features (note, section 11).

Sets: MoCo ImageNet-50 (2500 x 128, Old = 0-24), UMAP USPS / MNIST (Old = 0-4),
scikit-learn digits (standardise -> PCA 32 -> L2, Old = 0-4). 50 % of the Old-class samples
are labelled (global draw, seed = run seed). Features of IN-50 are projected by PCA to 32
dims and re-normalised (GPC's Fig. 1 runs the E-step in a PCA space) so full covariances
stay cheap. Accuracy is GCD "v2" (one Hungarian matching) on the unlabelled samples.

Columns: SS-k-means with the true K; GCD Brent K-hat + SS-k-means; SS-GMM split/merge from
K0 in {|Old|+1, K, 2K, 3K} with acceptance "mh" and "gpc"; the full alternating method
(GeneralizedCategoryDiscovery, short schedule). Mean +- std over seeds.

Usage: ``python benchmarks/gcd_reproduce.py [--quick] [--seeds 5] [--data-dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from gmm import (
    GeneralizedCategoryDiscovery,
    SemiSupervisedGMM,
    SemiSupervisedKMeans,
    cluster_accuracy,
    estimate_n_clusters,
    make_gcd_split,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _l2(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def load_sets(data_dir: pathlib.Path, quick: bool):
    d = load_digits()
    Xd = _l2(PCA(32, random_state=0).fit_transform(StandardScaler().fit_transform(d.data)))
    sets = {"digits": (Xd, d.target.astype(int), 5)}
    f = np.load(data_dir / "moco_imagenet50.npz")
    X = _l2(PCA(32, random_state=0).fit_transform(f["X"].astype(np.float64)))
    sets["imagenet50"] = (X, f["y"].astype(int), 25)
    f = np.load(data_dir / "umap_usps.npz")
    sets["umap_usps"] = (f["X"].astype(np.float64), f["y"].astype(int), 5)
    if not quick:
        f = np.load(data_dir / "umap_mnist.npz")
        sets["umap_mnist"] = (f["X"].astype(np.float64), f["y"].astype(int), 5)
    return sets


def run_set(name, X, y, n_old, seeds, k0_factors, acceptances, max_rounds, with_gcd=True):
    K = int(np.unique(y).size)
    rows: dict[str, list] = {}

    def record(key, acc, k_hat, secs):
        rows.setdefault(key, []).append((acc["all"], acc["old"], acc["new"], k_hat, secs))

    for seed in seeds:
        s = make_gcd_split(y, range(n_old), 0.5, random_state=seed)
        u = ~s.labelled_mask

        t = time.perf_counter()
        km = SemiSupervisedKMeans(K, n_init=5, random_state=seed).fit(X, s.y)
        record("SS-k-means (true K)", cluster_accuracy(y[u], km.labels_[u], s.old_mask[u]), K,
               time.perf_counter() - t)  # fmt: skip

        t = time.perf_counter()
        sub = np.random.default_rng(seed).choice(len(X), min(len(X), 10000), replace=False)
        k_hat = estimate_n_clusters(X[sub], s.y[sub], bounds=(n_old, 4 * K), n_init=3)
        km = SemiSupervisedKMeans(k_hat, n_init=5, random_state=seed).fit(X, s.y)
        record("GCD Brent + SS-k-means", cluster_accuracy(y[u], km.labels_[u], s.old_mask[u]),
               k_hat, time.perf_counter() - t)  # fmt: skip

        for acc_rule in acceptances:
            for label, k0 in k0_factors(n_old, K):
                t = time.perf_counter()
                m = SemiSupervisedGMM(
                    k0, acceptance=acc_rule, max_rounds=max_rounds, max_iter=50,
                    random_state=seed,
                ).fit(X, s.y)  # fmt: skip
                record(f"SS-GMM {acc_rule} K0={label}",
                       cluster_accuracy(y[u], m.labels_[u], s.old_mask[u]), m.n_components_,
                       time.perf_counter() - t)  # fmt: skip
        if with_gcd:
            t = time.perf_counter()
            g = GeneralizedCategoryDiscovery(
                2 * K, hidden_dim=64, n_epochs=3, steps_per_epoch=30, batch_size=128,
                random_state=seed,
            ).fit(X, s.y)  # fmt: skip
            record("GPC alternating (K0=2K, 3 epochs)",
                   cluster_accuracy(y[u], g.labels_[u], s.old_mask[u]), g.n_components_,
                   time.perf_counter() - t)  # fmt: skip
    print(f"\n### {name}: N={len(X)}, D={X.shape[1]}, K={K}, |Old|={n_old}, seeds={list(seeds)}")
    print("| method | All | Old | New | K-hat | |K-hat-K|/K | s/run |")
    print("|---|---|---|---|---|---|---|")
    for key, vals in rows.items():
        v = np.array(vals, dtype=float)
        mu, sd = v.mean(0), v.std(0)
        kerr = np.abs(v[:, 3] - K) / K
        print(
            f"| {key} | {mu[0]:.3f} ± {sd[0]:.3f} | {mu[1]:.3f} | {mu[2]:.3f} | "
            f"{mu[3]:.1f} ± {sd[3]:.1f} | {kerr.mean():.2f} | {mu[4]:.1f} |"
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1 seed, K0 in {|Old|+1, 2K}, no MNIST")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sets", nargs="*", default=None)
    ap.add_argument("--no-gcd", action="store_true", help="skip the alternating method")
    ap.add_argument(
        "--data-dir",
        default=os.environ.get("MIXPROC_GCD_DATA", str(ROOT.parent / "shared" / "data" / "gcd")),
    )
    a = ap.parse_args(argv)
    sets = load_sets(pathlib.Path(a.data_dir), a.quick)
    if a.quick:
        seeds = range(1)

        def k0s(n_old, K):
            return [("|Old|+1", n_old + 1), ("2K", 2 * K)]
    else:
        seeds = range(a.seeds)

        def k0s(n_old, K):
            return [("|Old|+1", n_old + 1), ("K", K), ("2K", 2 * K), ("3K", 3 * K)]

    for name, (X, y, n_old) in sets.items():
        if a.sets and name not in a.sets:
            continue
        run_set(name, X, y, n_old, seeds, k0s, ("mh", "gpc"), max_rounds=10,
                with_gcd=not a.no_gcd)  # fmt: skip


if __name__ == "__main__":
    main()
