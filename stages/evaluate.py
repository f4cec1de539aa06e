"""Stage `evaluate`: evaluate the trained agents of one task × method, every seed of `seeds`, by `evaluate.protocol`.

    python -m stages.evaluate --task door --method maq_iql

Each seed is evaluated on its own by `evaluate.protocol` (pipeline/evaluation.py), the seeds side by
side in forked processes, one per CPU core (a seed's evaluation is the same computation in any process,
so its outputs do not depend on how many run at once): paper, episode i of seed s uses env seed 200·s + i; paired, one episode
from each human test episode's start state; deterministic actions, the D4RL reward. Reads
models/agents/<task>/<method>/seed<s>/ (and models/codebooks/<task>/ for MAQ methods), the human
test split of data/prepared/<task>/ and data/references/<task>/references.json; writes
evaluations/<task>/<method>/seed<s>/ (episodes.parquet, trajectories.safetensors, and their paired_
twins, summary.json) and metrics/evaluate/<task>/<method>/seed<s>.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

from pipeline.artifacts.layout import Layout
from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.evaluation import run_evaluate
from pipeline.methods import METHODS, dag_methods
from pipeline.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--method", required=True, choices=dag_methods())
    args = parser.parse_args(argv)
    task, method = get_task(args.task).name, args.method
    params = load_params()
    processes = min(len(params.seeds), len(os.sched_getaffinity(0)))
    evaluate = partial(evaluate_seed, task, method, cfg=params.evaluate)
    if processes == 1:
        lines = [evaluate(seed) for seed in params.seeds]
    else:  # fork: the children inherit the imports and the pinned numerics (pipeline/numerics.py)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            lines = list(pool.map(evaluate, params.seeds))
    print("\n".join(lines))


def evaluate_seed(task: str, method: str, seed: int, cfg) -> str:
    """Evaluate one seed's agent and write its outputs; returns the line the stage prints for it."""
    layout = Layout()
    s = run_evaluate(
        task, method, seed, cfg,
        agent_dir=layout.agent(task, method, seed),
        codebook_dir=layout.codebook(task) if METHODS[method].macro else None,
        prepared_dir=layout.prepared(task),
        references_path=layout.references_file(task),
        out_dir=layout.evaluation(task, method, seed),
        metrics_path=layout.evaluate_metrics(task, method, seed),
    )
    shown = {"normalized score": "normalized_score_mean", "success": "success_rate", "DTW similarity": "dtw_state_mean_similarity",
             "paired DTW similarity": "paired_dtw_state_similarity", "discriminator AUC": "discriminator_auc", "jerk ratio": "action_jerk_ratio"}
    return (f"evaluate {task}/{method}/seed{seed}: " + ", ".join(f"{name} {s[key]:.2f}" for name, key in shown.items() if s.get(key) is not None))


if __name__ == "__main__":
    run_stage(main)
