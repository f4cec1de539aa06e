"""The finetune and evaluate stages' logic on a real Adroit env, a real (tiny) codebook and tiny
networks: outputs, resuming after an interruption, the codebook-hash guard, evaluation files."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pipeline.agents import AGENTS, load_agent
from pipeline.agents.finetune import CHECKPOINT_FILE, run_finetune
from pipeline.benchmarks.codebook import make_smooth_episodes, write_prepared
from pipeline.codebook import Codebook
from pipeline.codebook.run import run_codebook
from pipeline.config import load_params
from pipeline.data.episodes import Episodes
from pipeline.entry import UserError
from pipeline.live import read_curve
from pipeline.envs import make_env
from pipeline.evaluation import DISTANCES, TRACKED_METRICS, run_evaluate, run_references
from pipeline.methods import method_config
from pipeline.report import CURVE_COLUMNS
from tests.test_live import tree_bytes

REPO = Path(__file__).resolve().parents[1]
S, A = 39, 28  # door
TINY = {"hidden": (32, 32), "batch_size": 16}
TINY_OVERRIDES = {
    "sac": {**TINY, "warmup_steps": 50},
    "rlpd": {**TINY, "warmup_steps": 50, "utd": 2},
    "iql": TINY,
    "maq_rlpd": {**TINY, "warmup_steps": 5, "utd": 2},
    "maq_iql": TINY,
    "maq_dsac": {**TINY, "warmup_steps": 5},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A prepared door dataset (smooth door-sized episodes) and a tiny codebook trained on it."""
    root = tmp_path_factory.mktemp("finetune")
    episodes = make_smooth_episodes(6, 60, S, A, seed=0, n_moves=3)
    write_prepared(root / "prepared", "door", episodes, n_test=2)
    cfg = replace(load_params(REPO / "params.yaml").codebook, H=4, K=8, latent_dim=16, hidden=32, epochs=2, threads=1, device="cpu")
    run_codebook("door", cfg, root / "prepared", root / "codebook", root / "cb.json", root / "cb_curve", root / "cb_ckpt", progress=False)
    return root


def tiny_cfg(**changes):
    cfg = load_params(REPO / "params.yaml").finetune
    return replace(cfg, **{**dict(env_steps=400, offline_updates=20, eval_every=200, eval_episodes=1,
                                  threads=1, device="cpu"), **changes})


def finetune(project: Path, method: str, name: str, cfg=None, codebook_dir: Path | None = None, seeds=(1,), **kwargs):
    """One finetune run of `seeds` as a population; seed s writes runs/<name>/agents/seed<s>/, curves/seed<s>/, …"""
    run = project / "runs" / name
    return run_finetune(
        "door", method, seeds, cfg or tiny_cfg(), TINY_OVERRIDES[method], prepared_dir=project / "prepared",
        codebook_dir=(codebook_dir or project / "codebook") if AGENTS[method].macro else None, agents_dir=run / "agents",
        curves_dir=run / "curves", metrics_dir=run / "metrics", checkpoint_dir=run / "ckpt", checkpoint_every=200, progress=False,
        **kwargs,
    )


def test_method_config_applies_overrides_and_presets():
    assert method_config("rlpd", {"utd": 3}).utd == 3
    assert method_config("rlpd", {"hidden": [64, 64]}).hidden == (64, 64)
    official = method_config("maq_rlpd", {"preset": "maq_rlpd_official", "utd": 2})
    assert (official.n_critics, official.critic_layer_norm, official.fixed_temperature, official.utd) == (2, False, 0.2, 2)
    with pytest.raises(ValueError, match=r"agents.rlpd sets unknown config keys \['utdd'\]"):
        method_config("rlpd", {"utdd": 3})
    with pytest.raises(ValueError, match="not a preset of sac"):
        method_config("sac", {"preset": "maq_rlpd_official"})


@pytest.mark.parametrize("method", ["sac", "iql", "maq_iql", "maq_dsac"])
def test_finetune_writes_agent_card_curve_and_metrics(project, method):
    result = finetune(project, method, f"outputs-{method}", seeds=(1, 2))
    run = project / "runs" / f"outputs-{method}"
    assert sorted(p.name for p in (run / "agents").iterdir()) == ["seed1", "seed2"]
    assert sorted(p.name for p in (run / "agents" / "seed1").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    curve = read_curve(run / "curves" / "seed1", "env_steps")
    assert [row["env_steps"] for row in curve] == [0, 200, 400]  # after the offline phase, every 200, end
    assert curve == result.members[0].counters.curve and set(curve[0]) == set(CURVE_COLUMNS)
    metrics = json.loads((run / "metrics" / "seed1.json").read_text())
    assert metrics["env_steps"] == 400 and np.isfinite(metrics["final_eval_return"])
    assert metrics["offline_updates"] == (20 if AGENTS[method].offline_phase else 0)
    assert not (run / "ckpt").exists()  # removed once the run completed
    card = (run / "agents" / "seed2" / "README.md").read_text()
    codebook = Codebook.from_pretrained(project / "codebook") if AGENTS[method].macro else None
    if codebook is not None:
        assert codebook.hash in card
    from huggingface_hub import ModelCard

    from pipeline.hub import validate_artifact_dir

    parsed = ModelCard.load(run / "agents" / "seed2" / "README.md", ignore_metadata_errors=False)
    final = json.loads((run / "metrics" / "seed2.json").read_text())
    results = {r.metric_type: r for r in parsed.data.eval_results}
    assert results["mean_reward"].metric_value == final["final_eval_return"] and results["mean_reward"].dataset_type == "AdroitHandDoor-v1"
    assert {"reinforcement-learning", "AdroitHandDoor-v1", method} <= set(parsed.data.tags)
    assert validate_artifact_dir(run / "agents" / "seed2")["method"] == method  # `maq hub push` accepts it
    for i, seed in enumerate((1, 2)):
        loaded = load_agent(run / "agents" / f"seed{seed}", codebook=codebook, device="cpu")
        assert loaded.seeds == (seed,)
        for key, value in result.agent.member_state_dict(i).items():
            assert torch.equal(value.cpu(), loaded.state_dict()[key])


def test_a_maq_agent_refuses_another_codebook(project, tmp_path):
    finetune(project, "maq_dsac", "guard")
    other = Codebook.from_pretrained(project / "codebook")
    with torch.no_grad():
        other.model.codes.add_(1e-3)  # same shapes, other weights: another hash
    with pytest.raises(ValueError, match="trained on codebook"):
        load_agent(project / "runs" / "guard" / "agents" / "seed1", codebook=other)
    with pytest.raises(ValueError, match="acts in codes"):
        load_agent(project / "runs" / "guard" / "agents" / "seed1")


@pytest.mark.parametrize("method", ["rlpd", "maq_iql", "maq_rlpd"])
def test_interrupted_run_resumes_to_identical_weights(project, method):
    straight = finetune(project, method, f"straight-{method}", seeds=(1, 2))
    stopped = finetune(project, method, f"resumed-{method}", seeds=(1, 2), stop_after_env_steps=200)
    assert stopped.metrics is None and [m.counters.env_steps for m in stopped.members] == [200, 200]
    assert (project / "runs" / f"resumed-{method}" / "ckpt" / CHECKPOINT_FILE).is_file()
    resumed = finetune(project, method, f"resumed-{method}", seeds=(1, 2))  # a fresh process would do the same: all state is on disk
    assert resumed.resumed and [m.counters.env_steps for m in resumed.members] == [400, 400]
    assert [m.counters.curve for m in straight.members] == [m.counters.curve for m in resumed.members]
    for seed in (1, 2):  # the resumed run re-logged its checkpointed curve points: the same DVCLive files
        assert tree_bytes(project / "runs" / f"resumed-{method}" / "curves" / f"seed{seed}") == \
            tree_bytes(project / "runs" / f"straight-{method}" / "curves" / f"seed{seed}")
    for key, value in straight.agent.state_dict().items():
        assert torch.equal(value, resumed.agent.state_dict()[key]), key
    for name, optimizer in straight.agent.optimizers().items():
        for key, value in optimizer.state_tensors().items():
            assert torch.equal(value, resumed.agent.optimizers()[name].state_tensors()[key]), (name, key)


def test_receding_horizon_agents_record_execute_steps_and_are_evaluated_with_it(project):
    """execute_steps=2 of H=4: online macros and demo transitions span 2 env steps, the agent
    records n, and evaluation plays 2 actions per code (so one code per 2 steps)."""
    result = finetune(project, "maq_iql", "receding", execute_steps=2)
    buffer = result.members[0].buffers["online"]  # maq_iql: the demonstrations, then its own experience
    assert set(buffer.data["demo"][: buffer.size].tolist()) == {True, False}
    assert set(buffer.data["steps"][: buffer.size].tolist()) == {2}  # 200-step episodes: no shorter last macro
    agent_dir = project / "runs" / "receding" / "agents" / "seed1"
    assert json.loads((agent_dir / "config.json").read_text())["execute_steps"] == 2
    assert "the first 2 of the 4 decoded actions" in (agent_dir / "README.md").read_text()
    from pipeline.evaluation import AgentPolicy

    codebook = Codebook.from_pretrained(project / "codebook")
    policy = AgentPolicy(load_agent(agent_dir, codebook=codebook), codebook)
    assert policy.act_chunk(np.zeros(S, np.float32)).shape == (2, A)
    with pytest.raises(UserError, match="macro.execute_steps: .*1 ≤ execute_steps ≤ 4"):
        finetune(project, "maq_iql", "too-long", execute_steps=5)
    with pytest.raises(ValueError, match="execute_steps is for methods acting in codes"):
        finetune(project, "iql", "continuous", execute_steps=2)


def test_checkpoint_of_another_run_is_ignored(project, capsys):
    finetune(project, "sac", "other", stop_after_env_steps=200)
    result = finetune(project, "sac", "other", cfg=tiny_cfg(eval_episodes=2))  # other settings
    assert not result.resumed and "ignoring checkpoint" in capsys.readouterr().out


def test_evaluate_writes_protocol_outputs_that_replay_exactly(project):
    finetune(project, "maq_iql", "evaluated")
    cfg = replace(load_params(REPO / "params.yaml").evaluate, episodes=2, reference_episodes=2)
    references = run_references("door", cfg, project / "prepared", project / "references.json", progress=False)
    assert set(references["distances"]) == set(DISTANCES)
    assert references["paired"] is None  # this data is not synthetic: no start states to pair with
    out = project / "evaluations" / "maq_iql"
    summary = run_evaluate(
        "door", "maq_iql", 3, cfg, agent_dir=project / "runs" / "evaluated" / "agents" / "seed1", codebook_dir=project / "codebook",
        prepared_dir=project / "prepared", references_path=project / "references.json", out_dir=out,
        metrics_path=project / "evaluate.json", progress=False,
    )
    rows = pl.read_parquet(out / "episodes.parquet")
    assert rows.height == 2 and rows["env_seed"].to_list() == [600, 601]  # 200·s + i
    assert {"normalized_score", "success", "success_held", *DISTANCES} <= set(rows.columns)
    assert sum(summary["code_counts"]) == sum(-(-n // 4) for n in rows["length"].to_list())  # one code per H=4 steps
    paper_only = {k for k in TRACKED_METRICS if not k.startswith("paired_")}
    assert json.loads((project / "evaluate.json").read_text()).keys() == paper_only
    assert 0.0 <= summary["discriminator_auc"] <= 1.0 and summary["action_jerk_ratio"] > 0
    assert json.loads((out / "summary.json").read_text())["dtw_state_mean_similarity"] == summary["dtw_state_mean_similarity"]
    episodes = Episodes.load(out / "trajectories.safetensors")
    env = make_env("door")
    first = next(episodes.episode_slices())
    obs, _ = env.reset(seed=int(episodes.episode_ids[0]))
    for step, action in enumerate(episodes.actions[first]):
        np.testing.assert_allclose(obs, episodes.obs[first][step], atol=1e-5)
        obs, *_ = env.step(action)
    with pytest.raises(ValueError, match="re-run `dvc repro references`"):
        run_evaluate("door", "maq_iql", 3, replace(cfg, dtw="fastdtw"), agent_dir=project / "runs" / "evaluated" / "agents" / "seed1",
                     codebook_dir=project / "codebook", prepared_dir=project / "prepared", references_path=project / "references.json",
                     out_dir=out, metrics_path=project / "evaluate.json", progress=False)
