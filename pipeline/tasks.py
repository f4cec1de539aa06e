"""The task registry: the four Adroit hand tasks of D4RL, as simulated by gymnasium-robotics 1.4.2.

One `Task` per task holds everything the pipeline needs to know about it: the env id, the
observation and action sizes, the episode horizon and termination, the success rule, the D4RL
reference returns used to normalize scores, and the Minari id of the human demonstrations.

Episodes follow D4RL's protocol, for which its reference scores were measured: 200 steps on door,
hammer and relocate; on pen 100 steps, ending early when the pen drops (`drop_height`), as
D4RL's `pen-v0` and the official MAQ evaluation do. gymnasium-robotics' `AdroitHandPen-v1` runs
200 steps and never terminates; there a uniform-random agent scores −24 normalized instead of ≈ 0.
Human demonstrations are longer than pen's episodes (D4RL's pen-human: 200 steps; `demo_horizon`):
they are recorded at 200 steps, and evaluation compares agents with their first `horizon` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTROL_DT = 0.01  # seconds per env step on all four tasks: 5 MuJoCo steps of 2 ms (`env.unwrapped.dt`)


@dataclass(frozen=True)
class Task:
    name: str
    env_id: str
    obs_dim: int  # S
    action_dim: int  # A
    horizon: int  # steps before `make_env`'s env truncates: D4RL's protocol, 100 for pen, 200 for the others
    drop_height: float | None  # D4RL's pen: the episode terminates when the object's centre falls below this (m)
    success_rule: str  # what `info["success"]` means, in words
    ref_min_score: float  # D4RL random-policy return
    ref_max_score: float  # D4RL expert return
    human_dataset_id: str  # Minari id of the teleoperated human demonstrations
    success_hold_steps: int  # D4RL's own rule: success on more than this many steps
    hand_joints: int  # obs[:hand_joints] are the hand's (and arm's) joint angles, rad or m
    object_pose: tuple[int, ...]  # obs indices of the manipulated object's pose (paired protocol: final pose distance)
    demo_horizon: int = 200  # steps of a human demonstration (D4RL's human data; gymnasium-robotics' own limit)

    @property
    def synthetic_dataset_id(self) -> str:
        """Minari id of this project's synthetic stand-in for the human demonstrations."""
        return f"synthetic/{self.name}/human-v0"

    def normalized_score(self, episode_return: float | np.ndarray) -> float | np.ndarray:
        """D4RL normalized score: 0 = random policy, 100 = expert."""
        return 100.0 * (episode_return - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


TASKS: dict[str, Task] = {
    task.name: task
    for task in [
        Task(
            name="door",
            env_id="AdroitHandDoor-v1",
            obs_dim=39,
            action_dim=28,
            horizon=200,
            drop_height=None,
            success_rule="door hinge angle >= 1.35 rad",
            ref_min_score=-56.512833,
            ref_max_score=2880.5693087298737,
            human_dataset_id="D4RL/door/human-v2",
            success_hold_steps=25,
            hand_joints=27,
            object_pose=(27, 28),  # latch and hinge angles
        ),
        Task(
            name="hammer",
            env_id="AdroitHandHammer-v1",
            obs_dim=46,
            action_dim=26,
            horizon=200,
            drop_height=None,
            success_rule="nail head within 1 cm of the goal",
            ref_min_score=-274.856578,
            ref_max_score=12794.134825156867,
            human_dataset_id="D4RL/hammer/human-v2",
            success_hold_steps=25,
            hand_joints=26,
            object_pose=(26, 36, 37, 38, 39, 40, 41),  # nail slide, hammer position and Euler angles
        ),
        Task(
            name="pen",
            env_id="AdroitHandPen-v1",
            obs_dim=45,
            action_dim=24,
            horizon=100,
            drop_height=0.075,
            success_rule="pen within 0.075 of the goal and orientation cosine > 0.95",
            ref_min_score=96.262799,
            ref_max_score=3076.8331017826877,
            human_dataset_id="D4RL/pen/human-v2",
            success_hold_steps=20,
            hand_joints=24,
            object_pose=(24, 25, 26, 33, 34, 35),  # pen position and unit axis
        ),
        Task(
            name="relocate",
            env_id="AdroitHandRelocate-v1",
            obs_dim=39,
            action_dim=30,
            horizon=200,
            drop_height=None,
            success_rule="ball within 0.1 of the target",
            ref_min_score=-6.425911,
            ref_max_score=4233.877797728884,
            human_dataset_id="D4RL/relocate/human-v2",
            success_hold_steps=25,
            hand_joints=30,
            object_pose=(36, 37, 38),  # ball position relative to the target
        ),
    ]
}


def get_task(name: str) -> Task:
    """Look a task up by name, with an error that lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
