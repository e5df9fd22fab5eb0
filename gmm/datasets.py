"""Trajectory data: a synthetic bicycle-model traffic generator and an ETH/UCY loader.

Both return a :class:`TrajectoryData` named tuple ``(history, future, labels, dt)`` with
``history`` of shape (N, H, 2) (the last row is the current position) and ``future`` of
shape (N, T, 2) (positions at steps 1..T).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
from sklearn.utils import check_random_state

__all__ = [
    "ETH_UCY_SCENES",
    "INTENTS",
    "TrajectoryData",
    "load_eth_ucy",
    "make_bicycle_traffic",
]

INTENTS = (
    "keep_lane",
    "left_turn",
    "right_turn",
    "lane_change_left",
    "lane_change_right",
    "brake",
    "accelerate",
)

#: Benchmark scene name -> its test files in the leave-one-scene-out protocol.
ETH_UCY_SCENES = {
    "eth": ("biwi_eth",),
    "hotel": ("biwi_hotel",),
    "univ": ("students001", "students003"),
    "zara1": ("crowds_zara01",),
    "zara2": ("crowds_zara02",),
}
_ETH_UCY_EXTRA = ("crowds_zara03", "uni_examples")  # training-only files


class TrajectoryData(NamedTuple):
    """Windows of past and future positions.

    Attributes
    ----------
    history : ndarray of shape (N, H, 2)
        Observed positions; ``history[:, -1]`` is the current position.
    future : ndarray of shape (N, T, 2)
        Positions at the next T steps.
    labels : ndarray of shape (N,)
        Intent index into :data:`INTENTS` (synthetic) or the track id (ETH/UCY).
    dt : float
        Step length in seconds.
    neighbours : ndarray of shape (N, M, H, 2) or None
        Observed positions of up to M other agents over the same H steps as ``history``
        (ETH/UCY with ``max_neighbours > 0``), nearest first at the current step; zeros
        where ``neighbour_mask`` is False.
    neighbour_mask : ndarray of bool of shape (N, M) or None
        Which neighbour slots hold an agent.
    sources : ndarray of str of shape (N,) or None
        The file each window comes from (ETH/UCY: its stem, e.g. ``"students003"``);
        use it (or the scene or place of the file) as ``groups`` to hold out whole
        recordings, e.g. in ``KinematicGMMForecaster.fit(..., groups=...)``.
    """

    history: np.ndarray
    future: np.ndarray
    labels: np.ndarray
    dt: float
    neighbours: np.ndarray | None = None
    neighbour_mask: np.ndarray | None = None
    sources: np.ndarray | None = None


def _intent_profiles(intent, t, v0, rng_vals):
    """Nominal (acceleration, curvature) at times t >= 0 for each agent (vectorised)."""
    onset, dur, radius, a_mag = rng_vals
    a = np.zeros_like(v0)
    k = np.zeros_like(v0)
    active = t >= onset
    tt = t - onset
    # turns: constant curvature pulse, heading change capped near pi/2
    turn = (intent == 1) | (intent == 2)
    sign = np.where(intent == 1, 1.0, -1.0)
    turn_dur = np.minimum(dur, 0.5 * np.pi * radius / np.maximum(v0, 1.0))
    on = turn & active & (tt < turn_dur)
    k = np.where(on, sign / radius, k)
    a = np.where(turn & active & (tt < 1.0), -0.5 * a_mag, a)  # slow into the turn
    # lane changes: curvature doublet giving ~3.5 m lateral offset over dur
    lc = (intent == 3) | (intent == 4)
    lsign = np.where(intent == 3, 1.0, -1.0)
    amp = 3.5 * 2 * np.pi / (np.maximum(v0, 3.0) ** 2 * dur**2)
    on = lc & active & (tt < dur)
    k = np.where(on, lsign * amp * np.sin(2 * np.pi * tt / dur), k)
    a = np.where((intent == 5) & active, -a_mag, a)
    a = np.where((intent == 6) & active, 0.5 * a_mag, a)
    return a, k


def make_bicycle_traffic(
    n_samples=1000,
    history=11,
    horizon=30,
    dt=0.1,
    *,
    speed_range=(3.0, 15.0),
    accel_noise=0.5,
    steer_noise=0.02,
    obs_noise=0.0,
    intent_probs=None,
    substeps=10,
    random_state=None,
):
    """Synthetic multimodal vehicle trajectories from a stochastic kinematic bicycle.

    Each agent drives with speed ``v0 ~ U(speed_range)`` and wheelbase
    ``L ~ U(2.5, 3.2)`` m; at the current time (step 0) it starts one of the
    :data:`INTENTS` after a random onset in [0, 0.5] s: keep lane, left/right turn
    (curvature pulse :math:`\\pm 1/R`, :math:`R\\sim U(8, 30)` m, 2-4 s, heading change
    capped at about 90 degrees), left/right lane change (curvature doublet, 3.5 m lateral
    offset over 2-3 s), brake (:math:`a\\sim -U(2, 5)` m/s^2 until standstill) or
    accelerate. The intent is invisible in the history, so the future is multimodal.
    Controls carry Ornstein-Uhlenbeck noise (rate 1/s; stationary std ``accel_noise``
    m/s^2 on the acceleration and ``steer_noise`` rad on the steering angle); the model is
    integrated with the midpoint rule at ``dt / substeps`` and subsampled, so the data do
    not come from the forecaster's own explicit-Euler discretisation at ``dt``.
    Trajectories are in the agent frame: the current position is the origin and the
    current heading is +x.

    Parameters
    ----------
    n_samples : int
    history : int
        Number of observed positions H (including the current one).
    horizon : int
        Number of future positions T.
    dt : float
        Sampling step in seconds.
    speed_range : (float, float)
        Range of the initial speed (m/s).
    accel_noise, steer_noise : float
        Stationary std of the OU control noise.
    obs_noise : float
        Std of Gaussian noise added to the *history* positions (m).
    intent_probs : None or sequence of 7 floats
        Intent probabilities (uniform by default).
    substeps : int
        Simulation sub-steps per ``dt``.
    random_state : None, int or numpy Generator/RandomState

    Returns
    -------
    TrajectoryData
        ``history`` (N, H, 2), ``future`` (N, T, 2), ``labels`` the intent indices (N,),
        ``dt``.

    Examples
    --------
    >>> d = make_bicycle_traffic(5, history=4, horizon=6, random_state=0)
    >>> d.history.shape, d.future.shape, d.history[:, -1].tolist()[0]
    ((5, 4, 2), (5, 6, 2), [0.0, 0.0])
    """
    for name, val in (
        ("n_samples", n_samples),
        ("history", history),
        ("horizon", horizon),
        ("substeps", substeps),
    ):
        if int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer; got {val!r}.")
    if history < 2:
        raise ValueError(f"history must be >= 2 to define a velocity; got {history}.")
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite float; got {dt!r}.")
    for name, val in (
        ("accel_noise", accel_noise),
        ("steer_noise", steer_noise),
        ("obs_noise", obs_noise),
    ):
        if not (np.isfinite(val) and val >= 0):
            raise ValueError(f"{name} must be a finite float >= 0; got {val!r}.")
    lo, hi = speed_range
    if not 0 <= lo <= hi:
        raise ValueError(f"speed_range must satisfy 0 <= low <= high; got {speed_range}.")
    if intent_probs is None:
        intent_probs = np.full(len(INTENTS), 1.0 / len(INTENTS))
    intent_probs = np.asarray(intent_probs, dtype=float)
    if intent_probs.shape != (len(INTENTS),) or np.any(intent_probs < 0):
        raise ValueError(f"intent_probs must be {len(INTENTS)} non-negative numbers.")
    intent_probs = intent_probs / intent_probs.sum()
    if isinstance(random_state, np.random.Generator):
        rng = random_state
    else:
        rng = check_random_state(random_state)
    n = int(n_samples)

    def unif(a, b):
        return rng.uniform(a, b, size=n)

    intent = rng.choice(len(INTENTS), size=n, p=intent_probs)
    L = unif(2.5, 3.2)
    v = unif(lo, hi)
    v0 = v.copy()
    prof = (unif(0.0, 0.5), unif(2.0, 4.0), unif(8.0, 30.0), unif(2.0, 5.0))
    h = dt / substeps
    rate = 1.0  # OU mean-reversion rate 1/s
    decay = np.exp(-rate * h)
    kick = np.sqrt(1 - decay**2)
    na = rng.normal(size=n) * accel_noise
    nd = rng.normal(size=n) * steer_noise
    x = np.zeros(n)
    y = np.zeros(n)
    th = np.zeros(n)
    n_steps = history - 1 + horizon
    out = np.empty((n, n_steps + 1, 2))
    out[:, 0] = 0.0
    t0 = -(history - 1) * dt
    for i in range(n_steps):
        for j in range(substeps):
            t = t0 + i * dt + j * h
            if t >= 0:
                a_nom, k_nom = _intent_profiles(intent, np.full(n, t), v0, prof)
            else:
                a_nom, k_nom = np.zeros(n), np.zeros(n)
            a = np.clip(a_nom + na, -8.0, 4.0)
            delta = np.clip(np.arctan(L * k_nom) + nd, -0.5, 0.5)
            # RK2 (midpoint) at the fine step: not the forecaster's own Euler integrator
            vm = np.maximum(v + 0.5 * h * a, 0.0)
            thm = th + 0.5 * h * v * np.tan(delta) / L
            x = x + h * vm * np.cos(thm)
            y = y + h * vm * np.sin(thm)
            th = th + h * vm * np.tan(delta) / L
            v = np.maximum(v + h * a, 0.0)
            na = decay * na + kick * accel_noise * rng.normal(size=n)
            nd = decay * nd + kick * steer_noise * rng.normal(size=n)
        out[:, i + 1, 0], out[:, i + 1, 1] = x, y
    # agent frame: current position at the origin, current heading along +x
    cur = history - 1
    vel = out[:, cur] - out[:, cur - 1]
    ang = np.arctan2(vel[:, 1], vel[:, 0])
    ang = np.where(np.linalg.norm(vel, axis=1) > 1e-9, ang, 0.0)
    c, s = np.cos(-ang), np.sin(-ang)
    R = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n, 2, 2)
    rel = np.einsum("nij,ntj->nti", R, out - out[:, cur : cur + 1])
    hist = rel[:, :history].copy()
    fut = rel[:, history:].copy()
    if obs_noise > 0:
        hist = hist + rng.normal(scale=obs_noise, size=hist.shape)
    return TrajectoryData(hist, fut, intent, float(dt))


def _read_eth_ucy_file(path):
    try:
        raw = np.loadtxt(path, dtype=float, ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"could not parse {path!r} as ETH/UCY text (frame_id ped_id x y per line): {err}"
        ) from err
    if raw.shape[1] != 4:
        raise ValueError(f"{path!r} must have 4 columns (frame_id ped_id x y); got {raw.shape[1]}.")
    if not np.all(np.isfinite(raw)):
        raise ValueError(f"{path!r} contains NaN or inf values.")
    return raw


def _tracks(raw, frame_step):
    """Split rows into contiguous tracks: a list of (ped_id, first step, (n, 2) positions)."""
    step = np.round(raw[:, 0] / frame_step).astype(np.int64)
    pid = raw[:, 1].astype(np.int64)
    order = np.lexsort((step, pid))
    step, pid, xy = step[order], pid[order], raw[order, 2:]
    out = []
    start = 0
    for i in range(1, len(step) + 1):
        if i == len(step) or pid[i] != pid[start] or step[i] != step[i - 1] + 1:
            out.append((int(pid[start]), int(step[start]), xy[start:i]))
            start = i
    return out


def load_eth_ucy(
    directory,
    scene,
    *,
    split="test",
    history=8,
    horizon=12,
    stride=1,
    frame_step=10,
    dt=0.4,
    max_neighbours=0,
):
    """Sliding windows from the raw ETH/UCY pedestrian text files.

    Each file has one row per observation, ``frame_id ped_id x y`` (whitespace separated,
    metres, world frame); frame ids advance by ``frame_step`` = 10 per 0.4 s step.
    Tracks are split at gaps, and every window of ``history + horizon`` consecutive
    positions (every ``stride`` steps) gives one sample (standard protocol: 8 observed,
    12 predicted).

    Parameters
    ----------
    directory : str or path
        Folder with the ``*.txt`` files (e.g. ``../shared/data/eth_ucy``).
    scene : str
        A benchmark scene (``"eth"``, ``"hotel"``, ``"univ"``, ``"zara1"``, ``"zara2"``)
        or a file stem (e.g. ``"crowds_zara03"``).
    split : {"test", "train"}
        ``"test"``: the scene's own files. ``"train"``: every other file in the
        leave-one-scene-out protocol (including ``crowds_zara03`` and ``uni_examples``);
        only for benchmark scene names.
    history, horizon : int
    stride : int
        Window stride in steps.
    frame_step : int
        Frame-id increment per step.
    dt : float
        Step length in seconds (returned as ``TrajectoryData.dt``).
    max_neighbours : int, default=0
        With ``M > 0``, also return the M other pedestrians of the same file nearest to
        the agent at its current (last observed) step, with their positions over the H
        observed steps (``neighbours`` (N, M, H, 2), ``neighbour_mask`` (N, M)). Only
        frames up to the current one are read, so nothing from the future enters; a
        neighbour not yet seen at an earlier observed step repeats its first observed
        position there (a gap repeats the last one before it).

    Returns
    -------
    TrajectoryData
        ``history`` (N, H, 2), ``future`` (N, T, 2) in world coordinates, ``labels`` the
        pedestrian ids (per file), ``dt``, ``sources`` the file stem of each window (and
        the neighbours, with ``max_neighbours > 0``).

    Raises
    ------
    ValueError
        Unknown scene, missing file, unparsable content.
    """
    directory = os.fspath(directory)
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train'; got {split!r}.")
    if scene in ETH_UCY_SCENES:
        if split == "test":
            stems = ETH_UCY_SCENES[scene]
        else:
            stems = (
                tuple(s for k, v in ETH_UCY_SCENES.items() if k != scene for s in v)
                + _ETH_UCY_EXTRA
            )
    else:
        if split == "train":
            raise ValueError(
                f"split='train' needs a benchmark scene {sorted(ETH_UCY_SCENES)}; got {scene!r}."
            )
        stems = (scene,)
    for name, val in (("history", history), ("horizon", horizon), ("stride", stride)):
        if int(val) != val or val < 1:
            raise ValueError(f"{name} must be a positive integer; got {val!r}.")
    if int(max_neighbours) != max_neighbours or max_neighbours < 0:
        raise ValueError(f"max_neighbours must be a non-negative integer; got {max_neighbours!r}.")
    M = int(max_neighbours)
    hs, fs, ids, nbs, masks, srcs = [], [], [], [], [], []
    w = history + horizon
    for stem in stems:
        path = os.path.join(directory, stem + ".txt")
        if not os.path.isfile(path):
            raise ValueError(
                f"ETH/UCY file {path!r} not found. Known scenes: {sorted(ETH_UCY_SCENES)}; "
                "pass the folder holding the raw *.txt files."
            )
        raw = _read_eth_ucy_file(path)
        scene = _SceneIndex(raw, frame_step) if M else None
        for pid, first, xy in _tracks(raw, frame_step):
            for s in range(0, len(xy) - w + 1, stride):
                hs.append(xy[s : s + history])
                fs.append(xy[s + history : s + w])
                ids.append(pid)
                srcs.append(stem)
                if M:
                    nb, mask = scene.neighbours(pid, first + s + history - 1, history, M)
                    nbs.append(nb)
                    masks.append(mask)
    if not hs:
        empty = np.empty((0, history, 2)), np.empty((0, horizon, 2))
        extra = (np.empty((0, M, history, 2)), np.empty((0, M), bool)) if M else (None, None)
        return TrajectoryData(
            *empty, np.empty(0, dtype=np.int64), float(dt), *extra, sources=np.empty(0, str)
        )
    extra = (np.stack(nbs), np.stack(masks)) if M else (None, None)
    return TrajectoryData(
        np.stack(hs), np.stack(fs), np.asarray(ids, dtype=np.int64), float(dt), *extra,
        sources=np.asarray(srcs),
    )  # fmt: skip


class _SceneIndex:
    """Positions of every pedestrian of one file by step, for neighbour look-ups."""

    def __init__(self, raw, frame_step):
        step = np.round(raw[:, 0] / frame_step).astype(np.int64)
        pid = raw[:, 1].astype(np.int64)
        self.at = {}  # step -> (pids, positions)
        order = np.argsort(step, kind="stable")
        step, pid, xy = step[order], pid[order], raw[order, 2:]
        cuts = np.flatnonzero(np.diff(step)) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(step)]):
            self.at[int(step[a])] = (pid[a:b], xy[a:b])
        self.track = {}  # pid -> {step: position}
        for s, p, q in zip(step.tolist(), pid.tolist(), xy):
            self.track.setdefault(p, {})[s] = q

    def neighbours(self, pid, now, history, M):
        """The M others nearest to ``pid`` at step ``now``: (M, H, 2) positions, (M,) mask.

        Reads steps ``now - H + 1 .. now`` only.
        """
        out, mask = np.zeros((M, history, 2)), np.zeros(M, bool)
        pids, xy = self.at.get(now, (np.empty(0, np.int64), np.empty((0, 2))))
        me = pids == pid
        if not me.any():
            return out, mask
        others = np.flatnonzero(~me)
        dist = np.linalg.norm(xy[others] - xy[me][0], axis=1)
        for j, i in enumerate(others[np.argsort(dist, kind="stable")[:M]]):
            track = self.track[int(pids[i])]
            steps = range(now - history + 1, now + 1)
            seen = [track.get(t) for t in steps]
            first = next(q for q in seen if q is not None)
            last = first
            for t, q in enumerate(seen):
                last = q if q is not None else last
                out[j, t] = last
            mask[j] = True
        return out, mask
