"""Benchmarks of the RL backends (not tests: they take minutes).

    python -m pipeline.benchmarks.agents speed                    # (a) RLPD update speed, CPU (+ CUDA)
    python -m pipeline.benchmarks.agents learn --methods sac,dsac # (b) sanity: do backends learn?

(a) times `rlpd` update rounds (E=10 critics, batch 256, UTD 20: 20 critic steps + 1 actor step)
and reports rounds/s and critic gradient steps/s.
(b) trains each chosen backend online on a small gymnasium task until its deterministic
evaluation (10 episodes) reaches the bar, or its step budget runs out, and prints steps and wall
time: sac / rlpd / iql (online from scratch) on Pendulum-v1 (bar −200), dsac on CartPole-v1
(bar 475), and maq_dsac on Pendulum-v1 acting through MacroActionEnv with a hand-made constant-torque
codebook (H=3, K=9; steps are macro steps). RLPD runs online only here (no demonstrations exist for Pendulum) and with
`--rlpd-utd` (default 20) critic steps per env step.
Run with `nice -n 10`; every run is bounded by its budget and `--max-minutes`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import torch

from pipeline.agents import AGENTS
from pipeline.agents.macro import MacroActionEnv
from pipeline.agents.replay import ReplayBuffer
from pipeline.agents.train import train_online

# method → (env id, bar, step budget, config overrides for this small task)
LEARN = {
    "sac": ("Pendulum-v1", -200.0, 20_000, dict(warmup_steps=1_000)),
    "rlpd": ("Pendulum-v1", -200.0, 10_000, dict(warmup_steps=1_000, offline_ratio=0.0)),
    "iql": ("Pendulum-v1", -200.0, 40_000, dict(warmup_steps=1_000, normalize_obs=False)),
    "dsac": ("CartPole-v1", 475.0, 60_000, dict(warmup_steps=1_000)),
    # macro steps; the codebook is ConstantCodebook below (a stand-in, not a trained VQ-VAE)
    "maq_dsac": ("Pendulum-v1", -200.0, 10_000, dict(warmup_steps=500)),
}


class ConstantCodebook:
    """A hand-made codebook for the Pendulum sanity run: code k holds torque level k (K levels
    evenly in [-1, 1]) for H steps, whatever the state. Exercises MacroActionEnv + γ^h
    bootstrapping; it says nothing about a learned codebook's quality."""

    def __init__(self, H: int = 3, K: int = 9, A: int = 1):
        self.H, self.K, self.A = H, K, A
        self.levels = np.linspace(-1.0, 1.0, K, dtype=np.float32)
        self.content_hash = f"constant-H{H}-K{K}"

    def encode(self, obs, macro):  # (B, S), (B, H, A) → (B,)
        return np.abs(macro.mean(axis=(1, 2))[:, None] - self.levels).argmin(1)

    def decode(self, obs, code):  # (B, S), (B,) → (B, H, A)
        return np.repeat(self.levels[np.asarray(code)][:, None, None], self.H, 1).repeat(self.A, 2)


def make_small_env(env_id: str) -> gym.Env:
    env = gym.make(env_id)
    if isinstance(env.action_space, gym.spaces.Box):
        shape = env.action_space.shape
        env = gym.wrappers.RescaleAction(env, np.full(shape, -1.0, np.float32), np.full(shape, 1.0, np.float32))
    return env


def fake_batch(rng: np.random.Generator, n: int, obs_dim: int, action_dim: int) -> dict[str, np.ndarray]:
    return {
        "obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
        "action": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "reward": rng.standard_normal(n, dtype=np.float32),
        "next_obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
        "terminal": rng.random(n) < 0.01,
        "steps": np.ones(n, dtype=np.int64),
    }


def bench_speed(device: str, obs_dim: int = 39, action_dim: int = 28, seconds: float = 20.0) -> None:
    """RLPD update rounds per second on door-sized inputs (S=39, A=28)."""
    space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
    agent = AGENTS["rlpd"](obs_dim, space, device=device)
    rng = np.random.default_rng(0)
    batch = fake_batch(rng, agent.update_batch_size, obs_dim, action_dim)
    for _ in range(2):  # warm-up
        agent.update(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        agent.update(batch)
        rounds += 1
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    cfg = agent.config
    print(f"rlpd speed [{device}, threads={torch.get_num_threads()}] E={cfg.n_critics} batch={cfg.batch_size} "
          f"utd={cfg.utd}: {rounds / wall:.2f} update rounds/s = {rounds * cfg.utd / wall:.1f} critic steps/s "
          f"({rounds} rounds in {wall:.1f} s)")


def bench_learn(method: str, seed: int, max_minutes: float, rlpd_utd: int, budget: int | None,
                warmup: int | None = None, eval_every: int | None = None) -> None:
    env_id, bar, default_budget, overrides = LEARN[method]
    budget = budget or default_budget
    env, eval_env = make_small_env(env_id), make_small_env(env_id)
    entry = AGENTS[method]
    if entry.macro:
        codebook = ConstantCodebook(A=env.action_space.shape[0])
        env, eval_env = (MacroActionEnv(e, codebook, gamma=entry.default_config.gamma) for e in (env, eval_env))
    overrides = dict(overrides)
    if method == "rlpd":
        overrides["utd"] = rlpd_utd
    if warmup is not None:
        overrides["warmup_steps"] = warmup
    config = replace(entry.default_config, **overrides)
    torch.manual_seed(seed)
    agent = entry(env.observation_space.shape[0], env.action_space, config, device="cpu")
    buffer = ReplayBuffer.for_spaces(budget, env.observation_space.shape[0], env.action_space, seed=seed)
    log = train_online(agent, env, buffer, budget, seed=seed, eval_env=eval_env,
                       eval_every=eval_every or (1_000 if method != "dsac" else 2_000) // (3 if entry.macro else 1), eval_episodes=10,
                       stop=lambda log: log.evaluations[-1][1] >= bar, time_limit_s=60 * max_minutes)
    step, best = max(log.evaluations, key=lambda e: e[1]) if log.evaluations else (0, float("nan"))
    last_step, last = log.evaluations[-1] if log.evaluations else (0, float("nan"))
    reached = last >= bar
    print(f"{method:5s} {env_id:12s} bar {bar:7.1f}: {'REACHED' if reached else 'not reached'} — "
          f"last eval {last:8.1f} at step {last_step}, best {best:8.1f} at step {step}, "
          f"{log.steps} agent steps{' (TIME LIMIT)' if log.timed_out else ''}, {log.updates} update rounds, wall {log.wall_s:.0f} s (seed {seed}, budget {budget}, {config.__class__.__name__} "
          f"overrides {overrides})")
    print(f"      eval curve: {[(s, round(r, 1)) for s, r in log.evaluations]}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    speed = sub.add_parser("speed", help="(a) rlpd update rounds/s")
    speed.add_argument("--seconds", type=float, default=20.0)
    learn = sub.add_parser("learn", help="(b) sanity: backends reach the bar")
    learn.add_argument("--methods", default="sac,dsac", help=f"comma list from {sorted(LEARN)}")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--max-minutes", type=float, default=9.0, help="per method wall-clock cap")
    learn.add_argument("--rlpd-utd", type=int, default=20)
    learn.add_argument("--budget", type=int, default=None, help="env steps (default per method)")
    learn.add_argument("--warmup", type=int, default=None, help="random steps first (default per method)")
    learn.add_argument("--eval-every", type=int, default=None, help="env steps between evaluations")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "speed":
        bench_speed("cpu", seconds=args.seconds)
        if torch.cuda.is_available():
            bench_speed("cuda", seconds=args.seconds)
        else:
            print("no CUDA device: CUDA speed not measured")
    else:
        for method in args.methods.split(","):
            bench_learn(method, args.seed, args.max_minutes, args.rlpd_utd, args.budget, args.warmup, args.eval_every)


if __name__ == "__main__":
    main()
