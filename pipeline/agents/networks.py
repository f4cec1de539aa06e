"""Networks shared by the backends, all with a leading member axis, and the population optimizer.

A *population* is P independent agents (one per seed) trained in one process. Every network
carries a leading member axis: an actor is `EnsembleMLP(P, …)` (weights `(P, in, out)`), a
critic ensemble of E critics per agent is `CriticEnsemble(P, E, …)` (weights `(P·E, in, out)`,
member-major). Each layer is one batched matmul (`torch.baddbmm`), so P agents × E critics cost
one kernel per layer, not P·E Python calls.

Members never mix: every loss is a per-member mean summed over members (so member i's gradient
is exactly its own loss's), `PopulationAdam` is elementwise with a step count per member, and
each member draws its initial weights and its noise from its own generator (`member_randn`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class EnsembleLinear(nn.Module):
    """M independent linear layers applied at once: (M, B, in) → (M, B, out)."""

    def __init__(self, n_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init range, per member
        self.weight = nn.Parameter(torch.empty(n_members, in_dim, out_dim).uniform_(-self.bound, self.bound))  # (M, in, out)
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_dim).uniform_(-self.bound, self.bound))  # (M, 1, out)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """(M', B, in) → (M', B, out), with M' = M or only the `members` given (indices)."""
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate scale and shift per member: (M, B, D) → (M, B, D)."""

    def __init__(self, n_members: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_members, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n_members, 1, dim))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return F.layer_norm(x, x.shape[-1:]) * weight + bias


class EnsembleMLP(nn.Module):
    """M MLPs with identical architecture evaluated together (ReLU, optional LayerNorm before
    each ReLU, linear output). Input (B, in) is shared by all members; (M, B, in) gives each
    member its own input. Output (M, B, out). `members` (indices) evaluates only those: (M', B, out)."""

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
            x = x.unsqueeze(0).expand(n, *x.shape)  # (M', B, in), no copy
        for layer in self.net:
            x = layer(x, members) if isinstance(layer, (EnsembleLinear, EnsembleLayerNorm)) else layer(x)
        return x


class CriticEnsemble(nn.Module):
    """E critics for each of P agents: one `EnsembleMLP(P·E, …)`, member-major (agent p owns rows
    p·E … p·E + E − 1). Input (P, B, in) → (P, E, B, out)."""

    def __init__(self, population: int, n_critics: int, in_dim: int, hidden: Sequence[int], out_dim: int,
                 layer_norm: bool = False):
        super().__init__()
        self.population, self.n_critics = population, n_critics
        self.mlp = EnsembleMLP(population * n_critics, in_dim, hidden, out_dim, layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        P, E = self.population, self.n_critics
        x = x.unsqueeze(1).expand(P, E, *x.shape[1:]).reshape(P * E, *x.shape[1:])  # (P·E, B, in)
        return self.mlp(x).view(P, E, x.shape[1], -1)

    def subset_min(self, x: torch.Tensor, subsets: torch.Tensor) -> torch.Tensor:
        """RLPD's target: per agent, the min over its drawn subset of critics `subsets` (P, k)
        (indices < E). Only the drawn critics are evaluated, as ikostrikov/rlpd subsamples the
        target parameters. (P, B, in) → (P, B, out). With k ≥ E it is the plain clipped min."""
        P, E = self.population, self.n_critics
        k = subsets.shape[1]
        if k >= E:
            return self(x).min(dim=1).values
        members = (subsets + E * torch.arange(P, device=subsets.device).unsqueeze(1)).reshape(-1)  # (P·k,)
        x = x.unsqueeze(1).expand(P, k, *x.shape[1:]).reshape(P * k, *x.shape[1:])
        return self.mlp(x, members).view(P, k, x.shape[1], -1).min(dim=1).values


def member_generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    """One generator per member, seeded with its run seed (for init, noise and critic subsets)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def init_members(module: nn.Module, generators: list[torch.Generator]) -> None:
    """Draw every `EnsembleLinear` of `module` again, member p's rows from `generators[p]`
    (nn.Linear's uniform range), so a member's initial weights depend on its seed alone."""
    P = len(generators)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, EnsembleLinear):
                for p in (layer.weight, layer.bias):
                    rows = p.view(P, -1)  # member-major rows (P, …)
                    for i, g in enumerate(generators):
                        rows[i].uniform_(-layer.bound, layer.bound, generator=g)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Inside the block `module`'s parameters record no gradients: a loss backpropagated through
    it (an actor's loss through the critics) gets the input gradients only, which saves the
    weight-gradient matmuls that the module's own optimizer would zero anyway."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def soft_update(target: nn.Module, source: nn.Module, tau: float, active: torch.Tensor | None = None) -> None:
    """Polyak averaging `target ← (1 − τ) target + τ source`, for the `active` members only."""
    with torch.no_grad():
        targets, sources = list(target.parameters()), list(source.parameters())
        if active is None:
            torch._foreach_lerp_(targets, sources, tau)
        else:
            for t, s in zip(targets, sources):
                t.lerp_(s, tau * member_mask(active, t))


def per_member(values: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """Per-member `values` (P,) broadcastable against a member-major `tensor` whose leading dim
    is P·m (m rows per member): (P·m, 1, …)."""
    m = tensor.shape[0] // values.shape[0]
    return values.to(tensor.dtype).repeat_interleave(m).view(-1, *([1] * (tensor.dim() - 1)))


def member_mask(active: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`active` (P,) bool as a float mask against a member-major `tensor`."""
    return per_member(active, tensor)


class PopulationAdam:
    """Adam (torch.optim.Adam's update, no weight decay) over member-major stacked parameters,
    with a step count per member, so that a member that skips a round (`active` false) is left
    exactly as it was: its weights, moments and step count do not move.

    Elementwise, so member i's update is the one its own Adam would make. When every member
    steps from one count (the usual case), it is torch's foreach Adam math with the bias
    corrections computed on the host; with `fused` (set on CUDA) it is torch's fused Adam kernel,
    which reads the step count from the device: one kernel per step, nothing computed on the host
    from a changing count, so the step can be captured in a CUDA graph and replayed.

    `counts` mirrors the step counts on the host while it is known there (None once a step's
    mask was computed on the device, e.g. `only` members with demonstrations in the batch); it
    decides between the shared-count path and the masked one without reading the device."""

    def __init__(self, params, population: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, fused: bool = False):
        self.params = [p for p in params if p.requires_grad]
        self.population, self.lr, self.betas, self.eps, self.fused = population, lr, betas, eps, fused
        device = self.params[0].device if self.params else None
        self.step_count = torch.zeros(population, device=device)  # (P,)
        self.counts: list[int] | None = [0] * population  # the same counts on the host, None when unknown there
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @property
    def shared_count(self) -> bool:
        """Every member is at the same, host-known step count (the unmasked step takes the shared path)."""
        return self.counts is not None and len(set(self.counts)) == 1

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None, active_host: np.ndarray | None = None) -> None:
        """Step the `active` members (None: all). `active_host` is the same mask on the host, when
        known there (it keeps `counts`); without it the counts become unknown on the host."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        index = [i for i, p in enumerate(self.params) if p.grad is not None]
        exp_avg, exp_avg_sq = [self.exp_avg[i] for i in index], [self.exp_avg_sq[i] for i in index]
        grads = [p.grad for p in params]
        beta1, beta2 = self.betas
        if active is None and self.shared_count:  # all step, from one count
            self.step_count += 1
            self.counts = [c + 1 for c in self.counts]
            if self.fused:  # the kernel reads member 0's count, which is every member's
                steps = [self.step_count[0]] * len(params)
                torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, lr=self.lr, beta1=beta1, beta2=beta2,
                                   weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
                return
            step = self.counts[0]  # torch's foreach Adam math
            bias1, bias2_sqrt = 1 - beta1**step, (1 - beta2**step) ** 0.5
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, exp_avg, denom, -self.lr / bias1)
            return
        if active is None:
            active = torch.ones(self.population, dtype=torch.bool, device=self.step_count.device)
            active_host = np.ones(self.population, bool)
        self.step_count += active
        if self.counts is not None and active_host is not None:
            self.counts = [c + int(a) for c, a in zip(self.counts, active_host)]
        else:
            self.counts = None
        steps = self.step_count.clamp_min(1)
        for p, grad, m, v in zip(params, grads, exp_avg, exp_avg_sq):
            mask = member_mask(active, p)
            grad = grad * mask
            m.lerp_(grad, (1 - beta1) * mask)
            v.mul_(1 - (1 - beta2) * mask).addcmul_(grad, grad, value=1 - beta2)
            bias1, bias2 = per_member(1 - beta1**steps, p), per_member(1 - beta2**steps, p)
            denom = (v.sqrt() / bias2.sqrt()).add_(self.eps)
            p.sub_(mask * (self.lr / bias1) * m / denom)

    def apply(self, fn) -> None:
        """Apply a tensor function (a device move, from `Agent._apply`) to the state tensors."""
        self.step_count = fn(self.step_count)
        self.exp_avg = [fn(t) for t in self.exp_avg]
        self.exp_avg_sq = [fn(t) for t in self.exp_avg_sq]

    def sync_counts(self) -> None:
        """Read the step counts back to the host (after masks computed on the device)."""
        self.counts = [int(c) for c in self.step_count.tolist()]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {"step": self.step_count}
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            out[f"{i}.exp_avg"], out[f"{i}.exp_avg_sq"] = m, v
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, t in self.state_tensors().items():
            t.copy_(tensors[name])
        self.sync_counts()


class ObsNormalizer(nn.Module):
    """`(obs − mean) / std` with statistics stored as buffers, so they travel with the weights.
    Shared by all members (they train on the same demonstrations)."""

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
