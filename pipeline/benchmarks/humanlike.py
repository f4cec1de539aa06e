"""Do the human-likeness measures mean what they say? Their anchors and bars, per task, in one run.

    python -m pipeline.benchmarks.humanlike                         # all four tasks, the DAG's prepared data
    python -m pipeline.benchmarks.humanlike --tasks pen --people 5,6,7,8
    python -m pipeline.benchmarks.humanlike --timing-agent models/agents/door/maq_iql/seed1
    python -m pipeline.benchmarks.humanlike --tasks hammer --null-draws 40

Reads data/prepared/<task>/ (synthetic: the paired protocol needs start states) and writes nothing
outside a temp dir. Printed per task (issue 14's bars):
  paired   DTW similarity (states / actions) and object-pose similarity of agents that must score
           ≤ 0.1 — a fresh uniform-random agent (seed 7, not the anchor's), the zero-action agent,
           a near-idle agent (Gaussian actions, σ 0.05) — and of held-out people (the demonstrator
           with variability seeds `--people`, none of them an anchor person), which must score
           within 0.8–1.2;
  AUC      the discriminator AUC with its CI: human test vs human train episodes (must be within
           0.35–0.65), the mean over random held-out-vs-rest splits of all human episodes (the same anchor
           with the luck of the 3 test episodes averaged out), and a uniform-random agent vs every human
           episode, as agents are judged (≥ 0.95);
  null     (`--null-draws N`) how noisy a human-vs-human AUC is on synthetic people, one split vs the
           mean of 10;
  timing   (`--timing-agent`) wall time of `run_evaluate` of one trained agent on `--episodes`
           (100) paper-protocol episodes plus the paired ones, on one core (bar: ≤ 60 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

TASKS = ("door", "hammer", "pen", "relocate")


class NearIdlePolicy:
    """Small Gaussian actions around zero: an agent that barely moves."""

    def __init__(self, action_dim: int, sigma: float = 0.05, seed: int = 0):
        self.action_dim, self.sigma, self.rng = action_dim, sigma, np.random.default_rng(seed)

    def act_chunk(self, obs: np.ndarray) -> np.ndarray:
        return np.clip(self.rng.normal(0.0, self.sigma, (1, self.action_dim)), -1, 1).astype(np.float32)


def paired_table(task: str, prepared: Path, people: list[int], dtw: str) -> list[tuple[str, dict]]:
    from pipeline import evaluation as ev

    train, test, meta = ev.human_splits(task, prepared)
    refs = ev.paired_references(task, train, test, ev.paired_starts(meta, test, prepared), dtw, progress=False)
    seeds, A = refs["start_seeds"], test.action_dim
    agents = {
        "random agent (seed 7)": ev.rollout(task, ev.UniformRandomPolicy(A, seed=7), seeds, progress=False),
        "zero-action agent": ev.rollout(task, ev.ZeroActionPolicy(A), seeds, progress=False),
        "near-idle agent (σ 0.05)": ev.rollout(task, NearIdlePolicy(A), seeds, progress=False),
        **{f"held-out person {p}": ev.demonstrator_trajectories(task, seeds, p, progress=False) for p in people},
    }
    return [(name, ev.paired_summary(ev.paired_distances(task, t, test, dtw), refs)) for name, t in agents.items()]


def discriminator_row(task: str, prepared: Path, cfg) -> dict:
    from pipeline import evaluation as ev

    train, test, meta = ev.human_splits(task, prepared)
    random = ev.rollout(task, ev.UniformRandomPolicy(train.action_dim, seed=7), ev.episode_seeds(0, cfg.reference_episodes), progress=False)
    anchors = ev.discriminator_anchors(train, test, meta, cfg.discriminator_window, cfg.bootstrap_reps, random)
    return {"human test vs train": anchors["human_test_vs_train"], "random agent (seed 7)": anchors["random"],
            "human held-out vs rest": anchors["human_held_out_vs_rest"]}


def null_auc(draws: int, episodes: int = 25, held_out: int = 3, splits: int = 10) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """How noisy is a human-vs-human AUC? `draws` synthetic human sets of `episodes` episodes (40 windows of 30
    standard-normal features each, plus a per-episode offset of SD `between`: episodes differ as a whole, as people
    do), each judged as the anchor is (logistic discriminator, grouped CV): once on one `held_out`-vs-rest split
    and as the mean over `splits` random splits. Returns (between, single-split AUCs, split-mean AUCs) rows."""
    from pipeline import evaluation as ev
    from pipeline import metrics

    rng = np.random.default_rng(0)
    rows = []
    for between in (0.0, 0.5, 1.0):
        single, mean = [], []
        for draw in range(draws):
            people = [rng.normal(size=30) * between + rng.normal(size=(40, 30)) for _ in range(episodes)]
            aucs = []
            for _ in range(splits):
                order = rng.permutation(episodes)
                aucs.append(metrics.discriminator_auc([people[i] for i in order[:held_out]], [people[i] for i in order[held_out:]],
                                                      classifier="logistic", folds=ev.DISCRIMINATOR_FOLDS, bootstrap_reps=1,
                                                      seed=draw)["auc"])
            single.append(aucs[0])
            mean.append(np.mean(aucs))
        rows.append((between, np.array(single), np.array(mean)))
    return rows


def time_evaluation(agent_dir: Path, episodes: int, cfg) -> float:
    """Seconds of `run_evaluate` of one agent: `episodes` paper episodes + the paired ones, anchors precomputed."""
    from pipeline import evaluation as ev
    from pipeline.methods import METHODS

    task, method, seed = agent_dir.parts[-3], agent_dir.parts[-2], int(agent_dir.parts[-1].removeprefix("seed"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ev.run_references(task, cfg, Path("data/prepared") / task, tmp / "references.json", progress=False)
        start = time.perf_counter()
        ev.run_evaluate(task, method, seed, replace(cfg, episodes=episodes), agent_dir=agent_dir,
                        codebook_dir=Path("models/codebooks") / task if METHODS[method].macro else None,
                        prepared_dir=Path("data/prepared") / task, references_path=tmp / "references.json",
                        out_dir=tmp / "out", metrics_path=tmp / "metrics.json", progress=False)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    import torch

    from pipeline.config import load_params

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--people", default="5,6,7", help="variability seeds of the held-out people")
    parser.add_argument("--timing-agent", type=Path, help="an agent directory models/agents/<task>/<method>/seed<s>")
    parser.add_argument("--episodes", type=int, default=100, help="paper-protocol episodes of the timing run")
    parser.add_argument("--null-draws", type=int, default=0, help="also simulate how noisy a human-vs-human AUC is (e.g. 40)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_params().evaluate
    people = [int(p) for p in args.people.split(",")]

    print("| task | agent | paired DTW states | paired DTW actions | object pose | success |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        for name, s in paired_table(task, Path("data/prepared") / task, people, cfg.dtw):
            print(f"| {task} | {name} | {s['paired_dtw_state_similarity']:.2f} | {s['paired_dtw_action_similarity']:.2f} "
                  f"| {s['paired_object_pose_similarity']:.2f} | {s['paired_success_rate']:.2f} |", flush=True)
    print("\n| task | discriminator | AUC [CI] | logistic | boosting |")
    print("|---|---|---|---|---|")
    for task in args.tasks.split(","):
        for name, r in discriminator_row(task, Path("data/prepared") / task, cfg).items():
            if name == "human held-out vs rest":
                if r is not None:
                    print(f"| {task} | {name}, mean of {len(r['aucs'])} splits | {r['auc_mean']:.2f} [{r['auc_min']:.2f}–{r['auc_max']:.2f}: "
                          f"min–max] | | |", flush=True)
                continue
            print(f"| {task} | {name} | {r['discriminator_auc']:.2f} [{r['discriminator_auc_ci_low']:.2f}, {r['discriminator_auc_ci_high']:.2f}] "
                  f"| {r['discriminator_auc_logistic']:.2f} | {r['discriminator_auc_boosting']:.2f} |", flush=True)
    if args.null_draws:
        print(f"\nhuman-vs-human AUC on synthetic people ({args.null_draws} draws of 25 episodes, 3 held out; mean, 5–95%):")
        print("| per-episode offset SD | one split | mean of 10 splits |\n|---|---|---|")
        for between, single, mean in null_auc(args.null_draws):
            q = lambda x: f"{x.mean():.2f} ({np.quantile(x, 0.05):.2f}–{np.quantile(x, 0.95):.2f})"  # noqa: E731
            print(f"| {between} | {q(single)} | {q(mean)} |", flush=True)
    if args.timing_agent is not None:
        seconds = time_evaluation(args.timing_agent, args.episodes, cfg)
        print(f"\nevaluate {args.timing_agent}: {args.episodes} paper + paired episodes in {seconds:.1f} s on one core (bar: 60 s)")


if __name__ == "__main__":
    main()
