"""Kinematic bicycle model and Gaussian propagation of stochastic controls.

Implements the kinematic priors of Zheng et al. (2024), "Deep Stochastic Kinematic
Models for Probabilistic Motion Forecasting in Traffic": per-step Gaussian controls are
integrated with an explicit-Euler kinematic model into per-step position Gaussians.

The paper's printed variance recursions sum *standard deviations* (and, for the
speed-heading model, signed ones with a wrong :math:`1/\\sqrt{2}` factor). Under the
paper's own assumption of controls independent over time this is wrong, so the default
``method="exact"`` propagates (co)variances properly; ``method="paper"`` keeps the printed
formulas for ablations only.

Conventions
-----------
* State :math:`z = (x, y, \\theta, v)` (position, heading, speed).
* Controls ``u[t]`` (index ``t = 0..T-1``) act on the interval ``[t, t+1)``; outputs are
  the positions at steps ``1..T``. Under explicit Euler, a velocity or speed-heading
  control at ``t`` moves the position at ``t+1``; an acceleration or steering control at
  ``t`` first moves it at ``t+2``, so ``position_cov[..., 0, :, :] == 0`` for
  ``"acceleration"`` and ``"accel_steering"``.
* The initial state is known exactly (zero covariance).

Formulations (the two control channels of ``control_mean[..., t, :]``)

===================  =====================================  ============================
``formulation``      controls                               model
===================  =====================================  ============================
``"velocity"``       :math:`(v_x, v_y)`                     single integrator (linear)
``"acceleration"``   :math:`(a_x, a_y)`                     double integrator (linear)
``"speed_heading"``  :math:`(s, \\theta)` (absolute heading)  unicycle increments
``"accel_steering"`` :math:`(a, \\delta)` or :math:`(a, \\kappa)`  kinematic bicycle
===================  =====================================  ============================

For ``"accel_steering"``, ``wheelbase=L`` means the second control is the steering angle
:math:`\\delta` (:math:`\\dot\\theta = v \\tan\\delta / L`); ``wheelbase=None`` means it is
the curvature :math:`\\kappa` (:math:`\\dot\\theta = v\\kappa`), which is linear in the
control and avoids the ``tan`` blow-up.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "FORMULATIONS",
    "METHODS",
    "PropagationResult",
    "bicycle_step",
    "monte_carlo_moments",
    "propagate",
    "rollout",
]

FORMULATIONS = ("velocity", "acceleration", "speed_heading", "accel_steering")
METHODS = ("exact", "moment", "paper")


class PropagationResult(NamedTuple):
    """Per-step position Gaussians.

    Attributes
    ----------
    position_mean : array of shape (..., T, 2)
    position_cov : array of shape (..., T, 2, 2)
    """

    position_mean: jax.Array
    position_cov: jax.Array


# ----------------------------------------------------------------------------- validation


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}.")


def _check_scalar(name: str, value, *, allow_none: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} must be a positive float; got None.")
    if _is_concrete(value):
        v = np.asarray(value)
        if v.ndim != 0 or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite scalar; got {value!r}.")


def _check_finite(name: str, x) -> None:
    if _is_concrete(x):
        arr = np.asarray(x)
        if not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{name} contains NaN or inf ({int(np.sum(~np.isfinite(arr)))} entries). "
                "Remove or impute non-finite values before propagating."
            )


def _check_controls(control_mean, control_cov, initial_state):
    control_mean = jnp.asarray(control_mean)
    initial_state = jnp.asarray(initial_state)
    if control_mean.ndim < 2 or control_mean.shape[-1] != 2:
        raise ValueError(
            f"control_mean must have shape (..., T, 2) with T >= 1; got shape {control_mean.shape}."
        )
    if control_mean.shape[-2] < 1:
        raise ValueError(
            f"control_mean needs at least one time step; got shape {control_mean.shape}."
        )
    if initial_state.ndim < 1 or initial_state.shape[-1] != 4:
        raise ValueError(
            "initial_state must have shape (..., 4) = (x, y, heading, speed); "
            f"got shape {initial_state.shape}."
        )
    _check_finite("control_mean", control_mean)
    _check_finite("initial_state", initial_state)
    if control_cov is not None:
        control_cov = jnp.asarray(control_cov)
        T = control_mean.shape[-2]
        if control_cov.ndim < 3 or control_cov.shape[-3:] != (T, 2, 2):
            raise ValueError(
                f"control_cov must have shape (..., {T}, 2, 2) to match control_mean "
                f"{control_mean.shape}; got shape {control_cov.shape}."
            )
        _check_finite("control_cov", control_cov)
        if _is_concrete(control_cov):
            c = np.asarray(control_cov, dtype=float)
            sym = np.abs(c - np.swapaxes(c, -1, -2)).max() if c.size else 0.0
            scale = max(1.0, float(np.abs(c).max()) if c.size else 1.0)
            if sym > 1e-8 * scale:
                raise ValueError(
                    "control_cov must be symmetric; got max |C - C^T| = "
                    f"{sym:.3g}. Symmetrise it, e.g. (C + C^T) / 2."
                )
            diag = np.diagonal(c, axis1=-2, axis2=-1)
            det = c[..., 0, 0] * c[..., 1, 1] - c[..., 0, 1] ** 2
            if np.any(diag < -1e-12 * scale) or np.any(det < -1e-10 * scale**2):
                raise ValueError(
                    "control_cov must be positive semi-definite (variances >= 0 and "
                    "det >= 0 per step); got a matrix violating it. Build it as L L^T."
                )
    batch = jnp.broadcast_shapes(
        control_mean.shape[:-2],
        initial_state.shape[:-1],
        *(() if control_cov is None else (control_cov.shape[:-3],)),
    )
    return control_mean, control_cov, initial_state, batch


# -------------------------------------------------------------------------- deterministic


def bicycle_step(state, control, *, dt, wheelbase=None):
    """One explicit-Euler step of the kinematic bicycle model.

    .. math::

        x' = x + v\\cos\\theta\\,\\Delta t,\\quad y' = y + v\\sin\\theta\\,\\Delta t,\\quad
        \\theta' = \\theta + v\\,\\frac{\\tan\\delta}{L}\\,\\Delta t,\\quad v' = v + a\\,\\Delta t

    (note section 2 / 4.4). With ``wheelbase=None`` the second control is the curvature
    :math:`\\kappa` and :math:`\\tan\\delta / L` is replaced by :math:`\\kappa`.

    Parameters
    ----------
    state : array of shape (..., 4)
        ``(x, y, heading, speed)``.
    control : array of shape (..., 2)
        ``(acceleration, steering angle)`` or ``(acceleration, curvature)``.
    dt : float
        Step length.
    wheelbase : float or None
        Wheelbase :math:`L`; ``None`` selects the curvature form.

    Returns
    -------
    next_state : array of shape (..., 4)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> s = bicycle_step(jnp.array([0.0, 0.0, 0.0, 10.0]), jnp.array([1.0, 0.0]), dt=0.1)
    >>> [round(float(v), 3) for v in s]
    [1.0, 0.0, 0.0, 10.1]
    """
    x, y, th, v = (state[..., i] for i in range(4))
    a, d = control[..., 0], control[..., 1]
    kappa = d if wheelbase is None else jnp.tan(d) / wheelbase
    return jnp.stack(
        [x + v * jnp.cos(th) * dt, y + v * jnp.sin(th) * dt, th + v * kappa * dt, v + a * dt],
        axis=-1,
    )


def _rollout_single(controls, state0, dt, wheelbase, formulation):
    """Deterministic positions (T, 2) for one trajectory (controls (T, 2), state0 (4,))."""
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
    horizons here (T <= a few hundred) a (T, T) matmul is several times faster, forward
    and backward.
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


def _batched(fn, batch, *arrays_and_ndims):
    """Broadcast leading batch dims, vmap ``fn`` over them, restore the batch shape."""
    flat = []
    for arr, core_ndim in arrays_and_ndims:
        arr = jnp.broadcast_to(arr, batch + arr.shape[arr.ndim - core_ndim :])
        flat.append(arr.reshape((-1,) + arr.shape[len(batch) :]))
    out = jax.vmap(fn)(*flat)
    return jax.tree_util.tree_map(lambda o: o.reshape(batch + o.shape[1:]), out)


def _as_float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@partial(jax.jit, static_argnames=("formulation", "curvature"))
def _rollout_core(controls, initial_state, dt, wheelbase, *, formulation, curvature):
    batch = jnp.broadcast_shapes(controls.shape[:-2], initial_state.shape[:-1])
    wb = None if curvature else wheelbase
    return _batched(
        lambda c, s: _rollout_single(c, s, dt, wb, formulation),
        batch,
        (controls, 2),
        (initial_state, 1),
    )


def rollout(controls, initial_state, *, dt, formulation="accel_steering", wheelbase=None):
    """Deterministic explicit-Euler rollout of a control sequence.

    Parameters
    ----------
    controls : array of shape (..., T, 2)
        Control sequence (see the module docstring for each formulation).
    initial_state : array of shape (..., 4)
        ``(x, y, heading, speed)`` at step 0.
    dt : float
        Step length in seconds.
    formulation : {"velocity", "acceleration", "speed_heading", "accel_steering"}
    wheelbase : float or None
        Only for ``"accel_steering"``: steering angle if given, curvature if ``None``.

    Returns
    -------
    positions : array of shape (..., T, 2)
        Positions at steps ``1..T``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = rollout(jnp.ones((3, 2)), jnp.zeros(4), dt=0.5, formulation="velocity")
    >>> p[-1].tolist()
    [1.5, 1.5]
    """
    _check_choice("formulation", formulation, FORMULATIONS)
    _check_scalar("dt", dt)
    _check_scalar("wheelbase", wheelbase, allow_none=True)
    controls, _, initial_state, _ = _check_controls(controls, None, initial_state)
    controls, initial_state = _as_float(controls), _as_float(initial_state)
    wb = jnp.asarray(1.0 if wheelbase is None else wheelbase, controls.dtype)
    return _rollout_core(
        controls,
        initial_state,
        jnp.asarray(dt, controls.dtype),
        wb,
        formulation=formulation,
        curvature=wheelbase is None,
    )


# ------------------------------------------------------------------------- Gaussian parts


def _lag_weights(T: int, dtype):
    """W[t, tau] = max(t - 1 - tau, 0) for rows t = 1..T and columns tau = 0..T-1 (4.2)."""
    t = np.arange(1, T + 1)[:, None]
    tau = np.arange(T)[None, :]
    return jnp.asarray(np.maximum(t - 1 - tau, 0), dtype=dtype)


def _polar_moments(mu_r, mu_th, var_r, var_th, cov_rth):
    """Exact mean and covariance of ``r (cos th, sin th)`` for jointly Gaussian (r, th).

    Uses the tilted characteristic function
    :math:`E[f(r)e^{ik\\theta}] = e^{ik\\mu_\\theta - k^2\\sigma_\\theta^2/2}\\,
    E f(\\tilde r)`, :math:`\\tilde r\\sim N(\\mu_r + ik\\sigma_{r\\theta}, \\sigma_r^2)`
    (note section 4.3, generalised to correlated r and theta).
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


def _propagate_single(mu_u, cov_u, z0, dt, wheelbase, formulation, method):
    """Position moments (T, 2), (T, 2, 2) for one trajectory."""
    T = mu_u.shape[0]
    dtype = mu_u.dtype
    p0 = z0[:2]
    std_u = jnp.sqrt(jnp.clip(jnp.diagonal(cov_u, axis1=-2, axis2=-1), 0.0))  # (T, 2)

    if formulation == "velocity":
        mean = p0 + dt * jnp.cumsum(mu_u, axis=0)
        if method == "paper":  # printed: sigma_{t+1} = sigma_t + sigma_v dt (std sum)
            sd = dt * jnp.cumsum(std_u, axis=0)
            return mean, jax.vmap(jnp.diag)(sd**2)
        return mean, dt**2 * jnp.cumsum(cov_u, axis=0)  # note eq. 4.1

    if formulation == "acceleration":
        W = _lag_weights(T, dtype)
        v0 = z0[3] * jnp.stack([jnp.cos(z0[2]), jnp.sin(z0[2])])
        steps = jnp.arange(1, T + 1, dtype=dtype)[:, None]
        mean = p0 + steps * dt * v0 + dt**2 * (W @ mu_u)  # note eq. 4.2
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
        # exact: first-order Jacobian per increment, F = I (note 4.3)
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
    """First-order (EKF) propagation for (a, delta) in O(T) cumulative sums (note 4.4).

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
    """Paper-style (std-sum) reconstruction for (a, delta); note section 3, F4 [derived].

    No printed formula exists; this applies the printed std-sum rules: sigma_v accumulates
    sigma_a dt, sigma_theta accumulates dt (|kappa| sigma_v + v |dkappa| sigma_delta), and
    the positions follow the printed speed-heading (F3) recursion with s := v_t,
    theta := theta_t. Every recursion is a cumulative sum (no sequential scan).
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


@partial(jax.jit, static_argnames=("formulation", "method", "curvature"))
def _propagate_core(mu_u, cov_u, z0, dt, wheelbase, *, formulation, method, curvature):
    batch = jnp.broadcast_shapes(mu_u.shape[:-2], cov_u.shape[:-3], z0.shape[:-1])
    wb = None if curvature else wheelbase
    return _batched(
        lambda m, c, z: _propagate_single(m, c, z, dt, wb, formulation, method),
        batch,
        (mu_u, 2),
        (cov_u, 3),
        (z0, 1),
    )


def propagate(
    control_mean,
    control_cov,
    initial_state,
    *,
    dt,
    formulation="accel_steering",
    method="exact",
    wheelbase=None,
) -> PropagationResult:
    """Propagate per-step Gaussian controls to per-step position Gaussians.

    Controls are independent over time, :math:`u_t \\sim N(\\mu^u_t, \\Sigma^u_t)`, and the
    initial state is known. For the linear formulations the result is exact
    (note eqs. 4.1-4.2, :math:`W[t,\\tau] = \\max(t-1-\\tau, 0)`):

    .. math::

        \\text{velocity:}\\quad \\Sigma^p_t = \\Delta t^2 \\sum_{\\tau<t} \\Sigma^v_\\tau,
        \\qquad
        \\text{acceleration:}\\quad \\Sigma^p_t = \\Delta t^4 \\sum_{\\tau} W[t,\\tau]^2
        \\Sigma^a_\\tau .

    For the heading formulations ``method="exact"`` is the first-order (EKF) propagation
    with full cross-covariances (note section 4.4),

    .. math::

        \\mu^z_{t+1} = f(\\mu^z_t, \\mu^u_t),\\qquad
        \\Sigma^z_{t+1} = F_t \\Sigma^z_t F_t^\\top + G_t \\Sigma^u_t G_t^\\top,

    which for ``"speed_heading"`` (:math:`F = I`) is a cumulative sum of linearised
    increments; for ``"accel_steering"`` the same recursion is evaluated without a
    sequential scan, as :math:`\\Sigma^p_t = \\sum_\\tau J_{t\\tau}\\Sigma^u_\\tau
    J_{t\\tau}^\\top` with the separable Euler Jacobian (a few prefix sums, O(T)).
    ``method="moment"`` matches the first two moments of
    :math:`s(\\cos\\theta, \\sin\\theta)` exactly (note section 4.3: mean shrinks by
    :math:`e^{-\\sigma_\\theta^2/2}`); for ``"accel_steering"`` it is an assumed-density
    filter using the exact Gaussian moments of :math:`v e^{i\\theta}` with the state's
    heading-speed correlation (``tan`` is still linearised when a wheelbase is given).
    For the linear formulations ``"moment"`` equals ``"exact"``.

    ``method="paper"`` reproduces the printed recursions (note section 3) that sum
    standard deviations, e.g. :math:`\\sigma_{t+1} = \\sigma_t + \\sigma_u\\Delta t`,
    with diagonal output covariances; it is wrong under the stated independence and is
    kept only for ablations.

    Parameters
    ----------
    control_mean : array of shape (..., T, 2)
        Per-step control means.
    control_cov : array of shape (..., T, 2, 2)
        Per-step control covariances (symmetric positive semi-definite).
    initial_state : array of shape (..., 4)
        ``(x, y, heading, speed)``; ``"velocity"`` and ``"speed_heading"`` use only the
        position, ``"acceleration"`` also the initial velocity.
    dt : float
        Step length in seconds (traced; changing it does not recompile).
    formulation : {"velocity", "acceleration", "speed_heading", "accel_steering"}
    method : {"exact", "moment", "paper"}
    wheelbase : float or None
        Only for ``"accel_steering"``; ``None`` means the second control is a curvature.

    Returns
    -------
    PropagationResult
        ``position_mean`` of shape (..., T, 2) and ``position_cov`` of shape
        (..., T, 2, 2) for steps ``1..T`` (batch dimensions broadcast).

    Raises
    ------
    ValueError
        On unknown ``formulation``/``method``, wrong shapes, non-finite or
        non-positive-semi-definite input, non-positive ``dt`` or ``wheelbase``.

    References
    ----------
    L. Zheng et al., "Deep Stochastic Kinematic Models for Probabilistic Motion
    Forecasting in Traffic", IROS 2024, arXiv:2406.01431.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> mean, cov = propagate(jnp.zeros((4, 2)), jnp.tile(jnp.eye(2), (4, 1, 1)),
    ...                       jnp.zeros(4), dt=0.5, formulation="velocity")
    >>> float(cov[-1, 0, 0])  # 4 steps * 0.5**2 * 1
    1.0
    """
    _check_choice("formulation", formulation, FORMULATIONS)
    _check_choice("method", method, METHODS)
    _check_scalar("dt", dt)
    _check_scalar("wheelbase", wheelbase, allow_none=True)
    if control_cov is None:
        raise ValueError("control_cov must be an array of shape (..., T, 2, 2); got None.")
    mu_u, cov_u, z0, _ = _check_controls(control_mean, control_cov, initial_state)
    dtype = jnp.result_type(_as_float(mu_u).dtype, _as_float(cov_u).dtype, _as_float(z0).dtype)
    mu_u, cov_u, z0 = (jnp.asarray(a, dtype) for a in (mu_u, cov_u, z0))
    wb = jnp.asarray(1.0 if wheelbase is None else wheelbase, dtype)
    mean, cov = _propagate_core(
        mu_u,
        cov_u,
        z0,
        jnp.asarray(dt, dtype),
        wb,
        formulation=formulation,
        method=method,
        curvature=wheelbase is None,
    )
    return PropagationResult(mean, cov)


# ----------------------------------------------------------------------------- Monte Carlo


def _psd_sqrt(cov):
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


@partial(
    jax.jit,
    static_argnames=("formulation", "curvature", "n_samples", "batch_size"),
)
def _mc_core(mu_u, cov_u, z0, dt, wheelbase, key, *, formulation, curvature, n_samples, batch_size):
    wb = None if curvature else wheelbase
    root = _psd_sqrt(cov_u)  # (T, 2, 2)
    n_batches = n_samples // batch_size
    T = mu_u.shape[0]

    def body(acc, k):
        s1, s2 = acc
        eps = jax.random.normal(k, (batch_size, T, 2), mu_u.dtype)
        u = mu_u + jnp.einsum("tij,ntj->nti", root, eps)
        pos = jax.vmap(lambda c: _rollout_single(c, z0, dt, wb, formulation))(u)
        return (s1 + pos.sum(0), s2 + jnp.einsum("nti,ntj->tij", pos, pos)), None

    zeros = (jnp.zeros((T, 2), mu_u.dtype), jnp.zeros((T, 2, 2), mu_u.dtype))
    (s1, s2), _ = lax.scan(body, zeros, jax.random.split(key, n_batches))
    n = n_batches * batch_size
    mean = s1 / n
    cov = (s2 - n * jnp.einsum("ti,tj->tij", mean, mean)) / (n - 1)
    return mean, cov


def monte_carlo_moments(
    control_mean,
    control_cov,
    initial_state,
    *,
    dt,
    formulation="accel_steering",
    wheelbase=None,
    n_samples=100_000,
    key,
    batch_size=10_000,
) -> PropagationResult:
    """Sampled reference for :func:`propagate`: roll out Gaussian control draws.

    Draws ``n_samples`` control sequences :math:`u_t \\sim N(\\mu^u_t, \\Sigma^u_t)`
    independently over time, integrates each with :func:`rollout`, and returns the sample
    mean and (unbiased) covariance of the positions. Sums are accumulated in batches of
    ``batch_size`` inside a ``lax.scan``, so memory stays bounded.

    Parameters
    ----------
    control_mean : array of shape (T, 2)
    control_cov : array of shape (T, 2, 2)
    initial_state : array of shape (4,)
    dt : float
    formulation : str
    wheelbase : float or None
    n_samples : int
        Number of rollouts; rounded down to a multiple of ``batch_size``.
    key : jax.Array
        PRNG key.
    batch_size : int

    Returns
    -------
    PropagationResult
        Sample ``position_mean`` (T, 2) and ``position_cov`` (T, 2, 2).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> m, c = monte_carlo_moments(jnp.zeros((2, 2)), jnp.tile(jnp.eye(2), (2, 1, 1)),
    ...                            jnp.zeros(4), dt=1.0, formulation="velocity",
    ...                            n_samples=20_000, key=jax.random.PRNGKey(0))
    >>> round(float(c[-1, 0, 0]), 0)
    2.0
    """
    _check_choice("formulation", formulation, FORMULATIONS)
    _check_scalar("dt", dt)
    _check_scalar("wheelbase", wheelbase, allow_none=True)
    mu_u, cov_u, z0, batch = _check_controls(control_mean, control_cov, initial_state)
    if batch != ():
        raise ValueError(
            "monte_carlo_moments takes one trajectory: control_mean (T, 2), control_cov "
            f"(T, 2, 2), initial_state (4,); got batch shape {batch}. Loop or vmap outside."
        )
    if int(n_samples) < 2 or int(batch_size) < 1:
        raise ValueError(
            f"n_samples must be >= 2 and batch_size >= 1; got {n_samples}, {batch_size}."
        )
    batch_size = min(int(batch_size), int(n_samples))
    dtype = jnp.result_type(_as_float(mu_u).dtype, _as_float(cov_u).dtype)
    mu_u, cov_u, z0 = (jnp.asarray(a, dtype) for a in (mu_u, cov_u, z0))
    wb = jnp.asarray(1.0 if wheelbase is None else wheelbase, dtype)
    mean, cov = _mc_core(
        mu_u,
        cov_u,
        z0,
        jnp.asarray(dt, dtype),
        wb,
        key,
        formulation=formulation,
        curvature=wheelbase is None,
        n_samples=int(n_samples),
        batch_size=batch_size,
    )
    return PropagationResult(mean, cov)
