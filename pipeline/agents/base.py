"""What every backend shares: the agent interface, action-space bookkeeping and batch conversion.

Every backend is an `nn.Module` subclass of `Agent`, so `state_dict()` / `load_state_dict()` hold
all its weights, its temperature and its normalizer statistics (buffers). Optimizer state is not
part of it (resumable checkpoints are the finetune stage's business).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def space_to_dict(space: gym.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "box", "shape": list(space.shape), "low": space.low.tolist(), "high": space.high.tolist()}
    raise TypeError(f"unsupported action space {space!r}")


def space_from_dict(d: dict) -> gym.Space:
    if d["type"] == "discrete":
        return gym.spaces.Discrete(d["n"])
    return gym.spaces.Box(np.asarray(d["low"], np.float32), np.asarray(d["high"], np.float32), dtype=np.float32)


def require_box(action_space: gym.Space, name: str) -> int:
    """The action dim A of a Box in [-1, 1]; anything else raises with what to do."""
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise TypeError(f"{name} needs a 1-D Box action space, got {action_space!r}")
    if not (np.allclose(action_space.low, -1.0) and np.allclose(action_space.high, 1.0)):
        raise ValueError(
            f"{name} acts in [-1, 1] but the action space is [{action_space.low}, {action_space.high}]; "
            "wrap the env in gymnasium.wrappers.RescaleAction(env, -1.0, 1.0)"
        )
    return int(action_space.shape[0])


def require_discrete(action_space: gym.Space, name: str) -> int:
    """The number of actions K of a Discrete space."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"{name} needs a Discrete action space (codes for MAQ), got {action_space!r}")
    return int(action_space.n)


class Agent(nn.Module):
    """Common interface of all backends.

    - `act(obs, deterministic)`: obs `(S,)` → action `(A,)` in [-1, 1] or an int code;
      obs `(B, S)` → `(B, A)` or `(B,)`.
    - `update(batch)`: one call = one update round on a batch of `update_batch_size` rows
      (`utd` critic steps on consecutive minibatches of `batch_size`, one actor step); returns
      float losses.
    - `state_dict()` / `load_state_dict()` from `nn.Module`.
    """

    method: str = ""  # registry name, set by the builder

    def __init__(self, obs_dim: int, action_space: gym.Space, config: Any, device: torch.device):
        super().__init__()
        self.obs_dim = obs_dim
        self.action_space = action_space
        self.config = config
        self.device = torch.device(device)

    def set_obs_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the train split's observation statistics (buffers, saved with the weights).
        Backends without a `normalizer` submodule (an ObsNormalizer) ignore them."""
        if self.obs_normalizer is not None:
            self.obs_normalizer.set_stats(mean, std)

    @property
    def obs_normalizer(self) -> nn.Module | None:
        return getattr(self, "normalizer", None)  # a submodule lives in nn.Module's registry, not on the class

    def norm(self, obs: torch.Tensor) -> torch.Tensor:
        return self.obs_normalizer(obs) if self.obs_normalizer is not None and self.config.normalize_obs else obs

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The backend's optimizers by attribute name (their state goes into resumable checkpoints)."""
        return {name: value for name, value in vars(self).items() if isinstance(value, torch.optim.Optimizer)}

    @property
    def update_batch_size(self) -> int:
        return self.config.batch_size * getattr(self.config, "utd", 1)

    def to_torch(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Numpy batch → tensors on the agent's device (floats as float32, actions as given)."""
        out = {}
        for key, value in batch.items():
            t = torch.as_tensor(np.asarray(value))
            if key == "action" and isinstance(self.action_space, gym.spaces.Discrete):
                t = t.long()
            elif key == "demo":
                t = t.bool()
            else:
                t = t.float()
            out[key] = t.to(self.device, non_blocking=True)
        if "steps" not in out:
            out["steps"] = torch.ones_like(out["reward"])
        return out

    def discount(self, steps: torch.Tensor) -> torch.Tensor:
        """γ^h for transitions that spanned h env steps."""
        return self.config.gamma ** steps

    def obs_tensor(self, obs: np.ndarray) -> tuple[torch.Tensor, bool]:
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
        single = obs.dim() == 1
        return (obs.unsqueeze(0) if single else obs), single

    @staticmethod
    def minibatches(batch: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
        """Split a batch into `n` equal consecutive minibatches (RLPD's UTD scheme)."""
        size = len(batch["reward"])
        if size % n:
            raise ValueError(f"batch of {size} rows does not split into utd={n} minibatches")
        m = size // n
        return [{k: v[i * m : (i + 1) * m] for k, v in batch.items()} for i in range(n)]


@dataclass(frozen=True)
class Method:
    """A registry entry: `AGENTS[name](obs_dim, action_space, config=None, device=None)`.

    `config=None` takes `default_config`. `discrete`: the method needs a Discrete action space;
    `macro`: it acts in codes (its env must be a `MacroActionEnv`). `offline_phase`: the training
    loop first updates on the demonstrations alone, then keeps them in the online buffer. A
    config's `offline_ratio` > 0 says the training loop samples batches with a MixedSampler.
    """

    name: str
    agent_class: Callable[..., Agent]
    default_config: Any
    discrete: bool = False  # acts in a Discrete space (codes for MAQ methods)
    macro: bool = False
    offline_phase: bool = False  # trains on the demonstrations alone before going online (IQL)
    doc: str = ""

    @property
    def config_class(self) -> type:
        return type(self.default_config)

    def __call__(self, obs_dim: int, action_space: gym.Space, config: Any = None, device=None) -> Agent:
        config = self.default_config if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}")
        from pipeline.agents.networks import default_device

        agent = self.agent_class(obs_dim, action_space, config, default_device() if device is None else device)
        agent.method = self.name
        return agent.to(agent.device)

    def config_from_dict(self, d: dict) -> Any:
        """Rebuild a config from its JSON dict (lists back to tuples); unknown keys raise."""
        known = asdict(self.default_config)
        unknown = set(d) - set(known)
        if unknown:
            raise KeyError(f"{self.name} config has no keys {sorted(unknown)}")
        return self.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
