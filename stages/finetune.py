"""Stage `finetune`: train every seed of one task × method as one population, in one process.

    python -m stages.finetune --task door --method maq_iql

Reads params.yaml `seeds`, `finetune`, `agents.<method>` and (MAQ methods) `macro`, data/prepared/<task>/ and (MAQ
methods) models/codebooks/<task>/; writes, per seed s, models/agents/<task>/<method>/seed<s>/
(config.json, model.safetensors, README.md), the learning curve plots/finetune/<task>/<method>/seed<s>/ (a DVCLive
log, written point by point) and metrics/finetune/<task>/<method>/seed<s>.json. Resumable from .checkpoints/finetune/<task>/<method>/
(outside the DVC outs); the checkpoint is removed when the run completes.
"""

from __future__ import annotations

import argparse

from pipeline.artifacts.layout import Layout
from pipeline.agents.finetune import run_finetune
from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.methods import METHODS, dag_methods
from pipeline.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--method", required=True, choices=dag_methods())
    args = parser.parse_args(argv)
    task, method = get_task(args.task).name, args.method
    params = load_params()
    layout = Layout()
    results = run_finetune(
        task, method, params.seeds, params.finetune, getattr(params.agents, method),
        execute_steps=params.macro.execute_steps if METHODS[method].macro else None,
        prepared_dir=layout.prepared(task),
        codebook_dir=layout.codebook(task) if METHODS[method].macro else None,
        agents_dir=layout.agents(task, method),
        curves_dir=layout.curves(task, method),
        metrics_dir=layout.finetune_metrics(task, method),
        checkpoint_dir=layout.checkpoints("finetune", task, method),
        checkpoint_every=params.runtime.finetune_checkpoint_every,
    ).metrics
    for seed, m in zip(params.seeds, results):
        print(f"finetune {task}/{method}/seed{seed}: {m['env_steps']} env steps, {m['offline_updates']} offline + "
              f"{m['online_updates']} online updates, final curve return {m['final_eval_return']:.1f} "
              f"(normalized {m['final_eval_normalized_score']:.1f}, success {m['final_eval_success_rate']:.2f})")
    print(f"finetune {task}/{method}: {len(results)} seeds in one population, {results[0]['train_seconds']:.0f} s")


if __name__ == "__main__":
    run_stage(main)
