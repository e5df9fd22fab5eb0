"""A replay buffer on the host (NumPy ring buffer); minibatches are stacked for ``lax.scan``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ReplayBuffer", "Transition"]


class Transition(NamedTuple):
    """A batch of transitions; arrays share the leading batch axes.

    ``done`` is 1 only for a true termination (not a time-limit truncation), so the critic
    target bootstraps through truncations.
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray


class ReplayBuffer:
    """Fixed-capacity FIFO replay buffer of ``(s, a, r, s', done)``.

    Parameters
    ----------
    capacity : int
        Maximum number of transitions; the oldest are overwritten.
    obs_dim, act_dim : int
        Observation and action sizes.
    dtype : numpy dtype, default=float32

    Examples
    --------
    >>> buf = ReplayBuffer(3, obs_dim=1, act_dim=1)
    >>> for t in range(5):
    ...     buf.add([t], [0.0], float(t), [t + 1], False)
    >>> len(buf), sorted(buf.obs[:, 0].tolist())
    (3, [2.0, 3.0, 4.0])
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, dtype=np.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}.")
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), dtype)
        self.action = np.zeros((capacity, act_dim), dtype)
        self.reward = np.zeros(capacity, dtype)
        self.next_obs = np.zeros((capacity, obs_dim), dtype)
        self.done = np.zeros(capacity, dtype)
        self._pos = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, obs, action, reward, next_obs, done) -> None:
        i = self._pos
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.done[i] = done
        self._pos = (i + 1) % self.capacity
        self._size = min(self._size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int, n_batches: int | None = None):
        """Uniform minibatches with replacement.

        Returns a :class:`Transition` with leading shape ``(batch_size,)``, or
        ``(n_batches, batch_size)`` when ``n_batches`` is given (for a scanned update).
        """
        if self._size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer; add transitions first.")
        shape = (batch_size,) if n_batches is None else (n_batches, batch_size)
        idx = rng.integers(0, self._size, size=shape)
        return Transition(
            self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.done[idx]
        )
