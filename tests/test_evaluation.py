"""Evaluation rollouts, per-episode metrics and the official summary columns."""

import numpy as np
import pytest

from pipeline.data.episodes import Episodes
from pipeline.evaluation import (
    DISTANCES, UniformRandomPolicy, episode_metrics, episode_seeds, rollout, similarity_scores, summarize, trajectory_metrics,
)
from pipeline.envs import make_env


class ConstantChunk:
    """Always the same chunk of n actions (a stand-in for a decoded macro action)."""

    def __init__(self, n, action_dim, value=0.1):
        self.chunk = np.full((n, action_dim), value, np.float32)
        self.calls = 0

    def act_chunk(self, obs):
        self.calls += 1
        return self.chunk


def test_official_episode_seeds():
    assert episode_seeds(10, 3) == [2000, 2001, 2002]


def test_rollout_executes_chunks_open_loop_and_is_seeded():
    policy = ConstantChunk(n=9, action_dim=28)
    a, b = rollout("door", policy, [0, 1], progress=False)
    assert len(a.actions) == 200 and policy.calls == 2 * 23  # ceil(200 / 9) decisions per episode
    obs0, _ = make_env("door").reset(seed=0)
    np.testing.assert_array_equal(a.obs[0], obs0.astype(np.float32))
    assert not a.terminated and a.success.shape == (200,)
    again = rollout("door", ConstantChunk(9, 28), [0], progress=False)[0]
    np.testing.assert_array_equal(again.obs, a.obs)
    assert not np.array_equal(a.obs, b.obs)  # a different seed places the door elsewhere


def human_test_episodes(n=3, T=40, seed=0):
    rng = np.random.default_rng(seed)
    trajectories = []
    for _ in range(n):
        obs = np.cumsum(rng.normal(size=(T, 39)), 0).astype(np.float32)
        trajectories.append({
            "observations": obs, "next_observations": obs, "actions": rng.uniform(-1, 1, (T, 28)),
            "rewards": np.ones(T), "terminals": np.zeros(T, bool), "success": np.arange(T) >= T - 5,
        })
    return Episodes.from_trajectories(trajectories)


def test_a_human_episode_is_at_distance_zero_from_itself():
    test = human_test_episodes()
    s = next(test.episode_slices())
    row = episode_metrics("door", test.obs[s], test.actions[s], test.rewards[s], test.success[s],
                          [test.obs[s] for s in test.episode_slices()], [test.actions[s] for s in test.episode_slices()])
    assert row["min_dtw_state"] == 0.0 and row["min_dtw_action"] == 0.0
    assert row["dtw_state_mean"] > 0
    assert row["raw_reward"] == 40.0 and row["length"] == 40
    assert row["success"] and row["success_ever"] and not row["success_held"]  # 5 steps < 25


def test_summary_has_the_official_columns_split_by_success():
    rows = [
        {"raw_reward": r, "normalized_score": r, "length": 200, "success": s, "success_ever": s, "success_held": s,
         **{name: d for name in DISTANCES}}
        for r, s, d in [(1.0, True, 2.0), (3.0, True, 4.0), (5.0, False, 10.0)]
    ]
    summary = summarize(rows, horizon=200)
    assert summary["success_rate"] == pytest.approx(2 / 3)
    assert summary["normalized_score_mean"] == 3.0 and summary["early_termination_rate"] == 0.0
    assert summary["success_dtw_state_mean_mean"] == 3.0 and summary["success_dtw_state_mean_max"] == 4.0
    assert summary["non_success_w1_state_min"] == 10.0
    assert summary["w2_action_agg_mean"] == pytest.approx(16 / 3)
    refs = {name: {"random": 10.0, "human": 2.0} for name in DISTANCES}
    assert similarity_scores(summary, refs)["dtw_state_mean_similarity"] == pytest.approx((10 - 16 / 3) / 8)


def test_random_agent_is_far_from_humans():
    test = human_test_episodes(T=200)
    rows = trajectory_metrics("door", rollout("door", UniformRandomPolicy(28, seed=0), [0], progress=False), test, progress=False)
    assert rows[0]["length"] == 200 and rows[0]["min_dtw_state"] > 0 and rows[0]["w2_action"] >= rows[0]["w1_action"]
