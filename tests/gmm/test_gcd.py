"""Contrastive / prototypical losses of the GPC M-step against naive NumPy loops."""

import jax.numpy as jnp
import numpy as np
import pytest

from gmm import GeneralizedCategoryDiscovery, cluster_accuracy
from gmm._gcd import concentration, info_nce_loss, prototype_loss, supcon_loss
from mixtures.base import x64_scope


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture
def views():
    rng = np.random.default_rng(0)
    return _unit(rng.normal(size=(6, 4))), _unit(rng.normal(size=(6, 4)))


def _naive_info_nce(z1, z2, tau):
    z = np.concatenate([z1, z2])
    n, b = len(z), len(z1)
    tot = 0.0
    for i in range(n):
        pos = (i + b) % n
        den = sum(np.exp(z[i] @ z[j] / tau) for j in range(n) if j != i)
        tot -= np.log(np.exp(z[i] @ z[pos] / tau) / den)
    return tot / n


def _naive_supcon(z1, z2, lab, tau):
    z = np.concatenate([z1, z2])
    lab = np.concatenate([lab, lab])
    vals = []
    for i in range(len(z)):
        if lab[i] < 0:
            continue
        others = [j for j in range(len(z)) if j != i and lab[j] >= 0]
        pos = [j for j in others if lab[j] == lab[i]]
        if not pos:
            continue
        den = sum(np.exp(z[i] @ z[j] / tau) for j in others)
        vals.append(-np.mean([np.log(np.exp(z[i] @ z[p] / tau) / den) for p in pos]))
    return np.mean(vals)


@pytest.mark.parametrize("tau", [1.0, 0.07])
def test_losses_match_naive_loops(views, tau):
    z1, z2 = views
    lab = np.array([0, 1, 0, -1, -1, 2])
    with x64_scope():
        got_u = float(info_nce_loss(jnp.asarray(z1), jnp.asarray(z2), tau))
        got_s = float(supcon_loss(jnp.asarray(z1), jnp.asarray(z2), jnp.asarray(lab), tau))
    # float64 on both sides, O(10) terms: 1e-10 relative
    assert got_u == pytest.approx(_naive_info_nce(z1, z2, tau), rel=1e-10)
    assert got_s == pytest.approx(_naive_supcon(z1, z2, lab, tau), rel=1e-10)


def test_prototype_loss_matches_naive(views):
    z1, z2 = views
    protos = _unit(np.random.default_rng(1).normal(size=(4, 4)))
    phi = np.array([0.5, 1.0, 2.0, 1.0])
    mask = np.array([True, True, True, False])  # last prototype is padding
    t = np.array([0, 1, 2, 0, 1, 2])

    def ce(z):
        lg = z @ protos[:3].T / phi[:3]
        lp = lg - np.log(np.exp(lg).sum(1, keepdims=True))
        return -lp[np.arange(len(z)), t].mean()

    with x64_scope():
        got = float(prototype_loss(*map(jnp.asarray, (z1, z2, t, protos, phi, mask))))
    assert got == pytest.approx(0.5 * ce(z1) + 0.5 * ce(z2), rel=1e-10)


def test_concentration_rules():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(60, 2))
    labels = np.r_[np.zeros(30, int), np.ones(29, int), 2]
    centres = np.stack([Z[labels == j].mean(0) for j in range(3)])
    phi = concentration(Z, labels, centres, temperature=1.0)
    assert phi.mean() == pytest.approx(1.0)  # rescaled to mean tau
    raw0 = np.linalg.norm(Z[:30] - centres[0], axis=1).mean() / np.log(40)
    raw1 = np.linalg.norm(Z[30:59] - centres[1], axis=1).mean() / np.log(39)
    # singleton cluster 2 gets the max, then clipping to [P10, P90] and rescaling
    raw = np.array([raw0, raw1, max(raw0, raw1)])
    raw = np.clip(raw, np.percentile(raw, 10), np.percentile(raw, 90))
    np.testing.assert_allclose(phi, raw / raw.mean(), rtol=1e-12)


def test_gcd_fit_small():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 6))
    X = np.concatenate([rng.normal(c, 1.0, (40, 6)) for c in centres])
    yt = np.repeat(np.arange(4), 40)
    y = np.where((yt < 2) & (rng.random(160) < 0.5), yt, -1)
    m = GeneralizedCategoryDiscovery(
        4, embedding_dim=8, hidden_dim=32, n_epochs=2, steps_per_epoch=15, batch_size=64,
        gmm_params={"assignment": "hard"},  # GPC's E-step; the soft EM is tested elsewhere
        random_state=0,
    ).fit(X, y)  # fmt: skip
    Z = m.transform(X)
    assert Z.shape == (160, 8)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-10)
    np.testing.assert_array_equal(m.labels_[y >= 0], y[y >= 0])
    # well separated blobs stay separable in the learned embedding
    assert cluster_accuracy(yt, m.labels_)["all"] > 0.9
