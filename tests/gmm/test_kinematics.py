"""Tests of gmm.kinematics: propagation vs Monte Carlo, closed forms and printed formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gmm.kinematics import bicycle_step, monte_carlo_moments, propagate, rollout
from mixtures.base import x64_scope

DT = 0.1
T = 15
Z0 = np.array([1.0, -2.0, 0.3, 8.0])


def _controls(formulation):
    """Moderate-noise control sequences (sigma_theta <= 0.2 rad: first order is accurate)."""
    t = np.linspace(0.0, 1.0, T)
    if formulation == "velocity":
        m = np.column_stack([8.0 + t, 2.0 * t])
        c = [[1.0, 0.3], [0.3, 0.5]]
    elif formulation == "acceleration":
        m = np.column_stack([0.5 + 0 * t, -1.0 + 2.0 * t])
        c = [[1.0, 0.2], [0.2, 0.6]]
    elif formulation == "speed_heading":
        m = np.column_stack([8.0 + 0 * t, 0.8 * t])
        c = [[1.0, 0.05], [0.05, 0.2**2]]
    else:
        m = np.column_stack([0.5 + 0 * t, 0.05 + 0 * t])
        c = [[0.5**2, 0.0], [0.0, 0.03**2]]
    return m, np.tile(np.asarray(c), (T, 1, 1))


N_MC = 100_000  # issue 5: >= 1e5 Monte Carlo rollouts per formulation


def _numpy_rollouts(formulation, u, z0, dt):
    """Independent NumPy explicit-Euler integrator: controls (n, T, 2) -> positions."""
    n, n_steps, _ = u.shape
    x, y = np.full(n, z0[0]), np.full(n, z0[1])
    th, v = np.full(n, z0[2]), np.full(n, z0[3])
    vx, vy = v * np.cos(th), v * np.sin(th)
    out = np.empty((n, n_steps, 2))
    for t in range(n_steps):
        a, b = u[:, t, 0], u[:, t, 1]
        if formulation == "velocity":
            x, y = x + a * dt, y + b * dt
        elif formulation == "acceleration":
            x, y = x + vx * dt, y + vy * dt
            vx, vy = vx + a * dt, vy + b * dt
        elif formulation == "speed_heading":
            x, y = x + a * np.cos(b) * dt, y + a * np.sin(b) * dt
        else:  # bicycle, curvature form
            x, y, th, v = (
                x + v * np.cos(th) * dt,
                y + v * np.sin(th) * dt,
                th + v * b * dt,
                v + a * dt,
            )
        out[:, t, 0], out[:, t, 1] = x, y
    return out


@pytest.fixture(scope="module")
def mc_reference():
    """NumPy Monte Carlo moments (N_MC rollouts) for every formulation, no JAX compile."""
    rng = np.random.default_rng(3)
    ref = {}
    for formulation in ("velocity", "acceleration", "speed_heading", "accel_steering"):
        m, c = _controls(formulation)
        u = m + np.einsum("tij,ntj->nti", np.linalg.cholesky(c), rng.normal(size=(N_MC, T, 2)))
        pos = _numpy_rollouts(formulation, u, Z0, DT)
        ref[formulation] = (
            pos.mean(0),
            np.einsum("nti,ntj->tij", *(2 * [pos - pos.mean(0)])) / (N_MC - 1),
        )
    return ref


@pytest.mark.parametrize(
    ("formulation", "method"),
    [
        ("velocity", "exact"),
        ("acceleration", "exact"),
        ("speed_heading", "exact"),
        ("speed_heading", "moment"),
        ("accel_steering", "exact"),
        ("accel_steering", "moment"),
    ],
)
def test_propagate_matches_monte_carlo(mc_reference, formulation, method):
    m, c = _controls(formulation)
    mc_mean, mc_cov = mc_reference[formulation]
    with x64_scope():
        res = propagate(m, c, Z0, dt=DT, formulation=formulation, method=method)
    sd = np.sqrt(np.diagonal(np.asarray(res.position_cov[-1])))
    sd_mc = np.sqrt(np.diagonal(mc_cov[-1]))
    # MC std of a sample std is ~ 1/sqrt(2n) = 0.22 %; 3 % leaves room for the first-order
    # linearisation error at sigma_theta <= 0.2 rad (issue 5 acceptance criterion).
    np.testing.assert_allclose(sd, sd_mc, rtol=0.03)
    # means: MC standard error ~ sd/sqrt(n) < 0.01 m; linearisation bias of the first-order
    # mean is <= sum_t s dt sigma_theta^2 / 2 (E|cos/sin Taylor remainder| <= sigma^2 / 2)
    # ~ 0.24 m for speed_heading.
    bias_bound = 0.25 if (formulation == "speed_heading" and method == "exact") else 0.03
    np.testing.assert_allclose(res.position_mean[-1], mc_mean[-1], atol=bias_bound)
    # full covariance: the x-y correlation at the last step (MC std error of a sample
    # correlation ~ (1 - rho^2) / sqrt(n) < 0.004; 0.03 leaves room for linearisation)
    cov = np.asarray(res.position_cov[-1])
    rho = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
    rho_mc = mc_cov[-1, 0, 1] / np.sqrt(mc_cov[-1, 0, 0] * mc_cov[-1, 1, 1])
    assert abs(rho - rho_mc) < 0.03, (rho, rho_mc)


def test_monte_carlo_moments_matches_numpy_rollouts(mc_reference):
    """The library's JAX sampler vs the independent NumPy one (bicycle model, T steps)."""
    m, c = _controls("accel_steering")
    with x64_scope():
        mc = monte_carlo_moments(
            m,
            c,
            Z0,
            dt=DT,
            formulation="accel_steering",
            n_samples=N_MC // 2,
            key=jax.random.PRNGKey(3),
            batch_size=25_000,
        )
    mean_np, cov_np = mc_reference["accel_steering"]
    # a 5e4- and a 1e5-sample estimate: relative std of a sample std ~ 1/sqrt(2n), of
    # their difference sqrt(1/1e5 + 1/2e5) ~ 0.39 %; 2 % is > 5 sigma. Means: difference
    # of two MC means has std < sd * sqrt(3/1e5) < 0.006 m at the last step; 0.03 m > 5 sigma.
    np.testing.assert_allclose(
        np.sqrt(np.diagonal(np.asarray(mc.position_cov), axis1=1, axis2=2)),
        np.sqrt(np.diagonal(cov_np, axis1=1, axis2=2)),
        rtol=0.02,
        atol=1e-6,
    )
    np.testing.assert_allclose(mc.position_mean, mean_np, atol=0.03)


def _linear_map(formulation, n_steps, dt, z0):
    """Brute force: positions = A u + b with u the stacked controls (2T,), independent."""
    A = np.zeros((n_steps, 2, n_steps, 2))
    b = np.zeros((n_steps, 2))
    v0 = z0[3] * np.array([np.cos(z0[2]), np.sin(z0[2])])
    for t in range(1, n_steps + 1):
        b[t - 1] = z0[:2]
        if formulation == "velocity":
            for tau in range(t):
                A[t - 1, :, tau, :] = dt * np.eye(2)
        else:  # p_t = p0 + t dt v0 + dt^2 sum_{s<t} sum_{tau<s} a_tau
            b[t - 1] += t * dt * v0
            for s in range(t):
                for tau in range(s):
                    A[t - 1, :, tau, :] += dt**2 * np.eye(2)
    return A.reshape(2 * n_steps, 2 * n_steps), b


@pytest.mark.parametrize("formulation", ["velocity", "acceleration"])
@pytest.mark.parametrize("method", ["exact", "moment"])
def test_linear_formulations_exact(formulation, method):
    rng = np.random.default_rng(0)
    n = 7
    m = rng.normal(size=(3, n, 2))
    Lc = rng.normal(size=(3, n, 2, 2))
    c = Lc @ np.swapaxes(Lc, -1, -2)
    z0 = np.array([0.5, 1.0, 0.7, 3.0])
    with x64_scope():
        res = propagate(m, c, z0, dt=0.3, formulation=formulation, method=method)
    A, b = _linear_map(formulation, n, 0.3, z0)
    for i in range(3):
        C = np.zeros((2 * n, 2 * n))
        for t in range(n):
            C[2 * t : 2 * t + 2, 2 * t : 2 * t + 2] = c[i, t]
        mean = (A @ m[i].reshape(-1)).reshape(n, 2) + b
        cov = (A @ C @ A.T).reshape(n, 2, n, 2)
        # float64 closed forms vs brute-force linear algebra: round-off only.
        np.testing.assert_allclose(res.position_mean[i], mean, atol=1e-10)
        np.testing.assert_allclose(
            res.position_cov[i], cov[np.arange(n), :, np.arange(n), :], atol=1e-10
        )
    if formulation == "acceleration":  # Euler: a_0 first moves p_2, so Sigma_p1 = 0
        assert np.all(np.asarray(res.position_cov[:, 0]) == 0.0)


def test_variance_sum_vs_printed_std_sum_closed_forms():
    """sigma = 1 per step, dt = 0.1, t = 80: velocity std 0.8944 (printed std sum 8.0),
    acceleration std 4.09 (printed 31.6)."""
    n = 80
    eye = np.tile(np.eye(2), (n, 1, 1))
    with x64_scope():
        for formulation, exact, printed in [
            ("velocity", 0.1 * np.sqrt(80.0), 8.0),
            ("acceleration", 0.01 * np.sqrt(np.sum(np.arange(80.0) ** 2)), 0.01 * 3160.0),
        ]:
            r = propagate(np.zeros((n, 2)), eye, np.zeros(4), dt=0.1, formulation=formulation)
            p = propagate(
                np.zeros((n, 2)), eye, np.zeros(4), dt=0.1, formulation=formulation, method="paper"
            )
            np.testing.assert_allclose(np.sqrt(r.position_cov[-1, 0, 0]), exact, rtol=1e-12)
            np.testing.assert_allclose(np.sqrt(p.position_cov[-1, 0, 0]), printed, rtol=1e-12)


def test_speed_heading_moment_one_step_closed_forms():
    """One step, mu_s=10, sigma_s=1, mu_th=0.5, sigma_th=0.3, dt=0.1: closed forms and
    reference values (moment-matched and first-order) of the increment's moments."""
    m = np.array([[10.0, 0.5]])
    c = np.array([[[1.0, 0.0], [0.0, 0.09]]])
    with x64_scope():
        mm = propagate(m, c, np.zeros(4), dt=0.1, formulation="speed_heading", method="moment")
        ex = propagate(m, c, np.zeros(4), dt=0.1, formulation="speed_heading", method="exact")
    # moment-matched closed forms (E cos th = cos mu e^{-sigma^2/2}, ...) evaluated here
    cth, c2 = np.exp(-0.09 / 2), np.exp(-2 * 0.09)
    m2 = 101.0
    ecos, ecos2 = np.cos(0.5) * cth, 0.5 * (1 + np.cos(1.0) * c2)
    np.testing.assert_allclose(mm.position_mean[0, 0], 0.1 * 10 * ecos, rtol=1e-12)
    np.testing.assert_allclose(
        mm.position_cov[0, 0, 0], 0.01 * (m2 * ecos2 - 100 * ecos**2), rtol=1e-12
    )
    np.testing.assert_allclose(mm.position_mean[0, 0], 0.83897, atol=1e-5)  # reference
    np.testing.assert_allclose(np.sqrt(mm.position_cov[0, 0, 0]), 0.1704, atol=1e-4)
    np.testing.assert_allclose(np.sqrt(ex.position_cov[0, 0, 0]), 0.16849, atol=1e-5)
    np.testing.assert_allclose(mm.position_cov[0, 0, 1], -0.0296, atol=1e-4)
    np.testing.assert_allclose(ex.position_cov[0, 0, 1], -0.0337, atol=1e-4)


def test_paper_method_reproduces_printed_recursions():
    """Independent loop over the paper's printed formulas (formulations 1-3)."""
    rng = np.random.default_rng(1)
    n, dt = 6, 0.2
    m = np.column_stack([rng.uniform(5, 10, n), rng.uniform(-1, 1, n)])
    sd = rng.uniform(0.1, 0.5, (n, 2))
    c = np.zeros((n, 2, 2))
    c[:, 0, 0], c[:, 1, 1] = sd[:, 0] ** 2, sd[:, 1] ** 2
    z0 = np.array([0.0, 0.0, 0.4, 2.0])
    with x64_scope():
        out = {
            f: propagate(m, c, z0, dt=dt, formulation=f, method="paper")
            for f in ("velocity", "acceleration", "speed_heading")
        }
    # F1: sigma_{t+1} = sigma_t + sigma_v dt
    s = np.zeros(2)
    s1 = []
    for t in range(n):
        s = s + sd[t] * dt
        s1.append(s.copy())
    np.testing.assert_allclose(
        np.sqrt(np.diagonal(out["velocity"].position_cov, axis1=1, axis2=2)), s1, atol=1e-12
    )
    # F2: sigma_v accumulates sigma_a dt, then sigma_x accumulates sigma_v dt (sigma_v0 = 0)
    sv, sx = np.zeros(2), np.zeros(2)
    s2 = []
    for t in range(n):
        sx = sx + sv * dt
        sv = sv + sd[t] * dt
        s2.append(sx.copy())
    np.testing.assert_allclose(
        np.sqrt(np.diagonal(out["acceleration"].position_cov, axis1=1, axis2=2)), s2, atol=1e-12
    )
    # F3: signed std sums with the 1/sqrt(2) factor
    sx = sy = 0.0
    s3 = []
    for t in range(n):
        mu_s, mu_th = m[t]
        ss, sth = sd[t]
        sx += dt * (
            -mu_s * sth * np.sin(mu_th) + ss * np.cos(mu_th) - ss * sth * np.sin(mu_th) / np.sqrt(2)
        )
        sy += dt * (
            mu_s * sth * np.cos(mu_th) + ss * np.sin(mu_th) + ss * sth * np.cos(mu_th) / np.sqrt(2)
        )
        s3.append([sx**2, sy**2])
    np.testing.assert_allclose(
        np.diagonal(out["speed_heading"].position_cov, axis1=1, axis2=2), s3, atol=1e-12
    )


def test_rollout_matches_python_loop():
    rng = np.random.default_rng(2)
    u = np.column_stack([rng.normal(size=10), rng.uniform(-0.3, 0.3, 10)])
    with x64_scope():
        pos = np.asarray(rollout(u, Z0, dt=DT, formulation="accel_steering", wheelbase=2.8))
        z = jnp.asarray(Z0)
        ref = []
        for t in range(10):
            z = bicycle_step(z, jnp.asarray(u[t]), dt=DT, wheelbase=2.8)
            ref.append(np.asarray(z[:2]))
    x, y, th, v = Z0  # first step by hand
    np.testing.assert_allclose(pos[0], [x + v * np.cos(th) * DT, y + v * np.sin(th) * DT])
    np.testing.assert_allclose(pos, ref, atol=1e-12)


def test_wheelbase_form_matches_curvature_form():
    """tan(delta)/L with delta = atan(kappa L) equals the curvature form (exact method)."""
    m, c = _controls("accel_steering")
    L = 2.8
    m_delta = m.copy()
    m_delta[:, 1] = np.arctan(m[:, 1] * L)
    with x64_scope():
        a = propagate(m, np.zeros_like(c), Z0, dt=DT)
        b = propagate(m_delta, np.zeros_like(c), Z0, dt=DT, wheelbase=L)
    np.testing.assert_allclose(a.position_mean, b.position_mean, atol=1e-10)


def test_batching_jit_vmap_and_gradients():
    m, c = _controls("accel_steering")
    mb = np.stack([m, m * 1.1, m * 0.9])
    with x64_scope():
        batched = propagate(mb, c, Z0, dt=DT, method="exact")
        for i in range(3):  # (T, 2) shapes: reuses the Monte Carlo test's compile
            single = propagate(mb[i], c, Z0, dt=DT, method="exact")
            # atol: the step-1 covariance is exactly 0 up to prefix-sum cancellation (1e-19)
            np.testing.assert_allclose(
                batched.position_cov[i], single.position_cov, rtol=1e-12, atol=1e-14
            )
        # propagate under an outer jit and vmap (one compile for both transformations; the
        # tracer-aware validation is shared by all formulations, so the cheap linear one
        # is used here) vs propagate's own broadcasting over batch dimensions
        ma, ca = _controls("acceleration")
        mab = np.stack([ma, ma * 1.1, ma * 0.9])
        f = jax.jit(jax.vmap(lambda a: propagate(a, ca, Z0, dt=DT, formulation="acceleration")))
        own = propagate(mab, ca, Z0, dt=DT, formulation="acceleration")
        for x, y in zip(f(jnp.asarray(mab)), own, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)

        def loss(a, b, dt):
            b = 0.5 * (b + jnp.swapaxes(b, -1, -2))  # FD perturbs b asymmetrically
            r = propagate(a, b, Z0, dt=dt, method="moment")
            e = propagate(a, b, Z0, dt=dt, method="exact")
            return (
                jnp.sum(r.position_mean[-1])
                + jnp.trace(r.position_cov[-1])
                + e.position_cov[-1, 1, 1]
            )

        # reverse-mode gradients with respect to control means, covariances and the
        # (traced) step length, through both the moment-matched and the EKF scans, vs
        # central finite differences along random directions (what jax check_grads does;
        # one jitted value_and_grad serves both). float64, eps = 1e-6: truncation ~eps^2,
        # round-off ~1e-16 |f| / eps ~ 1e-9 relative, so rtol 1e-6 is loose.
        # (plain float64 NumPy inputs everywhere: a weakly typed dt would retrace)
        args = (m[:4], c[:4], np.float64(DT))
        vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
        _, grads = vg(*args)
        rng = np.random.default_rng(4)
        eps = 1e-6
        for _ in range(3):
            d = [rng.normal(size=np.shape(a)) for a in args]
            fd = (
                vg(*[a + eps * v for a, v in zip(args, d, strict=True)])[0]
                - vg(*[a - eps * v for a, v in zip(args, d, strict=True)])[0]
            ) / (2 * eps)
            ana = sum(np.vdot(g, v) for g, v in zip(grads, d, strict=True))
            np.testing.assert_allclose(ana, fd, rtol=1e-6)
        # longer steps move the agent further and widen the spread: d loss / d dt > 0
        assert np.isfinite(grads[2]) and grads[2] > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"control_mean": np.zeros((5, 3))}, "control_mean must have shape"),
        ({"control_cov": np.zeros((4, 2, 2))}, "control_cov must have shape"),
        ({"initial_state": np.zeros(3)}, "initial_state must have shape"),
        ({"control_mean": np.full((5, 2), np.nan)}, "NaN or inf"),
        ({"control_cov": np.tile([[1.0, 0.0], [0.0, -1.0]], (5, 1, 1))}, "semi-definite"),
        ({"control_cov": np.tile([[1.0, 0.5], [0.0, 1.0]], (5, 1, 1))}, "symmetric"),
        ({"formulation": "unicycle"}, "formulation must be one of"),
        ({"method": "ukf"}, "method must be one of"),
        ({"dt": -0.1}, "dt must be a positive"),
        ({"wheelbase": 0.0}, "wheelbase must be a positive"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {
        "control_mean": np.zeros((5, 2)),
        "control_cov": np.tile(np.eye(2), (5, 1, 1)),
        "initial_state": np.zeros(4),
        "dt": 0.1,
        "formulation": "accel_steering",
        "method": "exact",
        "wheelbase": None,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        propagate(
            args.pop("control_mean"), args.pop("control_cov"), args.pop("initial_state"), **args
        )


def _numpy_ekf_and_printed(mu, sd, z0, dt, wheelbase):
    """Independent NumPy loops: the 4-state EKF recursion and the std sums (formulation 4)."""
    z = np.array(z0, dtype=float)
    S = np.zeros((4, 4))
    sv = sth = sx = sy = 0.0
    ekf, printed = [], []
    for t in range(len(mu)):
        x, y, th, v = z
        a, d = mu[t]
        kap, dkap = np.tan(d) / wheelbase, 1.0 / (np.cos(d) ** 2 * wheelbase)
        c, s = np.cos(th), np.sin(th)
        F = np.array(
            [
                [1, 0, -v * s * dt, c * dt],
                [0, 1, v * c * dt, s * dt],
                [0, 0, 1, kap * dt],
                [0, 0, 0, 1],
            ]
        )
        G = np.array([[0, 0], [0, 0], [0, v * dkap * dt], [dt, 0]])
        S = F @ S @ F.T + G @ np.diag(sd[t] ** 2) @ G.T
        r2 = 1 / np.sqrt(2)
        sx += dt * (-v * sth * s + sv * c - r2 * sv * sth * s)
        sy += dt * (v * sth * c + sv * s + r2 * sv * sth * c)
        sth += dt * (abs(kap) * sv + abs(v * dkap) * sd[t, 1])
        sv += sd[t, 0] * dt
        z = np.array([x + v * c * dt, y + v * s * dt, th + v * kap * dt, v + a * dt])
        ekf.append((z[:2].copy(), S[:2, :2].copy()))
        printed.append([sx**2, sy**2])
    return ekf, np.asarray(printed)


def test_accel_steering_cumsum_forms_match_recursions():
    """The scan-free (cumulative-sum) bicycle propagation equals the EKF / printed loops."""
    rng = np.random.default_rng(5)
    n, dt, L = 9, 0.2, 2.8
    mu = np.column_stack([rng.normal(size=n), rng.uniform(-0.3, 0.3, n)])
    sd = rng.uniform(0.05, 0.4, (n, 2))
    c = np.zeros((n, 2, 2))
    c[:, 0, 0], c[:, 1, 1] = sd[:, 0] ** 2, sd[:, 1] ** 2
    ekf, printed = _numpy_ekf_and_printed(mu, sd, Z0, dt, L)
    with x64_scope():
        ex = propagate(mu, c, Z0, dt=dt, wheelbase=L)
        pa = propagate(mu, c, Z0, dt=dt, wheelbase=L, method="paper")
    # float64, same algebra in a different order: round-off only
    np.testing.assert_allclose(ex.position_mean, [m for m, _ in ekf], atol=1e-10)
    np.testing.assert_allclose(ex.position_cov, [S for _, S in ekf], atol=1e-10)
    np.testing.assert_allclose(pa.position_mean, [m for m, _ in ekf], atol=1e-10)
    np.testing.assert_allclose(np.diagonal(pa.position_cov, axis1=1, axis2=2), printed, atol=1e-10)
