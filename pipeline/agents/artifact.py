"""Saving and loading an agent: `config.json` + `model.safetensors` in one directory.

`config.json` holds everything needed to rebuild the agent (method, obs size, action space,
the backend config, the hash of the codebook it acts with and, for MAQ agents, `execute_steps`:
the decoded actions it executes per code, absent in agents saved before it existed = H) and
`format_version`. Weights include
the temperature and the observation normalizer (buffers). No pickles. An agent saved with a
codebook hash refuses to load against a codebook with another hash.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipeline.agents.base import Agent, space_from_dict, space_to_dict
from pipeline.io import atomic_path, write_json_atomic

FORMAT_VERSION = 2  # 2: networks carry the population axis (pipeline.agents.networks)
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def save_agent(agent: Agent, directory: str | Path, codebook_hash: str | None = None, info: dict | None = None) -> Path:
    """Write `config.json` and `model.safetensors` under `directory` (atomically, each). `info`
    (provenance: task, seed, data, budget) is stored in config.json under "info"."""
    from pipeline.agents import AGENTS

    if agent.population != 1:
        raise ValueError(f"save one member at a time: agent.member(i) (this population has {agent.population})")
    if agent.method not in AGENTS:
        raise ValueError(f"agent.method {agent.method!r} is not a registered method; build agents with AGENTS[name]")
    if AGENTS[agent.method].macro and codebook_hash is None:
        raise ValueError(f"{agent.method} acts in codes: pass the codebook's hash (codebook_hash=...)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(weights, str(tmp))
    write_json_atomic(directory / CONFIG_FILE, {
        "format_version": FORMAT_VERSION,
        "kind": "agent",
        "method": agent.method,
        "obs_dim": agent.obs_dim,
        "action_space": space_to_dict(agent.action_space),
        "config": asdict(agent.config),
        "codebook_hash": codebook_hash,
        "execute_steps": agent.execute_steps,
        "info": info or {},
    })
    return directory


def load_agent(directory: str | Path, codebook=None, device=None) -> Agent:
    """Rebuild the agent saved under `directory`. For a method acting in codes, `codebook` (or its
    hash as a string) must match the one it was trained with."""
    from pipeline.agents import AGENTS

    directory = Path(directory)
    meta = json.loads((directory / CONFIG_FILE).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: agent format_version {meta.get('format_version')}, this code reads {FORMAT_VERSION}")
    method = AGENTS[meta["method"]]
    if meta["codebook_hash"] is not None:
        if codebook is None:
            raise ValueError(f"{directory}: this {method.name} agent acts in codes of codebook {meta['codebook_hash']}; pass it")
        given = codebook if isinstance(codebook, str) else codebook.hash
        if given != meta["codebook_hash"]:
            raise ValueError(f"{directory}: agent was trained on codebook {meta['codebook_hash']}, got codebook {given}")
    seed = meta.get("info", {}).get("seed", 0)
    agent = method(meta["obs_dim"], space_from_dict(meta["action_space"]), method.config_from_dict(meta["config"]), device,
                   seeds=(seed,))
    try:
        weights = load_file(str(directory / WEIGHTS_FILE), device=str(agent.device))
    except Exception as e:
        raise ValueError(f"{directory / WEIGHTS_FILE} cannot be read ({e}); re-run the stage that wrote it") from e
    agent.load_state_dict(weights)
    agent.execute_steps = meta.get("execute_steps")
    return agent


CURVE_COLUMNS = ("env_steps", "eval_return", "eval_normalized_score", "eval_success_rate")


def curve_csv(curve: list[dict]) -> str:
    """A learning curve (rows of CURVE_COLUMNS) as CSV text (the finetune stage's plot file)."""
    lines = [",".join(CURVE_COLUMNS)]
    lines += [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in CURVE_COLUMNS) for row in curve]
    return "\n".join(lines) + "\n"


def agent_card(task: str, method: str, seed: int, config, cfg, overrides: dict, meta: dict,
               codebook, curve: list[dict], metrics: dict, execute_steps: int | None = None) -> str:
    """The model card (README.md) of a trained agent."""
    from pipeline.config import section_to_dict
    from pipeline.methods import METHODS
    from pipeline.tasks import get_task

    entry = METHODS[method]
    spec = get_task(task)
    uses = "codes of a VQ-VAE macro-action codebook" if entry.macro else "continuous actions"
    lines = [
        f"# {method} on {task} (seed {seed})",
        "",
        f"A `{method}` agent ({entry.doc}) trained on `{spec.env_id}` by the MAQ hub `finetune` stage. It acts in {uses}.",
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
        f"success {metrics['final_eval_success_rate']:.2f} ({cfg.eval_episodes} episodes) |",
        "",
        "The numbers above are the training-time learning curve; the `evaluate` stage reports the protocol's "
        "metrics (seeded episodes, human-likeness).",
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
        "Load it with `pipeline.agents.load_agent(directory, codebook=...)`; a MAQ agent refuses a codebook with another hash.",
        "",
    ]
    return "\n".join(lines)
