"""Publishing: stage the prepared datasets, codebooks and agents with Hub cards, and push them when asked.

The `publish` stage always stages: every prepared dataset, codebook and agent of the run is copied to
`models/publish/<repo name>/` with its card (pipeline.artifacts.cards) linked to the demos dataset
repo (`datasets: <hub.namespace>/maq-<task>-demos`); an agent's card carries `model-index` results from
the evaluation (this seed's, and the seed aggregate with its CI from the report), and its repo gets
the report's video of it as `replay.mp4` when the report rendered one. With `hub.push: true` each
staged directory is then pushed to `<hub.namespace>/<repo name>` (pipeline.hub, one commit per repo)
and the commits are recorded in `models/publish/published.json`; with `hub.push: false` (the
default) nothing touches the network. The code revision is stamped into a card when it is pushed,
not when it is staged: the staged directory depends on its inputs only, so a fresh clone's
`dvc repro` reproduces its hash.

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

from pipeline.artifacts import cards
from pipeline.artifacts.layout import Layout
from pipeline.hub import push_artifact, validate_dir
from pipeline.io import write_json_atomic
from pipeline.tasks import get_task


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


def report_row(layout: Layout, task: str, method: str) -> dict | None:
    """The report's aggregate row (IQM, CI, seeds) of a task × method, if the report has it."""
    path = layout.report_table(task)
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


def stage_dataset(task: str, prepared_dir: Path, staging: Path) -> Staged:
    """Copy a prepared dataset (train/test split, meta.json) with its dataset card."""
    name = cards.demos_repo_name(task)
    dest = staging / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for path in sorted(prepared_dir.iterdir()):
        if path.suffix in (".safetensors", ".json"):
            shutil.copy2(path, dest / path.name)
    (dest / "README.md").write_text(cards.publish_dataset_card(prepared_dir / "README.md", f"`dvc repro prepare@{task}`"))
    return Staged(name, dest, "dataset")


def stage_codebook(task: str, codebook_dir: Path, demos_repo: str, staging: Path) -> Staged:
    """Copy a codebook with its card (model-index: its reconstruction metrics), linked to the demos repo."""
    name = f"maq-{task}-codebook"
    _copy_artifact(codebook_dir, staging / name)
    (staging / name / "README.md").write_text(
        cards.publish_codebook_card(codebook_dir / "README.md", demos_repo=demos_repo, reproduce=f"`dvc repro codebook@{task}`"))
    return Staged(name, staging / name, "codebook")


def stage_agent(task: str, method: str, seed: int, agent_dir: Path, summary: dict, report: dict | None, demos_repo: str,
                staging: Path, video: Path | None = None) -> Staged:
    """Copy an agent with a card whose model-index holds its evaluation (and the seed aggregate), and
    its replay video as `replay.mp4` if `video` exists."""
    name = f"maq-{task}-{method}-seed{seed}"
    dest = staging / name
    _copy_artifact(agent_dir, dest)
    replay = video is not None and video.is_file()
    if replay:
        shutil.copy2(video, dest / cards.REPLAY_FILE)
    (dest / "README.md").write_text(cards.publish_agent_card(
        agent_dir / "README.md", env_id=get_task(task).env_id, summary=summary, report=report, demos_repo=demos_repo, replay=replay,
        reproduce=f"`dvc repro evaluate@{task}-{method}` (or `evaluate_maq@…` for MAQ methods; every seed of `seeds`)",
    ))
    return Staged(name, dest, "agent")


def stage_all(tasks, methods, seeds, *, namespace: str, layout: Layout) -> list[Staged]:
    """Stage every prepared dataset, codebook and agent of the run (read from `layout`) under `layout.publish`
    (emptied first); cards link `<namespace>/maq-<task>-demos`."""
    staging = layout.publish
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    staged = []
    for task in tasks:
        get_task(task)
        demos_repo = f"{namespace}/{cards.demos_repo_name(task)}"
        staged.append(stage_dataset(task, layout.prepared(task), staging))
        staged.append(stage_codebook(task, layout.codebook(task), demos_repo, staging))
        for method in methods:
            report = report_row(layout, task, method)
            for seed in seeds:
                summary_path = layout.evaluation(task, method, seed) / "summary.json"
                if not summary_path.is_file():
                    raise FileNotFoundError(f"no evaluation at {summary_path}; run `dvc repro` (evaluate) before publishing")
                summary = json.loads(summary_path.read_text())
                staged.append(stage_agent(task, method, seed, layout.agent(task, method, seed), summary, report, demos_repo, staging,
                                          video=layout.video(task, method, seed)))
    for item in staged:
        validate_dir(item.directory, item.repo_type)
    return staged


def push_all(staged: list[Staged], namespace: str, private: bool) -> list[dict]:
    """Stamp each staged card with the code revision, and push it to `<namespace>/<repo name>`; returns the commits."""
    revision = code_revision()
    pushed = []
    for item in staged:
        cards.stamp_code_revision(item.directory / "README.md", revision, item.repo_type)
        result = push_artifact(item.directory, f"{namespace}/{item.repo_name}", private=private, repo_type=item.repo_type,
                               commit_message=f"maq-hub publish {item.repo_name} ({revision[:12]})")
        pushed.append({"repo_id": result.repo_id, "kind": item.kind, "repo_type": item.repo_type, "commit_sha": result.commit_sha,
                       "pull": f"hub:{result.repo_id}@{result.commit_sha}"})
    return pushed


def run_publish(params, *, root: Path = Path(".")) -> dict:
    """Stage everything; push when `params.hub.push`. Writes models/publish/published.json."""
    layout = Layout(root)
    staged = stage_all(params.tasks, params.methods.all, params.seeds, namespace=params.hub.namespace, layout=layout)
    hub = params.hub
    record = {"pushed": hub.push, "namespace": hub.namespace, "staged": [s.repo_name for s in staged]}
    if hub.push:
        record["commits"] = push_all(staged, hub.namespace, hub.private)
    write_json_atomic(layout.publish / "published.json", record)
    return record
