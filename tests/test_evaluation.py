"""Evaluation rollouts, per-episode metrics and the official summary columns."""

import numpy as np
import pytest

from pipeline.data.episodes import Episodes
from pipeline.evaluation import (
    DISTANCES, UniformRandomPolicy, episode_metrics, episode_seeds, human_split_aucs, rollout, similarity_scores, summarize,
    trajectory_metrics,
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


# -- task facts the human-likeness measures read --------------------------------------------------
@pytest.mark.parametrize("task", ["door", "hammer", "pen", "relocate"])
def test_hand_joints_and_object_pose_index_the_simulators_state(task):
    """`Task.hand_joints` and `Task.object_pose` name what MuJoCo says they are, after some random steps."""
    from pipeline.tasks import CONTROL_DT, get_task

    spec, env = get_task(task), make_env(task)
    obs, _ = env.reset(seed=3)
    for action in np.random.default_rng(0).uniform(-1, 1, (20, spec.action_dim)):
        obs, *_ = env.step(action)
    model, data = env.unwrapped.model, env.unwrapped.data
    assert env.unwrapped.dt == CONTROL_DT
    first = 1 if task == "door" else 0  # door's observation skips the arm's forward slide ARTz
    np.testing.assert_allclose(obs[: spec.hand_joints], data.qpos[first : first + spec.hand_joints])
    assert model.nu == spec.action_dim and spec.hand_joints == spec.action_dim - first  # the actuated joints
    pose = obs[list(spec.object_pose)]
    body = lambda name: data.body(name).xpos  # noqa: E731
    expected = {
        "door": lambda: [data.joint("latch").qpos[0], data.joint("door_hinge").qpos[0]],
        "hammer": lambda: [data.joint("nail_dir").qpos[0], *body("Object")],
        "pen": lambda: [*body("Object"), *((data.site("object_top").xpos - data.site("object_bottom").xpos) / env.unwrapped.pen_length)],
        "relocate": lambda: [*(body("Object") - data.site("target").xpos)],
    }[task]()
    np.testing.assert_allclose(pose[: len(expected)], expected, atol=1e-6)


# -- the paired protocol ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paired_door():
    """Three synthetic door demonstrations (the test split) and their prepared meta."""
    from pipeline.demonstrator.dataset import run_episode
    from pipeline.evaluation import Trajectory, trajectories_to_episodes

    env = make_env("door")
    trajectories = []
    for seed in (0, 1, 2):
        ep = run_episode("door", env, seed)
        trajectories.append(Trajectory(seed, ep["observations"][:-1].astype(np.float32), ep["observations"][1:].astype(np.float32),
                                       ep["actions"], ep["rewards"], ep["success"], False))
    return trajectories_to_episodes(trajectories), {"source": "synthetic"}


def test_paired_anchors_put_trivial_agents_at_zero_and_other_people_near_one(paired_door):
    from pipeline.evaluation import (
        PAIRED_DISTANCES, PairedStarts, ZeroActionPolicy, demonstrator_trajectories, paired_distances, paired_references,
        paired_summary,
    )

    test, meta = paired_door
    refs = paired_references("door", test, test, PairedStarts([0, 1, 2], None), "exact", progress=False)
    assert refs["start_seeds"] == [0, 1, 2]
    for d in PAIRED_DISTANCES:
        assert refs["floor"][d] == min(refs["random"][d], refs["zero"][d]) > refs["human"][d]
    fresh_random = rollout("door", UniformRandomPolicy(28, seed=11), refs["start_seeds"], progress=False)
    zero = rollout("door", ZeroActionPolicy(28), refs["start_seeds"], progress=False)
    other_person = demonstrator_trajectories("door", refs["start_seeds"], person=9, progress=False)
    score = lambda trajectories: paired_summary(paired_distances("door", trajectories, test), refs)  # noqa: E731
    for trivial in (fresh_random, zero):
        assert score(trivial)["paired_dtw_state_similarity"] <= 0.1 and score(trivial)["paired_dtw_action_similarity"] <= 0.1
    person = score(other_person)
    assert 0.8 <= person["paired_dtw_state_similarity"] <= 1.2 and 0.8 <= person["paired_dtw_action_similarity"] <= 1.2
    assert score(as_trajectories(test))["paired_dtw_state"] == 0.0  # each human episode against itself


def test_paired_episodes_start_where_the_humans_started_or_fail(paired_door):
    from pipeline.evaluation import check_paired_starts

    test, _ = paired_door
    check_paired_starts(rollout("door", UniformRandomPolicy(28, seed=0), [0, 1, 2], progress=False), test)
    with pytest.raises(RuntimeError, match="does not start where"):
        check_paired_starts(rollout("door", UniformRandomPolicy(28, seed=0), [5, 1, 2], progress=False), test)


def test_paired_protocol_refuses_data_without_start_states(paired_door, tmp_path):
    from pipeline.evaluation import PairedUnavailable, paired_starts

    test, _ = paired_door
    with pytest.raises(PairedUnavailable, match="evaluate.protocol: paper"):
        paired_starts({"source": "pkl:data/sources/door/demos.pkl"}, test, tmp_path)


def test_paired_protocol_on_minari_data_starts_from_the_recorded_states(tmp_path, monkeypatch, door_minari_store):
    """Real data (a Minari dataset with `infos["state"]`, as D4RL's): prepare keeps each test episode's start
    state, the paired anchors start there, and the human anchor is each test episode's nearest train episode."""
    from pipeline.config import PrepareConfig
    from pipeline.data.prepare import write_prepared
    from pipeline.data.sources import load_source
    from pipeline import metrics
    from pipeline.evaluation import (
        PAIRED_DISTANCES, ZeroActionPolicy, check_paired_starts, human_splits, paired_references, paired_starts,
    )

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(door_minari_store))
    loaded = load_source("door", "minari:test/door/random-v0", synthetic_store=tmp_path / "unused")
    write_prepared("door", loaded, PrepareConfig(test_fraction=0.2, split_seed=1, allow_download=False), tmp_path / "door")
    train, test, meta = human_splits("door", tmp_path / "door")
    starts = paired_starts(meta, test, tmp_path / "door")
    assert starts.seeds == test.episode_ids.tolist() and len(starts.states) == test.n_episodes == 2
    assert set(starts.states[0]) == {"door_body_pos", "qpos", "qvel"}
    # the reset seed alone does not restore them (the fixture's episode i was reset with seed i): the states do
    with pytest.raises(RuntimeError, match="does not start where"):
        check_paired_starts(rollout("door", ZeroActionPolicy(28), [s + 1 for s in starts.seeds], progress=False), test)
    check_paired_starts(rollout("door", ZeroActionPolicy(28), [s + 1 for s in starts.seeds], False, starts.states), test)
    refs = paired_references("door", train, test, starts, "exact", progress=False)
    assert refs["human_people"] == [] and refs["human_anchor"] == "nearest train episode"
    for d in PAIRED_DISTANCES:  # the mean over test episodes of the minimum over train episodes, per distance
        assert 0 < refs["human"][d] and refs["floor"][d] == min(refs["random"][d], refs["zero"][d])
    dtw = metrics.DTW_METHODS["exact"]
    nearest = [min(dtw(train.obs[r], test.obs[s]) for r in train.episode_slices()) for s in test.episode_slices()]
    assert refs["human"]["dtw_state"] == pytest.approx(np.mean(nearest))
    assert refs["human_success_rate"] is not None


def test_another_person_starts_in_the_same_state_and_moves_differently():
    from pipeline.demonstrator.dataset import run_episode

    env = make_env("door")
    a, b, again = run_episode("door", env, 4), run_episode("door", env, 4, person=1), run_episode("door", env, 4)
    np.testing.assert_array_equal(a["observations"][0], b["observations"][0])
    assert not np.array_equal(a["actions"], b["actions"])
    np.testing.assert_array_equal(a["actions"], again["actions"])  # person 0 is the dataset's episode


def as_trajectories(episodes: Episodes) -> list:
    from pipeline.evaluation import Trajectory

    return [Trajectory(int(i), episodes.obs[s], episodes.next_obs[s], episodes.actions[s], episodes.rewards[s], episodes.success[s], False)
            for i, s in zip(episodes.episode_ids, episodes.episode_slices())]


def test_the_human_split_anchor_averages_random_splits_of_indistinguishable_people():
    rng = np.random.default_rng(0)
    people = [rng.normal(size=8) + rng.normal(size=(12, 8)) for _ in range(10)]  # (windows, F) per episode
    anchor = human_split_aucs(people, held_out=3, splits=4)
    assert len(anchor["aucs"]) == 4 and anchor["held_out_episodes"] == 3
    assert anchor["auc_min"] <= anchor["auc_mean"] <= anchor["auc_max"] and len(set(anchor["aucs"])) > 1
    assert 0.3 < anchor["auc_mean"] < 0.7
    assert human_split_aucs(people, held_out=3, splits=4) == anchor  # seeded
    assert human_split_aucs(people[:4], held_out=3, splits=4) is None  # the rest would be 1 episode
