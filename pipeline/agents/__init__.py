"""RL backends and the macro-action layer. Method names, kinds and configs live in the torch-free
`pipeline.methods`; this package builds and trains the agents. Look methods up in `AGENTS`:

    agent = AGENTS[name](obs_dim, action_space, config=None, device=None, seeds=(seed,))  # config None: preset
    agent.act(obs, deterministic) -> action (A,) in [-1, 1] | int code       (one member)
    agent.act_members(obs (P, B, S), deterministic) -> (P, B, A) | (P, B)      (a population)
    agent.update(batch) / agent.update_members(batch, active)                 # see pipeline.agents.replay
    agent.member(i), agent.state_dict() / agent.load_state_dict(...)
    save_agent(agent, directory, codebook_hash=...) / load_agent(directory, codebook=...)

`seeds` makes a population: one independent agent per seed, trained together (see `base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym

from pipeline.agents.artifact import load_agent, save_agent
from pipeline.agents.base import Agent
from pipeline.agents.discrete_iql import DiscreteIQL
from pipeline.agents.dsac import DSAC
from pipeline.agents.iql import IQL
from pipeline.agents.sac import SAC
from pipeline.methods import METHODS, PRESETS, Method

BACKENDS: dict[str, type[Agent]] = {"sac": SAC, "dsac": DSAC, "iql": IQL, "discrete_iql": DiscreteIQL}


@dataclass(frozen=True)
class AgentBuilder:
    """A method of `pipeline.methods.METHODS` bound to its backend class."""

    spec: Method
    agent_class: type[Agent]

    def __getattr__(self, name: str) -> Any:  # name, discrete, macro, offline_phase, default_config, doc, …
        return getattr(self.spec, name)

    def __call__(self, obs_dim: int, action_space: gym.Space, config: Any = None, device=None,
                 seeds: Sequence[int] = (0,)) -> Agent:
        config = self.spec.default_config if config is None else config
        if not isinstance(config, self.spec.config_class):
            raise TypeError(f"{self.spec.name} takes a {self.spec.config_class.__name__}, got {type(config).__name__}")
        from pipeline.agents.networks import default_device

        agent = self.agent_class(obs_dim, action_space, config, default_device() if device is None else device, seeds)
        agent.method = self.spec.name
        return agent.to(agent.device)


AGENTS: dict[str, AgentBuilder] = {name: AgentBuilder(m, BACKENDS[m.backend]) for name, m in METHODS.items()}

__all__ = ["AGENTS", "PRESETS", "Agent", "save_agent", "load_agent"]
