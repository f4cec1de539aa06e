"""Videos: replaying stored actions on the real door env reproduces (and checks) the episode."""

import numpy as np
import pytest

from pipeline import video
from pipeline.data.episodes import Episodes
from pipeline.envs import make_env

SIZE = 64


def random_episodes(task: str, env_seeds: list[int], steps: int, seed: int = 0) -> Episodes:
    """Episodes of uniform random actions on the real env, one per env reset seed (the seeds are
    the episode ids, as in the evaluate stage's trajectories)."""
    env = make_env(task)
    rng = np.random.default_rng(seed)
    trajectories = []
    for env_seed in env_seeds:
        obs, _ = env.reset(seed=env_seed)
        record = {"observations": [], "next_observations": [], "actions": [], "rewards": [], "success": []}
        for _ in range(steps):
            action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
            next_obs, reward, _, _, info = env.step(action)
            for key, value in zip(record, (obs, next_obs, action, reward, info["success"])):
                record[key].append(value)
            obs = next_obs
        trajectories.append({**record, "terminals": np.zeros(steps, bool)})
    env.close()
    return Episodes.from_trajectories(trajectories, episode_ids=env_seeds)


@pytest.fixture(scope="module")
def door_episodes() -> Episodes:
    return random_episodes("door", [3, 4], steps=10)


def test_replay_renders_one_frame_per_state(door_episodes):
    frames = video.episode_frames("door", door_episodes, 0, SIZE)
    assert frames.shape == (11, SIZE, SIZE, 3) and frames.dtype == np.uint8  # reset + 10 steps
    assert frames.std() > 0  # a picture, not a blank


def test_replay_check_catches_a_tampered_action(door_episodes):
    steps = next(door_episodes.episode_slices())
    actions = door_episodes.actions[steps].copy()
    actions[5] = -actions[5]
    with pytest.raises(video.ReplayMismatch, match="env seed 3.*at step 6"):
        video.replay_frames("door", 3, actions, door_episodes.obs[steps], SIZE)


def test_mp4_has_every_frame(tmp_path):
    import imageio_ffmpeg

    frames = np.random.default_rng(0).integers(0, 256, (11, SIZE, 2 * SIZE, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    video.write_mp4(path, frames, fps=50)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (2 * SIZE, SIZE) and meta["fps"] == 50
    assert sum(1 for _ in reader) == 11


def test_side_by_side_holds_the_shorter_episodes_last_frame():
    left = np.zeros((3, 4, 5, 3), np.uint8)
    right = np.stack([np.full((4, 5, 3), i, np.uint8) for i in (1, 2)])
    both = video.side_by_side(left, right)
    assert both.shape == (3, 4, 10, 3)
    assert (both[2, :, 5:] == 2).all() and (both[:, :, :5] == 0).all()


def test_agent_is_shown_next_to_the_closest_replayable_human_episode(door_episodes):
    human = random_episodes("door", [7, 8], steps=10, seed=1)
    steps = next(door_episodes.episode_slices())
    agent = video.EpisodeVideo(video.episode_frames("door", door_episodes, 0, SIZE), "agent")
    index, distance = video.closest_episode(door_episodes.obs[steps], human)

    frames, note = video.human_comparison("door", agent, door_episodes.obs[steps], human, "synthetic", SIZE)
    assert frames.shape == (11, SIZE, 2 * SIZE, 3)
    assert f"human test episode {human.episode_ids[index]}" in note and f"{distance:.1f}" in note

    frames, note = video.human_comparison("door", agent, door_episodes.obs[steps], human, "minari:D4RL/door/human-v2", SIZE)
    assert frames.shape == (11, SIZE, SIZE, 3) and "cannot be replayed" in note

    tampered = Episodes(**{**human.__dict__, "actions": -human.actions})
    frames, note = video.human_comparison("door", agent, door_episodes.obs[steps], tampered, "synthetic", SIZE)
    assert frames.shape == (11, SIZE, SIZE, 3) and "does not replay" in note


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # gymnasium's viewer __del__ after the failed context
def test_missing_egl_names_the_fix(door_episodes, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")
    monkeypatch.setattr(video, "_render_envs", {})  # no render env opened by an earlier test
    with pytest.raises(video.RenderingUnavailable, match=r"libegl1.*report\.videos: false"):
        video.episode_frames("door", door_episodes, 0, SIZE)
