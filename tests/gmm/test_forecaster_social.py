"""Tests of the forecaster's sequence encoder, neighbour attention, early stopping, the
ETH/UCY neighbour loader (no future leaks) and the mixture coverage metric."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone

import gmm._forecaster as core
from gmm import KinematicGMMForecaster
from gmm.datasets import load_eth_ucy
from gmm.metrics import calibration_coverage, mixture_coverage
from mixtures.base import x64_scope

H, T, M = 6, 8, 3


def _avoidance(n, seed):
    """Agents walking along +x at 1 m/s (dt 0.4) that swerve away from the side of a
    neighbour standing ahead: without the neighbour the future is a 50/50 fork."""
    rng = np.random.default_rng(seed)
    t_h = np.arange(-H + 1, 1)[:, None] * 0.4
    t_f = np.arange(1, T + 1)[:, None] * 0.4
    side = rng.choice([-1.0, 1.0], n)  # the neighbour's side
    hist = np.stack([np.c_[t_h[:, 0], np.zeros(H)] for _ in range(n)])
    hist += 0.01 * rng.standard_normal(hist.shape)
    fut = np.stack([np.c_[t_f[:, 0], -s * 0.25 * t_f[:, 0] ** 2] for s in side])
    fut += 0.01 * rng.standard_normal(fut.shape)
    nb = np.zeros((n, M, H, 2))
    nb[:, 0] = np.array([2.0, 0.0]) + np.c_[np.zeros(n), 0.8 * side][:, None]
    nb[:, 1] = np.array([-6.0, 5.0]) + rng.standard_normal((n, 1, 2))  # a far bystander
    mask = np.zeros((n, M), bool)
    mask[:, :2] = True
    nb[:, 2] = 1e3 * rng.standard_normal((n, H, 2))  # masked garbage
    return hist, fut, nb, mask


@pytest.fixture(scope="module")
def social_fit():
    hist, fut, nb, mask = _avoidance(300, 0)
    kw = dict(
        n_modes=2, formulation="acceleration", dt=0.4, encoder="gru", embed_dim=16,
        hidden_sizes=(32,), epochs=40, batch_size=50, learning_rate=1e-2, min_std=0.02,
        random_state=0,
    )  # fmt: skip
    with_nb = KinematicGMMForecaster(social="attention", **kw).fit(
        hist, fut, neighbours=nb, neighbour_mask=mask
    )
    without = KinematicGMMForecaster(**kw).fit(hist, fut)
    return with_nb, without


def test_attention_is_permutation_invariant_and_masked():
    rng = np.random.default_rng(0)
    D, A, F = 8, 5, 7
    p = {
        "embed": (jnp.asarray(rng.normal(size=(F, D))), jnp.asarray(rng.normal(size=D))),
        "q": jnp.asarray(rng.normal(size=(A, D))),
        "k": jnp.asarray(rng.normal(size=(D, D))),
        "v": jnp.asarray(rng.normal(size=(D, D))),
    }
    agent, nb = rng.normal(size=A), rng.normal(size=(6, F))
    mask = np.array([True, True, False, True, False, True])
    with x64_scope():
        out = np.asarray(core.social_attention(p, agent, nb, mask))
        perm = rng.permutation(6)
        np.testing.assert_allclose(
            core.social_attention(p, agent, nb[perm], mask[perm]), out, rtol=1e-12
        )
        junk = nb.copy()
        junk[~mask] = 1e6 * rng.normal(size=junk[~mask].shape)
        np.testing.assert_allclose(core.social_attention(p, agent, junk, mask), out, rtol=1e-12)

        # closed form: softmax over the present neighbours of q.k / sqrt(D), times v
        def ln(x):
            x = x - x.mean(-1, keepdims=True)
            return x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6)

        e = ln(np.asarray(jax.nn.gelu(nb[mask] @ p["embed"][0] + p["embed"][1])))
        q, k, v = ln(agent) @ p["q"], e @ p["k"], e @ p["v"]
        s = k @ q / np.sqrt(D)
        a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        np.testing.assert_allclose(out, a @ v, rtol=1e-10)
        # nobody around: a zero social code, not a NaN
        none = np.asarray(core.social_attention(p, agent, nb, np.zeros(6, bool)))
        np.testing.assert_array_equal(none, np.zeros(D))


def test_gru_matches_a_numpy_reference():
    rng = np.random.default_rng(1)
    G, F, L = 4, 3, 5
    p = {k: rng.normal(size=s) for k, s in (("W", (F, 3 * G)), ("U", (G, 3 * G)), ("b", 3 * G))}
    seq = rng.normal(size=(L, F))
    h = np.zeros(G)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for x in seq:  # Cho et al. (2014), update gate z, reset gate r
        gx, gh = x @ p["W"] + p["b"], h @ p["U"]
        z, r = sig(gx[:G] + gh[:G]), sig(gx[G : 2 * G] + gh[G : 2 * G])
        h = (1 - z) * h + z * np.tanh(gx[2 * G :] + r * gh[2 * G :])
    with x64_scope():
        out = core._gru({k: jnp.asarray(v) for k, v in p.items()}, jnp.asarray(seq))
    np.testing.assert_allclose(out, h, rtol=1e-12)


def test_neighbours_resolve_the_fork(social_fit):
    with_nb, without = social_fit
    hist, fut, nb, mask = _avoidance(200, 1)

    # the most probable mode: with the neighbour it knows the side, without it is a coin flip
    def top1_fde(model, **kw):
        modes, probs = model.predict(hist, **kw)
        top = modes[np.arange(len(hist)), probs.argmax(1)]
        return np.linalg.norm(top[:, -1] - fut[:, -1], axis=-1).mean()

    fork = 2 * 0.25 * (T * 0.4) ** 2  # distance between the two branches at the last step
    assert top1_fde(with_nb, neighbours=nb, neighbour_mask=mask) < 0.1 * fork
    assert top1_fde(without) > 0.3 * fork
    assert with_nb.score(hist, fut, neighbours=nb, neighbour_mask=mask) > without.score(hist, fut)
    # the model output depends neither on the slot order nor on masked slots
    perm = np.random.default_rng(2).permutation(M)
    junk = nb.copy()
    junk[:, 2] = -nb[:, 2]
    ref = with_nb.predict_gaussians(hist, neighbours=nb, neighbour_mask=mask)
    for n2, m2 in ((nb[:, perm], mask[:, perm]), (junk, mask)):
        for a, b in zip(with_nb.predict_gaussians(hist, neighbours=n2, neighbour_mask=m2), ref):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # pickling keeps the fitted model
    back = pickle.loads(pickle.dumps(with_nb))
    np.testing.assert_array_equal(
        back.predict(hist, neighbours=nb, neighbour_mask=mask)[0],
        with_nb.predict(hist, neighbours=nb, neighbour_mask=mask)[0],
    )


def test_refit_with_social_encoder_compiles_nothing(social_fit):
    with_nb, _ = social_fit
    hist, fut, nb, mask = _avoidance(300, 3)
    before = core._train_steps._cache_size(), core._forward_jit._cache_size()
    for n, kw in ((37, {}), (123, {"learning_rate_schedule": "cosine", "epochs": 3})):
        f = clone(with_nb).set_params(**kw)
        f.fit(hist[:n], fut[:n], neighbours=nb[:n], neighbour_mask=mask[:n])
        assert np.isfinite(f.loss_curve_).all()
    assert (core._train_steps._cache_size(), core._forward_jit._cache_size()) == before


def test_early_stopping_keeps_the_best_validation_epoch():
    hist, fut, nb, mask = _avoidance(200, 4)
    f = KinematicGMMForecaster(
        n_modes=2, formulation="acceleration", dt=0.4, hidden_sizes=(16,), epochs=6,
        batch_size=50, validation_fraction=0.25, random_state=0,
    ).fit(hist, fut)  # fmt: skip
    v = f.validation_losses_
    assert v.shape == (6,) and np.isfinite(v).all()
    assert f.best_epoch_ == int(np.argmin(v)) + 1
    # the kept parameters are those of the best epoch: refit for exactly that many epochs
    g = clone(f).set_params(epochs=f.best_epoch_).fit(hist, fut)
    np.testing.assert_allclose(g.validation_losses_[-1], v.min(), rtol=1e-10)
    for a, b in zip(jax.tree_util.tree_leaves(g.params_), jax.tree_util.tree_leaves(f.params_)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="validation_fraction"):
        clone(f).set_params(validation_fraction=0.001).fit(hist, fut)


def test_neighbour_input_errors(social_fit):
    with_nb, without = social_fit
    hist, fut, nb, mask = _avoidance(10, 5)
    with pytest.raises(ValueError, match="needs the neighbours"):
        with_nb.predict(hist)
    with pytest.raises(ValueError, match="social=None ignores them"):
        without.predict(hist, neighbours=nb, neighbour_mask=mask)
    with pytest.raises(ValueError, match="slots but the model was fitted with 3"):
        with_nb.predict(hist, neighbours=nb[:, :2], neighbour_mask=mask[:, :2])
    with pytest.raises(ValueError, match="neighbour_mask must have shape"):
        with_nb.predict(hist, neighbours=nb, neighbour_mask=mask[:, :1])
    bad = nb.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        with_nb.predict(hist, neighbours=bad, neighbour_mask=mask)
    bad[0, 0] = 0.0
    bad[0, 2, 0, 0] = np.nan  # a NaN in a masked slot is ignored
    with_nb.predict(hist, neighbours=bad, neighbour_mask=mask)


def _scene(rng, n_peds=6, n_steps=40):
    rows = []
    for p in range(n_peds):
        start = rng.integers(0, 10)
        xy = np.cumsum(rng.normal(0, 0.3, (n_steps - start, 2)), 0) + rng.normal(0, 3, 2)
        rows += [(10 * (start + s), p, *xy[s]) for s in range(len(xy))]
    return np.array(rows)


def test_no_input_uses_the_future(tmp_path):
    """Changing every position after a window's last observed frame (the agent's and
    everyone else's) leaves that window's history, neighbours and every model input
    unchanged."""
    raw = _scene(np.random.default_rng(0))
    np.savetxt(tmp_path / "toy.txt", raw)
    d = load_eth_ucy(tmp_path, "toy", history=H, horizon=T, max_neighbours=4)
    assert d.neighbours.shape == (len(d.history), 4, H, 2) and d.neighbour_mask.any()
    f = KinematicGMMForecaster(
        n_modes=2,
        formulation="acceleration",
        dt=0.4,
        encoder="gru",
        social="attention",
        embed_dim=8,
        hidden_sizes=(8,),
        epochs=1,
        random_state=0,
    ).fit(d.history, d.future, neighbours=d.neighbours, neighbour_mask=d.neighbour_mask)
    # the frame of each window's last observed step, from the raw rows of its pedestrian
    frames = {}
    for i, (pid, last) in enumerate(zip(d.labels, d.history[:, -1])):
        rows = raw[(raw[:, 1] == pid) & np.all(np.isclose(raw[:, 2:], last), axis=1)]
        frames[i] = rows[0, 0]
    for i in (0, len(d.history) // 2, len(d.history) - 1):
        moved = raw.copy()
        later = moved[:, 0] > frames[i]
        moved[later, 2:] += np.random.default_rng(i).normal(0, 5, (later.sum(), 2))
        np.savetxt(tmp_path / "toy.txt", moved)
        e = load_eth_ucy(tmp_path, "toy", history=H, horizon=T, max_neighbours=4)
        assert not np.allclose(e.future[i], d.future[i])  # the future did change
        np.testing.assert_array_equal(e.history[i], d.history[i])
        np.testing.assert_array_equal(e.neighbours[i], d.neighbours[i])
        np.testing.assert_array_equal(e.neighbour_mask[i], d.neighbour_mask[i])
        a = f._inputs(d.history[i : i + 1], d.neighbours[i : i + 1], d.neighbour_mask[i : i + 1])
        b = f._inputs(e.history[i : i + 1], e.neighbours[i : i + 1], e.neighbour_mask[i : i + 1])
        for u, v in zip(a[:3], b[:3]):
            np.testing.assert_array_equal(u, v)
        assert a[3].keys() == b[3].keys() == {"x", "speed", "seq", "nb", "nb_mask"}
        for k in a[3]:
            np.testing.assert_array_equal(a[3][k], b[3][k])


def test_neighbour_loader_picks_the_nearest(tmp_path):
    rows = [(10 * s, 0, s, 0.0) for s in range(5)]  # the agent
    rows += [(10 * s, 1, s, 3.0) for s in range(2, 5)]  # arrives at step 2, 3 m away
    rows += [(10 * s, 2, s, -1.0) for s in range(5)]  # 1 m away
    rows += [(10 * s, 3, 50.0, 50.0) for s in range(3)]  # gone before step 4
    np.savetxt(tmp_path / "toy.txt", np.array(rows, float))
    d = load_eth_ucy(tmp_path, "toy", history=4, horizon=1, max_neighbours=3)
    i = int(np.flatnonzero(d.labels == 0)[0])  # the agent's only window: steps 0..3, 4
    np.testing.assert_array_equal(d.neighbour_mask[i], [True, True, False])
    np.testing.assert_allclose(d.neighbours[i, 0], [[0, -1], [1, -1], [2, -1], [3, -1]])
    # not yet seen at steps 0, 1: its first observed position is repeated
    np.testing.assert_allclose(d.neighbours[i, 1], [[2, 3], [2, 3], [2, 3], [3, 3]])
    np.testing.assert_array_equal(d.neighbours[i, 2], 0.0)
    with pytest.raises(ValueError, match="max_neighbours"):
        load_eth_ucy(tmp_path, "toy", max_neighbours=-1)


def test_mixture_coverage_is_nominal_for_draws_of_the_mixture():
    rng = np.random.default_rng(0)
    N, K, Tn = 3000, 2, 2
    w = rng.dirichlet([1, 1], N)
    mu = rng.normal(0, 2, (N, K, Tn, 2))
    A = rng.normal(size=(N, K, Tn, 2, 2))
    cov = A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(2)
    comp = (rng.random(N) > w[:, 0]).astype(int)
    L = np.linalg.cholesky(cov[np.arange(N), comp])
    y = mu[np.arange(N), comp] + np.einsum("ntij,ntj->nti", L, rng.standard_normal((N, Tn, 2)))
    r = mixture_coverage(y, w, mu, cov, n_samples=400, random_state=1)
    # 6000 (agent, step) pairs: binomial SE <= 0.0065, plus the finite-sample quantile bias
    np.testing.assert_allclose(r.coverage, r.expected, atol=0.03)
    # a single Gaussian: the highest-density region is the ellipse
    one = mixture_coverage(y[:, :1], np.ones((N, 1)), mu[:, :1, :1], cov[:, :1, :1],
                           n_samples=2000)  # fmt: skip
    ell = calibration_coverage(y[:, :1], mu[:, :1, :1], cov[:, :1, :1])
    np.testing.assert_allclose(one.coverage, ell.coverage, atol=0.02)
    # an over-wide forecast over-covers
    wide = mixture_coverage(y, w, mu, 4 * cov, n_samples=400)
    assert np.all(wide.coverage > r.expected + 0.1)


def test_mirror_of_the_inputs_is_the_input_of_the_mirrored_world(social_fit):
    with_nb, _ = social_fit
    hist, fut, nb, mask = _avoidance(20, 6)
    hist = hist + np.array([0.3, -1.2])  # off the origin and not along +x
    hist[:, :, 1] += 0.2 * np.arange(H) * 0.4
    flip = np.array([1.0, -1.0])
    p0, R, _, inp = with_nb._inputs(hist, np.where(mask[..., None, None], nb, 0.0), mask)
    y = np.einsum("nji,ntj->nti", R, fut - p0[:, None])
    m_inp, m_y = core._mirror(inp, y)
    q0, Q, _, ref = with_nb._inputs(
        hist * flip, np.where(mask[..., None, None], nb * flip, 0.0), mask
    )
    np.testing.assert_allclose(
        m_y, np.einsum("nji,ntj->nti", Q, fut * flip - q0[:, None]), atol=1e-12
    )
    assert set(m_inp) == set(ref)
    for k in ref:
        np.testing.assert_allclose(m_inp[k], ref[k], atol=1e-12, err_msg=k)


def test_mirror_augmentation_generalises_to_the_unseen_side():
    """Trained only with the neighbour on one side, the mirrored windows teach the other."""
    hist, fut, nb, mask = _avoidance(400, 7)
    one_side = nb[:, 0, -1, 1] > 0  # neighbour at y = +0.8: the walker swerves to -y
    kw = dict(
        n_modes=2, formulation="acceleration", dt=0.4, encoder="gru", embed_dim=16,
        hidden_sizes=(32,), epochs=40, batch_size=50, learning_rate=1e-2, min_std=0.02,
        social="attention", random_state=0,
    )  # fmt: skip
    data = (hist[one_side], fut[one_side])
    nbs = dict(neighbours=nb[one_side], neighbour_mask=mask[one_side])
    test = ~one_side  # the neighbour on the other side: the truth swerves to +y
    nbt = dict(neighbours=nb[test], neighbour_mask=mask[test])
    err = {}
    for aug in (None, "mirror"):
        f = KinematicGMMForecaster(augment=aug, **kw).fit(*data, **nbs)
        counts = f.mode_usage_ * one_side.sum()  # over the caller's windows, not the mirrors
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
        modes, probs = f.predict(hist[test], **nbt)
        top = modes[np.arange(test.sum()), probs.argmax(1)]
        err[aug] = np.linalg.norm(top[:, -1] - fut[test, -1], axis=-1).mean()
    # the swerve ends 0.25 * 3.2**2 = 2.6 m to the side: the unaugmented model swerves the
    # wrong way (about 5 m off); the augmented one lands on the truth within noise
    assert err[None] > 2.0, err
    assert err["mirror"] < 0.3, err


def _scale_world(hist, fut, nb, s):
    """World coordinates of window i scaled by ``s[i]`` about the agent's current position."""
    c = hist[:, -1]
    sc = s[:, None, None]
    return (
        c[:, None] + sc * (hist - c[:, None]),
        c[:, None] + sc * (fut - c[:, None]),
        c[:, None, None] + sc[..., None] * (nb - c[:, None, None]),
    )


def test_scale_of_the_inputs_is_the_input_of_the_scaled_world(social_fit):
    """Scaling agent-frame inputs by s equals computing them from the world scaled by s
    about each agent's current position (history, future and neighbours)."""
    with_nb, _ = social_fit
    hist, fut, nb, mask = _avoidance(20, 8)
    hist = hist + np.array([0.3, -1.2])
    hist[:, :, 1] += 0.2 * np.arange(H) * 0.4
    nb = np.where(mask[..., None, None], nb, 0.0)
    s = np.exp(np.random.default_rng(0).uniform(np.log(0.5), np.log(2.0), len(hist)))
    p0, R, _, inp = with_nb._inputs(hist, nb, mask)
    y = np.einsum("nji,ntj->nti", R, fut - p0[:, None])
    s_inp, s_y = core._scale(inp, y, s)
    hist_s, fut_s, nb_s = _scale_world(hist, fut, nb, s)
    nb_s = np.where(mask[..., None, None], nb_s, 0.0)
    q0, Q, _, ref = with_nb._inputs(hist_s, nb_s, mask)
    np.testing.assert_allclose(Q, R, atol=1e-12)  # the heading does not change
    np.testing.assert_allclose(s_y, np.einsum("nji,ntj->nti", Q, fut_s - q0[:, None]), atol=1e-12)
    assert set(s_inp) == set(ref)
    for k in ref:
        np.testing.assert_allclose(s_inp[k], ref[k], atol=1e-12, err_msg=k)


def _scaled_avoidance(n, seed, scales):
    """``_avoidance`` with each window's world scaled about the agent's current position
    by a factor drawn from ``scales``: faster walkers, farther neighbours, wider swerves."""
    hist, fut, nb, mask = _avoidance(n, seed)
    s = np.random.default_rng(seed + 100).uniform(*scales, n)
    return (*_scale_world(hist, fut, nb, s), mask)


def test_scale_augmentation_reaches_unseen_speeds():
    """Trained on walkers at 0.9-1.1 m/s only, the scaled copies teach 1.35-1.45 m/s: the
    neighbour stands farther ahead and the swerve is wider than anything in training."""
    hist, fut, nb, mask = _scaled_avoidance(300, 0, (0.9, 1.1))
    th, tf, tnb, tmask = _scaled_avoidance(100, 1, (1.35, 1.45))
    kw = dict(
        n_modes=2, formulation="acceleration", dt=0.4, encoder="gru", embed_dim=16,
        hidden_sizes=(32,), epochs=40, batch_size=50, learning_rate=1e-2, min_std=0.02,
        social="attention", random_state=0,
    )  # fmt: skip
    err = {}
    for aug in (None, "scale"):
        f = KinematicGMMForecaster(augment=aug, **kw).fit(
            hist, fut, neighbours=nb, neighbour_mask=mask
        )
        counts = f.mode_usage_ * len(hist)  # over the caller's windows, not the copies
        np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
        modes, probs = f.predict(th, neighbours=tnb, neighbour_mask=tmask)
        top = modes[np.arange(len(th)), probs.argmax(1)]
        err[aug] = np.linalg.norm(top[:, -1] - tf[:, -1], axis=-1).mean()
    assert err["scale"] < 0.15 and err["scale"] < 0.5 * err[None], err


@pytest.mark.parametrize("bad", [(0.0, 1.5), (1.5, 1.0), (1.0,), (np.nan, 2.0), ("a", 2)])
def test_bad_scale_range_is_refused(bad):
    hist, fut, _, _ = _avoidance(40, 0)
    f = KinematicGMMForecaster(augment="scale", scale_range=bad, epochs=1, dt=0.4)
    with pytest.raises(ValueError, match="scale_range must be two finite factors"):
        f.fit(hist, fut)
