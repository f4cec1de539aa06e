"""Videos of evaluation episodes, rendered by replaying their stored actions.

The Adroit envs are deterministic: `reset(seed=env_seed)` followed by the stored actions reproduces
an episode exactly. Every replay is checked against the stored observations (`ReplayMismatch`
otherwise), so a video never shows something other than the episode that was measured.

Rendering is offscreen through EGL (`MUJOCO_GL=egl`, set here before mujoco is imported unless the
user chose a backend); on a machine without EGL, `RenderingUnavailable` says what to do. Videos are
H.264 mp4 written by imageio-ffmpeg (it ships its own ffmpeg binary).

Frames: `(T + 1, size, size, 3)` uint8 for an episode of T steps (the state after reset, then the
state after each action).

Render settings (`_RENDER_SETTINGS`): shadows and multisample anti-aliasing off. On the software EGL
of a CPU-only machine the Adroit scenes' defaults (a 4096² shadow map, 4× MSAA) cost 90 ms per
160-pixel frame; without them 7 ms (measured on door), and at video sizes the pictures differ
little. One render env is kept per (task, size) and process, because opening an EGL context
costs over a second.
"""

from __future__ import annotations

import hashlib
import logging
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.episodes import Episodes
from pipeline.envs import make_env
from pipeline.io import atomic_path
from pipeline.metrics import dtw_distance

logger = logging.getLogger(__name__)

REPLAY_ATOL = 1e-5  # largest |replayed obs - stored obs| accepted as the same episode
PLAYBACK_SPEED = 0.5  # Adroit runs at 100 steps/s, so an episode lasts 2 s; show it at half speed


class ReplayMismatch(RuntimeError):
    """Replaying the stored actions did not reproduce the stored observations."""


class RenderingUnavailable(RuntimeError):
    """No offscreen OpenGL context (EGL) could be opened for MuJoCo."""


@dataclass(frozen=True)
class EpisodeVideo:
    """One rendered episode and what it is."""

    frames: np.ndarray  # (T + 1, size, size, 3) uint8
    label: str


def _render(env) -> np.ndarray:
    try:
        return env.render()
    except Exception as exc:  # mujoco/PyOpenGL raise many types when EGL is missing
        raise RenderingUnavailable(
            f"could not render MuJoCo offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} ({type(exc).__name__}: {exc}). "
            "Install EGL (Debian: `apt-get install libegl1`) or turn videos off with `report.videos: false` in params.yaml."
        ) from exc


# One render env per (task, size) and process: reset(seed) makes each replay independent of the last.
_render_envs: dict[tuple[str, int], object] = {}


def render_env(task: str, size: int):
    """The task's env rendering `size`×`size` RGB frames with shadows and MSAA off (module docstring)."""
    key = (task, int(size))
    if key not in _render_envs:
        import mujoco

        env = make_env(task, render_mode="rgb_array", width=size, height=size)
        env.unwrapped.model.vis.quality.offsamples = 0  # read when the offscreen context is made, at the first render
        env.reset(seed=0)
        _render(env)
        scene = env.unwrapped.mujoco_renderer._get_viewer("rgb_array").scn  # gymnasium exposes no scene options
        scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        _render_envs[key] = env
    return _render_envs[key]


def replay_frames(task: str, env_seed: int, actions: np.ndarray, expected_obs: np.ndarray, size: int) -> np.ndarray:
    """Render an episode by replaying `actions` (T, A) from `reset(seed=env_seed)`.

    Before each step the env's observation must equal `expected_obs` (T, S) within REPLAY_ATOL, else
    `ReplayMismatch` names the first step that differs. Returns frames (T + 1, size, size, 3).
    """
    if len(actions) != len(expected_obs):
        raise ValueError(f"actions has {len(actions)} steps but expected_obs has {len(expected_obs)}")
    env = render_env(task, size)
    obs, _ = env.reset(seed=int(env_seed))
    frames = [_render(env)]
    for step, action in enumerate(actions):
        error = float(np.max(np.abs(obs - expected_obs[step])))
        if not error <= REPLAY_ATOL:
            raise ReplayMismatch(
                f"{task} episode with env seed {env_seed}: the replayed observation differs from the stored one "
                f"at step {step} (max |diff| {error:.3g} > {REPLAY_ATOL}); the stored actions do not reproduce it"
            )
        obs, *_ = env.step(action)
        frames.append(_render(env))
    return np.stack(frames)


def episode_frames(task: str, episodes: Episodes, index: int, size: int) -> np.ndarray:
    """Frames of episode `index` of `episodes`, whose `episode_ids` are env reset seeds."""
    steps = list(episodes.episode_slices())[index]
    return replay_frames(task, int(episodes.episode_ids[index]), episodes.actions[steps], episodes.obs[steps], size)


def closest_episode(obs: np.ndarray, candidates: Episodes) -> tuple[int, float]:
    """Index of the episode of `candidates` closest to `obs` (T, S) by DTW on states, and that distance."""
    distances = [dtw_distance(obs, candidates.obs[steps]) for steps in candidates.episode_slices()]
    best = int(np.argmin(distances))
    return best, float(distances[best])


def labelled(video: EpisodeVideo) -> np.ndarray:
    """The frames with the label written in their top-left corner. (T + 1, size, size, 3)"""
    font = ImageFont.load_default(size=max(8, video.frames.shape[1] // 20))
    out = []
    for frame in video.frames:
        image = Image.fromarray(frame)
        ImageDraw.Draw(image).text((3, 2), video.label, fill=(255, 255, 255), font=font)
        out.append(np.asarray(image))
    return np.stack(out)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two frame sequences (T, h, w, 3) and (U, h, w, 3) next to each other; the shorter one holds
    its last frame. Returns (max(T, U), h, 2w, 3)."""
    n = max(len(left), len(right))
    hold = lambda frames: np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])  # noqa: E731
    return np.concatenate([hold(left), hold(right)], axis=2)


# Each human episode is rendered once per process: (task, env seed, size, sha1 of its actions) -> frames.
_human_frames: dict[tuple[str, int, int, str], np.ndarray] = {}


def human_comparison(task: str, agent: EpisodeVideo, agent_obs: np.ndarray, human: Episodes, human_source: str,
                     size: int) -> tuple[np.ndarray, str]:
    """The agent's episode (frames of `agent`, states `agent_obs` (T, S)) next to the human test
    episode closest to it by DTW on states, and a note saying which one.

    Only synthetic demonstrations can be replayed (their episode ids are the demonstrator's env
    seeds); otherwise, or when the replay does not reproduce the stored episode, the agent is shown
    alone and the note (also logged) says why.
    """
    index, distance = closest_episode(agent_obs, human)
    episode_id = int(human.episode_ids[index])
    if human_source != "synthetic":
        note = f"agent alone: the human test episodes come from `{human_source}`, whose episode ids are not env seeds, so they cannot be replayed"
    else:
        try:
            actions = human.actions[list(human.episode_slices())[index]]
            key = (task, episode_id, size, hashlib.sha1(np.ascontiguousarray(actions).tobytes()).hexdigest())
            if key not in _human_frames:
                _human_frames[key] = episode_frames(task, human, index, size)
            human_video = EpisodeVideo(_human_frames[key], f"human test episode {episode_id}")
        except ReplayMismatch as exc:
            note = f"agent alone: the closest human test episode ({episode_id}) does not replay: {exc}"
        else:
            return side_by_side(labelled(agent), labelled(human_video)), f"next to human test episode {episode_id} (DTW on states {distance:.1f})"
    logger.warning("%s: %s", task, note)
    return labelled(agent), note


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write frames (T, h, w, 3) uint8 as an H.264 mp4, atomically."""
    import imageio_ffmpeg

    frames = np.asarray(frames, dtype=np.uint8)
    height, width = frames.shape[1:3]
    with atomic_path(path) as tmp:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), (width, height), fps=fps, output_params=["-f", "mp4"], macro_block_size=16, ffmpeg_log_level="error"
        )
        writer.send(None)  # start ffmpeg
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()


def playback_fps(task: str) -> float:
    """Frames per second that play the env's steps at PLAYBACK_SPEED × real time."""
    env = make_env(task)
    fps = float(env.unwrapped.metadata["render_fps"]) * PLAYBACK_SPEED
    env.close()
    return fps
