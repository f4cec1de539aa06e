"""Publishing through the loopback Hub: staged cards carry the evaluation, every artifact directory the
README names pushes, a pushed codebook or agent loaded by repo id and revision is bit-identical (and the
codebook drives the finetune stage), and nothing is pushed unless asked."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard

from pipeline.agents import load_agent
from pipeline.artifacts.cards import AGENT_METRICS, dataset_card
from pipeline.artifacts.layout import Layout
from pipeline.codebook import Codebook
from pipeline.codebook.run import fetch_codebook
from pipeline.config import load_params
from pipeline.evaluation import run_evaluate, run_references
from pipeline.hub import HubError, download_artifact, push_artifact, split_front_matter
from pipeline.publish import code_revision, run_publish, stage_all
from tests.test_finetune import REPO, finetune, project  # noqa: F401  (project is a fixture)
from tests.test_hub import file_hashes, hub, online  # noqa: F401  (fixtures)

METHODS = ("sac", "maq_dsac")
SPLIT_SUMMARY = {"episodes": 4, "steps": 240, "return_mean": 1.0, "return_std": 0.5, "length_mean": 60.0, "length_min": 60, "length_max": 60}  # a prepared split's summary, for the fixture's card


@pytest.fixture(scope="module")
def evaluated(project):  # noqa: F811
    """The tiny project with a sac and a maq_dsac agent trained and evaluated (seed 1), laid out as the DAG does."""
    root = project / "dag"
    (root / "data").mkdir(parents=True)
    shutil.copytree(project / "prepared", root / "data/prepared/door")
    meta = json.loads((root / "data/prepared/door/meta.json").read_text())
    full = {**meta, "source_description": "smooth proxy episodes (test fixture)", "split_seed": 0, "test_fraction": 0.33,
            "ref_min_score": 0.0, "ref_max_score": 1.0, **{split: SPLIT_SUMMARY for split in ("train", "test")}}
    (root / "data/prepared/door/README.md").write_text(dataset_card("door", full))
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
    (root / "reports/videos").mkdir(parents=True)
    (root / "reports/videos/door_sac_seed1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 test video")  # as the report writes it
    columns = [f"{c}_{s}" for c in ("normalized_score", "success_rate", "dtw_similarity", "w_similarity") for s in ("iqm", "ci_low", "ci_high")]
    (root / "reports/door.csv").write_text(",".join(["method", "n_seeds", *columns]) + "\n" + ",".join(["sac", "3", *["0.5"] * len(columns)]) + "\n")
    return root



def dag_params(push: bool):
    params = load_params(REPO / "params.yaml")
    methods = replace(params.methods, baselines=("sac",), maq=("maq_dsac",))
    return replace(params, tasks=("door",), methods=methods, seeds=(1,), hub=replace(params.hub, push=push, namespace="maq-test"))


def test_staged_cards_carry_metrics_in_valid_yaml(evaluated):
    staged = stage_all(["door"], METHODS, [1], namespace="maq-test", layout=Layout(evaluated))
    assert [s.repo_name for s in staged] == ["maq-door-demos", "maq-door-codebook", "maq-door-sac-seed1", "maq-door-maq_dsac-seed1"]
    codebook_hash = Codebook.from_pretrained(evaluated / "models/codebooks/door").hash
    dataset, staged = staged[0], staged[1:]
    card = DatasetCard.load(dataset.directory / "README.md", ignore_metadata_errors=False)
    assert card.data.task_categories == ["reinforcement-learning"] and {"door", "AdroitHandDoor-v1"} <= set(card.data.tags)
    assert "## Provenance" in card.text
    assert file_hashes(dataset.directory)["train.safetensors"] == file_hashes(evaluated / "data/prepared/door")["train.safetensors"]
    for item in staged:
        card = ModelCard.load(item.directory / "README.md", ignore_metadata_errors=False)
        front, body = split_front_matter((item.directory / "README.md").read_text())
        assert front["library_name"] == "maq-hub" and card.data.datasets == ["maq-test/maq-door-demos"]
        values = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert "reproduce" in body and "code_revision" not in front  # stamped on push: staging is revision-free
        if item.kind == "agent":
            method = item.repo_name.split("-")[2]
            summary = json.loads((evaluated / f"evaluations/door/{method}/seed1/summary.json").read_text())
            assert list(values)[0] == "mean_reward" and values["mean_reward"] == summary["raw_reward_mean"]
            assert values["normalized_score"] == summary["normalized_score_mean"]
            assert values["dtw_similarity"] == summary["dtw_state_mean_similarity"]
            assert {"success_rate", "w1_similarity"} <= values.keys() and method in front["tags"]
            finite = {t for key, t, _ in AGENT_METRICS if isinstance(summary.get(key), (int, float)) and math.isfinite(summary[key])}
            assert {t for t in values if not t.endswith("_iqm")} == finite  # every measure the evaluation has, no other
            assert {r.dataset_type for r in card.data.eval_results} == {"AdroitHandDoor-v1"}
            assert {r.task_type for r in card.data.eval_results} == {"reinforcement-learning"}
            assert {"reinforcement-learning", "AdroitHandDoor-v1"} <= set(front["tags"])
            assert ("normalized_score_iqm" in values) == (method == "sac")  # the fixture's report has a sac row only
            has_video = method == "sac"  # the fixture's report rendered sac only
            assert (item.directory / "replay.mp4").is_file() == has_video and ("replay.mp4" in body) == has_video
            if has_video:
                assert (item.directory / "replay.mp4").read_bytes() == (evaluated / "reports/videos/door_sac_seed1.mp4").read_bytes()
        else:
            assert front["weights_sha256"] == codebook_hash and {"H", "K"} <= front.keys() and "vq-vae" in front["tags"]
            assert values["test_mse_ratio"] > 0
        # the weights are the run's, byte for byte
        src = evaluated / ("models/codebooks/door" if item.kind == "codebook" else f"models/agents/door/{method}/seed1")
        assert file_hashes(item.directory)["model.safetensors"] == file_hashes(src)["model.safetensors"]


def test_every_artifact_dir_the_readme_names_pushes_with_a_parsable_card(evaluated, hub, online, tmp_path, capsys):  # noqa: F811
    """`maq hub push` (the CLI's code, in process) of each path the README's Hub section names: data/prepared/<task>
    (--dataset), models/codebooks/<task>, models/agents/<task>/<method>/seed<s> and the staged models/publish/<repo>;
    each card, as pushed and pulled back with `maq hub pull`, parses with ModelCard/DatasetCard.load, model cards with
    model-index results (regression: the prepared dataset and the agents failed with "no YAML front matter")."""
    from pipeline.cli import main

    run_publish(dag_params(push=False), root=evaluated)
    dirs = {"maq-test/demos": ("dataset", evaluated / "data/prepared/door"), "maq-test/codebook": ("model", evaluated / "models/codebooks/door"),
            **{f"maq-test/{m}": ("model", evaluated / f"models/agents/door/{m}/seed1") for m in METHODS},
            **{f"maq-test/staged-{p.name}": ("dataset" if p.name.endswith("demos") else "model", p)
               for p in sorted((evaluated / "models/publish").iterdir()) if p.is_dir()}}
    assert len(dirs) == 4 + 4
    for repo_id, (repo_type, directory) in dirs.items():
        dataset = ["--dataset"] if repo_type == "dataset" else []
        assert main(["hub", "push", *dataset, str(directory), repo_id]) == 0, capsys.readouterr().err
        sha, where = capsys.readouterr().out.split()
        assert where == f"{repo_id}@main" and hub.repos[(repo_type, repo_id)].branches["main"] == sha
        assert main(["hub", "pull", *dataset, f"{repo_id}@{sha}", "--cache-dir", str(tmp_path / "cache")]) == 0, capsys.readouterr().err
        snapshot = Path(capsys.readouterr().out.strip())
        assert file_hashes(snapshot)["README.md"] == file_hashes(directory)["README.md"]
        if repo_type == "dataset":
            assert DatasetCard.load(snapshot / "README.md", ignore_metadata_errors=False).data.task_categories == ["reinforcement-learning"]
        else:
            results = ModelCard.load(snapshot / "README.md", ignore_metadata_errors=False).data.eval_results
            assert results and results[0].task_type in ("reinforcement-learning", "macro-action-quantization")


def test_publish_pushes_only_when_asked(evaluated, hub, online):  # noqa: F811
    record = run_publish(dag_params(push=False), root=evaluated)
    assert record["pushed"] is False and hub.requests == []
    record = run_publish(dag_params(push=True), root=evaluated)
    assert [c["repo_id"] for c in record["commits"]] == ["maq-test/maq-door-demos", "maq-test/maq-door-codebook", "maq-test/maq-door-sac-seed1", "maq-test/maq-door-maq_dsac-seed1"]
    assert json.loads((evaluated / "models/publish/published.json").read_text())["commits"] == record["commits"]
    demos = record["commits"][0]
    assert demos["repo_type"] == "dataset"
    snapshot = download_artifact(demos["pull"], repo_type="dataset", cache_dir=evaluated / "hf-cache")
    assert {k: v for k, v in file_hashes(snapshot).items() if k != ".gitattributes"} == file_hashes(evaluated / "models/publish/maq-door-demos")
    front, body = split_front_matter((snapshot / "README.md").read_text())
    assert front["code_revision"] == code_revision() and body.endswith(f"- code revision: `{code_revision()}`\n")
    for commit in record["commits"][1:]:  # every pushed model card, stamped, still parses with model-index results
        card = ModelCard.load(download_artifact(commit["pull"], cache_dir=evaluated / "hf-cache") / "README.md", ignore_metadata_errors=False)
        assert card.data.eval_results and card.data.code_revision == code_revision()
    assert "replay.mp4" in hub.commits_of("maq-test/maq-door-sac-seed1")[0].files


def test_hub_codebook_and_agent_load_bit_identical(evaluated, project, hub, online, tmp_path):  # noqa: F811
    record = run_publish(dag_params(push=True), root=evaluated)
    sha = {c["repo_id"].split("/")[1]: c["commit_sha"] for c in record["commits"]}
    local_cb = Codebook.from_pretrained(evaluated / "models/codebooks/door")
    cb = Codebook.from_pretrained("maq-test/maq-door-codebook", revision=sha["maq-door-codebook"], cache_dir=tmp_path / "cache")
    assert cb.hash == local_cb.hash and cb.info == local_cb.info
    for key, value in local_cb.model.state_dict().items():
        assert torch.equal(value, cb.model.state_dict()[key]), key
    assert Codebook.from_pretrained(f"maq-test/maq-door-codebook@{sha['maq-door-codebook']}", cache_dir=tmp_path / "cache").hash == cb.hash
    for method in METHODS:
        repo = f"maq-door-{method}-seed1"
        local = load_agent(evaluated / f"models/agents/door/{method}/seed1", codebook=local_cb if method.startswith("maq") else None)
        remote = load_agent(f"maq-test/{repo}@{sha[repo]}", codebook=cb if method.startswith("maq") else None, cache_dir=tmp_path / "cache")
        assert remote.method == method and remote.config == local.config and remote.execute_steps == local.execute_steps
        assert local.state_dict().keys() == remote.state_dict().keys()
        for key, value in local.state_dict().items():
            assert torch.equal(value, remote.state_dict()[key]), key

    online(offline=True)  # cached: no network needed; not cached: a clear error, not "re-run the codebook stage"
    assert Codebook.from_pretrained("maq-test/maq-door-codebook", revision=sha["maq-door-codebook"], cache_dir=tmp_path / "cache").hash == cb.hash
    with pytest.raises(HubError, match=r"cannot download maq-test/maq-door-codebook@main: HF_HUB_OFFLINE.*not in the HF cache") as err:
        Codebook.from_pretrained("maq-test/maq-door-codebook", cache_dir=tmp_path / "empty-cache")
    assert "re-run the codebook stage" not in str(err.value)


def test_broken_hub_codebook_names_the_repo(evaluated, hub, online, tmp_path):  # noqa: F811
    art = tmp_path / "cb"
    shutil.copytree(evaluated / "models/codebooks/door", art)
    config = json.loads((art / "config.json").read_text())
    (art / "config.json").write_text(json.dumps({**config, "weights_sha256": "0" * 64}))
    sha = push_artifact(art, "maq-test/broken").commit_sha
    with pytest.raises(ValueError, match=rf"maq-test/broken@{sha} model.safetensors does not match .*push a fresh one") as err:
        Codebook.from_pretrained("maq-test/broken", revision=sha, cache_dir=tmp_path / "cache")
    assert "dvc repro codebook" not in str(err.value)


def test_hub_codebook_drives_finetune(evaluated, project, hub, online, tmp_path):  # noqa: F811
    record = run_publish(dag_params(push=True), root=evaluated)
    spec = next(c["pull"] for c in record["commits"] if c["kind"] == "codebook")
    out = tmp_path / "fresh" / "models/codebooks/door"
    codebook, metrics = fetch_codebook("door", spec, project / "prepared", out, tmp_path / "m.json", tmp_path / "p.csv", cache_dir=tmp_path / "cache")
    assert codebook.hash == Codebook.from_pretrained(evaluated / "models/codebooks/door").hash == metrics["codebook_sha256"]
    assert file_hashes(out) == file_hashes(evaluated / "models/publish/maq-door-codebook")
    assert not any(p.is_symlink() for p in out.iterdir())  # real files, not links into the HF cache
    result = finetune(project, "maq_dsac", "from-hub-codebook", codebook_dir=out)
    assert result.metrics[0]["env_steps"] == 400
    config = json.loads((project / "runs" / "from-hub-codebook" / "agents" / "seed1" / "config.json").read_text())
    assert config["codebook_hash"] == codebook.hash

    with pytest.raises(ValueError, match="not 'relocate'"):
        fetch_codebook("relocate", spec, project / "prepared", tmp_path / "x", tmp_path / "m.json", tmp_path / "p.csv", cache_dir=tmp_path / "cache")


def test_hub_codebook_offline_without_cache_fails_fast(project, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="offline"):
        fetch_codebook("door", "hub:maq-test/maq-door-codebook@main", project / "prepared", tmp_path / "out",
                       tmp_path / "m.json", tmp_path / "p.csv", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists()
