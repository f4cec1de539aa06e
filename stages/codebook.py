"""Stage `codebook`: distill a task's prepared demonstrations into a VQ-VAE macro-action codebook.

    python -m stages.codebook --task door

Reads params.yaml `codebook` and data/prepared/<task>/; writes models/codebooks/<task>/
(config.json, model.safetensors, README.md), metrics/codebook/<task>.json and the per-epoch
training curve plots/codebook/<task>/ (a DVCLive log, written epoch by epoch). Resumable: checkpoints
go to .checkpoints/codebook/<task>/ (outside the DVC outs, so `dvc repro` does not delete them) and
are removed when the run completes.

With `codebook.source: hub:<repo>@<revision>` the stage pulls that pretrained codebook instead
(pin a commit sha: its weights hash then lands in dvc.lock), measures it on this task's windows
and writes the same outputs.
"""

from __future__ import annotations

import argparse

from pipeline.artifacts.layout import Layout
from pipeline.codebook.run import fetch_codebook, run_codebook
from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.tasks import get_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    task = get_task(parser.parse_args(argv).task).name
    params = load_params()
    cfg = params.codebook
    layout = Layout()
    if cfg.source != "train":
        codebook, m = fetch_codebook(
            task, cfg.source,
            prepared_dir=layout.prepared(task),
            out_dir=layout.codebook(task),
            metrics_path=layout.codebook_metrics(task),
            curve_dir=layout.codebook_curve(task),
        )
        print(f"codebook {task}: pulled {cfg.source} (H={codebook.H} K={codebook.K}, sha256 {m['codebook_sha256'][:12]}): "
              f"test MSE {m['test_mse']:.4f}, ratio {m['test_mse_ratio']:.2f}, {m['test_used_codes']}/{codebook.K} codes used")
        return
    result, m = run_codebook(
        task,
        cfg,
        prepared_dir=layout.prepared(task),
        out_dir=layout.codebook(task),
        metrics_path=layout.codebook_metrics(task),
        curve_dir=layout.codebook_curve(task),
        checkpoint_dir=layout.checkpoints("codebook", task),
        checkpoint_every=params.runtime.codebook_checkpoint_every,
    )
    resumed = f", resumed at epoch {result.resumed_from}" if result.resumed_from else ""
    print(
        f"codebook {task}: H={cfg.H} K={cfg.K} test MSE {m['test_mse']:.4f} (mean-macro baseline {m['test_baseline_mse']:.4f}, "
        f"ratio {m['test_mse_ratio']:.2f}), {m['test_used_codes']}/{cfg.K} codes used, perplexity {m['test_perplexity']:.1f}, "
        f"{m['train_seconds']:.0f} s{resumed}, sha256 {m['codebook_sha256'][:12]}"
    )


if __name__ == "__main__":
    run_stage(main)
