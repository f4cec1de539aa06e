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
only, then adds the agent's own transitions to the buffer. Config: `pipeline.methods.IQLConfig`.
Shapes carry the population axis P first: obs (P, B, S), critics (P, 2, B).
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from pipeline.agents.base import Agent, member_mean, require_box
from pipeline.agents.networks import CriticEnsemble, EnsembleMLP, ObsNormalizer, soft_update
from pipeline.methods import IQLConfig

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Per-member mean of |τ − 1(u < 0)| · u² for u = target − prediction: (P, …) → (P,)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return member_mean(weight * diff**2)


class GaussianActor(nn.Module):
    """obs → Normal(tanh(net(obs)), exp(log_std)) per member, log std state-independent."""

    def __init__(self, population: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = EnsembleMLP(population, obs_dim, hidden, action_dim)
        self.log_std = nn.Parameter(torch.zeros(population, 1, action_dim))

    def forward(self, obs: torch.Tensor) -> torch.distributions.Normal:
        mean = torch.tanh(self.net(obs))  # (P, B, A)
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp().expand_as(mean)
        return torch.distributions.Normal(mean, std, validate_args=False)  # validation reads the device: no CUDA graph


class IQL(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: IQLConfig, device, seeds=(0,)):
        super().__init__(obs_dim, action_space, config, device, seeds)
        self.action_dim = action_dim = require_box(action_space, "iql")
        P = self.population
        self.normalizer = ObsNormalizer(obs_dim)
        self.actor = GaussianActor(P, obs_dim, action_dim, config.hidden)
        self.critic = CriticEnsemble(P, 2, obs_dim + action_dim, config.hidden, 1)  # Q1, Q2 batched
        self.value = EnsembleMLP(P, obs_dim, config.hidden, 1)
        self.init_weights()
        self.critic_target = self.make_target(self.critic)
        self.actor_opt = self.adam(self.actor.parameters(), config.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), config.critic_lr)
        self.value_opt = self.adam(self.value.parameters(), config.critic_lr)

    def q_values(self, critic: CriticEnsemble, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)  # (P, 2, B)

    def act_round(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        dist = self.actor(self.norm(obs))
        action = dist.mean if deterministic else dist.mean + dist.stddev * self.member_randn(obs.shape[1], self.action_dim)
        return action.clamp(-1.0, 1.0)  # (P, B, A)

    def update_round(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, next_obs, action = self.norm(b["obs"]), self.norm(b["next_obs"]), b["action"]

        # V: expectile of the target critics' min at the data's actions
        with torch.no_grad():
            q_target = self.q_values(self.critic_target, obs, action).min(1).values  # (P, B)
        v = self.value(obs).squeeze(-1)  # (P, B)
        advantage = q_target - v
        value_loss = expectile_loss(advantage, self.config.expectile)
        self.step(self.value_opt, value_loss)

        # Q: one-step targets through V(s')
        with torch.no_grad():
            next_v = self.value(next_obs).squeeze(-1)
            target = b["reward"] + self.discount(b["steps"]) * (1.0 - b["terminal"]) * next_v  # (P, B)
        q = self.q_values(self.critic, obs, action)  # (P, 2, B)
        critic_loss = member_mean((q - target.unsqueeze(1)) ** 2)
        self.step(self.critic_opt, critic_loss)
        soft_update(self.critic_target, self.critic, self.config.tau, self.active)

        # policy: advantage-weighted regression onto the data's actions
        weight = torch.exp(self.config.beta * advantage.detach()).clamp(max=self.config.max_weight)  # (P, B)
        log_prob = self.actor(obs).log_prob(action).sum(-1)  # (P, B)
        actor_loss = member_mean(-(weight * log_prob))
        self.step(self.actor_opt, actor_loss)
        return {"value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(), "mean_weight": member_mean(weight)}
