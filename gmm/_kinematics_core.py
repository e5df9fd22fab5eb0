"""Single-trajectory kinematic cores: Euler rollouts and Gaussian control propagation.

Pure, unvalidated, ``jit``/``vmap``/``grad``-safe functions over one trajectory
(controls of shape (T, 2), initial state of shape (4,)). :mod:`gmm.kinematics` wraps them
in the validated, batched public API; the trajectory forecaster calls them inside its own
jitted training and sampling programs. ``formulation``, ``method`` and whether
``wheelbase`` is ``None`` are structural (Python-level) choices; every array argument may
be traced.

The conventions (state, control indexing, formulations) are those of :mod:`gmm.kinematics`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["propagate_single", "psd_sqrt", "rollout_single"]


def rollout_single(controls, state0, dt, wheelbase, formulation):
    """Explicit-Euler positions at steps 1..T of one trajectory.

    Parameters
    ----------
    controls : array of shape (T, 2)
    state0 : array of shape (4,)
        ``(x, y, heading, speed)`` at step 0.
    dt : float or scalar array
    wheelbase : float, scalar array or None
        ``None``: the second ``"accel_steering"`` control is a curvature.
    formulation : {"velocity", "acceleration", "speed_heading", "accel_steering"}

    Returns
    -------
    positions : array of shape (T, 2)
    """
    p0 = state0[:2]
    if formulation == "velocity":
        return p0 + dt * jnp.cumsum(controls, axis=0)
    if formulation == "acceleration":
        v0 = state0[3] * jnp.stack([jnp.cos(state0[2]), jnp.sin(state0[2])])
        vel = v0 + dt * jnp.concatenate(
            [jnp.zeros((1, 2), controls.dtype), jnp.cumsum(controls[:-1], axis=0)], axis=0
        )  # v_t for t = 0..T-1
        return p0 + dt * jnp.cumsum(vel, axis=0)
    if formulation == "speed_heading":
        s, th = controls[:, 0], controls[:, 1]
        inc = dt * jnp.stack([s * jnp.cos(th), s * jnp.sin(th)], axis=-1)
        return p0 + jnp.cumsum(inc, axis=0)

    # accel_steering: explicit Euler of the bicycle is a chain of cumulative sums
    kappa = controls[:, 1] if wheelbase is None else jnp.tan(controls[:, 1]) / wheelbase
    _, _, _, pos = _bicycle_mean(controls[:, 0], kappa, state0, dt)
    return pos


def _cumsum(x, *, strict=False):
    """Cumulative sum along axis 0 as one matmul with a triangular 0/1 matrix.

    ``strict=True`` gives the exclusive sum ``out[t] = sum_{s<t} x[s]``. On CPU,
    ``jnp.cumsum`` lowers to a log-depth associative scan of many small ops; for the short
    horizons here (T <= a few hundred) a (T, T) matmul is cheaper, forward and backward.
    """
    T = x.shape[0]
    tri = jnp.asarray(np.tril(np.ones((T, T)), -1 if strict else 0), x.dtype)
    return jnp.tensordot(tri, x, axes=(1, 0))


def _excl_cumsum(x):
    """Exclusive cumulative sum along axis 0: out[t] = sum_{s<t} x[s]."""
    return _cumsum(x, strict=True)


def _bicycle_mean(a, kappa, state0, dt):
    """Euler rollout of the bicycle as cumulative sums (no sequential scan).

    .. math::

        v_t = v_0 + \\Delta t\\sum_{s<t} a_s,\\quad
        \\theta_t = \\theta_0 + \\Delta t\\sum_{s<t} v_s\\kappa_s,\\quad
        p_{t+1} = p_0 + \\Delta t\\sum_{s\\le t} v_s(\\cos\\theta_s, \\sin\\theta_s)

    Returns speeds and headings at steps 0..T-1 and the unit heading vectors (T, 2), and
    the positions (T, 2) at steps 1..T.
    """
    v = state0[3] + dt * _excl_cumsum(a)
    th = state0[2] + dt * _excl_cumsum(v * kappa)
    e = jnp.stack([jnp.cos(th), jnp.sin(th)], axis=-1)
    pos = state0[:2] + dt * _cumsum(v[:, None] * e)
    return v, th, e, pos


# ------------------------------------------------------------------------- Gaussian parts


def _lag_weights(T: int, dtype):
    """W[t, tau] = max(t - 1 - tau, 0) for rows t = 1..T and columns tau = 0..T-1.

    Under explicit Euler with a known initial velocity, the acceleration control at
    ``tau`` moves the position at step ``t`` by ``dt**2 * W[t, tau]``.
    """
    t = np.arange(1, T + 1)[:, None]
    tau = np.arange(T)[None, :]
    return jnp.asarray(np.maximum(t - 1 - tau, 0), dtype=dtype)


def _polar_moments(mu_r, mu_th, var_r, var_th, cov_rth):
    """Exact mean and covariance of ``r (cos th, sin th)`` for jointly Gaussian (r, th).

    Uses the tilted characteristic function of a bivariate Gaussian,

    .. math::

        E[f(r)e^{ik\\theta}] = e^{ik\\mu_\\theta - k^2\\sigma_\\theta^2/2}\\,
        E f(\\tilde r),\\qquad
        \\tilde r\\sim N(\\mu_r + ik\\sigma_{r\\theta}, \\sigma_r^2),

    so for independent :math:`r, \\theta` the mean of :math:`\\cos\\theta` shrinks by
    :math:`e^{-\\sigma_\\theta^2/2}` (the factor a first-order linearisation misses).
    """
    phi1 = jnp.exp(-0.5 * var_th) * (jnp.cos(mu_th) + 1j * jnp.sin(mu_th))
    phi2 = jnp.exp(-2.0 * var_th) * (jnp.cos(2 * mu_th) + 1j * jnp.sin(2 * mu_th))
    ew = (mu_r + 1j * cov_rth) * phi1  # E[r e^{i th}]
    ew2 = ((mu_r + 2j * cov_rth) ** 2 + var_r) * phi2  # E[r^2 e^{2i th}]
    er2 = mu_r**2 + var_r  # E|W|^2
    mean = jnp.stack([ew.real, ew.imag], axis=-1)
    vxx = 0.5 * (er2 + ew2.real) - ew.real**2
    vyy = 0.5 * (er2 - ew2.real) - ew.imag**2
    vxy = 0.5 * ew2.imag - ew.real * ew.imag
    cov = jnp.stack([jnp.stack([vxx, vxy], -1), jnp.stack([vxy, vyy], -1)], -2)
    return mean, cov, ew, phi1


def propagate_single(mu_u, cov_u, z0, dt, wheelbase, formulation, method):
    """Position means (T, 2) and covariances (T, 2, 2) of one trajectory.

    The unvalidated core of :func:`gmm.kinematics.propagate` (see there for the
    formulas): ``mu_u`` (T, 2), ``cov_u`` (T, 2, 2), ``z0`` (4,); ``formulation`` and
    ``method`` are Python strings, ``wheelbase`` is ``None`` for the curvature form.
    """
    T = mu_u.shape[0]
    dtype = mu_u.dtype
    p0 = z0[:2]
    std_u = jnp.sqrt(jnp.clip(jnp.diagonal(cov_u, axis1=-2, axis2=-1), 0.0))  # (T, 2)

    if formulation == "velocity":
        mean = p0 + dt * jnp.cumsum(mu_u, axis=0)
        if method == "paper":  # printed: sigma_{t+1} = sigma_t + sigma_v dt (std sum)
            sd = dt * jnp.cumsum(std_u, axis=0)
            return mean, jax.vmap(jnp.diag)(sd**2)
        return mean, dt**2 * jnp.cumsum(cov_u, axis=0)  # variances add over steps

    if formulation == "acceleration":
        W = _lag_weights(T, dtype)
        v0 = z0[3] * jnp.stack([jnp.cos(z0[2]), jnp.sin(z0[2])])
        steps = jnp.arange(1, T + 1, dtype=dtype)[:, None]
        mean = p0 + steps * dt * v0 + dt**2 * (W @ mu_u)  # Sigma: W**2-weighted sum
        if method == "paper":  # printed: std sums for v, then for x (weights t-1-tau)
            sd = dt**2 * (W @ std_u)
            return mean, jax.vmap(jnp.diag)(sd**2)
        return mean, dt**4 * jnp.einsum("tk,kij->tij", W**2, cov_u)

    if formulation == "speed_heading":
        mu_s, mu_th = mu_u[:, 0], mu_u[:, 1]
        vs, vth, cst = cov_u[:, 0, 0], cov_u[:, 1, 1], cov_u[:, 0, 1]
        c, s = jnp.cos(mu_th), jnp.sin(mu_th)
        if method == "moment":
            inc_mean, inc_cov, _, _ = _polar_moments(mu_s, mu_th, vs, vth, cst)
            return p0 + dt * jnp.cumsum(inc_mean, 0), dt**2 * jnp.cumsum(inc_cov, 0)
        inc_mean = jnp.stack([mu_s * c, mu_s * s], -1)
        mean = p0 + dt * jnp.cumsum(inc_mean, axis=0)
        if method == "paper":  # printed signed std sums with the 1/sqrt(2) factor
            ss, sth = std_u[:, 0], std_u[:, 1]
            r2 = 1.0 / jnp.sqrt(2.0)
            dsx = dt * (-mu_s * sth * s + ss * c - r2 * ss * sth * s)
            dsy = dt * (mu_s * sth * c + ss * s + r2 * ss * sth * c)
            sx, sy = jnp.cumsum(dsx), jnp.cumsum(dsy)
            return mean, jax.vmap(jnp.diag)(jnp.stack([sx**2, sy**2], -1))
        # exact: first-order Jacobian of each increment; the state Jacobian F is I
        G = dt * jnp.stack(
            [jnp.stack([c, -mu_s * s], -1), jnp.stack([s, mu_s * c], -1)], -2
        )  # (T, 2, 2)
        inc_cov = jnp.einsum("tij,tjk,tlk->til", G, cov_u, G)
        return mean, jnp.cumsum(inc_cov, axis=0)

    # accel_steering -------------------------------------------------------------------
    curvature = wheelbase is None

    def kappa_lin(mu_d):
        """Curvature mean and d kappa / d control at the control mean."""
        if curvature:
            return mu_d, jnp.ones_like(mu_d)
        return jnp.tan(mu_d) / wheelbase, 1.0 / (jnp.cos(mu_d) ** 2 * wheelbase)

    if method == "paper":
        return _paper_accel_steering(mu_u, std_u, z0, dt, kappa_lin)

    if method == "exact":
        return _jacobian_accel_steering(mu_u, cov_u, z0, dt, kappa_lin)

    # moment: assumed-density filter with exact sin/cos moments (lax.scan)

    def step(carry, inp):
        mz, Sz = carry
        mu, Su = inp
        th_v = Sz[2, 3]
        kap, dkap = kappa_lin(mu[1])
        var_k = dkap**2 * Su[1, 1]  # linearised tan (exact in curvature form)
        cov_ak = dkap * Su[0, 1]
        mth, mv = mz[2], mz[3]
        vth, vv = Sz[2, 2], Sz[3, 3]
        w_mean, w_cov, ew, phi1 = _polar_moments(mv, mth, vv, vth, th_v)
        # Stein: Cov(z_j, v e^{i th}) = S_{j,th} E[i v e^{i th}] + S_{j,v} E[e^{i th}]
        cz_w = Sz[:, 2] * (1j * ew) + Sz[:, 3] * phi1  # (4,) complex
        cz = jnp.stack(
            [cz_w.real, cz_w.imag, Sz[:, 3] * kap, jnp.zeros_like(mth) * Sz[:, 0]], -1
        )  # Cov(z, h), h = (Re W, Im W, v kappa, a)
        cov_w_v = cz_w[3]
        var_p = (mv**2 + vv) * (kap**2 + var_k) - mv**2 * kap**2
        H = jnp.zeros((4, 4), dtype)
        H = H.at[:2, :2].set(w_cov)
        H = H.at[0, 2].set(kap * cov_w_v.real).at[2, 0].set(kap * cov_w_v.real)
        H = H.at[1, 2].set(kap * cov_w_v.imag).at[2, 1].set(kap * cov_w_v.imag)
        H = H.at[2, 2].set(var_p)
        H = H.at[2, 3].set(mv * cov_ak).at[3, 2].set(mv * cov_ak)
        H = H.at[3, 3].set(Su[0, 0])
        h_mean = jnp.stack([w_mean[0], w_mean[1], mv * kap, mu[0]])
        mz1 = mz + dt * h_mean
        Sz1 = Sz + dt * (cz + cz.T) + dt**2 * H
        return (mz1, Sz1), (mz1[:2], Sz1[:2, :2])

    carry0 = (z0, jnp.zeros((4, 4), dtype))
    _, (mean, cov) = lax.scan(step, carry0, (mu_u, cov_u))
    return mean, cov


def _jacobian_accel_steering(mu_u, cov_u, z0, dt, kappa_lin):
    """First-order (EKF) propagation for (a, delta) in O(T) cumulative sums.

    The EKF recursion :math:`\\Sigma^z_{t+1} = F_t\\Sigma^z_t F_t^\\top + G_t\\Sigma^u_t
    G_t^\\top` (:math:`\\Sigma^z_0 = 0`, Jacobians at the mean trajectory) equals
    :math:`\\Sigma^p_t = \\sum_{\\tau<t} J_{t\\tau}\\Sigma^u_\\tau J_{t\\tau}^\\top`, with
    :math:`J_{t\\tau} = \\partial p_t/\\partial u_\\tau` the chain-rule Jacobian of the
    Euler rollout (so all cross-covariances are kept). With :math:`e_s = (\\cos\\theta_s,
    \\sin\\theta_s)`, :math:`w_s = v_s(-\\sin\\theta_s, \\cos\\theta_s)`,
    :math:`g_s = v_s\\kappa'(\\delta_s)`, prefix sums :math:`\\hat E_t = \\sum_{s<t} e_s`,
    :math:`\\hat W_t = \\sum_{s<t} w_s`, :math:`\\hat V_t = \\sum_{s<t} w_s K_s`,
    :math:`K_s = \\sum_{r<s}\\kappa_r`, the columns of :math:`J` are separable,

    .. math::

        \\frac{\\partial p_t}{\\partial a_\\tau} = P_t - P_{\\tau+1}
        - \\Delta t^3 K_{\\tau+1}(\\hat W_t - \\hat W_{\\tau+1}),\\quad
        \\frac{\\partial p_t}{\\partial \\delta_\\tau} = \\Delta t^2 g_\\tau
        (\\hat W_t - \\hat W_{\\tau+1}),\\quad
        P_t = \\Delta t^2\\hat E_t + \\Delta t^3\\hat V_t,

    i.e. :math:`J_{t\\tau,c} = \\lambda_c P_t + \\mu_{c\\tau}\\hat W_t + N_{c\\tau}`, so the
    quadratic form over :math:`\\tau<t` is a handful of prefix sums of per-:math:`\\tau`
    moments: no sequential scan and no (T, T) array.
    """
    # Few, wide prefix sums (each one (T, T) matmul): on CPU the backward pass costs
    # per call, not per column.
    kap, dkap = kappa_lin(mu_u[:, 1])
    ex = _excl_cumsum(jnp.stack([mu_u[:, 0], kap], axis=-1))
    v = z0[3] + dt * ex[:, 0]
    k_excl = ex[:, 1]
    k_inc = k_excl + kap
    th = z0[2] + dt * _excl_cumsum(v * kap)
    e = jnp.stack([jnp.cos(th), jnp.sin(th)], axis=-1)
    w = v[:, None] * jnp.stack([-e[:, 1], e[:, 0]], axis=-1)
    sums = _cumsum(jnp.concatenate([v[:, None] * e, e, w, w * k_excl[:, None]], axis=-1))
    mean = z0[:2] + dt * sums[:, 0:2]
    e_hat, w_hat, v_hat = sums[:, 2:4], sums[:, 4:6], sums[:, 6:8]  # index i: t = i + 1
    P = dt**2 * e_hat + dt**3 * v_hat  # (T, 2): P_{i+1}
    mu_a = -(dt**3) * k_inc  # coefficient of W_t in d p_t / d a_tau
    n_a = -P + dt**3 * k_inc[:, None] * w_hat  # (T, 2)
    mu_d = dt**2 * v * dkap
    n_d = -mu_d[:, None] * w_hat
    saa, sad, sdd = cov_u[:, 0, 0], cov_u[:, 0, 1], cov_u[:, 1, 1]

    def outer(x, y):
        return (x[:, :, None] * y[:, None, :]).reshape(len(x), 4)

    q_a = saa[:, None] * n_a + sad[:, None] * n_d  # sum_c' sigma_{a c'} N_c'
    q_d = sad[:, None] * n_a + sdd[:, None] * n_d
    moments = jnp.concatenate(
        [
            saa[:, None],
            (saa * mu_a + sad * mu_d)[:, None],
            (saa * mu_a**2 + 2 * sad * mu_a * mu_d + sdd * mu_d**2)[:, None],
            q_a,
            mu_a[:, None] * q_a + mu_d[:, None] * q_d,
            outer(n_a, q_a) + outer(n_d, q_d),
        ],
        axis=-1,
    )
    cm = _cumsum(moments)
    c1, c2, c3 = cm[:, 0, None], cm[:, 1, None], cm[:, 2, None]
    c4, c5, c6 = cm[:, 3:5], cm[:, 5:7], cm[:, 7:11]
    W = w_hat
    pw = outer(P, W)
    cov = (
        c1 * outer(P, P)
        + c2 * (pw + outer(W, P))
        + c3 * outer(W, W)
        + outer(P, c4)
        + outer(c4, P)
        + outer(W, c5)
        + outer(c5, W)
        + c6
    ).reshape(-1, 2, 2)
    return mean, 0.5 * (cov + jnp.swapaxes(cov, 1, 2))


def _paper_accel_steering(mu_u, std_u, z0, dt, kappa_lin):
    """Paper-style (std-sum) propagation for (a, delta): our reconstruction.

    No printed variance recursion for the acceleration-steering formulation was available
    to us (the paper's predecessor derives it in an appendix); this reconstruction applies
    the std-sum rules printed for the other formulations:
    sigma_v accumulates sigma_a dt, sigma_theta accumulates dt (|kappa| sigma_v +
    v |dkappa| sigma_delta), and the positions follow the printed speed-heading recursion
    with s := v_t, theta := theta_t. Every recursion is a cumulative sum (no sequential
    scan).
    """
    kap, dkap = kappa_lin(mu_u[:, 1])
    v, _, e, mean = _bicycle_mean(mu_u[:, 0], kap, z0, dt)
    c, s = e[:, 0], e[:, 1]
    sv = dt * _excl_cumsum(std_u[:, 0])
    sth = dt * _excl_cumsum(jnp.abs(kap) * sv + jnp.abs(v * dkap) * std_u[:, 1])
    r2 = 1.0 / jnp.sqrt(2.0)
    sx = dt * _cumsum(-v * sth * s + sv * c - r2 * sv * sth * s)
    sy = dt * _cumsum(v * sth * c + sv * s + r2 * sv * sth * c)
    return mean, jax.vmap(jnp.diag)(jnp.stack([sx**2, sy**2], -1))


def psd_sqrt(cov):
    """Symmetric square root of PSD 2x2 matrices (works for singular ones).

    Closed form :math:`\\sqrt{A} = (A + \\sqrt{\\det A}\\,I) / \\sqrt{\\operatorname{tr} A +
    2\\sqrt{\\det A}}` (zero for :math:`A = 0`); cheaper to compile than ``eigh``.
    """
    a, b, d = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    s = jnp.sqrt(jnp.clip(a * d - b * b, 0.0))
    t = jnp.sqrt(jnp.clip(a + d + 2.0 * s, 0.0))
    ok = t > 0
    inv = jnp.where(ok, 1.0 / jnp.where(ok, t, 1.0), 0.0)
    eye = jnp.eye(2, dtype=cov.dtype)
    return (cov + s[..., None, None] * eye) * inv[..., None, None]
