"""The data layer: registry, reward wrapper, episodes, windows, splits, sources, safe pickles."""

import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.episodes import Episodes
from pipeline.data.prepare import load_prepared, split_episodes, write_prepared
from pipeline.data.sources import DataSourceError, load_minari_source, load_source, parse_source
from pipeline.data.windows import make_windows, window_starts
from pipeline.envs import D4RLProtocol, make_env, reach_distance
from pipeline.tasks import TASKS, get_task


def make_episodes(lengths, obs_dim=3, action_dim=2, seed=0) -> Episodes:
    """Episodes whose values encode (episode, step), so tests can see where data came from."""
    rng = np.random.default_rng(seed)
    trajectories = []
    for e, T in enumerate(lengths):
        steps = np.arange(T, dtype=np.float32)
        obs = np.stack([np.full(T, e), steps, rng.normal(size=T)], 1)[:, :obs_dim].astype(np.float32)
        trajectories.append(
            {
                "observations": obs,
                "next_observations": obs + 0.5,
                "actions": np.stack([np.full(T, e), steps], 1)[:, :action_dim].astype(np.float32),
                "rewards": steps + 100 * e,
                "terminals": np.zeros(T, bool),
            }
        )
    return Episodes.from_trajectories(trajectories)


# -- task registry ---------------------------------------------------------------------------
def test_registry_matches_the_simulator():
    for task in TASKS.values():
        env = make_env(task.name)
        assert env.observation_space.shape == (task.obs_dim,)
        assert env.action_space.shape == (task.action_dim,)
        assert env.spec.max_episode_steps == task.horizon == (100 if task.name == "pen" else 200)  # D4RL's protocol
        env.close()


def test_normalized_score_anchors():
    door = get_task("door")
    assert door.normalized_score(door.ref_min_score) == pytest.approx(0.0)
    assert door.normalized_score(door.ref_max_score) == pytest.approx(100.0)
    assert get_task("pen").normalized_score(96.262799 + (3076.8331017826877 - 96.262799) / 2) == pytest.approx(50.0)
    with pytest.raises(KeyError, match="known tasks: door, hammer, pen, relocate"):
        get_task("drawer")


# -- D4RL reward -----------------------------------------------------------------------------
def d4rl_reward(task: str, env) -> float:
    """D4RL's dense reward written out from its definition (mj_envs v0), from the sim state."""
    u = env.unwrapped
    d = u.data
    if task == "door":
        hinge = d.qpos[u.door_hinge_addrs]
        r = -0.1 * np.linalg.norm(d.site_xpos[u.grasp_site_id] - d.site_xpos[u.handle_site_id])
        r += -0.1 * (hinge - 1.57) ** 2 - 1e-5 * np.sum(d.qvel**2)
        return float(r + 2 * (hinge > 0.2) + 8 * (hinge > 1.0) + 10 * (hinge > 1.35))
    if task == "relocate":
        obj, palm, target = d.xpos[u.obj_body_id], d.site_xpos[u.S_grasp_site_id], d.site_xpos[u.target_obj_site_id]
        r = -0.1 * np.linalg.norm(palm - obj)
        if obj[2] > 0.04:
            r += 1.0 - 0.5 * np.linalg.norm(palm - target) - 0.5 * np.linalg.norm(obj - target)
        dist = np.linalg.norm(obj - target)
        return float(r + 10 * (dist < 0.1) + 20 * (dist < 0.05))
    if task == "hammer":
        obj, palm = d.xpos[u.obj_body_id], d.site_xpos[u.S_grasp_site_id]
        head, nail, goal = d.site_xpos[u.tool_site_id], d.site_xpos[u.target_obj_site_id], d.site_xpos[u.goal_site_id]
        dist = np.linalg.norm(nail - goal)
        r = -0.1 * np.linalg.norm(palm - obj) - np.linalg.norm(head - nail) - 10 * dist - 1e-2 * np.linalg.norm(d.qvel)
        return float(r + 2 * (obj[2] > 0.04 and head[2] > 0.04) + 25 * (dist < 0.02) + 75 * (dist < 0.01))
    raise NotImplementedError(task)


@pytest.mark.parametrize("task", ["door", "hammer", "relocate"])
def test_d4rl_reward_wrapper_restores_the_reach_penalty(task):
    env = make_env(task)
    assert isinstance(env, D4RLProtocol)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, reward, _, _, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        distance = reach_distance(task, env)
        assert distance > 0.05  # the hand starts far from the object: the two rewards differ
        assert reward == pytest.approx(d4rl_reward(task, env), abs=1e-9)
        assert info["gymnasium_reward"] - reward == pytest.approx(0.2 * distance)


@pytest.mark.parametrize("task", ["door", "hammer", "pen", "relocate"])
def test_env_spec_rebuilds_the_d4rl_protocol(task):
    """`make_env`'s spec names `D4RLProtocol` with the task's name (JSON, as a Minari dataset stores
    it), and gymnasium's `make` rebuilds the same wrapper chain from it, at either episode length."""
    import gymnasium as gym
    from gymnasium.envs.registration import EnvSpec

    from pipeline.envs import OpenLoopRunner

    for steps in (get_task(task).horizon, get_task(task).demo_horizon):
        env = make_env(get_task(task), max_episode_steps=steps)  # a Task or its name: the spec holds the name
        assert env.spec.additional_wrappers[-1].entry_point == "pipeline.envs:D4RLProtocol"
        assert env.spec.additional_wrappers[-1].kwargs == {"task": task}
        rebuilt = gym.make(EnvSpec.from_json(env.spec.to_json()))
        assert isinstance(rebuilt, D4RLProtocol) and rebuilt.task == get_task(task)
        assert rebuilt.spec.max_episode_steps == steps and rebuilt.spec.to_json() == env.spec.to_json()
        assert OpenLoopRunner.of(rebuilt) is not None  # the very chain make_env builds
        env.reset(seed=3), rebuilt.reset(seed=3)
        action = np.full(env.action_space.shape, 0.2, np.float32)
        (obs, reward, *ends, _), (obs_rebuilt, reward_rebuilt, *ends_rebuilt, _) = env.step(action), rebuilt.step(action)
        np.testing.assert_array_equal(obs, obs_rebuilt)
        assert (reward, ends) == (reward_rebuilt, ends_rebuilt)
        env.close(), rebuilt.close()


def test_pen_reward_is_unchanged():
    env = make_env("pen")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.zeros(24))
    assert reward == info["gymnasium_reward"]


def test_pen_episodes_follow_d4rl_protocol():
    """Pen: 100 steps, ended when the pen drops (D4RL's pen-v0), so D4RL's reference scores hold:
    a uniform-random agent scores ≈ 0 normalized (−24 on gymnasium-robotics' own 200-step episodes)."""
    from pipeline.evaluation import UniformRandomPolicy, rollout

    trajectories = rollout("pen", UniformRandomPolicy(24, seed=0), list(range(20)), progress=False)
    pen = get_task("pen")
    assert abs(np.mean([pen.normalized_score(t.rewards.sum()) for t in trajectories])) < 5
    dropped = [t for t in trajectories if t.terminated]
    assert dropped and all(len(t.rewards) < 100 for t in dropped)
    assert all(t.next_obs[-1, 26] < pen.drop_height and t.rewards[-1] < -4 for t in dropped)  # obs[26]: pen height; −5 penalty
    assert all(len(t.rewards) == 100 for t in trajectories if not t.terminated)
    env = make_env("pen")
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(np.zeros(24, np.float32))
    assert not terminated and not truncated  # the pen rests in the palm


def test_demonstrations_are_recorded_at_the_demo_horizon():
    from pipeline.demonstrator.dataset import demonstration_env, run_episode

    assert demonstration_env("pen").spec.max_episode_steps == get_task("pen").demo_horizon == 200
    with pytest.raises(ValueError, match=r"records 200-step episodes; this env has 100: make it with demonstration_env"):
        run_episode("pen", make_env("pen"), seed=0)


# -- episodes and windows --------------------------------------------------------------------
def test_first_steps_cuts_long_episodes_and_marks_the_cut_a_truncation():
    episodes = make_episodes([5, 2, 4])
    cut = episodes.first_steps(3)
    assert cut.lengths.tolist() == [3, 2, 3]
    np.testing.assert_array_equal(cut.actions[:, 0], [0, 0, 0, 1, 1, 2, 2, 2])  # episode of each step
    np.testing.assert_array_equal(cut.actions[:, 1], [0, 1, 2, 0, 1, 0, 1, 2])  # its step
    assert cut.truncations.tolist() == [False, False, True, False, True, False, False, True]
    np.testing.assert_array_equal(cut.episode_ids, episodes.episode_ids)
    assert episodes.first_steps(5) is episodes
def test_episodes_save_load_roundtrip(tmp_path):
    episodes = make_episodes([5, 7])
    episodes.save(tmp_path / "e.safetensors")
    loaded = Episodes.load(tmp_path / "e.safetensors")
    for name in ("obs", "next_obs", "actions", "rewards", "terminations", "truncations", "offsets", "episode_ids"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(episodes, name))
    assert loaded.truncations.tolist() == [False] * 4 + [True] + [False] * 6 + [True]


def test_truncated_episodes_file_raises_clear_error(tmp_path):
    make_episodes([5]).save(tmp_path / "e.safetensors")
    data = (tmp_path / "e.safetensors").read_bytes()
    (tmp_path / "e.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable episodes file"):
        Episodes.load(tmp_path / "e.safetensors")


def test_windows_never_cross_episodes_and_count_T_minus_H_plus_1():
    episodes = make_episodes([10, 4, 2, 6])
    H = 3
    w = make_windows(episodes, H, gamma=0.5)
    assert len(w) == (10 - 2) + (4 - 2) + 0 + (6 - 2)
    assert w.skipped_episodes == 1  # the 2-step episode is shorter than H
    assert w.macro.shape == (len(w), H, 2)
    # every action of a window comes from the window's own episode, at consecutive steps
    assert np.all(w.macro[:, :, 0] == w.episode[:, None])
    assert np.all(w.macro[:, :, 1] == w.start[:, None] + np.arange(H))
    assert np.all(w.obs[:, 1] == w.start)
    # s_{t+H} is the next_obs of the window's last step
    np.testing.assert_array_equal(w.next_obs[:, 1], w.start + H - 1 + 0.5)


def test_window_reward_is_discounted_sum_and_flags_mark_the_last_step():
    episodes = make_episodes([5])
    w = make_windows(episodes, 2, gamma=0.5)
    # rewards are 0,1,2,3,4: window t has r_t + 0.5 r_{t+1}
    np.testing.assert_allclose(w.reward, [0 + 0.5, 1 + 1.0, 2 + 1.5, 3 + 2.0])
    assert w.truncated.tolist() == [False, False, False, True]
    assert not w.terminal.any()
    assert np.all(w.steps == 2)


def test_receding_horizon_windows_keep_H_actions_and_end_the_transition_after_n():
    episodes = make_episodes([6])
    full, short = make_windows(episodes, 3, gamma=0.5), make_windows(episodes, 3, gamma=0.5, execute_steps=2)
    np.testing.assert_array_equal(short.macro, full.macro)  # the code still labels all H actions
    np.testing.assert_array_equal(short.obs, full.obs)
    # rewards 0..5: window t spans r_t + 0.5 r_{t+1}, and ends at s_{t+2}
    np.testing.assert_allclose(short.reward, [0 + 0.5, 1 + 1.0, 2 + 1.5, 3 + 2.0])
    np.testing.assert_array_equal(short.next_obs[:, 1], short.start + 1 + 0.5)
    assert np.all(short.steps == 2) and not short.truncated.any()  # no transition reaches the episode's last step
    np.testing.assert_array_equal(make_windows(episodes, 3, execute_steps=3).reward, make_windows(episodes, 3).reward)
    for n in (0, 4):
        with pytest.raises(ValueError, match="execute_steps must be in"):
            make_windows(episodes, 3, execute_steps=n)


def test_window_starts_and_too_short_episodes():
    episode, start = window_starts(np.array([3, 1, 2]), 2)
    assert episode.tolist() == [0, 0, 2] and start.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="no episode is at least H=9"):
        make_windows(make_episodes([4, 5]), 9)


# -- splits ----------------------------------------------------------------------------------
def test_split_is_the_papers_22_3_and_seeded():
    train, test = split_episodes(25, 0.1, seed=1)
    assert (len(train), len(test)) == (22, 3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(25))
    again, _ = split_episodes(25, 0.1, seed=1)
    other, _ = split_episodes(25, 0.1, seed=2)
    assert train.tolist() == again.tolist() and train.tolist() != other.tolist()
    assert [len(s) for s in split_episodes(2, 0.5, 0)] == [1, 1]
    with pytest.raises(ValueError, match="at least 2 episodes"):
        split_episodes(1, 0.1, 0)


# -- sources ---------------------------------------------------------------------------------
def test_parse_source():
    assert parse_source("synthetic") == ("synthetic", "")
    assert parse_source("minari:D4RL/door/human-v2") == ("minari", "D4RL/door/human-v2")
    assert parse_source("pkl:data/door.pkl") == ("pkl", "data/door.pkl")
    for bad in ("minari:", "hdf5:x", "synthetic:x"):
        with pytest.raises(DataSourceError, match="unknown data source"):
            parse_source(bad)


def test_minari_source_reads_episodes_with_success_flags(door_minari_store):
    episodes, sha, starts = load_minari_source("test/door/random-v0", "door", door_minari_store, allow_download=False)
    assert episodes.n_episodes == 10 and episodes.lengths.tolist() == [30] * 10
    assert episodes.obs.shape == (300, 39) and episodes.actions.shape == (300, 28)
    np.testing.assert_array_equal(episodes.obs[1:30], episodes.next_obs[:29])  # consecutive steps
    assert episodes.success is not None and episodes.truncations.sum() == 10
    assert len(sha) == 64
    assert {k: v.shape for k, v in starts.items()} == {"door_body_pos": (10, 3), "qpos": (10, 30), "qvel": (10, 30)}
    env = make_env("door")  # each start state restores its episode's first observation
    for i, s in enumerate(episodes.episode_slices()):
        obs, _ = env.reset(seed=99, options={"initial_state_dict": {k: v[i] for k, v in starts.items()}})
        np.testing.assert_allclose(obs, episodes.obs[s][0], atol=1e-6)


def test_missing_minari_dataset_fails_fast_with_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(DataSourceError, match="minari download D4RL/door/human-v2"):
        load_minari_source("D4RL/door/human-v2", "door", tmp_path, allow_download=False)
    with pytest.raises(DataSourceError, match="HF_HUB_OFFLINE"):  # set by conftest
        load_minari_source("D4RL/door/human-v2", "door", tmp_path, allow_download=True)
    assert time.monotonic() - start < 5


def test_download_without_network_fails_within_seconds(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    start = time.monotonic()
    with pytest.raises(DataSourceError, match="no connection to 127.0.0.1:9"):
        load_minari_source("D4RL/door/human-v2", "door", tmp_path, allow_download=True)
    assert time.monotonic() - start < 5


def test_pkl_source_and_prepare_outputs(tmp_path):
    episodes = make_episodes([8] * 10, obs_dim=3, action_dim=2)
    trajectories = [
        {
            "observations": episodes.obs[s],
            "next_observations": episodes.next_obs[s],
            "actions": episodes.actions[s],
            "rewards": episodes.rewards[s],
            "terminals": episodes.terminations[s],
        }
        for s in episodes.episode_slices()
    ]
    path = tmp_path / "demos.pkl"
    path.write_bytes(pickle.dumps(trajectories))
    # door expects 39/28-sized data: the toy pickle must be refused for it, by name
    with pytest.raises(DataSourceError, match="do not match task door"):
        load_source("door", f"pkl:{path}", synthetic_store=tmp_path)
    from pipeline.config import PrepareConfig
    from pipeline.data.sources import LoadedSource

    loaded = LoadedSource(episodes=episodes, source=f"pkl:{path}", sha256="0" * 64, description="toy")
    meta = write_prepared("door", loaded, PrepareConfig(test_fraction=0.1, split_seed=1, allow_download=False), tmp_path / "out")
    train, test, meta_read = load_prepared(tmp_path / "out")
    assert meta == meta_read
    assert (train.n_episodes, test.n_episodes) == (9, 1)
    assert sorted(meta["train_episode_ids"] + meta["test_episode_ids"]) == list(range(10))
    np.testing.assert_allclose(meta["action_mean"], train.actions.mean(0), rtol=1e-6)
    assert "| train | 9 | 72 |" in (tmp_path / "out" / "README.md").read_text()
    from huggingface_hub import DatasetCard

    from pipeline.hub import validate_dataset_dir

    card = DatasetCard.load(tmp_path / "out" / "README.md", ignore_metadata_errors=False)  # pushable: valid front matter
    assert card.data.task_categories == ["reinforcement-learning"] and "AdroitHandDoor-v1" in card.data.tags
    assert validate_dataset_dir(tmp_path / "out") == meta


def test_synthetic_source_without_demos_says_how_to_make_them(tmp_path):
    with pytest.raises(DataSourceError, match=r"dvc repro demos@door"):
        load_source("door", "synthetic", synthetic_store=tmp_path / "missing")


def test_official_pkl_trajectory_ends_are_time_limits_not_terminations(tmp_path):
    """The official code marks `terminals` at the end of every trajectory; those ends are time limits."""
    rng = np.random.default_rng(0)

    def trajectory(T, **extra):
        return {"observations": rng.normal(size=(T, 39)), "next_observations": rng.normal(size=(T, 39)),
                "actions": rng.uniform(-1, 1, (T, 28)), "rewards": rng.normal(size=T),
                "terminals": np.arange(T) == T - 1, **extra}

    path = tmp_path / "official.pkl"
    path.write_bytes(pickle.dumps([trajectory(12), trajectory(15)], protocol=2))
    episodes = load_source("door", f"pkl:{path}", synthetic_store=tmp_path).episodes
    assert not episodes.terminations.any()
    assert np.flatnonzero(episodes.truncations).tolist() == [11, 26]  # the last step of each trajectory
    windows = make_windows(episodes, H=3)
    assert not windows.terminal.any()  # every demo end is bootstrapped

    # a file that says which ends are time limits is taken literally
    path.write_bytes(pickle.dumps([trajectory(12, truncations=np.zeros(12, bool))], protocol=2))
    episodes = load_source("door", f"pkl:{path}", synthetic_store=tmp_path).episodes
    assert episodes.terminations[-1] and not episodes.truncations.any()
