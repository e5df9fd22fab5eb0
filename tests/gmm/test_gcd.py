"""GPC M-step losses against naive NumPy loops; the GeneralizedCategoryDiscovery shell."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmm._gcd as gcd_core
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
    # score: the mixture's mean log density of the embedding (GridSearchCV needs a score)
    assert m.score(X[:30]) == pytest.approx(float(m.gmm_.score_samples(Z[:30]).mean()), rel=1e-12)


def _two_feature_blobs():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.5, (60, 2)) for c in ([0, 0], [4, 0], [0, 4])])
    yt = np.repeat(np.arange(3), 60)
    return X, np.where((yt < 2) & (rng.random(180) < 0.5), yt, -1)


def test_normalise_has_finite_gradient_at_the_origin():
    with x64_scope():
        z = jnp.array([3.0, -4.0])
        np.testing.assert_allclose(gcd_core._normalise(z), [0.6, -0.8], rtol=1e-15)
        # d(z/|z|)/dz = (I - u u^T) / |z|
        u = np.array([0.6, -0.8])
        jac = jax.jacobian(gcd_core._normalise)(z)
        np.testing.assert_allclose(jac, (np.eye(2) - np.outer(u, u)) / 5.0, rtol=1e-14)
        # the origin maps to the origin with a zero (not 0/0 = NaN) Jacobian
        assert np.all(np.asarray(gcd_core._normalise(jnp.zeros(2))) == 0.0)
        assert np.all(np.asarray(jax.jacobian(gcd_core._normalise)(jnp.zeros(2))) == 0.0)


def test_two_features_with_feature_dropout_train():
    """With 2 features, dropout (p = 0.1) removes both features of about 1 % of the views;
    at initialisation their pre-normalisation embedding is exactly zero, where the gradient
    of the norm was 0/0. The head's parameters turned NaN and the first E-step reported the
    model's own NaN embedding as "Input X contains NaN"."""
    X, y = _two_feature_blobs()
    m = GeneralizedCategoryDiscovery(
        n_epochs=2, steps_per_epoch=3, hidden_dim=16, batch_size=64, random_state=0
    ).fit(X, y)
    assert all(np.isfinite(v).all() for v in m.head_params_.values())
    assert np.isfinite(m.history_["loss"]).all()
    np.testing.assert_array_equal(m.labels_[y >= 0], y[y >= 0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": -1.0}, "'learning_rate' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"batch_size": 1}, "'batch_size' parameter"),
        ({"temperature_s": 0.0}, "'temperature_s' parameter"),
        ({"temperature_u": np.inf}, "'temperature_u' parameter"),
        ({"drop_prob": 1.0}, "'drop_prob' parameter"),
        ({"sup_weight": 1.5}, "'sup_weight' parameter"),
        ({"n_epochs": True}, "not a bool"),
        ({"gmm_params": [("max_iter", 3)]}, "'gmm_params' parameter"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_invalid_parameters_raise_clear_errors(kwargs, match):
    X, y = _two_feature_blobs()
    with pytest.raises(ValueError, match=match):
        GeneralizedCategoryDiscovery(**kwargs).fit(X, y)


def test_numpy_int_seed_and_generator_are_reproducible():
    X, y = _two_feature_blobs()
    kw = dict(n_epochs=1, steps_per_epoch=3, hidden_dim=16, batch_size=32)
    a = GeneralizedCategoryDiscovery(random_state=0, **kw).fit(X, y)
    b = GeneralizedCategoryDiscovery(random_state=np.int64(0), **kw).fit(X, y)
    assert a.history_["loss"] == b.history_["loss"]
    np.testing.assert_array_equal(a.labels_, b.labels_)
    c, d = (
        GeneralizedCategoryDiscovery(random_state=np.random.default_rng(7), **kw).fit(X, y)
        for _ in range(2)
    )
    assert c.history_["loss"] == d.history_["loss"]
    np.testing.assert_array_equal(c.transform(X), d.transform(X))


def test_refit_with_other_hyperparameters_compiles_nothing():
    """Continuous hyperparameters (learning rate included) are traced, not static."""
    X, y = _two_feature_blobs()
    kw = dict(n_epochs=1, steps_per_epoch=2, hidden_dim=16, batch_size=32, random_state=0)
    GeneralizedCategoryDiscovery(**kw).fit(X, y)
    before = gcd_core._train_step._cache_size()
    GeneralizedCategoryDiscovery(learning_rate=5e-3, temperature_s=0.1, **kw).fit(X, y)
    assert gcd_core._train_step._cache_size() == before


def test_numerical_failure_is_reported_as_the_models(monkeypatch):
    """A non-finite embedding is the model's failure: the message must not blame X."""
    X, y = _two_feature_blobs()
    monkeypatch.setattr(gcd_core, "_embed", lambda params, X: jnp.full((X.shape[0], 2), jnp.nan))
    with pytest.raises(ValueError, match="embedding .*numerical failure of the model") as err:
        GeneralizedCategoryDiscovery(
            n_epochs=2, steps_per_epoch=1, hidden_dim=16, batch_size=32, random_state=0
        ).fit(X, y)
    assert "Input X contains NaN" not in str(err.value)
