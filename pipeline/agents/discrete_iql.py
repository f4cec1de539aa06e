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
A batch without a `demo` column counts as all demonstrations (the offline phase); a member whose
batch holds no demonstration row leaves its prior as it is that round.
Config: `pipeline.methods.DiscreteIQLConfig`. Shapes carry the population axis P first.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch.nn import functional as F

from pipeline.agents.base import Agent, member_mean, require_discrete
from pipeline.agents.iql import expectile_loss
from pipeline.agents.networks import CriticEnsemble, EnsembleMLP, ObsNormalizer, soft_update
from pipeline.methods import DiscreteIQLConfig


class DiscreteIQL(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: DiscreteIQLConfig, device, seeds=(0,)):
        super().__init__(obs_dim, action_space, config, device, seeds)
        n_codes = require_discrete(action_space, "maq_iql")
        P = self.population
        self.normalizer = ObsNormalizer(obs_dim)
        self.actor = EnsembleMLP(P, obs_dim, config.hidden, n_codes)  # logits (P, B, K)
        self.prior = EnsembleMLP(P, obs_dim, config.hidden, n_codes)  # logits (P, B, K)
        self.critic = CriticEnsemble(P, 2, obs_dim, config.hidden, n_codes)  # (P, 2, B, K)
        self.value = EnsembleMLP(P, obs_dim, config.hidden, 1)
        self.init_weights()
        self.critic_target = self.make_target(self.critic)
        self.actor_opt = self.adam(self.actor.parameters(), config.actor_lr)
        self.prior_opt = self.adam(self.prior.parameters(), config.prior_lr)
        self.critic_opt = self.adam(self.critic.parameters(), config.critic_lr)
        self.value_opt = self.adam(self.value.parameters(), config.critic_lr)

    @staticmethod
    def at_code(q: torch.Tensor, code: torch.Tensor) -> torch.Tensor:  # (P, …, B, K), (P, B) → (P, …, B)
        code = code.view(code.shape[0], *([1] * (q.dim() - 3)), code.shape[1]).expand(*q.shape[:-1])
        return q.gather(-1, code.unsqueeze(-1)).squeeze(-1)

    def act_round(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        logits = self.actor(self.norm(obs))  # (P, B, K)
        code = logits.argmax(-1) if deterministic else self.sample_categorical(logits)
        return code  # (P, B)

    def update_round(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, next_obs, code = self.norm(b["obs"]), self.norm(b["next_obs"]), b["action"]

        # prior: cross-entropy on the encoder's codes of demonstration rows
        demo = b.get("demo", torch.ones_like(code, dtype=torch.bool)).float()  # (P, B)
        n_demo = demo.sum(1)
        cross_entropy = F.cross_entropy(self.prior(obs).transpose(1, 2), code, reduction="none")  # (P, B)
        prior_loss = (cross_entropy * demo).sum(1) / n_demo.clamp_min(1)
        self.step(self.prior_opt, prior_loss, only=n_demo > 0)

        # V: expectile of the target critics' min at the taken codes
        with torch.no_grad():
            q_target = self.at_code(self.critic_target(obs), code).min(1).values  # (P, B)
        v = self.value(obs).squeeze(-1)
        advantage = q_target - v
        value_loss = expectile_loss(advantage, self.config.expectile)
        self.step(self.value_opt, value_loss)

        # Q: targets through V(s')
        with torch.no_grad():
            next_v = self.value(next_obs).squeeze(-1)
            target = b["reward"] + self.discount(b["steps"]) * (1.0 - b["terminal"]) * next_v  # (P, B)
        q = self.at_code(self.critic(obs), code)  # (P, 2, B)
        critic_loss = member_mean((q - target.unsqueeze(1)) ** 2)
        self.step(self.critic_opt, critic_loss)
        soft_update(self.critic_target, self.critic, self.config.tau, self.active)

        # policy: advantage-weighted likelihood + λ KL(prior ‖ π)
        weight = torch.exp(self.config.beta * advantage.detach()).clamp(max=self.config.max_weight)  # (P, B)
        log_pi = F.log_softmax(self.actor(obs), dim=-1)  # (P, B, K)
        with torch.no_grad():
            log_prior = F.log_softmax(self.prior(obs), dim=-1)
        kl = (log_prior.exp() * (log_prior - log_pi)).sum(-1)  # (P, B)
        awr = -(weight * log_pi.gather(-1, code.unsqueeze(-1)).squeeze(-1))
        actor_loss = member_mean(awr + self.config.prior_kl_coef * kl)
        self.step(self.actor_opt, actor_loss)
        return {"prior_loss": prior_loss.detach(), "value_loss": value_loss.detach(), "critic_loss": critic_loss.detach(),
                "actor_loss": actor_loss.detach(), "kl_prior": member_mean(kl.detach()), "mean_weight": member_mean(weight)}
