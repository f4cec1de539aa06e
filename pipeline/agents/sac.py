"""Soft Actor-Critic (continuous actions), and RLPD as a config delta of it.

SAC (Haarnoja et al. 2018): a tanh-squashed Gaussian policy, a critic ensemble trained on the
soft Bellman target, and an automatically tuned temperature α that holds the policy entropy near
a target (−A for SAC, stable-baselines3's default).

RLPD (Ball et al. 2023, ikostrikov/rlpd) is the same algorithm with
  - 10 critics with LayerNorm, targets taking the min over a random subset of 2,
  - update-to-data ratio 20 (20 critic steps per env step, one actor step),
  - the actor maximizing the *mean* of the ensemble,
  - initial temperature 1.0 and target entropy −A/2,
  - each batch half demonstrations, half online (`MixedSampler(offline_ratio=0.5)`, built by
    the training loop from `offline_ratio`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.agents.base import Agent, require_box
from pipeline.agents.networks import EnsembleMLP, mlp, soft_update

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class SACConfig:
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


SAC_CONFIG = SACConfig()
RLPD_CONFIG = replace(
    SAC_CONFIG,
    n_critics=10,
    critic_subset=2,
    critic_layer_norm=True,
    actor_q="mean",
    utd=20,
    target_entropy_scale=0.5,
    warmup_steps=10_000,
    offline_ratio=0.5,
)


class TanhGaussianActor(nn.Module):
    """obs → tanh(Normal(μ, σ)); log-probabilities corrected for the tanh squashing."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, 2 * action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (B, S) → 2 × (B, A)
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action (B, A) in (−1, 1) and its log-probability (B,)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * torch.randn_like(mean)
        action = torch.tanh(u)
        # log N(u) − Σ log(1 − tanh(u)²), the latter written stably as 2(log 2 − u − softplus(−2u))
        log_prob = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_prob = log_prob - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return action, log_prob


class SAC(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: SACConfig, device):
        super().__init__(obs_dim, action_space, config, device)
        action_dim = require_box(action_space, "sac")
        self.actor = TanhGaussianActor(obs_dim, action_dim, config.hidden)
        self.critic = EnsembleMLP(config.n_critics, obs_dim + action_dim, config.hidden, 1, config.critic_layer_norm)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(config.init_temperature))))
        self.target_entropy = -config.target_entropy_scale * action_dim
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))  # critic subsets; follows torch.manual_seed

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def q_values(self, critic: EnsembleMLP, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)  # (E, B)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs, single = self.obs_tensor(obs)
        if deterministic:
            action = torch.tanh(self.actor(obs)[0])
        else:
            action = self.actor.sample(obs)[0]
        action = action.cpu().numpy()
        return action[0] if single else action

    @torch.no_grad()
    def soft_value_target(self, next_obs: torch.Tensor) -> torch.Tensor:
        """min over a random `critic_subset` of target critics of Q(s', a') − α log π(a'|s'): (B,)."""
        next_action, next_log_prob = self.actor.sample(next_obs)
        next_input = torch.cat([next_obs, next_action], dim=-1)
        next_q = self.critic_target.subset_min(next_input, self.config.critic_subset, self.generator).squeeze(-1)  # (B,)
        if self.config.backup_entropy:
            next_q = next_q - self.alpha * next_log_prob
        return next_q

    def update_critic(self, b: dict[str, torch.Tensor]) -> float:
        not_done = 1.0 - b["terminal"]
        target = b["reward"] + self.discount(b["steps"]) * not_done * self.soft_value_target(b["next_obs"])  # (B,)
        q = self.q_values(self.critic, b["obs"], b["action"])  # (E, B)
        loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        return loss.item()

    def update_actor_and_alpha(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        action, log_prob = self.actor.sample(b["obs"])
        q = self.q_values(self.critic, b["obs"], action)  # (E, B)
        q = q.mean(0) if self.config.actor_q == "mean" else q.min(0).values
        actor_loss = (self.alpha * log_prob - q).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": actor_loss.item(), "alpha_loss": alpha_loss.item(),
                "alpha": self.alpha.item(), "entropy": -log_prob.mean().item()}

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        b = self.to_torch(batch)
        minibatches = self.minibatches(b, self.config.utd)
        critic_losses = [self.update_critic(mb) for mb in minibatches]
        info = self.update_actor_and_alpha(minibatches[-1])  # the last minibatch, as in ikostrikov/rlpd
        info["critic_loss"] = float(np.mean(critic_losses))
        return info
