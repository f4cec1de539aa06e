"""Benchmark of the synthetic human demonstrator, per task, over many unseen seeds.

    OMP_NUM_THREADS=1 nice -n 10 python -m pipeline.benchmarks.demonstrator [--seeds 100] [--first-seed 1000]
        [--tasks door relocate hammer pen]

Per task, over `--seeds` episodes (seeds first_seed, first_seed+1, …, none of them used to tune
the demonstrator), it prints:
- success rate, raw: the success flag on the final step (the MAQ evaluation rule);
- success rate, D4RL rule: success on more than `task.success_hold_steps` steps;
- success rate of the zero action (all-zero actions, i.e. every actuator at mid-range) on the
  same seeds, the floor a demonstrator has to clear (pen: the pen sometimes ends near a goal);
- mean steps to first success (over successful episodes);
- mean squared action jerk (third difference of the actions per step, averaged over steps and
  action dims), the same for uniform random actions in [−1, 1], and their ratio;
- the share of episodes with a bang-bang action dim (`bang_bang_dims`: a swing from beyond ±0.9
  to beyond ∓0.9 within 5 steps), and the dims it happens on;
- generation time per episode (simulation + planning, one process).
A task without a demonstrator is skipped with a note.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from tqdm import tqdm

from pipeline.tasks import TASKS, get_task


def mean_squared_jerk(actions: np.ndarray) -> float:
    """Mean over steps and dims of the squared third finite difference of actions (T, A), per step³."""
    actions = np.asarray(actions, dtype=np.float64)
    if len(actions) < 4:
        raise ValueError("need at least 4 actions to take a third difference")
    return float(np.mean(np.diff(actions, n=3, axis=0) ** 2))


def bang_bang_dims(actions: np.ndarray, level: float = 0.9, within: int = 5) -> list[int]:
    """Action dims that swing from one bound to the other — beyond ±`level`, then beyond ∓`level`
    no more than `within` steps later. No person drives a joint like that; a saturated
    feed-forward (a move too fast for the actuator) does."""
    actions = np.asarray(actions)
    dims = []
    for d in range(actions.shape[1]):
        high, low = actions[:, d] > level, actions[:, d] < -level
        for t in np.flatnonzero(high | low):
            later = slice(t + 1, t + 1 + within)
            if (low[later] if high[t] else high[later]).any():
                dims.append(d)
                break
    return dims


class ZeroPolicy:
    """All-zero actions: every actuator held at mid-range."""

    def __init__(self, task: str):
        self.action_dim = get_task(task).action_dim

    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(self.action_dim, dtype=np.float32)


def zero_action_success(task: str, seeds: int, first_seed: int) -> float:
    """Final-step success rate of all-zero actions over the same seeds."""
    from pipeline.evaluation import rollout

    episodes = rollout(task, ZeroPolicy(task), list(range(first_seed, first_seed + seeds)), progress=False)
    return float(np.mean([episode.success[-1] for episode in episodes]))


def benchmark_task(task: str, seeds: int, first_seed: int) -> dict:
    from pipeline.demonstrator.dataset import demonstration_env, run_episode

    spec = get_task(task)
    env = demonstration_env(task)
    final, held, first, jerk, random_jerk, bang_bang = [], [], [], [], [], []
    rng = np.random.default_rng(first_seed)
    start = time.perf_counter()
    for seed in tqdm(range(first_seed, first_seed + seeds), desc=f"bench {task}", unit="ep"):
        episode = run_episode(task, env, seed)
        success = episode["success"]
        final.append(bool(success[-1]))
        held.append(int(success.sum()) > spec.success_hold_steps)
        if success.any():
            first.append(int(np.argmax(success)) + 1)
        jerk.append(mean_squared_jerk(episode["actions"]))
        bang_bang.append(bang_bang_dims(episode["actions"]))
        random_jerk.append(mean_squared_jerk(rng.uniform(-1, 1, size=episode["actions"].shape)))
    seconds = time.perf_counter() - start
    env.close()
    return {
        "task": task,
        "episodes": seeds,
        "success_final": float(np.mean(final)),
        "success_held": float(np.mean(held)),
        "success_zero_action": zero_action_success(task, seeds, first_seed),
        "steps_to_success": float(np.mean(first)) if first else float("nan"),
        "jerk": float(np.mean(jerk)),
        "random_jerk": float(np.mean(random_jerk)),
        "jerk_ratio": float(np.mean(random_jerk) / np.mean(jerk)),
        "bang_bang_episodes": float(np.mean([bool(dims) for dims in bang_bang])),
        "bang_bang_dims": sorted({d for dims in bang_bang for d in dims}),
        "seconds_per_episode": seconds / seeds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=1000, help="first seed (unseen in tuning)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from pipeline.demonstrator import DEMONSTRATORS

    rows = []
    for task in args.tasks:
        if task not in DEMONSTRATORS:
            print(f"{task}: skipped — no synthetic demonstrator yet (tasks with one: {', '.join(sorted(DEMONSTRATORS))})")
            continue
        rows.append(benchmark_task(task, args.seeds, args.first_seed))
    header = (
        f"{'task':<9} {'eps':>4} {'succ@end':>8} {'succ>hold':>9} {'zero act':>8} {'steps→succ':>10} "
        f"{'jerk':>10} {'rand jerk':>9} {'ratio':>7} {'s/ep':>6} {'bang-bang':>9}  dims"
    )
    print(header)
    for r in rows:
        print(
            f"{r['task']:<9} {r['episodes']:>4} {r['success_final']:>8.1%} {r['success_held']:>9.1%} "
            f"{r['success_zero_action']:>8.1%} "
            f"{r['steps_to_success']:>10.1f} {r['jerk']:>10.3g} {r['random_jerk']:>9.3f} {r['jerk_ratio']:>7.0f} "
            f"{r['seconds_per_episode']:>6.2f} {r['bang_bang_episodes']:>9.0%}  {r['bang_bang_dims']}"
        )


if __name__ == "__main__":
    main()
