"""Stage `references`: the anchors of a task's human-likeness scores.

    python -m stages.references --task door

Similarity scores are 1 at human level and 0 at a random agent's level. This stage measures both
anchors per distance: uniform random actions on `evaluate.reference_episodes` seeded episodes, and
the human train episodes, each against the human test episodes of data/prepared/<task>/. Writes
data/references/<task>/references.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.evaluation import run_references
from pipeline.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    task = get_task(parser.parse_args(argv).task).name
    refs = run_references(task, load_params().evaluate, Path("data/prepared") / task, Path("data/references") / task / "references.json")
    print(f"references {task}: DTW on states random {refs['dtw_state_mean']['random']:.1f} / human {refs['dtw_state_mean']['human']:.1f}; "
          f"W1 on states random {refs['w1_state']['random']:.2f} / human {refs['w1_state']['human']:.2f}")


if __name__ == "__main__":
    run_stage(main)
