"""Implicit Q-Learning (Kostrikov et al. 2022), continuous actions, following CORL's fine-tune IQL.

IQL never queries Q at actions outside the data. Per step, on a batch (s, a, r, s', d, h):
  value     V(s) fits the τ-expectile of min_i Q̄_i(s, a):  L = |τ − 1(u < 0)| u²,  u = Q̄ − V
  critics   Q_i(s, a) regress on r + γ^h (1 − d) V(s')
  policy    advantage-weighted regression: maximize w · log π(a|s),
            w = min(exp(β (Q̄(s, a) − V(s))), 100)
The policy is a Gaussian with a tanh mean and a state-independent log std; the deterministic
action is the mean. Observations are normalized with train-split statistics held in buffers
(`agent.set_obs_stats(mean, std)` before training), so a saved agent normalizes by itself.

Offline then online: the algorithm is the same; the training loop first samples demonstrations
only, then adds the agent's own transitions to the buffer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.agents.base import Agent, require_box
from pipeline.agents.networks import EnsembleMLP, ObsNormalizer, mlp, soft_update

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclass(frozen=True)
class IQLConfig:
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


IQL_CONFIG = IQLConfig()


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean of |τ − 1(u < 0)| · u² for u = target − prediction."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff**2).mean()


class GaussianActor(nn.Module):
    """obs → Normal(tanh(net(obs)), exp(log_std)), log std state-independent."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = torch.tanh(self.net(obs))  # (B, A)
        return torch.distributions.Normal(mean, self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp())


class IQL(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: IQLConfig, device):
        super().__init__(obs_dim, action_space, config, device)
        action_dim = require_box(action_space, "iql")
        self.normalizer = ObsNormalizer(obs_dim)
        self.actor = GaussianActor(obs_dim, action_dim, config.hidden)
        self.critic = EnsembleMLP(2, obs_dim + action_dim, config.hidden, 1)  # Q1, Q2 batched
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(obs_dim, config.hidden, 1)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=config.critic_lr)

    def q_values(self, critic: nn.Module, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)  # (2, B)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        obs, single = self.obs_tensor(obs)
        dist = self.actor(self.norm(obs))
        action = (dist.mean if deterministic else dist.sample()).clamp(-1.0, 1.0).cpu().numpy()
        return action[0] if single else action

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        b = self.to_torch(batch)
        obs, next_obs, action = self.norm(b["obs"]), self.norm(b["next_obs"]), b["action"]

        # V: expectile of the target critics' min at the data's actions
        with torch.no_grad():
            q_target = self.q_values(self.critic_target, obs, action).min(0).values  # (B,)
        v = self.value(obs).squeeze(-1)  # (B,)
        advantage = q_target - v
        value_loss = expectile_loss(advantage, self.config.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        # Q: one-step targets through V(s')
        with torch.no_grad():
            next_v = self.value(next_obs).squeeze(-1)
            target = b["reward"] + self.discount(b["steps"]) * (1.0 - b["terminal"]) * next_v  # (B,)
        q = self.q_values(self.critic, obs, action)  # (2, B)
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        soft_update(self.critic_target, self.critic, self.config.tau)

        # policy: advantage-weighted regression onto the data's actions
        weight = torch.exp(self.config.beta * advantage.detach()).clamp(max=self.config.max_weight)  # (B,)
        log_prob = self.actor(obs).log_prob(action).sum(-1)  # (B,)
        actor_loss = -(weight * log_prob).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        return {"value_loss": value_loss.item(), "critic_loss": critic_loss.item(),
                "actor_loss": actor_loss.item(), "mean_weight": weight.mean().item()}
