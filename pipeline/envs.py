"""Making Adroit envs by D4RL's protocol: its dense reward, its episode length and termination.

gymnasium-robotics 1.4.2 flipped the sign of the reach term of door, hammer and relocate: it pays
`+0.1 * ||palm - object||` (a bonus for being *far* from the object) where D4RL, and therefore
every D4RL-derived dataset, pays `-0.1 * ||palm - object||`. `D4RLProtocol` subtracts
`0.2 * ||palm - object||` so that online rewards equal the rewards stored in the datasets. Pen
has no reach term; its reward is passed through unchanged, but its episode follows D4RL's
`pen-v0`: 100 steps (`Task.horizon`), terminated when the pen drops below `Task.drop_height`.

`OpenLoopRunner` runs a macro action's steps straight on such an env's simulator, bit-identical
to stepping the wrappers but at close to the simulator's own speed.

Every env the project makes goes through `make_env`.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import gymnasium as gym
import mujoco
import numpy as np

from pipeline.tasks import Task, get_task


def _norm(x: np.ndarray) -> float:
    """`np.linalg.norm` of a 1-D float vector, without its overhead: the same `x.dot(x)` and
    correctly rounded square root, so the same bits."""
    return math.sqrt(x.dot(x))


# The two points each task's (buggy) reach term measures the distance between, palm first, as
# (3,) views of the env's MjData (so a view read after a step holds that step's positions).
_REACH_POINTS: dict[str, Callable[[gym.Env], tuple[np.ndarray, np.ndarray]]] = {
    "door": lambda env: (env.data.site_xpos[env.grasp_site_id], env.data.site_xpos[env.handle_site_id]),
    "hammer": lambda env: (env.data.site_xpos[env.S_grasp_site_id], env.data.xpos[env.obj_body_id]),
    "relocate": lambda env: (env.data.site_xpos[env.S_grasp_site_id], env.data.xpos[env.obj_body_id]),
}
REACH_COEF = 0.1  # D4RL: reward -= 0.1 * distance


def reach_distance(task_name: str, env: gym.Env) -> float:
    """Distance between palm and object that the task's reach term uses (0 for pen)."""
    points = _REACH_POINTS.get(task_name)
    if points is None:
        return 0.0
    palm, obj = points(env.unwrapped)
    return _norm(palm - obj)


def d4rl_reward(gymnasium_reward: float, distance: float) -> float:
    """D4RL's reward from the env's: `r_env - 2 · 0.1 · d` turns the `+0.1 d` reach term into `-0.1 d`."""
    return float(gymnasium_reward) - 2 * REACH_COEF * distance


def dropped(task: Task, env: gym.Env) -> bool:
    """D4RL's pen termination: the object's centre is below `task.drop_height` (never, without one)."""
    if task.drop_height is None:
        return False
    sim = env.unwrapped
    return sim.data.xpos.item(sim.obj_body_id, 2) < task.drop_height


class D4RLProtocol(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Return D4RL's dense reward, and end an episode where D4RL does.

    Reward: undo gymnasium-robotics 1.4.2's sign flip of the reach term. The env computed
    `r_env = +0.1 d + rest`; D4RL's reward is `-0.1 d + rest = r_env - 0.2 d`, with `d` the
    palm-object distance after the step. `info["gymnasium_reward"]` keeps the env's own value.
    Termination: on pen, when the pen has dropped (`dropped`); the Adroit envs themselves never
    terminate. The episode length is the TimeLimit's, set by `make_env` from `Task.horizon`.

    `task` is a `Task` or its name. The wrapper records the name as its constructor argument, so
    the env's `spec` carries it as a JSON-serializable `WrapperSpec`
    (`pipeline.envs:D4RLProtocol`, `{"task": name}`) and `gym.make(env.spec)` rebuilds this env:
    that is how a Minari dataset's `recover_environment()` gets the D4RL reward back.
    """

    def __init__(self, env: gym.Env, task: str | Task):
        task = get_task(task) if isinstance(task, str) else task
        gym.utils.RecordConstructorArgs.__init__(self, task=task.name)
        super().__init__(env)
        self.task = task

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["gymnasium_reward"] = float(reward)
        reward = d4rl_reward(reward, reach_distance(self.task.name, self.env))
        return obs, reward, terminated or dropped(self.task, self.env), truncated, info


# Each task's dense reward and success, read off the simulator after a step. `bind(env)` takes
# views of the env's MjData once and returns `step_reward()` → (the env's own reward, the reach
# distance, success) for the current state (termination is `dropped`'s, read the same way). Each body repeats gymnasium-robotics 1.4.2's
# `step` operation for operation, in its order (`_norm` for `np.linalg.norm`), so its values are
# the gym path's to the bit; `tests/test_macro_env.py` checks that against the wrapper chain.
StepReward = Callable[[], tuple[float, float, bool]]


def _door_reward(env: gym.Env) -> StepReward:
    palm, handle = _REACH_POINTS["door"](env)
    qpos, qvel, hinge = env.data.qpos, env.data.qvel, env.door_hinge_addrs

    def step_reward():
        goal_distance = qpos.item(hinge)  # the hinge angle
        distance = _norm(palm - handle)
        reward = 0.1 * distance
        reward += -0.1 * (goal_distance - 1.57) * (goal_distance - 1.57)
        reward += -1e-5 * (qvel**2).sum()  # the reduction np.sum(qvel**2) runs
        if goal_distance > 0.2:
            reward += 2
        if goal_distance > 1.0:
            reward += 8
        if goal_distance > 1.35:
            reward += 10
        return reward, distance, goal_distance >= 1.35

    return step_reward


def _hammer_reward(env: gym.Env) -> StepReward:
    palm, hammer = _REACH_POINTS["hammer"](env)
    site_xpos, qvel = env.data.site_xpos, env.data.qvel
    head, nail, goal = site_xpos[env.tool_site_id], site_xpos[env.target_obj_site_id], site_xpos[env.goal_site_id]

    def step_reward():
        goal_distance = _norm(nail - goal)
        distance = _norm(palm - hammer)
        reward = 0.1 * distance
        reward -= _norm(head - nail)
        reward -= 10 * goal_distance
        reward -= 1e-2 * _norm(qvel)
        if hammer.item(2) > 0.04 and head.item(2) > 0.04:
            reward += 2
        if goal_distance < 0.020:
            reward += 25
        if goal_distance < 0.010:
            reward += 75
        return reward, distance, goal_distance < 0.01

    return step_reward


def _pen_reward(env: gym.Env) -> StepReward:
    xpos, site_xpos = env.data.xpos, env.data.site_xpos
    obj, desired = xpos[env.obj_body_id], site_xpos[env.eps_ball_site_id]
    obj_top, obj_bottom = site_xpos[env.obj_t_site_id], site_xpos[env.obj_b_site_id]
    target_top, target_bottom = site_xpos[env.tar_t_site_id], site_xpos[env.tar_b_site_id]
    pen_length, target_length = env.pen_length, env.tar_length  # set at reset

    def step_reward():
        obj_orien = (obj_top - obj_bottom) / pen_length
        desired_orien = (target_top - target_bottom) / target_length
        goal_distance = _norm(obj - desired)
        orien_similarity = obj_orien.dot(desired_orien)
        reward = -goal_distance + orien_similarity
        if goal_distance < 0.075 and orien_similarity > 0.9:
            reward += 10
        if goal_distance < 0.075 and orien_similarity > 0.95:
            reward += 50
        if obj.item(2) < 0.075:
            reward -= 5
        return reward, 0.0, goal_distance < 0.075 and orien_similarity > 0.95

    return step_reward


def _relocate_reward(env: gym.Env) -> StepReward:
    palm, obj = _REACH_POINTS["relocate"](env)
    target = env.data.site_xpos[env.target_obj_site_id]

    def step_reward():
        goal_distance = _norm(obj - target)
        distance = _norm(palm - obj)
        reward = 0.1 * distance
        if obj.item(2) > 0.04:
            reward += 1.0
            reward += -0.5 * _norm(palm - target)
            reward += -0.5 * goal_distance
        if goal_distance < 0.1:
            reward += 10.0
        if goal_distance < 0.05:
            reward += 20.0
        return reward, distance, goal_distance < 0.1

    return step_reward


# task → (the name of the gymnasium-robotics Adroit env class whose `step` it mirrors, its `bind`)
_STEP_REWARD: dict[str, tuple[str, Callable[[gym.Env], StepReward]]] = {
    "door": ("AdroitHandDoorEnv", _door_reward),
    "hammer": ("AdroitHandHammerEnv", _hammer_reward),
    "pen": ("AdroitHandPenEnv", _pen_reward),
    "relocate": ("AdroitHandRelocateEnv", _relocate_reward),
}


class OpenLoopRunner:
    """Run a sequence of actions on an env made by `make_env`, straight on the simulator.

    Stepping the wrapper chain (D4RLProtocol → TimeLimit → OrderEnforcing → PassiveEnvChecker →
    Adroit env) costs more Python per step than a macro action can afford, and builds an
    observation and info dict per step that an open-loop macro throws away. `run(actions)` does
    what `env.step` does per action, with the same bits: clip to [-1, 1], `ctrl = act_mean +
    a · act_rng`, `mj_step(nstep=frame_skip)`, the env's reward and success via `_STEP_REWARD`, the
    D4RL reward via `d4rl_reward`, D4RL's termination (`dropped`) and the TimeLimit count; and
    builds only the last observation and info. A run ends early at a termination or the time limit.

    gymnasium's MujocoEnv calls `mj_rnePostConstraint` after every step; it only fills derived
    force fields (cacc, cfrc_int, cfrc_ext) that no observation, reward or later step reads, so
    `run` calls it once, after the last step: the MjData it leaves equals the gym path's.
    The TimeLimit wrapper's elapsed-step count is advanced by the steps run, so `env.step` and
    `env.reset` through the wrappers carry on exactly as if every step had gone through them
    (PassiveEnvChecker, if its one first-step check has not run yet, runs it on the next `env.step`).
    """

    def __init__(self, sim: gym.Env, time_limit: gym.wrappers.TimeLimit,
                 order: gym.wrappers.OrderEnforcing, bind: Callable[[gym.Env], StepReward], task: Task):
        self.sim, self.time_limit, self.order, self.bind, self.task = sim, time_limit, order, bind, task

    @classmethod
    def of(cls, env: gym.Env) -> OpenLoopRunner | None:
        """The runner for `env` if it is exactly `make_env`'s wrapper chain around a dense-reward
        Adroit env that does not render to a window; None for any other env (step it instead)."""
        if not isinstance(env, D4RLProtocol) or env.task.name not in _STEP_REWARD:
            return None
        class_name, bind = _STEP_REWARD[env.task.name]
        time_limit, order = env.env, getattr(env.env, "env", None)
        if not isinstance(time_limit, gym.wrappers.TimeLimit) or not isinstance(order, gym.wrappers.OrderEnforcing):
            return None
        import gymnasium_robotics.envs.adroit_hand as adroit_hand

        sim = order.env.env if isinstance(order.env, gym.wrappers.PassiveEnvChecker) else order.env
        if type(sim) is not getattr(adroit_hand, class_name):  # a subclass may step differently
            return None
        if sim.sparse_reward or sim.render_mode == "human":
            return None
        return cls(sim, time_limit, order, bind, env.task)

    def run(self, actions: np.ndarray):  # (H, A) inside the action space
        """Execute `actions` in order, stopping at a termination or the time limit.

        Returns (obs after the last executed step, rewards (h,) D4RL, success (h,) bool,
        terminated, truncated, info of the last step: `success` (a bool) and `gymnasium_reward`,
        the keys `D4RLProtocol` gives).
        `rewards[j]`, `success[j]` and the obs are what `env.step(actions[j])` would have returned.
        """
        if not self.order.has_reset:
            raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        sim, limit = self.sim, self.time_limit
        model, data, ctrl_buffer = sim.model, sim.data, sim.data.ctrl
        # past the limit env.step still steps (and truncates), so h ≥ 1
        h = min(len(actions), max(1, limit._max_episode_steps - limit._elapsed_steps))
        ctrl = sim.act_mean + np.clip(actions[:h], -1.0, 1.0) * sim.act_rng  # (h, nu)
        step_reward = self.bind(sim)
        rewards, success = np.empty(h), np.empty(h, dtype=bool)
        terminated, drops = False, self.task.drop_height is not None
        for j in range(h):
            ctrl_buffer[:] = ctrl[j]
            mujoco.mj_step(model, data, nstep=sim.frame_skip)
            gymnasium_reward, distance, success[j] = step_reward()
            rewards[j] = d4rl_reward(gymnasium_reward, distance)
            if drops and dropped(self.task, sim):
                terminated, h = True, j + 1
                rewards, success = rewards[:h], success[:h]
                break
        mujoco.mj_rnePostConstraint(model, data)
        limit._elapsed_steps += h
        truncated = limit._elapsed_steps >= limit._max_episode_steps
        info = {"success": bool(success[-1]), "gymnasium_reward": float(gymnasium_reward)}
        return sim._get_obs(), rewards, success, terminated, truncated, info


def make_env(task: str | Task, *, render_mode: str | None = None, max_episode_steps: int | None = None, **kwargs) -> gym.Env:
    """The task's Adroit env by D4RL's protocol: its reward and termination, and `Task.horizon`
    steps (or `max_episode_steps`: the demonstrator records `Task.demo_horizon`)."""
    task = get_task(task) if isinstance(task, str) else task
    with warnings.catch_warnings():
        # gymnasium-robotics warns that the v1 rewards changed in 1.2.1; D4RLProtocol is our answer.
        warnings.filterwarnings("ignore", message=".*reward functions were updated.*")
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        env = gym.make(task.env_id, render_mode=render_mode, max_episode_steps=max_episode_steps or task.horizon, **kwargs)
    return D4RLProtocol(env, task)
