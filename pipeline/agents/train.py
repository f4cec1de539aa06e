"""The one training loop: a population of runs (one per seed) trained in lockstep in one process.

    train_population(agent, members, schedule, evaluate=..., on_checkpoint=...)

`agent` holds all P members' networks (`pipeline.agents.base`); `members[i]` holds what is member
i's own: its env, its replay buffers and sampler, its warm-up generator and its counters. Each
member follows exactly the schedule a single run would follow:

1. `schedule.offline_updates` update rounds on the demonstrations alone (offline-phase methods);
2. online: each member acts in its own env until it has `schedule.env_steps` env steps (a macro
   step counts the h ≤ H env steps it executed). Its first `warmup_steps` agent steps are
   uniform random (its own generator); then an update round every `update_every` agent steps on
   a batch of `update_batch_size` rows from its sampler. Episodes reset with `episode_seed(seed, i)`.

The envs are stepped one after the other (a synchronous vector env: on 2 cores as fast as
asynchronous ones); acting and updating are one batched call over the members. A member whose
schedule says "no update" this iteration sits the round out (`train_round(…, active)`), so its
results never depend on the other members. On CUDA the batches are drawn on the device
(`DeviceReplay`, a mirror of the members' buffers) inside the update round, which replays as a
CUDA graph when the agent `use_cuda_graphs()`. `evaluate(i, env_steps)` adds a learning-curve point
at env step 0 and every `eval_every` env steps; `on_checkpoint()` is called every
`checkpoint_every` offline updates / env steps, when every member is at an episode boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from pipeline.agents.base import Agent
from pipeline.agents.replay import DeviceReplay, MixedSampler, ReplayBuffer, transition_fields


@dataclass
class Counters:
    """Where one member stands; saved in every checkpoint."""

    offline_updates: int = 0
    env_steps: int = 0
    agent_steps: int = 0
    episodes: int = 0  # training episodes started
    updates: int = 0  # online update rounds
    curve: list[dict] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)  # undiscounted env return per finished episode


@dataclass
class Member:
    """One run of the population: its seed, env, buffers and counters."""

    seed: int
    env: gym.Env
    buffers: dict[str, ReplayBuffer]  # "online" (and "offline" for MixedSampler methods)
    sampler: ReplayBuffer | MixedSampler
    explore_rng: np.random.Generator  # uniform-random warm-up actions
    counters: Counters = field(default_factory=Counters)
    obs: np.ndarray | None = None  # the current observation mid-episode; None at an episode boundary
    episode_return: float = 0.0


@dataclass(frozen=True)
class Schedule:
    env_steps: int  # online env steps per member
    offline_updates: int = 0  # update rounds on the demonstrations alone first
    eval_every: int = 0  # env steps between learning-curve points (0: only at the start and the end)
    checkpoint_every: int = 0  # offline updates / env steps between checkpoints (0: never)


def make_member(agent: Agent, seed: int, env: gym.Env, demos: dict | None, capacity: int, offline_phase: bool) -> Member:
    """Member `seed`'s buffers: offline-phase methods keep the demonstrations and their own
    transitions in one buffer (CORL); `offline_ratio` > 0 samples 50/50 batches from the
    demonstrations and online experience (RLPD); the others learn from online experience alone."""
    obs_dim, space, config = agent.obs_dim, env.action_space, agent.config
    buffers: dict[str, ReplayBuffer] = {}
    if offline_phase and demos is not None:
        buffers["online"] = ReplayBuffer.from_batch(demos, obs_dim, space, capacity=len(demos["obs"]) + capacity, seed=seed)
        sampler = buffers["online"]
    elif config.offline_ratio > 0 and demos is not None:
        buffers["offline"] = ReplayBuffer.from_batch(demos, obs_dim, space, seed=seed)
        buffers["online"] = ReplayBuffer.for_spaces(capacity, obs_dim, space, seed=seed + 1)
        sampler = MixedSampler(buffers["offline"], buffers["online"], config.offline_ratio, minibatch_size=config.batch_size)
    else:
        buffers["online"] = ReplayBuffer.for_spaces(capacity, obs_dim, space, seed=seed)
        sampler = buffers["online"]
    return Member(seed, env, buffers, sampler, np.random.default_rng([seed, 1]))


def episode_seed(seed: int, episode: int) -> int:
    """Reset seed of training episode `episode` of run seed `seed` (disjoint from evaluation seeds)."""
    return 1_000_000 * (seed + 1) + episode


def explore_action(space: gym.Space, rng: np.random.Generator):
    """A uniform-random action (warm-up), drawn from the member's own seeded generator."""
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(space.low, space.high).astype(space.dtype)


def sample_members(agent: Agent, members: list[Member], due: list[bool]) -> dict[str, np.ndarray]:
    """Stacked batches (P, N, …) for the members that are `due`; zeros for the others (they sit
    the round out, and their samplers do not advance)."""
    n = agent.update_batch_size
    batches = [m.sampler.sample(n) if d else None for m, d in zip(members, due)]
    like = next(b for b in batches if b is not None)
    return {k: np.stack([b[k] if b is not None else np.zeros_like(like[k]) for b in batches]) for k in like}


def train_population(
    agent: Agent,
    members: list[Member],
    schedule: Schedule,
    *,
    evaluate: Callable[[int, int], dict] | None = None,
    on_checkpoint: Callable[[], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    stop_after_env_steps: int | None = None,
) -> bool:
    """Run (or continue, from the members' counters) the schedule. Returns False when stopped
    early by `stop_after_env_steps` (after the checkpoint that follows that many env steps)."""
    config = agent.config
    all_due = [True] * len(members)
    # on CUDA the replay rows are mirrored on the device and sampled there, inside the update round
    replay = DeviceReplay(agent, members) if agent.device.type == "cuda" else None
    sample_on_device = (lambda: replay.sample(agent.update_batch_size)) if replay is not None else None

    def batch_for(due: list[bool]):
        return sample_on_device if replay is not None else sample_members(agent, members, due)

    def after(count: int) -> int:  # the first checkpoint count past `count`
        every = schedule.checkpoint_every
        return (count // every + 1) * every if every else 0

    def checkpoint_due(count: int) -> bool:
        return on_checkpoint is not None and schedule.checkpoint_every > 0 and count >= next_checkpoint

    # 1. offline phase
    done = min(m.counters.offline_updates for m in members)
    next_checkpoint = after(done)
    with tqdm(total=schedule.offline_updates, initial=done, desc=f"{desc} offline", unit="upd", mininterval=2.0,
              disable=not progress or schedule.offline_updates == 0) as bar:
        while done < schedule.offline_updates:
            agent.train_round(batch_for(all_due))
            done += 1
            for m in members:
                m.counters.offline_updates = done
            bar.update(1)
            if checkpoint_due(done) and done < schedule.offline_updates:
                next_checkpoint = after(done)
                on_checkpoint()
    if evaluate is not None:
        for i, m in enumerate(members):
            if not m.counters.curve:
                m.counters.curve.append(evaluate(i, 0))

    # 2. online phase, all members in lockstep
    budget = schedule.env_steps
    progressed = min(m.counters.env_steps for m in members)
    next_checkpoint = after(progressed)
    with tqdm(total=budget * len(members), initial=sum(m.counters.env_steps for m in members), desc=f"{desc} online",
              unit="step", mininterval=2.0, disable=not progress) as bar:
        while any(m.counters.env_steps < budget for m in members):
            stepping = [m.counters.env_steps < budget for m in members]
            for m, on in zip(members, stepping):
                if on and m.obs is None:
                    m.obs, _ = m.env.reset(seed=episode_seed(m.seed, m.counters.episodes))
                    m.counters.episodes += 1
                    m.episode_return = 0.0
            learned = [on and m.counters.agent_steps >= config.warmup_steps for m, on in zip(members, stepping)]
            if any(learned):
                obs = np.stack([m.obs if m.obs is not None else np.zeros(agent.obs_dim, np.float32) for m in members])
                acted = agent.act_members(obs[:, None].astype(np.float32), deterministic=False, active=np.array(learned))[:, 0]
            due = [False] * len(members)
            evaluations = []
            added = {k: np.zeros((len(members), *shape), dtype) for k, (shape, dtype) in
                     transition_fields(agent.obs_dim, members[0].env.action_space).items()} if replay is not None else None
            for i, (m, on) in enumerate(zip(members, stepping)):
                if not on:
                    continue
                c = m.counters
                c.agent_steps += 1
                action = acted[i] if learned[i] else explore_action(m.env.action_space, m.explore_rng)
                if isinstance(m.env.action_space, gym.spaces.Discrete):
                    action = int(action)
                next_obs, reward, terminated, truncated, info = m.env.step(action)
                steps = int(info.get("steps", 1))
                m.buffers["online"].add(obs=m.obs, action=action, reward=reward, next_obs=next_obs, terminal=terminated, steps=steps)
                if added is not None:
                    for k, v in (("obs", m.obs), ("action", action), ("reward", reward), ("next_obs", next_obs),
                                 ("terminal", terminated), ("steps", steps)):
                        added[k][i] = v
                m.episode_return += float(np.sum(info["rewards"])) if "rewards" in info else float(reward)
                before, c.env_steps = c.env_steps, c.env_steps + steps
                bar.update(steps)
                m.obs = None if terminated or truncated else next_obs
                if m.obs is None:
                    c.episode_returns.append(m.episode_return)
                due[i] = c.agent_steps > config.warmup_steps and c.agent_steps % config.update_every == 0
                if schedule.eval_every > 0 and before // schedule.eval_every < c.env_steps // schedule.eval_every:
                    evaluations.append(i)
            if replay is not None:
                replay.add_step(added, np.array(stepping))
            if any(due):
                agent.train_round(batch_for(due), active=np.array(due))
                for m, d in zip(members, due):
                    m.counters.updates += d
            for i in evaluations:
                if evaluate is not None:
                    members[i].counters.curve.append(evaluate(i, members[i].counters.env_steps))
            progressed = min(m.counters.env_steps for m in members)
            at_boundary = all(m.obs is None for m in members)
            if checkpoint_due(progressed) and at_boundary and progressed < budget:
                next_checkpoint = after(progressed)
                on_checkpoint()
                if stop_after_env_steps is not None and progressed >= stop_after_env_steps:
                    return False
    if evaluate is not None:
        for i, m in enumerate(members):
            if m.counters.curve[-1]["env_steps"] != m.counters.env_steps:
                m.counters.curve.append(evaluate(i, m.counters.env_steps))
    return True
