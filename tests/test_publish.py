"""Publishing through the loopback Hub: staged cards carry the evaluation, a pushed codebook pulled by
revision is bit-identical and drives the finetune stage, and nothing is pushed unless asked."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipeline.codebook import Codebook
from pipeline.codebook.run import fetch_codebook
from pipeline.config import load_params
from pipeline.evaluation import run_evaluate, run_references
from pipeline.hub import HubError, pull_artifact, split_front_matter
from pipeline.publish import code_revision, run_publish, stage_all
from tests.test_finetune import REPO, finetune, project  # noqa: F401  (project is a fixture)
from tests.test_hub import file_hashes, hub, online  # noqa: F401  (fixtures)

METHODS = ("sac", "maq_dsac")


@pytest.fixture(scope="module")
def evaluated(project):  # noqa: F811
    """The tiny project with a sac and a maq_dsac agent trained and evaluated (seed 1), laid out as the DAG does."""
    root = project / "dag"
    (root / "data").mkdir(parents=True)
    shutil.copytree(project / "prepared", root / "data/prepared/door")
    (root / "data/prepared/door/README.md").write_text("# Prepared demonstrations: door\n\nTest fixture (smooth proxy episodes).\n")
    shutil.copytree(project / "codebook", root / "models/codebooks/door")
    cfg = replace(load_params(REPO / "params.yaml").evaluate, episodes=1, reference_episodes=1)
    run_references("door", cfg, root / "data/prepared/door", root / "data/references/door/references.json", progress=False)
    for method in METHODS:
        finetune(project, method, f"publish-{method}")
        shutil.copytree(project / "runs" / f"publish-{method}" / "agents" / "seed1", root / f"models/agents/door/{method}/seed1")
        run_evaluate("door", method, 1, cfg, agent_dir=root / f"models/agents/door/{method}/seed1",
                     codebook_dir=root / "models/codebooks/door" if method.startswith("maq") else None,
                     prepared_dir=root / "data/prepared/door", references_path=root / "data/references/door/references.json",
                     out_dir=root / f"evaluations/door/{method}/seed1", metrics_path=root / f"metrics/{method}.json", progress=False)
    return root


def dag_params(push: bool):
    params = load_params(REPO / "params.yaml")
    methods = replace(params.methods, baselines=("sac",), maq=("maq_dsac",))
    return replace(params, tasks=("door",), methods=methods, seeds=(1,), hub=replace(params.hub, push=push, namespace="maq-test"))


def test_staged_cards_carry_metrics_in_valid_yaml(evaluated):
    staged = stage_all(["door"], METHODS, [1], prepared_root=evaluated / "data/prepared", codebooks_root=evaluated / "models/codebooks",
                       agents_root=evaluated / "models/agents", evaluations_root=evaluated / "evaluations",
                       reports_dir=evaluated / "reports", staging=evaluated / "models/publish")
    assert [s.repo_name for s in staged] == ["maq-door-demos", "maq-door-codebook", "maq-door-sac-seed1", "maq-door-maq_dsac-seed1"]
    codebook_hash = Codebook.from_pretrained(evaluated / "models/codebooks/door").hash
    dataset, staged = staged[0], staged[1:]
    front, _ = split_front_matter((dataset.directory / "README.md").read_text())
    assert front["task_categories"] == ["reinforcement-learning"] and "door" in front["tags"]
    assert file_hashes(dataset.directory)["train.safetensors"] == file_hashes(evaluated / "data/prepared/door")["train.safetensors"]
    for item in staged:
        front, body = split_front_matter((item.directory / "README.md").read_text())
        assert yaml.safe_load(yaml.safe_dump(front)) == front and front["library_name"] == "maq-hub"
        result = front["model-index"][0]["results"][0]
        values = {m["type"]: m["value"] for m in result["metrics"]}
        assert "reproduce" in body and "code_revision" not in front  # stamped on push: staging is revision-free
        if item.kind == "agent":
            method = item.repo_name.split("-")[2]
            summary = json.loads((evaluated / f"evaluations/door/{method}/seed1/summary.json").read_text())
            assert values["normalized_score"] == summary["normalized_score_mean"]
            assert values["dtw_similarity"] == summary["dtw_state_mean_similarity"]
            assert {"success_rate", "w1_similarity"} <= values.keys() and method in front["tags"]
        else:
            assert front["codebook_sha256"] == codebook_hash and {"H", "K"} <= front.keys() and "vq-vae" in front["tags"]
            assert values["test_mse_ratio"] > 0
        # the weights are the run's, byte for byte
        src = evaluated / ("models/codebooks/door" if item.kind == "codebook" else f"models/agents/door/{method}/seed1")
        assert file_hashes(item.directory)["model.safetensors"] == file_hashes(src)["model.safetensors"]


def test_publish_pushes_only_when_asked(evaluated, hub, online):  # noqa: F811
    record = run_publish(dag_params(push=False), root=evaluated)
    assert record["pushed"] is False and hub.requests == []
    record = run_publish(dag_params(push=True), root=evaluated)
    assert [c["repo_id"] for c in record["commits"]] == ["maq-test/maq-door-demos", "maq-test/maq-door-codebook", "maq-test/maq-door-sac-seed1", "maq-test/maq-door-maq_dsac-seed1"]
    assert json.loads((evaluated / "models/publish/published.json").read_text())["commits"] == record["commits"]
    demos = record["commits"][0]
    assert demos["repo_type"] == "dataset"
    pulled = pull_artifact(demos["pull"], store=evaluated / "pulled", repo_type="dataset", cache_dir=evaluated / "hf-cache")
    assert file_hashes(pulled) == file_hashes(evaluated / "models/publish/maq-door-demos")
    front, body = split_front_matter((pulled / "README.md").read_text())
    assert front["code_revision"] == code_revision() and body.endswith(f"- code revision: `{code_revision()}`\n")


def test_pulled_codebook_is_bit_identical_and_drives_finetune(evaluated, project, hub, online, tmp_path):  # noqa: F811
    record = run_publish(dag_params(push=True), root=evaluated)
    spec = next(c["pull"] for c in record["commits"] if c["kind"] == "codebook")
    pulled = pull_artifact(spec, store=tmp_path / "store", cache_dir=tmp_path / "cache")
    assert file_hashes(pulled) == file_hashes(evaluated / "models/publish/maq-door-codebook")

    out = tmp_path / "fresh" / "models/codebooks/door"
    codebook, metrics = fetch_codebook("door", spec, project / "prepared", out, tmp_path / "m.json", tmp_path / "p.csv", store=tmp_path / "store")
    assert codebook.hash == Codebook.from_pretrained(evaluated / "models/codebooks/door").hash == metrics["codebook_sha256"]
    assert file_hashes(out) == file_hashes(pulled)
    result = finetune(project, "maq_dsac", "from-pulled-codebook", codebook_dir=out)
    assert result.metrics[0]["env_steps"] == 400
    config = json.loads((project / "runs" / "from-pulled-codebook" / "agents" / "seed1" / "config.json").read_text())
    assert config["codebook_hash"] == codebook.hash

    with pytest.raises(ValueError, match="not 'relocate'"):
        fetch_codebook("relocate", spec, project / "prepared", tmp_path / "x", tmp_path / "m.json", tmp_path / "p.csv", store=tmp_path / "store")


def test_pulling_a_codebook_offline_without_cache_fails_fast(project, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="offline"):
        fetch_codebook("door", "hub:maq-test/maq-door-codebook@main", project / "prepared", tmp_path / "out",
                       tmp_path / "m.json", tmp_path / "p.csv", store=tmp_path / "store")
    assert not (tmp_path / "out").exists()
