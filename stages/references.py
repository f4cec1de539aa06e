"""Stage `references`: the anchors of a task's human-likeness scores.

    python -m stages.references --task door

Similarity scores are 1 at human level and 0 at a random agent's level. This stage measures both
anchors per distance, by each protocol (`pipeline.evaluation`): paper, uniform random actions on
`evaluate.reference_episodes` seeded episodes and the human train episodes, each against the human
test episodes of data/prepared/<task>/; paired, the random and zero-action agents and another
"person" from each human test episode's start state; and the discriminator AUC of human test vs
human train episodes and of the random agent. Writes data/references/<task>/references.json.
"""

from __future__ import annotations

import argparse

from pipeline.artifacts.layout import Layout
from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.evaluation import run_references
from pipeline.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    task = get_task(parser.parse_args(argv).task).name
    refs = run_references(task, load_params().evaluate, Layout().prepared(task),
                          Layout().references_file(task))
    paper, paired, auc = refs["distances"], refs["paired"], refs["discriminator"]
    print(f"references {task}: DTW on states random {paper['dtw_state_mean']['random']:.1f} / human {paper['dtw_state_mean']['human']:.1f}; "
          f"W1 on states random {paper['w1_state']['random']:.2f} / human {paper['w1_state']['human']:.2f}")
    if paired is not None:
        print(f"references {task}: paired DTW on states random {paired['random']['dtw_state']:.1f} / zero {paired['zero']['dtw_state']:.1f} "
              f"/ another person {paired['human']['dtw_state']:.1f}")
    if auc["human_test_vs_train"]["discriminator_auc"] is not None:
        splits = auc["human_held_out_vs_rest"]
        print(f"references {task}: discriminator AUC human test vs train {auc['human_test_vs_train']['discriminator_auc']:.2f}"
              + (f" (held-out vs rest humans over {len(splits['aucs'])} splits: {splits['auc_mean']:.2f}, "
                 f"{splits['auc_min']:.2f}–{splits['auc_max']:.2f})" if splits else "")
              + f", random agent {auc['random']['discriminator_auc']:.2f}")


if __name__ == "__main__":
    run_stage(main)
