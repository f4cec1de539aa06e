"""Macro-action windows: a start observation and the next H actions, never across episodes.

A window starting at step t of an episode of length T covers steps t … t+H-1, so each episode
gives `T - H + 1` windows (t = 0 … T-H). An episode shorter than H gives none: padding would invent
actions a person never took, so those episodes are skipped and counted in `Windows.skipped_episodes`.

Each window is also a macro transition `(s_t, macro, R_t, s_{t+H}, terminal)`, with
`R_t = Σ_j γ^j r_{t+j}` over the H steps. (The official MAQ code concatenates trajectories, so
its windows run across episode boundaries; here they cannot.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.episodes import Episodes


@dataclass(frozen=True)
class Windows:
    obs: np.ndarray  # (N, S) start observation s_t
    macro: np.ndarray  # (N, H, A) actions a_t … a_{t+H-1}
    reward: np.ndarray  # (N,) float64, Σ_{j<H} γ^j r_{t+j}
    next_obs: np.ndarray  # (N, S) s_{t+H}, the observation after the last action
    terminal: np.ndarray  # (N,) bool, the episode terminated on the window's last step
    truncated: np.ndarray  # (N,) bool, a time limit cut the episode on the window's last step
    steps: np.ndarray  # (N,) int64, env steps the window spans (always H here)
    episode: np.ndarray  # (N,) int64, index of the episode the window comes from
    start: np.ndarray  # (N,) int64, t within that episode
    skipped_episodes: int  # episodes shorter than H, which give no window

    def __len__(self) -> int:
        return len(self.obs)


def window_starts(lengths: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode index and start step of every full window: `T - H + 1` per episode of length T."""
    per_episode = np.maximum(np.asarray(lengths) - H + 1, 0)
    episode = np.repeat(np.arange(len(per_episode)), per_episode)
    first_of_episode = np.cumsum(per_episode) - per_episode  # (E,)
    start = np.arange(per_episode.sum()) - np.repeat(first_of_episode, per_episode)
    return episode.astype(np.int64), start.astype(np.int64)


def make_windows(episodes: Episodes, H: int, gamma: float = 0.99) -> Windows:
    """All H-step windows of `episodes` (see module docstring)."""
    if H < 1:
        raise ValueError(f"macro length H must be >= 1, got {H}")
    episode, start = window_starts(episodes.lengths, H)
    if len(episode) == 0:
        raise ValueError(
            f"no episode is at least H={H} steps long (longest: {episodes.lengths.max(initial=0)}); "
            "lower codebook.H or use longer demonstrations"
        )
    first = episodes.offsets[episode] + start  # (N,) global index of step t
    steps = first[:, None] + np.arange(H)  # (N, H)
    last = steps[:, -1]
    discounts = gamma ** np.arange(H)  # (H,)
    return Windows(
        obs=episodes.obs[first],
        macro=episodes.actions[steps],  # (N, H, A)
        reward=episodes.rewards[steps].astype(np.float64) @ discounts,
        next_obs=episodes.next_obs[last],
        terminal=episodes.terminations[last],
        truncated=episodes.truncations[last],
        steps=np.full(len(first), H, dtype=np.int64),
        episode=episode,
        start=start,
        skipped_episodes=int(np.sum(episodes.lengths < H)),
    )
