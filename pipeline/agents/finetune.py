"""One finetune run: a task × method × seed → a trained agent, its learning curve and metrics.

    run_finetune(task, method, seed, cfg, overrides, prepared_dir=..., codebook_dir=..., out_dir=...,
                 curve_path=..., metrics_path=..., checkpoint_dir=...)

How each method uses the demonstrations (the train split of `prepare`):
  - `offline_phase` methods (iql, maq_iql): `cfg.offline_updates` updates on the demonstrations
    alone, then online, with their own transitions appended to the same buffer (CORL's scheme);
  - methods whose config has `offline_ratio` > 0 (rlpd, maq_rlpd): every batch is drawn half from
    the demonstrations and half from online experience (`MixedSampler`);
  - the others (sac, maq_dsac) learn online only.
MAQ methods act in codes through `MacroActionEnv` over the task's codebook; their demonstrations
are the windows of the train split labelled with the encoder's codes (`macro_transitions`).

Budgets are env steps for every method (`cfg.env_steps`; a macro step counts the h ≤ H env steps
it executed). The learning curve is evaluated every `cfg.eval_every` env steps (and after the
offline phase, at env step 0) on `cfg.eval_episodes` deterministic episodes with env seeds
`CURVE_SEED + i`, apart from the final evaluation's `200·s + i` (the `evaluate` stage).

Resumable: every `cfg.checkpoint_every` offline updates / env steps (at the next episode
boundary) a checkpoint with the weights, optimizer states, replay buffers, counters, the curve so
far and every RNG state is written atomically to `checkpoint_dir`. Training episodes reset with
seeds derived from the run seed and the episode index, so a run resumed after kill -9 ends with
the same weights (on CPU) as one never interrupted.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from pipeline.agents import AGENTS, PRESETS
from pipeline.agents.artifact import save_agent
from pipeline.agents.base import Agent, Method
from pipeline.agents.macro import MacroActionEnv, macro_transitions
from pipeline.agents.networks import default_device
from pipeline.agents.replay import MixedSampler, ReplayBuffer
from pipeline.config import FinetuneConfig, section_to_dict
from pipeline.data.episodes import Episodes
from pipeline.data.prepare import load_prepared
from pipeline.data.windows import make_windows
from pipeline.envs import make_env
from pipeline.io import load_checkpoint_file, remove_checkpoint, save_checkpoint_file, write_json_atomic, write_text_atomic
from pipeline.tasks import get_task

CHECKPOINT_FILE = "checkpoint.safetensors"
CURVE_SEED = 100_000  # env seeds of the learning-curve evaluations: CURVE_SEED + i
CURVE_COLUMNS = ("env_steps", "eval_return", "eval_normalized_score", "eval_success_rate")


# -- setting a run up --------------------------------------------------------------------------
def method_config(method: str, overrides: dict):
    """The backend config of `method` with `overrides` (params.yaml `agents.<method>`) applied.
    The key `preset` starts from a named preset of `PRESETS` instead of the method's default."""
    entry = AGENTS[method]
    overrides = dict(overrides)
    base = entry.default_config
    if "preset" in overrides:
        name = overrides.pop("preset")
        if name not in PRESETS or PRESETS[name][0] != method:
            fits = [p for p, (m, _) in PRESETS.items() if m == method]
            raise ValueError(f"agents.{method}.preset {name!r} is not a preset of {method}; presets of {method}: {fits or 'none'}")
        base = PRESETS[name][1]
    known = asdict(base)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"agents.{method} sets unknown config keys {unknown}; {type(base).__name__} has: {', '.join(known)}")
    values = {k: tuple(v) if isinstance(known[k], tuple) else v for k, v in overrides.items()}
    return replace(base, **values)


def training_env(task: str, codebook, gamma: float) -> gym.Env:
    """The task's env (D4RL reward); acting in codes when a codebook is given."""
    env = make_env(task)
    return MacroActionEnv(env, codebook, gamma) if codebook is not None else env


def demonstration_batch(train: Episodes, codebook, gamma: float) -> dict[str, np.ndarray]:
    """The demonstrations as replay rows: per step for continuous methods, per H-step window
    (labelled with its code) for MAQ methods."""
    if codebook is not None:
        return macro_transitions(make_windows(train, codebook.H, gamma), codebook).as_batch()
    return {
        "obs": train.obs, "action": train.actions, "reward": train.rewards, "next_obs": train.next_obs,
        "terminal": train.terminations, "steps": np.ones(train.n_steps, np.int64), "demo": np.ones(train.n_steps, bool),
    }


@dataclass
class Counters:
    """Where a run stands; saved in every checkpoint."""

    offline_updates: int = 0
    env_steps: int = 0
    agent_steps: int = 0
    episodes: int = 0  # training episodes started
    updates: int = 0  # online update rounds
    next_checkpoint: int = 0  # env steps (online) or offline updates at which to checkpoint next
    curve: list[dict] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)


@dataclass
class Learner:
    """The agent and where its batches come from."""

    agent: Agent
    buffers: dict[str, ReplayBuffer]  # "online" (and "offline" for MixedSampler methods)
    sampler: ReplayBuffer | MixedSampler
    explore_rng: np.random.Generator  # uniform-random warm-up actions


def build_learner(entry: Method, config, env: gym.Env, demos: dict, train: Episodes, cfg: FinetuneConfig,
                  seed: int, device: torch.device) -> Learner:
    obs_dim = env.observation_space.shape[0]
    torch.manual_seed(seed)
    agent = entry(obs_dim, env.action_space, config, device)
    agent.set_obs_stats(train.obs.mean(0), train.obs.std(0))
    capacity = max(1, min(config.buffer_size, cfg.env_steps))  # agent steps never exceed env steps
    buffers: dict[str, ReplayBuffer] = {}
    if entry.offline_phase:
        buffers["online"] = ReplayBuffer.from_batch(demos, obs_dim, env.action_space, capacity=len(demos["obs"]) + capacity, seed=seed)
        sampler = buffers["online"]
    elif config.offline_ratio > 0:
        buffers["offline"] = ReplayBuffer.from_batch(demos, obs_dim, env.action_space, seed=seed)
        buffers["online"] = ReplayBuffer.for_spaces(capacity, obs_dim, env.action_space, seed=seed + 1)
        sampler = MixedSampler(buffers["offline"], buffers["online"], config.offline_ratio)
    else:
        buffers["online"] = ReplayBuffer.for_spaces(capacity, obs_dim, env.action_space, seed=seed)
        sampler = buffers["online"]
    return Learner(agent, buffers, sampler, np.random.default_rng([seed, 1]))


# -- checkpoints ---------------------------------------------------------------------------------
def run_fingerprint(task: str, method: str, seed: int, config, cfg: FinetuneConfig, codebook_hash: str | None,
                    demos: dict) -> str:
    """What a checkpoint must match to be resumed: the run's identity, settings and data."""
    h = hashlib.sha256()
    settings = {k: v for k, v in section_to_dict(cfg).items() if k not in ("checkpoint_every", "threads", "device")}
    h.update(json.dumps([task, method, seed, asdict(config), settings, codebook_hash], sort_keys=True, default=str).encode())
    for key in sorted(demos):
        h.update(np.ascontiguousarray(demos[key]).tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, learner: Learner, counters: Counters, fingerprint: str) -> None:
    agent = learner.agent
    tensors = {f"agent.{k}": v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
    for name, optimizer in agent.optimizers().items():
        for index, param_state in optimizer.state_dict()["state"].items():
            for key, value in param_state.items():
                tensors[f"optim.{name}.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for name, buffer in learner.buffers.items():
        for key, column in buffer.data.items():
            tensors[f"buffer.{name}.{key}"] = torch.from_numpy(np.ascontiguousarray(column[: buffer.size]))
    tensors["rng.torch"] = torch.get_rng_state()
    if hasattr(agent, "generator"):
        tensors["rng.agent"] = agent.generator.get_state()
    state = {
        "fingerprint": fingerprint,
        "counters": asdict(counters),
        "buffers": {name: {"size": b.size, "pos": b.pos, "rng": b.rng.bit_generator.state} for name, b in learner.buffers.items()},
        "explore_rng": learner.explore_rng.bit_generator.state,
    }
    save_checkpoint_file(path, tensors, state)


def load_checkpoint(path: Path, learner: Learner, fingerprint: str) -> Counters | None:
    """Restore `learner` in place from a checkpoint and return its counters; None when there is
    no checkpoint, or it is unreadable or belongs to another run (then it is ignored)."""
    loaded = load_checkpoint_file(path, fingerprint)
    if loaded is None:
        return None
    tensors, state = loaded
    agent = learner.agent
    agent.load_state_dict({k[len("agent."):]: v for k, v in tensors.items() if k.startswith("agent.")})
    for name, optimizer in agent.optimizers().items():
        prefix, optim_state = f"optim.{name}.", {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, item = key[len(prefix):].split(".", 1)
                optim_state.setdefault(int(index), {})[item] = value.to(agent.device) if item != "step" else value
        full = optimizer.state_dict()
        full["state"] = optim_state
        optimizer.load_state_dict(full)
    for name, buffer in learner.buffers.items():
        saved = state["buffers"][name]
        for key, column in buffer.data.items():
            column[: saved["size"]] = tensors[f"buffer.{name}.{key}"].numpy()
        buffer.size, buffer.pos = saved["size"], saved["pos"]
        buffer.rng.bit_generator.state = saved["rng"]
    learner.explore_rng.bit_generator.state = state["explore_rng"]
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.agent" in tensors:
        agent.generator.set_state(tensors["rng.agent"])
    return Counters(**state["counters"])


# -- acting and evaluating -----------------------------------------------------------------------
def step_success(info: dict) -> bool:
    """The env's success flag after an agent step (a macro step: its last env step)."""
    flag = info.get("success", False)
    return bool(np.asarray(flag).reshape(-1)[-1]) if np.size(flag) else False


def curve_point(task: str, agent: Agent, env: gym.Env, episodes: int, env_steps: int) -> dict:
    """Mean return, normalized score and final-step success of deterministic episodes."""
    returns, successes = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=CURVE_SEED + i)
        total, done, success = 0.0, False, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, deterministic=True))
            total += float(np.sum(info["rewards"])) if "rewards" in info else float(reward)
            success = step_success(info)
            done = terminated or truncated
        returns.append(total)
        successes.append(success)
    mean_return = float(np.mean(returns))
    return {"env_steps": env_steps, "eval_return": mean_return,
            "eval_normalized_score": float(get_task(task).normalized_score(mean_return)),
            "eval_success_rate": float(np.mean(successes))}


def explore_action(env: gym.Env, rng: np.random.Generator):
    """A uniform-random action (warm-up), drawn from the run's own seeded generator."""
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    return rng.uniform(space.low, space.high).astype(space.dtype)


def episode_seed(seed: int, episode: int) -> int:
    """Reset seed of training episode `episode` of run seed `seed` (disjoint from evaluation seeds)."""
    return 1_000_000 * (seed + 1) + episode


# -- the run -------------------------------------------------------------------------------------
@dataclass
class FinetuneResult:
    agent: Agent
    counters: Counters
    metrics: dict
    resumed: bool


def run_finetune(
    task: str,
    method: str,
    seed: int,
    cfg: FinetuneConfig,
    overrides: dict,
    *,
    prepared_dir: str | Path,
    codebook_dir: str | Path | None,
    out_dir: str | Path,
    curve_path: str | Path,
    metrics_path: str | Path,
    checkpoint_dir: str | Path,
    progress: bool = True,
    stop_after_env_steps: int | None = None,
) -> FinetuneResult:
    """Train one agent and write everything the `finetune` stage declares. `stop_after_env_steps`
    stops early after the checkpoint that follows that many env steps (to test resuming)."""
    from pipeline.codebook import Codebook

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    entry = AGENTS[method]
    config = method_config(method, overrides)
    device = default_device() if cfg.device == "auto" else torch.device(cfg.device)
    train, _, meta = load_prepared(Path(prepared_dir))
    if meta["task"] != task:
        raise ValueError(f"{prepared_dir}/meta.json is for task {meta['task']!r}, not {task!r}")
    codebook = None
    if entry.macro:
        if codebook_dir is None:
            raise ValueError(f"{method} acts in codes: pass the codebook directory (models/codebooks/{task})")
        codebook = Codebook.from_pretrained(codebook_dir)
    env, eval_env = training_env(task, codebook, config.gamma), training_env(task, codebook, config.gamma)
    demos = demonstration_batch(train, codebook, config.gamma)
    learner = build_learner(entry, config, env, demos, train, cfg, seed, device)
    agent = learner.agent
    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE
    fingerprint = run_fingerprint(task, method, seed, config, cfg, codebook.hash if codebook else None, demos)
    counters = load_checkpoint(checkpoint, learner, fingerprint)
    resumed = counters is not None
    counters = counters or Counters(next_checkpoint=cfg.checkpoint_every)
    if resumed:
        print(f"resuming {task}/{method}/seed{seed} at {counters.offline_updates} offline updates, {counters.env_steps} env steps")
    start = time.perf_counter()

    def checkpoint_due(count: int) -> bool:
        return cfg.checkpoint_every > 0 and count >= counters.next_checkpoint

    def write_checkpoint(count: int) -> None:
        counters.next_checkpoint = count + cfg.checkpoint_every
        save_checkpoint(checkpoint, learner, counters, fingerprint)

    # 1. offline phase
    offline_total = cfg.offline_updates if entry.offline_phase else 0
    with tqdm(total=offline_total, initial=counters.offline_updates, desc=f"{task}/{method}/seed{seed} offline",
              unit="upd", disable=not progress or offline_total == 0, mininterval=2.0) as bar:
        while counters.offline_updates < offline_total:
            agent.update(learner.sampler.sample(agent.update_batch_size))
            counters.offline_updates += 1
            bar.update(1)
            if checkpoint_due(counters.offline_updates) and counters.offline_updates < offline_total:
                write_checkpoint(counters.offline_updates)
    if not counters.curve:
        counters.curve.append(curve_point(task, agent, eval_env, cfg.eval_episodes, 0))
        counters.next_checkpoint = cfg.checkpoint_every  # online checkpoints count env steps

    # 2. online phase, one episode at a time (checkpoints fall on episode boundaries)
    with tqdm(total=cfg.env_steps, initial=counters.env_steps, desc=f"{task}/{method}/seed{seed} online",
              unit="step", disable=not progress, mininterval=2.0) as bar:
        while counters.env_steps < cfg.env_steps:
            obs, _ = env.reset(seed=episode_seed(seed, counters.episodes))
            counters.episodes += 1
            episode_return, done = 0.0, False
            while not done and counters.env_steps < cfg.env_steps:
                counters.agent_steps += 1
                if counters.agent_steps <= config.warmup_steps:
                    action = explore_action(env, learner.explore_rng)
                else:
                    action = agent.act(obs, deterministic=False)
                next_obs, reward, terminated, truncated, info = env.step(action)
                learner.buffers["online"].add(obs=obs, action=action, reward=reward, next_obs=next_obs,
                                              terminal=terminated, steps=info.get("steps", 1))
                steps = int(info.get("steps", 1))
                episode_return += float(np.sum(info["rewards"])) if "rewards" in info else float(reward)
                before, counters.env_steps = counters.env_steps, counters.env_steps + steps
                bar.update(steps)
                obs, done = next_obs, terminated or truncated
                if counters.agent_steps > config.warmup_steps and counters.agent_steps % config.update_every == 0:
                    agent.update(learner.sampler.sample(agent.update_batch_size))
                    counters.updates += 1
                if cfg.eval_every > 0 and before // cfg.eval_every < counters.env_steps // cfg.eval_every:
                    counters.curve.append(curve_point(task, agent, eval_env, cfg.eval_episodes, counters.env_steps))
                    bar.set_postfix(eval_return=f"{counters.curve[-1]['eval_return']:.0f}")
            if done:
                counters.episode_returns.append(episode_return)
            if checkpoint_due(counters.env_steps) and counters.env_steps < cfg.env_steps:
                write_checkpoint(counters.env_steps)
                if stop_after_env_steps is not None and counters.env_steps >= stop_after_env_steps:
                    return FinetuneResult(agent, counters, {}, resumed)
    if counters.curve[-1]["env_steps"] != counters.env_steps:
        counters.curve.append(curve_point(task, agent, eval_env, cfg.eval_episodes, counters.env_steps))

    metrics = {
        "final_eval_return": counters.curve[-1]["eval_return"],
        "final_eval_normalized_score": counters.curve[-1]["eval_normalized_score"],
        "final_eval_success_rate": counters.curve[-1]["eval_success_rate"],
        "env_steps": counters.env_steps,
        "agent_steps": counters.agent_steps,
        "offline_updates": counters.offline_updates,
        "online_updates": counters.updates,
        "train_episodes": len(counters.episode_returns),
        "train_return_last": counters.episode_returns[-1] if counters.episode_returns else float("nan"),
        "train_seconds": round(time.perf_counter() - start, 2),
    }
    info = {"task": task, "seed": seed, "data_source": meta["source"], "data_source_sha256": meta["source_sha256"],
            "finetune": section_to_dict(cfg), "overrides": dict(overrides)}
    codebook_hash = codebook.hash if codebook is not None else None
    save_agent(agent, out_dir, codebook_hash=codebook_hash, info=info)
    write_text_atomic(Path(out_dir) / "README.md", agent_card(task, method, seed, config, cfg, overrides, meta, codebook, counters.curve, metrics))
    write_text_atomic(curve_path, curve_csv(counters.curve))
    write_json_atomic(metrics_path, metrics)
    remove_checkpoint(checkpoint)
    env.close()
    eval_env.close()
    return FinetuneResult(agent, counters, metrics, resumed)


# -- outputs ------------------------------------------------------------------------------------
def curve_csv(curve: list[dict]) -> str:
    lines = [",".join(CURVE_COLUMNS)]
    lines += [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in CURVE_COLUMNS) for row in curve]
    return "\n".join(lines) + "\n"


def agent_card(task: str, method: str, seed: int, config, cfg: FinetuneConfig, overrides: dict, meta: dict,
               codebook, curve: list[dict], metrics: dict) -> str:
    """The model card (README.md) of a trained agent."""
    entry = AGENTS[method]
    spec = get_task(task)
    uses = "codes of a VQ-VAE macro-action codebook" if entry.macro else "continuous actions"
    lines = [
        f"# {method} on {task} (seed {seed})",
        "",
        f"A `{method}` agent ({entry.doc}) trained on `{spec.env_id}` by the MAQ hub `finetune` stage. It acts in {uses}.",
        "",
        "| | |", "|---|---|",
        f"| demonstrations | `{meta['source']}` (sha256 `{meta['source_sha256'][:16]}…`) |",
    ]
    if codebook is not None:
        lines.append(f"| codebook | H={codebook.H}, K={codebook.K}, sha256 `{codebook.hash}` |")
    lines += [
        f"| budget | {metrics['env_steps']} env steps, {metrics['offline_updates']} offline updates, {metrics['online_updates']} online update rounds |",
        f"| wall time | {metrics['train_seconds']:.0f} s |",
        f"| final curve point | return {metrics['final_eval_return']:.1f}, normalized score {metrics['final_eval_normalized_score']:.1f}, "
        f"success {metrics['final_eval_success_rate']:.2f} ({cfg.eval_episodes} episodes) |",
        "",
        "The numbers above are the training-time learning curve; the `evaluate` stage reports the protocol's "
        "metrics (seeded episodes, human-likeness).",
        "",
        "## Learning curve",
        "",
        "| env steps | return | normalized score | success |", "|---|---|---|---|",
        *[f"| {p['env_steps']} | {p['eval_return']:.1f} | {p['eval_normalized_score']:.1f} | {p['eval_success_rate']:.2f} |" for p in curve],
        "",
        "## Config",
        "",
        "```json",
        json.dumps({"backend": asdict(config), "finetune": section_to_dict(cfg), "overrides": overrides}, indent=2, default=str),
        "```",
        "",
        "## Reproduce",
        "",
        f"`dvc repro finetune@{task}-{method}-{seed}` with these params (the agent is written to `models/agents/{task}/{method}/seed{seed}/`).",
        "",
        "Load it with `pipeline.agents.load_agent(directory, codebook=...)`; a MAQ agent refuses a codebook with another hash.",
        "",
    ]
    return "\n".join(lines)
