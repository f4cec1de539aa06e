"""Stage `report`: aggregate the evaluated seeds and tasks into tables, plots, videos and headline metrics.

    python -m stages.report

Reads params `tasks`, `methods` (baselines, then MAQ), `seeds` and `report.*`, the evaluations/, plots/finetune/, plots/codebook/ and
data/references/ of every listed run (data/prepared/ for videos); writes reports/ (README.md, one
CSV per task, curves/<task>.csv, codebook_curves.csv, plots/*.png, videos/*.mp4), evaluation_results/agent_performance_<env>.csv and metrics/summary.json.
"""

from __future__ import annotations

import argparse

from pipeline.artifacts.layout import Layout
from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.report import make_report


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    params = load_params()
    tasks, methods, seeds = params.tasks, params.methods.all, params.seeds
    written = make_report(tasks, methods, seeds, params.report, Layout())
    print(
        f"report: {len(tasks)} tasks × {len(methods)} methods × {len(seeds)} seeds → "
        f"{len(written)} files (reports/README.md, evaluation_results/, metrics/summary.json)"
    )


if __name__ == "__main__":
    run_stage(main)
