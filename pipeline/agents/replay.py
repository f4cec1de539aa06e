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
    """RLPD's symmetric sampling: every minibatch of `minibatch_size` rows takes
    `round(minibatch_size · offline_ratio)` rows from the demonstrations and the rest from online
    experience (offline rows first within each minibatch). A batch of n = utd × minibatch_size rows
    is split by the update into utd consecutive minibatches, and each is mixed, as ikostrikov/rlpd's
    `combine` interleaves its offline and online halves. The `demo` column says where each row came from."""

    def __init__(self, offline: ReplayBuffer, online: ReplayBuffer, offline_ratio: float = 0.5, minibatch_size: int | None = None):
        if not 0.0 <= offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {offline_ratio}")
        self.offline, self.online, self.offline_ratio, self.minibatch_size = offline, online, offline_ratio, minibatch_size

    def layout(self, batch_size: int) -> tuple[int, int, int]:
        """(minibatches, offline rows per minibatch, online rows per minibatch) of a batch."""
        size = self.minibatch_size or batch_size
        if batch_size % size:
            raise ValueError(f"a batch of {batch_size} rows does not split into minibatches of {size}")
        n_offline = int(round(size * self.offline_ratio))
        return batch_size // size, n_offline, size - n_offline

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        minibatches, n_offline, n_online = self.layout(batch_size)
        parts = []
        if n_offline:
            parts.append(self.offline.sample(minibatches * n_offline))
        if n_online:
            parts.append(self.online.sample(minibatches * n_online))
        batch = {k: np.concatenate([p[k].reshape(minibatches, -1, *p[k].shape[1:]) for p in parts], axis=1).reshape(
            batch_size, *parts[0][k].shape[1:]) for k in parts[0]}
        batch["demo"] = np.tile(np.arange(n_offline + n_online) < n_offline, minibatches)
        return batch


class DeviceReplay:
    """Every member's replay rows mirrored on the agent's device (CUDA), sampled there: a batch
    never crosses the bus, and sampling is part of the captured update round.

    The members' numpy buffers stay the record (checkpoints save them); `add_step` mirrors the
    rows each env step adds. A member's rows are drawn with its own generator (`agent.member_rand`:
    a member sitting the round out draws nothing), uniformly from what its buffers hold, in the
    layout of its sampler (mixed per minibatch for RLPD). The draws differ from the numpy
    samplers' (so CUDA runs differ from CPU runs, as their arithmetic does anyway)."""

    def __init__(self, agent, members: list) -> None:
        import torch

        self.torch, self.agent, self.device = torch, agent, agent.device
        first = members[0].sampler
        self.mixed = isinstance(first, MixedSampler)
        self.sampler = first

        def stack(buffers: list[ReplayBuffer]) -> dict:
            return {k: torch.as_tensor(np.stack([b.data[k] for b in buffers])).to(self.device) for k in buffers[0].data}

        self.online = stack([m.buffers["online"] for m in members])  # (P, capacity, …)
        self.offline = stack([m.buffers["offline"] for m in members]) if self.mixed else None
        self.members = members
        self.sizes = torch.zeros(len(members), device=self.device)  # rows held per member (online buffer)
        self.offline_sizes = torch.tensor([m.buffers["offline"].size for m in members], device=self.device, dtype=torch.float32) if self.mixed else None
        self.rows = torch.arange(len(members), device=self.device)
        self._sync_sizes()

    def _sync_sizes(self) -> None:
        self.sizes.copy_(self.torch.tensor([m.buffers["online"].size for m in self.members], dtype=self.torch.float32))

    def add_step(self, rows: dict[str, np.ndarray], stepped: np.ndarray) -> None:
        """Mirror the row (per field: (P, …), meaningful where `stepped`) each stepping member just
        added to its numpy online buffer."""
        idx = np.flatnonzero(stepped)
        if not len(idx):
            return
        slots = [(self.members[i].buffers["online"].pos - 1) % self.members[i].buffers["online"].capacity for i in idx]
        members = self.torch.as_tensor(idx, device=self.device)
        slots = self.torch.as_tensor(np.asarray(slots), device=self.device)
        for k, column in self.online.items():
            value = np.asarray(rows[k])[idx]
            column[members, slots] = self.torch.as_tensor(value, dtype=column.dtype).to(self.device, non_blocking=True)
        self._sync_sizes()

    def _draw(self, data: dict, sizes, n: int) -> dict:
        u = self.agent.member_rand(n)  # (P, n), member p's from its own generator
        idx = (u * sizes[:, None]).long().clamp_max_((sizes[:, None] - 1).clamp_min(0).long())
        return {k: v[self.rows[:, None], idx] for k, v in data.items()}

    def sample(self, batch_size: int) -> dict:
        """A batch (P, batch_size, …) as the members' samplers lay it out, drawn on the device."""
        torch = self.torch
        if not self.mixed:
            return self._draw(self.online, self.sizes, batch_size)
        minibatches, n_offline, n_online = self.sampler.layout(batch_size)
        parts = []
        if n_offline:
            parts.append(self._draw(self.offline, self.offline_sizes, minibatches * n_offline))
        if n_online:
            parts.append(self._draw(self.online, self.sizes, minibatches * n_online))
        P = len(self.members)
        batch = {k: torch.cat([p[k].reshape(P, minibatches, -1, *p[k].shape[2:]) for p in parts], dim=2).reshape(
            P, batch_size, *parts[0][k].shape[2:]) for k in parts[0]}
        demo = (torch.arange(n_offline + n_online, device=self.device) < n_offline).repeat(minibatches)
        batch["demo"] = demo.expand(P, batch_size)
        return batch
