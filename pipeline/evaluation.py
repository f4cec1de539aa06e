"""Evaluation: seeded rollouts, per-episode metrics, and the official summary columns.

Any agent is evaluated through one interface: a `ChunkPolicy` maps an observation to a chunk of
actions `(n, A)` that is executed open loop — n = 1 for continuous agents, n = `execute_steps`
(H by default) for MAQ agents (the first n actions of the decoded macro action of the chosen code). The evaluator steps the env itself, so every
trajectory is recorded at env-step resolution whatever the agent.

Two protocols (`evaluate.protocol: paper | paired | both`), deterministic actions, D4RL's reward,
termination and episode length (`make_env`: pen 100 steps, ending when the pen drops; the others
200) in both. Human episodes are compared over their first `Task.horizon` steps (`human_splits`):
pen's demonstrations, like D4RL's pen-human data, run 200 steps. (The official code compares its
100-step pen episodes with the whole 200-step demonstrations, so every pen distance carries the
half of the human episode no agent can match.)

- paper (reference/MAQ.md): episode i of base seed s uses env seed `200·s + i`; each agent episode
  is compared with every held-out human test episode (DTW, Wasserstein). Anchors: uniform-random
  actions on seeds `i` (score 0), the human train episodes (score 1).
- paired: the agent starts from the start state of each held-out human test episode and is
  compared with that same episode: DTW on states, DTW on actions, and the distance between the
  final object poses (`Task.object_pose`). An unpaired comparison mixes "another goal" (pen's
  target orientation, relocate's target) with "unhuman motion"; a paired one does not. Anchors,
  measured the same way from the same start states: score 0 is the nearer of a uniform-random and
  a zero-action agent (so neither trivial agent can score above 0); score 1 is other "people", the
  demonstrator from the same start state with other variability seeds (`ANCHOR_PEOPLE`; synthetic
  data only: `pipeline.demonstrator.dataset.run_episode(person=…)`). Start states are known for synthetic data
  (the test episode ids are the env reset seeds) and for Minari data that records the env state
  (`infos["state"]`, as D4RL's Adroit datasets in Minari do; prepare keeps each test episode's first
  one and the reset restores it). Real data has no other person from the same start state, so its
  score-1 anchor is each test episode's nearest train episode (another person, another start state;
  per distance), farther than a twin from the same start would be, so scores above 1 are possible
  and mean closer than any other human episode. `pkl:` data records no start states,
  so `paired` refuses it and `both` falls back to `paper`.

Beside the distances, two measures that do not depend on one distance: a discriminator AUC (a
classifier telling agent windows from human windows, `metrics.discriminator_auc`; its anchors are
human test vs human train, ≈ 0.5, and the random agent, ≈ 1) and smoothness ratios to the human
test episodes' median (action jerk, LDLJ of the hand joints' velocities).
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
from pipeline.tasks import CONTROL_DT, get_task

# Distances of the paired protocol: agent episode vs the human episode from the same start state.
PAIRED_DISTANCES = ("dtw_state", "dtw_action", "object_pose")
# The paired protocol's human anchor: the demonstrator with these variability seeds ("people"), mean
# distance over them; one person is a noisy anchor where people differ in strategy (pen's skills).
ANCHOR_PEOPLE = (1, 2, 3, 4)
DISCRIMINATOR_SEED = 0
HUMAN_SPLITS = 10  # random held-out/rest splits of the human episodes for the human-vs-human anchor (`human_split_aucs`)
DISCRIMINATOR_FOLDS = 3  # grouped CV folds: 3 cost a third of 5 (seconds per agent) and train on 2/3 of the episodes

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


class ZeroActionPolicy:
    """All-zero actions (every actuator at the middle of its range): the idle agent."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim

    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros((1, self.action_dim), dtype=np.float32)


def episode_seeds(base_seed: int, n_episodes: int) -> list[int]:
    """The official protocol's env seeds: `200·s + i` for episode i."""
    return [200 * base_seed + i for i in range(n_episodes)]


def rollout(task: str, policy: ChunkPolicy, seeds: list[int], progress: bool = True,
            states: list[dict[str, np.ndarray]] | None = None) -> list[Trajectory]:
    """One episode per seed (started from `states[i]` when given: `reset(options={"initial_state_dict": …})`);
    the env's own time limit ends each episode."""
    env = make_env(task)
    trajectories = []
    for i, seed in enumerate(tqdm(seeds, desc=f"evaluate {task}", disable=not progress, unit="ep")):
        obs, _ = env.reset(seed=seed, options=None if states is None else {"initial_state_dict": states[i]})
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


def human_splits(task: str, prepared_dir: str | Path) -> tuple[Episodes, Episodes, dict]:
    """The prepared train and test splits as evaluation compares agents with them: each episode's
    first `Task.horizon` steps (pen's demonstrations run 200 steps, its episodes 100: D4RL's
    protocol), and the prepared meta."""
    from pipeline.data.prepare import load_prepared

    train, test, meta = load_prepared(Path(prepared_dir))
    horizon = get_task(task).horizon
    return train.first_steps(horizon), test.first_steps(horizon), meta


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


def similarity_references(task: str, train: Episodes, test: Episodes, random_trajectories: list[Trajectory], progress: bool = True,
                          dtw: str = "exact") -> dict:
    """The anchors of the similarity scores, per distance: `random` (`random_trajectories`, uniform random
    actions) and `human` (the human train episodes against the human test episodes)."""
    human_obs, human_actions = human_reference(test)
    random_rows = trajectory_metrics(task, random_trajectories, test, progress, dtw)
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


# -- the paired protocol ---------------------------------------------------------------------------
class PairedUnavailable(ValueError):
    """The data does not record the start states of its human test episodes."""


@dataclass(frozen=True)
class PairedStarts:
    """Where the paired protocol starts its twin of each human test episode."""

    seeds: list[int]  # env reset seeds: synthetic data's episode ids, which restore the start state
    states: list[dict[str, np.ndarray]] | None  # real data: the recorded start states, set at the reset; else None


def paired_starts(meta: dict, test: Episodes, prepared_dir: str | Path) -> PairedStarts:
    """The start state of each human test episode: env seeds (synthetic data) or recorded env states."""
    from pipeline.data.prepare import load_test_start_states

    seeds = [int(i) for i in test.episode_ids]
    if meta.get("source") == "synthetic":
        return PairedStarts(seeds, None)
    states = load_test_start_states(Path(prepared_dir), meta)
    if states is None:
        raise PairedUnavailable(
            f"the paired protocol needs each human test episode's start state, and the source {meta.get('source')!r} "
            "does not record it (synthetic data does by its env seeds, Minari data by `infos['state']`); "
            "set `evaluate.protocol: paper`"
        )
    return PairedStarts(seeds, states)


def check_paired_starts(trajectories: list[Trajectory], test: Episodes) -> None:
    """Every paired episode must start where its human episode started."""
    for t, s in zip(trajectories, test.episode_slices()):
        if not np.allclose(t.obs[0], test.obs[s][0], atol=1e-6):
            raise RuntimeError(f"the episode reset with seed {t.seed} does not start where the human test episode "
                               f"{t.seed} started; was the data prepared from another demonstrator version?")


def demonstrator_trajectories(task: str, seeds: list[int], person: int, progress: bool = True) -> list[Trajectory]:
    """Synthetic "other people": the demonstrator from env seed s with variability seed offset `person`."""
    from pipeline.demonstrator.dataset import demonstration_env, run_episode

    env, horizon = demonstration_env(task), get_task(task).horizon
    trajectories = []
    for seed in tqdm(seeds, desc=f"person {person} {task}", disable=not progress, unit="ep"):
        ep = run_episode(task, env, seed, person=person)  # recorded like the demonstrations, then cut like them (human_splits)
        T = min(len(ep["actions"]), horizon)
        trajectories.append(Trajectory(
            seed=seed, obs=ep["observations"][:T].astype(np.float32), next_obs=ep["observations"][1 : T + 1].astype(np.float32),
            actions=ep["actions"][:T], rewards=ep["rewards"][:T], success=ep["success"][:T], terminated=bool(ep["terminations"][T - 1]),
        ))
    env.close()
    return trajectories


def _pair_distances(task: str, dtw: str, obs: np.ndarray, actions: np.ndarray, final_obs: np.ndarray, test: Episodes,
                    s: slice) -> dict:
    """The paired distances of one episode (its observations, actions and last next-observation) to test[s]."""
    pose, distance = list(get_task(task).object_pose), metrics.DTW_METHODS[dtw]
    return {"dtw_state": distance(obs, test.obs[s]), "dtw_action": distance(actions, test.actions[s]),
            "object_pose": float(np.linalg.norm(final_obs[pose].astype(np.float64) - test.next_obs[s][-1, pose]))}


def paired_distances(task: str, trajectories: list[Trajectory], test: Episodes, dtw: str = "exact") -> list[dict]:
    """Per paired episode: DTW on states and on actions against the human episode from the same start
    state, and the Euclidean distance between the two final object poses (`Task.object_pose`)."""
    return [{"env_seed": t.seed, "success": metrics.success_final(t.success),
             **_pair_distances(task, dtw, t.obs, t.actions, t.next_obs[-1], test, s)}
            for t, s in zip(trajectories, test.episode_slices(), strict=True)]


def nearest_human_distances(task: str, train: Episodes, test: Episodes, dtw: str = "exact") -> list[dict]:
    """Real data's score-1 anchor: per test episode and per distance, the nearest train episode's distance
    to it (no other person starts where a test episode starts)."""
    rows = []
    for s in test.episode_slices():
        pairs = [_pair_distances(task, dtw, train.obs[r], train.actions[r], train.next_obs[r][-1], test, s)
                 for r in train.episode_slices()]
        rows.append({d: min(p[d] for p in pairs) for d in PAIRED_DISTANCES})
    return rows


def paired_references(task: str, train: Episodes, test: Episodes, starts: PairedStarts, dtw: str, progress: bool = True) -> dict:
    """The paired protocol's anchors, mean over the start states per distance: `random`, `zero`
    (the two trivial agents), `floor` (the nearer of them: score 0) and `human` (score 1: other people from
    the same start states for synthetic data, else each test episode's nearest train episode)."""
    seeds, states = starts.seeds, starts.states
    runs = {
        "random": [rollout(task, UniformRandomPolicy(test.action_dim, seed=0), seeds, progress, states)],
        "zero": [rollout(task, ZeroActionPolicy(test.action_dim), seeds, progress, states)],
    }
    if states is None:
        runs["human"] = [demonstrator_trajectories(task, seeds, person, progress) for person in ANCHOR_PEOPLE]
        out = {"start_seeds": seeds, "human_people": list(ANCHOR_PEOPLE)}
    else:
        out = {"start_seeds": seeds, "human_people": [], "human_anchor": "nearest train episode"}
    for name, groups in runs.items():
        rows = []
        for trajectories in groups:
            check_paired_starts(trajectories, test)
            rows += paired_distances(task, trajectories, test, dtw)
        out[name] = {d: float(np.mean([r[d] for r in rows])) for d in PAIRED_DISTANCES}
        out[f"{name}_success_rate"] = float(np.mean([r["success"] for r in rows]))
    if states is not None:
        rows = nearest_human_distances(task, train, test, dtw)
        out["human"] = {d: float(np.mean([r[d] for r in rows])) for d in PAIRED_DISTANCES}
        out["human_success_rate"] = (None if train.success is None else
                                     float(np.mean([metrics.success_final(train.success[r]) for r in train.episode_slices()])))
    out["floor"] = {d: min(out["random"][d], out["zero"][d]) for d in PAIRED_DISTANCES}
    return out


def paired_summary(rows: list[dict], references: dict) -> dict:
    """`paired_<distance>` (mean over the paired episodes) and its `_similarity`: 1 = another person, 0 = the
    nearer trivial agent."""
    out = {"paired_episodes": len(rows), "paired_success_rate": float(np.mean([r["success"] for r in rows]))}
    for d in PAIRED_DISTANCES:
        mean = float(np.mean([r[d] for r in rows]))
        out[f"paired_{d}"] = mean
        out[f"paired_{d}_similarity"] = float(metrics.similarity_score(mean, references["floor"][d], references["human"][d]))
    return out


# -- discriminator and smoothness ----------------------------------------------------------------
def episode_windows(obs_episodes: list[np.ndarray], action_episodes: list[np.ndarray], meta: dict, window: int) -> list[np.ndarray]:
    """Each episode's non-overlapping (s, a) windows of `window` steps, standardized with the train split's statistics."""
    stats = [np.asarray(meta[k], dtype=np.float64) for k in ("obs_mean", "obs_std", "action_mean", "action_std")]
    return [metrics.windows(o, a, window, window, *stats) for o, a in zip(obs_episodes, action_episodes)]


def human_windows(train: Episodes, test: Episodes, meta: dict, window: int) -> list[np.ndarray]:
    """The windows of every human episode, train and test: the human side of the discriminator."""
    return episode_windows(*human_reference(train), meta, window) + episode_windows(*human_reference(test), meta, window)


def discriminator_anchors(train: Episodes, test: Episodes, meta: dict, window: int, reps: int, random_trajectories: list[Trajectory]) -> dict:
    """The discriminator AUC of human test vs human train episodes (≈ 0.5 expected) and of uniform-random
    episodes judged as agents are, against every human episode (≈ 1)."""
    test_windows = episode_windows(*human_reference(test), meta, window)
    train_windows = episode_windows(*human_reference(train), meta, window)
    random_windows = episode_windows([t.obs for t in random_trajectories], [t.actions for t in random_trajectories], meta, window)
    return {"window": window, "human_test_vs_train": discriminate(test_windows, train_windows, reps),
            "human_held_out_vs_rest": human_split_aucs(train_windows + test_windows, len(test_windows), HUMAN_SPLITS),
            "random": discriminate(random_windows, train_windows + test_windows, reps)}


def human_split_aucs(episodes: list[np.ndarray], held_out: int, splits: int) -> dict | None:
    """The human-vs-human anchor over `splits` random splits of all human `episodes` (windows per episode) into
    `held_out` episodes and the rest, each judged as `discriminate` judges an agent: {"auc_mean", "auc_min",
    "auc_max", "aucs", "held_out_episodes"}; None when a side would have fewer than 2 episodes.

    With 3 test episodes, one split's AUC says more about which 3 episodes were drawn than about whether humans
    can be told apart. On synthetic people whose episodes differ as a whole (an offset of 1 SD per episode, 40
    draws; `python -m pipeline.benchmarks.humanlike --null-draws 40`) a 3-vs-22 AUC has mean 0.50 and 5–95%
    range 0.25–0.72; the mean over 10 splits 0.49 and 0.40–0.56. The test split's own AUC stays beside it
    (`human_test_vs_train`)."""
    if min(held_out, len(episodes) - held_out) < 2:
        return None
    rng = np.random.default_rng(DISCRIMINATOR_SEED)
    aucs = []
    for _ in range(splits):
        order = rng.permutation(len(episodes))
        judged = discriminate([episodes[i] for i in order[:held_out]], [episodes[i] for i in order[held_out:]], reps=1)
        if judged["discriminator_auc"] is None:
            return None
        aucs.append(judged["discriminator_auc"])
    return {"auc_mean": float(np.mean(aucs)), "auc_min": float(np.min(aucs)), "auc_max": float(np.max(aucs)),
            "aucs": aucs, "held_out_episodes": held_out}


def discriminate(agent: list[np.ndarray], human: list[np.ndarray], reps: int) -> dict:
    """`discriminator_auc` of the stronger classifier (the sharper judge) with its CI, and each classifier's AUC;
    all None when a side has fewer than 2 episodes of at least one window (grouped CV cannot hold one out)."""
    if min(sum(len(w) > 0 for w in agent), sum(len(w) > 0 for w in human)) < 2:
        return dict.fromkeys(["discriminator_auc", "discriminator_auc_ci_low", "discriminator_auc_ci_high", "discriminator_classifier",
                              *(f"discriminator_auc_{c}" for c in metrics.DISCRIMINATORS)])
    results = {c: metrics.discriminator_auc(agent, human, classifier=c, folds=DISCRIMINATOR_FOLDS, bootstrap_reps=reps,
                                          seed=DISCRIMINATOR_SEED)
               for c in metrics.DISCRIMINATORS}
    best = max(results, key=lambda c: results[c]["auc"])
    out = {"discriminator_auc": results[best]["auc"], "discriminator_auc_ci_low": results[best]["ci_low"],
           "discriminator_auc_ci_high": results[best]["ci_high"], "discriminator_classifier": best}
    return out | {f"discriminator_auc_{c}": r["auc"] for c, r in results.items()}


def smoothness(task: str, obs_episodes: list[np.ndarray], action_episodes: list[np.ndarray], test: Episodes) -> dict:
    """Action jerk and LDLJ of the hand joints' velocities, as the ratio of the episodes' median to the human
    test episodes' median (1 = as smooth as the humans)."""
    joints, dt = get_task(task).hand_joints, CONTROL_DT

    def per_episode(obs_list, action_list):  # episodes under 4 steps have no jerk: NaN, skipped by the medians
        return (np.array([metrics.action_jerk(a, dt) if len(a) >= 4 else np.nan for a in action_list]),
                np.array([metrics.log_dimensionless_jerk(o[:, :joints], dt) if len(o) >= 4 else np.nan for o in obs_list]))

    jerk, ldlj = per_episode(obs_episodes, action_episodes)
    human_jerk, human_ldlj = per_episode(*human_reference(test))
    return {"action_jerk_ratio": metrics.smoothness_ratio(jerk, human_jerk), "ldlj_ratio": metrics.smoothness_ratio(ldlj, human_ldlj)}


# -- the evaluate and references stages --------------------------------------------------------
class AgentPolicy:
    """A trained agent as a ChunkPolicy with deterministic actions: one action for continuous
    agents; for MAQ agents, the first `agent.execute_steps` (None: H) actions of the decoded macro
    action of the chosen code, clipped to [-1, 1], as `MacroActionEnv` does in training. Counts
    the codes played (`code_counts`)."""

    def __init__(self, agent, codebook=None):
        from pipeline.agents.macro import executed_steps

        self.agent, self.codebook = agent, codebook
        self.code_counts = np.zeros(codebook.K, dtype=np.int64) if codebook is not None else None
        self.execute_steps = executed_steps(codebook, agent.execute_steps) if codebook is not None else 1

    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        if self.codebook is None:
            return np.asarray(self.agent.act(obs, deterministic=True), dtype=np.float32)[None]  # (1, A)
        code = int(self.agent.act(obs, deterministic=True))
        self.code_counts[code] += 1
        macro = self.codebook.decode(np.asarray(obs, np.float32)[None], np.array([code]))[0]  # (H, A)
        return np.clip(macro[: self.execute_steps], -1.0, 1.0)  # (n, A)


def trajectories_to_episodes(trajectories: list[Trajectory]) -> Episodes:
    """Evaluation episodes in the project's episode format; `episode_ids` hold the env seeds, so
    `make_env(task).reset(seed=id)` and the stored actions replay an episode exactly."""
    return Episodes.from_trajectories(
        [{"observations": t.obs, "next_observations": t.next_obs, "actions": t.actions, "rewards": t.rewards,
          "terminals": (np.arange(len(t.actions)) == len(t.actions) - 1) & t.terminated, "success": t.success}
         for t in trajectories],
        episode_ids=[t.seed for t in trajectories],
    )


# Scalars of a run's summary that go to `dvc metrics` (the full summary stays in summary.json); those
# of a protocol that did not run are left out.
TRACKED_METRICS = (
    "normalized_score_mean", "success_rate", "success_ever_rate", "success_held_rate", "raw_reward_mean",
    "early_termination_rate", "dtw_state_mean_agg_mean", "dtw_action_mean_agg_mean", "w1_state_agg_mean",
    "w1_action_agg_mean", *(f"{name}_similarity" for name in DISTANCES),
    "paired_success_rate", *(f"paired_{name}_similarity" for name in PAIRED_DISTANCES),
    "discriminator_auc", "action_jerk_ratio", "ldlj_ratio",
)


def run_references(task: str, cfg, prepared_dir: str | Path, out_path: str | Path, progress: bool = True) -> dict:
    """Compute and store the anchors of a task's human-likeness scores: the paper protocol's
    (`distances`), the paired protocol's (`paired`, null where the data has no start states) and the
    discriminator's (`discriminator`: human test vs human train, and the random agent)."""
    from pipeline.io import write_json_atomic

    train, test, meta = human_splits(task, prepared_dir)
    random_trajectories = rollout(task, UniformRandomPolicy(train.action_dim, seed=0), episode_seeds(0, cfg.reference_episodes), progress)
    references = {"dtw": cfg.dtw, "random_episodes": cfg.reference_episodes,
                  "distances": similarity_references(task, train, test, random_trajectories, progress, cfg.dtw), "paired": None}
    if cfg.protocol != "paper":
        try:
            references["paired"] = paired_references(task, train, test, paired_starts(meta, test, prepared_dir), cfg.dtw, progress)
        except PairedUnavailable as e:
            if cfg.protocol == "paired":
                raise
            print(f"references {task}: no paired anchors ({e})")
    references["discriminator"] = discriminator_anchors(train, test, meta, cfg.discriminator_window, cfg.bootstrap_reps, random_trajectories)
    write_json_atomic(out_path, references)
    return references


def load_references(path: str | Path, cfg) -> dict:
    """The stored anchors, refused when they were measured with other settings than `cfg` (EvaluateConfig)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no similarity references at {path}; run `dvc repro references` first")
    data = json.loads(path.read_text())
    stale = []
    if data["dtw"] != cfg.dtw:
        stale.append(f"dtw={data['dtw']!r} (evaluate.dtw is {cfg.dtw!r})")
    window = (data.get("discriminator") or {}).get("window")
    if window != cfg.discriminator_window:
        stale.append(f"discriminator window {window!r} (evaluate.discriminator_window is {cfg.discriminator_window!r})")
    if stale:
        raise ValueError(f"{path} was computed with {', '.join(stale)}; re-run `dvc repro references`")
    return data


def run_evaluate(task: str, method: str, seed: int, cfg, *, agent_dir: str | Path, codebook_dir: str | Path | None,
                 prepared_dir: str | Path, references_path: str | Path, out_dir: str | Path, metrics_path: str | Path,
                 progress: bool = True) -> dict:
    """Evaluate one trained agent by `cfg.protocol` and write the `evaluate` stage's outputs in out_dir:
    per protocol, per-episode metrics and the episodes (paper: episodes.parquet, trajectories.safetensors;
    paired: paired_episodes.parquet, paired_trajectories.safetensors), and summary.json over both;
    the tracked scalars go to `metrics_path`."""
    import polars as pl
    import torch

    from pipeline.agents import load_agent
    from pipeline.codebook import Codebook
    from pipeline.io import atomic_path, write_json_atomic

    torch.set_num_threads(1)  # beside the simulator; and the thread count changes the bits (pipeline/numerics.py)
    codebook = Codebook.from_pretrained(codebook_dir) if codebook_dir is not None else None
    agent = load_agent(agent_dir, codebook=codebook, device="cpu")
    train, test, meta = human_splits(task, prepared_dir)
    references = load_references(references_path, cfg)
    if cfg.protocol != "paper" and references["paired"] is None:
        if cfg.protocol == "paired":
            paired_starts(meta, test, prepared_dir)  # raises with the reason
            raise ValueError(f"{references_path} has no paired anchors; re-run `dvc repro references`")
        print(f"evaluate {task}/{method}/seed{seed}: paper protocol only (the data has no paired start states)")
    policy = AgentPolicy(agent, codebook)
    summary = {"task": task, "method": method, "seed": seed, "dtw": cfg.dtw, "protocol": cfg.protocol}
    files: dict[str, tuple[list[dict], list[Trajectory]]] = {}
    if cfg.protocol != "paired":
        trajectories = rollout(task, policy, episode_seeds(seed, cfg.episodes), progress)
        rows = trajectory_metrics(task, trajectories, test, progress, cfg.dtw)
        paper = summarize(rows, get_task(task).horizon)
        summary |= paper | similarity_scores(paper, references["distances"])
        files[""] = rows, trajectories
    if cfg.protocol != "paper" and references["paired"] is not None:
        trajectories = rollout(task, policy, references["paired"]["start_seeds"], progress,
                               paired_starts(meta, test, prepared_dir).states)
        check_paired_starts(trajectories, test)
        rows = paired_distances(task, trajectories, test, cfg.dtw)
        summary |= paired_summary(rows, references["paired"])
        unpaired = trajectory_metrics(task, trajectories, test, progress, cfg.dtw)  # the same columns as the paper's episodes
        files["paired_"] = [u | {f"paired_{d}": r[d] for d in PAIRED_DISTANCES} for u, r in zip(unpaired, rows)], trajectories
    everything = [t for _, trajectories in files.values() for t in trajectories]
    obs, actions = [t.obs for t in everything], [t.actions for t in everything]
    summary |= discriminate(episode_windows(obs, actions, meta, cfg.discriminator_window),
                            human_windows(train, test, meta, cfg.discriminator_window), cfg.bootstrap_reps)
    summary |= smoothness(task, obs, actions, test)
    summary["code_counts"] = policy.code_counts.tolist() if policy.code_counts is not None else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for prefix, (rows, trajectories) in files.items():
        with atomic_path(out_dir / f"{prefix}episodes.parquet") as tmp:
            pl.DataFrame(rows).write_parquet(tmp)
        trajectories_to_episodes(trajectories).save(out_dir / f"{prefix}trajectories.safetensors")
    write_json_atomic(out_dir / "summary.json", summary)
    write_json_atomic(metrics_path, {k: summary[k] for k in TRACKED_METRICS if k in summary})
    return summary
