"""The macro-action layer: acting in codes, and demonstrations as macro transitions.

`MacroActionEnv(env, codebook, gamma, execute_steps)` turns any env into one whose action space
is Discrete(K): `step(code)` decodes `(obs, code)` into H actions and runs the first n =
`execute_steps` of them open loop (n = H by default: the paper's method; n < H is receding-horizon
execution, choosing the next code after n steps), stopping early when the episode ends. It
returns `R = Σ_j γ^j r_{t+j}` over the h ≤ n executed steps and `info["steps"] = h`, so a learner
bootstraps with `γ^h`. `terminated` is true only when the env
terminated; a time-limit truncation is reported as `truncated` (and must not stop bootstrapping).
The official MAQ code sums rewards undiscounted and treats time limits as terminal; this does not.

`macro_transitions(windows, codebook)` labels each demonstration window with its code, giving
the clean offline transition `(s_t, k_t, R_t, s_{t+n}, terminal, n)` per window (windows cut
with the same `execute_steps`: `make_windows(episodes, H, gamma, execute_steps)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from pipeline.data.windows import Windows
from pipeline.envs import OpenLoopRunner


@runtime_checkable
class Codebook(Protocol):
    """What the agents need from a trained VQ-VAE codebook (numpy in/out, action units)."""

    H: int  # macro length
    K: int  # number of codes
    hash: str  # sha256 of its weights: identifies the trained codebook; agents record it

    def encode(self, obs: np.ndarray, macro: np.ndarray) -> np.ndarray:  # (B, S), (B, H, A) → (B,) int
        ...

    def decode(self, obs: np.ndarray, code: np.ndarray) -> np.ndarray:  # (B, S), (B,) → (B, H, A)
        ...


def executed_steps(codebook: Codebook, execute_steps: int | None) -> int:
    """n, the decoded actions executed per code: `execute_steps`, or H when None; 1 ≤ n ≤ H."""
    n = codebook.H if execute_steps is None else int(execute_steps)
    if not 1 <= n <= codebook.H:
        raise ValueError(f"execute_steps is {execute_steps}, but a code of this codebook decodes to H={codebook.H} "
                         f"actions: choose 1 ≤ execute_steps ≤ {codebook.H} (or null for H)")
    return n


class MacroActionEnv(gym.Wrapper):
    """Act with codes: each step executes the first n (default H) actions of the decoded macro
    action open loop.

    Decoded actions are clipped to the env's action bounds before execution (a decoder output is
    not guaranteed to lie inside them). `info` holds the last env step's info plus:
      steps     h, env steps executed (h < n only if the episode ended inside the macro)
      rewards   (h,) the per-step rewards
      success   (h,) bool, each step's `info["success"]` (False when the env has none)
      actions   (h, A) the executed actions
      code      the code that was played

    On an Adroit env from `make_env`, the steps run through `runner` (an `OpenLoopRunner`)
    instead of `env.step`: same observation, rewards, success, flags and last-step info, to the
    bit, at a fraction of the per-step cost. Any other env is stepped one action at a time.
    """

    def __init__(self, env: gym.Env, codebook: Codebook, gamma: float = 0.99, execute_steps: int | None = None):
        super().__init__(env)
        if not isinstance(env.action_space, gym.spaces.Box):
            raise TypeError(f"MacroActionEnv needs a Box action space underneath, got {env.action_space!r}")
        self.codebook = codebook
        self.gamma = gamma
        self.execute_steps = executed_steps(codebook, execute_steps)
        self.action_space = gym.spaces.Discrete(codebook.K)
        self.runner = OpenLoopRunner.of(env)  # None: step the env
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, code):
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        code = int(code)
        if not 0 <= code < self.codebook.K:  # (Discrete.contains, without its per-call cost)
            raise ValueError(f"code {code} is outside [0, {self.codebook.K})")
        space = self.env.action_space
        macro = self.codebook.decode(np.asarray(self._obs, np.float32)[None], np.array([code]))[0]  # (H, A)
        actions = np.clip(macro[: self.execute_steps], space.low, space.high).astype(space.dtype)  # (n, A)
        if self.runner is not None:
            obs, rewards, success, terminated, truncated, info = self.runner.run(actions)
        else:
            obs, rewards, success, terminated, truncated, info = self._step_each(actions)
        self._obs = obs
        info = dict(info)
        info.update(steps=len(rewards), rewards=rewards, success=success, actions=actions[: len(rewards)], code=code)
        reward = float(rewards @ self.gamma ** np.arange(len(rewards)))
        return obs, reward, bool(terminated), bool(truncated and not terminated), info

    def _step_each(self, actions: np.ndarray):  # (n, A)
        """Step the env with each action in turn until the episode ends; the runner's results."""
        rewards, success = [], []
        for action in actions:
            obs, reward, terminated, truncated, info = self.env.step(action)
            rewards.append(float(reward))
            success.append(bool(info.get("success", False)))
            if terminated or truncated:
                break
        return obs, np.asarray(rewards), np.asarray(success), terminated, truncated, info


@dataclass(frozen=True)
class MacroTransitions:
    obs: np.ndarray  # (N, S) s_t
    code: np.ndarray  # (N,) int64, the encoder's code of (s_t, a_{t:t+H})
    reward: np.ndarray  # (N,) Σ_j γ^j r_{t+j}
    next_obs: np.ndarray  # (N, S) s_{t+n}
    terminal: np.ndarray  # (N,) bool
    steps: np.ndarray  # (N,) int64, n (the windows' execute_steps)

    def __len__(self) -> int:
        return len(self.obs)

    def as_batch(self) -> dict[str, np.ndarray]:
        """The replay-buffer columns (`action` holds the code; rows are demonstrations)."""
        return {"obs": self.obs, "action": self.code, "reward": self.reward, "next_obs": self.next_obs,
                "terminal": self.terminal, "steps": self.steps, "demo": np.ones(len(self), dtype=bool)}


def macro_transitions(windows: Windows, codebook: Codebook, batch_size: int = 4096) -> MacroTransitions:
    """Label every window with `codebook.encode(obs, macro)` (in chunks of `batch_size`)."""
    if windows.macro.shape[1] != codebook.H:
        raise ValueError(f"windows have H={windows.macro.shape[1]} but the codebook has H={codebook.H}; "
                         "cut windows with the codebook's H")
    code = np.concatenate([
        np.asarray(codebook.encode(windows.obs[i : i + batch_size], windows.macro[i : i + batch_size]))
        for i in range(0, len(windows), batch_size)
    ]).astype(np.int64)  # (N,)
    if code.shape != (len(windows),) or code.min(initial=0) < 0 or code.max(initial=0) >= codebook.K:
        raise ValueError(f"codebook.encode returned codes outside [0, {codebook.K}) or of the wrong shape")
    return MacroTransitions(
        obs=windows.obs.astype(np.float32), code=code, reward=windows.reward.astype(np.float32),
        next_obs=windows.next_obs.astype(np.float32), terminal=windows.terminal.astype(bool),
        steps=windows.steps.astype(np.int64),
    )
