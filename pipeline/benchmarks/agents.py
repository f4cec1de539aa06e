"""Benchmarks of the RL backends (not tests: they take minutes).

    python -m pipeline.benchmarks.agents speed                    # (a) update speed of the population engine, CPU (+ CUDA)
    python -m pipeline.benchmarks.agents profile                  # (a') CUDA: where an update round's time goes
    python -m pipeline.benchmarks.agents compile                  # (a'') CUDA: torch.compile of the round vs the graph
    python -m pipeline.benchmarks.agents learn --methods sac,dsac # (b) sanity: do backends learn?
    python -m pipeline.benchmarks.agents offline                  # (c) offline → online, MAQ over codes

(a) times update rounds of all six methods' paper configs (rlpd and maq_rlpd: E=10 critics, batch
256, UTD 20), door-sized, on a device-resident batch: today's eager single agent (foreach Adam, no
graph), then the population engine at P = 1, 3 and 12 members in one process (on CUDA: captured
CUDA graphs and the fused Adam kernel, in FP32 and then TF32 matmuls), and prints critic updates/s
in total with the ratio to the eager single agent, and the paper grid's projected update time per
method (its paper budget's critic updates at its P=3 rate; see `paper_critic_updates`). Then the
plain env's and a macro step's env-step rates against the raw simulator's (`mj_step` ×
frame_skip) on door, one core, all three on the same episodes.
(a') `profile` (CUDA): a round's graph replay time against the eager round's, its kernel count,
GPU busy time and costliest kernels. (a'') `compile` (CUDA): torch.compile of the round beside the graph.
(b) trains each chosen backend online on a small gymnasium task until its deterministic
evaluation (10 episodes) reaches the bar, or its step budget runs out, and prints steps and wall
time: sac / rlpd / iql (online from scratch) on Pendulum-v1 (bar −200), dsac on CartPole-v1
(bar 475), and maq_dsac on Pendulum-v1 acting through MacroActionEnv with a hand-made constant-torque
codebook (H=3, K=9; steps are macro steps). RLPD runs online only here (no demonstrations exist for Pendulum) and with
`--rlpd-utd` (default 20) critic steps per env step.
(c) trains SAC on Pendulum to the bar, records 25 stochastic episodes as demonstrations, and runs
iql (offline → online), maq_iql (windows → codes → offline → online) and maq_rlpd (50/50 batches)
over ConstantCodebook's codes, printing evaluation returns.
Run with `nice -n 10`; every run is bounded by its budget and `--max-minutes`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace

import gymnasium as gym
import numpy as np
import torch

from pipeline.agents import AGENTS
from pipeline.methods import SAC_CONFIG
from pipeline.agents.train import Schedule, make_member, train_population
from pipeline.data.episodes import Episodes
from pipeline.data.windows import make_windows

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
        self.hash = f"constant-H{H}-K{K}"

    def encode(self, obs, macro):  # (B, S), (B, H, A) → (B,)
        return np.abs(macro.mean(axis=(1, 2))[:, None] - self.levels).argmin(1)

    def decode(self, obs, code):  # (B, S), (B,) → (B, H, A)
        return np.repeat(self.levels[np.asarray(code)][:, None, None], self.H, 1).repeat(self.A, 2)


@dataclass
class TrainLog:
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (env steps, mean eval return)
    steps: int = 0  # env steps
    updates: int = 0
    timed_out: bool = False
    wall_s: float = 0.0


def mean_return(agent, env: gym.Env, episodes: int, seed: int = 10_000) -> float:
    """Mean undiscounted return of deterministic episodes (env seeds seed, seed + 1, …)."""
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(agent.act(obs, deterministic=True))
            total += float(np.sum(info["rewards"])) if "rewards" in info else float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def train_one(agent, env: gym.Env, env_steps: int, *, demos: dict | None = None, offline_phase: bool = False,
              offline_updates: int = 0, eval_env: gym.Env | None = None, eval_every: int = 0, bar: float | None = None,
              time_limit_s: float = float("inf")) -> TrainLog:
    """One run of the project's training loop (`train_population`, a population of one), continued
    in chunks of `eval_every` env steps with an evaluation after each; stops at `bar` or the time limit."""
    member = make_member(agent, agent.seeds[0], env, demos, capacity=env_steps, offline_phase=offline_phase)
    log, start = TrainLog(), time.perf_counter()
    chunk = eval_every or env_steps
    while member.counters.env_steps < env_steps:
        target = min(env_steps, member.counters.env_steps + chunk)
        train_population(agent, [member], Schedule(target, offline_updates), progress=False)
        if eval_env is not None and eval_every:
            log.evaluations.append((member.counters.env_steps, mean_return(agent, eval_env, 10)))
            if bar is not None and log.evaluations[-1][1] >= bar:
                break
        if time.perf_counter() - start > time_limit_s:
            log.timed_out = True
            break
    log.steps, log.updates, log.wall_s = member.counters.env_steps, member.counters.updates, time.perf_counter() - start
    return log


def make_small_env(env_id: str) -> gym.Env:
    env = gym.make(env_id)
    if isinstance(env.action_space, gym.spaces.Box):
        shape = env.action_space.shape
        env = gym.wrappers.RescaleAction(env, np.full(shape, -1.0, np.float32), np.full(shape, 1.0, np.float32))
    return env


def fake_batch(rng: np.random.Generator, n: int, obs_dim: int, action_dim: int, discrete: bool = False) -> dict[str, np.ndarray]:
    return {
        "obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
        "action": rng.integers(0, 16, n) if discrete else rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "reward": rng.standard_normal(n, dtype=np.float32),
        "next_obs": rng.standard_normal((n, obs_dim), dtype=np.float32),
        "terminal": rng.random(n) < 0.01,
        "steps": np.ones(n, dtype=np.int64),
        "demo": np.ones(n, dtype=bool),
    }


def speed_agent(method: str, population: int, device: str, engine: bool, obs_dim: int = 39, action_dim: int = 28):
    """`method`'s paper config at door size (S=39, A=28, K=16) with a device-resident batch of one
    round. `engine`: the population engine as training runs it (CUDA graphs and the fused Adam
    kernel on CUDA); otherwise today's eager single agent before the engine (foreach Adam)."""
    entry = AGENTS[method]
    space = gym.spaces.Discrete(16) if entry.discrete else gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
    agent = entry(obs_dim, space, device=device, seeds=range(population))
    if not engine:
        for opt in agent.optimizers().values():
            opt.fused = False
    elif device == "cuda":
        agent.use_cuda_graphs()
    rng = np.random.default_rng(0)
    parts = [fake_batch(rng, agent.update_batch_size, obs_dim, action_dim, discrete=entry.discrete) for _ in range(population)]
    batch = agent.to_torch({k: np.stack([p[k] for p in parts]) for k in parts[0]})  # on the device, as replay would be
    return agent, batch


def critic_updates_per_s(method: str, population: int, device: str, seconds: float, engine: bool = True) -> float:
    """Critic gradient steps per second, all members together (update rounds × UTD × P)."""
    agent, batch = speed_agent(method, population, device, engine)
    rounds, start = 0, time.perf_counter()
    while rounds < 5 or time.perf_counter() - start < 0.5:  # warm-up (and the CUDA graph's capture)
        agent.train_round(batch)
        rounds += 1
    if device == "cuda":
        torch.cuda.synchronize()
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        agent.train_round(batch)
        rounds += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return rounds * getattr(agent.config, "utd", 1) * population / (time.perf_counter() - start)


PAPER_BUDGET = dict(tasks=4, seeds=3, env_steps=1_000_000, offline_updates=1_000_000, H=9)  # README "Scaling to the paper"
SPEED_METHODS = ("sac", "rlpd", "iql", "maq_rlpd", "maq_iql", "maq_dsac")


def paper_critic_updates(method: str) -> float:
    """Critic updates one member of `method` makes at the paper's budget with its paper config:
    offline rounds (offline-phase methods), then an update round of `utd` critic steps every
    `update_every` agent steps after the warm-up (a MAQ agent step is a macro step of H env steps)."""
    entry = AGENTS[method]
    cfg = entry.default_config
    utd = getattr(cfg, "utd", 1)
    agent_steps = PAPER_BUDGET["env_steps"] / (PAPER_BUDGET["H"] if entry.macro else 1)
    online = max(0.0, agent_steps - cfg.warmup_steps) / cfg.update_every * utd
    return online + (PAPER_BUDGET["offline_updates"] * utd if entry.offline_phase else 0.0)


def bench_speed(device: str, seconds: float, populations=(1, 3, 12), methods=SPEED_METHODS, tf32: bool = False) -> dict:
    """Prints (and returns) critic updates/s: today's eager single agent, then the engine at each
    P; then the paper grid's projected update time at the P=3 rates (a population per task × method)."""
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
    engine = "CUDA graphs, fused Adam" + (", TF32 matmuls" if tf32 else ", FP32 matmuls") if device == "cuda" else "eager"
    print(f"critic updates/s [{device}, threads={torch.get_num_threads()}], door-sized (S=39, A=28, K=16), batch 256; "
          f"engine: {engine}")
    print(f"{'method':9s} {'eager P=1':>10s} " + " ".join(f"{'engine P=' + str(p):>20s}" for p in populations))
    rates = {}
    for method in methods:
        eager = critic_updates_per_s(method, 1, device, seconds, engine=False)
        rates[method] = {"eager": eager, **{p: critic_updates_per_s(method, p, device, seconds) for p in populations}}
        print(f"{method:9s} {eager:10.1f} " + " ".join(f"{rates[method][p]:12.1f} ({rates[method][p] / eager:5.2f}×)" for p in populations))
    if 3 in populations:
        b = PAPER_BUDGET
        hours = {m: b["tasks"] * b["seeds"] * paper_critic_updates(m) / rates[m][3] / 3600 for m in methods}
        print(f"projected paper grid on this {device} ({b['tasks']} tasks × {b['seeds']} seeds, {b['env_steps']:.0e} env steps, "
              f"{b['offline_updates']:.0e} offline updates, H={b['H']}; one population of {b['seeds']} seeds per task × method "
              f"at a time, at the P=3 rates; updates only, env steps and evaluations not counted):")
        print("  " + ", ".join(f"{m} {paper_critic_updates(m):.2e} upd/member {hours[m]:,.1f} h" for m in methods)
              + f"; total {sum(hours.values()):,.1f} h" + ("" if set(methods) == set(SPEED_METHODS) else " (these methods only)"))
    torch.backends.cuda.matmul.allow_tf32 = False
    return rates


def bench_profile(methods=("rlpd", "maq_rlpd", "iql"), populations=(1, 12), rounds: int = 50) -> None:
    """Where one update round's time goes on CUDA: the captured graph's replay time against the
    eager round's, and the kernels the round launches (counted in a profiled eager round, which
    the graph replays kernel for kernel) with their summed GPU time and the costliest ones."""
    from torch.profiler import ProfilerActivity, profile

    def ms_per_round(fn) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(rounds):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / rounds

    print(f"one update round on CUDA ({torch.cuda.get_device_name()}), door-sized, batch 256, FP32 matmuls")
    for method in methods:
        for population in populations:
            agent, batch = speed_agent(method, population, "cuda", engine=True)
            for _ in range(6):  # warm-up and capture
                agent.train_round(batch)
            graph_ms = ms_per_round(lambda: agent.train_round(batch))
            eager_ms = ms_per_round(lambda: agent.update_round(batch))
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                agent.update_round(batch)
                torch.cuda.synchronize()
            kernels = [e for e in prof.key_averages() if getattr(e, "self_device_time_total", 0) > 0]
            count = sum(e.count for e in kernels)
            busy_ms = sum(e.self_device_time_total for e in kernels) / 1e3
            updates = getattr(agent.config, "utd", 1) * population
            print(f"{method:9s} P={population:<3d} graph {graph_ms:7.3f} ms/round ({updates / graph_ms * 1e3:9,.0f} critic upd/s), "
                  f"eager {eager_ms:7.3f} ms; {count} kernels/round, GPU busy {busy_ms:.3f} ms "
                  f"({busy_ms / graph_ms:.0%} of the replay), {graph_ms / count * 1e3:.1f} µs per kernel in the replay")
            for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:5]:
                print(f"    {e.self_device_time_total / 1e3 / busy_ms:5.1%} {e.count:4d}× {e.key[:100]}")


def bench_compile(method: str = "rlpd", population: int = 1, seconds: float = 2.0, mode: str = "reduce-overhead") -> None:
    """The other tool for the job: `torch.compile(mode=...)` of the eager update round (fused Adam,
    no captured graph), its compile time and critic updates/s, beside the engine's captured CUDA graph."""
    graph_rate = critic_updates_per_s(method, population, "cuda", seconds)
    print(f"{method} P={population}: captured CUDA graph {graph_rate:,.0f} critic updates/s", flush=True)
    agent, batch = speed_agent(method, population, "cuda", engine=False)
    for opt in agent.optimizers().values():
        opt.fused = True  # the capturable optimizer path
    compiled = torch.compile(agent.update_round, mode=mode)
    start = time.perf_counter()
    try:
        for _ in range(3):
            compiled(batch)
        torch.cuda.synchronize()
    except Exception as error:  # a measurement: report what happened
        lines = [line for line in str(error).splitlines() if line.strip()]
        print(f"torch.compile(mode={mode!r}) failed after {time.perf_counter() - start:.0f} s: {type(error).__name__}: "
              + " | ".join(lines[:4])[:600])
        return
    compile_s = time.perf_counter() - start
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        compiled(batch)
        rounds += 1
    torch.cuda.synchronize()
    rate = rounds * getattr(agent.config, "utd", 1) * population / (time.perf_counter() - start)
    print(f"{method} P={population}: torch.compile(mode={mode!r}) {rate:,.0f} critic updates/s "
          f"({rate / graph_rate:.2f}× the captured graph), first 3 rounds (compiling) {compile_s:.0f} s")


def bench_macro_step(seconds: float = 5.0) -> None:
    """Env steps/s on door, one core, of the raw simulator (`ctrl` + `mj_step` × frame_skip), the
    plain env, and a macro step (H=9, a fixed decoded macro, through MacroActionEnv's runner).

    All three replay the same control from the same reset, one 200-step episode each in turn,
    until each has stepped for `seconds`; only the steps are timed, not the resets. mj_step's
    cost depends on the state (contacts above all) and a shared machine's load drifts, so
    different trajectories, or one measurement after another, would compare the simulator with
    itself as much as the overheads on top of it.
    """
    import mujoco

    from pipeline.agents.macro import MacroActionEnv
    from pipeline.envs import make_env

    codebook, code = ConstantCodebook(H=9, K=16, A=28), 8
    macro_env = MacroActionEnv(make_env("door"), codebook, 0.99)
    assert macro_env.runner is not None, "make_env's door should take MacroActionEnv's fast path"
    plain_env, raw_env = make_env("door"), make_env("door")
    action = codebook.decode(np.zeros((1, 39), np.float32), np.array([code]))[0, 0]  # (A,), every step of the macro
    sim = raw_env.unwrapped
    model, data, horizon = sim.model, sim.data, raw_env.spec.max_episode_steps
    ctrl = sim.act_mean + np.clip(action, -1.0, 1.0) * sim.act_rng  # (nu,) what the env writes for `action`

    def raw_episode() -> tuple[int, float]:  # (env steps, seconds)
        raw_env.reset(seed=0)
        start = time.perf_counter()
        for _ in range(horizon):
            data.ctrl[:] = ctrl
            mujoco.mj_step(model, data, nstep=sim.frame_skip)
        return horizon, time.perf_counter() - start

    def plain_episode() -> tuple[int, float]:
        plain_env.reset(seed=0)
        steps, done, start = 0, False, time.perf_counter()
        while not done:
            _, _, terminated, truncated, _ = plain_env.step(action)
            steps, done = steps + 1, terminated or truncated
        return steps, time.perf_counter() - start

    def macro_episode() -> tuple[int, float]:
        macro_env.reset(seed=0)
        steps, done, start = 0, False, time.perf_counter()
        while not done:
            _, _, terminated, truncated, info = macro_env.step(code)
            steps, done = steps + info["steps"], terminated or truncated
        return steps, time.perf_counter() - start

    episodes = {"raw": raw_episode, "plain": plain_episode, "macro": macro_episode}
    steps, elapsed = dict.fromkeys(episodes, 0), dict.fromkeys(episodes, 0.0)
    while min(elapsed.values()) < seconds:
        for name, episode in episodes.items():
            n, t = episode()
            steps[name], elapsed[name] = steps[name] + n, elapsed[name] + t
    r_raw, r_plain, r_macro = (steps[name] / elapsed[name] for name in episodes)
    print(f"door env steps/s, one core, the same episodes in turn: raw mj_step ×{sim.frame_skip} {r_raw:,.0f}; "
          f"gym env {r_plain:,.0f} ({r_plain / r_raw:.2f}×); macro step H=9 {r_macro:,.0f} ({r_macro / r_raw:.2f}×)")


def bench_learn(method: str, seed: int, max_minutes: float, rlpd_utd: int, budget: int | None,
                warmup: int | None = None, eval_every: int | None = None, device: str = "cpu", tf32: bool = False) -> None:
    env_id, bar, default_budget, overrides = LEARN[method]
    budget = budget or default_budget
    env, eval_env = make_small_env(env_id), make_small_env(env_id)
    entry = AGENTS[method]
    if entry.macro:
        from pipeline.agents.macro import MacroActionEnv  # imports mujoco (pipeline.envs)

        codebook = ConstantCodebook(A=env.action_space.shape[0])
        env, eval_env = (MacroActionEnv(e, codebook, gamma=entry.default_config.gamma) for e in (env, eval_env))
    overrides = dict(overrides)
    if method == "rlpd":
        overrides["utd"] = rlpd_utd
    if warmup is not None:
        overrides["warmup_steps"] = warmup
    config = replace(entry.default_config, **overrides)
    agent = entry(env.observation_space.shape[0], env.action_space, config, device=device, seeds=(seed,))
    if device == "cuda":  # as the finetune stage trains there
        torch.backends.cuda.matmul.allow_tf32 = tf32
        agent.use_cuda_graphs()
    log = train_one(agent, env, budget * (env.codebook.H if entry.macro else 1), eval_env=eval_env,
                    eval_every=eval_every or (1_000 if method != "dsac" else 2_000), bar=bar, time_limit_s=60 * max_minutes)
    step, best = max(log.evaluations, key=lambda e: e[1]) if log.evaluations else (0, float("nan"))
    last_step, last = log.evaluations[-1] if log.evaluations else (0, float("nan"))
    reached = last >= bar
    print(f"{method:5s} {env_id:12s} bar {bar:7.1f}: {'REACHED' if reached else 'not reached'} — "
          f"last eval {last:8.1f} at step {last_step}, best {best:8.1f} at step {step}, "
          f"{log.steps} env steps{' (TIME LIMIT)' if log.timed_out else ''}, {log.updates} update rounds, wall {log.wall_s:.0f} s (seed {seed}, budget {budget}, {device}{', TF32' if tf32 else ''}, {config.__class__.__name__} "
          f"overrides {overrides})")
    print(f"      eval curve: {[(s, round(r, 1)) for s, r in log.evaluations]}")


def collect_episodes(agent, env: gym.Env, episodes: int, seed: int) -> Episodes:
    """Roll out `agent` (stochastic) for `episodes` episodes into an `Episodes` set."""
    obs_l, next_l, act_l, rew_l, term_l, trunc_l, offsets = [], [], [], [], [], [], [0]
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            action = agent.act(obs, deterministic=False)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            obs_l.append(obs); next_l.append(next_obs); act_l.append(action); rew_l.append(reward)
            term_l.append(terminated); trunc_l.append(truncated and not terminated)
            obs, done = next_obs, terminated or truncated
        offsets.append(len(obs_l))
    return Episodes(obs=np.asarray(obs_l, np.float32), next_obs=np.asarray(next_l, np.float32),
                    actions=np.asarray(act_l, np.float32), rewards=np.asarray(rew_l, np.float32),
                    terminations=np.asarray(term_l), truncations=np.asarray(trunc_l),
                    offsets=np.asarray(offsets), episode_ids=np.arange(episodes))


def bench_offline(seed: int, offline_updates: int, online_steps: int, maq_rlpd_utd: int, max_minutes: float) -> None:
    """Demonstrations from a SAC agent trained to the bar on Pendulum, then: iql offline→online,
    maq_iql offline→online and maq_rlpd (50/50 demo/online) over ConstantCodebook's codes."""
    from pipeline.agents.macro import MacroActionEnv, macro_transitions

    env, eval_env = make_small_env("Pendulum-v1"), make_small_env("Pendulum-v1")
    S = env.observation_space.shape[0]
    sac = AGENTS["sac"](S, env.action_space, replace(SAC_CONFIG, warmup_steps=1_000), device="cpu", seeds=(seed,))
    log = train_one(sac, env, 20_000, eval_env=eval_env, eval_every=1_000, bar=-200, time_limit_s=60 * max_minutes)
    demos = collect_episodes(sac, env, 25, seed=1_000)
    print(f"demonstrator: sac eval {log.evaluations[-1][1]:.1f} after {log.steps} steps ({log.wall_s:.0f} s); "
          f"25 demo episodes, mean return {demos.returns().mean():.1f}")
    codebook = ConstantCodebook(A=1)
    macro_demos = macro_transitions(make_windows(demos, codebook.H, gamma=0.99), codebook)
    macro_env, macro_eval = MacroActionEnv(env, codebook, 0.99), MacroActionEnv(eval_env, codebook, 0.99)
    print(f"macro demos: {len(macro_demos)} windows, codes used {np.bincount(macro_demos.code, minlength=codebook.K).tolist()}")
    steps_1 = {"obs": demos.obs, "action": demos.actions, "reward": demos.rewards, "next_obs": demos.next_obs,
               "terminal": demos.terminations, "demo": np.ones(demos.n_steps, bool)}

    for name, run_env, run_eval, batch in [("iql", env, eval_env, steps_1),
                                           ("maq_iql", macro_env, macro_eval, macro_demos.as_batch())]:
        entry = AGENTS[name]
        agent = entry(S, run_env.action_space, device="cpu", seeds=(seed,))
        agent.set_obs_stats(demos.obs.mean(0), demos.obs.std(0))
        env_steps = online_steps * (codebook.H if entry.macro else 1)
        log = train_one(agent, run_env, env_steps, demos=batch, offline_phase=True, offline_updates=offline_updates,
                        eval_env=run_eval, eval_every=env_steps, time_limit_s=60 * max_minutes)
        print(f"{name:8s} offline {offline_updates} updates + {log.steps} online env steps: eval {log.evaluations[-1][1]:8.1f} "
              f"({log.wall_s:.0f} s)")

    entry = AGENTS["maq_rlpd"]
    config = replace(entry.default_config, utd=maq_rlpd_utd, warmup_steps=0)
    agent = entry(S, macro_env.action_space, replace(config, warmup_steps=1), device="cpu", seeds=(seed,))  # 1: online not empty
    env_steps = online_steps * codebook.H
    log = train_one(agent, macro_env, env_steps, demos=macro_demos.as_batch(), eval_env=macro_eval,
                    eval_every=env_steps // 5, time_limit_s=60 * max_minutes)
    print(f"maq_rlpd 50/50 demo/online, utd {maq_rlpd_utd}, no warm-up: eval curve (env step, return) "
          f"{[(s, round(r, 1)) for s, r in log.evaluations]} ({log.wall_s:.0f} s)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    speed = sub.add_parser("speed", help="(a) rlpd update rounds/s")
    speed.add_argument("--seconds", type=float, default=5.0, help="per method × population size")
    speed.add_argument("--devices", default="cpu,cuda", help="comma list: cpu, cuda (when present)")
    speed.add_argument("--no-macro", action="store_true", help="skip the macro-step vs raw simulator rates")
    profile_ = sub.add_parser("profile", help="(a') CUDA: where an update round's time goes")
    profile_.add_argument("--methods", default="rlpd,maq_rlpd,iql")
    profile_.add_argument("--populations", default="1,12")
    compile_ = sub.add_parser("compile", help="(a'') CUDA: torch.compile of the round beside the captured graph")
    compile_.add_argument("--population", type=int, default=1)
    offline = sub.add_parser("offline", help="(c) demos from SAC on Pendulum → iql, maq_iql, maq_rlpd")
    offline.add_argument("--seed", type=int, default=0)
    offline.add_argument("--offline-updates", type=int, default=5_000)
    offline.add_argument("--online-steps", type=int, default=3_000, help="agent (macro) steps after offline")
    offline.add_argument("--maq-rlpd-utd", type=int, default=5)
    offline.add_argument("--max-minutes", type=float, default=3.0, help="per training run")
    learn = sub.add_parser("learn", help="(b) sanity: backends reach the bar")
    learn.add_argument("--methods", default="sac,dsac", help=f"comma list from {sorted(LEARN)}")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--max-minutes", type=float, default=9.0, help="per method wall-clock cap")
    learn.add_argument("--rlpd-utd", type=int, default=20)
    learn.add_argument("--budget", type=int, default=None, help="env steps (default per method)")
    learn.add_argument("--warmup", type=int, default=None, help="random steps first (default per method)")
    learn.add_argument("--eval-every", type=int, default=None, help="env steps between evaluations")
    learn.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cuda: CUDA graphs, on-device replay")
    learn.add_argument("--tf32", action="store_true", help="cuda: TF32 matmuls")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "speed":
        if "cpu" in args.devices:
            bench_speed("cpu", seconds=args.seconds)
        if "cuda" in args.devices and torch.cuda.is_available():
            bench_speed("cuda", seconds=args.seconds)
            bench_speed("cuda", seconds=args.seconds, tf32=True)
        elif "cuda" in args.devices:
            print("no CUDA device: CUDA speed not measured")
        if not args.no_macro:
            bench_macro_step()
    elif args.what == "profile":
        bench_profile(args.methods.split(","), [int(p) for p in args.populations.split(",")])
    elif args.what == "compile":
        bench_compile(population=args.population)
    elif args.what == "offline":
        bench_offline(args.seed, args.offline_updates, args.online_steps, args.maq_rlpd_utd, args.max_minutes)
    else:
        for method in args.methods.split(","):
            bench_learn(method, args.seed, args.max_minutes, args.rlpd_utd, args.budget, args.warmup, args.eval_every,
                        args.device, args.tf32)


if __name__ == "__main__":
    main()
