"""From joint targets to env actions: actuator inversion plus inverse-dynamics feed-forward.

The Adroit actuators are `general` actuators with an affine bias: force = g·ctrl − b·q.
- The arm (g = 500, b = 200) is not a position servo: it settles at q = 2.5·ctrl and sags under
  gravity. Choosing ctrl = (τ_ff + b·q_ref) / g gives force = b (q_ref − q) + τ_ff: a stiff spring
  towards the reference plus the feed-forward torque. Without the feed-forward the arm sags
  8–24 cm and lags ~10 cm behind the plan.
- The wrist (g = b = 10) and the fingers (g = b = 1) are weak position servos: ctrl = q_ref + τ_ff/g.

τ_ff is the inverse dynamics of the reference motion (`mujoco.mj_rne` at (q_ref, q̇_ref, q̈_ref),
which includes gravity and Coriolis terms) plus the joint damping the actuator must overcome.
A person likewise anticipates the load of their own arm. The control is clipped to each
actuator's ctrlrange and mapped linearly onto [−1, 1] (the env maps it back with act_mean/act_rng),
so no force beyond what the actuators produce from their control range is ever applied.
"""

from __future__ import annotations

import mujoco
import numpy as np


class ActuatorInverter:
    """Turns reference joint trajectories into env actions for an Adroit env."""

    def __init__(self, model: mujoco.MjModel, act_mean: np.ndarray, act_rng: np.ndarray):
        self.model = model
        self.scratch = mujoco.MjData(model)
        if not np.all(model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT):
            raise ValueError("ActuatorInverter expects joint-transmission actuators only")
        joints = model.actuator_trnid[:, 0]
        self.qpos_adr = model.jnt_qposadr[joints]
        self.dof_adr = model.jnt_dofadr[joints]
        self.gain = model.actuator_gainprm[:, 0] * model.actuator_gear[:, 0]
        self.bias = -model.actuator_biasprm[:, 1]  # force = gain·ctrl − bias·q
        if np.any(self.gain <= 0):
            raise ValueError("every actuator needs a positive gain to be inverted")
        self.damping = model.dof_damping[self.dof_adr]
        self.lower, self.upper = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        self.act_mean = np.asarray(act_mean, dtype=np.float64)
        self.act_rng = np.asarray(act_rng, dtype=np.float64)

    def feedforward(self, qpos: np.ndarray, qvel: np.ndarray, qacc: np.ndarray) -> np.ndarray:
        """Actuated-joint torques (nu,) that produce `qacc` at (`qpos`, `qvel`) with no contact."""
        d = self.scratch
        d.qpos[:] = qpos
        d.qvel[:] = qvel
        mujoco.mj_fwdPosition(self.model, d)
        mujoco.mj_fwdVelocity(self.model, d)
        out = np.zeros(self.model.nv)
        mujoco.mj_rne(self.model, d, 1, out)  # M q̈ + c(q, q̇) (gravity, Coriolis)
        d.qacc[:] = qacc
        mujoco.mj_rne(self.model, d, 1, out)
        return out[self.dof_adr] + self.damping * qvel[self.dof_adr]

    def control(self, q_ref: np.ndarray, torque: np.ndarray) -> np.ndarray:
        """ctrl (nu,) whose actuator force at q = q_ref is `torque`, clipped to ctrlrange."""
        ctrl = (torque + self.bias * q_ref) / self.gain
        return np.clip(ctrl, self.lower, self.upper)

    def action(self, ctrl: np.ndarray) -> np.ndarray:
        """The env action in [−1, 1] that the env maps onto `ctrl`."""
        return np.clip((ctrl - self.act_mean) / self.act_rng, -1.0, 1.0).astype(np.float32)

    def actions_for(self, qpos_ref: np.ndarray, dt: float, qpos_planned: np.ndarray | None = None) -> np.ndarray:
        """Actions (T, nu) that track a reference (T, nq) of full qpos sampled every `dt`.

        The feed-forward anticipates `qpos_planned` (default: the reference itself): the planned
        motion without what a person does not plan, such as tremor. Velocities and accelerations
        come from its central differences.
        """
        planned = qpos_ref if qpos_planned is None else qpos_planned
        qvel = np.gradient(planned, dt, axis=0)
        qacc = np.gradient(qvel, dt, axis=0)
        actions = np.empty((len(qpos_ref), self.model.nu), dtype=np.float32)
        for t in range(len(qpos_ref)):
            torque = self.feedforward(planned[t], qvel[t], qacc[t])
            actions[t] = self.action(self.control(qpos_ref[t, self.qpos_adr], torque))
        return actions
