"""Making Adroit envs, always with the D4RL dense reward.

gymnasium-robotics 1.4.2 flipped the sign of the reach term of door, hammer and relocate: it pays
`+0.1 * ||palm - object||` (a bonus for being *far* from the object) where D4RL, and therefore
every D4RL-derived dataset, pays `-0.1 * ||palm - object||`. `D4RLReward` subtracts
`0.2 * ||palm - object||` so that online rewards equal the rewards stored in the datasets. Pen
has no reach term and is passed through unchanged.

Every env the project makes goes through `make_env`.
"""

from __future__ import annotations

import warnings
from typing import Callable

import gymnasium as gym
import numpy as np

from pipeline.tasks import Task, get_task

# The distance each task's (buggy) reach term is computed from, read off the simulator.
_REACH_DISTANCE: dict[str, Callable[[gym.Env], float]] = {
    "door": lambda env: float(
        np.linalg.norm(env.data.site_xpos[env.grasp_site_id] - env.data.site_xpos[env.handle_site_id])
    ),
    "hammer": lambda env: float(
        np.linalg.norm(env.data.site_xpos[env.S_grasp_site_id] - env.data.xpos[env.obj_body_id])
    ),
    "relocate": lambda env: float(
        np.linalg.norm(env.data.site_xpos[env.S_grasp_site_id] - env.data.xpos[env.obj_body_id])
    ),
}
REACH_COEF = 0.1  # D4RL: reward -= 0.1 * distance


def reach_distance(task_name: str, env: gym.Env) -> float:
    """Distance between palm and object that the task's reach term uses (0 for pen)."""
    fn = _REACH_DISTANCE.get(task_name)
    return 0.0 if fn is None else fn(env.unwrapped)


class D4RLReward(gym.Wrapper):
    """Return D4RL's dense reward: undo gymnasium-robotics 1.4.2's sign flip of the reach term.

    The env computed `r_env = +0.1 d + rest`; D4RL's reward is `-0.1 d + rest = r_env - 0.2 d`,
    with `d` the palm-object distance after the step. `info["gymnasium_reward"]` keeps the
    env's own value for comparison.
    """

    def __init__(self, env: gym.Env, task_name: str):
        super().__init__(env)
        self.task_name = task_name

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["gymnasium_reward"] = float(reward)
        reward = float(reward) - 2 * REACH_COEF * reach_distance(self.task_name, self.env)
        return obs, reward, terminated, truncated, info


def make_env(task: str | Task, *, render_mode: str | None = None, **kwargs) -> gym.Env:
    """The task's Adroit env with the D4RL reward (and the standard 200-step time limit)."""
    task = get_task(task) if isinstance(task, str) else task
    with warnings.catch_warnings():
        # gymnasium-robotics warns that the v1 rewards changed in 1.2.1; D4RLReward is our answer.
        warnings.filterwarnings("ignore", message=".*reward functions were updated.*")
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        env = gym.make(task.env_id, render_mode=render_mode, **kwargs)
    return D4RLReward(env, task.name)
