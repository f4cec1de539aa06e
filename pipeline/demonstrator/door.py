"""Door: turn the lever handle, pull the door ajar by it, let go, and push it open from behind.

The plan is made from the scene at reset, in the door's own coordinates (hinge at the origin,
the closed door along −x, its hand-side face towards −y), the way a person opens a lever door
that swings towards them:

1. reaction time, then reach over the lever end with the palm down and the fingers half curled;
2. press the lever down along its arc around the latch axis (planned 1.8 rad), rolling the
   forearm with it so the palm stays on the lever's upper face; the palm target runs a few cm *below* the
   lever, so the arm's stiffness presses it (the latch has 5 N·m of friction; the door stays
   shut until the bolt clears the frame post at ~1.15 rad);
3. curl the fingers behind the lever (a hook) and pull the door ajar (~1 rad) along the
   handle's arc around the hinge;
4. let go (fingers straighten), back off, go out past the free edge and round to the door's
   back face;
5. sweep the door open with the back of the hand (the forearm is still rolled ~100°, so the
   back of the hand faces the way the door opens) along its arc to the hinge stop, and hold.

Phase 1–3 plans a lever coordinate vector (lever angle, offset along the lever normal, forearm
roll, door angle, finger curl); phase 4–5 plans a point in closed-door coordinates plus the door
angle. Both are min-jerk keyframe chains; the Cartesian target is the point rotated about the
hinge by the planned door angle.

The arm of the door model has only ARTz (forward slide) and three rotations; the palm position
comes from IK on the slide, pitch and yaw, while the forearm roll is planned in joint space.

The joint reference is low-passed (Gaussian, σ = 50 ms, like muscle activation dynamics) before the
actuator inversion. Version door-0.1 did not, and the feed-forward of its reference's corners swung the
slide (ARTz) and the fingers' distal joints from one bound to the other within a few steps in every
episode (issue 17).

Measured (python -m pipeline.benchmarks.demonstrator --seeds 100 --tasks door, seeds 1000–1099,
unseen): 95% success at the end of the episode, 90% by D4RL's hold rule (first success ~step 144),
action jerk ~520,000× below random actions, no bang-bang dim in any episode, ~0.6 s per episode.
door-0.1 on the same seeds: 89% / 60%, first success ~step 160, ~420×, bang-bang in 100% of episodes.
Failures: the hand brushes the door shut on its way round the free edge, or the pull stays short.
"""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.demonstrator.base import HandTracker, OpenLoopPolicy, hand_pose, step_times
from pipeline.demonstrator.ik import joint_indices, solve_ik
from pipeline.demonstrator.minjerk import Keyframe, min_jerk, sample_plan
from pipeline.demonstrator.variability import HumanVariability

LEVER_RADIUS = 0.15  # palm contact point along the lever from the latch axis (the handle site)
LEVER_TURN = 1.8  # planned lever angle (rad); the bolt clears the frame post at ~1.15
HOVER = 0.08  # over the lever before touching (normal offset of the grasp site)
TOUCH = -0.01  # grasp site this far along the lever normal: the palm rests on the lever
PRESS = -0.06  # target below the lever while turning it: the arm's stiffness presses
HOOK = -0.02  # normal offset while hooking and pulling
PULL_ANGLE = 1.0  # planned door angle of the pull (the door lags and stops at ~0.9–1.1)
REST_ANGLE = 1.05  # where the door is assumed to rest while the hand goes round the free edge
BACK_OFF = 0.15  # let go: back off this far from the lever, towards the hand side
OUT = (-0.85, -0.30)  # past the free edge on the hand side (closed-door x, y)
BEHIND = (-0.78, 0.15)  # past the free edge behind the door
PUSH_RADIUS = 0.50  # contact on the back face, from the hinge (free edge at ~0.56)
PUSH_OFFSET = 0.09  # grasp site off the back face's mid-plane (the back of the hand touches)
OPEN_ANGLE = 1.65  # planned; the hinge stops at 1.57
HALF_CURL = hand_pose(
    FFJ2=0.5, FFJ1=0.8, MFJ2=0.5, MFJ1=0.8, RFJ2=0.5, RFJ1=0.8, LFJ2=0.5, LFJ1=0.8, THJ4=0.5, THJ3=0.3
)  # fmt: skip
HOOK_CURL = hand_pose(
    FFJ2=0.9, FFJ1=1.3, FFJ0=1.0, MFJ2=0.9, MFJ1=1.3, MFJ0=1.0,
    RFJ2=0.9, RFJ1=1.3, RFJ0=1.0, LFJ2=0.9, LFJ1=1.3, LFJ0=1.0, THJ4=0.5, THJ3=0.3,
)  # fmt: skip
FLAT = hand_pose(FFJ2=0.2, MFJ2=0.2, RFJ2=0.2, LFJ2=0.2, THJ4=0.5, THJ3=0.3)  # let go
REACH_SPEEDUP = 0.4  # a practised reach: Fitts' time × 0.4 (the episode is only 2 s)
REFERENCE_SMOOTHING_S = 0.05  # σ of the Gaussian low-pass of the joint reference (20 seeds: 0.04–0.06 s all succeed, 0.08 s 75%)


def _rot(v: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1], v[..., 2]], axis=-1)


class DoorDemonstrator:
    task = "door"
    version = "door-0.2"

    def start(self, env: gym.Env, rng: np.random.Generator) -> OpenLoopPolicy:
        u = env.unwrapped
        m, d = u.model, u.data
        human = HumanVariability(rng)
        tracker = HandTracker(env, self.task)
        hinge_jnt = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, "door_hinge")
        hinge = d.xanchor[hinge_jnt].copy()
        latch = d.xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "latch")].copy() - hinge
        handle = d.site_xpos[u.handle_site_id].copy() - hinge
        palm0 = d.site_xpos[tracker.site].copy()
        times = step_times(env, env.spec.max_episode_steps)
        V = lambda *a: np.array(a, dtype=float)  # noqa: E731

        # Phases 1–3, on the lever: (lever angle, normal offset, forearm roll, door angle, curl).
        radius = LEVER_RADIUS + human.scatter(1)[0]
        turn = LEVER_TURN + 0.5 * human.scatter(1, (0.01, 0.08))[0]
        t = human.reaction_delay
        t_reach = t + human.fitts_time(np.linalg.norm(handle + hinge - palm0), 0.04) * REACH_SPEEDUP
        t_touch = t_reach + human.duration(0.08)
        t_press = t_touch + human.duration(0.35)
        t_hook = t_press + human.duration(0.08)
        t_pull = t_hook + human.duration(0.3)
        pull = PULL_ANGLE + human.scatter(1, (0.0, 0.05))[0]
        akeys = [
            Keyframe(0.0, V(0, HOVER, 0, 0, 0)),
            Keyframe(t_reach, V(0, HOVER, 0, 0, 0)),
            Keyframe(t_touch, V(0, TOUCH, 0, 0, 0)),
            Keyframe(t_press, V(turn, PRESS, turn, 0, 0)),
            Keyframe(t_hook, V(turn, HOOK, turn, 0, 1)),
            Keyframe(t_pull, V(turn, HOOK, turn, pull, 1)),
        ]
        a = sample_plan(akeys, times)
        normal = np.stack([np.sin(a[:, 0]), np.zeros(len(a)), np.cos(a[:, 0])], axis=1)
        along = np.stack([np.cos(a[:, 0]), np.zeros(len(a)), -np.sin(a[:, 0])], axis=1)
        lever = V(latch[0], handle[1], latch[2]) + radius * along + a[:, 1:2] * normal
        local = lever.copy()  # closed-door coordinates = hinge-relative world at door angle 0
        roll = a[:, 2]
        door_angle = a[:, 3]
        fingers = HALF_CURL[None] + a[:, 4:5] * (HOOK_CURL - HALF_CURL)[None]

        # Phases 4–5, round the free edge to the back face: (x, y, z) in closed-door coordinates.
        z_mid = latch[2]
        rest = REST_ANGLE
        r_push = PUSH_RADIUS + human.scatter(1)[0]
        s_push = PUSH_OFFSET
        tb = t_pull
        t_release = tb + human.duration(0.12)
        t_out = t_release + human.duration(0.2)
        t_behind = t_out + human.duration(0.12)
        t_contact = t_behind + human.duration(0.1)
        t_sweep = t_contact + human.duration(0.25)
        lev_end = local[min(np.searchsorted(times, tb), len(times) - 1)]
        bkeys = [
            Keyframe(tb, np.r_[lev_end, pull]),
            Keyframe(t_release, np.r_[lev_end + V(0.0, -BACK_OFF, 0.0), rest]),
            Keyframe(t_out, V(*OUT, z_mid, rest)),
            Keyframe(t_behind, V(*BEHIND, z_mid, rest)),
            Keyframe(t_contact, V(-r_push, s_push, z_mid, rest)),
            Keyframe(t_sweep, V(-r_push, s_push, z_mid, OPEN_ANGLE)),
        ]
        b = sample_plan(bkeys, times)
        late = times > tb
        local[late] = b[late, :3]
        door_angle = np.where(late, b[:, 3], door_angle)
        w = min_jerk((times - tb) / max(t_release - tb, 1e-6))[:, None]
        fingers = np.where(late[:, None], HOOK_CURL[None] * (1 - w) + FLAT[None] * w, fingers)

        palm = hinge + _rot(local, door_angle)
        w = min_jerk((times - human.reaction_delay) / (t_reach - human.reaction_delay))[:, None]
        palm = palm0 * (1 - w) + palm * w  # the reach: straight min-jerk from the start pose
        palm = palm + human.tremor(times) + human.drift(times)
        return OpenLoopPolicy(self._actions(tracker, palm, roll, fingers))

    @staticmethod
    def _actions(tracker: HandTracker, palm: np.ndarray, roll: np.ndarray, fingers: np.ndarray) -> np.ndarray:
        """IK on slide, pitch and yaw for the palm; forearm roll planned in joint space; the joint reference
        smoothed (`REFERENCE_SMOOTHING_S`) before the actuator inversion."""
        m = tracker.model
        ik_q, ik_d = joint_indices(m, ["ARTz", "ARRx", "ARRy"])
        roll_q = joint_indices(m, ["ARRz"])[0][0]
        data = tracker.ik_data
        posture = tracker.env.data.qpos[ik_q].copy()
        qref = np.repeat(tracker.env.data.qpos[None].copy(), len(palm), axis=0)
        for t in range(len(palm)):
            data.qpos[tracker.finger_qpos] = fingers[t]
            data.qpos[roll_q] = roll[t]
            q, _ = solve_ik(m, data, tracker.site, palm[t], ik_q, ik_d, posture)
            qref[t, ik_q] = q
            qref[t, roll_q] = roll[t]
            qref[t, tracker.finger_qpos] = fingers[t]
        # Muscle-like low-pass of the joint reference: without it the IK reference has corners (the slide at its
        # limit while the hand goes round the free edge, the fingers hooking in 0.08 s) that the feed-forward
        # turns into full-range swings of the command within a few steps (door-0.1: in every episode).
        qref = gaussian_filter1d(qref, REFERENCE_SMOOTHING_S / tracker.dt, axis=0, mode="nearest")
        return tracker.inverter.actions_for(qref, tracker.dt)
