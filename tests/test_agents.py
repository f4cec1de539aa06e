"""Contract and unit tests of the RL backends, the replay buffer and the MixedSampler."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from pipeline.agents import AGENTS, PRESETS, load_agent, save_agent
from pipeline.agents.artifact import AgentArtifactError
from pipeline.agents.iql import expectile_loss
from pipeline.agents.networks import CriticEnsemble, EnsembleLinear, EnsembleMLP
from pipeline.agents.replay import MixedSampler, ReplayBuffer
from pipeline.entry import UserError
from pipeline.io import sha256_file

torch.set_num_threads(1)
S, A, K = 5, 3, 4
EXPECTED = {"sac", "rlpd", "iql", "dsac", "maq_rlpd", "maq_iql", "maq_dsac"}


def small(method, **overrides):
    """The method's own preset, shrunk for speed (ensemble size kept; UTD cut to ≤ 2)."""
    cfg = method.default_config
    changes = dict(hidden=(32, 32), batch_size=16)
    if hasattr(cfg, "utd"):
        changes["utd"] = min(cfg.utd, 2)
    return replace(cfg, **{**changes, **overrides})


def space_for(method) -> gym.Space:
    return gym.spaces.Discrete(K) if method.discrete else gym.spaces.Box(-1.0, 1.0, (A,), np.float32)


def fake_batch(rng, n, discrete, demo_fraction=0.5) -> dict[str, np.ndarray]:
    return {
        "obs": rng.standard_normal((n, S)).astype(np.float32),
        "action": rng.integers(0, K, n) if discrete else rng.uniform(-1, 1, (n, A)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32),
        "next_obs": rng.standard_normal((n, S)).astype(np.float32),
        "terminal": rng.random(n) < 0.2,
        "steps": rng.integers(1, 4, n),
        "demo": rng.random(n) < demo_fraction,
    }


def build(name, **overrides):
    method = AGENTS[name]
    torch.manual_seed(0)
    return method(S, space_for(method), small(method, **overrides), device="cpu")


def test_registry_has_the_six_methods_and_the_dsac_backend():
    assert set(AGENTS) == EXPECTED
    assert {n for n, m in AGENTS.items() if m.macro} == {"maq_rlpd", "maq_iql", "maq_dsac"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_contract(name, tmp_path):
    agent = build(name)
    method = AGENTS[name]
    rng = np.random.default_rng(0)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    for _ in range(3):
        losses = agent.update(fake_batch(rng, agent.update_batch_size, method.discrete))
        assert losses and all(isinstance(v, float) and np.isfinite(v) for v in losses.values()), losses
    changed = [k for k, v in agent.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("critic.") for k in changed) and any(k.startswith("actor.") for k in changed)

    obs = rng.standard_normal((7, S)).astype(np.float32) * 3
    for deterministic in (False, True):
        single, batch = agent.act(obs[0], deterministic), agent.act(obs, deterministic)
        if method.discrete:
            assert isinstance(single, int) and 0 <= single < K
            assert batch.shape == (7,) and batch.min() >= 0 and batch.max() < K
        else:
            assert single.shape == (A,) and batch.shape == (7, A)
            assert np.all(np.abs(batch) <= 1.0) and np.all(np.isfinite(batch))

    # save → load is bit-exact and acts identically
    save_agent(agent, tmp_path / "agent", codebook_hash="cb-1" if method.macro else None)
    loaded = load_agent(tmp_path / "agent", codebook="cb-1" if method.macro else None, device="cpu")
    assert loaded.method == name and loaded.config == agent.config
    for k, v in agent.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    np.testing.assert_array_equal(loaded.act(obs, True), agent.act(obs, True))


def test_macro_agent_refuses_another_codebook(tmp_path):
    agent = build("maq_dsac")
    with pytest.raises(ValueError, match="codebook"):
        save_agent(agent, tmp_path / "a")  # a code agent without its codebook's hash
    save_agent(agent, tmp_path / "a", codebook_hash="cb-1")
    with pytest.raises(ValueError, match="trained on codebook cb-1"):
        load_agent(tmp_path / "a", codebook="cb-2")


def test_truncated_weights_file_raises_a_clear_error(tmp_path):
    save_agent(build("sac"), tmp_path / "a")
    path = tmp_path / "a" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors .* does not match weights_sha256 .* truncated or altered"):
        load_agent(tmp_path / "a")


CODEBOOK = "cb-1"


def _weights(d):
    return d / "model.safetensors"


def _truncate(at):
    def corrupt(d):
        data = _weights(d).read_bytes()
        _weights(d).write_bytes(data[: at(data)])
    return corrupt


def _header_end(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def _flip(at):
    def corrupt(d):
        data = bytearray(_weights(d).read_bytes())
        data[at(bytes(data))] ^= 0x01
        _weights(d).write_bytes(bytes(data))
    return corrupt


def _edit(change):
    def corrupt(d):
        config = json.loads((d / "config.json").read_text())
        change(config)
        (d / "config.json").write_text(json.dumps(config, indent=2))
    return corrupt


def _first_float(config: dict) -> str:
    return next(k for k, v in config["config"].items() if isinstance(v, float))


def _other_weights(d):
    """The weights of another run (same shapes, another init): each file is intact, the pair is not."""
    other = AGENTS["maq_dsac"](S, space_for(AGENTS["maq_dsac"]), small(AGENTS["maq_dsac"]), device="cpu", seeds=(7,))
    save_agent(other, d.parent / "other", codebook_hash=CODEBOOK)
    _weights(d).write_bytes(_weights(d.parent / "other").read_bytes())


CORRUPTIONS = {  # name: (corrupt the directory, what the message must say)
    "empty weights": (_truncate(lambda data: 0), "does not match weights_sha256"),
    "truncated in the header length": (_truncate(lambda data: 5), "does not match weights_sha256"),
    "truncated in the header": (_truncate(lambda data: _header_end(data) // 2), "does not match weights_sha256"),
    "truncated after the header": (_truncate(_header_end), "does not match weights_sha256"),
    "truncated by one byte": (_truncate(lambda data: len(data) - 1), "does not match weights_sha256"),
    "flipped byte in the header": (_flip(lambda data: 20), "does not match weights_sha256"),
    "flipped byte in tensor data": (_flip(lambda data: (_header_end(data) + len(data)) // 2), "does not match weights_sha256"),
    "weights of another run": (_other_weights, "come from different runs"),
    "edited method": (_edit(lambda c: c.update(method="maq_iql")), "config.json was edited"),
    "edited obs_dim": (_edit(lambda c: c.update(obs_dim=c["obs_dim"] + 1)), "config.json was edited"),
    "edited action_space": (_edit(lambda c: c["action_space"].update(n=c["action_space"]["n"] + 1)), "config.json was edited"),
    "edited config value": (_edit(lambda c: c["config"].update({_first_float(c): c["config"][_first_float(c)] * 2})), "config.json was edited"),
    "edited execute_steps": (_edit(lambda c: c.update(execute_steps=1)), "config.json was edited"),
    "edited weights_sha256": (_edit(lambda c: c.update(weights_sha256="0" * 64)), "does not match weights_sha256"),
    "removed weights_sha256": (_edit(lambda c: c.pop("weights_sha256")), "lacks weights_sha256"),
    "edited codebook_hash": (_edit(lambda c: c.update(codebook_hash="cb-2")), "config.json was edited"),
    "format 2 agent": (_edit(lambda c: c.update(format_version=2)), "format_version 2"),
    "invalid JSON": (lambda d: (d / "config.json").write_text((d / "config.json").read_text()[:-20]), "config.json is not valid JSON"),
    "deleted weights": (lambda d: _weights(d).unlink(), "model.safetensors missing"),
    "deleted config": (lambda d: (d / "config.json").unlink(), "config.json missing"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupted_agent_is_refused_with_a_clear_message(case, tmp_path):
    """Regression (issue 15): 5 of 12 corruptions of an agent's files loaded silently before agents recorded
    weights_sha256; each one now fails, naming the directory, the file at fault and what to do."""
    directory = tmp_path / "agent"
    save_agent(build("maq_dsac"), directory, codebook_hash=CODEBOOK)
    load_agent(directory, codebook=CODEBOOK)  # intact: loads
    corrupt, expected = CORRUPTIONS[case]
    corrupt(directory)
    with pytest.raises(AgentArtifactError) as err:
        load_agent(directory, codebook=CODEBOOK)
    message = str(err.value)
    assert str(directory) in message and expected in message, message
    assert "dvc repro finetune" in message  # what to do
    assert isinstance(err.value, ValueError) and isinstance(err.value, UserError)


def test_agent_config_records_the_weights_hash(tmp_path):
    save_agent(build("sac"), tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["weights_sha256"] == sha256_file(tmp_path / "a" / "model.safetensors") and config["format_version"] == 3


def test_saving_an_agent_twice_writes_the_same_bytes(tmp_path):
    # DVC hashes the files: the same agent must be the same bytes (safetensors orders metadata keys by hash map)
    agent = build("sac")
    files = {(save_agent(agent, tmp_path / str(i)) / "model.safetensors").read_bytes() for i in range(10)}
    assert len(files) == 1


@pytest.mark.parametrize("name", ["rlpd", "maq_rlpd"])
def test_rlpd_ensemble_is_one_batched_module(name):
    method = AGENTS[name]
    agent = method(S, space_for(method), small(method), device="cpu", seeds=(1, 2, 3))
    assert agent.config.n_critics == 10 and agent.config.critic_subset == 2 and agent.config.critic_layer_norm
    assert isinstance(agent.critic, CriticEnsemble)
    assert not any(isinstance(m, (nn.ModuleList, nn.Linear)) for m in agent.critic.modules())
    linears = [m for m in agent.critic.modules() if isinstance(m, EnsembleLinear)]
    assert len(linears) == 3  # one batched layer per depth, not one per member or per agent
    assert all(p.shape[0] == 3 * 10 for p in agent.critic.parameters())  # P × E critics in one tensor
    in_dim = agent.critic.mlp.net[0].weight.shape[1]
    assert agent.critic(torch.zeros(3, 6, in_dim)).shape[:3] == (3, 10, 6)


def test_rlpd_target_takes_the_min_over_two_random_members():
    """Target critic member e outputs the constant e; with α ≈ 0 the soft target is the min of the
    drawn subset: never 9 (the max), sometimes above 0 (so not a min over all), mean ≈ E[min of 2]."""
    agent = build("rlpd")
    with torch.no_grad():
        last = agent.critic_target.mlp.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.arange(10.0).view(10, 1, 1))
        agent.log_alpha.fill_(-50.0)
    draws = []
    for _ in range(400):
        target = agent.soft_value_target(torch.randn(1, 8, S))[0]
        assert torch.allclose(target, target[0].expand(8), atol=1e-5)  # one subset per batch
        draws.append(round(target[0].item()))
    draws = np.array(draws)
    assert set(draws) <= set(range(9)) and (draws > 0).mean() > 0.6
    assert draws.mean() == pytest.approx(120 / 45, abs=0.35)  # E[min of 2 distinct of 0..9] = 8/3


def test_ensemble_members_subset_matches_the_full_evaluation():
    torch.manual_seed(0)
    net = CriticEnsemble(2, 6, 4, (8, 8), 3, layer_norm=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # LayerNorm scales/shifts differ per member
    x = torch.randn(2, 5, 4)
    subsets = torch.tensor([[4, 1], [0, 5]])
    full = net(x)  # (2, 6, 5, 3)
    expected = torch.stack([full[0, [4, 1]].min(0).values, full[1, [0, 5]].min(0).values])
    torch.testing.assert_close(net.subset_min(x, subsets), expected)
    torch.testing.assert_close(net.subset_min(x, torch.arange(6).expand(2, 6)), full.min(1).values)  # all: plain min
    single = EnsembleMLP(6, 4, (8, 8), 3)
    torch.testing.assert_close(single(x[0]), torch.stack([single(x[0], torch.tensor([e]))[0] for e in range(6)]))


def test_sac_settings_differ_from_rlpd_only_by_config():
    sac, rlpd = AGENTS["sac"], AGENTS["rlpd"]
    assert sac.agent_class is rlpd.agent_class and sac.backend == rlpd.backend == "sac"
    assert (sac.default_config.n_critics, sac.default_config.utd, sac.default_config.target_entropy_scale) == (2, 1, 1.0)
    assert (rlpd.default_config.utd, rlpd.default_config.target_entropy_scale, rlpd.default_config.init_temperature,
            rlpd.default_config.offline_ratio) == (20, 0.5, 1.0, 0.5)
    agent = build("sac")
    assert agent.target_entropy == -A


def test_official_maq_rlpd_preset():
    method, cfg = PRESETS["maq_rlpd_official"]
    assert method == "maq_rlpd"
    assert (cfg.n_critics, cfg.critic_layer_norm, cfg.fixed_temperature, cfg.critic_lr, cfg.update_every,
            cfg.batch_size, cfg.offline_ratio) == (2, False, 0.2, 1e-3, 8, 128, 0.5)
    agent = AGENTS[method](S, gym.spaces.Discrete(K), replace(cfg, hidden=(16,), batch_size=8), device="cpu")
    agent.update(fake_batch(np.random.default_rng(0), 8, True))
    assert agent.alpha.item() == pytest.approx(0.2)  # fixed, never tuned
    assert "alpha_opt" not in agent.optimizers()


def test_expectile_loss_hand_computed():
    diff = torch.tensor([2.0, -1.0, 0.5])
    # 0.7·4 + 0.3·1 + 0.7·0.25 = 3.275, mean over 3 (per member: a population of one here)
    assert expectile_loss(diff[None], 0.7).item() == pytest.approx(3.275 / 3)
    assert expectile_loss(diff[None], 0.5).item() == pytest.approx(0.5 * (4 + 1 + 0.25) / 3)


def test_iql_normalizer_statistics_are_saved(tmp_path):
    agent = build("iql")
    agent.set_obs_stats(np.arange(S) * 1.0, np.full(S, 2.0))
    save_agent(agent, tmp_path / "iql")
    loaded = load_agent(tmp_path / "iql")
    np.testing.assert_array_equal(loaded.normalizer.mean.numpy(), np.arange(S))
    np.testing.assert_array_equal(loaded.normalizer.std.numpy(), np.full(S, 2.0))


def test_discount_uses_the_steps_a_macro_spanned():
    agent = build("maq_dsac")
    torch.testing.assert_close(agent.discount(torch.tensor([1.0, 3.0])), torch.tensor([0.99, 0.99**3]))


def bandit_batch(rng, n, discrete):
    """One-step episodes: obs is ±1 in dim 0; the best discrete action is 1 if obs>0 else 2; the
    best continuous action is 0.5·sign(obs) in every dim."""
    batch = fake_batch(rng, n, discrete)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    batch["obs"][:, 0] = sign
    if discrete:
        batch["reward"] = (batch["action"] == np.where(sign > 0, 1, 2)).astype(np.float32)
    else:
        batch["reward"] = -np.sum((batch["action"] - 0.5 * sign[:, None]) ** 2, axis=1).astype(np.float32)
    batch["terminal"][:] = True
    return batch


@pytest.mark.parametrize("name,updates", [("dsac", 300), ("maq_iql", 600), ("sac", 800), ("iql", 800)])
def test_backends_learn_a_contextual_bandit(name, updates):
    fast = dict(actor_lr=1e-3, critic_lr=1e-3) if not AGENTS[name].discrete else {}
    agent = build(name, batch_size=64, **fast)
    rng = np.random.default_rng(1)
    for _ in range(updates):
        agent.update(bandit_batch(rng, agent.update_batch_size, AGENTS[name].discrete))
    obs = np.zeros((2, S), np.float32)
    obs[:, 0] = [1.0, -1.0]
    action = agent.act(obs, deterministic=True)
    if AGENTS[name].discrete:
        np.testing.assert_array_equal(action, [1, 2])
    else:
        # the best action is ±0.5; entropy (SAC) and weighted regression (IQL) shrink it a little
        signed = action * np.array([[1.0], [-1.0]])
        assert np.all((signed > 0.25) & (signed < 0.75)), action


def test_replay_buffer_wraps_and_samples_reproducibly():
    space = gym.spaces.Box(-1.0, 1.0, (A,), np.float32)
    buffers = [ReplayBuffer.for_spaces(5, S, space, seed=3) for _ in range(2)]
    for buffer in buffers:
        for i in range(7):
            buffer.add(obs=np.full(S, i), action=np.zeros(A), reward=i, next_obs=np.zeros(S), terminal=False)
    assert len(buffers[0]) == 5
    assert sorted(buffers[0].data["reward"]) == [2, 3, 4, 5, 6]  # the two oldest were overwritten
    assert np.all(buffers[0].data["steps"] == 1) and not buffers[0].data["demo"].any()
    a, b = buffers[0].sample(32), buffers[1].sample(32)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert set(a["reward"]) <= {2, 3, 4, 5, 6}


@pytest.mark.parametrize("ratio,batch_size", [(0.5, 256), (0.25, 64), (0.0, 10), (1.0, 10)])
def test_mixed_sampler_honours_the_offline_ratio(ratio, batch_size):
    space = gym.spaces.Discrete(K)
    offline = ReplayBuffer.for_spaces(100, S, space, seed=0)
    online = ReplayBuffer.for_spaces(100, S, space, seed=1)
    offline.add_batch(obs=np.zeros((50, S)), action=np.zeros(50, int), reward=np.ones(50), next_obs=np.zeros((50, S)),
                      terminal=np.zeros(50, bool), demo=np.ones(50, bool))
    online.add_batch(obs=np.zeros((30, S)), action=np.zeros(30, int), reward=np.zeros(30), next_obs=np.zeros((30, S)),
                     terminal=np.zeros(30, bool))
    sampler = MixedSampler(offline, online, offline_ratio=ratio)
    for _ in range(5):
        batch = sampler.sample(batch_size)
        assert len(batch["reward"]) == batch_size
        assert batch["reward"].sum() == round(ratio * batch_size)  # reward 1 marks demonstration rows
        np.testing.assert_array_equal(batch["demo"], batch["reward"] == 1)


def test_every_minibatch_of_a_mixed_batch_is_mixed():
    """With UTD 4 a batch is 4 minibatches; each takes its share of demonstrations (as
    ikostrikov/rlpd's interleaving does), not the first half of the batch all of them."""
    space = gym.spaces.Discrete(K)
    offline, online = ReplayBuffer.for_spaces(100, S, space, seed=0), ReplayBuffer.for_spaces(100, S, space, seed=1)
    offline.add_batch(obs=np.zeros((50, S)), action=np.zeros(50, int), reward=np.ones(50), next_obs=np.zeros((50, S)),
                      terminal=np.zeros(50, bool))
    online.add_batch(obs=np.zeros((30, S)), action=np.zeros(30, int), reward=np.zeros(30), next_obs=np.zeros((30, S)),
                     terminal=np.zeros(30, bool))
    batch = MixedSampler(offline, online, offline_ratio=0.25, minibatch_size=16).sample(4 * 16)
    for minibatch in batch["reward"].reshape(4, 16):
        np.testing.assert_array_equal(minibatch, [1] * 4 + [0] * 12)
    np.testing.assert_array_equal(batch["demo"], batch["reward"] == 1)
    with pytest.raises(ValueError, match="does not split into minibatches of 16"):
        MixedSampler(offline, online, minibatch_size=16).sample(40)


def test_device_replay_mirrors_and_samples_like_the_members_samplers():
    """The CUDA engine's on-device replay, run on the CPU: mirrored rows, the mixed layout per
    minibatch, draws only from rows each member holds, and nothing drawn for a member sitting out."""
    from pipeline.agents.replay import DeviceReplay
    from pipeline.agents.train import make_member

    agent = population("rlpd", (1, 2))
    demos = {k: v for k, v in fake_batch(np.random.default_rng(0), 40, False).items()}
    demos["reward"] = np.full(40, 7.0, np.float32)  # marks demonstration rows
    env = SimpleNamespace(action_space=agent.action_space)  # all make_member reads of an env
    members = [make_member(agent, s, env, demos, capacity=50, offline_phase=False) for s in (1, 2)]
    replay = DeviceReplay(agent, members)
    for step in range(6):  # member 1 steps only every other time
        stepped = np.array([True, step % 2 == 0])
        rows = {"obs": np.full((2, S), step, np.float32), "action": np.zeros((2, A), np.float32),
                "reward": np.array([100 + step, 200 + step], np.float32), "next_obs": np.zeros((2, S), np.float32),
                "terminal": np.zeros(2, bool), "steps": np.ones(2, np.int64), "demo": np.zeros(2, bool)}
        for i in np.flatnonzero(stepped):
            members[i].buffers["online"].add(**{k: v[i] for k, v in rows.items()})
        replay.add_step(rows, stepped)
    for i, m in enumerate(members):
        np.testing.assert_array_equal(replay.online["reward"][i].numpy(), m.buffers["online"].data["reward"])
    batch = replay.sample(2 * agent.config.batch_size)
    reward = batch["reward"].numpy().reshape(2, 2, -1)  # (P, minibatch, row)
    half = agent.config.batch_size // 2
    assert (reward[:, :, :half] == 7).all()
    assert set(reward[0, :, half:].ravel()) <= {100, 101, 102, 103, 104, 105}
    assert set(reward[1, :, half:].ravel()) <= {200, 202, 204}
    np.testing.assert_array_equal(batch["demo"].numpy(), (reward == 7).reshape(2, -1))
    state = agent.generators[1].get_state()
    with agent.members_active(np.array([True, False])):
        replay.sample(16)
    assert torch.equal(agent.generators[1].get_state(), state)


def test_buffer_from_demonstration_batch_keeps_rows_and_room():
    rng = np.random.default_rng(0)
    batch = fake_batch(rng, 20, discrete=True, demo_fraction=1.0)
    buffer = ReplayBuffer.from_batch(batch, S, gym.spaces.Discrete(K), capacity=50, seed=0)
    assert len(buffer) == 20 and buffer.capacity == 50
    np.testing.assert_array_equal(buffer.data["action"][:20], batch["action"])
    np.testing.assert_array_equal(buffer.data["steps"][:20], batch["steps"])
    buffer.add(obs=np.zeros(S), action=1, reward=0.0, next_obs=np.zeros(S), terminal=False)
    assert len(buffer) == 21 and not buffer.data["demo"][20]


# -- populations: members are independent runs ---------------------------------------------------
def population(name, seeds):
    method = AGENTS[name]
    return method(S, space_for(method), small(method), device="cpu", seeds=seeds)


def member_batches(agent, seeds, discrete, rounds):
    """Per member, its own stream of batches (seeded by the member's seed), stacked (P, N, …)."""
    rngs = [np.random.default_rng(s) for s in seeds]
    for _ in range(rounds):
        parts = [fake_batch(rng, agent.update_batch_size, discrete) for rng in rngs]
        yield {k: np.stack([p[k] for p in parts]) for k in parts[0]}


def train_members(name, seeds, rounds=4):
    agent = population(name, seeds)
    obs = np.random.default_rng(0).standard_normal((len(seeds), 3, S)).astype(np.float32)
    for batch in member_batches(agent, seeds, AGENTS[name].discrete, rounds):
        agent.update_members(batch)
        agent.act_members(obs, deterministic=False)  # acting draws member noise too
    return agent


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_members_results_do_not_depend_on_the_other_members(name):
    """Changing member 2's seed (its init, noise and data) leaves members 0 and 1 bit-identical."""
    a, b = train_members(name, (1, 2, 3)), train_members(name, (1, 2, 99))
    for i in (0, 1):
        for key, value in a.member_state_dict(i).items():
            assert torch.equal(value, b.member_state_dict(i)[key]), (i, key)
    assert any(not torch.equal(v, b.member_state_dict(2)[k]) for k, v in a.member_state_dict(2).items())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_member_equals_the_single_run_of_its_seed(name):
    """Member 1 of a population of 3 ends where a population of one with its seed ends."""
    together = train_members(name, (1, 2, 3))
    alone = train_members(name, (2,))
    for key, value in alone.member_state_dict(0).items():
        torch.testing.assert_close(together.member_state_dict(1)[key], value, atol=1e-5, rtol=1e-5, msg=key)


@pytest.mark.parametrize("name", ["rlpd", "maq_iql"])
def test_an_inactive_member_sits_the_round_out(name):
    agent = train_members(name, (1, 2, 3), rounds=2)
    before = agent.member_state_dict(1)
    moments = {n: [t.clone() for t in o.exp_avg] for n, o in agent.optimizers().items()}
    generator = agent.generators[1].get_state()
    steps = {n: o.step_count.clone() for n, o in agent.optimizers().items()}
    batch = next(member_batches(agent, (1, 2, 3), AGENTS[name].discrete, 1))
    agent.update_members(batch, active=np.array([True, False, True]))
    for key, value in agent.member_state_dict(1).items():
        assert torch.equal(value, before[key]), key
    assert torch.equal(agent.generators[1].get_state(), generator)
    for n, o in agent.optimizers().items():
        assert o.step_count[1] == steps[n][1] and o.step_count[0] > steps[n][0], n
        for old, new in zip(moments[n], o.exp_avg):
            rows = new.shape[0] // 3
            assert torch.equal(old[rows : 2 * rows], new[rows : 2 * rows])


def test_population_adam_is_torch_adam_per_member():
    torch.manual_seed(0)
    w = torch.randn(2 * 3, 4, requires_grad=True)  # 2 members × 3 rows
    reference = [w.detach()[:3].clone().requires_grad_(), w.detach()[3:].clone().requires_grad_()]
    from pipeline.agents.networks import PopulationAdam

    adam, torch_adams = PopulationAdam([w], 2, lr=1e-2), [torch.optim.Adam([r], lr=1e-2) for r in reference]
    for step in range(5):
        grad = torch.randn(6, 4)
        active = torch.tensor([True, step % 2 == 0])  # member 1 skips every other step
        w.grad = grad.clone()
        adam.step(active)
        for i, (r, opt) in enumerate(zip(reference, torch_adams)):
            if active[i]:
                r.grad = grad[3 * i : 3 * i + 3].clone()
                opt.step()
    torch.testing.assert_close(w.detach()[:3], reference[0].detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w.detach()[3:], reference[1].detach(), atol=1e-6, rtol=1e-6)


def test_fused_population_adam_is_torch_adam_per_member():
    """The CUDA engine's optimizer path (torch's fused Adam kernel reading the step count from the
    device), run on the CPU: equal to torch.optim.Adam per member, through a masked step too."""
    from pipeline.agents.networks import PopulationAdam

    torch.manual_seed(0)
    w = torch.randn(2 * 3, 4, requires_grad=True)
    reference = [w.detach()[:3].clone().requires_grad_(), w.detach()[3:].clone().requires_grad_()]
    adam, torch_adams = PopulationAdam([w], 2, lr=1e-2, fused=True), [torch.optim.Adam([r], lr=1e-2) for r in reference]
    for step in range(6):
        grad = torch.randn(6, 4)
        active = None if step != 3 else torch.tensor([True, False])
        w.grad = grad.clone()
        adam.step(active, None if active is None else active.numpy())
        for i, (r, opt) in enumerate(zip(reference, torch_adams)):
            if active is None or active[i]:
                r.grad = grad[3 * i : 3 * i + 3].clone()
                opt.step()
    assert adam.counts == [6, 5] and adam.step_count.tolist() == [6.0, 5.0]
    torch.testing.assert_close(w.detach()[:3], reference[0].detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w.detach()[3:], reference[1].detach(), atol=1e-6, rtol=1e-6)


def test_a_device_side_mask_leaves_the_host_counts_unknown():
    """maq_iql's prior steps only members with demonstrations in the batch, a mask computed on the
    device: the host stops mirroring its counts rather than reading the device mid-round."""
    agent = population("maq_iql", (1, 2))
    agent.update_members(next(member_batches(agent, (1, 2), True, 1)))
    assert agent.prior_opt.counts is None and agent.critic_opt.counts == [1, 1]
    agent.prior_opt.sync_counts()
    assert agent.prior_opt.counts == [1, 1]


@pytest.mark.parametrize("fused", [False, True], ids=["cpu-foreach", "cuda-fused-kernel"])
def test_sac_critic_step_matches_a_plain_reference(fused):
    """One engine critic step (P=1, E=2) against the textbook update written member by member
    with nn.functional and torch.optim.Adam, on a fixed batch with the same noise and subset;
    with the CPU's foreach Adam and with the fused kernel the CUDA engine steps with."""
    from torch.nn import functional as F

    agent = population("sac", (7,))
    for opt in agent.optimizers().values():
        opt.fused = fused
    b = agent.to_torch({k: v[None] for k, v in fake_batch(np.random.default_rng(3), 16, False).items()})
    critic = agent.critic.mlp.net
    params = [p.detach().clone().requires_grad_() for p in agent.critic.parameters()]  # W0 b0 W1 b1 W2 b2, (E, …)
    target_params = [p.detach().clone() for p in agent.critic_target.parameters()]
    actor = [p.detach().clone() for p in agent.actor.parameters()]
    noise = torch.Generator().manual_seed(0)
    noise.set_state(agent.generators[0].get_state())
    eps = torch.randn((16, A), generator=noise)  # the engine draws the next-action noise first
    loss_engine = agent.update_critic(b)

    def q(ps, x, e):  # critic e: linear → ReLU → linear → ReLU → linear
        h = F.relu(x @ ps[0][e] + ps[1][e])
        h = F.relu(h @ ps[2][e] + ps[3][e])
        return (h @ ps[4][e] + ps[5][e]).squeeze(-1)

    obs, act, next_obs = b["obs"][0], b["action"][0], b["next_obs"][0]
    h = F.relu(next_obs @ actor[0][0] + actor[1][0])
    h = F.relu(h @ actor[2][0] + actor[3][0])
    mean, log_std = (h @ actor[4][0] + actor[5][0]).chunk(2, -1)
    log_std = -5.0 + 0.5 * 7.0 * (torch.tanh(log_std) + 1)
    u = mean + log_std.exp() * eps
    log_prob = (-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1) - (2 * (np.log(2) - u - F.softplus(-2 * u))).sum(-1)
    next_input = torch.cat([next_obs, torch.tanh(u)], -1)
    next_q = torch.minimum(q(target_params, next_input, 0), q(target_params, next_input, 1)) - 1.0 * log_prob  # α = 1
    target = b["reward"][0] + 0.99 ** b["steps"][0] * (1 - b["terminal"][0]) * next_q
    x = torch.cat([obs, act], -1)
    loss = torch.stack([F.mse_loss(q(params, x, e), target) for e in range(2)]).mean()
    opt = torch.optim.Adam(params, lr=agent.config.critic_lr)
    loss.backward()
    opt.step()
    assert loss_engine.item() == pytest.approx(loss.item(), rel=1e-5)
    assert isinstance(critic[0], EnsembleLinear)
    for mine, ref in zip(agent.critic.parameters(), params):
        torch.testing.assert_close(mine.detach(), ref.detach(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["sac", "rlpd"])
def test_actor_step_through_frozen_critics_equals_the_unfrozen_step(name, monkeypatch):
    """The actor's loss reaches the critics with their weights frozen (no weight-gradient matmuls):
    the actor's step is bit-identical to the one with the critics' gradients recorded and thrown
    away, and the critics come out trainable, unchanged and without a gradient."""
    import contextlib

    import pipeline.agents.sac as sac_module

    def run(patch: bool):
        if patch:
            monkeypatch.setattr(sac_module, "frozen", lambda module: contextlib.nullcontext())
        agent = population(name, (3, 4))
        b = agent.to_torch({k: np.stack([v, v]) for k, v in fake_batch(np.random.default_rng(5), 32, False).items()})
        critic_before = [p.detach().clone() for p in agent.critic.parameters()]
        agent.update_actor_and_alpha(b)
        for p, before in zip(agent.critic.parameters(), critic_before):
            assert p.requires_grad and torch.equal(p.detach(), before)
            assert (p.grad is None) != patch  # unfrozen, the critics collect a gradient nobody uses
        return [p.detach().clone() for p in agent.actor.parameters()]

    frozen_step, unfrozen_step = run(False), run(True)
    for mine, ref in zip(frozen_step, unfrozen_step):
        assert torch.equal(mine, ref)
