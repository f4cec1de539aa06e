"""Discrete IQL over codes with a behaviour prior: the backend of MAQ+IQL.

The action space is Discrete(K), the codebook's codes. Networks: two Q heads over the K codes
(`Q_i(s) ∈ R^K`, batched), V(s), policy logits over codes, and a prior `p(k|s)`: an MLP trained
by cross-entropy on the encoder's codes of the demonstration windows (rows with `demo` true).
Per step, on a batch (s, k, R, s', d, h):
  prior     L = −log p(k|s) on demonstration rows
  value     V(s) fits the τ-expectile of min_i Q̄_i(s, k):  |τ − 1(u < 0)| u²,  u = Q̄ − V
  critics   Q_i(s, k) regress on R + γ^h (1 − d) V(s')
  policy    L = −w · log π(k|s) + λ · KL(p(·|s) ‖ π(·|s)),  w = min(exp(β (Q̄ − V)), 100), λ = 0.5
The KL toward the prior keeps probability on codes people use in each state. Deterministic
action: argmax of the logits. Observations are normalized with train-split statistics (buffers).
A batch without a `demo` column counts as all demonstrations (the offline phase).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.agents.base import Agent, require_discrete
from pipeline.agents.iql import expectile_loss
from pipeline.agents.networks import EnsembleMLP, ObsNormalizer, mlp, soft_update


@dataclass(frozen=True)
class DiscreteIQLConfig:
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


MAQ_IQL_CONFIG = DiscreteIQLConfig()


class DiscreteIQL(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: DiscreteIQLConfig, device):
        super().__init__(obs_dim, action_space, config, device)
        n_codes = require_discrete(action_space, "maq_iql")
        self.normalizer = ObsNormalizer(obs_dim)
        self.actor = mlp(obs_dim, config.hidden, n_codes)  # logits (B, K)
        self.prior = mlp(obs_dim, config.hidden, n_codes)  # logits (B, K)
        self.critic = EnsembleMLP(2, obs_dim, config.hidden, n_codes)  # (2, B, K)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = mlp(obs_dim, config.hidden, 1)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.prior_opt = torch.optim.Adam(self.prior.parameters(), lr=config.prior_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=config.critic_lr)

    @staticmethod
    def at_code(q: torch.Tensor, code: torch.Tensor) -> torch.Tensor:  # (…, B, K), (B,) → (…, B)
        return q.gather(-1, code.expand(*q.shape[:-1]).unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False):
        obs, single = self.obs_tensor(obs)
        logits = self.actor(self.norm(obs))
        code = logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
        code = code.cpu().numpy()
        return int(code[0]) if single else code

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        b = self.to_torch(batch)
        obs, next_obs, code = self.norm(b["obs"]), self.norm(b["next_obs"]), b["action"]
        info = {}

        # prior: cross-entropy on the encoder's codes of demonstration rows
        demo = b.get("demo", torch.ones_like(code, dtype=torch.bool))
        if demo.any():
            prior_loss = F.cross_entropy(self.prior(obs[demo]), code[demo])
            self.prior_opt.zero_grad(set_to_none=True)
            prior_loss.backward()
            self.prior_opt.step()
            info["prior_loss"] = prior_loss.item()

        # V: expectile of the target critics' min at the taken codes
        with torch.no_grad():
            q_target = self.at_code(self.critic_target(obs), code).min(0).values  # (B,)
        v = self.value(obs).squeeze(-1)
        advantage = q_target - v
        value_loss = expectile_loss(advantage, self.config.expectile)
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        # Q: targets through V(s')
        with torch.no_grad():
            next_v = self.value(next_obs).squeeze(-1)
            target = b["reward"] + self.discount(b["steps"]) * (1.0 - b["terminal"]) * next_v
        q = self.at_code(self.critic(obs), code)  # (2, B)
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        soft_update(self.critic_target, self.critic, self.config.tau)

        # policy: advantage-weighted likelihood + λ KL(prior ‖ π)
        weight = torch.exp(self.config.beta * advantage.detach()).clamp(max=self.config.max_weight)
        log_pi = F.log_softmax(self.actor(obs), dim=-1)  # (B, K)
        with torch.no_grad():
            log_prior = F.log_softmax(self.prior(obs), dim=-1)
        kl = (log_prior.exp() * (log_prior - log_pi)).sum(-1)  # (B,)
        awr = -(weight * log_pi.gather(-1, code.unsqueeze(-1)).squeeze(-1))
        actor_loss = (awr + self.config.prior_kl_coef * kl).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        info.update(value_loss=value_loss.item(), critic_loss=critic_loss.item(), actor_loss=actor_loss.item(),
                    kl_prior=kl.mean().item(), mean_weight=weight.mean().item())
        return info
