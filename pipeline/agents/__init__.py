"""RL backends and the macro-action layer. Look methods up in `AGENTS`, never by if-chains:

    agent = AGENTS[name](obs_dim, action_space, config=None, device=None)   # config None: preset
    agent.act(obs, deterministic) -> action (A,) in [-1, 1] | int code
    agent.update(batch) -> dict[str, float]      # batch: see pipeline.agents.replay
    agent.state_dict() / agent.load_state_dict(...)
    save_agent(agent, directory, codebook_hash=...) / load_agent(directory, codebook=...)

| name       | backend            | acts in   | data                                    |
|------------|--------------------|-----------|-----------------------------------------|
| sac        | sac.SAC            | actions   | online                                  |
| rlpd       | sac.SAC (RLPD cfg) | actions   | 50/50 demonstrations / online           |
| iql        | iql.IQL            | actions   | offline, then online                    |
| dsac       | dsac.DSAC          | any Discrete | online (plain discrete SAC backend)  |
| maq_rlpd   | dsac.DSAC (RLPD cfg) | codes   | 50/50 demo macro transitions / online   |
| maq_dsac   | dsac.DSAC          | codes     | online                                  |
| maq_iql    | discrete_iql       | codes     | offline, then online                    |

`PRESETS` holds further named configs (e.g. `maq_rlpd_official`, the official MAQ+RLPD settings).
"""

from __future__ import annotations

from pipeline.agents.artifact import load_agent, save_agent
from pipeline.agents.base import Agent, Method
from pipeline.agents.discrete_iql import MAQ_IQL_CONFIG, DiscreteIQL
from pipeline.agents.dsac import DSAC, DSAC_CONFIG, MAQ_DSAC_CONFIG, MAQ_RLPD_CONFIG, MAQ_RLPD_OFFICIAL_CONFIG
from pipeline.agents.iql import IQL, IQL_CONFIG
from pipeline.agents.sac import RLPD_CONFIG, SAC, SAC_CONFIG

AGENTS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("sac", SAC, SAC_CONFIG, doc="SAC, auto entropy (target −A)"),
        Method("rlpd", SAC, RLPD_CONFIG, doc="RLPD: SAC + 10 LayerNorm critics (min of 2), UTD 20, 50/50 demo batches"),
        Method("iql", IQL, IQL_CONFIG, offline_phase=True, doc="IQL, offline then online"),
        Method("dsac", DSAC, DSAC_CONFIG, discrete=True, doc="discrete SAC backend"),
        Method("maq_rlpd", DSAC, MAQ_RLPD_CONFIG, discrete=True, macro=True, doc="discrete SAC over codes with the RLPD recipe"),
        Method("maq_dsac", DSAC, MAQ_DSAC_CONFIG, discrete=True, macro=True, doc="discrete SAC over codes, online only"),
        Method("maq_iql", DiscreteIQL, MAQ_IQL_CONFIG, discrete=True, macro=True, offline_phase=True, doc="discrete IQL over codes + KL to a code prior"),
    ]
}

# Named config overrides for comparison: preset name → (method, config).
PRESETS = {
    "maq_rlpd_official": ("maq_rlpd", MAQ_RLPD_OFFICIAL_CONFIG),
}

__all__ = ["AGENTS", "PRESETS", "Agent", "Method", "save_agent", "load_agent"]
