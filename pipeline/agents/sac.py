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
The configs live in `pipeline.methods` (`SACConfig`, `SAC_CONFIG`, `RLPD_CONFIG`).

Shapes carry the population axis P first: obs (P, B, S), actions (P, B, A), critics (P, E, B).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.agents.base import Agent, member_mean, require_box
from pipeline.agents.networks import CriticEnsemble, EnsembleMLP, frozen, soft_update
from pipeline.methods import SACConfig

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TanhGaussianActor(nn.Module):
    """obs → tanh(Normal(μ, σ)) per member; log-probabilities corrected for the tanh squashing."""

    def __init__(self, population: int, obs_dim: int, action_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = EnsembleMLP(population, obs_dim, hidden, 2 * action_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (P, B, S) → 2 × (P, B, A)
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized action (P, B, A) in (−1, 1) from standard normal `noise` (P, B, A), and
        its log-probability (P, B)."""
        mean, log_std = self(obs)
        u = mean + log_std.exp() * noise
        action = torch.tanh(u)
        # log N(u) − Σ log(1 − tanh(u)²), the latter written stably as 2(log 2 − u − softplus(−2u))
        log_prob = (-0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
        log_prob = log_prob - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return action, log_prob


class SAC(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: SACConfig, device, seeds=(0,)):
        super().__init__(obs_dim, action_space, config, device, seeds)
        self.action_dim = action_dim = require_box(action_space, "sac")
        P = self.population
        self.actor = TanhGaussianActor(P, obs_dim, action_dim, config.hidden)
        self.critic = CriticEnsemble(P, config.n_critics, obs_dim + action_dim, config.hidden, 1, config.critic_layer_norm)
        self.init_weights()
        self.critic_target = self.make_target(self.critic)
        self.log_alpha = nn.Parameter(torch.full((P,), float(np.log(config.init_temperature))))
        self.target_entropy = -config.target_entropy_scale * action_dim
        self.actor_opt = self.adam(self.actor.parameters(), config.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), config.critic_lr)
        self.alpha_opt = self.adam([self.log_alpha], config.temperature_lr)

    @property
    def alpha(self) -> torch.Tensor:  # (P,)
        return self.log_alpha.exp().detach()

    def q_values(self, critic: CriticEnsemble, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)  # (P, E, B)

    def act_round(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        if deterministic:  # obs (P, B, S)
            action = torch.tanh(self.actor(obs)[0])
        else:
            action = self.actor.sample(obs, self.member_randn(obs.shape[1], self.action_dim))[0]
        return action  # (P, B, A)

    @torch.no_grad()
    def soft_value_target(self, next_obs: torch.Tensor) -> torch.Tensor:
        """min over a random `critic_subset` of target critics of Q(s', a') − α log π(a'|s'): (P, B)."""
        next_action, next_log_prob = self.actor.sample(next_obs, self.member_randn(next_obs.shape[1], self.action_dim))
        subsets = self.member_subsets(self.config.n_critics, self.config.critic_subset)  # (P, k), one subset per batch
        next_q = self.critic_target.subset_min(torch.cat([next_obs, next_action], dim=-1), subsets).squeeze(-1)  # (P, B)
        if self.config.backup_entropy:
            next_q = next_q - self.alpha[:, None] * next_log_prob
        return next_q

    def update_critic(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        not_done = 1.0 - b["terminal"]
        target = b["reward"] + self.discount(b["steps"]) * not_done * self.soft_value_target(b["next_obs"])  # (P, B)
        q = self.q_values(self.critic, b["obs"], b["action"])  # (P, E, B)
        loss = member_mean((q - target.unsqueeze(1)) ** 2)  # (P,)
        self.step(self.critic_opt, loss)
        soft_update(self.critic_target, self.critic, self.config.tau, self.active)
        return loss.detach()

    def update_actor_and_alpha(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        action, log_prob = self.actor.sample(b["obs"], self.member_randn(b["obs"].shape[1], self.action_dim))
        with frozen(self.critic):  # the actor's loss trains the actor only
            q = self.q_values(self.critic, b["obs"], action)  # (P, E, B)
        q = q.mean(1) if self.config.actor_q == "mean" else q.min(1).values  # (P, B)
        actor_loss = member_mean(self.alpha[:, None] * log_prob - q)
        self.step(self.actor_opt, actor_loss)

        alpha_loss = member_mean(-(self.log_alpha[:, None] * (log_prob.detach() + self.target_entropy)))
        self.step(self.alpha_opt, alpha_loss)
        return {"actor_loss": actor_loss.detach(), "alpha_loss": alpha_loss.detach(),
                "alpha": self.alpha, "entropy": member_mean(-log_prob.detach())}

    def update_round(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        minibatches = self.minibatches(b, self.config.utd)
        critic_losses = torch.stack([self.update_critic(mb) for mb in minibatches])  # (utd, P)
        info = self.update_actor_and_alpha(minibatches[-1])  # the last minibatch, as in ikostrikov/rlpd
        info["critic_loss"] = critic_losses.mean(0)
        return info
