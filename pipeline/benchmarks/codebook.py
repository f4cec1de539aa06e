"""Benchmark the codebook stage: train with the params.yaml defaults and print the bars.

    python -m pipeline.benchmarks.codebook --task door          # on data/prepared/door/
    python -m pipeline.benchmarks.codebook --task door --proxy  # on a generated stand-in (no prepare needed)

Bars (H=9, K=16): test recon MSE <= 0.5 x the mean-macro baseline, >= 12 of 16 codes used on test
windows, perplexity >= 8, training <= 2 min per task on 2 CPU cores.

`--proxy` builds smooth, human-like-looking action curves (minimum-jerk moves between via points
that vary around a per-task plan) with observations that follow them. It is a stand-in for
development only; the bars count on the real prepared demonstrations.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.data.episodes import Episodes


def _min_jerk(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """n points from a to b on a minimum-jerk profile: (n, A)."""
    s = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
    return a + (b - a) * (10 * s**3 - 15 * s**4 + 6 * s**5)


def make_smooth_episodes(
    n_episodes: int, T: int, obs_dim: int, action_dim: int, seed: int = 0, n_moves: int = 6, variability: float = 0.25, noise: float = 0.01
) -> Episodes:
    """Episodes of smooth action curves: each a chain of minimum-jerk moves between via points
    that vary around one shared plan (like repeated human demonstrations of one task), with
    observations made of the low-passed actions (joint positions) and a projection of progress.
    variability: std of the via points around the plan; noise: std of per-step action noise."""
    rng = np.random.default_rng(seed)
    plan = rng.uniform(-0.8, 0.8, size=(n_moves + 1, action_dim))  # shared via points
    projection = rng.normal(size=(4, max(obs_dim - action_dim, 0)))
    trajectories = []
    for _ in range(n_episodes):
        via = np.clip(plan + rng.normal(scale=variability, size=plan.shape), -1, 1)
        durations = rng.multinomial(T - n_moves * 5, np.ones(n_moves) / n_moves) + 5
        actions = np.concatenate([_min_jerk(via[i], via[i + 1], d) for i, d in enumerate(durations)])  # (T, A)
        actions = np.clip(actions + rng.normal(scale=noise, size=actions.shape), -1, 1)
        joints = np.zeros_like(actions)
        for t in range(1, T):  # the hand follows its commands with a lag
            joints[t] = joints[t - 1] + 0.3 * (actions[t - 1] - joints[t - 1])
        progress = np.linspace(0, 1, T + 1)[:, None]
        phase = np.concatenate([progress, np.sin(3 * progress), np.cos(5 * progress), progress**2], axis=1)  # (T+1, 4)
        extra = phase @ projection + rng.normal(scale=0.01, size=(T + 1, projection.shape[1]))
        joints_next = np.concatenate([joints, joints[-1:] + 0.3 * (actions[-1:] - joints[-1:])])
        states = np.concatenate([joints_next, extra], axis=1)[:, :obs_dim].astype(np.float32)  # (T+1, S)
        trajectories.append(
            {
                "observations": states[:-1],
                "next_observations": states[1:],
                "actions": actions.astype(np.float32),
                "rewards": np.zeros(T, np.float32),
                "terminals": np.zeros(T, bool),
            }
        )
    return Episodes.from_trajectories(trajectories)


def write_prepared(directory: str | Path, task: str, episodes: Episodes, n_test: int, source: str = "proxy") -> Path:
    """Split `episodes` (last n_test held out) and write them in the prepare stage's format."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    n = episodes.n_episodes
    train, test = episodes.select(np.arange(n - n_test)), episodes.select(np.arange(n - n_test, n))
    train.save(directory / "train.safetensors")
    test.save(directory / "test.safetensors")
    meta = {
        "task": task,
        "source": source,
        "source_sha256": "0" * 64,
        "obs_dim": episodes.obs_dim,
        "action_dim": episodes.action_dim,
        "train_episode_ids": train.episode_ids.tolist(),
        "test_episode_ids": test.episode_ids.tolist(),
        "obs_mean": train.obs.mean(0).tolist(),
        "obs_std": train.obs.std(0).tolist(),
        "action_mean": train.actions.mean(0).tolist(),
        "action_std": train.actions.std(0).tolist(),
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="door")
    parser.add_argument("--proxy", action="store_true", help="train on a generated stand-in instead of data/prepared/<task>/")
    parser.add_argument("--proxy-hard", action="store_true", help="with --proxy: via points vary 2x more and actions carry 5x more noise")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override codebook params, e.g. epochs=40 ema=true")
    args = parser.parse_args(argv)

    import yaml

    from pipeline.codebook.run import run_codebook
    from pipeline.config import load_params
    from pipeline.tasks import get_task

    cfg = load_params().codebook
    for item in args.set:
        key, value = item.split("=", 1)
        cfg = replace(cfg, **{key: type(getattr(cfg, key))(yaml.safe_load(value))})
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path("data/prepared") / args.task
        if args.proxy:
            task = get_task(args.task)
            hard = {"variability": 0.5, "noise": 0.05} if args.proxy_hard else {}
            prepared = write_prepared(Path(tmp) / "prepared", args.task, make_smooth_episodes(25, task.horizon, task.obs_dim, task.action_dim, **hard), n_test=3)
        elif not (prepared / "meta.json").is_file():
            print(f"no prepared data at {prepared}: run `dvc repro prepare@{args.task}` (or `python stages/prepare.py --task {args.task}`), or pass --proxy")
            return 2
        started = time.perf_counter()
        result, m = run_codebook(args.task, cfg, prepared, Path(tmp) / "out", Path(tmp) / "m.json", Path(tmp) / "curve", Path(tmp) / "ckpt")
        wall = time.perf_counter() - started
    ok = lambda good: "ok" if good else "FAIL"  # noqa: E731
    print(f"task {args.task}{' (proxy data)' if args.proxy else ''}: H={cfg.H} K={cfg.K} epochs={cfg.epochs} windows {m['n_train_windows']} train / {m['n_test_windows']} test")
    print(f"test recon MSE {m['test_mse']:.5f}  baseline {m['test_baseline_mse']:.5f}  ratio {m['test_mse_ratio']:.3f}  [{ok(m['test_mse_ratio'] <= 0.5)} <= 0.5]  (train MSE {m['train_mse']:.5f})")
    print(f"test used codes {m['test_used_codes']}/{cfg.K} [{ok(m['test_used_codes'] >= 12)} >= 12]  perplexity {m['test_perplexity']:.2f} [{ok(m['test_perplexity'] >= 8)} >= 8]  counts {m['test_code_counts']}")
    print(f"wall {wall:.1f} s (training {result.train_seconds:.1f} s) [{ok(wall <= 120)} <= 120 s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
