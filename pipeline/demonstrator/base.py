"""What every task demonstrator shares: the episode interface and the hand-path → actions pipeline.

A demonstrator is asked, once per episode after `env.reset(seed=...)`, for a `Policy`: an object
with `act(obs) -> action` that is called once per env step. It may read the simulator (a person
sees the scene too); it never writes to it. All its randomness comes from the episode's own
generator, so an episode is a pure function of its seed.

`HandTracker` is the shared motor pipeline: a Cartesian palm path and a finger joint path →
IK for the arm and wrist (warm-started, one solve per step) → joint reference → actuator
inversion with inverse-dynamics feed-forward → actions in [−1, 1]. Played as planned
(`OpenLoopPolicy`), or executed the way a person executes a plan (`FeedbackPolicy`): with motor
noise that grows with the planned speed, and a feedback correction of the arm's deviation from
its reference.
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
ARM_FEEDBACK_GAIN = 1.0  # ctrl per unit of the arm's deviation from its reference: its stiffness 200 → 700 N/m
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
        return self._plan(palm, fingers, planned_palm)[0]

    def feedback_policy(self, palm: np.ndarray, fingers: np.ndarray, planned_palm: np.ndarray,
                        human: HumanVariability) -> FeedbackPolicy:
        """The plan of `actions` (same references, same feed-forward), executed with `human`'s motor noise on the
        arm joints, scaled by their planned speed, and the arm's feedback (`FeedbackPolicy`)."""
        actions, reference, planned = self._plan(palm, fingers, planned_palm)
        speed = np.abs(np.gradient(planned[:, self.arm_qpos], self.dt, axis=0))  # (T, arm joints)
        return FeedbackPolicy(self, actions, reference[:, self.arm_qpos], human.motor_noise(speed, self.dt))

    def _plan(self, palm: np.ndarray, fingers: np.ndarray, planned_palm: np.ndarray | None):
        """(actions (T, A), reference (T, nq), planned reference (T, nq) or None) of `actions`."""
        planned = None
        if planned_palm is not None:
            planned = self.reference(planned_palm, fingers)
            self.ik_data.qpos[:] = self.env.data.qpos  # the second IK pass warm-starts from the same pose
        reference = self.reference(palm, fingers)
        return self.inverter.actions_for(reference, self.dt, planned), reference, planned


class FeedbackPolicy:
    """Executes planned actions (T, A) as a person executes a plan: on each arm actuator the control gets
    `noise` (T, arm joints; the execution error, in joint units) plus `gain` × the arm's deviation from
    its reference now. The feedback stiffens the arm (force = g·ctrl − b·q, actuation.py), so the noise
    is scaled by (b + g·gain) / g: an error of `noise` is where it alone would settle the joint.

    Open-loop plans give demonstrations in which the arm's state and its action move in lockstep; a
    codebook decoder trained on them learns to follow the arm rather than the plan, and a lag of the
    arm then persists when codes are replayed (issue 17: relocate's replay ceiling 0.18 open loop).
    Here the data shows deviations, and actions that undo them."""

    def __init__(self, tracker: HandTracker, actions: np.ndarray, arm_reference: np.ndarray, noise: np.ndarray,
                 gain: float = ARM_FEEDBACK_GAIN):
        inv = tracker.inverter
        self.data, self.arm_qpos = tracker.env.data, tracker.arm_qpos
        self.arm_actuators = np.array([int(np.flatnonzero(inv.qpos_adr == q)[0]) for q in tracker.arm_qpos])
        gain_, bias = inv.gain[self.arm_actuators], inv.bias[self.arm_actuators]
        self.actions, self.gain = actions, gain
        self.noise_ctrl = noise * (bias + gain_ * gain) / gain_  # (T, arm joints)
        self.act_rng = inv.act_rng[self.arm_actuators]
        # the reference at the start of step t: the reset pose for t = 0, then row t − 1 (row t is for (t + 1)·dt)
        self.reference_now = np.concatenate([self.data.qpos[self.arm_qpos][None], arm_reference[:-1]])
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        t = min(self.t, len(self.actions) - 1)
        self.t += 1
        deviation = self.reference_now[t] - self.data.qpos[self.arm_qpos]
        action = self.actions[t].astype(np.float64)
        action[self.arm_actuators] += (self.gain * deviation + self.noise_ctrl[t]) / self.act_rng
        return np.clip(action, -1.0, 1.0).astype(np.float32)


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


__all__ = ["Demonstrator", "Policy", "HandTracker", "FeedbackPolicy", "OpenLoopPolicy", "HumanVariability", "hand_pose", "step_times"]
