"""A plain single-env online training loop and a deterministic evaluation, for any backend.

Used by the benchmark; the finetune stage may build on it. Works for plain envs and for
`MacroActionEnv` (a transition spans `info["steps"]` env steps; counts below are agent steps,
i.e. macro steps for MAQ methods). The config of the agent says how: `warmup_steps` uniform-random
steps first, then one `agent.update` round every `update_every` steps on a batch of
`agent.update_batch_size` rows from `sampler` (the online buffer, or a MixedSampler).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np

from pipeline.agents.base import Agent
from pipeline.agents.replay import ReplayBuffer


@dataclass
class TrainLog:
    episode_returns: list[float] = field(default_factory=list)  # undiscounted env return per episode
    episode_ends: list[int] = field(default_factory=list)  # agent step at which each episode ended
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (agent step, mean eval return)
    last_losses: dict[str, float] = field(default_factory=dict)
    updates: int = 0
    steps: int = 0  # agent steps taken
    timed_out: bool = False
    wall_s: float = 0.0


def run_episode_return(info: dict, reward: float) -> float:
    """Undiscounted env return of one agent step (a macro step sums its per-step rewards)."""
    return float(np.sum(info["rewards"])) if "rewards" in info else float(reward)


def train_online(
    agent: Agent,
    env: gym.Env,
    buffer: ReplayBuffer,
    steps: int,
    *,
    sampler=None,
    seed: int = 0,
    eval_env: gym.Env | None = None,
    eval_every: int = 0,
    eval_episodes: int = 5,
    stop: Callable[[TrainLog], bool] | None = None,
    time_limit_s: float | None = None,
) -> TrainLog:
    """Run `steps` agent steps in `env`, storing transitions in `buffer` and learning from
    `sampler` (default: `buffer`). `stop(log)` after each evaluation may end the run early, and
    so does `time_limit_s` of wall time (checked every step; `log.timed_out` says so)."""
    cfg = agent.config
    sampler = buffer if sampler is None else sampler
    log, start = TrainLog(), time.perf_counter()
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    for step in range(1, steps + 1):
        if step <= cfg.warmup_steps:
            action = env.action_space.sample()
        else:
            action = agent.act(obs, deterministic=False)
        next_obs, reward, terminated, truncated, info = env.step(action)
        buffer.add(obs=obs, action=action, reward=reward, next_obs=next_obs, terminal=terminated,
                   steps=info.get("steps", 1))
        episode_return += run_episode_return(info, reward)
        obs = next_obs
        if terminated or truncated:
            log.episode_returns.append(episode_return)
            log.episode_ends.append(step)
            episode_return = 0.0
            obs, _ = env.reset()
        if step > cfg.warmup_steps and step % cfg.update_every == 0 and len(buffer) > 0:
            log.last_losses = agent.update(sampler.sample(agent.update_batch_size))
            log.updates += 1
        log.steps = step
        if eval_env is not None and eval_every and step % eval_every == 0:
            log.evaluations.append((step, evaluate(agent, eval_env, eval_episodes, seed=10_000 + step)))
            if stop is not None and stop(log):
                break
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            log.timed_out = True
            break
    log.wall_s = time.perf_counter() - start
    return log


def evaluate(agent: Agent, env: gym.Env, episodes: int, seed: int = 0) -> float:
    """Mean undiscounted return of `episodes` deterministic episodes (env seeds seed, seed+1, …)."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, deterministic=True))
            total += run_episode_return(info, reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))
