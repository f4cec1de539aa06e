"""What every backend shares: the population agent interface, member randomness, batch conversion.

Every backend is an `nn.Module` subclass of `Agent` holding a *population* of P agents, one per
run seed, each network with a leading member axis (`pipeline.agents.networks`). A single agent
is a population of one. `state_dict()` holds all members' weights, temperatures and the shared
observation normalizer (buffers); `member(i)` is member i alone, as a population of one (what
is saved per seed). Optimizer state is not part of the state dict (resumable checkpoints are the
training loop's business).

Members never interact: each has its own generator (initial weights, policy noise, critic
subsets), its own per-member losses and its own optimizer step count. `update_members(batch,
active)` runs one update round for the `active` members; the others are left exactly as they were.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pipeline.agents.networks import PopulationAdam, init_members, member_generators


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


def member_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over everything but the leading member axis: (P, …) → (P,)."""
    return x.reshape(x.shape[0], -1).mean(1)


class Agent(nn.Module):
    """Common interface of all backends (P = `population`, one member per seed).

    - `act(obs, deterministic)` (a population of one): obs `(S,)` → action `(A,)` in [-1, 1] or
      an int code; obs `(B, S)` → `(B, A)` or `(B,)`.
    - `act_members(obs, deterministic)`: obs `(P, B, S)` → `(P, B, A)` or `(P, B)`.
    - `update(batch)` (a population of one) / `update_members(batch, active)`: one update round on
      a batch of `update_batch_size` rows per member (`utd` critic steps on consecutive
      minibatches of `batch_size`, one actor step); columns `(P, N, …)` for `update_members`.
      Returns the losses, floats / `(P,)` arrays.
    - `member(i)`: member i as a population of one (for saving and evaluating one seed).
    """

    method: str = ""  # registry name, set by the builder
    # agents acting in codes: decoded actions executed per code before the next choice (n ≤ H;
    # None: the codebook's H). Set by the training run, saved with the agent, used by evaluation.
    execute_steps: int | None = None

    def __init__(self, obs_dim: int, action_space: gym.Space, config: Any, device: torch.device, seeds: Sequence[int]):
        super().__init__()
        if not seeds:
            raise ValueError("a population needs at least one member seed")
        self.obs_dim = obs_dim
        self.action_space = action_space
        self.config = config
        self.device = torch.device(device)
        self.seeds = tuple(int(s) for s in seeds)
        self.population = len(self.seeds)
        self.generators = member_generators(self.seeds, self.device)
        self.active: torch.Tensor | None = None  # (P,) bool inside an update round; None: all members
        self.active_host: np.ndarray | None = None  # the same mask on the host
        self.cuda_graphs = None  # a pipeline.agents.graphs.CudaGraphs once `use_cuda_graphs()` is called

    # -- construction helpers for subclasses --------------------------------------------------------
    def init_weights(self) -> None:
        """Draw every member's initial weights from its own generator (call after building the nets,
        which are on the CPU until the builder moves them: on CUDA a CPU generator of the member's
        seed draws them, so a seed starts from the same weights on either device)."""
        cpu = self.device.type == "cpu"
        init_members(self, self.generators if cpu else member_generators(self.seeds, torch.device("cpu")))

    def make_target(self, net: nn.Module) -> nn.Module:
        return copy.deepcopy(net).requires_grad_(False)

    def adam(self, params, lr: float) -> PopulationAdam:
        """The population optimizer; on CUDA torch's fused Adam kernel (capturable in a CUDA graph),
        on the CPU the foreach math that every locked result was computed with."""
        return PopulationAdam(params, self.population, lr, fused=self.device.type == "cuda")

    def _apply(self, fn, recurse=True):
        """`.to(device)` and friends move the optimizers' state along with the weights (the
        networks are built on the CPU; the builder moves the agent to its device)."""
        super()._apply(fn, recurse)
        for opt in self.optimizers().values():
            opt.apply(fn)
        return self

    def optimizers(self) -> dict[str, PopulationAdam]:
        """The backend's optimizers by attribute name (their state goes into resumable checkpoints)."""
        return {name: value for name, value in vars(self).items() if isinstance(value, PopulationAdam)}

    # -- normalization ----------------------------------------------------------------------------
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

    # -- member randomness ----------------------------------------------------------------------
    def _each_member(self, draw) -> torch.Tensor:
        """Stack `draw(generator)` over members; an inactive member draws nothing (zeros), so its
        generator does not advance."""
        active = self.active_host.tolist() if self.active_host is not None else [True] * self.population
        draws = [draw(g) if on else None for g, on in zip(self.generators, active)]
        like = next((x for x in draws if x is not None), None)
        if like is None:  # no member active: the shape from a throw-away generator
            like = draw(torch.Generator(device=self.device))
        return torch.stack([x if x is not None else torch.zeros_like(like) for x in draws])

    def member_randn(self, *shape: int) -> torch.Tensor:
        """Standard normal noise (P, *shape), member p's from its own generator."""
        return self._each_member(lambda g: torch.randn(shape, generator=g, device=self.device))

    def member_rand(self, *shape: int) -> torch.Tensor:
        """Uniform [0, 1) noise (P, *shape), member p's from its own generator."""
        return self._each_member(lambda g: torch.rand(shape, generator=g, device=self.device))

    def member_subsets(self, n: int, k: int) -> torch.Tensor:
        """(P, k) distinct indices < n per member (RLPD's random critic subsets)."""
        if k >= n:
            return torch.arange(n, device=self.device).expand(self.population, n)
        return self._each_member(lambda g: torch.randperm(n, generator=g, device=self.device)[:k])

    def sample_categorical(self, logits: torch.Tensor) -> torch.Tensor:
        """One draw per row of `logits` (P, B, K) by the Gumbel-max trick with member noise: (P, B)."""
        u = self.member_rand(*logits.shape[1:]).clamp_min(1e-20)
        return (logits - torch.log(-torch.log(u))).argmax(-1)

    # -- acting ----------------------------------------------------------------------------------
    def act_round(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions (P, B, A) or codes (P, B) at obs (P, B, S); stochastic draws use member noise."""
        raise NotImplementedError

    @contextmanager
    def members_active(self, active: np.ndarray | None) -> Iterator[None]:
        """Inside the block only the `active` members (bool (P,); None: all) draw noise and step."""
        partial = active is not None and not np.all(active)
        self.active_host = np.asarray(active, bool) if partial else None
        self.active = torch.as_tensor(self.active_host, device=self.device) if partial else None
        try:
            yield
        finally:
            self.active, self.active_host = None, None

    @torch.no_grad()
    def act_members(self, obs, deterministic: bool = False, active: np.ndarray | None = None) -> np.ndarray:
        """obs (P, B, S) → (P, B, A) or (P, B). Members not `active` draw no noise (their rows are
        computed but meaningless), so a member's stream does not depend on the others' schedule."""
        with self.members_active(active):
            obs = self.obs_tensor(obs)
            if self.cuda_graphs is not None and self.active is None:
                return self.cuda_graphs.act(obs, deterministic).cpu().numpy()
            return self.act_round(obs, deterministic).cpu().numpy()

    def act(self, obs: np.ndarray, deterministic: bool = False):
        """A population of one acting: obs (S,) or (B, S)."""
        if self.population != 1:
            raise ValueError(f"act() is for a single agent; this population has {self.population} members: use act_members")
        obs = np.asarray(obs, np.float32)
        single = obs.ndim == 1
        out = self.act_members(obs.reshape(1, -1, obs.shape[-1]), deterministic)[0]
        if single:
            return int(out[0]) if isinstance(self.action_space, gym.spaces.Discrete) else out[0]
        return out

    def obs_tensor(self, obs) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)  # (P, B, S)

    # -- updating --------------------------------------------------------------------------------
    @property
    def update_batch_size(self) -> int:
        return self.config.batch_size * getattr(self.config, "utd", 1)

    def to_torch(self, batch: dict) -> dict[str, torch.Tensor]:
        """Batch columns (P, N, …) → tensors on the agent's device (floats as float32, discrete
        actions as int64, `demo` as bool). A batch without `steps` spans one env step per row."""
        out = {}
        for key, value in batch.items():
            t = torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
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

    @staticmethod
    def minibatches(batch: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
        """Split each member's rows into `n` equal consecutive minibatches (RLPD's UTD scheme)."""
        size = batch["reward"].shape[1]
        if size % n:
            raise ValueError(f"batch of {size} rows does not split into utd={n} minibatches")
        m = size // n
        return [{k: v[:, i * m : (i + 1) * m] for k, v in batch.items()} for i in range(n)]

    def step(self, optimizer: PopulationAdam, loss: torch.Tensor, only: torch.Tensor | None = None) -> None:
        """Backpropagate the sum of the per-member losses `loss` (P,) and step the active members
        (and of those, `only` the members marked there, when given)."""
        optimizer.zero_grad()
        loss.sum().backward()
        active, active_host = self.active, self.active_host
        if only is not None:  # computed on the device: the host no longer knows who stepped
            active, active_host = (only if active is None else active & only), None
        optimizer.step(active, active_host)

    def update_round(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One update round on tensors (P, N, …); returns per-member losses (P,). No host sync."""
        raise NotImplementedError

    def train_round(self, batch, active: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """One update round of the `active` members (None: all) on batch columns (P, N, …), numpy
        or tensors, or on what `batch()` returns when it is a function: an on-device sampler
        (`DeviceReplay.sample`), called inside the round, so that sampling is part of a captured
        graph. Returns the per-member losses as device tensors, unread (no host sync). With
        `use_cuda_graphs()` a round of all members replays a captured CUDA graph."""
        with self.members_active(active):
            if self.cuda_graphs is not None and self.active is None:
                return self.cuda_graphs.update(batch if callable(batch) else self.to_torch(batch))
            return self.update_round(self.to_torch(batch() if callable(batch) else batch))

    def update_members(self, batch: dict, active: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`train_round`, with the losses read back to the host."""
        return {k: v.detach().cpu().numpy() for k, v in self.train_round(batch, active).items()}

    def use_cuda_graphs(self, warmup_rounds: int = 3) -> None:
        """Capture every update round of all members (and every acting call) as a CUDA graph after
        `warmup_rounds` eager ones, and replay it from then on (`pipeline.agents.graphs`). CUDA only."""
        from pipeline.agents.graphs import CudaGraphs

        self.cuda_graphs = CudaGraphs(self, warmup_rounds)

    def update(self, batch: dict) -> dict[str, float]:
        """A population of one: batch columns (N, …)."""
        if self.population != 1:
            raise ValueError(f"update() is for a single agent; this population has {self.population} members")
        info = self.update_members({k: np.asarray(v)[None] for k, v in batch.items()})
        return {k: float(v[0]) for k, v in info.items()}

    # -- members -----------------------------------------------------------------------------------
    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's weights, shaped as a population of one (shared buffers copied)."""
        params = {name for name, _ in self.named_parameters()}
        out = {}
        for name, t in self.state_dict().items():
            if name in params:
                rows = t.shape[0] // self.population
                t = t[i * rows : (i + 1) * rows]
            out[name] = t.detach().clone()
        return out

    def member(self, i: int) -> "Agent":
        """Member i alone: a new population of one with its weights (no optimizer state)."""
        one = type(self)(self.obs_dim, self.action_space, self.config, self.device, seeds=(self.seeds[i],)).to(self.device)
        one.method, one.execute_steps = self.method, self.execute_steps
        one.load_state_dict(self.member_state_dict(i))
        one.generators[0].set_state(self.generators[i].get_state())
        return one
