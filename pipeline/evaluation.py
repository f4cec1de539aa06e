"""Evaluation: seeded rollouts, per-episode metrics, and the official summary columns.

Any agent is evaluated through one interface: a `ChunkPolicy` maps an observation to a chunk of
actions `(n, A)` that is executed open loop — n = 1 for continuous agents, n = H for MAQ agents
(the decoded macro action of the chosen code). The evaluator steps the env itself, so every
trajectory is recorded at env-step resolution whatever the agent.

Protocol (reference/MAQ.md): episode i of base seed s uses env seed `200·s + i`; deterministic
actions; D4RL reward (`make_env`). Human-likeness compares each agent episode with the held-out
human test episodes (`pipeline.metrics`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from pipeline import metrics
from pipeline.data.episodes import Episodes
from pipeline.envs import make_env
from pipeline.tasks import get_task

# Distances computed per agent episode against the human test episodes, by name.
# (The official code's "w2" columns hold what is here `w1_*`: EMD with unsquared cost.)
DISTANCES = ("dtw_state_mean", "min_dtw_state", "dtw_action_mean", "min_dtw_action", "w1_state", "w1_action", "w2_state", "w2_action")


class ChunkPolicy(Protocol):
    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        """Actions to execute open loop from `obs`: `(n, A)`, n >= 1."""


@dataclass(frozen=True)
class Trajectory:
    seed: int  # env reset seed
    obs: np.ndarray  # (T, S) observation before each step
    next_obs: np.ndarray  # (T, S) observation after each step
    actions: np.ndarray  # (T, A) executed actions
    rewards: np.ndarray  # (T,) D4RL rewards
    success: np.ndarray  # (T,) the env's per-step success flag
    terminated: bool  # the episode ended before the time limit


class UniformRandomPolicy:
    """Uniform random actions in [-1, 1]: the 0-anchor of the similarity scores."""

    def __init__(self, action_dim: int, seed: int):
        self.action_dim, self.rng = action_dim, np.random.default_rng(seed)

    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (1, self.action_dim)).astype(np.float32)


def episode_seeds(base_seed: int, n_episodes: int) -> list[int]:
    """The official protocol's env seeds: `200·s + i` for episode i."""
    return [200 * base_seed + i for i in range(n_episodes)]


def rollout(task: str, policy: ChunkPolicy, seeds: list[int], progress: bool = True) -> list[Trajectory]:
    """One episode per seed; the env's own time limit ends each episode."""
    env = make_env(task)
    trajectories = []
    for seed in tqdm(seeds, desc=f"evaluate {task}", disable=not progress, unit="ep"):
        obs, _ = env.reset(seed=seed)
        record = {"obs": [], "next_obs": [], "actions": [], "rewards": [], "success": []}
        terminated = truncated = False
        while not (terminated or truncated):
            chunk = np.asarray(policy.act_chunk(obs), dtype=np.float32).reshape(-1, env.action_space.shape[0])  # (n, A)
            for action in chunk:
                record["obs"].append(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                record["next_obs"].append(obs)
                record["actions"].append(action)
                record["rewards"].append(reward)
                record["success"].append(bool(info["success"]))
                if terminated or truncated:
                    break
        trajectories.append(
            Trajectory(
                seed=seed,
                obs=np.asarray(record["obs"], dtype=np.float32),
                next_obs=np.asarray(record["next_obs"], dtype=np.float32),
                actions=np.asarray(record["actions"], dtype=np.float32),
                rewards=np.asarray(record["rewards"], dtype=np.float64),
                success=np.asarray(record["success"], dtype=bool),
                terminated=bool(terminated),
            )
        )
    env.close()
    return trajectories


def human_reference(test: Episodes) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-episode observation and action sequences of the human test split."""
    return [test.obs[s] for s in test.episode_slices()], [test.actions[s] for s in test.episode_slices()]


def episode_metrics(task: str, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, success: np.ndarray,
                    human_obs: list[np.ndarray], human_actions: list[np.ndarray], dtw: str = "exact") -> dict:
    """Every per-episode number of the report, for one episode (agent, random or human).
    `dtw`: "exact", or "fastdtw" (the official code's approximation)."""
    spec = get_task(task)
    episode_return = float(np.sum(rewards))
    dtw_state_mean, min_dtw_state = metrics.dtw_to_references(obs, human_obs, dtw)
    dtw_action_mean, min_dtw_action = metrics.dtw_to_references(actions, human_actions, dtw)
    return {
        "raw_reward": episode_return,
        "normalized_score": float(spec.normalized_score(episode_return)),
        "length": len(actions),
        "success": metrics.success_final(success),
        "success_ever": metrics.success_ever(success),
        "success_held": metrics.success_held(success, spec.success_hold_steps),
        "dtw_state_mean": dtw_state_mean,
        "min_dtw_state": min_dtw_state,
        "dtw_action_mean": dtw_action_mean,
        "min_dtw_action": min_dtw_action,
        "w1_state": metrics.wasserstein_to_references(obs, human_obs, order=1),
        "w1_action": metrics.wasserstein_to_references(actions, human_actions, order=1),
        "w2_state": metrics.wasserstein_to_references(obs, human_obs, order=2),
        "w2_action": metrics.wasserstein_to_references(actions, human_actions, order=2),
    }


def trajectory_metrics(task: str, trajectories: list[Trajectory], test: Episodes, progress: bool = True,
                       dtw: str = "exact") -> list[dict]:
    human_obs, human_actions = human_reference(test)
    rows = []
    for t in tqdm(trajectories, desc=f"metrics {task}", disable=not progress, unit="ep"):
        row = {"env_seed": t.seed, "terminated": t.terminated}
        row.update(episode_metrics(task, t.obs, t.actions, t.rewards, t.success, human_obs, human_actions, dtw))
        rows.append(row)
    return rows


def summarize(rows: list[dict], horizon: int) -> dict:
    """The official `agent_performance_<env>.csv` columns from per-episode rows."""
    col = lambda name: np.array([r[name] for r in rows], dtype=np.float64)  # noqa: E731
    success = col("success").astype(bool)
    out = {
        "episodes": len(rows),
        "normalized_score_mean": float(col("normalized_score").mean()),
        "normalized_score_std": float(col("normalized_score").std()),
        "raw_reward_mean": float(col("raw_reward").mean()),
        "raw_reward_std": float(col("raw_reward").std()),
        "length_mean": float(col("length").mean()),
        "length_std": float(col("length").std()),
        "success_rate": float(success.mean()),
        "success_ever_rate": float(col("success_ever").mean()),
        "success_held_rate": float(col("success_held").mean()),
        "early_termination_rate": metrics.early_termination_rate(col("length").astype(int), horizon),
    }
    for name in DISTANCES:
        values = col(name)
        for group, mask in (("success", success), ("non_success", ~success)):
            part = values[mask]
            for stat in ("mean", "std", "max", "min"):
                out[f"{group}_{name}_{stat}"] = float(getattr(np, stat)(part)) if len(part) else float("nan")
        out[f"{name}_agg_mean"] = float(values.mean())
        out[f"{name}_agg_std"] = float(values.std())
    return out


def similarity_references(task: str, train: Episodes, test: Episodes, seeds: list[int], progress: bool = True,
                          dtw: str = "exact") -> dict:
    """The anchors of the similarity scores, per distance: `random` (uniform random actions on
    the evaluation seeds) and `human` (the human train episodes against the human test episodes)."""
    human_obs, human_actions = human_reference(test)
    random_rows = trajectory_metrics(task, rollout(task, UniformRandomPolicy(train.action_dim, seed=0), seeds, progress), test, progress, dtw)
    human_rows = [
        episode_metrics(task, train.obs[s], train.actions[s], train.rewards[s],
                        train.success[s] if train.success is not None else np.zeros(s.stop - s.start, bool),
                        human_obs, human_actions, dtw)
        for s in train.episode_slices()
    ]
    return {
        name: {"random": float(np.mean([r[name] for r in random_rows])), "human": float(np.mean([r[name] for r in human_rows]))}
        for name in DISTANCES
    }


def similarity_scores(summary: dict, references: dict) -> dict:
    """`<distance>_similarity` = 1 at human level, 0 at the random agent's level (higher is better)."""
    return {
        f"{name}_similarity": float(metrics.similarity_score(summary[f"{name}_agg_mean"], ref["random"], ref["human"]))
        for name, ref in references.items()
    }


# -- the evaluate and references stages --------------------------------------------------------
class AgentPolicy:
    """A trained agent as a ChunkPolicy with deterministic actions: one action for continuous
    agents; for MAQ agents, the decoded macro action of the chosen code, clipped to [-1, 1] as
    `MacroActionEnv` does in training. Counts the codes played (`code_counts`)."""

    def __init__(self, agent, codebook=None):
        self.agent, self.codebook = agent, codebook
        self.code_counts = np.zeros(codebook.K, dtype=np.int64) if codebook is not None else None

    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        if self.codebook is None:
            return np.asarray(self.agent.act(obs, deterministic=True), dtype=np.float32)[None]  # (1, A)
        code = int(self.agent.act(obs, deterministic=True))
        self.code_counts[code] += 1
        macro = self.codebook.decode(np.asarray(obs, np.float32)[None], np.array([code]))[0]  # (H, A)
        return np.clip(macro, -1.0, 1.0)


def trajectories_to_episodes(trajectories: list[Trajectory]) -> Episodes:
    """Evaluation episodes in the project's episode format; `episode_ids` hold the env seeds, so
    `make_env(task).reset(seed=id)` and the stored actions replay an episode exactly."""
    return Episodes.from_trajectories(
        [{"observations": t.obs, "next_observations": t.next_obs, "actions": t.actions, "rewards": t.rewards,
          "terminals": (np.arange(len(t.actions)) == len(t.actions) - 1) & t.terminated, "success": t.success}
         for t in trajectories],
        episode_ids=[t.seed for t in trajectories],
    )


# Scalars of a run's summary that go to `dvc metrics` (the full summary stays in summary.json).
TRACKED_METRICS = (
    "normalized_score_mean", "success_rate", "success_ever_rate", "success_held_rate", "raw_reward_mean",
    "early_termination_rate", "dtw_state_mean_agg_mean", "dtw_action_mean_agg_mean", "w1_state_agg_mean",
    "w1_action_agg_mean", *(f"{name}_similarity" for name in DISTANCES),
)


def run_references(task: str, cfg, prepared_dir: str | Path, out_path: str | Path, progress: bool = True) -> dict:
    """Compute and store the similarity anchors of a task (random agent and human vs human)."""
    from pipeline.data.prepare import load_prepared
    from pipeline.io import write_json_atomic

    train, test, _ = load_prepared(Path(prepared_dir))
    references = similarity_references(task, train, test, episode_seeds(0, cfg.reference_episodes), progress, cfg.dtw)
    write_json_atomic(out_path, {"dtw": cfg.dtw, "random_episodes": cfg.reference_episodes, "distances": references})
    return references


def load_references(path: str | Path, dtw: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no similarity references at {path}; run `dvc repro references` first")
    data = json.loads(path.read_text())
    if data["dtw"] != dtw:
        raise ValueError(f"{path} was computed with dtw={data['dtw']!r} but evaluate.dtw is {dtw!r}; re-run `dvc repro references`")
    return data["distances"]


def run_evaluate(task: str, method: str, seed: int, cfg, *, agent_dir: str | Path, codebook_dir: str | Path | None,
                 prepared_dir: str | Path, references_path: str | Path, out_dir: str | Path, metrics_path: str | Path,
                 progress: bool = True) -> dict:
    """Evaluate one trained agent by the protocol and write the `evaluate` stage's outputs:
    out_dir/episodes.parquet (per-episode metrics), trajectories.safetensors, summary.json, and
    the tracked scalars at `metrics_path`."""
    import polars as pl
    import torch

    from pipeline.agents import load_agent
    from pipeline.codebook import Codebook
    from pipeline.data.prepare import load_prepared
    from pipeline.io import atomic_path, write_json_atomic

    torch.set_num_threads(1)  # beside the simulator; and the thread count changes the bits (pipeline/numerics.py)
    codebook = Codebook.from_pretrained(codebook_dir) if codebook_dir is not None else None
    agent = load_agent(agent_dir, codebook=codebook, device="cpu")
    _, test, _ = load_prepared(Path(prepared_dir))
    references = load_references(references_path, cfg.dtw)
    policy = AgentPolicy(agent, codebook)
    trajectories = rollout(task, policy, episode_seeds(seed, cfg.episodes), progress)
    rows = trajectory_metrics(task, trajectories, test, progress, cfg.dtw)
    summary = {"task": task, "method": method, "seed": seed, "dtw": cfg.dtw, **summarize(rows, get_task(task).horizon)}
    summary.update(similarity_scores(summary, references))
    summary["code_counts"] = policy.code_counts.tolist() if policy.code_counts is not None else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "episodes.parquet") as tmp:
        pl.DataFrame(rows).write_parquet(tmp)
    trajectories_to_episodes(trajectories).save(out_dir / "trajectories.safetensors")
    write_json_atomic(out_dir / "summary.json", summary)
    write_json_atomic(metrics_path, {k: summary[k] for k in TRACKED_METRICS})
    return summary
