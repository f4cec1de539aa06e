"""Discrete Soft Actor-Critic (Christodoulou 2019), the backend of MAQ+DSAC and MAQ+RLPD.

With K discrete actions (for MAQ: the K codes of the codebook) every expectation over the policy
is an exact sum, so there is no reparameterization:
  critic target   y = r + γ^h (1 − d) Σ_a' π(a'|s') [min_subset Q̄(s', a') − α log π(a'|s')]
  critic loss     (Q_e(s, a) − y)² for every ensemble member e
  actor loss      Σ_a π(a|s) [α log π(a|s) − Q(s, a)]    (Q: min or mean over the ensemble)
  temperature     α is tuned so that the policy entropy stays near a target entropy
                  `target_entropy_scale · log K` (default 0.5: the entropy of a uniform choice
                  among √K actions; 0.98 as in the paper proved too high in practice, cleanrl
                  uses 0.89; a lower target lets the policy commit to a code).

`h` is the number of env steps the action spanned (1 for plain actions, up to H for a macro).

Configs (`pipeline.methods`): `MAQ_DSAC_CONFIG` (online only), `MAQ_RLPD_CONFIG` (the RLPD
recipe over codes: 10 LayerNorm critics, min over a random 2, UTD 20, actor on the ensemble mean,
50/50 demo/online batches) and `MAQ_RLPD_OFFICIAL_CONFIG` (the official MAQ+RLPD code's
settings: 2 critics, α fixed at 0.2, critic lr 1e-3, batch 128, one step per 8 macro transitions).

Shapes carry the population axis P first: obs (P, B, S), logits (P, B, K), critics (P, E, B, K).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.agents.base import Agent, member_mean, require_discrete
from pipeline.agents.networks import CriticEnsemble, EnsembleMLP, soft_update
from pipeline.methods import DSACConfig


class DSAC(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: DSACConfig, device, seeds=(0,)):
        super().__init__(obs_dim, action_space, config, device, seeds)
        n_actions = require_discrete(action_space, "dsac")
        P = self.population
        self.actor = EnsembleMLP(P, obs_dim, config.hidden, n_actions)  # logits (P, B, K)
        self.critic = CriticEnsemble(P, config.n_critics, obs_dim, config.hidden, n_actions, config.critic_layer_norm)
        self.init_weights()
        self.critic_target = self.make_target(self.critic)
        alpha0 = config.fixed_temperature if config.fixed_temperature is not None else config.init_temperature
        self.log_alpha = nn.Parameter(torch.full((P,), float(np.log(alpha0))), requires_grad=config.fixed_temperature is None)
        self.target_entropy = config.target_entropy_scale * float(np.log(n_actions))
        self.actor_opt = self.adam(self.actor.parameters(), config.actor_lr)
        self.critic_opt = self.adam(self.critic.parameters(), config.critic_lr)
        if config.fixed_temperature is None:
            self.alpha_opt = self.adam([self.log_alpha], config.temperature_lr)

    @property
    def alpha(self) -> torch.Tensor:  # (P,)
        return self.log_alpha.exp().detach()

    def act_round(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        logits = self.actor(obs)  # (P, B, K)
        action = logits.argmax(-1) if deterministic else self.sample_categorical(logits)
        return action  # (P, B)

    @torch.no_grad()
    def soft_value_target(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Σ_a' π(a'|s') [min-subset Q̄(s', a') − α log π(a'|s')]: (P, B)."""
        log_pi = F.log_softmax(self.actor(next_obs), dim=-1)  # (P, B, K)
        subsets = self.member_subsets(self.config.n_critics, self.config.critic_subset)
        next_q = self.critic_target.subset_min(next_obs, subsets)  # (P, B, K)
        return (log_pi.exp() * (next_q - self.alpha[:, None, None] * log_pi)).sum(-1)

    def update_critic(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        target = b["reward"] + self.discount(b["steps"]) * (1.0 - b["terminal"]) * self.soft_value_target(b["next_obs"])  # (P, B)
        q_all = self.critic(b["obs"])  # (P, E, B, K)
        index = b["action"].unsqueeze(1).expand(-1, q_all.shape[1], -1).unsqueeze(-1)  # (P, E, B, 1)
        q = q_all.gather(-1, index).squeeze(-1)  # (P, E, B)
        loss = member_mean((q - target.unsqueeze(1)) ** 2)
        self.step(self.critic_opt, loss)
        soft_update(self.critic_target, self.critic, self.config.tau, self.active)
        return loss.detach()

    def update_actor_and_alpha(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        log_pi = F.log_softmax(self.actor(b["obs"]), dim=-1)  # (P, B, K)
        pi = log_pi.exp()
        with torch.no_grad():
            q = self.critic(b["obs"])  # (P, E, B, K)
            q = q.mean(1) if self.config.actor_q == "mean" else q.min(1).values  # (P, B, K)
        actor_loss = member_mean((pi * (self.alpha[:, None, None] * log_pi - q)).sum(-1))
        self.step(self.actor_opt, actor_loss)

        entropy = -(pi * log_pi).sum(-1).detach()  # (P, B)
        info = {"actor_loss": actor_loss.detach(), "alpha": self.alpha, "entropy": member_mean(entropy)}
        if self.config.fixed_temperature is None:
            alpha_loss = member_mean(self.log_alpha[:, None] * (entropy - self.target_entropy))
            self.step(self.alpha_opt, alpha_loss)
            info["alpha_loss"] = alpha_loss.detach()
        return info

    def update_round(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        minibatches = self.minibatches(b, self.config.utd)
        critic_losses = torch.stack([self.update_critic(mb) for mb in minibatches])  # (utd, P)
        info = self.update_actor_and_alpha(minibatches[-1])
        info["critic_loss"] = critic_losses.mean(0)
        return info
