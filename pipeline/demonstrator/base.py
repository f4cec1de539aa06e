"""What every task demonstrator shares: the episode interface and the hand-path → actions pipeline.

A demonstrator is asked, once per episode after `env.reset(seed=...)`, for a `Policy`: an object
with `act(obs) -> action` that is called once per env step. It may read the simulator (a person
sees the scene too); it never writes to it. All its randomness comes from the episode's own
generator, so an episode is a pure function of its seed.

`HandTracker` is the shared motor pipeline: a Cartesian palm path and a finger joint path →
IK for the arm and wrist (warm-started, one solve per step) → joint reference → actuator
inversion with inverse-dynamics feed-forward → actions in [−1, 1].
"""

from __future__ import annotations

from typing import Protocol

import gymnasium as gym
import mujoco
import numpy as np

from pipeline.demonstrator.actuation import ActuatorInverter
from pipeline.demonstrator.ik import joint_indices, solve_ik
from pipeline.demonstrator.variability import HumanVariability

ARM_JOINTS = {  # arm joints the IK moves (the palm in Cartesian space), per task model
    "relocate": ["ARTx", "ARTy", "ARTz", "ARRx", "ARRy", "ARRz"],
    "door": ["ARTz", "ARRx", "ARRy", "ARRz"],
}
HAND_JOINTS = [  # wrist and fingers: planned in joint space
    "WRJ1", "WRJ0", "FFJ3", "FFJ2", "FFJ1", "FFJ0", "MFJ3", "MFJ2", "MFJ1", "MFJ0", "RFJ3", "RFJ2", "RFJ1", "RFJ0",
    "LFJ4", "LFJ3", "LFJ2", "LFJ1", "LFJ0", "THJ4", "THJ3", "THJ2", "THJ1", "THJ0",
]  # fmt: skip


class Policy(Protocol):
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action (A,) for this step."""


class Demonstrator(Protocol):
    task: str
    version: str

    def start(self, env: gym.Env, rng: np.random.Generator) -> Policy:
        """A policy for the episode `env` was just reset to; `rng` is the episode's generator."""


def hand_pose(**angles: float) -> np.ndarray:
    """A (24,) wrist + finger joint vector from joint-name keyword angles (others 0)."""
    pose = np.zeros(len(HAND_JOINTS))
    for name, value in angles.items():
        pose[HAND_JOINTS.index(name)] = value
    return pose


class HandTracker:
    """Turns palm paths and finger paths into actions for one Adroit env (see module docstring)."""

    def __init__(self, env: gym.Env, task: str):
        self.env = env.unwrapped
        self.model: mujoco.MjModel = self.env.model
        if self.model.nq != self.model.nv:
            raise ValueError("HandTracker assumes nq == nv (no free or ball joints)")
        self.dt = float(self.env.dt)
        self.site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "S_grasp")
        self.arm_qpos, self.arm_dof = joint_indices(self.model, ARM_JOINTS[task])
        self.finger_qpos, _ = joint_indices(self.model, HAND_JOINTS)
        self.inverter = ActuatorInverter(self.model, self.env.act_mean, self.env.act_rng)
        self.ik_data = mujoco.MjData(self.model)
        self.ik_data.qpos[:] = self.env.data.qpos
        self.posture = self.env.data.qpos[self.arm_qpos].copy()

    def reference(self, palm: np.ndarray, fingers: np.ndarray) -> np.ndarray:
        """Full qpos reference (T, nq) from palm positions (T, 3) and wrist + finger angles (T, 24)."""
        qpos = np.repeat(self.env.data.qpos[None].copy(), len(palm), axis=0)
        for t in range(len(palm)):
            self.ik_data.qpos[self.finger_qpos] = fingers[t]
            q, _ = solve_ik(
                self.model, self.ik_data, self.site, palm[t], self.arm_qpos, self.arm_dof, self.posture
            )
            qpos[t, self.arm_qpos] = q
            qpos[t, self.finger_qpos] = fingers[t]
        return qpos

    def actions(self, palm: np.ndarray, fingers: np.ndarray, planned_palm: np.ndarray | None = None) -> np.ndarray:
        """Actions (T, A) whose step t drives the hand towards the reference at time (t + 1)·dt.
        With `planned_palm` (the palm path without tremor) the feed-forward anticipates that path
        only: the arm's stiffness, not its inverse dynamics, carries the tremor."""
        planned = None
        if planned_palm is not None:
            planned = self.reference(planned_palm, fingers)
            self.ik_data.qpos[:] = self.env.data.qpos  # the second IK pass warm-starts from the same pose
        return self.inverter.actions_for(self.reference(palm, fingers), self.dt, planned)


class OpenLoopPolicy:
    """Plays a precomputed action sequence (the plan was made from the scene at reset)."""

    def __init__(self, actions: np.ndarray):
        self.actions = actions
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self.actions[min(self.t, len(self.actions) - 1)]
        self.t += 1
        return action


def step_times(env: gym.Env, steps: int) -> np.ndarray:
    """End times (s) of env steps 0..steps-1: step t is planned to reach the plan at (t + 1)·dt."""
    return (np.arange(steps) + 1) * float(env.unwrapped.dt)


__all__ = ["Demonstrator", "Policy", "HandTracker", "OpenLoopPolicy", "HumanVariability", "hand_pose", "step_times"]
