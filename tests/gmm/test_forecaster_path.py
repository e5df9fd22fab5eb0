"""``mean_output="path"`` / ``"cv_offset"``: the linear kinematic heads output each mode's
mean path (or its offset from the constant-velocity path)."""

import functools
import pickle

import jax.numpy as jnp
import numpy as np
import pytest

import gmm._forecaster as core
from gmm import KinematicGMMForecaster
from gmm._kinematics_core import rollout_single
from mixtures.base import x64_scope


@pytest.mark.parametrize("mean_output", ["path", "cv_offset", "speed_fan"])
@pytest.mark.parametrize("formulation", ["acceleration", "velocity"])
def test_path_controls_roll_out_to_the_path(formulation, mean_output):
    """The finite-difference controls, rolled out by explicit Euler from the observed
    speed, plus the initial-velocity offset, give the output path S T dt r at every step
    ("path"), the constant-velocity path plus that displacement ("cv_offset"), or mode
    k's constant-speed path at beta_k = k / (K - 1) of the speed plus it ("speed_fan"),
    in closed form."""
    K, T, dt, S, v0 = 3, 7, 0.4, 1.3, 0.9
    r = np.random.default_rng(0).normal(size=(K, T, 2))
    cfg = core._Config(
        n_modes=K, horizon=T, formulation=formulation, method="exact", variance="propagated",
        loss="wta", curvature=True, mean_output=mean_output,
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
    beta = {"path": 0.0, "cv_offset": 1.0, "speed_fan": np.array([0.0, 0.5, 1.0])[:, None, None]}
    want = S * T * dt * r + beta[mean_output] * t * dt * np.array([v0, 0.0])
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


@functools.cache
def _fit(mean_output, formulation="acceleration"):
    hist, fut = _walkers(300, 0)
    f = KinematicGMMForecaster(
        n_modes=2, formulation=formulation, dt=0.4, hidden_sizes=(16,), epochs=30,
        batch_size=100, min_std=0.02, mean_output=mean_output, random_state=0,
    ).fit(hist, fut)  # fmt: skip
    return hist, fut, f


@pytest.fixture(scope="module")
def fitted():
    return _fit("path")


@pytest.mark.parametrize(
    "formulation, mean_output",
    [("acceleration", "path"), ("acceleration", "speed_fan"), ("velocity", "speed_fan")],
)
def test_samples_match_the_predictive_moments(formulation, mean_output):
    """Sampled paths (controls drawn and integrated, then the floor ``min_std`` drawn
    independently at every step) have the per-step means and covariances of the
    predictive mixture (Monte Carlo, 20 000 draws: standard errors below 1 % of the
    spread); without the observation noise their covariance is the predictive one less
    ``min_std**2 I``. The modes' mean paths include the initial-velocity correction,
    which the sampler must carry too. The first step of the acceleration head has no
    propagated variance, so there the floor is the whole spread of a mode; the velocity
    head's first step already carries its first sampled velocity."""
    hist, _, f = _fit(mean_output, formulation)
    probs, means, covs = f.predict_gaussians(hist[:2])
    mix_mean = np.einsum("nk,nkti->nti", probs, means)
    d = means - mix_mean[:, None]
    mix_cov = np.einsum("nk,nktij->ntij", probs, covs + d[..., :, None] * d[..., None, :])
    sd_mix = np.sqrt(np.einsum("ntii->nti", mix_cov))
    for noise, want in [(True, mix_cov), (False, mix_cov - f.min_std**2 * np.eye(2))]:
        s = f.sample(hist[:2], n_samples=20000, random_state=1, observation_noise=noise)
        np.testing.assert_array_less(np.abs(s.mean(1) - mix_mean) / sd_mix, 0.04)
        c = s - s.mean(1, keepdims=True)
        emp = np.einsum("nsti,nstj->ntij", c, c) / s.shape[1]
        sd = np.sqrt(np.einsum("ntii->nti", want))
        # in units of sd_i sd_j: the Monte Carlo standard error is about 1 / sqrt(20000)
        np.testing.assert_array_less(
            np.abs(emp - want) / (sd[..., :, None] * sd[..., None, :]), 0.04
        )
    # the same draws with and without the noise differ by the floor's white noise alone
    # (Gaussian modes: no gamma scale), whose step-to-step differences have std
    # sqrt(2) min_std
    smooth = f.sample(hist[:2], n_samples=500, random_state=1, observation_noise=False)
    noisy = f.sample(hist[:2], n_samples=500, random_state=1)
    np.testing.assert_allclose(
        np.diff(noisy - smooth, axis=2).std(), np.sqrt(2) * f.min_std, rtol=0.05
    )
    with pytest.raises(TypeError, match="observation_noise must be True or False"):
        f.sample(hist[:1], observation_noise="no")


def test_path_head_learns_the_turns_and_survives_pickling(fitted):
    """The walkers turn left or right (0.15 t^2 m): the two modes find both branches
    (best-of-2 FDE far below the 0.65 m of the straight path) and pickling keeps the fit."""
    hist, fut, f = fitted
    modes, _ = f.predict(hist)
    fde = np.linalg.norm(modes[:, :, -1] - fut[:, None, -1], axis=-1).min(1).mean()
    assert fde < 0.25
    back = pickle.loads(pickle.dumps(f))
    assert back.score(hist, fut) == f.score(hist, fut)


@pytest.mark.parametrize("mean_output", ["path", "cv_offset", "speed_fan"])
def test_path_needs_a_linear_formulation(mean_output):
    hist, fut = _walkers(20, 1)
    f = KinematicGMMForecaster(formulation="accel_steering", mean_output=mean_output, epochs=1)
    with pytest.raises(ValueError, match=f"mean_output='{mean_output}' needs a linear formulation"):
        f.fit(hist, fut)


def test_path_output_has_the_position_heads_means():
    """With the same weights, ``mean_output="path"`` gives the mode means (and mode
    probabilities) of ``formulation="position"`` exactly: the parametrisation of the
    mean paths is the position head's, only the covariances are kinematic. The
    ``"cv_offset"`` means differ from them by the constant-velocity path."""
    hist, fut = _walkers(40, 2)
    f = KinematicGMMForecaster(
        n_modes=3, formulation="position", dt=0.4, hidden_sizes=(8,), epochs=2, random_state=0
    ).fit(hist, fut)
    _, _, speed, inp = f._inputs(hist)
    cfg = f._cfg(fut.shape[1], fitted=True)
    with x64_scope():
        out = {
            m: core._forward(f.params_, inp, f._hyper(), cfg._replace(**kw))
            for m, kw in {
                "position": {},
                "path": dict(formulation="acceleration", mean_output="path"),
                "cv_offset": dict(formulation="acceleration", mean_output="cv_offset"),
            }.items()
        }
    np.testing.assert_allclose(out["path"][0], out["position"][0], atol=0)
    # means to 1 micrometre: the controls are second differences, rolled out again
    np.testing.assert_allclose(out["path"][1], out["position"][1], atol=1e-6)
    t = np.arange(1, fut.shape[1] + 1)[None, None, :, None]
    cv = t * 0.4 * np.stack([speed, np.zeros_like(speed)], -1)[:, None, None]
    np.testing.assert_allclose(out["cv_offset"][1], out["position"][1] + cv, atol=1e-6)
    # the covariances are not the position head's: they grow from the floor at step 1
    assert not np.allclose(out["path"][2], out["position"][2])
