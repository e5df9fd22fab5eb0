"""Offline data for the scale-mixture NNGP experiments of Lee et al. (ICLR 2022).

``make_syn_normal`` / ``make_syn_t`` reproduce the paper's synthetic regression sets
exactly (the generators of its official code); ``load_digits_corrupted`` is the MNIST-C /
OOD protocol in miniature on scikit-learn's 8x8 digits.

References
----------
H. Lee, E. Yun, H. Yang, J. Lee, "Scale Mixtures of Neural Network Gaussian Processes",
ICLR 2022.

N. Mu, J. Gilmer, "MNIST-C: A Robustness Benchmark for Computer Vision", 2019.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

__all__ = [
    "CORRUPTIONS",
    "corrupt_images",
    "load_digits_corrupted",
    "make_syn_normal",
    "make_syn_t",
    "split_80_10_10",
]

CORRUPTIONS = ("identity", "shot_noise", "impulse_noise", "spatter", "glass_blur", "zigzag")


def _rbf(x):
    return np.exp(-0.5 * (x[:, None, 0] - x[None, :, 0]) ** 2)


def make_syn_normal():
    """Synthetic set A (syn-normal): a GP draw plus Gaussian noise, 100 points.

    ``RandomState(829)``; ``x = linspace(-50, 50, 100)``; RBF kernel; ``y = mvn(0, K) +
    0.2 N(0, 1)``. Reference (numpy 2.x): ``y[:4] = [-0.1189, -0.4526, 1.0690, 1.6358]``.

    Returns
    -------
    X : ndarray of shape (100, 1)
    y : ndarray of shape (100,)
    """
    rs = np.random.RandomState(829)
    x = np.linspace(-50, 50, 100)[:, None]
    y = rs.multivariate_normal(np.zeros(100), _rbf(x)) + 0.2 * rs.standard_normal(100)
    return x, y


def make_syn_t():
    """Synthetic set B (syn-t): a GP draw plus Cauchy noise, 300 points.

    ``RandomState(761)``; ``x = linspace(-150, 150, 300)``; ``y = mvn(0, K) +
    0.8 t_1``. Reference: ``y[:4] = [-1.4983, 76.0825, -3.3540, 10.5375]``.
    """
    rs = np.random.RandomState(761)
    x = np.linspace(-150, 150, 300)[:, None]
    y = rs.multivariate_normal(np.zeros(300), _rbf(x)) + 0.8 * rs.standard_t(df=1, size=300)
    return x, y


def split_80_10_10(X, y, seed: int = 0):
    """The paper's protocol: permute with RandomState(10), 80/10/10 (floors, test gets the
    rest), re-permute train+valid with ``seed``; standardise x with training statistics.

    Returns
    -------
    (X_train, y_train), (X_valid, y_valid), (X_test, y_test)
    """
    n = len(y)
    perm = np.random.RandomState(10).permutation(n)
    n_tr, n_va = int(0.8 * n), int(0.1 * n)
    trva, te = perm[: n_tr + n_va], perm[n_tr + n_va :]
    trva = np.random.RandomState(seed).permutation(trva)
    tr, va = trva[:n_tr], trva[n_tr:]
    mu, sd = X[tr].mean(0), X[tr].std(0)
    sd = np.where(sd > 0, sd, 1.0)

    def f(i):
        return (X[i] - mu) / sd, y[i]

    return f(tr), f(va), f(te)


def corrupt_images(images, corruption: str, severity: float = 1.0, seed: int = 0):
    """Simulated MNIST-C corruptions on images in [0, 1] of shape (n, 8, 8).

    ``shot_noise``: Poisson(x lam)/lam; ``impulse_noise``: salt-and-pepper on a fraction of
    pixels; ``spatter``: occluding blobs; ``glass_blur``: local pixel swaps plus a blur;
    ``zigzag``: a drawn polyline. ``severity`` in (0, 1] scales the strength.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}; got {corruption!r}.")
    rs = np.random.RandomState(seed)
    x = np.array(images, dtype=np.float64)
    n, h, w = x.shape
    if corruption == "shot_noise":
        lam = 60.0 / (1 + 9 * severity)
        x = rs.poisson(x * lam) / lam
    elif corruption == "impulse_noise":
        mask = rs.rand(*x.shape) < 0.2 * severity
        x[mask] = rs.randint(0, 2, mask.sum())
    elif corruption == "spatter":
        for i in range(n):
            for _ in range(int(1 + 3 * severity)):
                cy, cx = rs.randint(0, h), rs.randint(0, w)
                yy, xx = np.ogrid[:h, :w]
                x[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= 1.5] = rs.choice([0.0, 1.0])
    elif corruption == "glass_blur":
        for i in range(n):
            for _ in range(int(10 * severity)):
                a, b = rs.randint(0, h - 1), rs.randint(0, w - 1)
                x[i, a, b], x[i, a + 1, b + 1] = x[i, a + 1, b + 1], x[i, a, b]
        pad = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
        x = sum(pad[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0
    elif corruption == "zigzag":
        for i in range(n):
            pts = rs.randint(0, h, size=(3, 2))
            for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
                for t in np.linspace(0, 1, 2 * h):
                    x[i, int(round(y0 + t * (y1 - y0))), int(round(x0 + t * (x1 - x0)))] = severity
    return np.clip(x, 0.0, 1.0)


def load_digits_corrupted(
    corruption: str = "identity",
    *,
    n_train: int = 1000,
    held_out_classes=(),
    severity: float = 1.0,
    seed: int = 0,
):
    """Digits with a corrupted test split and optional held-out classes (OOD protocol).

    Pixels are scaled to [0, 1] and then normalised as (x - 0.5) / 0.5, as the paper's
    code does for the MNIST family.
    Training keeps all ten class labels in ``classes`` but drops ``held_out_classes``;
    the test split is the rest of the data, corrupted.

    Returns
    -------
    X_train, y_train, X_test, y_test : ndarrays, X of shape (n, 64)
    """
    digits = load_digits()
    images = digits.images / 16.0
    y = digits.target
    perm = np.random.RandomState(seed).permutation(len(y))
    tr, te = perm[:n_train], perm[n_train:]
    keep = ~np.isin(y[tr], list(held_out_classes))
    tr = tr[keep]
    x_te = (
        corrupt_images(images[te], corruption, severity, seed)
        if corruption != "identity"
        else images[te]
    )

    def norm(a):
        return ((a - 0.5) / 0.5).reshape(len(a), -1)

    return norm(images[tr]), y[tr], norm(x_te), y[te]
