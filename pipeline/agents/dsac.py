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

Presets (config deltas):
  - `MAQ_DSAC_CONFIG`: online only (MAQ+DSAC).
  - `MAQ_RLPD_CONFIG`: the RLPD recipe over codes: 10 critics with LayerNorm, min over a random 2,
    UTD 20, actor on the ensemble mean, batches half demonstrations (windows encoded to codes),
    half online.
  - `MAQ_RLPD_OFFICIAL_CONFIG`: the official MAQ+RLPD code's settings, for comparison: 2 critics,
    no LayerNorm, α fixed at 0.2 (its auto-α setting is never read), critic lr 1e-3, batch 128
    = 64 demo + 64 online, one gradient step per 8 macro transitions, online buffer 10k, 8k random
    warm-up. (It has none of RLPD's ensemble, LayerNorm or high UTD.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pipeline.agents.base import Agent, require_discrete
from pipeline.agents.networks import EnsembleMLP, mlp, soft_update


@dataclass(frozen=True)
class DSACConfig:
    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    gamma: float = 0.99  # discount per env step; a macro of h steps bootstraps with γ^h
    tau: float = 0.005
    batch_size: int = 256
    n_critics: int = 2  # E
    critic_subset: int = 2  # targets: min over this many random members
    critic_layer_norm: bool = False
    actor_q: str = "min"  # "min" or "mean" over the ensemble for the actor
    utd: int = 1  # critic steps per update round
    update_every: int = 1  # env (macro) steps between update rounds
    init_temperature: float = 1.0
    fixed_temperature: float | None = None  # a number fixes α (no tuning)
    target_entropy_scale: float = 0.5  # target entropy = scale · log K
    warmup_steps: int = 5_000  # uniform-random (macro) steps before learning (training loop)
    buffer_size: int = 1_000_000  # online replay capacity (training loop)
    offline_ratio: float = 0.0  # share of each batch from demonstrations


DSAC_CONFIG = DSACConfig()
MAQ_DSAC_CONFIG = DSAC_CONFIG
MAQ_RLPD_CONFIG = replace(
    DSAC_CONFIG,
    n_critics=10,
    critic_subset=2,
    critic_layer_norm=True,
    actor_q="mean",
    utd=20,
    warmup_steps=10_000,
    offline_ratio=0.5,
)
MAQ_RLPD_OFFICIAL_CONFIG = replace(
    DSAC_CONFIG,
    n_critics=2,
    critic_layer_norm=False,
    critic_lr=1e-3,
    fixed_temperature=0.2,
    batch_size=128,
    utd=1,
    update_every=8,
    warmup_steps=8_000,
    buffer_size=10_000,
    offline_ratio=0.5,
)


class DSAC(Agent):
    def __init__(self, obs_dim: int, action_space: gym.Space, config: DSACConfig, device):
        super().__init__(obs_dim, action_space, config, device)
        n_actions = require_discrete(action_space, "dsac")
        self.actor = mlp(obs_dim, config.hidden, n_actions)  # logits (B, K)
        self.critic = EnsembleMLP(config.n_critics, obs_dim, config.hidden, n_actions, config.critic_layer_norm)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        alpha0 = config.fixed_temperature if config.fixed_temperature is not None else config.init_temperature
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(alpha0))), requires_grad=config.fixed_temperature is None)
        self.target_entropy = config.target_entropy_scale * float(np.log(n_actions))
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.temperature_lr)
        self.generator = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))  # critic subsets

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False):
        obs, single = self.obs_tensor(obs)
        logits = self.actor(obs)  # (B, K)
        action = logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
        action = action.cpu().numpy()
        return int(action[0]) if single else action

    @torch.no_grad()
    def soft_value_target(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Σ_a' π(a'|s') [min-subset Q̄(s', a') − α log π(a'|s')]: (B,)."""
        log_pi = F.log_softmax(self.actor(next_obs), dim=-1)  # (B, K)
        next_q = self.critic_target.subset_min(next_obs, self.config.critic_subset, self.generator)  # (B, K)
        return (log_pi.exp() * (next_q - self.alpha * log_pi)).sum(-1)

    def update_critic(self, b: dict[str, torch.Tensor]) -> float:
        target = b["reward"] + self.discount(b["steps"]) * (1.0 - b["terminal"]) * self.soft_value_target(b["next_obs"])
        q_all = self.critic(b["obs"])  # (E, B, K)
        index = b["action"].view(1, -1, 1).expand(q_all.shape[0], -1, 1)
        q = q_all.gather(-1, index).squeeze(-1)  # (E, B)
        loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        soft_update(self.critic_target, self.critic, self.config.tau)
        return loss.item()

    def update_actor_and_alpha(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        log_pi = F.log_softmax(self.actor(b["obs"]), dim=-1)  # (B, K)
        pi = log_pi.exp()
        with torch.no_grad():
            q = self.critic(b["obs"])  # (E, B, K)
            q = q.mean(0) if self.config.actor_q == "mean" else q.min(0).values
        actor_loss = (pi * (self.alpha * log_pi - q)).sum(-1).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        entropy = -(pi * log_pi).sum(-1).detach()  # (B,)
        info = {"actor_loss": actor_loss.item(), "alpha": self.alpha.item(), "entropy": entropy.mean().item()}
        if self.config.fixed_temperature is None:
            alpha_loss = (self.log_alpha * (entropy - self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            info["alpha_loss"] = alpha_loss.item()
        return info

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        b = self.to_torch(batch)
        minibatches = self.minibatches(b, self.config.utd)
        critic_losses = [self.update_critic(mb) for mb in minibatches]
        info = self.update_actor_and_alpha(minibatches[-1])
        info["critic_loss"] = float(np.mean(critic_losses))
        return info
