"""Demo: generalized category discovery on scikit-learn's digits (Old = 0-4)."""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ["run_demo"]


def run_demo(output_dir: pathlib.Path, verbose: int = 1) -> dict[str, float]:
    """Fit SS-k-means (true K) and the split/merge SS-GMM (K0 = 2K) on digits.

    Pipeline: standardise -> PCA 32 -> L2-normalise; 50 % of classes 0-4 labelled. Writes
    ``gcd_digits.png`` (K trajectory and a PCA view of the discovered clusters) and returns
    the v2 accuracies on the unlabelled samples and the estimated K.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from ._cluster_metrics import cluster_accuracy, make_gcd_split
    from ._kmeans import SemiSupervisedKMeans
    from ._ssgmm import SemiSupervisedGMM

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    X = PCA(32, random_state=0).fit_transform(StandardScaler().fit_transform(d.data))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = d.target
    s = make_gcd_split(y, range(5), 0.5, random_state=0)
    u = ~s.labelled_mask
    km = SemiSupervisedKMeans(10, n_init=5, random_state=0).fit(X, s.y)
    acc_km = cluster_accuracy(y[u], km.labels_[u], s.old_mask[u])
    # GPC's hard E-step, with the NIW prior calibrated on the labelled classes
    gm = SemiSupervisedGMM(
        20, assignment="hard", prior="empirical_bayes", max_rounds=10, max_iter=50,
        random_state=0,
    ).fit(X, s.y)  # fmt: skip
    acc_gm = cluster_accuracy(y[u], gm.labels_[u], s.old_mask[u])

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(gm.history_["n_components"], "o-")
    ax[0].axhline(10, ls="--", c="k", label="true K")
    ax[0].set(xlabel="split/merge round", ylabel="K", title="K trajectory (K0 = 20)")
    ax[0].legend()
    Z = PCA(2, random_state=0).fit_transform(X)
    ax[1].scatter(Z[:, 0], Z[:, 1], c=gm.labels_, s=4, cmap="tab20")
    ax[1].set(title=f"SS-GMM clusters (K-hat = {gm.n_components_})")
    fig.tight_layout()
    fig.savefig(output_dir / "gcd_digits.png", dpi=100)
    plt.close(fig)

    metrics = {
        "sskmeans_all": acc_km["all"],
        "sskmeans_old": acc_km["old"],
        "sskmeans_new": acc_km["new"],
        "ssgmm_all": acc_gm["all"],
        "ssgmm_old": acc_gm["old"],
        "ssgmm_new": acc_gm["new"],
        "ssgmm_k_hat": float(gm.n_components_),
    }
    if verbose:
        for k, v in metrics.items():
            print(f"{k:>16}: {v:.3f}")
    return metrics
