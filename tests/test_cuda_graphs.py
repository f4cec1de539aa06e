"""The CUDA engine: captured update rounds and acting calls replay exactly what the eager rounds
compute. CUDA only (CI has no GPU: these skip there; their CPU twins, the fused Adam path and the
host-side masks, are tested in test_agents.py). Run on a GPU machine with
`python -m pytest tests/test_cuda_graphs.py`."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from pipeline.agents import AGENTS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

S, A, K = 11, 4, 8
METHODS = ["sac", "rlpd", "iql", "maq_rlpd", "maq_iql", "maq_dsac"]


def build(name, seeds, graphs):
    entry = AGENTS[name]
    space = gym.spaces.Discrete(K) if entry.discrete else gym.spaces.Box(-1.0, 1.0, (A,), np.float32)
    cfg = replace(entry.default_config, hidden=(64, 64), batch_size=32)
    if hasattr(cfg, "utd"):
        cfg = replace(cfg, utd=min(cfg.utd, 4))
    agent = entry(S, space, cfg, device="cuda", seeds=seeds)
    if graphs:
        agent.use_cuda_graphs(warmup_rounds=1)
    return agent


def batches(agent, rounds, seed=0):
    rng = np.random.default_rng(seed)
    P, n = agent.population, agent.update_batch_size
    for _ in range(rounds):
        discrete = isinstance(agent.action_space, gym.spaces.Discrete)
        yield {
            "obs": rng.standard_normal((P, n, S)).astype(np.float32),
            "action": rng.integers(0, K, (P, n)) if discrete else rng.uniform(-1, 1, (P, n, A)).astype(np.float32),
            "reward": rng.standard_normal((P, n)).astype(np.float32),
            "next_obs": rng.standard_normal((P, n, S)).astype(np.float32),
            "terminal": rng.random((P, n)) < 0.2,
            "steps": rng.integers(1, 4, (P, n)),
            "demo": rng.random((P, n)) < 0.5,
        }


def run(agent, schedule):
    """Update rounds (a mask per round; None: all members) with an acting call after each."""
    obs = torch.randn(agent.population, 5, S, generator=torch.Generator().manual_seed(1)).numpy()
    acts = []
    for batch, active in zip(batches(agent, len(schedule)), schedule):
        agent.update_members(batch, active=active)
        acts.append(agent.act_members(obs, deterministic=False))
    return acts


def assert_same(eager, graphed):
    for (name, a), (_, b) in zip(eager.state_dict().items(), graphed.state_dict().items()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=name)
    for name, opt in eager.optimizers().items():
        other = graphed.optimizers()[name]
        assert torch.equal(opt.step_count, other.step_count), name
        if other.counts is not None:  # the host mirror follows the device's counts through replays
            assert other.counts == [int(c) for c in other.step_count.tolist()], name


@pytest.mark.parametrize("name", METHODS)
def test_replayed_rounds_equal_eager_rounds(name):
    schedule = [None] * 6
    eager, graphed = build(name, (1, 2, 3), False), build(name, (1, 2, 3), True)
    acts_eager, acts_graphed = run(eager, schedule), run(graphed, schedule)
    assert graphed.cuda_graphs.replays >= 8  # the rounds and acting calls after the warm-up were replays
    assert_same(eager, graphed)
    for a, b in zip(acts_eager, acts_graphed):
        np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.parametrize("name", ["rlpd", "maq_iql"])
def test_a_masked_round_runs_eagerly_and_replays_resume(name):
    """A round where a member sits out is eager; the member's counts then differ from the
    others', and later rounds capture (and replay) the masked Adam path."""
    schedule = [None, None, None, np.array([True, False, True]), None, None, None, None]
    eager, graphed = build(name, (4, 5, 6), False), build(name, (4, 5, 6), True)
    run(eager, schedule), run(graphed, schedule)
    assert_same(eager, graphed)


@pytest.mark.parametrize("name", ["sac", "rlpd", "iql"])
def test_the_training_loop_with_graphs_equals_the_eager_loop(name):
    """train_population on CUDA (replay mirrored on the device, sampled inside the round) with and
    without CUDA graphs ends with the same weights; it is called twice (as the benchmarks' chunks
    do), so the second loop's new on-device replay replaces the first one's graphs."""
    from pipeline.agents.train import Schedule, make_member, train_population

    entry = AGENTS[name]
    rng = np.random.default_rng(0)
    demos = {"obs": rng.standard_normal((200, 3)).astype(np.float32), "action": rng.uniform(-1, 1, (200, 1)).astype(np.float32),
             "reward": rng.standard_normal(200).astype(np.float32), "next_obs": rng.standard_normal((200, 3)).astype(np.float32),
             "terminal": np.zeros(200, bool), "steps": np.ones(200, np.int64), "demo": np.ones(200, bool)}

    def train(graphs):
        cfg = replace(entry.default_config, hidden=(64, 64), batch_size=32, warmup_steps=40)
        if hasattr(cfg, "utd"):
            cfg = replace(cfg, utd=min(cfg.utd, 4))
        envs = [gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), -1.0, 1.0) for _ in range(2)]
        agent = entry(3, envs[0].action_space, cfg, device="cuda", seeds=(1, 2))
        if graphs:
            agent.use_cuda_graphs(warmup_rounds=1)
        members = [make_member(agent, s, env, demos, capacity=400, offline_phase=entry.offline_phase) for s, env in zip((1, 2), envs)]
        for env_steps in (150, 300):
            train_population(agent, members, Schedule(env_steps, offline_updates=10 if entry.offline_phase else 0), progress=False)
        return agent, members

    (eager, eager_members), (graphed, graphed_members) = train(False), train(True)
    assert graphed.cuda_graphs.replays > 100
    assert_same(eager, graphed)
    for a, b in zip(eager_members, graphed_members):
        assert a.counters.updates == b.counters.updates and a.counters.episode_returns == pytest.approx(b.counters.episode_returns, abs=1e-4)
