"""Macro-action windows: a start observation and the next H actions, never across episodes.

A window starting at step t of an episode of length T covers steps t … t+H-1, so each episode
gives `T - H + 1` windows (t = 0 … T-H). An episode shorter than H gives none: padding would invent
actions a person never took, so those episodes are skipped and counted in `Windows.skipped_episodes`.

Each window is also a macro transition `(s_t, macro, R_t, s_{t+n}, terminal)` over the first
n = `execute_steps` ≤ H of its actions (n = H by default, the paper's open-loop macro), with
`R_t = Σ_{j<n} γ^j r_{t+j}`. With n < H (receding-horizon execution: the agent executes the first
n decoded actions, then chooses again) the window's code still labels all H actions, and the
transition ends where the agent would choose its next code. (The official MAQ code concatenates
trajectories, so its windows run across episode boundaries; here they cannot.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.episodes import Episodes


@dataclass(frozen=True)
class Windows:
    obs: np.ndarray  # (N, S) start observation s_t
    macro: np.ndarray  # (N, H, A) actions a_t … a_{t+H-1}
    reward: np.ndarray  # (N,) float64, Σ_{j<n} γ^j r_{t+j}
    next_obs: np.ndarray  # (N, S) s_{t+n}, the observation after the n-th action
    terminal: np.ndarray  # (N,) bool, the episode terminated on step t+n-1
    truncated: np.ndarray  # (N,) bool, a time limit cut the episode on step t+n-1
    steps: np.ndarray  # (N,) int64, n: env steps the transition spans
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


def make_windows(episodes: Episodes, H: int, gamma: float = 0.99, execute_steps: int | None = None) -> Windows:
    """All H-step windows of `episodes`, as transitions over their first `execute_steps` (None: H)
    actions (see module docstring)."""
    if H < 1:
        raise ValueError(f"macro length H must be >= 1, got {H}")
    n = H if execute_steps is None else int(execute_steps)
    if not 1 <= n <= H:
        raise ValueError(f"execute_steps must be in [1, H={H}], got {execute_steps}")
    episode, start = window_starts(episodes.lengths, H)
    if len(episode) == 0:
        raise ValueError(
            f"no episode is at least H={H} steps long (longest: {episodes.lengths.max(initial=0)}); "
            "lower codebook.H or use longer demonstrations"
        )
    first = episodes.offsets[episode] + start  # (N,) global index of step t
    steps = first[:, None] + np.arange(H)  # (N, H)
    executed = steps[:, :n]  # (N, n)
    last = executed[:, -1]
    discounts = gamma ** np.arange(n)  # (n,)
    return Windows(
        obs=episodes.obs[first],
        macro=episodes.actions[steps],  # (N, H, A)
        reward=episodes.rewards[executed].astype(np.float64) @ discounts,
        next_obs=episodes.next_obs[last],
        terminal=episodes.terminations[last],
        truncated=episodes.truncations[last],
        steps=np.full(len(first), n, dtype=np.int64),
        episode=episode,
        start=start,
        skipped_episodes=int(np.sum(episodes.lengths < H)),
    )
