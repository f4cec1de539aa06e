"""Synthetic human demonstrator for the Adroit tasks: a stand-in for human data, not human data.

The D4RL human demonstrations cannot be downloaded on an offline machine, so the pipeline can
generate its own demonstrations from a model of human motor control:

- `minjerk`     minimum-jerk movement profiles between keyframes (Flash & Hogan);
- `ik`          damped-least-squares inverse kinematics with an active set for joint limits;
- `actuation`   actuator inversion + inverse-dynamics feed-forward: joint references → actions;
- `variability` per-episode human variability (reaction time, timing, scatter, tremor, drift);
- `base`        the demonstrator/policy interface and the shared hand-tracking pipeline;
- one module per task (`door`, `hammer`, `pen`, `relocate`) that plans the task in object coordinates
  (pen: with sampling-based planning over minimum-jerk keyframes, the simulator as the model);
- `dataset`     runs the demonstrator and writes a Minari dataset labelled synthetic.

`DEMONSTRATORS` maps a task name to its demonstrator; `get_demonstrator` raises a clear error
for a task without one. To add a task, write its module and register it here.
"""

from __future__ import annotations

from pipeline.demonstrator.base import Demonstrator, Policy
from pipeline.demonstrator.door import DoorDemonstrator
from pipeline.demonstrator.hammer import HammerDemonstrator
from pipeline.demonstrator.pen import PenDemonstrator
from pipeline.demonstrator.relocate import RelocateDemonstrator

DEMONSTRATORS: dict[str, Demonstrator] = {
    "relocate": RelocateDemonstrator(),
    "door": DoorDemonstrator(),
    "hammer": HammerDemonstrator(),
    "pen": PenDemonstrator(),
}


def get_demonstrator(task: str) -> Demonstrator:
    """The synthetic demonstrator of `task`; the error names the tasks that have one."""
    try:
        return DEMONSTRATORS[task]
    except KeyError:
        raise KeyError(
            f"no synthetic demonstrator for task {task!r}; tasks with one: {', '.join(sorted(DEMONSTRATORS))}"
        ) from None


__all__ = ["DEMONSTRATORS", "Demonstrator", "Policy", "get_demonstrator"]
