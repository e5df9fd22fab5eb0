"""``mean_output="path"``: the linear kinematic heads output each mode's mean path."""

import pickle

import jax.numpy as jnp
import numpy as np
import pytest

import gmm._forecaster as core
from gmm import KinematicGMMForecaster
from gmm._kinematics_core import rollout_single
from mixtures.base import x64_scope


@pytest.mark.parametrize("formulation", ["acceleration", "velocity"])
def test_path_controls_roll_out_to_the_path(formulation):
    """The finite-difference controls, rolled out by explicit Euler from the observed
    speed, plus the initial-velocity offset, give the constant-velocity path plus the
    displacement d = S T dt r at every step (closed form)."""
    K, T, dt, S, v0 = 3, 7, 0.4, 1.3, 0.9
    r = np.random.default_rng(0).normal(size=(K, T, 2))
    cfg = core._Config(
        n_modes=K, horizon=T, formulation=formulation, method="exact", variance="propagated",
        loss="wta", curvature=True, mean_output="path",
    )  # fmt: skip
    with x64_scope():
        hyper = {"speed_scale": jnp.asarray(S), "dt": jnp.asarray(dt)}
        u, offset = core._path_controls(jnp.asarray(r), jnp.asarray(v0), hyper, cfg)
        z0 = jnp.asarray([0.0, 0.0, 0.0, v0])
        paths = np.stack(
            [np.asarray(rollout_single(u[k], z0, dt, None, formulation)) for k in range(K)]
        )
    if offset is not None:
        paths = paths + np.asarray(offset)
    t = np.arange(1, T + 1)[:, None]
    want = t * dt * np.array([v0, 0.0]) + S * T * dt * r
    np.testing.assert_allclose(paths, want, atol=1e-12)
    assert (offset is None) == (formulation == "velocity")


def _walkers(n, seed):
    rng = np.random.default_rng(seed)
    H, T, dt = 5, 6, 0.4
    hist = np.zeros((n, H, 2))
    hist[..., 0] = np.arange(-H + 1, 1) * dt
    hist += 0.02 * rng.standard_normal(hist.shape)
    turn = rng.choice([-1.0, 1.0], n)[:, None]
    t = np.arange(1, T + 1) * dt
    fut = np.stack(
        [np.broadcast_to(t, (n, T)), 0.15 * turn * t**2], -1
    ) + 0.05 * rng.standard_normal((n, T, 2))
    return hist, fut


@pytest.fixture(scope="module")
def fitted():
    hist, fut = _walkers(300, 0)
    f = KinematicGMMForecaster(
        n_modes=2, formulation="acceleration", dt=0.4, hidden_sizes=(16,), epochs=30,
        batch_size=100, min_std=0.02, mean_output="path", random_state=0,
    ).fit(hist, fut)  # fmt: skip
    return hist, fut, f


def test_samples_match_the_predictive_moments(fitted):
    """Sampled paths (controls drawn and integrated) have the per-step means and
    covariances of the predictive mixture (Monte Carlo, 20 000
    draws: standard errors below 1 % of the spread). The modes' mean paths include
    the initial-velocity correction, which the sampler must carry too."""
    hist, _, f = fitted
    probs, means, covs = f.predict_gaussians(hist[:2])
    s = f.sample(hist[:2], n_samples=20000, random_state=1)
    mix_mean = np.einsum("nk,nkti->nti", probs, means)
    d = means - mix_mean[:, None]
    mix_cov = np.einsum("nk,nktij->ntij", probs, covs + d[..., :, None] * d[..., None, :])
    sd_mix = np.sqrt(np.einsum("ntii->nti", mix_cov))
    np.testing.assert_array_less(np.abs(s.mean(1) - mix_mean) / sd_mix, 0.04)
    emp = np.einsum("nsti,nstj->ntij", s - s.mean(1, keepdims=True), s - s.mean(1, keepdims=True))
    emp /= s.shape[1]
    # the samples integrate the control noise; the floor min_std^2 I is the density's only
    want = mix_cov - f.min_std**2 * np.eye(2)
    sd = np.sqrt(np.einsum("ntii->nti", want))
    # in units of sd_i sd_j: the Monte Carlo standard error is about 1 / sqrt(20000) = 0.007
    np.testing.assert_array_less(np.abs(emp - want) / (sd[..., :, None] * sd[..., None, :]), 0.04)


def test_path_head_learns_the_turns_and_survives_pickling(fitted):
    """The walkers turn left or right (0.15 t^2 m): the two modes find both branches
    (best-of-2 FDE far below the 0.65 m of the straight path) and pickling keeps the fit."""
    hist, fut, f = fitted
    modes, _ = f.predict(hist)
    fde = np.linalg.norm(modes[:, :, -1] - fut[:, None, -1], axis=-1).min(1).mean()
    assert fde < 0.25
    back = pickle.loads(pickle.dumps(f))
    assert back.score(hist, fut) == f.score(hist, fut)


def test_path_needs_a_linear_formulation():
    hist, fut = _walkers(20, 1)
    f = KinematicGMMForecaster(formulation="accel_steering", mean_output="path", epochs=1)
    with pytest.raises(ValueError, match="mean_output='path' needs a linear formulation"):
        f.fit(hist, fut)
