"""Shared fixtures. Tests never touch the network (HF_HUB_OFFLINE=1)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pipeline  # noqa: F401  first: it pins portable numerics before numpy loads (pipeline/numerics.py)

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_adroit_minari_dataset(store: Path, dataset_id: str, task: str, n_episodes: int, steps: int, seed: int = 0) -> None:
    """A real Minari dataset of `n_episodes` short episodes of an Adroit env (smooth random actions),
    cut by our own time limit after `steps` steps, with per-step success flags and, as Minari's D4RL Adroit
    datasets have, the env state (`get_env_state()`) at the reset and after every step in `infos["state"]`."""
    import minari
    from minari.data_collector import EpisodeBuffer

    from pipeline.data.sources import minari_store
    from pipeline.envs import make_env

    env = make_env(task)
    rng = np.random.default_rng(seed)
    buffers = []
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, success, states = [obs], [], [], [], [env.unwrapped.get_env_state()]
        action = rng.uniform(-0.3, 0.3, env.action_space.shape)
        for _ in range(steps):
            action = np.clip(0.9 * action + 0.1 * rng.uniform(-1, 1, env.action_space.shape), -1, 1).astype(np.float32)
            obs, reward, _, _, info = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            success.append(bool(info["success"]))
            states.append(env.unwrapped.get_env_state())
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=seed + i,
                observations=np.array(observations),
                actions=np.array(actions),
                rewards=np.array(rewards),
                terminations=np.zeros(steps, bool),
                truncations=np.arange(steps) == steps - 1,
                infos={"success": np.array(success), "state": {k: np.array([s[k] for s in states]) for k in states[0]}},
            )
        )
    with minari_store(store):
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env.unwrapped.spec.id, algorithm_name="smooth random actions (test)", author="maq-hub tests", author_email="tests@localhost", code_permalink="https://example.invalid/maq-hub", description="test fixture: smooth random actions, not demonstrations", eval_env=env.unwrapped.spec.id)


@pytest.fixture(scope="session")
def door_minari_store(tmp_path_factory) -> Path:
    """A Minari store holding `test/door/random-v0`: 10 episodes × 30 steps of AdroitHandDoor-v1."""
    store = tmp_path_factory.mktemp("minari")
    write_adroit_minari_dataset(store, "test/door/random-v0", "door", n_episodes=10, steps=30)
    return store
