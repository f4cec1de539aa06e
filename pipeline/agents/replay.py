"""Replay buffer (numpy, fixed capacity, seeded sampling) and RLPD's MixedSampler.

A batch is a dict of numpy arrays with these keys (what every backend's `update` reads):

    obs       (B, S) float32   observation where the action (or code) was chosen
    action    (B, A) float32   continuous action in [-1, 1], or (B,) int64 discrete action / code
    reward    (B,)   float32   Σ_j γ^j r_{t+j} over the `steps` env steps the action spanned
    next_obs  (B, S) float32   observation after those steps
    terminal  (B,)   bool      the env terminated (a time-limit truncation is NOT terminal)
    steps     (B,)   int64     env steps executed (1 for plain actions, h ≤ H for macro actions);
                               backends bootstrap with γ^steps
    demo      (B,)   bool      the row comes from the demonstrations (MAQ+IQL's prior uses it)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def transition_fields(obs_dim: int, action_space: gym.Space) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The field layout of a transition for this observation size and action space."""
    if isinstance(action_space, gym.spaces.Discrete):
        action = ((), np.dtype(np.int64))
    elif isinstance(action_space, gym.spaces.Box):
        action = (tuple(action_space.shape), np.dtype(np.float32))
    else:
        raise TypeError(f"unsupported action space {action_space!r}: use Box or Discrete")
    return {
        "obs": ((obs_dim,), np.dtype(np.float32)),
        "action": action,
        "reward": ((), np.dtype(np.float32)),
        "next_obs": ((obs_dim,), np.dtype(np.float32)),
        "terminal": ((), np.dtype(bool)),
        "steps": ((), np.dtype(np.int64)),
        "demo": ((), np.dtype(bool)),
    }


class ReplayBuffer:
    """Circular buffer of transitions; when full, the oldest rows are overwritten."""

    def __init__(self, capacity: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]], seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.data = {name: np.zeros((capacity, *shape), dtype=dtype) for name, (shape, dtype) in fields.items()}
        self.rng = np.random.default_rng(seed)
        self.size = 0
        self.pos = 0

    @classmethod
    def for_spaces(cls, capacity: int, obs_dim: int, action_space: gym.Space, seed: int = 0) -> "ReplayBuffer":
        return cls(capacity, transition_fields(obs_dim, action_space), seed)

    @classmethod
    def from_batch(cls, batch: dict[str, np.ndarray], obs_dim: int, action_space: gym.Space,
                   capacity: int | None = None, seed: int = 0) -> "ReplayBuffer":
        """A buffer holding `batch` (e.g. `MacroTransitions.as_batch()`), with room for
        `capacity` rows in all (default: just the batch). Offline then online training keeps
        adding the agent's own transitions to it (CORL's fine-tuning scheme)."""
        n = len(batch["obs"])
        buffer = cls.for_spaces(max(n, capacity or n), obs_dim, action_space, seed)
        buffer.add_batch(**batch)
        return buffer

    def __len__(self) -> int:
        return self.size

    def add(self, **row) -> None:
        """Add one transition; fields not given (e.g. `steps`, `demo`) take defaults 1 / False."""
        self.add_batch(**{k: np.asarray(v)[None] for k, v in row.items()})

    def add_batch(self, **rows) -> None:
        """Add n transitions at once (arrays with a leading dimension n)."""
        unknown = set(rows) - set(self.data)
        if unknown:
            raise KeyError(f"unknown fields {sorted(unknown)}; this buffer holds {sorted(self.data)}")
        n = len(next(iter(rows.values())))
        if n > self.capacity:  # only the newest `capacity` rows survive anyway
            rows = {k: np.asarray(v)[-self.capacity :] for k, v in rows.items()}
            n = self.capacity
        idx = (self.pos + np.arange(n)) % self.capacity
        for name, column in self.data.items():
            if name in rows:
                column[idx] = rows[name]
            else:
                column[idx] = 1 if name == "steps" else 0
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """`batch_size` rows drawn uniformly with replacement (seeded)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, self.size, size=batch_size)
        return {name: column[idx] for name, column in self.data.items()}


class MixedSampler:
    """RLPD's symmetric sampling: each batch takes `round(B · offline_ratio)` rows from the
    demonstrations and the rest from online experience, concatenated (offline rows first).
    The `demo` column is set from where each row came from."""

    def __init__(self, offline: ReplayBuffer, online: ReplayBuffer, offline_ratio: float = 0.5):
        if not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
        self.offline, self.online, self.offline_ratio = offline, online, offline_ratio

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        n_offline = int(round(batch_size * self.offline_ratio))
        parts = []
        if n_offline:
            parts.append(self.offline.sample(n_offline))
        if batch_size - n_offline:
            parts.append(self.online.sample(batch_size - n_offline))
        batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        batch["demo"] = np.arange(batch_size) < n_offline
        return batch
