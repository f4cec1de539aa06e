"""Tests of the synthetic human demonstrator (pipeline/demonstrator) and its Minari datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from pipeline.demonstrator import DEMONSTRATORS, get_demonstrator
from pipeline.demonstrator.dataset import generate_dataset
from pipeline.demonstrator.ik import joint_indices, solve_ik
from pipeline.demonstrator.minjerk import (
    Keyframe,
    min_jerk,
    min_jerk_acceleration,
    min_jerk_velocity,
    sample_plan,
)
from pipeline.envs import make_env
from pipeline.io import sha256_tree
from pipeline.tasks import get_task


def test_min_jerk_profile_values():
    assert min_jerk(0.0) == 0.0 and min_jerk(1.0) == 1.0
    assert min_jerk(0.5) == pytest.approx(0.5)
    assert min_jerk(0.25) == pytest.approx(10 / 64 - 15 / 256 + 6 / 1024)
    for f in (min_jerk_velocity, min_jerk_acceleration):
        assert f(0.0) == 0.0 and f(1.0) == 0.0
    assert min_jerk_velocity(0.5) == pytest.approx(1.875)
    # the derivatives are the derivatives: compare with finite differences
    tau = np.linspace(0.05, 0.95, 19)
    h = 1e-6
    np.testing.assert_allclose((min_jerk(tau + h) - min_jerk(tau - h)) / (2 * h), min_jerk_velocity(tau), atol=1e-6)
    np.testing.assert_allclose(
        (min_jerk_velocity(tau + h) - min_jerk_velocity(tau - h)) / (2 * h), min_jerk_acceleration(tau), atol=1e-5
    )


def test_sample_plan_hits_keyframes_and_curves():
    a, b = np.zeros(3), np.array([0.2, 0.0, 0.1])
    keys = [Keyframe(0.0, a), Keyframe(1.0, b, vertical=(0.0, 0.5), horizontal=(0.5, 1.0))]
    path = sample_plan(keys, np.array([0.0, 0.5, 1.0, 2.0]), cartesian=True)
    np.testing.assert_allclose(path[0], a)
    np.testing.assert_allclose(path[1], [0.0, 0.0, 0.1])  # vertical done, horizontal not started
    np.testing.assert_allclose(path[2], b)
    np.testing.assert_allclose(path[3], b)  # holds after the last keyframe


def test_ik_reaches_a_reachable_target():
    env = make_env("relocate")
    env.reset(seed=3)
    model = env.unwrapped.model
    data = mujoco.MjData(model)
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "S_grasp")
    qpos_adr, dof_adr = joint_indices(model, ["ARTx", "ARTy", "ARTz", "ARRx", "ARRy", "ARRz"])
    # a target made by a known joint configuration is reachable by construction
    q_true = np.array([0.1, 0.05, -0.1, 0.2, -0.1, 0.1])
    data.qpos[qpos_adr] = q_true
    mujoco.mj_kinematics(model, data)
    target = data.site_xpos[site].copy()
    data.qpos[:] = 0
    mujoco.mj_kinematics(model, data)
    start = data.site_xpos[site].copy()
    q, residual = solve_ik(model, data, site, target, qpos_adr, dof_adr, np.zeros(6), iterations=100)
    assert np.linalg.norm(target - start) > 0.05  # it really had to move
    assert residual < 1e-3
    np.testing.assert_allclose(data.site_xpos[site], target, atol=1e-3)
    lo, hi = model.jnt_range[[np.flatnonzero(model.jnt_qposadr == a)[0] for a in qpos_adr]].T
    assert np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9)


def test_unknown_task_error_lists_tasks_with_a_demonstrator():
    with pytest.raises(KeyError, match="tasks with one: .*relocate"):
        get_demonstrator("juggling")
    assert "relocate" in DEMONSTRATORS


@pytest.fixture(scope="module")
def relocate_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("demos")
    summary = generate_dataset("relocate", episodes=2, seed=0, store_root=store)
    return store, summary


def test_generate_summary(relocate_store):
    _, summary = relocate_store
    assert summary["kept"] == 2
    assert summary["attempts"] >= 2
    assert summary["success_rate"] == pytest.approx(2 / summary["attempts"])
    assert summary["mean_length"] == 200  # episodes run to the time limit
    assert summary["mean_steps_to_success"] < 200


_LOAD_SCRIPT = """
import json, sys, minari
ds = minari.load_dataset(sys.argv[1])
eps = list(ds.iterate_episodes())
print(json.dumps({
    "n": len(eps),
    "seeds": [int(s) for s in json.loads(ds.storage.metadata["episode_seeds"])],
    "synthetic": bool(ds.storage.metadata["synthetic"]),
    "description": ds.storage.metadata["description"],
    "obs_shape": list(eps[0].observations.shape),
    "act_shape": list(eps[0].actions.shape),
    "success_last": [bool(e.infos["success"][-1]) for e in eps],
    "actions": [e.actions.tolist() for e in eps],
    "observations": [e.observations.tolist() for e in eps],
    "recovered": type(ds.recover_environment()).__name__,  # imports pipeline.envs from the spec alone
}))
"""


def test_dataset_loads_in_fresh_process_and_replays(relocate_store):
    store, _ = relocate_store
    task = get_task("relocate")
    env_vars = dict(os.environ, HF_HUB_OFFLINE="1", MINARI_DATASETS_PATH=str(store), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, task.synthetic_dataset_id],
        env=env_vars, capture_output=True, text=True, timeout=120, check=True,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["n"] == 2
    assert loaded["obs_shape"] == [201, task.obs_dim] and loaded["act_shape"] == [200, task.action_dim]
    assert loaded["success_last"] == [True, True]
    assert loaded["synthetic"] is True
    assert "SYNTHETIC" in loaded["description"] and "NOT human data" in loaded["description"]
    assert loaded["recovered"] == "D4RLProtocol"
    # replay: reset(seed) + the stored actions reproduce the stored observations
    env = make_env("relocate")
    for seed, actions, observations in zip(loaded["seeds"], loaded["actions"], loaded["observations"]):
        obs, _ = env.reset(seed=seed)
        replayed = [obs]
        for action in actions:
            obs, *_ = env.step(np.asarray(action, dtype=np.float32))
            replayed.append(obs)
        np.testing.assert_allclose(np.asarray(replayed), np.asarray(observations), atol=1e-9)


def test_recovered_environment_replays_the_stored_rewards(relocate_store, monkeypatch):
    """Regression (issue 15 item 5): the dataset's env spec was gymnasium-robotics' plain Adroit env,
    so `recover_environment()` rebuilt the env with the flipped reach term (`+0.1 d`), not the D4RL
    reward stored in the data. The spec now carries `D4RLProtocol` and the demo horizon.

    Exact equality: the recovered env is the same wrapper chain as `demonstration_env` (gymnasium's
    `make` applies the spec's `additional_wrappers` after its TimeLimit, as `make_env` does), reset
    with the same seed and stepped with the same float32 actions in the same process, and Minari
    stores observations and rewards as float64: nothing is rounded on the way, so no tolerance."""
    import minari

    from pipeline.envs import D4RLProtocol

    store, _ = relocate_store
    task = get_task("relocate")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store))
    dataset = minari.load_dataset(task.synthetic_dataset_id)
    seeds = json.loads(dataset.storage.metadata["episode_seeds"])
    env = dataset.recover_environment()
    assert isinstance(env, D4RLProtocol) and env.task == task
    assert env.spec.max_episode_steps == task.demo_horizon
    for episode in dataset.iterate_episodes():
        obs, _ = env.reset(seed=seeds[episode.id])
        observations, rewards, gymnasium_rewards, truncations = [obs], [], [], []
        for action in episode.actions:
            obs, reward, terminated, truncated, info = env.step(action)
            observations.append(obs)
            rewards.append(reward)
            gymnasium_rewards.append(info["gymnasium_reward"])
            truncations.append(truncated)
            assert not terminated
        np.testing.assert_array_equal(np.asarray(observations), episode.observations)
        np.testing.assert_array_equal(np.asarray(rewards), episode.rewards)
        np.testing.assert_array_equal(np.asarray(truncations), episode.truncations)
        # the env's own (flipped) reward differs at every step: the palm is never on the object
        assert np.all(np.asarray(gymnasium_rewards) > episode.rewards)
    env.close()
    # the evaluation env: the same protocol over the task's evaluation episode (`Task.horizon`)
    eval_env = dataset.recover_environment(eval_env=True)
    assert isinstance(eval_env, D4RLProtocol) and eval_env.spec.max_episode_steps == task.horizon
    eval_env.close()


def test_episode_ids_are_the_env_seeds_of_the_kept_attempts(tmp_path, monkeypatch):
    """A failed attempt is skipped, so kept episode i is not seed i: the loaded ids are the seeds."""
    from pipeline.data.sources import load_source
    from pipeline.demonstrator import dataset
    from pipeline.video import replay_frames

    real = dataset.run_episode

    def fail_seed_1(task, env, seed):
        episode = real(task, env, seed)
        if seed == 1:
            episode["success"] = np.zeros_like(episode["success"])
        return episode

    monkeypatch.setattr(dataset, "run_episode", fail_seed_1)
    summary = generate_dataset("relocate", episodes=2, seed=0, store_root=tmp_path)
    assert summary["attempts"] == 3
    episodes = load_source("relocate", "synthetic", synthetic_store=tmp_path).episodes
    assert episodes.episode_ids.tolist() == [0, 2]
    # the second episode replays from reset(seed=2): replay_frames raises if an observation differs
    steps = list(episodes.episode_slices())[1]
    frames = replay_frames("relocate", 2, episodes.actions[steps], episodes.obs[steps], size=16)
    assert frames.shape == (201, 16, 16, 3)


def test_same_seed_same_bytes(relocate_store, tmp_path):
    store, _ = relocate_store
    generate_dataset("relocate", episodes=2, seed=0, store_root=tmp_path)
    assert sha256_tree(tmp_path) == sha256_tree(store)
    assert list(tmp_path.rglob("*.hdf5"))  # the hash covers the data file, not an empty tree
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp leftovers


def test_dataset_id_is_labelled_synthetic():
    for name in DEMONSTRATORS:
        assert get_task(name).synthetic_dataset_id.startswith("synthetic/")


# --- relocate: its plan executed with motor noise and feedback ----------------------------------


def test_motor_noise_grows_with_the_planned_speed():
    from pipeline.demonstrator.variability import MOTOR_NOISE_S, HumanVariability

    speed = np.zeros((4000, 3))
    speed[:, 1], speed[:, 2] = 1.0, 2.0  # joint 0 holds still
    noise = HumanVariability(np.random.default_rng(0)).motor_noise(speed, dt=0.01)
    assert np.all(noise[:, 0] == 0.0)
    assert noise[:, 1].std() == pytest.approx(MOTOR_NOISE_S, rel=0.15)  # unit-SD smooth noise × MOTOR_NOISE_S × speed
    assert noise[:, 2].std() == pytest.approx(2 * MOTOR_NOISE_S, rel=0.15)
    assert np.diff(noise[:, 1]).std() < 0.2 * noise[:, 1].std()  # smooth: white noise would change by √2 × its SD per step


def test_relocate_arm_feedback_pulls_a_displaced_arm_back_to_its_reference():
    """relocate-0.3 executes its plan with feedback on the arm (FeedbackPolicy): displace the arm's forward
    slide 1 cm mid-reach and its command drops by the feedback gain × 1 cm; no other command changes."""
    from pipeline.demonstrator.base import ARM_FEEDBACK_GAIN, FeedbackPolicy
    from pipeline.demonstrator.dataset import demonstration_env

    env = demonstration_env("relocate")
    obs, _ = env.reset(seed=0)
    policy = get_demonstrator("relocate").start(env, np.random.default_rng(0))
    assert isinstance(policy, FeedbackPolicy)
    for _ in range(30):  # into the reach
        obs, *_ = env.step(policy.act(obs))
    planned = policy.act(obs)
    policy.t -= 1
    slide = policy.arm_qpos[2]  # ARTz
    env.unwrapped.data.qpos[slide] += 0.01
    displaced = policy.act(obs)
    actuator = policy.arm_actuators[2]
    expected = -ARM_FEEDBACK_GAIN * 0.01 / env.unwrapped.act_rng[actuator]
    assert abs(planned[actuator]) < 0.9  # not at a bound, where clipping would hide the change
    assert displaced[actuator] - planned[actuator] == pytest.approx(expected, rel=1e-4)
    others = np.arange(len(planned)) != actuator
    np.testing.assert_array_equal(displaced[others], planned[others])
    env.close()


# --- door, hammer, pen: one seeded episode each -------------------------------------------------

EPISODE_SEEDS = {"door": 0, "hammer": 0, "pen": 1}  # pen seed 1: a goal near a practised skill, planned in well under a second
JERK_BARS = {"door": 50, "hammer": 50, "pen": 20}  # at least this many times less jerk than uniform random actions


@pytest.fixture(scope="module")
def seeded_episode():
    """`seeded_episode(task)` → the episode of EPISODE_SEEDS[task] and the same seed run again (cached)."""
    from pipeline.demonstrator.dataset import demonstration_env, run_episode

    cache = {}

    def get(task: str) -> tuple[dict, dict]:
        if task not in cache:
            env = demonstration_env(task)
            seed = EPISODE_SEEDS[task]
            cache[task] = run_episode(task, env, seed=seed), run_episode(task, env, seed=seed)
            env.close()
        return cache[task]

    return get


@pytest.mark.parametrize("task", list(EPISODE_SEEDS))
def test_demonstrator_is_registered(task):
    assert get_demonstrator(task).task == task


@pytest.mark.parametrize("task", list(EPISODE_SEEDS))
def test_actions_are_smooth(seeded_episode, task):
    from pipeline.benchmarks.demonstrator import mean_squared_jerk

    actions = seeded_episode(task)[0]["actions"]
    random = np.random.default_rng(0).uniform(-1, 1, size=actions.shape)
    assert mean_squared_jerk(random) / mean_squared_jerk(actions) >= JERK_BARS[task]


@pytest.mark.parametrize("task", list(EPISODE_SEEDS))
def test_same_seed_same_episode(seeded_episode, task):
    episode, again = seeded_episode(task)
    np.testing.assert_array_equal(episode["actions"], again["actions"])
    np.testing.assert_array_equal(episode["observations"], again["observations"])


# --- door ---------------------------------------------------------------------------------------


def test_door_seeded_episode_opens_the_door(seeded_episode):
    episode, _ = seeded_episode("door")
    assert episode["success"][-1]  # door hinge ≥ 1.35 rad at the end of the 200-step episode
    assert np.all(np.abs(episode["actions"]) <= 1.0)
    assert episode["observations"][-1, 28] >= 1.35  # obs[28] is the door hinge angle


# --- hammer -------------------------------------------------------------------------------------


def test_hammer_seeded_episode_drives_the_nail(seeded_episode):
    episode, _ = seeded_episode("hammer")
    assert episode["success"][-1]  # nail head within 1 cm of its goal at the end of the episode
    assert np.all(np.abs(episode["actions"]) <= 1.0)
    nail = episode["observations"][:, 42:45]  # obs[42:45] is the nail head position
    assert np.linalg.norm(nail[-1] - nail[0]) > 0.08  # driven ~8 cm along its axis
    assert episode["observations"][:, -1].max() > 0  # obs[-1] is the nail's touch sensor: it was struck


def test_hammer_point_ik_reaches_a_reachable_target():
    from pipeline.demonstrator.hammer import ARM, point_ik

    env = make_env("hammer")
    env.reset(seed=0)
    model = env.unwrapped.model
    data = mujoco.MjData(model)
    palm = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "palm")
    point = np.array([0.2, -0.06, 0.15])  # roughly the hammer head, in the palm frame
    qpos_adr, _ = joint_indices(model, ARM)
    q_true = np.array([-0.1, -0.15, -0.3, 0.1])  # a target made by a known pose is reachable by construction
    data.qpos[qpos_adr] = q_true
    mujoco.mj_kinematics(model, data)
    target = data.xpos[palm] + data.xmat[palm].reshape(3, 3) @ point
    q, residual = point_ik(model, data, palm, point, target, np.zeros(4), np.zeros(4), np.full(4, 1e-6))
    assert residual < 1e-3
    env.close()


# --- pen ----------------------------------------------------------------------------------------


def test_pen_seeded_episode_reaches_the_goal(seeded_episode):
    episode, _ = seeded_episode("pen")
    assert episode["success"][-1]  # within 0.075 of the goal and orientation cosine > 0.95, at the end
    assert np.all(np.abs(episode["actions"]) <= 1.0)
    obs = episode["observations"][-1]
    assert obs[33:36] @ obs[36:39] > 0.95  # obs[33:36] pen axis, obs[36:39] goal axis


def test_pen_rollouts_are_exactly_the_episode():
    """The planner's rollouts reproduce env.step bit for bit (float32 actions, warm start carried)."""
    from pipeline.demonstrator.pen import PenSimulator

    env = make_env("pen")
    env.reset(seed=3)
    sim = PenSimulator(env)
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, size=(40, 24)).astype(np.float32)
    qpos = sim.rollout(sim.now(), actions[None])[0]  # (T, nq)
    halfway = sim.advance(sim.now(), actions[:20])
    qpos_from_halfway = sim.rollout(halfway, actions[None, 20:])[0]
    for action in actions:
        env.step(action)
    np.testing.assert_array_equal(qpos[-1], env.unwrapped.data.qpos)
    np.testing.assert_array_equal(qpos_from_halfway[-1], env.unwrapped.data.qpos)
    # the pen pose the planner computes from qpos is MuJoCo's own kinematics of that qpos (the env's
    # obs lag one physics substep: mj_step computes positions before it integrates)
    u = env.unwrapped
    data = mujoco.MjData(u.model)
    data.qpos[:] = qpos[-1]
    mujoco.mj_kinematics(u.model, data)
    pos, axis = sim.pen(qpos[-1])
    np.testing.assert_allclose(pos, data.xpos[u.obj_body_id], atol=1e-12)
    top, bottom = data.site_xpos[u.obj_t_site_id], data.site_xpos[u.obj_b_site_id]
    np.testing.assert_allclose(axis, (top - bottom) / np.linalg.norm(top - bottom), atol=1e-12)
    env.close()


# --- motor commands a person could give ----------------------------------------------------------


def test_bang_bang_detector_finds_a_swing_between_bounds_and_nothing_in_a_smooth_command():
    from pipeline.benchmarks.demonstrator import bang_bang_dims

    t = np.linspace(0, 1, 200)
    actions = np.stack([np.sin(2 * np.pi * t), np.zeros_like(t), np.full_like(t, 1.0)], axis=1)  # smooth, idle, held at a bound
    assert bang_bang_dims(actions) == []
    actions[50:53, 1], actions[55:58, 1] = -1.0, 1.0  # −1 then +1 two steps later
    assert bang_bang_dims(actions) == [1]
    assert bang_bang_dims(actions, within=1) == []


@pytest.mark.parametrize("task,seed", [("relocate", 0), ("relocate", 1), ("door", 0), ("door", 1)])
def test_arm_and_finger_commands_have_no_bang_bang(task, seed):
    """The relocate arm used to be slammed between its bounds (vertical slide ARTy, in 47 % of
    episodes) by descents and lifts too fast for its actuator; the timings now keep it in range.
    Door 0.1 swung its slide, wrist and distal finger joints in every episode; its low-passed joint
    reference (door-0.2) does not."""
    from pipeline.benchmarks.demonstrator import bang_bang_dims
    from pipeline.demonstrator.dataset import demonstration_env, run_episode

    env = demonstration_env(task)
    episode = run_episode(task, env, seed=seed)
    env.close()
    assert bang_bang_dims(episode["actions"]) == []
    assert episode["success"][-1]


def test_feedforward_of_the_planned_path_leaves_tremor_to_the_arm_stiffness():
    """With the tremor-free path as `planned_palm`, the actions differ from the default only by
    what the feed-forward no longer anticipates: with no tremor the two are identical, with
    tremor the arm's vertical command swings far less."""
    from pipeline.demonstrator.base import HandTracker, hand_pose

    env = make_env("relocate")
    env.reset(seed=0)
    u = env.unwrapped
    start = u.data.site_xpos[HandTracker(env, "relocate").site].copy()
    times = np.arange(1, 101) * u.dt
    plan = start + np.outer(np.sin(np.pi * times / times[-1]) ** 2, [0.0, 0.0, 0.05])  # a smooth 5 cm lift and back
    tremor = 0.0007 * np.outer(np.sin(2 * np.pi * 10.0 * times), [0.0, 0.0, 1.0])  # 10 Hz, 0.7 mm
    fingers = np.repeat(hand_pose()[None], len(times), axis=0)
    plain = HandTracker(env, "relocate").actions(plan, fingers)
    np.testing.assert_array_equal(HandTracker(env, "relocate").actions(plan, fingers, planned_palm=plan), plain)
    anticipated = HandTracker(env, "relocate").actions(plan + tremor, fingers) - plain
    carried = HandTracker(env, "relocate").actions(plan + tremor, fingers, planned_palm=plan) - plain
    env.close()
    # the tremor's share of the vertical slide's command (ARTy, action dim 1)
    assert np.abs(carried[:, 1]).max() < 0.1 * np.abs(anticipated[:, 1]).max()
