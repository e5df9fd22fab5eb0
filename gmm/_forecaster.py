"""GMM trajectory forecaster with a stochastic kinematic prior (Zheng et al., 2024).

Functional core: an MLP maps the agent-frame history to K mode logits and, per mode and
future step, a Gaussian over the formulation's controls; the kinematic cores
(``gmm._kinematics_core``, public API :mod:`gmm.kinematics`) integrate the controls
into per-step position Gaussians; training minimises a winner-takes-all or full-mixture
NLL with optax, the densities coming from one
:class:`mixtures.distributions.GaussianMixture` per agent. The sklearn estimator
:class:`KinematicGMMForecaster` is the shell.
"""

from __future__ import annotations

from functools import partial
from numbers import Integral, Real
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import minimize_scalar
from scipy.special import gammaincinv, softmax
from sklearn.base import clone
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array
from tqdm.auto import tqdm

from gmm import metrics as _metrics
from gmm._kinematics_core import propagate_single, psd_sqrt, rollout_single
from gmm._trajectory_mixture import step_mixture, trajectory_log_prob
from gmm.kinematics import FORMULATIONS, METHODS
from mixtures.base import (
    RANDOM_STATE,
    MixprocEstimator,
    check_finite_result,
    random_state_to_key,
    to_numpy,
    x64_scope,
)
from mixtures.distributions import GaussianMixture

__all__ = ["KinematicGMMForecaster", "constant_velocity_forecast", "social_attention"]

_N_PARAMS = 5  # per mode and step: 2 means, 2 log-stds, 1 correlation


class _Config(NamedTuple):
    """Structural (static) choices: changing any of them recompiles."""

    n_modes: int
    horizon: int
    formulation: str
    method: str
    variance: str
    loss: str
    curvature: bool
    encoder: str = "mlp"
    social: str | None = None
    tail: str | None = None  # None (Gaussian), "fixed" or "learn" (Student-t df)
    mean_output: str = "controls"  # or "path" / "cv_offset" / "speed_fan" (linear ones)


# mean outputs whose mean controls are finite differences of an output path
_PATH_OUTPUTS = ("path", "cv_offset", "speed_fan")
_LINEAR_FORMULATIONS = ("acceleration", "velocity")  # controls are finite differences
_SEQ_FEATURES = 4  # per history step for the GRU: agent-frame position and displacement


# ------------------------------------------------------------------------- preprocessing


def _agent_frame(history, dt):
    """Current position, heading, speed and the rotated, centred history (NumPy).

    Heading and speed come from the mean velocity over the last ``min(H - 1, 3)`` steps;
    below 0.05 m/s the heading falls back to the whole-history displacement (or 0).
    """
    H = history.shape[1]
    k = min(H - 1, 3)
    p0 = history[:, -1]
    vel = (history[:, -1] - history[:, -1 - k]) / (k * dt)
    speed = np.linalg.norm(vel, axis=1)
    disp = history[:, -1] - history[:, 0]
    heading = np.where(
        speed > 0.05,
        np.arctan2(vel[:, 1], vel[:, 0]),
        np.where(np.linalg.norm(disp, axis=1) > 1e-6, np.arctan2(disp[:, 1], disp[:, 0]), 0.0),
    )
    c, s = np.cos(heading), np.sin(heading)
    R = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # agent -> world
    return p0, R, speed, _to_agent_frame(p0, R, history)


def _to_agent_frame(p0, R, xy):
    """World positions (N, T, 2) in each agent's frame: :math:`R^\top (x - p_0)`."""
    return np.einsum("nji,ntj->nti", R, xy - p0[:, None])


def constant_velocity_forecast(history, horizon, *, n_last=1):
    """Constant-velocity baseline: extrapolate the last observed displacement.

    .. math:: \\hat p_t = p_0 + t\\,(p_0 - p_{-n})/n

    Parameters
    ----------
    history : array-like of shape (N, H, 2)
    horizon : int
    n_last : int
        Number of past steps the velocity is averaged over (1: last displacement).

    Returns
    -------
    ndarray of shape (N, horizon, 2)

    Examples
    --------
    >>> import numpy as np
    >>> constant_velocity_forecast(np.array([[[0.0, 0.0], [1.0, 2.0]]]), 2)[0].tolist()
    [[2.0, 4.0], [3.0, 6.0]]
    """
    history = check_array(
        history, allow_nd=True, dtype=np.float64, ensure_all_finite=True, ensure_min_features=2
    )
    if history.ndim != 3 or history.shape[-1] != 2:
        raise ValueError(f"history must have shape (N, H, 2); got {history.shape}.")
    if not 1 <= n_last < history.shape[1]:
        raise ValueError(f"n_last must be in [1, H-1] = [1, {history.shape[1] - 1}]; got {n_last}.")
    v = (history[:, -1] - history[:, -1 - n_last]) / n_last
    t = np.arange(1, int(horizon) + 1)[None, :, None]
    return history[:, -1:, :] + t * v[:, None]


# ----------------------------------------------------------------------------- the core


def _init_mlp(rng, sizes, dtype):
    """He-normal weights (last layer scaled 0.01), zero biases, from a NumPy generator.

    Drawn with NumPy: eager ``jax.random.normal`` would compile once per layer shape.
    """
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        scale = 0.01 if last else np.sqrt(2.0 / n_in)
        W = scale * rng.standard_normal((n_in, n_out))
        params.append((jnp.asarray(W, dtype), jnp.zeros(n_out, dtype)))
    return params


def _init_params(key, cfg, n_x, n_nb, hidden_sizes, embed_dim, dtype):
    """All weights: the history encoder, the neighbour attention and the output MLP."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    n_out = cfg.n_modes * (1 + cfg.horizon * _N_PARAMS)
    params = {}
    n_agent = n_x
    if cfg.encoder == "gru":
        G, n_in = embed_dim, _SEQ_FEATURES

        def mat(a, b):
            return jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), dtype)

        params["gru"] = {
            "W": mat(n_in, 3 * G),  # input weights of the update, reset, candidate gates
            "U": mat(G, 3 * G),  # recurrent weights
            "b": jnp.zeros(3 * G, dtype),
        }
        n_agent = G + 1  # last hidden state and the current speed
    n_head_in = n_agent
    if cfg.social == "attention":
        D = embed_dim
        (emb,) = _init_mlp(rng, (n_nb, D, D), dtype)[:1]
        params["social"] = {
            "embed": emb,  # neighbour features -> D (GELU)
            "q": jnp.asarray(rng.standard_normal((n_agent, D)) / np.sqrt(n_agent), dtype),
            "k": jnp.asarray(rng.standard_normal((D, D)) / np.sqrt(D), dtype),
            "v": jnp.asarray(rng.standard_normal((D, D)) / np.sqrt(D), dtype),
        }
        n_head_in += D
    params["head"] = _init_mlp(rng, (n_head_in, *hidden_sizes, n_out), dtype)
    if cfg.tail == "learn":
        params["df"] = jnp.asarray(_DF_INIT_RAW, dtype)
    return params


_DF_INIT_RAW = float(np.log(np.expm1(4.0)))  # learned df = 1 + softplus(raw) starts at 5


def _df(params, hyper, cfg):
    """Student-t degrees of freedom of the predictive (None: Gaussian)."""
    if cfg.tail == "learn":
        return 1.0 + jax.nn.softplus(params["df"])
    return hyper["df"] if cfg.tail == "fixed" else None


def _mlp(params, x):
    for W, b in params[:-1]:
        x = jax.nn.gelu(x @ W + b)
    W, b = params[-1]
    return x @ W + b


def _heads(raw, speed, hyper, cfg):
    """Map raw outputs (K, T, 5) of one agent to control / position Gaussians."""
    S, dt, L = hyper["speed_scale"], hyper["dt"], hyper["wheelbase"]
    T = cfg.horizon
    Th = T * dt
    f = cfg.formulation
    r_mean, r_lstd, r_rho = raw[..., :2], raw[..., 2:4], raw[..., 4]
    if f == "velocity":
        scale = jnp.stack([S, S])
        mean = jnp.stack([speed + S * r_mean[..., 0], S * r_mean[..., 1]], -1)
    elif f == "acceleration":
        scale = jnp.stack([S / Th, S / Th])
        mean = scale * r_mean
    elif f == "speed_heading":
        scale = jnp.stack([S, jnp.ones_like(S)])
        mean = jnp.stack([speed + S * r_mean[..., 0], r_mean[..., 1]], -1)
    elif f == "accel_steering":
        k_scale = 1.0 / (S * Th)  # one radian of heading change over the horizon
        if cfg.curvature:
            scale = jnp.stack([S / Th, k_scale])
            mean = scale * r_mean
        else:
            scale = jnp.stack([S / Th, L * k_scale])
            mean = jnp.stack(
                [S / Th * r_mean[..., 0], 0.5 * jnp.tanh(L * k_scale * r_mean[..., 1] / 0.5)], -1
            )
    else:  # position: per-step positions in the agent frame, std scale S dt t
        mean = S * Th * r_mean
        t = jnp.arange(1, T + 1, dtype=raw.dtype)[:, None]
        return mean, _cov_from_raw(r_lstd, r_rho, S * dt * t)
    return mean, _cov_from_raw(r_lstd, r_rho, scale)


def _path_controls(r_mean, speed, hyper, cfg):
    r"""Mean controls (K, T, 2) whose rollout is the mode's output path, and an offset.

    ``mean_output="path"``: the raw means are each mode's path
    :math:`p_{k,t} = S\,T\Delta t\; r_{k,t}` in the agent frame, relative to the
    current position, at steps t = 1..T (the position head's parametrisation).
    ``mean_output="cv_offset"``: they are its displacement :math:`S\,T\Delta t\;
    r_{k,t}` from the constant-velocity path :math:`t\,\Delta t\,(v_0, 0)`.
    ``mean_output="speed_fan"``: the displacement from mode k's own anchor, the path
    :math:`t\,\Delta t\,(\beta_k v_0, 0)` at the fraction
    :math:`\beta_k = k / (K - 1)` of the observed speed (evenly from standing to keeping
    the speed; :math:`\beta_0 = 0` for one mode). In all three :math:`d_{k,t}` below is
    then the displacement from the constant-velocity path. The
    linear formulations recover the controls by finite differences (:math:`d_0 = 0`):
    ``"velocity"``: :math:`u_s = (v_0, 0) + (d_{s+1} - d_s)/\Delta t`; ``"acceleration"``:
    with :math:`e_t = d_t - t\,d_1`, :math:`u_s = (e_{s+2} - 2e_{s+1} + e_s)/\Delta t^2`
    for s = 0..T-2 (the last control moves no position and is 0), and the first step's
    displacement is the mode's correction :math:`d_1/\Delta t` of the initial velocity,
    whose mean contribution :math:`t\,d_1` is returned as ``offset`` (None for
    ``"velocity"``). The rollout of the controls plus the offset is the path exactly.
    """
    S, dt = hyper["speed_scale"], hyper["dt"]
    T = cfg.horizon
    t = jnp.arange(1, T + 1, dtype=r_mean.dtype)[:, None]
    d = S * T * dt * r_mean
    v0 = jnp.stack([speed, jnp.zeros_like(speed)])
    cv = t * dt * v0  # (T, 2): the constant-velocity path
    if cfg.mean_output == "path":  # the path itself: subtract the constant-velocity path
        d = d - cv
    elif cfg.mean_output == "speed_fan":  # mode k anchored at beta_k times the speed
        beta = jnp.arange(d.shape[0], dtype=d.dtype) / max(d.shape[0] - 1, 1)
        d = d - (1.0 - beta)[:, None, None] * cv
    K = d.shape[0]
    zero = jnp.zeros((K, 1, 2), d.dtype)
    if cfg.formulation == "velocity":
        dd = jnp.concatenate([zero, d], axis=1)
        return v0 + (dd[:, 1:] - dd[:, :-1]) / dt, None
    offset = t * d[:, :1]
    e = jnp.concatenate([zero, d - offset], axis=1)  # e_0 .. e_T, e_0 = e_1 = 0
    acc = (e[:, 2:] - 2.0 * e[:, 1:-1] + e[:, :-2]) / dt**2
    return jnp.concatenate([acc, zero], axis=1), offset


def _cov_from_raw(r_lstd, r_rho, scale):
    """2x2 covariances from raw log-stds (..., 2), raw correlations (...) and scales."""
    std = scale * jnp.exp(jnp.clip(r_lstd - 1.0, -9.0, 3.0))
    rho = 0.95 * jnp.tanh(r_rho)
    off = rho * std[..., 0] * std[..., 1]
    return jnp.stack(
        [jnp.stack([std[..., 0] ** 2, off], -1), jnp.stack([off, std[..., 1] ** 2], -1)], -2
    )


def _gru(p, seq):
    """Final hidden state of a GRU (Cho et al., 2014) over ``seq`` (H, F), from zeros."""
    G = p["U"].shape[0]

    def cell(h, x):
        gx, gh = x @ p["W"] + p["b"], h @ p["U"]
        z = jax.nn.sigmoid(gx[:G] + gh[:G])
        r = jax.nn.sigmoid(gx[G : 2 * G] + gh[G : 2 * G])
        c = jnp.tanh(gx[2 * G :] + r * gh[2 * G :])
        return (1.0 - z) * h + z * c, None

    h, _ = jax.lax.scan(cell, jnp.zeros(G, seq.dtype), seq)
    return h


def _layer_norm(x):
    """Zero mean, unit variance over the last axis (Ba et al., 2016), without gain."""
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-6)


def social_attention(p, agent, neighbours, mask):
    """Masked single-head attention of one agent over its neighbours.

    ``e_j = LN(GELU(W_e f_j + b_e))``, ``a_j = softmax_j(q^T k_j / sqrt(D))`` over the
    neighbours with ``mask[j]``, output ``sum_j a_j v_j`` (zeros when there is none), with
    ``q = W_q LN(agent)``, ``k_j = W_k e_j``, ``v_j = W_v e_j`` (Vaswani et al., 2017;
    LN is layer normalisation without gain, Ba et al., 2016, which keeps the attention
    logits of order one at initialisation whatever the scale of the inputs). The
    output does not depend on the order of the neighbour slots, nor on the content of
    masked slots.

    Parameters
    ----------
    p : dict
        ``"embed"`` (W_e, b_e), ``"q"``, ``"k"``, ``"v"``.
    agent : array of shape (A,)
    neighbours : array of shape (M, F)
    mask : array of bool of shape (M,)

    Returns
    -------
    array of shape (D,)
    """
    W, b = p["embed"]
    e = _layer_norm(jax.nn.gelu(neighbours @ W + b))
    q, k, v = _layer_norm(agent) @ p["q"], e @ p["k"], e @ p["v"]
    score = jnp.where(mask, k @ q / jnp.sqrt(q.shape[-1]), -jnp.inf)
    top = jnp.max(jnp.where(mask, score, 0.0))
    a = jnp.where(mask, jnp.exp(score - top), 0.0)
    a = a / jnp.maximum(a.sum(), 1e-30)
    return a @ v


def _encode(params, inp, cfg):
    """Input of the output MLP for one agent: history code (and social code)."""
    if cfg.encoder == "gru":
        agent = jnp.concatenate([_gru(params["gru"], inp["seq"]), inp["x"][-1:]])
    else:
        agent = inp["x"]
    if cfg.social == "attention":
        s = social_attention(params["social"], agent, inp["nb"], inp["nb_mask"])
        return jnp.concatenate([agent, s])
    return agent


def _forward_one(params, inp, hyper, cfg):
    """One agent: logits (K,), position means (K, T, 2), covs (K, T, 2, 2), controls."""
    K, T = cfg.n_modes, cfg.horizon
    speed = inp["speed"]
    out = _mlp(params["head"], _encode(params, inp, cfg))
    logits = out[:K]
    raw = out[K:].reshape(K, T, _N_PARAMS)
    u_mean, u_cov = _heads(raw, speed, hyper, cfg)
    offset = None
    if cfg.mean_output in _PATH_OUTPUTS:
        u_mean, offset = _path_controls(raw[..., :2], speed, hyper, cfg)
    dt = hyper["dt"]
    dtype = out.dtype
    z0 = jnp.stack([jnp.zeros((), dtype), jnp.zeros((), dtype), jnp.zeros((), dtype), speed])
    wb = None if cfg.curvature else hyper["wheelbase"]
    floor = hyper["min_std"] ** 2 * jnp.eye(2, dtype=dtype)
    u_cov = hyper["variance_scale"] * u_cov  # 1 unless calibrated (see ``calibrate``)
    if cfg.formulation == "position":
        return logits, u_mean, u_cov + floor, u_mean, u_cov
    if cfg.variance == "learned":  # deterministic kinematics, learned position variance
        mean = jax.vmap(lambda u: rollout_single(u, z0, dt, wb, cfg.formulation))(u_mean)
        t = jnp.arange(1, T + 1, dtype=dtype)[:, None]
        pos_cov = _cov_from_raw(raw[..., 2:4], raw[..., 4], hyper["speed_scale"] * dt * t)
        mean = mean if offset is None else mean + offset
        return logits, mean, hyper["variance_scale"] * pos_cov + floor, u_mean, u_cov
    mean, cov = jax.vmap(
        lambda m, c: propagate_single(m, c, z0, dt, wb, cfg.formulation, cfg.method)
    )(u_mean, u_cov)
    mean = mean if offset is None else mean + offset
    return logits, mean, cov + floor, u_mean, u_cov


def _forward(params, inp, hyper, cfg):
    return jax.vmap(lambda i: _forward_one(params, i, hyper, cfg))(inp)


def _loss_one(params, inp, y, hyper, cfg):
    """Training loss of one agent (``y`` (T, 2) in the agent frame); see the class doc."""
    logits, mean, cov, _, _ = _forward_one(params, inp, hyper, cfg)
    T = cfg.horizon
    df = _df(params, hyper, cfg)
    if cfg.loss == "wta":  # CE(mode) + NLL of the positive (min-ADE) mode
        ade = jnp.linalg.norm(jax.lax.stop_gradient(mean) - y[None], axis=-1).mean(-1)
        h = jnp.argmin(ade)
        # only the positive mode's Gaussians get gradients: factorise just those
        positive = step_mixture(jnp.ones(1, mean.dtype), mean[h][None], cov[h][None], df)
        return -jax.nn.log_softmax(logits)[h] - trajectory_log_prob(positive, y) / T
    mixture = step_mixture(jax.nn.softmax(logits), mean, cov, df)  # batch (T,), K modes
    return -trajectory_log_prob(mixture, y) / T  # full per-trajectory mixture NLL


def _make_optimizer(learning_rate):
    return optax.chain(
        optax.clip_by_global_norm(10.0),
        optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate),
    )


_STEPS_PER_CALL = 16  # minibatch steps per jitted call: the compiled shape never sees N


@partial(jax.jit, static_argnames=("cfg",))
def _train_steps(params, opt_state, inp, Y, weight, hyper, *, cfg):
    """Adam steps over a fixed-size chunk of minibatches (``lax.scan``).

    ``inp`` (a dict of arrays with leading axes (C, B)), ``Y`` (C, B, T, 2) and
    ``weight`` (C, B) hold C minibatches of B rows; ``weight`` is 1 for real rows and 0
    for padding, so the last, partial minibatch of an epoch and the tail of the last
    chunk cost no recompile. A minibatch whose weights are all zero leaves parameters
    and optimiser state unchanged.
    """
    opt = _make_optimizer(0.0)  # the learning rate lives (traced) in opt_state

    def batch_loss(p, i, y, w):
        losses = jax.vmap(lambda i1, y1: _loss_one(p, i1, y1, hyper, cfg))(i, y)
        return jnp.sum(w * losses) / jnp.maximum(jnp.sum(w), 1.0)

    def step(carry, batch):
        p, st = carry
        i, y, w = batch
        loss, g = jax.value_and_grad(batch_loss)(p, i, y, w)
        upd, st1 = opt.update(g, st, p)
        p1 = optax.apply_updates(p, upd)
        keep = jnp.sum(w) > 0
        p, st = jax.tree_util.tree_map(
            lambda new, old: jnp.where(keep, new, old), (p1, st1), (p, st)
        )
        return (p, st), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (inp, Y, weight))
    return params, opt_state, losses


def _minibatch_plan(n, batch_size, epochs, rng, *, align=False):
    """Row indices (n_steps, B), weights and epoch of every minibatch of every epoch.

    Each epoch is a fresh permutation cut into ``ceil(n / B)`` minibatches; the last one
    is padded with weight-0 rows. Steps are then padded to a multiple of
    :data:`_STEPS_PER_CALL` with all-zero-weight (no-op) minibatches, at the end, or with
    ``align`` after every epoch (so that every jitted call ends at or inside one epoch and
    a validation pass can follow each epoch). ``epoch`` is -1 on padding steps.
    """
    nb = -(-n // batch_size)
    per = nb + (-nb % _STEPS_PER_CALL if align else 0)
    idx = np.zeros((epochs, per, batch_size), dtype=np.int64)
    w = np.zeros((epochs, per, batch_size))
    ep = np.full((epochs, per), -1, dtype=np.int64)
    for e in range(epochs):
        rows = np.zeros(nb * batch_size, dtype=np.int64)
        rows[:n] = rng.permutation(n)
        idx[e, :nb] = rows.reshape(nb, batch_size)
        w[e, :nb] = (np.arange(nb * batch_size) < n).reshape(nb, batch_size)
        ep[e, :nb] = e
    idx, w, ep = idx.reshape(-1, batch_size), w.reshape(-1, batch_size), ep.ravel()
    pad = -len(idx) % _STEPS_PER_CALL
    idx = np.concatenate([idx, np.zeros((pad, batch_size), np.int64)])
    w = np.concatenate([w, np.zeros((pad, batch_size))])
    return idx, w, np.concatenate([ep, np.full(pad, -1, np.int64)])


_forward_jit = jax.jit(_forward, static_argnames=("cfg",))


@partial(jax.jit, static_argnames=("cfg",))
def _loss_jit(params, inp, Y, hyper, cfg):
    return jax.vmap(lambda i, y: _loss_one(params, i, y, hyper, cfg))(inp, Y)


_CHUNK = 256  # fixed row count of every forward call: one compile per config, any N


def _take(inp, rows):
    return {k: v[rows] for k, v in inp.items()}


def _chunks(inp, *extra):
    """Fixed-size (padded) row chunks of ``inp`` (and ``extra`` arrays) as JAX arrays."""
    n = len(inp["x"])
    for i in range(0, n, _CHUNK):
        rows = np.minimum(np.arange(i, i + _CHUNK), n - 1)  # pad with the last row
        yield (
            min(_CHUNK, n - i),
            {k: jnp.asarray(v) for k, v in _take(inp, rows).items()},
            [jnp.asarray(e[rows]) for e in extra],
        )


def _forward_chunked(params, inp, hyper, cfg):
    """NumPy outputs of :func:`_forward` over ``inp`` in fixed-size (padded) chunks."""
    parts = []
    for m, chunk, _ in _chunks(inp):
        out = _forward_jit(params, chunk, hyper, cfg=cfg)
        parts.append([np.asarray(o)[:m] for o in out])
    return tuple(np.concatenate(p) for p in zip(*parts))


def _loss_chunked(params, inp, Y, hyper, cfg):
    """Mean training loss over ``inp`` (NumPy float), in fixed-size chunks."""
    total = 0.0
    for m, chunk, (y,) in _chunks(inp, Y):
        total += float(np.asarray(_loss_jit(params, chunk, y, hyper, cfg=cfg))[:m].sum())
    return total / len(inp["x"])


def _calibrated_scale(sets, cfg, df):
    """Variance scale c minimising the per-step predictive NLL of held-out windows.

    ``sets`` is a list of ``(params, inputs, y, hyper)``: a fitted network with windows
    it was not trained on (the held-out windows of the fit, or each group of windows
    with the network fitted without it); the objective is the mean of their per-step
    NLLs, each set weighted equally.

    Every covariance the head produces is multiplied by c (the control covariances
    before the kinematic propagation, so the position covariances scale by c too and
    the samples stay consistent with them); the floor ``min_std`` is added after. One
    scalar fitted on held-out data is the variance analogue of temperature scaling
    (Guo et al., 2017; Levi et al., 2022, "Evaluating and calibrating uncertainty
    prediction in regression tasks"). ``hyper`` is traced, so no value of c recompiles.
    """

    def objective(log_c):
        total = 0.0
        for params, inp, y, hyper in sets:
            h = dict(hyper, variance_scale=jnp.asarray(np.exp(log_c), jnp.float64))
            logits, mean, cov, _, _ = _forward_chunked(params, inp, h, cfg)
            total += _metrics.nll(y, softmax(logits, axis=1), mean, cov, per="step", df=df)
        return total / len(sets)

    res = minimize_scalar(
        objective, bounds=(np.log(1 / 16), np.log(16)), method="bounded",
        options={"xatol": 1e-3},
    )  # fmt: skip
    return float(np.exp(res.x))


_COVERAGE_LEVELS = np.arange(1, 20) / 20  # HDR masses 0.05 ... 0.95
_COVERAGE_DRAWS = 256  # Monte Carlo draws per held-out window and step
_COVERAGE_WINDOWS = 512  # at most this many held-out windows


@partial(jax.jit, static_argnames=("cfg",))
def _hdr_masses(params, inp, y, u, eps, hyper, cfg):
    """HDR mass of the truth, P(p(X) > p(y_t)), per window and step (Monte Carlo, the
    estimate of :func:`gmm.metrics.mixture_coverage`); the same random numbers ``u``,
    ``eps`` serve every variance scale in ``hyper``."""
    logits, mean, cov, _, _ = _forward(params, inp, hyper, cfg)
    w = jax.nn.softmax(logits, -1)
    return _metrics._truth_hdr_masses(w, mean, cov, _df(params, hyper, cfg), u, eps, y)


_COVERAGE_DF = 2.0 ** (np.arange(-8, 25) / 4)  # Student-t degrees of freedom 1/4 ... 64


def _coverage_calibration(sets, cfg, df, rng, *, floor=None):
    r"""Covariance factor c (Student-t degrees of freedom, floor) for calibrated HDR masses.

    For a calibrated predictive the mass of the highest-density region that just
    contains the truth, :math:`u = P(p(X) > p(y_t))`, is uniform on (0, 1). The
    calibration error of Kuleshov et al. (2018),
    :math:`\sum_j (q_j - \hat F(q_j))^2` over the masses :math:`q_j = 0.05, \dots,
    0.95` with :math:`\hat F` the empirical CDF of :math:`u` over held-out windows and
    steps, is minimised over one covariance factor c (a log-spaced grid over [1/256, 256],
    then a finer one around its best point). With Student-t modes (``df`` not None) the
    degrees of freedom :math:`\nu` are chosen with c (a grid of quarter octaves over
    [1/4, 64], walked from ``df`` while the error falls, c searched locally at each
    :math:`\nu`): one factor moves every region by the same ratio, while :math:`\nu` sets
    the ratio of the radii of the small and the large regions (about 5.6 between the
    masses 0.393 and 0.865 at :math:`\nu = 1`, 2 for a Gaussian, more below 1: a
    predictive whose 2σ region must cover far more than its 1σ one, as on a scene
    whose motion is unlike the training scenes', needs tails heavier than Cauchy).
    Common random numbers (standard normals, and the uniforms whose gamma quantiles give
    the Student-t scales) keep the objective smooth in both; no value recompiles.

    ``sets`` is a list of ``(params, inputs, y, hyper)``: a fitted network with windows
    it was not trained on. With several sets (each group of windows under the network
    fitted without it) :math:`\hat F` is the mean of their empirical CDFs, each set
    weighted equally, and the at most ``_COVERAGE_WINDOWS`` windows are shared equally
    among them.

    With ``floor`` (the training ``min_std``) the position standard-deviation floor
    :math:`s` is chosen too, on the grid :math:`s = \text{floor} \cdot 2^{j}`,
    :math:`j = -4, \dots, 2`, walked from ``floor`` at the starting :math:`\nu` (c
    searched locally at each :math:`s`) before :math:`\nu` is walked at the chosen
    :math:`s`. The predictive covariance is then :math:`c\,\Sigma_t + s^2 I`, an affine
    recalibration of the variance (a scale and an offset, where Levi et al., 2022, fit
    the scale alone; the offset is the floor ``min_std`` already adds): the floor
    dominates the first steps, where the propagated variance of the acceleration
    formulation is near zero, so one factor cannot narrow them.

    Returns
    -------
    c : float
    df : float or None
        The chosen degrees of freedom (``None`` for Gaussian modes).
    s : float or None
        The chosen floor (``None`` without ``floor``).
    """
    budget = max(_COVERAGE_WINDOWS // len(sets), 1)
    prepared = []  # per set: params, inputs, y, hyper, u, standard normals, gamma uniforms
    for params, inp, y, hyper in sets:
        n = len(y)
        if n > budget:
            rows = np.sort(rng.choice(n, budget, replace=False))
            inp, y, n = _take(inp, rows), y[rows], budget
        T, S = y.shape[1], _COVERAGE_DRAWS
        u = rng.random((n, S, T))
        z = rng.standard_normal((n, S, T, 2))
        v = None if df is None else rng.random((n, S, T, 1))
        prepared.append((params, inp, y, hyper, u, z, v))
    if df is not None:  # nu is then a traced input, like c
        cfg = cfg._replace(tail="fixed")
    memo, draws = {}, {}  # the Student-t draws of the last nu, per set

    def set_cdf(i, log_c, nu, s):
        params, inp, y, hyper, u, z, v = prepared[i]
        h = dict(hyper, variance_scale=jnp.asarray(np.exp(log_c), jnp.float64))
        if s is not None:
            h["min_std"] = jnp.asarray(s, jnp.float64)
        eps = z
        if nu is not None:
            h["df"] = jnp.asarray(nu, jnp.float64)
            if draws.get(i, (None,))[0] != nu:  # one gamma scale per draw, for every c
                draws[i] = (nu, z / np.sqrt(gammaincinv(nu / 2, v) * (2 / nu)))
            eps = draws[i][1]
        masses = [
            np.asarray(_hdr_masses(params, chunk, yc, uc, ec, h, cfg))[:m]
            for m, chunk, (yc, uc, ec) in _chunks(inp, y, u, eps)
        ]
        masses = np.concatenate(masses).ravel()
        return (masses[:, None] <= _COVERAGE_LEVELS).mean(0)

    def error(log_c, nu, s=floor):
        key = (round(float(log_c), 9), nu, s)
        if key not in memo:
            cdf = np.mean([set_cdf(i, log_c, nu, s) for i in range(len(prepared))], axis=0)
            memo[key] = float(np.sum((cdf - _COVERAGE_LEVELS) ** 2))
        return memo[key]

    grid = np.linspace(np.log(2.0**-8), np.log(2.0**8), 33)
    step = grid[1] - grid[0]

    def refine(best, nu, s):
        fine = np.clip(best + np.linspace(-1, 1, 11) * step, grid[0], grid[-1])
        return fine[np.argmin([error(g, nu, s) for g in fine])]

    def local(log_c, nu, s, half=3):
        """2 half + 1 grid points of log c around ``log_c``, then downhill from an edge."""
        pts = np.clip(log_c + step * np.arange(-half, half + 1), grid[0], grid[-1])
        i = int(np.argmin([error(g, nu, s) for g in pts]))
        cur = pts[i]
        if i in (0, len(pts) - 1):
            d = step if i else -step
            while grid[0] <= cur + d <= grid[-1] and error(cur + d, nu, s) < error(cur, nu, s):
                cur = cur + d
        return cur, error(cur, nu, s)

    def walk(values, j0, log_c, at, half=3):
        """Walk the grid ``values`` both ways from index ``j0`` while the error falls
        (stopping after two worse points), c searched locally at each; ``at(v)`` gives
        the (nu, s) of value v. Returns the best (value, log c)."""
        found = {j0: (log_c, error(log_c, *at(values[j0])))}
        for direction in (1, -1):
            j, lc, worse = j0 + direction, log_c, 0
            while 0 <= j < len(values) and worse < 2:
                lc, e = local(lc, *at(values[j]), half)
                worse = worse + 1 if e >= min(v[1] for v in found.values()) else 0
                found[j] = (lc, e)
                j += direction
        j = min(found, key=lambda k: found[k][1])
        return values[j], found[j][0]

    if df is None:  # Gaussian modes: a grid of one value, nothing to walk
        nus, j0 = [None], 0
    else:
        nus = [float(v) for v in _COVERAGE_DF]
        j0 = int(np.argmin(np.abs(np.log(_COVERAGE_DF) - np.log(df))))
    c0 = grid[np.argmin([error(g, nus[j0]) for g in grid])]
    s = floor
    if floor is not None:  # first the floor at the starting nu
        floors = [float(floor * 2.0**j) for j in range(-4, 3)]
        s, c0 = walk(floors, 4, c0, lambda v: (nus[j0], v), half=2)
    nu, log_c = walk(nus, j0, c0, lambda v: (v, s))
    return float(np.exp(refine(log_c, nu, s))), nu, s


@partial(jax.jit, static_argnames=("cfg", "n_samples"))
def _sample_core(params, inp, hyper, key, noise, *, cfg, n_samples):
    """Trajectory samples (N, S, T, 2) in the agent frame: mode, then controls, rollout.

    ``noise`` (traced, 1 or 0) weights the floor ``min_std`` of the predictive: with 1 it
    is drawn independently at every step (sharing the trajectory's gamma scale), so
    every step's samples follow the per-step predictive exactly; with 0 the samples are
    the paths without it.
    """
    logits, mean, cov, u_mean, u_cov = _forward(params, inp, hyper, cfg)
    speed = inp["speed"]
    N, K, T = mean.shape[:3]
    dtype = mean.dtype
    k1, k2 = jax.random.split(key)
    modes = jax.random.categorical(k1, logits[:, None, :], shape=(N, n_samples))
    idx = jnp.arange(N)[:, None]
    eps = jax.random.normal(k2, (N, n_samples, T, 2), dtype)
    df = _df(params, hyper, cfg)
    w = jnp.ones((N, n_samples, 1, 1), dtype)
    if df is not None:  # one gamma scale per sampled trajectory (see trajectory_log_prob)
        half = df / 2
        g = jax.random.gamma(jax.random.fold_in(key, 1), half, (N, n_samples, 1, 1), dtype)
        w = jnp.sqrt(half / g)
        eps = eps * w
    floor = hyper["min_std"] ** 2 * jnp.eye(2, dtype=dtype)
    if cfg.formulation == "position" or cfg.variance == "learned":
        L = jnp.linalg.cholesky(cov[idx, modes] - (1.0 - noise) * floor)
        return mean[idx, modes] + jnp.einsum("nstij,nstj->nsti", L, eps)
    # kinematic: sample the controls and integrate (temporally coherent samples), then
    # the floor independently at every step
    root = psd_sqrt(u_cov[idx, modes])
    u = u_mean[idx, modes] + jnp.einsum("nstij,nstj->nsti", root, eps)
    wb = None if cfg.curvature else hyper["wheelbase"]
    e_floor = jax.random.normal(jax.random.fold_in(key, 2), (N, n_samples, T, 2), dtype)
    e_floor = noise * hyper["min_std"] * w * e_floor

    def roll(u1, s):
        z0 = jnp.stack([jnp.zeros((), dtype), jnp.zeros((), dtype), jnp.zeros((), dtype), s])
        return rollout_single(u1, z0, hyper["dt"], wb, cfg.formulation)

    def roll_all(us, s0):  # (N, S, ...) controls from initial speeds (N,)
        return jax.vmap(lambda ui, si: jax.vmap(lambda u1: roll(u1, si))(ui))(us, s0)

    if cfg.mean_output in _PATH_OUTPUTS:  # linear kinematics: the mode's path (which carries the
        # initial-velocity correction) plus the rollout from rest of the sampled deviations
        paths = mean[idx, modes] + roll_all(u - u_mean[idx, modes], jnp.zeros_like(speed))
    else:
        paths = roll_all(u, speed)
    return paths + e_floor


def _mirror(inp, y):
    """Reflect agent-frame inputs and targets across the heading axis (y -> -y).

    The agent frame puts the heading along +x, so a world trajectory and its mirror image
    have agent-frame coordinates that differ only in the sign of y. In ``"x"``, ``"seq"``
    and ``"nb"`` the (x, y) pairs are interleaved, so every odd feature is a y coordinate
    (the trailing normalised speed of ``"x"`` is even and stays).
    """
    out = dict(inp)
    for k in ("x", "seq", "nb"):
        if k in inp:
            v = np.array(inp[k], copy=True)
            n = v.shape[-1] - (1 if k == "x" else 0)
            v[..., 1:n:2] *= -1.0
            out[k] = v
    return out, y * np.array([1.0, -1.0])


def _scale(inp, y, s):
    """Scale agent-frame inputs and targets of window i by ``s[i]`` about the agent.

    Every input is linear in positions relative to the agent's last observed position
    (agent-frame positions, displacements, neighbour positions and velocities, the
    speed), so scaling a window's world coordinates about that position by s is scaling
    these arrays by s. Padded neighbours are zeros and stay zeros.
    """
    out = dict(inp)
    for k in ("x", "seq", "nb", "speed"):
        if k in inp:
            v = np.asarray(inp[k])
            out[k] = v * s.reshape((-1,) + (1,) * (v.ndim - 1))
    return out, y * s[:, None, None]


def _pad(inp):
    """Pad the sample axis to a power of two (>= 16) so prediction compiles rarely."""
    n = len(inp["x"])
    m = max(16, 1 << max(n - 1, 0).bit_length())
    return _take(inp, np.minimum(np.arange(m), n - 1))


# --------------------------------------------------------------------------- the estimator


class KinematicGMMForecaster(MixprocEstimator):
    """Multimodal trajectory forecaster with a stochastic kinematic prior.

    An MLP encodes the agent-frame history (current position at the origin, current
    heading along +x, both derived from the history) and outputs ``n_modes`` mode logits
    and, per mode and future step, a Gaussian over the controls of ``formulation``.
    :func:`gmm.kinematics.propagate` integrates them into per-step position Gaussians
    (Zheng et al., 2024). The paper's printed recursions add standard deviations over
    time; under its own assumption of controls independent over time, variances add, and
    that corrected propagation is the default (``method="exact"``; ``"paper"`` keeps the
    printed one). A floor ``min_std**2 * I`` is added to every position covariance: the
    first steps of the acceleration and bicycle formulations have (near-)zero propagated
    variance, which would make the likelihood infinite. Baselines:
    ``formulation="position"`` predicts position Gaussians directly (MultiPath-style, no
    kinematics); ``variance="learned"`` rolls the control *means* out deterministically
    and learns the position covariance freely (Deep Kinematic Models-style, Cui et al.,
    2020).

    Training minimises, with Adam, the winner-takes-all loss of MTR (Shi et al., 2022),

    .. math::

        \\text{wta:}\\quad -\\log p_h - \\frac1T\\sum_t \\log N(y_t; \\mu_{h,t},
        \\Sigma_{h,t}),\\quad h = \\arg\\min_k \\text{ADE}_k \\;(\\text{stop-gradient}),

    or ``loss="mixture"``:
    :math:`-\\frac1T \\log\\sum_k p_k \\prod_t N(y_t; \\mu_{k,t}, \\Sigma_{k,t})`.
    Both are evaluated with :class:`mixtures.distributions.GaussianMixture` (Cholesky
    factors of the full 2x2 covariances, so strongly correlated integrated covariances
    need no correlation clipping).

    The history encoder is an MLP over the flattened agent-frame history
    (``encoder="mlp"``) or a GRU over its steps (``"gru"``; Cho et al., 2014). With
    ``social="attention"`` the neighbours' observed positions, in the agent frame, enter
    through masked attention from the agent's code (:func:`gmm.social_attention`): the
    output does not depend on the order of the neighbours, and padded slots are ignored.
    Every input is computed from the observed steps only (backward differences), so
    nothing from the future leaks in. The frame is heading-aligned, so the model is
    rotation-invariant by construction and needs no rotation augmentation.

    Parameters
    ----------
    n_modes : int, default=6
    formulation : {"accel_steering", "velocity", "acceleration", "speed_heading", \
"position"}
    method : {"exact", "moment", "paper"}
        Variance propagation (see :func:`gmm.kinematics.propagate`).
    variance : {"propagated", "learned"}
        ``"learned"``: deterministic kinematic rollout of the control means with a
        learned position covariance (DKM baseline). Ignored for ``"position"``.
    dt : float, default=0.1
        Step length of the future (s).
    wheelbase : float or None, default=None
        For ``"accel_steering"``: ``None`` uses the curvature form, a float the steering
        angle with this wheelbase (m).
    encoder : {"mlp", "gru"}, default="mlp"
        History encoder; the GRU has ``embed_dim`` units.
    social : None or "attention", default=None
        ``"attention"``: encode the neighbours passed to :meth:`fit` / :meth:`predict`.
    embed_dim : int, default=64
        Width of the GRU state and of the neighbour embedding.
    hidden_sizes : tuple of int, default=(128, 128)
        Hidden layers of the output MLP.
    epochs : int, default=100
    batch_size : int, default=64
        Minibatch size. Each epoch is a fresh permutation cut into ``ceil(N /
        batch_size)`` minibatches (the last one padded with zero-weight rows), run in
        fixed-size jitted chunks, so refits with another N or number of epochs do not
        recompile.
    learning_rate : float, default=3e-3
    learning_rate_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"`` decays the learning rate to zero over the epochs (Loshchilov &
        Hutter, 2017).
    validation_fraction : float, default=0.0
        With a value in (0, 1), that fraction of the samples (drawn at random) is held
        out, the training loss is evaluated on it after every epoch, and the parameters
        of the best epoch are kept (early stopping). Overlapping windows of one track
        can fall on both sides; hold out whole tracks yourself for a stricter split.
    loss : {"wta", "mixture"}
    augment : None, "mirror", "scale" or "mirror+scale", default=None
        ``"mirror"`` adds the mirror image of every training window (reflection across
        the agent's heading, y -> -y in the agent frame, neighbours included), doubling
        the windows of each epoch. The heading-aligned frame already makes the model
        rotation-invariant; a reflection is the one rigid symmetry of the plane it does
        not remove. ``"scale"`` adds one copy of every training window scaled about the
        agent's current position by a factor drawn log-uniformly from ``scale_range``
        (history, future and neighbours alike): the same paths walked at other speeds,
        for test scenes whose walkers are faster or slower than the training ones.
        ``"mirror+scale"`` does both (four times the windows). Held-out validation
        windows are never augmented.
    scale_range : tuple of two floats, default=(2/3, 3/2)
        Range of the scale factors of ``augment="scale"``.
    df : None, float or "learn", default=None
        Tails of the predictive distribution. ``None``: each mode's steps are the
        Gaussians above. A number :math:`\\nu > 0`: each mode is their gamma scale
        mixture, one scale :math:`g \\sim \\mathrm{Gamma}(\\nu/2, \\nu/2)` shared by the
        whole trajectory (covariances :math:`\\Sigma_{k,t} / g`), so that every step's
        marginal is a bivariate Student-t with the kinematic :math:`\\Sigma_{k,t}` as scale
        matrix (Andrews & Mallows, 1974) and a mode's trajectory density is the
        2T-variate Student-t; both losses use it. ``"learn"``:
        :math:`\\nu = 1 + \\mathrm{softplus}(\\theta)` is learned with the network
        (starting at 5). Heavy tails keep the predictive calibrated when some
        trajectories are off by a common factor (a walker faster or slower than
        predicted) without widening every forecast.
    min_std : float, default=0.1
        Position standard-deviation floor (m).
    calibrate : bool, "nll" or "coverage", default=False
        After training, multiply every covariance by one factor
        :math:`c` chosen on the held-out windows (requires ``validation_fraction > 0``,
        unless ``groups`` are passed to :meth:`fit`: see below).
        ``True`` or ``"nll"``: c minimises their per-step predictive negative
        log-likelihood, the variance
        analogue of temperature scaling (Guo et al., 2017; Levi et al., 2022). For the
        kinematic heads :math:`c` multiplies the control covariances before the
        propagation, so the position covariances of the linear formulations scale by
        exactly :math:`c`, the kinematics still shape them, and :meth:`sample` draws
        from the same scaled controls. Training with augmented windows or with the
        robust Student-t loss can leave the predictive too wide or too narrow on the
        windows the model will meet; this corrects the overall width, not the shape.
        ``"coverage"``: c minimises the calibration error of Kuleshov et al. (2018):
        the masses of the highest-density regions that just contain the truth should
        be uniform, so that every region (the 1σ and 2σ ones included) covers its
        nominal share of the held-out steps. Where the shape of the predictive is off
        (very heavy learned tails, say) the NLL-optimal width and the calibrated one
        differ, and this choice favours the regions. With Student-t modes (``df`` set)
        the degrees of freedom are chosen with c (from 1/4 to 64 in quarter octaves): c
        moves every region by one ratio, the degrees of freedom set the ratio of the
        small regions' radii to the large ones', and ``df_`` then holds the chosen
        value. At most 512 held-out windows and 256 Monte Carlo draws per step are used.
        With ``groups`` passed to :meth:`fit`, either criterion is evaluated on held-out
        groups instead of held-out windows (each group under a fit without it; the 512
        windows are shared equally among the groups): the way to calibrate for a scene
        unlike the training windows, as in leave-one-scene-out benchmarks.
    calibrate_floor : bool, default=False
        With ``calibrate="coverage"``, choose the floor with c and the degrees of
        freedom (``min_std`` times :math:`2^{j}`, :math:`j = -4, \\dots, 2`; the chosen
        one is ``min_std_``): the predictive covariance becomes :math:`c\\,\\Sigma_t +
        s^2 I`, an affine recalibration of the variance. The floor sets the width of the
        first steps, where the acceleration formulation's propagated variance is near
        zero and no factor c can narrow them; a floor that suits training can leave
        them far too wide. Training still uses ``min_std``.
    mean_output : {"controls", "path", "cv_offset", "speed_fan"}, default="controls"
        What the network outputs for each mode's mean. ``"controls"``: the mean
        controls, integrated by the kinematics (Zheng et al., 2024). The other three
        need a linear formulation (``"acceleration"`` or ``"velocity"``) and output the
        mode's mean path; its mean controls are then the path's finite differences
        (second differences of the positions for accelerations, first for velocities),
        so the propagated covariances, the samples (controls drawn and integrated) and
        everything else stay kinematic. They differ in the path a zero output means:
        ``"path"``: standing still (the path relative to the current position, in the
        agent frame, the same parametrisation as ``formulation="position"``);
        ``"cv_offset"``: keeping the observed speed (the output is the displacement from
        the constant-velocity path); ``"speed_fan"``: mode k keeps the fraction
        :math:`\beta_k = k / (K - 1)` of the observed speed, so the modes' anchors fan
        out evenly from standing to keeping the speed. The family of mean paths is the
        same for all four; what changes is the optimisation (with control outputs a
        late position is a sum of many outputs, with path outputs each position is one)
        and how the network extrapolates to agents unlike the training ones: an agent
        faster than any training agent is extrapolated near its own speed by
        ``"cv_offset"``, near standing by ``"path"``, and by both across the modes of
        ``"speed_fan"``. The fan is meant for many modes: with the winner-takes-all
        loss a mode whose anchor is far from every training path may never win a window
        and then stays near its anchor (with two modes on walkers that all keep their
        speed, the standing one is wasted). For accelerations the first step of the path
        is each mode's correction of the observed initial velocity (it moves the mean
        only).
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Seeds the weight initialisation and the minibatch order.
    verbose : int, default=0
        ``>0`` shows a tqdm progress bar over epochs.

    Attributes
    ----------
    params_ : dict
        Network weights: ``"head"`` (the output MLP's (W, b) layers), ``"gru"`` and
        ``"social"`` when used.
    speed_scale_ : float
        Mean training speed (m/s) used to scale inputs and outputs.
    loss_curve_ : ndarray of shape (epochs,)
    validation_losses_ : ndarray of shape (epochs,) or None
        Loss on the held-out samples after each epoch (``validation_fraction > 0``).
    best_epoch_ : int
        Number of epochs of the kept parameters (``epochs`` without validation).
    max_neighbours_ : int
        Neighbour slots M seen in :meth:`fit` (with ``social``).
    df_ : float or None
        Degrees of freedom of the predictive (fixed, learned, or chosen by
        ``calibrate="coverage"``); ``None`` for Gaussian.
    variance_scale_ : float
        The covariance factor :math:`c` chosen by ``calibrate`` (1.0 without it).
    min_std_ : float
        The floor of the predictive: ``min_std`` unless ``calibrate_floor`` chose another.
    mode_usage_ : ndarray of shape (n_modes,)
        Fraction of training samples whose positive (min-ADE) mode is each mode.
    n_features_in_ : int
        Number of history steps H.
    horizon_ : int
        Number of future steps T.

    References
    ----------
    L. Zheng, S. Son, J. Liang, X. Wang, B. Clipp, M. C. Lin, "Deep Stochastic Kinematic
    Models for Probabilistic Motion Forecasting in Traffic", IROS 2024, arXiv:2406.01431.

    S. Shi, L. Jiang, D. Dai, B. Schiele, "Motion Transformer with Global Intention
    Localization and Local Movement Refinement" (MTR), NeurIPS 2022.

    K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
    Statistical Machine Translation", EMNLP 2014 (GRU).

    A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.

    H. Cui et al., "Deep Kinematic Models for Kinematically Feasible Vehicle Trajectory
    Predictions" (DKM), ICRA 2020, arXiv:1908.00219.

    Y. Chai, B. Sapp, M. Bansal, D. Anguelov, "MultiPath: Multiple Probabilistic Anchor
    Trajectory Hypotheses for Behavior Prediction", CoRL 2019.

    V. Kuleshov, N. Fenner, S. Ermon, "Accurate Uncertainties for Deep Learning Using
    Calibrated Regression", ICML 2018.

    Y. Gong, X. Lin, Y. Yao, T. G. Dietterich, A. Divakaran, M. Gervasio, "Confidence
    Calibration for Domain Generalization under Covariate Shift", ICCV 2021.

    Examples
    --------
    >>> from gmm.datasets import make_bicycle_traffic
    >>> d = make_bicycle_traffic(64, history=5, horizon=8, random_state=0)
    >>> f = KinematicGMMForecaster(n_modes=2, hidden_sizes=(16,), epochs=2,
    ...                            random_state=0).fit(d.history, d.future)
    >>> modes, probs = f.predict(d.history[:3])
    >>> modes.shape, probs.shape
    ((3, 2, 8, 2), (3, 2))
    """

    _parameter_constraints = {
        "n_modes": [Interval(Integral, 1, None, closed="left")],
        "formulation": [StrOptions({*FORMULATIONS, "position"})],
        "method": [StrOptions(set(METHODS))],
        "variance": [StrOptions({"propagated", "learned"})],
        "dt": [Interval(Real, 0, None, closed="neither")],
        "wheelbase": [None, Interval(Real, 0, None, closed="neither")],
        "encoder": [StrOptions({"mlp", "gru"})],
        "social": [None, StrOptions({"attention"})],
        "embed_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden_sizes": ["array-like"],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"constant", "cosine"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "loss": [StrOptions({"wta", "mixture"})],
        "augment": [None, StrOptions({"mirror", "scale", "mirror+scale"})],
        "scale_range": [tuple, list],
        "df": [None, Interval(Real, 0, None, closed="neither"), StrOptions({"learn"})],
        "min_std": [Interval(Real, 0, None, closed="neither")],
        "calibrate": ["boolean", StrOptions({"nll", "coverage"})],
        "calibrate_floor": ["boolean"],
        "mean_output": [StrOptions({"controls", "path", "cv_offset", "speed_fan"})],
        "random_state": RANDOM_STATE,
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        n_modes=6,
        formulation="accel_steering",
        method="exact",
        variance="propagated",
        dt=0.1,
        wheelbase=None,
        encoder="mlp",
        social=None,
        embed_dim=64,
        hidden_sizes=(128, 128),
        epochs=100,
        batch_size=64,
        learning_rate=3e-3,
        learning_rate_schedule="constant",
        validation_fraction=0.0,
        loss="wta",
        augment=None,
        scale_range=(2 / 3, 3 / 2),
        df=None,
        min_std=0.1,
        calibrate=False,
        calibrate_floor=False,
        mean_output="controls",
        random_state=None,
        verbose=0,
    ):
        self.n_modes = n_modes
        self.formulation = formulation
        self.method = method
        self.variance = variance
        self.dt = dt
        self.wheelbase = wheelbase
        self.encoder = encoder
        self.social = social
        self.embed_dim = embed_dim
        self.hidden_sizes = hidden_sizes
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.validation_fraction = validation_fraction
        self.loss = loss
        self.augment = augment
        self.scale_range = scale_range
        self.df = df
        self.min_std = min_std
        self.calibrate = calibrate
        self.calibrate_floor = calibrate_floor
        self.mean_output = mean_output
        self.random_state = random_state
        self.verbose = verbose

    # -- validation ------------------------------------------------------------------

    def _check_hidden_sizes(self):
        """The entries of ``hidden_sizes`` (``_parameter_constraints`` checks the type)."""
        hs = np.asarray(self.hidden_sizes, dtype=object)
        if hs.ndim != 1 or not all(
            isinstance(h, Integral) and not isinstance(h, bool) and h > 0 for h in hs
        ):
            raise ValueError(
                "hidden_sizes must be a sequence of positive ints (one per hidden layer); "
                f"got {self.hidden_sizes!r}. Pass e.g. hidden_sizes=(128, 128)."
            )

    def _check_scale_range(self):
        """``scale_range`` as ``(low, high)`` with ``0 < low <= high``."""
        try:
            lo, hi = (float(v) for v in self.scale_range)
        except (TypeError, ValueError):
            lo = hi = np.nan
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(
                "scale_range must be two finite factors 0 < low <= high; got "
                f"{self.scale_range!r}. Pass e.g. scale_range=(2/3, 3/2)."
            )
        return lo, hi

    def _check_history(self, history, *, reset):
        history = self._validate_X(history, reset=reset, allow_nd=True, ensure_min_features=2)
        if history.ndim != 3 or history.shape[-1] != 2:
            raise ValueError(
                "history must have shape (n_samples, n_history >= 2, 2) (x, y positions); "
                f"got {history.shape}."
            )
        return history

    def _check_neighbours(self, history, neighbours, neighbour_mask, *, reset):
        """Neighbour positions (N, M, H, 2) and mask (N, M), or (None, None) if unused."""
        if self.social is None:
            if neighbours is not None:
                raise ValueError(
                    "neighbours were given but social=None ignores them; pass "
                    "social='attention' to use them, or leave them out."
                )
            return None, None
        if neighbours is None:
            raise ValueError(
                f"social={self.social!r} needs the neighbours' observed positions: pass "
                "neighbours of shape (n_samples, max_neighbours, n_history, 2) and "
                "neighbour_mask (n_samples, max_neighbours), e.g. from "
                "gmm.datasets.load_eth_ucy(..., max_neighbours=M)."
            )
        nb = np.asarray(neighbours, dtype=np.float64)
        N, H = history.shape[:2]
        if nb.ndim != 4 or nb.shape[0] != N or nb.shape[2] != H or nb.shape[3] != 2:
            raise ValueError(
                f"neighbours must have shape (n_samples, M, n_history, 2) = ({N}, M, {H}, 2) "
                f"to match history; got {nb.shape}."
            )
        mask = (
            np.ones(nb.shape[:2], bool)
            if neighbour_mask is None
            else np.asarray(neighbour_mask).astype(bool)
        )
        if mask.shape != nb.shape[:2]:
            raise ValueError(
                f"neighbour_mask must have shape {nb.shape[:2]} (one flag per neighbour "
                f"slot); got {mask.shape}."
            )
        if not np.all(np.isfinite(nb[mask])):
            raise ValueError(
                "neighbours contain NaN or inf in slots that neighbour_mask marks present; "
                "set their mask to False or fill them."
            )
        if reset:
            self.max_neighbours_ = int(nb.shape[1])
        elif nb.shape[1] != self.max_neighbours_:
            raise ValueError(
                f"neighbours have {nb.shape[1]} slots but the model was fitted with "
                f"{self.max_neighbours_}; pad or cut to {self.max_neighbours_}."
            )
        return np.where(mask[..., None, None], nb, 0.0), mask

    def _check_groups(self, groups, n):
        """``groups`` as an (N,) array with at least two labels, or None."""
        if groups is None:
            return None
        if not self.calibrate:
            raise ValueError(
                "groups are used only to calibrate on held-out groups, and calibrate=False; "
                "pass calibrate='coverage' (or 'nll') with them, or leave them out."
            )
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(
                f"groups must have shape (n_samples,) = ({n},), one label per window; "
                f"got {groups.shape}."
            )
        if len(np.unique(groups)) < 2:
            raise ValueError(
                "groups must hold at least two labels (each group is held out in turn); "
                f"got {len(np.unique(groups))}. Pass one label per scene or recording."
            )
        return groups

    def _held_out_group(self, history, future, nb, nb_mask, inside):
        """Fit a copy without the windows ``inside``; the copy and its inputs and
        agent-frame targets for those windows (for the calibration on held-out groups)."""
        aux = clone(self).set_params(calibrate=False, calibrate_floor=False, verbose=0)
        keep = ~inside
        nbs = {} if nb is None else dict(neighbours=nb[keep], neighbour_mask=nb_mask[keep])
        aux.fit(history[keep], future[keep], **nbs)
        p0, R, _, inp = aux._inputs(
            history[inside], *(() if nb is None else (nb[inside], nb_mask[inside]))
        )
        return aux, inp, _to_agent_frame(p0, R, future[inside])

    def _inputs(self, history, neighbours=None, neighbour_mask=None):
        """Current position, rotation, speed and the network inputs (a dict of arrays).

        Everything is computed from the observed steps only: the history (backward
        differences) and the neighbours' observed positions.
        """
        p0, R, speed, rel = _agent_frame(history, self.dt)
        rel_s = rel / self.feature_scale_
        x = np.concatenate([rel_s.reshape(len(rel), -1), (speed / self.speed_scale_)[:, None]], 1)
        inp = {"x": x, "speed": speed}
        if self.encoder == "gru":
            step = np.diff(rel, axis=1, prepend=rel[:, :1]) / (self.speed_scale_ * self.dt)
            inp["seq"] = np.concatenate([rel_s, step], axis=-1)
        if self.social is not None:
            nb = np.einsum("nji,nmtj->nmti", R, neighbours - p0[:, None, None])
            vel = (nb[:, :, -1] - nb[:, :, -2]) / (self.speed_scale_ * self.dt)
            feats = np.concatenate(
                [(nb / self.feature_scale_).reshape(*nb.shape[:2], -1), vel], axis=-1
            )
            inp["nb"] = np.where(neighbour_mask[..., None], feats, 0.0)
            inp["nb_mask"] = neighbour_mask
        return p0, R, speed, inp

    def _hyper(self, variance_scale=None):
        """Traced hyperparameters: the training ones, or (``variance_scale=None``) those
        of the fitted predictive, with its factor c, degrees of freedom ``df_`` and floor
        ``min_std_``."""
        df = self.df if isinstance(self.df, Real) else 0.0
        floor = self.min_std
        if variance_scale is None:
            variance_scale, floor = self.variance_scale_, self.min_std_
            df = df if self.df_ is None else self.df_
        return {
            "variance_scale": jnp.asarray(variance_scale, jnp.float64),
            "dt": jnp.asarray(self.dt, jnp.float64),
            "wheelbase": jnp.asarray(
                1.0 if self.wheelbase is None else self.wheelbase, jnp.float64
            ),
            "speed_scale": jnp.asarray(self.speed_scale_, jnp.float64),
            "min_std": jnp.asarray(floor, jnp.float64),
            "df": jnp.asarray(df, jnp.float64),
        }

    def _cfg(self, horizon, fitted=False):
        """Static configuration; ``fitted=True``: that of the fitted predictive, whose
        degrees of freedom ``df_`` (learned or calibrated) are a traced input."""
        tail = None if self.df is None else ("learn" if self.df == "learn" else "fixed")
        return _Config(
            n_modes=int(self.n_modes),
            horizon=int(horizon),
            formulation=self.formulation,
            method=self.method,
            variance=self.variance,
            loss=self.loss,
            curvature=self.wheelbase is None,
            encoder=self.encoder,
            social=self.social,
            tail="fixed" if fitted and tail is not None else tail,
            mean_output=self.mean_output,
        )

    # -- fit / predict ---------------------------------------------------------------

    def fit(self, history, future, neighbours=None, neighbour_mask=None, groups=None):
        """Fit on past positions ``history`` (N, H, 2) and future positions (N, T, 2).

        Parameters
        ----------
        history : array-like of shape (N, H, 2)
            Observed positions; the last step is the current position.
        future : array-like of shape (N, T, 2)
        neighbours : array-like of shape (N, M, H, 2), optional
            Observed positions of up to M other agents over the same steps (required
            with ``social="attention"``; world frame, like ``history``).
        neighbour_mask : array-like of bool of shape (N, M), optional
            Which neighbour slots hold an agent (default: all).
        groups : array-like of shape (N,), optional
            A label per window (its scene or recording, say), used only by
            ``calibrate``: the factor c (and with ``"coverage"`` the degrees of freedom)
            is then chosen on held-out groups instead of held-out windows. For each
            group g a copy of this estimator (same parameters, ``calibrate=False``) is
            fitted on the windows outside g and predicts g's windows; the calibration
            objective averages the groups with equal weight. This is cross-fitted
            calibration: held-out windows of the training scenes share their scenes with
            the training windows, so a model looks calibrated on them and is too
            confident on a new scene; a group held out whole shows the model a new
            scene, as the test scene will (Gong et al., 2021). It costs one more fit
            per group.

        Returns
        -------
        self
        """
        self._validate_params()
        self._check_hidden_sizes()
        augment = () if self.augment is None else self.augment.split("+")
        if "scale" in augment:
            lo, hi = self._check_scale_range()
        if self.mean_output in _PATH_OUTPUTS and self.formulation not in _LINEAR_FORMULATIONS:
            raise ValueError(
                f"mean_output={self.mean_output!r} needs a linear formulation ('acceleration' or "
                f"'velocity'), whose controls are finite differences of the path; got "
                f"formulation={self.formulation!r}. Use mean_output='controls' with it."
            )
        if self.calibrate_floor and self.calibrate != "coverage":
            raise ValueError(
                f"calibrate_floor=True chooses the floor with calibrate='coverage'; got "
                f"calibrate={self.calibrate!r}. Set calibrate='coverage' or leave "
                "calibrate_floor=False."
            )
        if self.calibrate and groups is None and not self.validation_fraction > 0:
            raise ValueError(
                f"calibrate={self.calibrate!r} chooses the variance scale on held-out "
                f"windows; set validation_fraction in (0, 1) (got {self.validation_fraction}),"
                " or pass groups to calibrate on held-out groups."
            )
        history = self._check_history(history, reset=True)
        future = check_array(
            future,
            allow_nd=True,
            dtype=np.float64,
            ensure_all_finite=True,
            input_name="future",
            ensure_min_features=1,
        )
        if future.ndim != 3 or future.shape[-1] != 2 or future.shape[0] != history.shape[0]:
            raise ValueError(
                f"future must have shape (n_samples, horizon, 2) = ({history.shape[0]}, T, 2); "
                f"got {future.shape}."
            )
        nb, nb_mask = self._check_neighbours(history, neighbours, neighbour_mask, reset=True)
        groups = self._check_groups(groups, len(history))
        held_out = []  # (fit without the group, its inputs, y) per group
        if groups is not None:
            for g in tqdm(np.unique(groups), disable=self.verbose <= 0, desc="group fits"):
                held_out.append(self._held_out_group(history, future, nb, nb_mask, groups == g))
        self.horizon_ = future.shape[1]
        k = min(history.shape[1] - 1, 3)
        speeds = np.linalg.norm(history[:, -1] - history[:, -1 - k], axis=1) / (k * self.dt)
        self.speed_scale_ = float(max(np.mean(speeds), 0.1))
        self.feature_scale_ = float(self.speed_scale_ * self.dt * history.shape[1])
        p0, R, speed, inp = self._inputs(history, nb, nb_mask)
        y = _to_agent_frame(p0, R, future)
        cfg = self._cfg(self.horizon_)
        key = random_state_to_key(self.random_state)
        k_init, k_perm = jax.random.split(key)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(k_perm)).ravel().tolist())
        n_all = len(y)
        val = None
        if self.validation_fraction > 0:
            n_val = int(round(self.validation_fraction * n_all))
            if not 1 <= n_val < n_all:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves {n_val} of "
                    f"{n_all} samples for validation; it must keep at least one sample on "
                    "each side. Pass more samples or another fraction (0 disables it)."
                )
            perm = rng.permutation(n_all)
            val = (_take(inp, perm[:n_val]), y[perm[:n_val]])
            inp, y = _take(inp, perm[n_val:]), y[perm[n_val:]]
        own_inp, own_y = inp, y  # the caller's training windows (for mode_usage_)
        if "scale" in augment:  # after the split, like the mirror images
            s = np.exp(rng.uniform(np.log(lo), np.log(hi), len(y)))
            s_inp, s_y = _scale(inp, y, s)
            inp = {k: np.concatenate([inp[k], s_inp[k]]) for k in inp}
            y = np.concatenate([y, s_y])
        if "mirror" in augment:  # after the split: no mirror image of a held-out window
            m_inp, m_y = _mirror(inp, y)
            inp = {k: np.concatenate([inp[k], m_inp[k]]) for k in inp}
            y = np.concatenate([y, m_y])
        n = len(y)
        bs = int(self.batch_size)
        epochs = int(self.epochs)
        with x64_scope():
            n_nb = inp["nb"].shape[-1] if "nb" in inp else 0
            hidden = tuple(map(int, self.hidden_sizes))
            params = _init_params(
                k_init, cfg, inp["x"].shape[1], n_nb, hidden, int(self.embed_dim), jnp.float64
            )
            opt_state = _make_optimizer(jnp.asarray(self.learning_rate, jnp.float64)).init(params)
            idx, w, epoch_of = _minibatch_plan(n, bs, epochs, rng, align=val is not None)
            steps_before = np.concatenate([[0], np.cumsum(epoch_of >= 0)])  # real steps
            n_real = int(steps_before[-1])
            hyper = self._hyper(variance_scale=1.0)
            step_losses, val_losses = [], []
            best = (np.inf, params, 0)
            n_calls = len(idx) // _STEPS_PER_CALL
            per_epoch = len(idx) // epochs  # steps per epoch (with align)
            for c in tqdm(range(n_calls), disable=self.verbose <= 0, desc="steps/16"):
                sl = slice(c * _STEPS_PER_CALL, (c + 1) * _STEPS_PER_CALL)
                if self.learning_rate_schedule == "cosine":  # traced: no recompile
                    frac = steps_before[c * _STEPS_PER_CALL] / n_real
                    lr = 0.5 * self.learning_rate * (1.0 + np.cos(np.pi * frac))
                    opt_state[1].hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float64)
                ii = idx[sl]
                params, opt_state, loss = _train_steps(
                    params,
                    opt_state,
                    {k: jnp.asarray(v[ii]) for k, v in inp.items()},
                    jnp.asarray(y[ii]),
                    jnp.asarray(w[sl]),
                    hyper,
                    cfg=cfg,
                )
                step_losses.append(loss)
                # aligned plan: each epoch fills whole calls, so a call may end one
                if val is not None and (c + 1) * _STEPS_PER_CALL % per_epoch == 0:
                    done = (c + 1) * _STEPS_PER_CALL // per_epoch
                    v = _loss_chunked(params, val[0], val[1], hyper, cfg)
                    val_losses.append(v)
                    if v < best[0]:
                        best = (v, params, done)
            step_losses = np.asarray(jnp.concatenate(step_losses))
            real = epoch_of >= 0
            wsum = w.sum(1)[real]
            losses = np.bincount(
                epoch_of[real], weights=step_losses[real] * wsum, minlength=epochs
            ) / np.bincount(epoch_of[real], weights=wsum, minlength=epochs)
            check_finite_result(
                "training loss",
                losses,
                "Lower learning_rate, raise min_std, or check the data for outliers.",
            )
            if val is not None:
                params = best[1]
            df = _df(params, hyper, cfg)
            df = None if df is None else float(df)
            if held_out:  # each group under the fit without it
                sets = [(a.params_, i, t, a._hyper(variance_scale=1.0)) for a, i, t in held_out]
            else:  # the held-out windows under this fit
                sets = [(params, *val, hyper)] if val is not None else []
            floor = self.min_std if self.calibrate_floor else None
            if self.calibrate == "coverage":
                scale, df, floor = _coverage_calibration(sets, cfg, df, rng, floor=floor)
            elif self.calibrate:  # True or "nll"
                scale = _calibrated_scale(sets, cfg, df)
            else:
                scale = 1.0
            _, mean, _, _, _ = _forward_chunked(params, own_inp, hyper, cfg)
        modes = np.argmin(np.linalg.norm(mean - own_y[:, None], axis=-1).mean(-1), axis=1)
        self.params_ = to_numpy(params)
        self.loss_curve_ = losses
        self.validation_losses_ = None if val is None else np.array(val_losses)
        self.best_epoch_ = epochs if val is None else int(best[2])
        self.mode_usage_ = np.bincount(modes, minlength=cfg.n_modes) / len(own_y)
        self.df_ = df
        self.variance_scale_ = float(scale)
        self.min_std_ = float(self.min_std if floor is None else floor)
        return self

    def _predict_agent(self, history, neighbours=None, neighbour_mask=None):
        self._check_is_fitted()
        history = self._check_history(history, reset=False)
        nb, nb_mask = self._check_neighbours(history, neighbours, neighbour_mask, reset=False)
        p0, R, speed, inp = self._inputs(history, nb, nb_mask)
        cfg = self._cfg(self.horizon_, fitted=True)
        with x64_scope():
            logits, mean, cov, _, _ = _forward_chunked(self.params_, inp, self._hyper(), cfg)
        return p0, R, inp, softmax(logits, axis=1), mean, cov

    def predict_gaussians(self, history, neighbours=None, neighbour_mask=None):
        """Mode probabilities and per-step position Gaussians in the world frame.

        ``neighbours`` / ``neighbour_mask`` as in :meth:`fit` (with ``social``).

        Returns
        -------
        probs : ndarray of shape (N, K)
        means : ndarray of shape (N, K, T, 2)
        covariances : ndarray of shape (N, K, T, 2, 2)
            Rotated back from the agent frame (:math:`R\\Sigma R^\\top`). With ``df``
            these are the Student-t scale matrices (pass ``df=model.df_`` to
            :func:`gmm.metrics.nll` and :func:`gmm.metrics.mixture_coverage`).
        """
        p0, R, _, probs, mean, cov = self._predict_agent(history, neighbours, neighbour_mask)
        means = np.einsum("nij,nktj->nkti", R, mean) + p0[:, None, None]
        covs = np.einsum("nij,nktjl,nml->nktim", R, cov, R)
        return probs, means, covs

    def predict(self, history, neighbours=None, neighbour_mask=None):
        """Mode trajectories (N, K, T, 2) and mode probabilities (N, K)."""
        probs, means, _ = self.predict_gaussians(history, neighbours, neighbour_mask)
        return means, probs

    def predictive_distribution(
        self, history, neighbours=None, neighbour_mask=None
    ) -> GaussianMixture:
        """Per-step predictive mixture over world-frame positions.

        Returns
        -------
        mixtures.distributions.GaussianMixture or mixtures.distributions.StudentTMixture
            Batch shape (N, T), ``n_modes`` full-covariance components, event shape
            (2,): for each agent and step a mixture of K bivariate normals (Student-t
            with ``df``) with the mode probabilities as weights. Its ``log_prob`` of the
            true positions is what :meth:`score` averages. Its parameters are float64;
            evaluate it inside :func:`mixtures.base.x64_scope` to keep float64 (JAX
            otherwise computes in float32).
        """
        probs, means, covs = self.predict_gaussians(history, neighbours, neighbour_mask)
        with x64_scope():
            return step_mixture(jnp.asarray(probs), jnp.asarray(means), jnp.asarray(covs), self.df_)

    def score(self, history, future, neighbours=None, neighbour_mask=None):
        """Mean per-step log-likelihood of ``future`` under the predictive mixture (nats)."""
        probs, means, covs = self.predict_gaussians(history, neighbours, neighbour_mask)
        return -_metrics.nll(future, probs, means, covs, per="step", df=self.df_)

    def sample(self, history, n_samples=20, random_state=None, neighbours=None,
               neighbour_mask=None, observation_noise=True):  # fmt: skip
        """Sample trajectories (N, n_samples, T, 2) in the world frame.

        A mode is drawn from the mode probabilities; for propagated kinematic variances
        the controls are sampled and integrated, so the paths are temporally coherent
        (kinematically feasible); otherwise per-step positions are sampled
        independently. With Student-t modes one gamma scale is drawn per trajectory.

        Parameters
        ----------
        observation_noise : bool, default=True
            Add the floor of the predictive (``min_std_``, the standard deviation of
            the position noise every covariance carries) independently at every step,
            so that each step's samples follow :meth:`predictive_distribution` exactly:
            these are samples of the positions that :meth:`score` evaluates. ``False``
            leaves it out: the kinematic heads then return the smooth rolled-out paths,
            whose per-step covariance is the predictive one less ``min_std_**2 * I``.
        """
        if not isinstance(observation_noise, (bool, np.bool_)):
            raise TypeError(f"observation_noise must be True or False; got {observation_noise!r}.")
        p0, R, inp, _, _, _ = self._predict_agent(history, neighbours, neighbour_mask)
        cfg = self._cfg(self.horizon_, fitted=True)
        key = random_state_to_key(random_state)
        with x64_scope():
            padded = {k: jnp.asarray(v) for k, v in _pad(inp).items()}
            s = np.asarray(
                _sample_core(
                    self.params_,
                    padded,
                    self._hyper(),
                    key,
                    jnp.asarray(1.0 if observation_noise else 0.0, jnp.float64),
                    cfg=cfg,
                    n_samples=int(n_samples),
                )
            )[: len(p0)]
        return np.einsum("nij,nstj->nsti", R, s) + p0[:, None, None]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        return tags
