"""Stage `finetune`: train one agent (task × method × seed) on the task's demonstrations.

    python -m stages.finetune --task door --method maq_iql --seed 1

Reads params.yaml `finetune` and `agents.<method>`, data/prepared/<task>/ and (MAQ methods)
models/codebooks/<task>/; writes models/agents/<task>/<method>/seed<s>/ (config.json,
model.safetensors, README.md), the learning curve plots/finetune/<task>/<method>/seed<s>.csv and
metrics/finetune/<task>/<method>/seed<s>.json. Resumable from .checkpoints/finetune/… (outside the
DVC outs); the checkpoint is removed when the run completes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.agents import AGENTS
from pipeline.agents.finetune import run_finetune
from pipeline.config import load_params
from pipeline.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--method", required=True, choices=[m for m in AGENTS if m != "dsac"])
    parser.add_argument("--seed", required=True, type=int)
    args = parser.parse_args(argv)
    task, method, seed = get_task(args.task).name, args.method, args.seed
    params = load_params()
    run = Path(task) / method / f"seed{seed}"
    result = run_finetune(
        task, method, seed, params.finetune, getattr(params.agents, method),
        prepared_dir=Path("data/prepared") / task,
        codebook_dir=Path("models/codebooks") / task if AGENTS[method].macro else None,
        out_dir=Path("models/agents") / run,
        curve_path=Path("plots/finetune") / run.with_suffix(".csv"),
        metrics_path=Path("metrics/finetune") / run.with_suffix(".json"),
        checkpoint_dir=Path(".checkpoints/finetune") / run,
    )
    m = result.metrics
    print(f"finetune {task}/{method}/seed{seed}: {m['env_steps']} env steps, {m['offline_updates']} offline + "
          f"{m['online_updates']} online updates, final curve return {m['final_eval_return']:.1f} "
          f"(normalized {m['final_eval_normalized_score']:.1f}, success {m['final_eval_success_rate']:.2f}), {m['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
