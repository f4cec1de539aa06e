"""`Episodes`: a set of demonstration episodes stored as flat arrays plus episode offsets.

Steps of all episodes are concatenated; episode `i` owns steps `offsets[i]:offsets[i+1]`.
This is the one in-memory and on-disk format every data source is converted to.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.io import atomic_path

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Episodes:
    obs: np.ndarray  # (ΣT, S) float32, observation before each step
    next_obs: np.ndarray  # (ΣT, S) float32, observation after each step
    actions: np.ndarray  # (ΣT, A) float32
    rewards: np.ndarray  # (ΣT,) float32
    terminations: np.ndarray  # (ΣT,) bool, the MDP ended (never true for Adroit)
    truncations: np.ndarray  # (ΣT,) bool, a time limit cut the episode
    offsets: np.ndarray  # (E + 1,) int64, offsets[0] = 0, offsets[-1] = ΣT
    episode_ids: np.ndarray  # (E,) int64, each episode's id in the source
    success: np.ndarray | None = None  # (ΣT,) bool, the env's per-step success flag, if recorded

    def __post_init__(self):
        object.__setattr__(self, "offsets", np.asarray(self.offsets, dtype=np.int64))
        object.__setattr__(self, "episode_ids", np.asarray(self.episode_ids, dtype=np.int64))
        n = len(self.actions)
        for name in ("obs", "next_obs", "rewards", "terminations", "truncations"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Episodes.{name} has {len(getattr(self, name))} steps, actions has {n}")
        if self.success is not None and len(self.success) != n:
            raise ValueError(f"Episodes.success has {len(self.success)} steps, actions has {n}")
        if self.offsets[0] != 0 or self.offsets[-1] != n or np.any(np.diff(self.offsets) < 0):
            raise ValueError("Episodes.offsets must rise from 0 to the number of steps")
        if len(self.episode_ids) != len(self.offsets) - 1:
            raise ValueError("Episodes.episode_ids needs one id per episode")

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_episodes(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_steps(self) -> int:
        return len(self.actions)

    @property
    def lengths(self) -> np.ndarray:  # (E,)
        return np.diff(self.offsets)

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def returns(self) -> np.ndarray:  # (E,) undiscounted episode returns
        return np.add.reduceat(self.rewards.astype(np.float64), self.offsets[:-1]) if self.n_steps else np.zeros(0)

    def episode_slices(self) -> Iterator[slice]:
        for start, stop in zip(self.offsets[:-1], self.offsets[1:]):
            yield slice(int(start), int(stop))

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_trajectories(cls, trajectories: list[dict], episode_ids=None) -> "Episodes":
        """Concatenate validated per-episode dicts (the official MAQ keys: observations,
        next_observations, actions, rewards, terminals; optional truncations and success).

        Without `truncations`, an episode that did not terminate counts as cut by the time limit
        at its last step (what a complete Adroit episode is)."""
        lengths = [len(t["actions"]) for t in trajectories]

        def concat(key, dtype):
            return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trajectories])

        terminations = concat("terminals", bool)
        if all("truncations" in t for t in trajectories):
            truncations = concat("truncations", bool)
        else:
            last_step = np.concatenate([np.arange(n) == n - 1 for n in lengths])
            truncations = last_step & ~terminations
        return cls(
            obs=concat("observations", np.float32),
            next_obs=concat("next_observations", np.float32),
            actions=concat("actions", np.float32),
            rewards=concat("rewards", np.float32),
            terminations=terminations,
            truncations=truncations,
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            episode_ids=np.arange(len(trajectories)) if episode_ids is None else np.asarray(episode_ids),
            success=concat("success", bool) if all("success" in t for t in trajectories) else None,
        )

    def select(self, episode_indices) -> "Episodes":
        """The episodes at `episode_indices` (positions, not ids), in that order."""
        episode_indices = np.asarray(episode_indices, dtype=np.int64)
        steps = np.concatenate(
            [np.arange(self.offsets[i], self.offsets[i + 1]) for i in episode_indices] or [np.zeros(0, np.int64)]
        )
        offsets = np.concatenate([[0], np.cumsum(self.lengths[episode_indices])]).astype(np.int64)
        return Episodes(
            obs=self.obs[steps],
            next_obs=self.next_obs[steps],
            actions=self.actions[steps],
            rewards=self.rewards[steps],
            terminations=self.terminations[steps],
            truncations=self.truncations[steps],
            offsets=offsets,
            episode_ids=self.episode_ids[episode_indices],
            success=None if self.success is None else self.success[steps],
        )

    def first_steps(self, n: int) -> "Episodes":
        """Every episode cut to its first `n` steps; a cut episode ends truncated on its last kept
        step (as a time limit of `n` steps would have ended it). Shorter episodes are unchanged."""
        if n < 1:
            raise ValueError(f"first_steps needs n >= 1, got {n}")
        if self.lengths.max(initial=0) <= n:
            return self
        kept = np.minimum(self.lengths, n)
        steps = np.concatenate([np.arange(start, start + k) for start, k in zip(self.offsets[:-1], kept)])
        offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        truncations = self.truncations[steps].copy()
        truncations[offsets[1:][self.lengths > n] - 1] = True
        return Episodes(
            obs=self.obs[steps], next_obs=self.next_obs[steps], actions=self.actions[steps], rewards=self.rewards[steps],
            terminations=self.terminations[steps], truncations=truncations, offsets=offsets, episode_ids=self.episode_ids,
            success=None if self.success is None else self.success[steps],
        )

    # -- IO ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write all arrays to one safetensors file, atomically."""
        from safetensors.numpy import save_file

        arrays = {f.name: np.ascontiguousarray(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})

    @classmethod
    def load(cls, path: str | Path) -> "Episodes":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no episodes file at {path}; run the prepare stage (`dvc repro prepare`) first")
        try:
            with safe_open(str(path), framework="numpy") as f:
                arrays = {key: f.get_tensor(key) for key in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise ValueError(f"{path} is not a readable episodes file ({exc}); delete it and re-run prepare") from exc
        arrays.setdefault("success", None)
        return cls(**arrays)
