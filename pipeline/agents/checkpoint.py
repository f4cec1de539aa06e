"""Resumable population checkpoints: everything a `train_population` run needs to continue.

One safetensors file, written atomically (`pipeline.io.save_checkpoint_file`): all members'
weights, every optimizer's moments and per-member step counts, each member's generator, replay
buffers and counters, and the run's fingerprint (a checkpoint of another run is ignored).
Checkpoints are taken when every member is at an episode boundary, so no env state is needed:
after kill -9, a resumed run ends with the same weights (on CPU) as one never interrupted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pipeline.agents.base import Agent
from pipeline.agents.train import Counters, Member
from pipeline.io import load_checkpoint_file, save_checkpoint_file


def run_fingerprint(*identity, demos: dict | None = None) -> str:
    """What a checkpoint must match to be resumed: the run's identity and settings (JSON-able) and data."""
    h = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for key in sorted(demos or {}):
        h.update(np.ascontiguousarray(demos[key]).tobytes())
    return h.hexdigest()


def save_population(path: Path, agent: Agent, members: list[Member], fingerprint: str) -> None:
    tensors = {f"agent.{k}": v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
    for name, optimizer in agent.optimizers().items():
        for key, value in optimizer.state_tensors().items():
            tensors[f"optim.{name}.{key}"] = value.detach().cpu().contiguous()
    for i, (g, m) in enumerate(zip(agent.generators, members)):
        tensors[f"rng.member{i}"] = g.get_state()
        for name, buffer in m.buffers.items():
            for key, column in buffer.data.items():
                tensors[f"buffer{i}.{name}.{key}"] = torch.from_numpy(np.ascontiguousarray(column[: buffer.size]))
    state = {
        "fingerprint": fingerprint,
        "members": [{
            "seed": m.seed,
            "counters": asdict(m.counters),
            "buffers": {name: {"size": b.size, "pos": b.pos, "rng": b.rng.bit_generator.state} for name, b in m.buffers.items()},
            "explore_rng": m.explore_rng.bit_generator.state,
        } for m in members],
    }
    save_checkpoint_file(path, tensors, state)


def load_population(path: Path, agent: Agent, members: list[Member], fingerprint: str) -> bool:
    """Restore `agent` and `members` in place; False when there is no checkpoint of this run."""
    loaded = load_checkpoint_file(path, fingerprint)
    if loaded is None:
        return False
    tensors, state = loaded
    agent.load_state_dict({k[len("agent."):]: v for k, v in tensors.items() if k.startswith("agent.")})
    for name, optimizer in agent.optimizers().items():
        prefix = f"optim.{name}."
        optimizer.load_state_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for i, (g, m, saved) in enumerate(zip(agent.generators, members, state["members"])):
        g.set_state(tensors[f"rng.member{i}"])
        for name, buffer in m.buffers.items():
            meta = saved["buffers"][name]
            for key, column in buffer.data.items():
                column[: meta["size"]] = tensors[f"buffer{i}.{name}.{key}"].numpy()
            buffer.size, buffer.pos = meta["size"], meta["pos"]
            buffer.rng.bit_generator.state = meta["rng"]
        m.explore_rng.bit_generator.state = saved["explore_rng"]
        m.counters = Counters(**saved["counters"])
        m.obs = None
    return True
