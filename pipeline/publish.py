"""Publishing: stage codebooks and agents with Hub model cards, and push them when asked.

The `publish` stage always stages: every codebook and agent of the run is copied to
`models/publish/<repo name>/` with a README.md whose YAML front matter carries `library_name`,
tags, the dataset and `model-index` results from the evaluation (seed aggregates with their CI
from the report). With `hub.push: true` each staged directory is then pushed to
`<hub.namespace>/<repo name>` (pipeline.hub, one commit per repo) and the commits are recorded in
`models/publish/published.json`; with `hub.push: false` (the default) nothing touches the network.
The code revision is stamped into a card when it is pushed, not when it is staged: the staged
directory depends on its inputs only, so a fresh clone's `dvc repro` reproduces its hash.

Repo names: `maq-<task>-codebook` and `maq-<task>-<method>-seed<s>` (models), and
`maq-<task>-demos` (a dataset repo: the prepared train/test split with its dataset card).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.hub import make_card_front_matter, push_artifact, render_card, split_front_matter, validate_dir
from pipeline.io import write_json_atomic, write_text_atomic
from pipeline.tasks import get_task

# Evaluation numbers that go into an agent card's model-index: (summary key, metric type, report column).
AGENT_METRICS = (
    ("normalized_score_mean", "normalized_score", "normalized_score"),
    ("success_rate", "success_rate", "success_rate"),
    ("dtw_state_mean_similarity", "dtw_similarity", "dtw_similarity"),
    ("w1_state_similarity", "w1_similarity", "w_similarity"),
)


@dataclass(frozen=True)
class Staged:
    repo_name: str
    directory: Path
    kind: str  # codebook | agent | dataset

    @property
    def repo_type(self) -> str:
        return "dataset" if self.kind == "dataset" else "model"


def code_revision() -> str:
    """The git commit of the code, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_id(meta: dict) -> str:
    """The demonstrations' dataset id for the card: the Minari id, or the source string."""
    source = meta["source"]
    return source.split(":", 1)[1] if source.startswith("minari:") else source


def report_row(reports_dir: Path, task: str, method: str) -> dict | None:
    """The report's aggregate row (IQM, CI, seeds) of a task × method, if the report has it."""
    path = reports_dir / f"{task}.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        return next((row for row in csv.DictReader(f) if row["method"] == method), None)


def _copy_artifact(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(src / name, dest / name)


def provenance(reproduce: str) -> str:
    """A card's closing Provenance section; `stamp_code_revision` adds the revision line when the card is pushed."""
    return f"\n## Provenance\n- reproduce: {reproduce} at the commit whose `dvc.lock` records this artifact\n"


def stage_dataset(task: str, prepared_dir: Path, meta: dict, staging: Path) -> Staged:
    """Copy a prepared dataset (train/test split, meta.json) with a Hub dataset card."""
    name = f"maq-{task}-demos"
    dest = staging / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for path in sorted(prepared_dir.iterdir()):
        if path.suffix in (".safetensors", ".json"):
            shutil.copy2(path, dest / path.name)
    synthetic = meta["source"] == "synthetic"
    front = {
        "pretty_name": f"MAQ hub {task} demonstrations" + (" (synthetic, not human)" if synthetic else ""),
        "tags": ["maq", "adroit", task, "demonstrations", *(["synthetic"] if synthetic else [])],
        "task_categories": ["reinforcement-learning"],
        "source": meta["source"],
        "source_sha256": meta["source_sha256"],
    }
    body = (prepared_dir / "README.md").read_text() + (
        "\n## Files\n- `train.safetensors`, `test.safetensors`: episodes as flat arrays with offsets "
        "(`pipeline.data.episodes.Episodes.load`)\n- `meta.json`: source, split and normalization statistics\n"
        + provenance(f"`dvc repro prepare@{task}`")
    )
    (dest / "README.md").write_text(render_card(front, body))
    return Staged(name, dest, "dataset")


def stage_codebook(task: str, codebook_dir: Path, meta: dict, staging: Path) -> Staged:
    """Copy a codebook with a card whose model-index holds its reconstruction metrics."""
    config = json.loads((codebook_dir / "config.json").read_text())
    front, body = split_front_matter((codebook_dir / "README.md").read_text())
    name = f"maq-{task}-codebook"
    metrics = front.get("metrics", {})
    card_front = make_card_front_matter(
        model_name=name, dataset=dataset_id(meta), task_type="macro-action-quantization", task_name="Macro action codebook",
        metrics=[{"name": k, "type": k, "value": v} for k, v in metrics.items()],
        tags=["vq-vae", task, "adroit", f"H{config['H']}", f"K{config['K']}"],
    )
    card_front.update({"H": config["H"], "K": config["K"], "codebook_sha256": config["weights_sha256"]})
    body += "\n" + provenance(f"`dvc repro codebook@{task}`")
    _copy_artifact(codebook_dir, staging / name)
    (staging / name / "README.md").write_text(render_card(card_front, body))
    return Staged(name, staging / name, "codebook")


def stage_agent(task: str, method: str, seed: int, agent_dir: Path, summary: dict, report: dict | None, meta: dict,
                staging: Path) -> Staged:
    """Copy an agent with a card whose model-index holds its evaluation (and the seed aggregate)."""
    config = json.loads((agent_dir / "config.json").read_text())
    name = f"maq-{task}-{method}-seed{seed}"
    metrics = []
    for key, metric_type, column in AGENT_METRICS:
        metric = {"name": f"{metric_type} (seed {seed}, {summary['episodes']} episodes)", "type": metric_type, "value": summary[key]}
        metrics.append(metric)
        if report is not None:
            metrics.append({
                "name": f"{metric_type} IQM over {report['n_seeds']} seeds, 95% CI "
                        f"[{float(report[f'{column}_ci_low']):.3g}, {float(report[f'{column}_ci_high']):.3g}]",
                "type": f"{metric_type}_iqm", "value": float(report[f"{column}_iqm"]),
            })
    front = make_card_front_matter(
        model_name=name, dataset=dataset_id(meta), metrics=metrics,
        tags=[task, method, "adroit", *(["vq-vae"] if config["codebook_hash"] else [])],
    )
    front.update({"method": method, "seed": seed, "codebook_sha256": config["codebook_hash"]})
    body = (agent_dir / "README.md").read_text()
    body += (
        f"\n## Evaluation\n\n{summary['episodes']} deterministic episodes, env seeds 200·{seed} + i, D4RL reward: "
        f"normalized score {summary['normalized_score_mean']:.1f}, success {summary['success_rate']:.2f} (final-step rule), "
        f"DTW similarity {summary['dtw_state_mean_similarity']:.2f}, W1 similarity {summary['w1_state_similarity']:.2f} "
        "(1 = human, 0 = random agent).\n"
        + provenance(f"`dvc repro evaluate@{task}-{method}` (or `evaluate_maq@…` for MAQ methods; every seed of `seeds`)")
    )
    _copy_artifact(agent_dir, staging / name)
    (staging / name / "README.md").write_text(render_card(front, body))
    return Staged(name, staging / name, "agent")


def stage_all(tasks, methods, seeds, *, prepared_root: Path, codebooks_root: Path, agents_root: Path,
              evaluations_root: Path, reports_dir: Path, staging: Path) -> list[Staged]:
    """Stage every codebook and agent of the run under `staging` (emptied first)."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    staged = []
    for task in tasks:
        get_task(task)
        meta = json.loads((prepared_root / task / "meta.json").read_text())
        staged.append(stage_dataset(task, prepared_root / task, meta, staging))
        staged.append(stage_codebook(task, codebooks_root / task, meta, staging))
        for method in methods:
            report = report_row(reports_dir, task, method)
            for seed in seeds:
                run = Path(task) / method / f"seed{seed}"
                summary_path = evaluations_root / run / "summary.json"
                if not summary_path.is_file():
                    raise FileNotFoundError(f"no evaluation at {summary_path}; run `dvc repro` (evaluate) before publishing")
                summary = json.loads(summary_path.read_text())
                staged.append(stage_agent(task, method, seed, agents_root / run, summary, report, meta, staging))
    for item in staged:
        validate_dir(item.directory, item.repo_type)
    return staged


def stamp_code_revision(card_path: Path, revision: str) -> None:
    """Add the code revision to a staged card: a `code_revision` key, and a line ending its `provenance` section.

    Staged cards carry no revision, so that `models/publish` is reproducible from a fresh clone (whose
    HEAD is the commit holding the lock, not the one the stage ran at). A pushed card is stamped."""
    front, body = split_front_matter(card_path.read_text())
    write_text_atomic(card_path, render_card({**front, "code_revision": revision}, f"{body.rstrip()}\n- code revision: `{revision}`"))


def push_all(staged: list[Staged], namespace: str, private: bool) -> list[dict]:
    """Stamp each staged card with the code revision, and push it to `<namespace>/<repo name>`; returns the commits."""
    revision = code_revision()
    pushed = []
    for item in staged:
        stamp_code_revision(item.directory / "README.md", revision)
        result = push_artifact(item.directory, f"{namespace}/{item.repo_name}", private=private, repo_type=item.repo_type,
                               commit_message=f"maq-hub publish {item.repo_name} ({revision[:12]})")
        pushed.append({"repo_id": result.repo_id, "kind": item.kind, "repo_type": item.repo_type, "commit_sha": result.commit_sha,
                       "pull": f"hub:{result.repo_id}@{result.commit_sha}"})
    return pushed


def run_publish(params, *, root: Path = Path(".")) -> dict:
    """Stage everything; push when `params.hub.push`. Writes models/publish/published.json."""
    staging = root / "models/publish"
    staged = stage_all(
        params.tasks, params.methods.all, params.seeds, prepared_root=root / "data/prepared",
        codebooks_root=root / "models/codebooks", agents_root=root / "models/agents",
        evaluations_root=root / "evaluations", reports_dir=root / "reports", staging=staging,
    )
    hub = params.hub
    record = {"pushed": hub.push, "namespace": hub.namespace, "staged": [s.repo_name for s in staged]}
    if hub.push:
        record["commits"] = push_all(staged, hub.namespace, hub.private)
    write_json_atomic(staging / "published.json", record)
    return record
