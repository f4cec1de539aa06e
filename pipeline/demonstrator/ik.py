"""Inverse kinematics: damped least squares on the arm and wrist joints, with an active set.

`solve_ik` moves a site (the palm's grasp site) to a target position by iterating

    (JᵀJ + λ²I + wP) Δq = Jᵀ e + wP (q_posture − q),

with `J` the site's positional Jacobian over the chosen joints (`mujoco.mj_jacSite`), `e` the
position error, `λ ≈ 0.03` the damping and `w` a small posture prior that keeps the redundant
arm near a natural pose. Joints that a step would push through a limit are clamped at the limit,
frozen, and the step is re-solved over the remaining joints (an active set): without that the
Adroit arm in relocate sits on a limit and the hand never descends. Warm-starting from the
previous solution keeps successive solutions continuous, so a path of targets becomes a smooth
joint path.
"""

from __future__ import annotations

import mujoco
import numpy as np


def joint_indices(model: mujoco.MjModel, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """qpos and dof addresses of 1-dof (hinge/slide) joints, by name."""
    qpos_adr, dof_adr = [], []
    for name in names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise KeyError(f"model has no joint {name!r}")
        qpos_adr.append(model.jnt_qposadr[jid])
        dof_adr.append(model.jnt_dofadr[jid])
    return np.array(qpos_adr), np.array(dof_adr)


def solve_ik(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    site_id: int,
    target: np.ndarray,
    qpos_adr: np.ndarray,
    dof_adr: np.ndarray,
    q_posture: np.ndarray,
    *,
    damping: float = 0.03,
    posture_weight: float = 1e-3,
    iterations: int = 30,
    tol: float = 2e-4,
) -> tuple[np.ndarray, float]:
    """Joint values (for `qpos_adr`) that put `site_id` at `target` (3,); returns (q, residual).

    `data` is a scratch MjData: its qpos is the warm start (all other joints stay as they are)
    and it is left at the solution. Limits come from the model's joint ranges.
    """
    n = len(qpos_adr)
    lower = np.full(n, -np.inf)
    upper = np.full(n, np.inf)
    jnt_ids = [int(np.flatnonzero(model.jnt_qposadr == a)[0]) for a in qpos_adr]
    for i, jid in enumerate(jnt_ids):
        if model.jnt_limited[jid]:
            lower[i], upper[i] = model.jnt_range[jid]
    jacp = np.zeros((3, model.nv))
    q = data.qpos[qpos_adr].copy()
    residual = np.inf
    for _ in range(iterations):
        data.qpos[qpos_adr] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        error = target - data.site_xpos[site_id]
        residual = float(np.linalg.norm(error))
        if residual < tol:
            break
        mujoco.mj_jacSite(model, data, jacp, None, site_id)
        jac = jacp[:, dof_adr]
        free = np.ones(n, dtype=bool)
        step = np.zeros(n)
        for _ in range(n):  # active set: freeze joints driven into a limit, re-solve the rest
            jf = jac[:, free]
            lhs = jf.T @ jf + (damping**2 + posture_weight) * np.eye(int(free.sum()))
            rhs = jf.T @ error + posture_weight * (q_posture[free] - q[free])
            step = np.zeros(n)
            step[free] = np.linalg.solve(lhs, rhs)
            new = q + step
            violating = free & (((new < lower) & (step < 0)) | ((new > upper) & (step > 0)))
            if not violating.any():
                break
            q[violating] = np.clip(q[violating], lower[violating], upper[violating])
            free &= ~violating
            if not free.any():
                step[:] = 0
                break
        q = np.clip(q + step, lower, upper)
    data.qpos[qpos_adr] = q
    mujoco.mj_kinematics(model, data)
    return q, residual
