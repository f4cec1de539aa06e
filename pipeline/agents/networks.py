"""Networks shared by the backends: an MLP, a batched critic ensemble, and the ensemble target.

The ensemble is ONE module whose parameters carry a leading member dimension `E`
(`weight: (E, in, out)`), evaluated with one batched matmul per layer (`torch.baddbmm`), so ten
critics cost about as much as one wide critic, not ten Python calls.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    """`in → hidden… → out` with ReLU (and LayerNorm before each ReLU if asked); linear output."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(nn.ReLU())
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied at once: (E, B, in) → (E, B, out)."""

    def __init__(self, n_members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init range, per member
        self.weight = nn.Parameter(torch.empty(n_members, in_dim, out_dim).uniform_(-bound, bound))  # (E, in, out)
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_dim).uniform_(-bound, bound))  # (E, 1, out)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """(E', B, in) → (E', B, out), with E' = E or only the `members` given (indices)."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate scale and shift per member: (E, B, D) → (E, B, D)."""

    def __init__(self, n_members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, dim))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return F.layer_norm(x, x.shape[-1:]) * weight + bias


class EnsembleMLP(nn.Module):
    """E MLPs with identical architecture evaluated together. Input (B, in) is shared by all
    members; (E, B, in) gives each member its own input. Output (E, B, out). `members`
    (indices) evaluates only those members: (E', B, out)."""

    def __init__(self, n_members: int, in_dim: int, hidden: Sequence[int], out_dim: int, layer_norm: bool = False):
        super().__init__()
        self.n_members = n_members
        layers: list[nn.Module] = []
        for width in hidden:
            layers.append(EnsembleLinear(n_members, in_dim, width))
            if layer_norm:
                layers.append(EnsembleLayerNorm(n_members, width))
            layers.append(nn.ReLU())
            in_dim = width
        layers.append(EnsembleLinear(n_members, in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        n = self.n_members if members is None else len(members)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(n, *x.shape)  # (E', B, in), no copy
        for layer in self.net:
            x = layer(x, members) if isinstance(layer, (EnsembleLinear, EnsembleLayerNorm)) else layer(x)
        return x

    def subset_min(self, x: torch.Tensor, subset_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """RLPD's target: min over a random subset of `subset_size` distinct members, (E', B, out)
        → (B, out). Only the drawn members are evaluated (as ikostrikov/rlpd subsamples the
        target parameters); one subset per call, shared by the batch. With `subset_size ≥ E`
        it is the plain clipped double-Q min."""
        if subset_size >= self.n_members:
            return self(x).min(dim=0).values
        members = random_subset(self.n_members, subset_size, generator).to(self.net[0].weight.device)
        return self(x, members).min(dim=0).values


def random_subset(n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`size` distinct indices out of `n`, drawn on the CPU (seeded by `generator`)."""
    return torch.randperm(n, generator=generator)[:size]


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging `target ← (1 − τ) target + τ source`."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


class ObsNormalizer(nn.Module):
    """`(obs − mean) / std` with statistics stored as buffers, so they travel with the weights."""

    def __init__(self, obs_dim: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def set_stats(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(self.eps))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std
