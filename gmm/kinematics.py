"""Kinematic bicycle model and Gaussian propagation of stochastic controls.

Implements the kinematic priors of Zheng et al. (2024): per-step Gaussian controls are
integrated with an explicit-Euler kinematic model into per-step position Gaussians.

The paper's printed variance recursions sum *standard deviations*,
:math:`\\sigma_{t+1} = \\sigma_t + \\sigma_u\\Delta t`; the printed speed-heading recursion
sums signed ones and gives the product of two independent standard normals the variance
:math:`1/\\sqrt{2}` instead of 1. Under the paper's own assumption of controls independent
over time, variances add instead, so the default ``method="exact"`` propagates
(co)variances (exactly for the linear formulations, to first order with full
cross-covariances otherwise); ``method="paper"`` keeps the printed formulas for ablations
only.

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

====================  ==========================================  =================
``formulation``       controls                                    model
====================  ==========================================  =================
``"velocity"``        :math:`(v_x, v_y)`                          single integrator
``"acceleration"``    :math:`(a_x, a_y)`                          double integrator
``"speed_heading"``   :math:`(s, \\theta)` (absolute heading)      unicycle
``"accel_steering"``  :math:`(a, \\delta)` or :math:`(a, \\kappa)`  kinematic bicycle
====================  ==========================================  =================

For ``"accel_steering"``, ``wheelbase=L`` means the second control is the steering angle
:math:`\\delta` (:math:`\\dot\\theta = v \\tan\\delta / L`); ``wheelbase=None`` means it is
the curvature :math:`\\kappa` (:math:`\\dot\\theta = v\\kappa`), which is linear in the
control and avoids the ``tan`` blow-up. The formulations are the paper's formulations 1
(velocity), 2 (acceleration), 3 (speed and heading) and 4 (acceleration and steering of
the kinematic bicycle).

The unvalidated single-trajectory cores live in ``gmm._kinematics_core``; this module
validates, broadcasts batch dimensions and compiles them.

References
----------
L. Zheng, S. Son, J. Liang, X. Wang, B. Clipp, M. C. Lin, "Deep Stochastic Kinematic
Models for Probabilistic Motion Forecasting in Traffic", IROS 2024, arXiv:2406.01431.

J. Kong, M. Pfeiffer, G. Schildbach, F. Borrelli, "Kinematic and dynamic vehicle models
for autonomous driving control design", IEEE Intelligent Vehicles Symposium, 2015.

R. Rajamani, "Vehicle Dynamics and Control", 2nd ed., Springer, 2012.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gmm._kinematics_core import propagate_single, psd_sqrt, rollout_single

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

    the rear-axle kinematic bicycle without slip (Rajamani, 2012; Kong et al., 2015),
    discretised with explicit Euler as in Zheng et al. (2024). With ``wheelbase=None`` the
    second control is the curvature :math:`\\kappa` and :math:`\\tan\\delta / L` is replaced
    by :math:`\\kappa`.

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
        lambda c, s: rollout_single(c, s, dt, wb, formulation),
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


@partial(jax.jit, static_argnames=("formulation", "method", "curvature"))
def _propagate_core(mu_u, cov_u, z0, dt, wheelbase, *, formulation, method, curvature):
    batch = jnp.broadcast_shapes(mu_u.shape[:-2], cov_u.shape[:-3], z0.shape[:-1])
    wb = None if curvature else wheelbase
    return _batched(
        lambda m, c, z: propagate_single(m, c, z, dt, wb, formulation, method),
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
    initial state is known. For the linear formulations the result is exact, with
    :math:`W[t,\\tau] = \\max(t-1-\\tau, 0)` the lag of the acceleration control
    :math:`\\tau` at step :math:`t`:

    .. math::

        \\text{velocity:}\\quad \\Sigma^p_t = \\Delta t^2 \\sum_{\\tau<t} \\Sigma^v_\\tau,
        \\qquad
        \\text{acceleration:}\\quad \\Sigma^p_t = \\Delta t^4 \\sum_{\\tau} W[t,\\tau]^2
        \\Sigma^a_\\tau .

    For the heading formulations ``method="exact"`` is the first-order (EKF) propagation
    with full cross-covariances, Jacobians evaluated at the mean trajectory,

    .. math::

        \\mu^z_{t+1} = f(\\mu^z_t, \\mu^u_t),\\qquad
        \\Sigma^z_{t+1} = F_t \\Sigma^z_t F_t^\\top + G_t \\Sigma^u_t G_t^\\top,

    which for ``"speed_heading"`` (:math:`F = I`) is a cumulative sum of linearised
    increments; for ``"accel_steering"`` the same recursion is evaluated without a
    sequential scan, as :math:`\\Sigma^p_t = \\sum_\\tau J_{t\\tau}\\Sigma^u_\\tau
    J_{t\\tau}^\\top` with the separable Euler Jacobian (a few prefix sums, O(T)).
    ``method="moment"`` matches the first two moments of
    :math:`s(\\cos\\theta, \\sin\\theta)` exactly (the mean shrinks by
    :math:`e^{-\\sigma_\\theta^2/2}`, which first order misses); for ``"accel_steering"``
    it is an assumed-density filter using the exact Gaussian moments of
    :math:`v e^{i\\theta}` with the state's heading-speed correlation (``tan`` is still
    linearised when a wheelbase is given).
    For the linear formulations ``"moment"`` equals ``"exact"``.

    ``method="paper"`` reproduces the paper's printed recursions, which sum standard
    deviations, :math:`\\sigma_{t+1} = \\sigma_t + \\sigma_u\\Delta t`, per axis (diagonal
    output covariances). Summing standard deviations is the perfectly-correlated-over-time
    case, so under the paper's stated independence they are wrong; the printed
    speed-heading recursion also sums signed terms and gives the product of two
    independent standard normals the variance :math:`1/\\sqrt{2}` (it is 1). For
    acceleration-steering no printed recursion was available; ``"paper"`` applies the
    same std-sum rules. Kept only for ablations.

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


@partial(
    jax.jit,
    static_argnames=("formulation", "curvature", "n_samples", "batch_size"),
)
def _mc_core(mu_u, cov_u, z0, dt, wheelbase, key, *, formulation, curvature, n_samples, batch_size):
    wb = None if curvature else wheelbase
    root = psd_sqrt(cov_u)  # (T, 2, 2)
    n_batches = n_samples // batch_size
    T = mu_u.shape[0]

    def body(acc, k):
        s1, s2 = acc
        eps = jax.random.normal(k, (batch_size, T, 2), mu_u.dtype)
        u = mu_u + jnp.einsum("tij,ntj->nti", root, eps)
        pos = jax.vmap(lambda c: rollout_single(c, z0, dt, wb, formulation))(u)
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
