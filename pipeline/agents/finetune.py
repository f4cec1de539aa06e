"""The finetune run: every seed of one task × method trained as one population, written per seed.

    run_finetune(task, method, seeds, cfg, overrides, execute_steps=None, prepared_dir=..., codebook_dir=...,
                 agents_dir=..., curves_dir=..., metrics_dir=..., checkpoint_dir=..., checkpoint_every=0)

writes, for each seed s, `agents_dir/seed<s>/` (config.json, model.safetensors, README.md),
`curves_dir/seed<s>/` (the learning curve, a DVCLive log written point by point: pipeline.live) and
`metrics_dir/seed<s>.json`: the same files a single run per seed wrote, so `evaluate` and `report`
read them unchanged.

How each method uses the demonstrations (the train split of `prepare`) is in
`pipeline.agents.train.make_member`; MAQ methods act in codes through `MacroActionEnv` over the
task's codebook, executing the first `execute_steps` (`macro.execute_steps`; None: H) decoded
actions per code, and their demonstrations are the train windows labelled with the encoder's
codes, as transitions over the same number of steps.
Budgets are env steps (`cfg.env_steps`). The learning curve is evaluated after the offline phase
(env step 0), every `cfg.eval_every` env steps and at the end, on `cfg.eval_episodes`
deterministic episodes with env seeds `CURVE_SEED + i`, by the same rollout and success rule
as the `evaluate` stage. Resumable: see `pipeline.agents.checkpoint`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.agents import AGENTS
from pipeline.agents.artifact import save_agent
from pipeline.agents.checkpoint import load_population, run_fingerprint, save_population
from pipeline.agents.macro import MacroActionEnv, executed_steps, macro_transitions
from pipeline.agents.networks import default_device
from pipeline.agents.base import Agent
from pipeline.agents.train import Member, Schedule, make_member, train_population
from pipeline.artifacts.cards import agent_card
from pipeline.config import FinetuneConfig, section_to_dict
from pipeline.data.episodes import Episodes
from pipeline.data.prepare import load_prepared
from pipeline.data.windows import make_windows
from pipeline.entry import UserError
from pipeline.envs import make_env
from pipeline.evaluation import AgentPolicy, rollout
from pipeline.io import remove_checkpoint, write_json_atomic, write_text_atomic
from pipeline.live import CurveLog
from pipeline.methods import method_config
from pipeline.metrics import success_final
from pipeline.tasks import get_task

CHECKPOINT_FILE = "checkpoint.safetensors"
CURVE_SEED = 100_000  # env seeds of the learning-curve evaluations: CURVE_SEED + i


def demonstration_batch(train: Episodes, codebook, gamma: float, execute_steps: int | None = None) -> dict[str, np.ndarray]:
    """The demonstrations as replay rows: per step for continuous methods, per H-step window
    (labelled with its code, a transition over its first `execute_steps`) for MAQ methods."""
    if codebook is not None:
        return macro_transitions(make_windows(train, codebook.H, gamma, execute_steps), codebook).as_batch()
    return {
        "obs": train.obs, "action": train.actions, "reward": train.rewards, "next_obs": train.next_obs,
        "terminal": train.terminations, "steps": np.ones(train.n_steps, np.int64), "demo": np.ones(train.n_steps, bool),
    }


def curve_point(task: str, agent, codebook, episodes: int, env_steps: int) -> dict:
    """Mean return, normalized score and final-step success of deterministic episodes."""
    trajectories = rollout(task, AgentPolicy(agent, codebook), [CURVE_SEED + i for i in range(episodes)], progress=False)
    mean_return = float(np.mean([t.rewards.sum() for t in trajectories]))
    return {"env_steps": env_steps, "eval_return": mean_return,
            "eval_normalized_score": float(get_task(task).normalized_score(mean_return)),
            "eval_success_rate": float(np.mean([success_final(t.success) for t in trajectories]))}


@dataclass
class FinetuneResult:
    agent: Agent  # the whole population
    members: list[Member]  # per seed: counters, buffers
    metrics: list[dict] | None  # per seed; None when stopped early (`stop_after_env_steps`)
    resumed: bool


def run_finetune(task: str, method: str, seeds, cfg: FinetuneConfig, overrides: dict, *, execute_steps: int | None = None,
                 prepared_dir: str | Path,
                 codebook_dir: str | Path | None, agents_dir: str | Path, curves_dir: str | Path, metrics_dir: str | Path,
                 checkpoint_dir: str | Path, checkpoint_every: int = 0, progress: bool = True,
                 stop_after_env_steps: int | None = None) -> FinetuneResult:
    """Train every seed of `task` × `method` and write their outputs. `stop_after_env_steps` stops
    after the checkpoint that follows that many env steps, writing nothing else (to test resuming)."""
    from pipeline.codebook import Codebook

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seeds = [int(s) for s in seeds]
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
        try:
            execute_steps = executed_steps(codebook, execute_steps)
        except ValueError as e:
            raise UserError(f"macro.execute_steps: {e}") from None
    elif execute_steps is not None:
        raise ValueError(f"{method} acts in continuous actions: execute_steps is for methods acting in codes")
    demos = demonstration_batch(train, codebook, config.gamma, execute_steps)

    def member_env():
        env = make_env(task)
        return MacroActionEnv(env, codebook, config.gamma, execute_steps) if codebook is not None else env

    envs = [member_env() for _ in seeds]
    agent = entry(envs[0].observation_space.shape[0], envs[0].action_space, config, device, seeds=seeds)
    agent.execute_steps = execute_steps
    agent.set_obs_stats(train.obs.mean(0), train.obs.std(0))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
        if cfg.cuda_graphs:
            agent.use_cuda_graphs()
    capacity = max(1, min(config.buffer_size, cfg.env_steps))  # agent steps never exceed env steps
    members = [make_member(agent, s, env, demos, capacity, entry.offline_phase) for s, env in zip(seeds, envs)]

    checkpoint = Path(checkpoint_dir) / CHECKPOINT_FILE
    settings = {k: v for k, v in section_to_dict(cfg).items() if k not in ("threads", "device", "cuda_graphs")}
    fingerprint = run_fingerprint(task, method, seeds, asdict(config), settings, codebook.hash if codebook else None,
                                  execute_steps, demos=demos)
    resumed = load_population(checkpoint, agent, members, fingerprint)
    if resumed:
        c = members[0].counters
        print(f"resuming {task}/{method} seeds {seeds} at {c.offline_updates} offline updates, {c.env_steps} env steps")
    schedule = Schedule(cfg.env_steps, cfg.offline_updates if entry.offline_phase else 0, cfg.eval_every, checkpoint_every)
    curves = [CurveLog(Path(curves_dir) / f"seed{m.seed}", "env_steps", m.counters.curve) for m in members]

    def evaluate(i: int, env_steps: int) -> dict:
        point = curve_point(task, agent.member(i), codebook, cfg.eval_episodes, env_steps)
        curves[i].log(point)
        return point

    start = time.perf_counter()
    finished = train_population(
        agent, members, schedule,
        evaluate=evaluate,
        on_checkpoint=lambda: save_population(checkpoint, agent, members, fingerprint),
        progress=progress, desc=f"{task}/{method} seeds {','.join(map(str, seeds))}", stop_after_env_steps=stop_after_env_steps,
    )
    for curve in curves:
        curve.close()
    if not finished:
        return FinetuneResult(agent, members, None, resumed)
    seconds = round(time.perf_counter() - start, 2)

    results = []
    for i, m in enumerate(members):
        c = m.counters
        metrics = {
            "final_eval_return": c.curve[-1]["eval_return"],
            "final_eval_normalized_score": c.curve[-1]["eval_normalized_score"],
            "final_eval_success_rate": c.curve[-1]["eval_success_rate"],
            "env_steps": c.env_steps,
            "agent_steps": c.agent_steps,
            "offline_updates": c.offline_updates,
            "online_updates": c.updates,
            "train_episodes": len(c.episode_returns),
            "train_return_last": c.episode_returns[-1] if c.episode_returns else float("nan"),
            "population": len(seeds),
        }  # deterministic: the wall time goes to the caller only, so a re-run writes the same bytes
        info = {"task": task, "seed": m.seed, "population_seeds": seeds, "data_source": meta["source"],
                "data_source_sha256": meta["source_sha256"], "finetune": section_to_dict(cfg), "overrides": dict(overrides)}
        out_dir = Path(agents_dir) / f"seed{m.seed}"
        save_agent(agent.member(i), out_dir, codebook_hash=codebook.hash if codebook else None, info=info)
        write_text_atomic(out_dir / "README.md", agent_card(task, method, m.seed, config, cfg, overrides, meta, codebook, c.curve,
                                                                  metrics, execute_steps))
        write_json_atomic(Path(metrics_dir) / f"seed{m.seed}.json", metrics)
        results.append({**metrics, "train_seconds": seconds})  # of the whole population
    remove_checkpoint(checkpoint)
    for env in envs:
        env.close()
    return FinetuneResult(agent, members, results, resumed)
