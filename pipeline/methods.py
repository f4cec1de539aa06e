"""The method registry, torch-free: method names, what each acts in, and the backend configs.

`params.yaml` validation (`pipeline.config`), the stages' argument checks, the sweep and the
report read this module; only training and acting (`pipeline.agents`) import torch.

| name       | backend       | acts in      | data                                    | DAG group |
|------------|---------------|--------------|-----------------------------------------|-----------|
| sac        | sac           | actions      | online                                  | baselines |
| rlpd       | sac (RLPD cfg)| actions      | 50/50 demonstrations / online           | baselines |
| iql        | iql           | actions      | offline, then online                    | baselines |
| maq_rlpd   | dsac (RLPD cfg)| codes       | 50/50 demo macro transitions / online   | maq       |
| maq_dsac   | dsac          | codes        | online                                  | maq       |
| maq_iql    | discrete_iql  | codes        | offline, then online                    | maq       |
| dsac       | dsac          | any Discrete | online (the plain discrete SAC backend; benchmarks only) | — |

A backend config is a frozen dataclass of the backend's hyperparameters; a method is a backend
plus a config delta (RLPD = SAC + 10 LayerNorm critics, UTD 20, 50/50 batches). `PRESETS` holds
further named configs (e.g. `maq_rlpd_official`, the official MAQ+RLPD settings).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


# -- backend configs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SACConfig:
    """Soft Actor-Critic over continuous actions (`pipeline/agents/sac.py`)."""

    hidden: tuple[int, ...] = (256, 256)  # actor and critic hidden widths
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    gamma: float = 0.99  # discount per env step (macro steps bootstrap with γ^h)
    tau: float = 0.005  # target-network Polyak rate
    batch_size: int = 256  # rows per gradient step
    n_critics: int = 2  # E, critics in the (batched) ensemble
    critic_subset: int = 2  # targets take the min over this many random members
    critic_layer_norm: bool = False
    actor_q: str = "min"  # how the actor reads the ensemble: "min" (SAC) or "mean" (RLPD)
    utd: int = 1  # critic steps per env step (update-to-data ratio); one actor step per round
    update_every: int = 1  # env steps between update rounds
    init_temperature: float = 1.0
    target_entropy_scale: float = 1.0  # target entropy = −scale · A
    backup_entropy: bool = True  # subtract α log π in the critic target
    warmup_steps: int = 5_000  # uniform-random env steps before learning (training loop)
    buffer_size: int = 1_000_000  # online replay capacity (training loop)
    offline_ratio: float = 0.0  # share of each batch from demonstrations (0: online only)


@dataclass(frozen=True)
class DSACConfig:
    """Discrete SAC (`pipeline/agents/dsac.py`), the backend of MAQ+DSAC and MAQ+RLPD."""

    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    gamma: float = 0.99  # discount per env step; a macro of h steps bootstraps with γ^h
    tau: float = 0.005
    batch_size: int = 256
    n_critics: int = 2  # E
    critic_subset: int = 2  # targets: min over this many random members
    critic_layer_norm: bool = False
    actor_q: str = "min"  # "min" or "mean" over the ensemble for the actor
    utd: int = 1  # critic steps per update round
    update_every: int = 1  # env (macro) steps between update rounds
    init_temperature: float = 1.0
    fixed_temperature: float | None = None  # a number fixes α (no tuning)
    target_entropy_scale: float = 0.5  # target entropy = scale · log K
    warmup_steps: int = 5_000  # uniform-random (macro) steps before learning (training loop)
    buffer_size: int = 1_000_000  # online replay capacity (training loop)
    offline_ratio: float = 0.0  # share of each batch from demonstrations


@dataclass(frozen=True)
class IQLConfig:
    """Implicit Q-Learning over continuous actions (`pipeline/agents/iql.py`, CORL's fine-tune IQL)."""

    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4  # Q and V
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256
    expectile: float = 0.7  # τ of the value's expectile regression
    beta: float = 3.0  # inverse temperature of the advantage weights
    max_weight: float = 100.0  # advantage weights are clipped here
    normalize_obs: bool = True  # normalize with train-split statistics (set_obs_stats)
    warmup_steps: int = 0  # random steps before online learning (training loop; IQL starts from offline)
    update_every: int = 1  # env (macro) steps between updates (training loop)
    buffer_size: int = 1_000_000
    offline_ratio: float = 0.0  # 0: online rows are appended to the demonstrations' buffer (CORL)


@dataclass(frozen=True)
class DiscreteIQLConfig:
    """Discrete IQL over codes with a behaviour prior (`pipeline/agents/discrete_iql.py`), MAQ+IQL."""

    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4  # Q and V
    prior_lr: float = 3e-4
    gamma: float = 0.99  # per env step; a macro of h steps bootstraps with γ^h
    tau: float = 0.005
    batch_size: int = 256  # (the official MAQ+IQL uses 32)
    expectile: float = 0.7
    beta: float = 3.0
    max_weight: float = 100.0
    prior_kl_coef: float = 0.5  # λ of KL(prior ‖ π)
    normalize_obs: bool = True
    warmup_steps: int = 0
    update_every: int = 1  # env (macro) steps between updates (training loop)
    buffer_size: int = 1_000_000
    offline_ratio: float = 0.0


SAC_CONFIG = SACConfig()
RLPD_CONFIG = replace(
    SAC_CONFIG, n_critics=10, critic_subset=2, critic_layer_norm=True, actor_q="mean", utd=20,
    target_entropy_scale=0.5, warmup_steps=10_000, offline_ratio=0.5,
)
IQL_CONFIG = IQLConfig()
DSAC_CONFIG = DSACConfig()
MAQ_DSAC_CONFIG = DSAC_CONFIG
MAQ_RLPD_CONFIG = replace(
    DSAC_CONFIG, n_critics=10, critic_subset=2, critic_layer_norm=True, actor_q="mean", utd=20,
    warmup_steps=10_000, offline_ratio=0.5,
)
MAQ_RLPD_OFFICIAL_CONFIG = replace(  # the official MAQ+RLPD code's settings (reference/MAQ.md)
    DSAC_CONFIG, n_critics=2, critic_layer_norm=False, critic_lr=1e-3, fixed_temperature=0.2, batch_size=128,
    utd=1, update_every=8, warmup_steps=8_000, buffer_size=10_000, offline_ratio=0.5,
)
MAQ_IQL_CONFIG = DiscreteIQLConfig()


# -- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Method:
    """A registry entry. `backend`: the module of `pipeline.agents` that implements it.
    `discrete`: it acts in a Discrete space; `macro`: in codes of a codebook (its env is a
    `MacroActionEnv`); `offline_phase`: it first updates on the demonstrations alone, then keeps
    them in the online buffer; a config with `offline_ratio` > 0 samples 50/50 batches.
    `group`: the `params.yaml` `methods` group the DAG trains it in (None: not a DAG method)."""

    name: str
    backend: str
    default_config: Any
    group: str | None
    discrete: bool = False
    macro: bool = False
    offline_phase: bool = False
    doc: str = ""

    @property
    def config_class(self) -> type:
        return type(self.default_config)

    def config_from_dict(self, d: dict) -> Any:
        """Rebuild a config from its JSON dict (lists back to tuples); unknown keys raise."""
        known = asdict(self.default_config)
        unknown = set(d) - set(known)
        if unknown:
            raise KeyError(f"{self.name} config has no keys {sorted(unknown)}")
        return self.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("sac", "sac", SAC_CONFIG, "baselines", doc="SAC, auto entropy (target −A)"),
        Method("rlpd", "sac", RLPD_CONFIG, "baselines",
               doc="RLPD: SAC + 10 LayerNorm critics (min of 2), UTD 20, 50/50 demo batches"),
        Method("iql", "iql", IQL_CONFIG, "baselines", offline_phase=True, doc="IQL, offline then online"),
        Method("dsac", "dsac", DSAC_CONFIG, None, discrete=True, doc="discrete SAC backend"),
        Method("maq_rlpd", "dsac", MAQ_RLPD_CONFIG, "maq", discrete=True, macro=True,
               doc="discrete SAC over codes with the RLPD recipe"),
        Method("maq_dsac", "dsac", MAQ_DSAC_CONFIG, "maq", discrete=True, macro=True, doc="discrete SAC over codes, online only"),
        Method("maq_iql", "discrete_iql", MAQ_IQL_CONFIG, "maq", discrete=True, macro=True, offline_phase=True,
               doc="discrete IQL over codes + KL to a code prior"),
    ]
}

# Named config overrides for comparison: preset name → (method, config).
PRESETS = {"maq_rlpd_official": ("maq_rlpd", MAQ_RLPD_OFFICIAL_CONFIG)}


def dag_methods(group: str | None = None) -> list[str]:
    """Names of the methods the DAG trains (in `group` "baselines" or "maq", or both)."""
    return [n for n, m in METHODS.items() if m.group is not None and (group is None or m.group == group)]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def _check_type(where: str, value, default) -> None:
    """`value` must have the type of the config field's default (ints pass for floats; lists for tuples)."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    elif isinstance(default, int):
        ok = isinstance(value, int)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # a None default (fixed_temperature): a number or null
        ok = value is None or isinstance(value, (int, float))
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{where} is {value!r}, which is not a valid {type(default).__name__}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"{where} is {value!r}; backend settings are ≥ 0")


def check_overrides(method: str, overrides: dict) -> None:
    """Raise ValueError naming the key when `overrides` (params.yaml `agents.<method>`) do not fit."""
    config = method_config(method, overrides)
    defaults = asdict(get_method(method).default_config)
    for key, value in overrides.items():
        if key != "preset":
            _check_type(f"agents.{method}.{key}", value, defaults[key])
    for key in ("batch_size", "utd", "update_every", "n_critics", "critic_subset", "buffer_size"):
        if hasattr(config, key) and getattr(config, key) < 1:
            raise ValueError(f"agents.{method}.{key} is {getattr(config, key)}, outside its valid range [1, inf)")
    for key in ("gamma", "tau", "expectile", "offline_ratio"):
        if hasattr(config, key) and not 0 <= getattr(config, key) <= 1:
            raise ValueError(f"agents.{method}.{key} is {getattr(config, key)}, outside its valid range [0, 1]")


def method_config(method: str, overrides: dict):
    """The backend config of `method` with `overrides` (params.yaml `agents.<method>`) applied.
    The key `preset` starts from a named preset of `PRESETS` instead of the method's default."""
    overrides = dict(overrides)
    base = get_method(method).default_config
    if "preset" in overrides and not isinstance(overrides["preset"], str):
        raise ValueError(f"agents.{method}.preset must be a preset name, got {overrides['preset']!r}")
    if "preset" in overrides:
        name = overrides.pop("preset")
        if name not in PRESETS or PRESETS[name][0] != method:
            fits = [p for p, (m, _) in PRESETS.items() if m == method]
            raise ValueError(f"agents.{method}.preset {name!r} is not a preset of {method}; presets of {method}: {fits or 'none'}")
        base = PRESETS[name][1]
    known = asdict(base)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"agents.{method} sets unknown config keys {unknown}; {type(base).__name__} has: {', '.join(known)}")
    values = {k: tuple(v) if isinstance(known[k], tuple) else v for k, v in overrides.items()}
    return replace(base, **values)
