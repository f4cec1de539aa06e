"""MacroActionEnv and demonstration windows → macro transitions, with a fake codebook."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from pipeline.agents.macro import Codebook, MacroActionEnv, macro_transitions
from pipeline.data.episodes import Episodes
from pipeline.data.windows import make_windows


class FakeCodebook:
    """Code k decodes to the constant action `levels[k]` on every step and every dim; encoding
    picks the level nearest the window's mean action, times a state bit (obs[0] > 0 adds 1 mod K)."""

    def __init__(self, H: int = 3, A: int = 2, levels=(-1.0, -0.5, 0.5, 1.5)):
        self.H, self.A, self.K = H, A, len(levels)
        self.levels = np.asarray(levels, dtype=np.float32)
        self.hash = "fake-codebook-1"

    def encode(self, obs, macro):  # (B, S), (B, H, A) → (B,)
        nearest = np.abs(macro.mean(axis=(1, 2))[:, None] - self.levels[None]).argmin(1)
        return (nearest + (obs[:, 0] > 0)) % self.K

    def decode(self, obs, code):  # (B, S), (B,) → (B, H, A)
        return np.broadcast_to(self.levels[np.asarray(code)][:, None, None], (len(code), self.H, self.A)).copy()


class CountingEnv(gym.Env):
    """obs = [t]; reward of step t (0-based) is t + 1; terminates (or truncates) after a known step."""

    def __init__(self, terminate_after: int | None = None, truncate_after: int | None = None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.terminate_after, self.truncate_after = terminate_after, truncate_after
        self.executed: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.executed.append(np.asarray(action).copy())
        reward = float(self.t + 1)
        self.t += 1
        terminated = self.terminate_after is not None and self.t >= self.terminate_after
        truncated = self.truncate_after is not None and self.t >= self.truncate_after
        return np.array([self.t], np.float32), reward, terminated, truncated, {"success": self.t == 2}


def test_fake_codebook_satisfies_protocol():
    assert isinstance(FakeCodebook(), Codebook)


def test_step_executes_macro_and_discounts_reward():
    env = MacroActionEnv(CountingEnv(), FakeCodebook(H=3), gamma=0.9)
    assert env.action_space == gym.spaces.Discrete(4)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(2)
    assert reward == pytest.approx(1 + 0.9 * 2 + 0.81 * 3)  # Σ γ^j r_{t+j}
    assert info["steps"] == 3 and obs[0] == 3
    np.testing.assert_array_equal(info["rewards"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(info["success"], [False, True, False])
    np.testing.assert_array_equal(info["actions"], np.full((3, 2), 0.5, np.float32))
    assert not terminated and not truncated
    # the next macro continues from the new state: rewards 4, 5, 6
    _, reward, *_ = env.step(0)
    assert reward == pytest.approx(4 + 0.9 * 5 + 0.81 * 6)


def test_receding_horizon_executes_the_first_n_decoded_actions():
    inner = CountingEnv()
    env = MacroActionEnv(inner, FakeCodebook(H=3), gamma=0.9, execute_steps=2)
    env.reset(seed=0)
    obs, reward, _, _, info = env.step(2)
    assert info["steps"] == 2 and obs[0] == 2 and len(inner.executed) == 2
    assert reward == pytest.approx(1 + 0.9 * 2)
    np.testing.assert_array_equal(info["actions"], np.full((2, 2), 0.5, np.float32))
    _, reward, *_ = env.step(0)  # the next code is chosen at s_2
    assert reward == pytest.approx(3 + 0.9 * 4)
    for n in (0, 4):
        with pytest.raises(ValueError, match="1 ≤ execute_steps ≤ 3"):
            MacroActionEnv(CountingEnv(), FakeCodebook(H=3), execute_steps=n)


def test_decoded_actions_are_clipped_to_the_env_bounds():
    inner = CountingEnv()
    env = MacroActionEnv(inner, FakeCodebook(H=2), gamma=0.99)
    env.reset(seed=0)
    _, _, _, _, info = env.step(3)  # level 1.5, outside [-1, 1]
    np.testing.assert_array_equal(np.stack(inner.executed), np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(info["actions"], np.ones((2, 2), np.float32))


def test_stops_early_at_termination():
    inner = CountingEnv(terminate_after=5)
    env = MacroActionEnv(inner, FakeCodebook(H=3), gamma=0.9)
    env.reset(seed=0)
    _, _, terminated, _, info = env.step(1)
    assert not terminated and info["steps"] == 3
    obs, reward, terminated, truncated, info = env.step(1)
    assert terminated and not truncated
    assert info["steps"] == 2 and len(inner.executed) == 5  # the third action is never executed
    assert reward == pytest.approx(4 + 0.9 * 5)


def test_truncation_is_not_termination():
    env = MacroActionEnv(CountingEnv(truncate_after=4), FakeCodebook(H=3), gamma=0.9)
    env.reset(seed=0)
    env.step(0)
    _, reward, terminated, truncated, info = env.step(0)
    assert truncated and not terminated
    assert info["steps"] == 1 and reward == pytest.approx(4.0)


def test_gym_time_limit_truncation_is_not_termination():
    env = MacroActionEnv(gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=4), FakeCodebook(H=3), gamma=0.9)
    env.reset(seed=0)
    env.step(0)
    _, _, terminated, truncated, info = env.step(0)
    assert truncated and not terminated and info["steps"] == 1


def test_step_rejects_codes_outside_the_codebook():
    env = MacroActionEnv(CountingEnv(), FakeCodebook(), gamma=0.9)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside"):
        env.step(4)


class RandomMacroCodebook:
    """Code k decodes to a fixed random float64 macro, whatever the state; values reach ±1.5, so
    execution has to clip."""

    def __init__(self, H: int, A: int, K: int = 8, seed: int = 0):
        self.H, self.A, self.K = H, A, K
        self.macros = np.random.default_rng(seed).uniform(-1.5, 1.5, (K, H, A))  # (K, H, A)
        self.hash = f"random-macros-{seed}"

    def encode(self, obs, macro):  # (B, S), (B, H, A) → (B,)
        raise NotImplementedError

    def decode(self, obs, code):  # (B, S), (B,) → (B, H, A)
        return self.macros[np.asarray(code)]


def _put_object_at_goal(task: str, sim) -> None:
    """Move the task's object to where it succeeds (random macros never get there), so that the
    reward's bonus and success branches are compared too."""
    qpos, qvel = sim.data.qpos.copy(), sim.data.qvel.copy()
    if task == "door":
        qpos[sim.door_hinge_addrs] = 1.4  # hinge angle, open
    elif task == "hammer":  # slide the nail in until its head is at the goal (the gap is linear in the slide)
        nail = sim.model.joint("nail_dir").qposadr[0]

        def gap(q: float) -> np.ndarray:  # (3,) nail head − goal with the nail slid to q
            qpos[nail] = q
            sim.set_state(qpos, qvel)
            return sim.data.site_xpos[sim.target_obj_site_id] - sim.data.site_xpos[sim.goal_site_id]

        g0, g1 = gap(0.0), gap(0.01)
        qpos[nail] = -0.01 * g0.dot(g1 - g0) / (g1 - g0).dot(g1 - g0)
    elif task == "pen":  # turn the target to the pen's orientation (the pen starts at the target's position)
        sim.model.body_quat[sim.target_obj_body_id] = sim.data.xquat[sim.obj_body_id]
    elif task == "relocate":  # the ball's slide joints, by the ball → target offset
        qpos[-6:-3] += sim.data.site_xpos[sim.target_obj_site_id] - sim.data.xpos[sim.obj_body_id]
    sim.set_state(qpos, qvel)


@pytest.mark.parametrize("task", ["door", "hammer", "pen", "relocate"])
def test_adroit_fast_path_is_bit_identical_to_stepping_the_wrappers(task):
    """On a `make_env` env MacroActionEnv runs macros on the simulator directly (OpenLoopRunner);
    its results must equal, to the bit, stepping the wrapper chain one action at a time (forced
    here by a pass-through wrapper that hides the chain), through a time limit and past it, and
    leave the wrappers able to step and reset as usual."""
    from pipeline.envs import make_env
    from pipeline.tasks import get_task

    A = get_task(task).action_dim
    fast = MacroActionEnv(make_env(task), RandomMacroCodebook(H=9, A=A), gamma=0.9)
    slow = MacroActionEnv(gym.Wrapper(make_env(task)), RandomMacroCodebook(H=9, A=A), gamma=0.9)
    assert fast.runner is not None and slow.runner is None
    sims = fast.unwrapped, slow.unwrapped

    def same_state():
        for field in ("qpos", "qvel", "act", "qacc_warmstart", "cacc", "cfrc_ext"):
            np.testing.assert_array_equal(getattr(sims[0].data, field), getattr(sims[1].data, field), err_msg=field)

    codes = np.random.default_rng(1).integers(0, 8, 30)
    truncations = terminations = successes = 0
    for seed, n_macros in ((0, 24), (1, 6)):  # 23 macros reach the 200-step limit; the 24th steps past it
        steps = 0
        obs = [env.reset(seed=seed)[0] for env in (fast, slow)]
        np.testing.assert_array_equal(*obs)
        for i, code in enumerate(codes[:n_macros]):
            if seed == 0 and i == 0:
                for sim in sims:
                    _put_object_at_goal(task, sim)
            (obs_f, r_f, term_f, trunc_f, info_f), (obs_s, r_s, term_s, trunc_s, info_s) = fast.step(code), slow.step(code)
            np.testing.assert_array_equal(obs_f, obs_s)
            assert obs_f.dtype == obs_s.dtype and r_f == r_s and (term_f, trunc_f) == (term_s, trunc_s)
            assert info_f.keys() == info_s.keys()
            for key in info_s:
                np.testing.assert_array_equal(info_f[key], info_s[key], err_msg=key)
            same_state()
            truncations += trunc_f
            terminations += term_f
            successes += info_f["success"].sum()
            steps += info_f["steps"]
    if get_task(task).drop_height is None:
        assert truncations == 2 and terminations == 0  # the 23rd macro (2 steps) and the one after it (1 step)
    else:  # pen: random macros drop the pen, and D4RL's termination ends the macro on the step it drops
        assert terminations > 0
    assert successes > 0
    # the wrappers carry on: a plain step mid-episode, then a reset, as if every step had gone through them
    action = np.full(A, 0.3, np.float32)
    (obs_f, r_f, _, trunc_f, info_f), (obs_s, r_s, _, trunc_s, info_s) = fast.env.step(action), slow.env.step(action)
    np.testing.assert_array_equal(obs_f, obs_s)
    assert r_f == r_s and trunc_f == trunc_s and info_f == info_s
    assert fast.env.env._elapsed_steps == steps + 1
    np.testing.assert_array_equal(fast.reset(seed=2)[0], slow.reset(seed=2)[0])


def test_fast_path_needs_a_reset_like_the_wrappers():
    from pipeline.envs import OpenLoopRunner, make_env

    runner = OpenLoopRunner.of(make_env("door"))
    with pytest.raises(gym.error.ResetNeeded):
        runner.run(np.zeros((9, 28), np.float32))


def _episodes(rng) -> Episodes:
    lengths = [7, 5]
    T = sum(lengths)
    obs = rng.standard_normal((T, 3)).astype(np.float32)
    return Episodes(
        obs=obs, next_obs=obs + 1.0, actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
        rewards=rng.standard_normal(T).astype(np.float32),
        terminations=np.array([False] * 6 + [True] + [False] * 5), truncations=np.array([False] * 11 + [True]),
        offsets=np.array([0, 7, 12]), episode_ids=np.array([0, 1]),
    )


def test_windows_become_macro_transitions_with_the_codebooks_codes():
    codebook = FakeCodebook(H=3)
    windows = make_windows(_episodes(np.random.default_rng(0)), H=3, gamma=0.9)
    tr = macro_transitions(windows, codebook, batch_size=4)  # several chunks
    expected = codebook.encode(windows.obs, windows.macro)
    assert len(np.unique(expected)) > 1  # the check below can tell codes apart
    np.testing.assert_array_equal(tr.code, expected)
    assert tr.code.dtype == np.int64 and len(tr) == (7 - 3 + 1) + (5 - 3 + 1)
    np.testing.assert_allclose(tr.reward, windows.reward, rtol=1e-6)
    np.testing.assert_array_equal(tr.next_obs, windows.next_obs)
    np.testing.assert_array_equal(tr.steps, np.full(len(tr), 3))
    np.testing.assert_array_equal(tr.terminal, windows.terminal)
    assert tr.terminal.sum() == 1  # the window ending on episode 0's terminal step
    batch = tr.as_batch()
    np.testing.assert_array_equal(batch["action"], tr.code)
    assert batch["demo"].all()


def test_macro_transitions_reject_a_codebook_with_another_H():
    windows = make_windows(_episodes(np.random.default_rng(0)), H=2)
    with pytest.raises(ValueError, match="H=2"):
        macro_transitions(windows, FakeCodebook(H=3))


def test_maq_rlpd_trains_over_codes_with_mixed_batches():
    """The whole MAQ loop: demo windows → codes → offline buffer; MacroActionEnv online; a
    MixedSampler feeds maq_rlpd. Buffers record the steps each macro spanned."""
    from dataclasses import replace

    import torch

    from pipeline.agents import AGENTS
    from pipeline.agents.train import Schedule, make_member, train_population

    torch.set_num_threads(1)
    codebook = FakeCodebook(H=3)
    env = MacroActionEnv(gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=10), codebook, gamma=0.9)
    demos = macro_transitions(make_windows(_episodes(np.random.default_rng(0)), H=3, gamma=0.9), codebook)
    # the fake env has obs size 1; give the demonstrations the same size
    batch = demos.as_batch()
    batch["obs"], batch["next_obs"] = batch["obs"][:, :1], batch["next_obs"][:, :1]
    method = AGENTS["maq_rlpd"]
    config = replace(method.default_config, hidden=(16,), batch_size=8, utd=2, warmup_steps=5)
    agent = method(1, env.action_space, config, device="cpu", seeds=(0,))
    member = make_member(agent, 0, env, batch, capacity=100, offline_phase=False)
    assert set(member.buffers) == {"offline", "online"}
    train_population(agent, [member], Schedule(env_steps=50), progress=False)  # 5 episodes of 4 macro steps
    assert member.counters.agent_steps == 20 and member.counters.updates == 15
    # episodes of 10 env steps = macros of 3, 3, 3, 1; undiscounted return 1 + … + 10
    assert member.counters.episode_returns == [55.0] * 5
    online = member.buffers["online"]
    np.testing.assert_array_equal(online.data["steps"][:4], [3, 3, 3, 1])
    assert not online.data["terminal"][:20].any()  # time limits are not terminations


@pytest.mark.parametrize("name", ["sac", "rlpd", "iql", "dsac", "maq_rlpd", "maq_iql", "maq_dsac"])
def test_training_loop_runs_every_method(name):
    """`train_population` drives each registered method, two members at once; discrete ones act in codes."""
    from dataclasses import replace

    import torch

    from pipeline.agents import AGENTS
    from pipeline.agents.train import Schedule, make_member, train_population
    from pipeline.benchmarks.agents import mean_return

    torch.set_num_threads(1)
    method = AGENTS[name]

    def make():
        env = gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=6)
        return MacroActionEnv(env, FakeCodebook(H=3), gamma=0.9) if method.discrete else env

    envs = [make(), make()]
    cfg = method.default_config
    config = replace(cfg, hidden=(16,), batch_size=4, warmup_steps=3, **({"utd": 2} if hasattr(cfg, "utd") else {}))
    agent = method(1, envs[0].action_space, config, device="cpu", seeds=(0, 1))
    demos = None
    if config.offline_ratio or method.offline_phase:
        demos = {"obs": np.zeros((8, 1), np.float32), "action": np.zeros(8, np.int64) if method.discrete else np.zeros((8, 2), np.float32),
                 "reward": np.ones(8, np.float32), "next_obs": np.zeros((8, 1), np.float32), "terminal": np.zeros(8, bool)}
    members = [make_member(agent, seed, env, demos, capacity=50, offline_phase=method.offline_phase) for seed, env in zip((0, 1), envs)]
    returns = []

    def evaluate(i, env_steps):  # a deterministic episode of member i
        returns.append(mean_return(agent.member(i), make(), episodes=1, seed=0))
        return {"env_steps": env_steps}

    steps_per_agent_step = 3 if method.discrete else 1
    train_population(agent, members, Schedule(env_steps=12 * steps_per_agent_step, offline_updates=2 if method.offline_phase else 0), evaluate=evaluate, progress=False)
    for m in members:
        assert m.counters.agent_steps == 12 and m.counters.updates == 9
        assert m.counters.offline_updates == (2 if method.offline_phase else 0)
        assert m.counters.episode_returns[0] == 21.0  # 1 + … + 6, whatever the agent did
    assert returns == [21.0] * 4  # at the start and the end, per member
