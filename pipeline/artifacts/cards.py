"""Every card the pipeline writes: one home, the Hub's conventions, huggingface_hub's card classes.

    dataset_card(task, meta)                     data/prepared/<task>/README.md        (DatasetCard)
    codebook_card(codebook, metrics, cfg, meta)  models/codebooks/<task>/README.md     (ModelCard)
    agent_card(task, method, seed, ...)          models/agents/<task>/<method>/seed<s>/README.md
    publish_codebook_card / publish_agent_card / publish_dataset_card
                                                 models/publish/<repo name>/README.md: the card above,
                                                 linked to the demos repo, with the evaluation
    stamp_code_revision(path, revision)          the code revision, added when a staged card is pushed

Model cards follow the reinforcement-learning convention of the Hub (Stable-Baselines3, RL Zoo):
`library_name`, `tags` (reinforcement-learning, the gymnasium env id, the method), and a `model-index`
whose results are `EvalResult(task_type="reinforcement-learning", dataset_type=<env id>, ...)` with
`mean_reward` first, then success and the human-likeness measures; `datasets:` names the
demonstrations (the Hub dataset repo once published). Each writer returns the README text; every
card parses with `ModelCard.load` (or `DatasetCard.load`) and every model card has model-index results.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Mapping

LIBRARY_NAME = "maq-hub"
RL_TASK = "reinforcement-learning"
CODEBOOK_TASK = "macro-action-quantization"  # a codebook is measured by reconstruction, not reward
REPLAY_FILE = "replay.mp4"  # the Hub shows it on a reinforcement-learning model's page

# Evaluation numbers of a published agent card: (summary key, metric type, report column or None).
AGENT_METRICS = (
    ("raw_reward_mean", "mean_reward", None),
    ("normalized_score_mean", "normalized_score", "normalized_score"),
    ("success_rate", "success_rate", "success_rate"),
    ("dtw_state_mean_similarity", "dtw_similarity", "dtw_similarity"),
    ("w1_state_similarity", "w1_similarity", "w_similarity"),
    ("paired_dtw_state_similarity", "paired_dtw_similarity", None),
    ("discriminator_auc", "discriminator_auc", None),
)
CODEBOOK_METRICS = ("test_mse", "test_baseline_mse", "test_mse_ratio", "test_used_codes", "test_perplexity", "train_mse")


def _number(value) -> float | int | None:
    """A plain finite number for YAML (numpy scalars unwrapped), or None if missing or not finite."""
    if value is None:
        return None
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def dataset_id(meta: Mapping) -> str:
    """The demonstrations' dataset id: the Minari id, or the source string."""
    source = meta["source"]
    return source.split(":", 1)[1] if source.startswith("minari:") else source


def demos_repo_name(task: str) -> str:
    return f"maq-{task}-demos"


def rl_result(env_id: str, metric_type: str, value, metric_name: str | None = None, **extra):
    """One RL Hub model-index result on `env_id` (dataset type and name, as RL Zoo writes them), or None."""
    from huggingface_hub import EvalResult

    value = _number(value)
    if value is None:
        return None
    return EvalResult(task_type=RL_TASK, task_name=RL_TASK, dataset_type=env_id, dataset_name=env_id,
                      metric_type=metric_type, metric_value=value, metric_name=metric_name or metric_type, **extra)


def _card_class(repo_type: str):
    from huggingface_hub import DatasetCard, ModelCard

    return DatasetCard if repo_type == "dataset" else ModelCard


def card_text(data, body: str, repo_type: str = "model") -> str:
    """README.md text of a card: `data` (ModelCardData or DatasetCardData) as YAML front matter, then the markdown
    body, parsed back by huggingface_hub's card class of `repo_type` (a card it cannot read is never written)."""
    return str(_card_class(repo_type)(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n", ignore_metadata_errors=False))


def _model_data(*, model_name: str, tags: Iterable[str], datasets: list[str], eval_results: list, **extra):
    from huggingface_hub import ModelCardData

    results = [r for r in eval_results if r is not None]
    if not results:
        raise ValueError(f"a model card needs model-index results; {model_name} has none")
    return ModelCardData(library_name=LIBRARY_NAME, model_name=model_name, tags=list(dict.fromkeys(tags)), datasets=datasets,
                         eval_results=results, **extra)


# ---------------------------------------------------------------- the DAG's artifacts


def _split_row(name: str, s: dict) -> str:
    success = f"{s['success_rate_final_step']:.2f} / {s['success_rate_ever']:.2f}" if "success_rate_final_step" in s else "not recorded"
    return (f"| {name} | {s['episodes']} | {s['steps']} | {s['return_mean']:.1f} ± {s['return_std']:.1f} "
            f"| {s['length_mean']:.1f} ({s['length_min']}–{s['length_max']}) | {success} |")


def dataset_card(task: str, meta: dict) -> str:
    """The prepared dataset's card (the `prepare` stage's README.md): episodes, steps, returns, lengths, success."""
    from huggingface_hub import DatasetCardData

    from pipeline.tasks import get_task

    env_id = get_task(task).env_id
    synthetic = meta["source"] == "synthetic"
    data = DatasetCardData(
        pretty_name=f"MAQ hub {task} demonstrations" + (" (synthetic, not human)" if synthetic else ""),
        task_categories=[RL_TASK],
        tags=["maq", "adroit", task, env_id, "demonstrations", *(["synthetic"] if synthetic else [])],
        env_id=env_id, source=meta["source"], source_sha256=meta["source_sha256"],
    )
    body = "\n".join([
        f"# Prepared demonstrations: {task}",
        "",
        f"Source: `{meta['source']}` — {meta['source_description']}.  ",
        f"Source sha256: `{meta['source_sha256']}`  ",
        f"Split: whole episodes shuffled with seed {meta['split_seed']}, test fraction {meta['test_fraction']}; "
        "the test split is the human reference for evaluation.",
        "",
        "| split | episodes | steps | return (mean ± std) | length (mean, min–max) | success final step / ever |",
        "|---|---|---|---|---|---|",
        _split_row("train", meta["train"]),
        _split_row("test", meta["test"]),
        "",
        f"Observation size {meta['obs_dim']}, action size {meta['action_dim']} (`{env_id}`). "
        f"D4RL normalized score references: {meta['ref_min_score']} / {meta['ref_max_score']}.",
        "",
        "## Files",
        "- `train.safetensors`, `test.safetensors`: episodes as flat arrays with offsets (`pipeline.data.episodes.Episodes.load`)",
        "- `meta.json`: source, split and normalization statistics",
    ])
    return card_text(data, body, "dataset")


CODEBOOK_FIXES = [
    "Windows never cross episode boundaries (the official code concatenates trajectories).",
    "Observations and actions are standardized with the train-split statistics, stored as buffers in model.safetensors (the official code does not normalize).",
    "float32 training (the official code uses float64).",
    "Dead codes: usage counted over all train windows after each epoch (official: one sample per batch); a dead code moves to the encoder output of a distinct random train window plus small noise, never an exact copy, and gets fresh Adam moments; no re-initialisation after the last epoch.",
    "Optional k-means initialisation of the codes and EMA code updates (codebook.kmeans_init, codebook.ema).",
    "Deterministic and resumable: seeded per (seed, epoch, purpose); an interrupted run resumes from its checkpoint to the same weights.",
]


def codebook_card(codebook, metrics: dict, cfg, meta: dict, digest: str) -> str:
    """The codebook's card (the `codebook` stage's README.md); its model-index holds the reconstruction metrics."""
    import numpy as np
    from huggingface_hub import EvalResult

    from pipeline.config import section_to_dict
    from pipeline.tasks import get_task

    spec, counts, task = codebook.spec, metrics["test_code_counts"], meta["task"]
    env_id, demos = get_task(task).env_id, dataset_id(meta)
    share = np.asarray(counts, np.float64) / max(sum(counts), 1)
    results = [
        EvalResult(task_type=CODEBOOK_TASK, task_name="Macro-action reconstruction", dataset_type=demos, dataset_name=demos,
                   dataset_split="train" if key.startswith("train") else "test", metric_type=key, metric_value=_number(metrics[key]),
                   metric_name=key)
        for key in CODEBOOK_METRICS if _number(metrics[key]) is not None
    ]
    data = _model_data(
        model_name=f"maq-{task}-codebook", tags=["maq", "vq-vae", "macro-actions", "adroit", task, env_id], datasets=[demos],
        eval_results=results, task=task, env_id=env_id, data_source=meta["source"], data_source_sha256=meta["source_sha256"],
        H=spec.H, K=spec.K, D=spec.latent_dim, weights_sha256=digest,
    )
    lines = [
        f"# MAQ macro-action codebook: {task} (H={spec.H}, K={spec.K})",
        "",
        "A state-conditioned VQ-VAE (Macro Action Quantization, NeurIPS 2025) that distills demonstrations",
        f"into {spec.K} macro actions of {spec.H} steps. `encode(obs, macro) -> code`, `decode(obs, code) -> macro` (action units).",
        "",
        "## Data",
        f"- source: `{meta['source']}` (sha256 `{meta['source_sha256']}`)",
        f"- windows: {metrics['n_train_windows']} train / {metrics['n_test_windows']} test (whole episodes held out)",
        "",
        "## Architecture",
        f"- encoder MLP (S+H·A = {spec.obs_dim}+{spec.H}·{spec.action_dim}) → {spec.hidden} → {spec.hidden} → {spec.hidden} → D={spec.latent_dim}; codebook {spec.K} × {spec.latent_dim}",
        f"- decoder MLP (S+D) → {spec.hidden} → {spec.hidden} → H·A = {spec.H * spec.action_dim}, linear output",
        f"- loss: recon MSE + codebook MSE + {cfg.beta} · commitment MSE{' (codes by EMA, no codebook loss)' if cfg.ema else ''}",
        "",
        "## Metrics (test windows unless said; MSE in action units)",
        "| metric | value |",
        "|---|---|",
        f"| train recon MSE | {metrics['train_mse']:.5f} |",
        f"| test recon MSE | {metrics['test_mse']:.5f} |",
        f"| mean-macro baseline MSE (train mean macro) | {metrics['test_baseline_mse']:.5f} |",
        f"| ratio test / baseline | {metrics['test_mse_ratio']:.3f} |",
        f"| used codes | {metrics['test_used_codes']} / {spec.K} |",
        f"| perplexity | {metrics['test_perplexity']:.2f} |",
        f"| most used code share | {share.max():.3f} |",
        f"| least used code share | {share.min():.3f} |",
        "",
        f"Code counts on test windows: {counts}",
        "",
        "## Training",
        "```json",
        json.dumps(section_to_dict(cfg), indent=1),
        "```",
        "",
        "## Fixes over the official MAQ code",
        *(f"- {fix}" for fix in CODEBOOK_FIXES),
        "",
        "## Use",
        "`Codebook.from_pretrained(directory)` or, from the Hub, `Codebook.from_pretrained(\"<namespace>/<repo>\", revision=\"<commit sha>\")`"
        " (`pipeline.codebook`); the weights are checked against `weights_sha256` in config.json.",
        "",
        "## Reproduce",
        f"`dvc repro codebook@{task}` (params: the `codebook` section of params.yaml).",
    ]
    return card_text(data, "\n".join(lines))


def agent_card(task: str, method: str, seed: int, config, cfg, overrides: dict, meta: dict,
               codebook, curve: list[dict], metrics: dict, execute_steps: int | None = None) -> str:
    """The card of a trained agent (the `finetune` stage's README.md); its model-index holds the final point
    of the training-time learning curve (the `evaluate` stage's numbers go into the published card)."""
    from pipeline.config import section_to_dict
    from pipeline.methods import METHODS
    from pipeline.tasks import get_task

    entry, env_id = METHODS[method], get_task(task).env_id
    uses = "codes of a VQ-VAE macro-action codebook" if entry.macro else "continuous actions"
    n = cfg.eval_episodes
    curve_note = f"training-time learning curve, final point, {n} episodes"
    data = _model_data(
        model_name=f"maq-{task}-{method}-seed{seed}",
        tags=[RL_TASK, env_id, task, method, "adroit", "maq", *(["vq-vae", "macro-actions"] if entry.macro else [])],
        datasets=[dataset_id(meta)],
        eval_results=[
            rl_result(env_id, "mean_reward", metrics["final_eval_return"], f"mean_reward ({curve_note})"),
            rl_result(env_id, "normalized_score", metrics["final_eval_normalized_score"], f"normalized_score ({curve_note})"),
            rl_result(env_id, "success_rate", metrics["final_eval_success_rate"], f"success_rate ({curve_note})"),
        ],
        env_id=env_id, method=method, seed=seed, codebook_sha256=codebook.hash if codebook is not None else None,
    )
    lines = [
        f"# {method} on {task} (seed {seed})",
        "",
        f"A `{method}` agent ({entry.doc}) trained on `{env_id}` by the MAQ hub `finetune` stage. It acts in {uses}.",
        "",
        "| | |", "|---|---|",
        f"| demonstrations | `{meta['source']}` (sha256 `{meta['source_sha256'][:16]}…`) |",
    ]
    if codebook is not None:
        lines.append(f"| codebook | H={codebook.H}, K={codebook.K}, sha256 `{codebook.hash}` |")
        lines.append(f"| execution | the first {execute_steps} of the {codebook.H} decoded actions of each code, open loop "
                     f"(`macro.execute_steps`) |")
    lines += [
        f"| budget | {metrics['env_steps']} env steps, {metrics['offline_updates']} offline updates, {metrics['online_updates']} online update rounds |",
        f"| population | trained together with {metrics['population'] - 1} other seeds (results do not depend on them) |",
        f"| final curve point | return {metrics['final_eval_return']:.1f}, normalized score {metrics['final_eval_normalized_score']:.1f}, "
        f"success {metrics['final_eval_success_rate']:.2f} ({n} episodes) |",
        "",
        "The numbers above (and in the model-index) are the training-time learning curve; the `evaluate` stage reports "
        "the protocol's metrics (seeded episodes, human-likeness), which the published card carries.",
        "",
        "## Learning curve",
        "",
        "| env steps | return | normalized score | success |", "|---|---|---|---|",
        *[f"| {p['env_steps']} | {p['eval_return']:.1f} | {p['eval_normalized_score']:.1f} | {p['eval_success_rate']:.2f} |" for p in curve],
        "",
        "## Config",
        "",
        "```json",
        json.dumps({"backend": asdict(config), "finetune": section_to_dict(cfg), "overrides": overrides}, indent=2, default=str),
        "```",
        "",
        "## Reproduce",
        "",
        f"`dvc repro finetune@{task}-{method}` with these params (every seed of `seeds` is trained in one process; this "
        f"agent is written to `models/agents/{task}/{method}/seed{seed}/`).",
        "",
        "Load it with `pipeline.agents.load_agent(directory, codebook=...)`, or from the Hub with "
        "`load_agent(\"<namespace>/<repo>@<commit sha>\", codebook=...)`; the weights are checked against "
        "`weights_sha256` in config.json, and a MAQ agent refuses a codebook with another hash.",
    ]
    return card_text(data, "\n".join(lines))


# ---------------------------------------------------------------- published cards (models/publish/<repo>/README.md)


def provenance(reproduce: str) -> str:
    """A card's closing Provenance section; `stamp_code_revision` adds the revision line when the card is pushed."""
    return f"\n## Provenance\n- reproduce: {reproduce} at the commit whose `dvc.lock` records this artifact\n"


def _load(path: Path, repo_type: str = "model"):
    return _card_class(repo_type).load(Path(path), ignore_metadata_errors=False)


def publish_dataset_card(prepared_card: Path, reproduce: str) -> str:
    """The demos repo's card: the prepared dataset's card with its provenance."""
    card = _load(prepared_card, "dataset")
    return card_text(card.data, card.text + provenance(reproduce), "dataset")


def publish_codebook_card(codebook_card_path: Path, *, demos_repo: str, reproduce: str) -> str:
    """A codebook's card as published: `datasets:` links the demos repo, the provenance closes it."""
    card = _load(codebook_card_path)
    card.data.datasets = [demos_repo]
    return card_text(card.data, card.text + provenance(reproduce))


def publish_agent_card(agent_card_path: Path, *, env_id: str, summary: dict, report: Mapping[str, Any] | None,
                       demos_repo: str, replay: bool, reproduce: str) -> str:
    """An agent's card as published: the model-index holds its evaluation (this seed's episodes, and the IQM over
    seeds with its CI where the report has it), `datasets:` links the demos repo, and `replay.mp4` is named when staged."""
    card = _load(agent_card_path)
    seed, n = summary["seed"], summary["episodes"]
    results = []
    for key, metric_type, column in AGENT_METRICS:
        results.append(rl_result(env_id, metric_type, summary.get(key), f"{metric_type} (seed {seed}, {n} episodes)"))
        if report is not None and column is not None:
            results.append(rl_result(
                env_id, f"{metric_type}_iqm", float(report[f"{column}_iqm"]),
                f"{metric_type} IQM over {report['n_seeds']} seeds, 95% CI "
                f"[{float(report[f'{column}_ci_low']):.3g}, {float(report[f'{column}_ci_high']):.3g}]",
            ))
    card.data.eval_results = [r for r in results if r is not None]
    card.data.datasets = [demos_repo]
    similarity = ", ".join(f"{name} {summary[key]:.2f}" for name, key in (("DTW similarity", "dtw_state_mean_similarity"),
                                                                           ("W1 similarity", "w1_state_similarity"))
                           if _number(summary.get(key)) is not None)
    body = card.text + (
        f"\n## Evaluation\n\n{n} deterministic episodes, env seeds 200·{seed} + i, D4RL reward: mean reward "
        f"{summary['raw_reward_mean']:.1f}, normalized score {summary['normalized_score_mean']:.1f}, success "
        f"{summary['success_rate']:.2f} (final-step rule){', ' + similarity if similarity else ''} (1 = human, 0 = random agent).\n"
    )
    if replay:
        body += (f"\n## Replay\n\n`{REPLAY_FILE}`: this agent's first evaluation episodes, rendered by replaying their stored "
                 "actions (the `report` stage's video).\n")
    return card_text(card.data, body + provenance(reproduce))


def stamp_code_revision(card_path: Path, revision: str, repo_type: str = "model") -> None:
    """Add the code revision to a staged card: a `code_revision` key, and a line ending its `provenance` section.

    Staged cards carry no revision, so that `models/publish` is reproducible from a fresh clone (whose
    HEAD is the commit holding the lock, not the one the stage ran at). A pushed card is stamped."""
    from pipeline.io import write_text_atomic

    card = _load(card_path, repo_type)
    card.data["code_revision"] = revision
    text = f"{card.text.rstrip()}\n- code revision: `{revision}`"
    write_text_atomic(card_path, card_text(card.data, text, repo_type))
