"""Saving and loading an agent: `config.json` + `model.safetensors` in one directory.

`config.json` holds everything needed to rebuild the agent (method, obs size, action space,
the backend config, the hash of the codebook it acts with and, for MAQ agents, `execute_steps`:
the decoded actions it executes per code), `format_version`, and `weights_sha256`, the sha256
of `model.safetensors`. Weights include the temperature and the observation normalizer (buffers).
No pickles. The two files vouch for each other: config.json's `weights_sha256` for the weights,
and the weights' safetensors metadata `config_sha256` for the rest of config.json, so an edited,
truncated or swapped file is refused with a message naming it (`AgentArtifactError`), never
loaded. An agent saved with a codebook hash refuses to load against a codebook with another hash.

`load_agent` takes a local directory or a Hub repo (`"namespace/name@revision"`), downloaded
through the Hugging Face cache (pipeline.hub); a local path that exists always wins.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from pipeline.agents.base import Agent, space_from_dict, space_to_dict
from pipeline.entry import UserError
from pipeline.io import atomic_path, sha256_file, write_json_atomic

# 2: networks carry the population axis (pipeline.agents.networks).
# 3: config.json records weights_sha256 and the weights record config_sha256, both checked on load;
#    required, so that a file stripped of them cannot load unchecked (a format-2 agent is re-trained).
FORMAT_VERSION = 3
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class AgentArtifactError(UserError, ValueError):
    """An agent directory that cannot be loaded as it is: the message names the file and what to do."""


def config_sha256(record: dict) -> str:
    """sha256 of config.json's content without `weights_sha256` (canonical JSON: sorted keys)."""
    body = {k: v for k, v in record.items() if k != "weights_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_agent(agent: Agent, directory: str | Path, codebook_hash: str | None = None, info: dict | None = None) -> Path:
    """Write `model.safetensors` then `config.json` under `directory` (atomically, each). `info`
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
    record = json.loads(json.dumps({  # as config.json will read back (tuples become lists)
        "format_version": FORMAT_VERSION,
        "kind": "agent",
        "method": agent.method,
        "obs_dim": agent.obs_dim,
        "action_space": space_to_dict(agent.action_space),
        "config": asdict(agent.config),
        "codebook_hash": codebook_hash,
        "execute_steps": agent.execute_steps,
        "info": info or {},
    }))
    weights = {k: v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        # one metadata key only: safetensors writes its metadata in hash-map order, so two keys give
        # other bytes from one save to the next (the format version is in config.json)
        save_file(weights, str(tmp), metadata={"config_sha256": config_sha256(record)})
    write_json_atomic(directory / CONFIG_FILE, {**record, "weights_sha256": sha256_file(directory / WEIGHTS_FILE)})
    return directory


def load_agent(directory: str | Path, codebook=None, device=None, *, revision: str | None = None,
               cache_dir: str | Path | None = None) -> Agent:
    """Rebuild the agent saved under `directory` (a local directory, or a Hub repo `"namespace/name@rev"`
    or `"namespace/name"` with `revision`). For a method acting in codes, `codebook` (or its hash as a
    string) must match the one it was trained with. Raises AgentArtifactError when the files do not agree."""
    from pipeline.agents import AGENTS
    from pipeline.hub import resolve_artifact_dir

    directory, hub_ref = resolve_artifact_dir(directory, revision, cache_dir=cache_dir)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    where = hub_ref or str(directory)
    if hub_ref is not None:
        redo = f"the Hub repo {hub_ref} holds a broken agent: push a fresh one (`maq hub push models/agents/<task>/<method>/seed<s> <repo>`) or pin another revision"
    else:
        redo = "re-run the stage that wrote it (`dvc repro finetune@<task>-<method>`; `dvc checkout` restores a cached copy)"

    def fail(message: str) -> AgentArtifactError:
        return AgentArtifactError(f"{where}: {message}; {redo}")

    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        raise fail(f"not an agent: {' and '.join(missing)} missing (an agent directory holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(config_path.read_text())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise fail(f"{CONFIG_FILE} is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise fail(f"{CONFIG_FILE} must hold a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise fail(f"agent format_version {meta.get('format_version')!r} in {CONFIG_FILE}, this code reads {FORMAT_VERSION}")
    if not isinstance(meta.get("weights_sha256"), str):
        raise fail(f"{CONFIG_FILE} lacks weights_sha256, the hash of {WEIGHTS_FILE}")
    actual = sha256_file(weights_path)
    if actual != meta["weights_sha256"]:
        raise fail(f"{WEIGHTS_FILE} ({weights_path.stat().st_size} bytes, sha256 {actual[:12]}…) does not match weights_sha256 "
                   f"{meta['weights_sha256'][:12]}… in {CONFIG_FILE}: the file is truncated or altered, or the two files come from different runs")
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            recorded = (f.metadata() or {}).get("config_sha256")
    except Exception as e:  # SafetensorError: the hash matched, so the file was saved broken
        raise fail(f"{WEIGHTS_FILE} cannot be read ({e})") from None
    if recorded != config_sha256(meta):
        raise fail(f"{CONFIG_FILE} was edited after the agent was saved (its content does not match the config_sha256 "
                   f"recorded in {WEIGHTS_FILE}); restore the original {CONFIG_FILE}")
    if meta.get("method") not in AGENTS:
        raise fail(f"method {meta.get('method')!r} in {CONFIG_FILE} is not a registered method")
    method = AGENTS[meta["method"]]
    if meta["codebook_hash"] is not None:
        if codebook is None:
            raise AgentArtifactError(f"{where}: this {method.name} agent acts in codes of codebook {meta['codebook_hash']}; pass it (codebook=...)")
        given = codebook if isinstance(codebook, str) else codebook.hash
        if given != meta["codebook_hash"]:
            raise AgentArtifactError(f"{where}: agent was trained on codebook {meta['codebook_hash']}, got codebook {given}; "
                                     "pass the codebook it was trained with")
    seed = meta.get("info", {}).get("seed", 0)
    try:
        agent = method(meta["obs_dim"], space_from_dict(meta["action_space"]), method.config_from_dict(meta["config"]), device,
                       seeds=(seed,))
        weights = load_file(str(weights_path), device=str(agent.device))
        agent.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # recorded by another version of this code
        raise fail(f"{WEIGHTS_FILE} does not fit the {meta['method']} agent {CONFIG_FILE} describes ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    agent.execute_steps = meta.get("execute_steps")
    return agent
