"""The `report` stage: aggregate seeds, write tables, PNG plots and videos of the evaluated agents.

Inputs, per task t, method m and seed s (written by the finetune and evaluate stages):
- `evaluations/<t>/<m>/seed<s>/episodes.parquet`  one row per evaluation episode;
- `evaluations/<t>/<m>/seed<s>/summary.json`      the official summary columns, similarity scores, code counts;
- `evaluations/<t>/<m>/seed<s>/trajectories.safetensors`  the episodes (videos only);
- `plots/finetune/<t>/<m>/seed<s>.csv`            the learning curve;
- `data/references/<t>/references.json`           the anchors of the similarity scores;
- `data/prepared/<t>/`                            the human test split (videos only).
Outputs: `reports/<t>.csv`, `reports/README.md`, `reports/plots/*.png`, `reports/videos/*.mp4`, and the
official per-agent table `evaluation_results/agent_performance_<env id>.csv`.

Aggregation follows rliable (Agarwal et al., 2021): a run's score is the mean over its evaluation
episodes; across seeds the report gives the interquartile mean (IQM) with a stratified-bootstrap
percentile confidence interval, and the plain mean. The IQM trims 25% of the runs at each end, which
removes nothing with fewer than 4 seeds: there it equals the mean, and one seed gives a point interval.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from pipeline.config import ReportConfig
from pipeline.evaluation import DISTANCES
from pipeline.io import atomic_path, write_text_atomic
from pipeline.tasks import get_task

EPISODE_COLUMNS = ("env_seed", "terminated", "raw_reward", "normalized_score", "length", "success", "success_ever", "success_held", *DISTANCES)
CURVE_COLUMNS = ("env_steps", "eval_return", "eval_normalized_score", "eval_success_rate")
# The scores aggregated across seeds, with their titles and the number format of the tables.
SCORES = {
    "normalized_score": ("normalized score", ".1f"),
    "success_rate": ("success rate", ".2f"),
    "dtw_similarity": ("DTW similarity", ".2f"),
    "w_similarity": ("W similarity", ".2f"),
}
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class ReportPaths:
    """Where the report reads and writes, relative to the repository root by default."""

    evaluations: Path = Path("evaluations")
    curves: Path = Path("plots/finetune")
    references: Path = Path("data/references")
    prepared: Path = Path("data/prepared")
    reports: Path = Path("reports")
    results: Path = Path("evaluation_results")

    @classmethod
    def under(cls, root: Path) -> ReportPaths:
        """The same layout under another root directory."""
        default = cls()
        return cls(**{f.name: Path(root) / getattr(default, f.name) for f in fields(cls)})

    def run_dir(self, task: str, method: str, seed: int) -> Path:
        return self.evaluations / task / method / f"seed{seed}"


@dataclass(frozen=True)
class Run:
    """One evaluated agent: task × method × seed."""

    task: str
    method: str
    seed: int
    episodes: pl.DataFrame  # one row per evaluation episode, EPISODE_COLUMNS
    summary: dict  # summary.json
    curve: pl.DataFrame  # learning curve, CURVE_COLUMNS, rising env_steps
    trajectories_path: Path  # the evaluation episodes (pipeline.data.episodes.Episodes)


# -- loading -----------------------------------------------------------------------------------
def _require_columns(frame: pl.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; re-run the stage that wrote it")


def load_run(paths: ReportPaths, task: str, method: str, seed: int) -> Run:
    """Read one run's evaluation and learning curve, with errors that name the stage to run."""
    run_dir = paths.run_dir(task, method, seed)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no evaluation of {task} / {method} / seed {seed} at {run_dir}; run `dvc repro evaluate` first")
    for name in ("episodes.parquet", "summary.json", "trajectories.safetensors"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} is missing; re-run `dvc repro evaluate`")
    curve_path = paths.curves / task / method / f"seed{seed}.csv"
    if not curve_path.is_file():
        raise FileNotFoundError(f"no learning curve at {curve_path}; run `dvc repro finetune` first")

    episodes = pl.read_parquet(run_dir / "episodes.parquet")
    _require_columns(episodes, EPISODE_COLUMNS, run_dir / "episodes.parquet")
    if episodes.height == 0:
        raise ValueError(f"{run_dir / 'episodes.parquet'} holds no episodes")
    summary = json.loads((run_dir / "summary.json").read_text())
    identity = (summary.get("task"), summary.get("method"), summary.get("seed"))
    if identity != (task, method, seed):
        raise ValueError(f"{run_dir / 'summary.json'} describes task/method/seed {identity}, not {(task, method, seed)}")
    curve = pl.read_csv(curve_path)
    _require_columns(curve, CURVE_COLUMNS, curve_path)
    return Run(task, method, seed, episodes, summary, curve.sort("env_steps"), run_dir / "trajectories.safetensors")


def load_runs(paths: ReportPaths, tasks: tuple[str, ...], methods: tuple[str, ...], seeds: tuple[int, ...]) -> list[Run]:
    """Every listed task × method × seed, in that order."""
    return [load_run(paths, t, m, s) for t in tasks for m in methods for s in seeds]


def load_references(paths: ReportPaths, task: str) -> dict[str, dict[str, float]]:
    """`{distance: {"random": float, "human": float}}`, the anchors of the task's similarity scores."""
    path = paths.references / task / "references.json"
    if not path.is_file():
        raise FileNotFoundError(f"no similarity anchors at {path}; run `dvc repro references` first")
    return json.loads(path.read_text())["distances"]  # written by pipeline.evaluation.run_references


# -- per-run scores and their aggregation --------------------------------------------------------
def run_scores(run: Run) -> dict[str, float]:
    """A run's score of each of SCORES: the mean over its evaluation episodes."""
    return {
        "normalized_score": float(run.episodes["normalized_score"].mean()),
        "success_rate": float(run.episodes["success"].cast(pl.Float64).mean()),
        # similarity is linear in the distance, so the score of the episode mean is the mean score
        "dtw_similarity": float(run.summary["dtw_state_mean_similarity"]),
        "w_similarity": float(run.summary["w1_state_similarity"]),
    }


@contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """rliable's stratified bootstrap draws from numpy's global RNG (it ignores `random_state`):
    seed it for reproducible intervals, and leave the caller's global state as it was."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm_interval(scores: np.ndarray, reps: int, confidence: float) -> tuple[float, float, float]:
    """IQM of per-seed scores (n,) and its stratified-bootstrap percentile CI: (iqm, low, high)."""
    from rliable import library, metrics

    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 1)  # (runs, tasks=1)
    with _global_numpy_seed(BOOTSTRAP_SEED):
        points, intervals = library.get_interval_estimates(
            {"run": scores},
            lambda x: np.array([metrics.aggregate_iqm(x)]),
            reps=reps,
            confidence_interval_size=confidence,
        )
    low, high = intervals["run"][:, 0]
    return float(points["run"][0]), float(low), float(high)


def aggregate(runs: list[Run], cfg: ReportConfig) -> pl.DataFrame:
    """One row per task × method (in the order of `runs`): `n_seeds` and, for each of SCORES,
    `<score>_iqm`, `<score>_ci_low`, `<score>_ci_high` and `<score>_mean`."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.task, run.method), []).append(run)
    rows = []
    for (task, method), group in groups.items():
        per_run = [run_scores(run) for run in group]
        row = {"task": task, "method": method, "n_seeds": len(group)}
        for score in SCORES:
            values = np.array([scores[score] for scores in per_run])  # (n_seeds,)
            iqm, low, high = iqm_interval(values, cfg.bootstrap_reps, cfg.confidence)
            row |= {f"{score}_iqm": iqm, f"{score}_ci_low": low, f"{score}_ci_high": high, f"{score}_mean": float(values.mean())}
        rows.append(row)
    return pl.DataFrame(rows)


def official_table(runs: list[Run]) -> pl.DataFrame:
    """The official `agent_performance_<env>.csv`: one row per method × seed, the summary.json
    columns without `code_counts`, identity columns first."""
    rows = []
    for run in runs:
        summary = {k: v for k, v in run.summary.items() if k not in ("task", "method", "seed", "code_counts")}
        rows.append({"task": run.task, "method": run.method, "seed": run.seed} | summary)
    return pl.DataFrame(rows, infer_schema_length=None)


# -- plots -------------------------------------------------------------------------------------
def _method_colors(methods: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {method: palette(i % 10) for i, method in enumerate(methods)}


def plot_score_vs_humanlike(table: pl.DataFrame, task: str) -> Figure:
    """Normalized score IQM against DTW similarity IQM, one point per method with both CIs."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    colors = _method_colors(table["method"].to_list())
    for row in table.iter_rows(named=True):
        x, y = row["dtw_similarity_iqm"], row["normalized_score_iqm"]
        ax.errorbar(
            x, y,
            xerr=[[x - row["dtw_similarity_ci_low"]], [row["dtw_similarity_ci_high"] - x]],
            yerr=[[y - row["normalized_score_ci_low"]], [row["normalized_score_ci_high"] - y]],
            fmt="o", color=colors[row["method"]], capsize=3,
        )
        ax.annotate(f"{row['method']} (n={row['n_seeds']})", (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8)
    for level, name in ((0.0, "random"), (1.0, "human")):
        ax.axvline(level, color="gray", linestyle=":", linewidth=1)
        ax.annotate(name, (level, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12), textcoords="offset points", fontsize=8, color="gray")
    ax.set_xlabel("DTW similarity to human test episodes (IQM)")
    ax.set_ylabel("normalized score (IQM)")
    ax.set_title(f"{task}: task score vs human-likeness")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_learning_curves(runs: list[Run], task: str) -> Figure:
    """Mean over seeds of the learning curves with a min–max band, per method, on the env steps
    that every seed of the method evaluated."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    methods = list(dict.fromkeys(run.method for run in runs))
    colors = _method_colors(methods)
    for method in methods:
        curves = [run.curve for run in runs if run.method == method]
        steps = sorted(set.intersection(*(set(c["env_steps"].to_list()) for c in curves)))
        for ax, column in zip(axes, ("eval_normalized_score", "eval_success_rate")):
            values = np.stack([c.filter(pl.col("env_steps").is_in(steps))[column].to_numpy() for c in curves])  # (seeds, points)
            ax.plot(steps, values.mean(axis=0), color=colors[method], label=f"{method} (n={len(curves)})")
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=colors[method], alpha=0.2, linewidth=0)
    for ax, title in zip(axes, ("normalized score", "success rate")):
        ax.set_xlabel("env steps")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: learning curves (mean over seeds, band: min–max)")
    fig.tight_layout()
    return fig


def plot_code_usage(runs: list[Run], task: str) -> Figure | None:
    """Share of macro steps that played each code, summed over seeds, per MAQ method; None when
    no run played codes (`code_counts` null for continuous methods)."""
    usage: dict[str, np.ndarray] = {}
    for run in runs:
        if run.summary.get("code_counts") is not None:
            counts = np.asarray(run.summary["code_counts"], dtype=np.int64)  # (K,)
            usage[run.method] = usage.get(run.method, 0) + counts
    if not usage:
        return None
    fig = Figure(figsize=(4 * len(usage), 3.5))
    axes = fig.subplots(1, len(usage), squeeze=False)[0]
    colors = _method_colors(list(dict.fromkeys(run.method for run in runs)))
    for ax, (method, counts) in zip(axes, usage.items()):
        share = counts / max(counts.sum(), 1)
        ax.bar(np.arange(len(counts)), share, color=colors[method])
        if len(counts) <= 32:
            ax.set_xticks(np.arange(len(counts)))
        ax.set_title(f"{method}: {int(np.count_nonzero(counts))}/{len(counts)} codes used", fontsize=10)
        ax.set_xlabel("code")
        ax.set_ylabel("share of macro steps")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{task}: codebook usage in evaluation")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """Render a figure with Agg and write it as PNG, atomically."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# -- Markdown ----------------------------------------------------------------------------------
def _cell(row: dict, score: str) -> str:
    fmt = SCORES[score][1]
    return f"{row[f'{score}_iqm']:{fmt}} [{row[f'{score}_ci_low']:{fmt}}, {row[f'{score}_ci_high']:{fmt}}]"


def _budget_note(runs: list[Run]) -> str:
    budgets = sorted({int(run.curve["env_steps"][-1]) for run in runs})
    episodes = sorted({run.episodes.height for run in runs})
    seeds = list(dict.fromkeys(run.seed for run in runs))
    budget = f"{budgets[0]:,}" if len(budgets) == 1 else f"{budgets[0]:,} to {budgets[-1]:,}"
    per_seed = str(episodes[0]) if len(episodes) == 1 else f"{episodes[0]} to {episodes[-1]}"
    return (
        f"Budget: the final agent after {budget} env steps (last point of the learning curves); "
        f"{per_seed} evaluation episodes per seed; {len(seeds)} seeds ({', '.join(map(str, seeds))})."
    )


def task_section(task: str, table: pl.DataFrame, runs: list[Run], references: dict, figures: list[str], videos: list[str]) -> str:
    """The README section of one task: budget, anchors, the method table, plots and videos."""
    dtw, w1 = references["dtw_state_mean"], references["w1_state"]
    lines = [
        f"## {task} (`{get_task(task).env_id}`)",
        "",
        _budget_note(runs),
        "",
        f"Similarity anchors (random / human): DTW on states {dtw['random']:.1f} / {dtw['human']:.1f}, "
        f"W1 on states {w1['random']:.3f} / {w1['human']:.3f}.",
        "",
        "| method | seeds | " + " | ".join(title for title, _ in SCORES.values()) + " |",
        "|---|---|" + "---|" * len(SCORES),
    ]
    for row in table.iter_rows(named=True):
        lines.append(f"| {row['method']} | {row['n_seeds']} | " + " | ".join(_cell(row, s) for s in SCORES) + " |")
    lines.append("")
    for name in figures:
        lines += [f"![{Path(name).stem}]({name})", ""]
    if videos:
        lines += ["Videos:", ""] + [f"- {line}" for line in videos]
    return "\n".join(lines) + "\n"


def markdown_report(sections: list[str], cfg: ReportConfig) -> str:
    """reports/README.md: how to read the tables, then one section per task."""
    header = [
        "# Results",
        "",
        "Written by the `report` stage (`python -m stages.report`); do not edit by hand.",
        "",
        f"Each cell: the interquartile mean (IQM) across seeds of each seed's mean over its evaluation episodes, "
        f"with a {cfg.confidence:.0%} stratified-bootstrap confidence interval `[low, high]` "
        f"(rliable, {cfg.bootstrap_reps} resamples). The IQM drops the lowest and highest 25% of seeds: "
        "with fewer than 4 seeds nothing is dropped and it is the mean; one seed gives a point interval.",
        "",
        "- normalized score: D4RL's, 0 = random policy, 100 = expert (per episode, then averaged);",
        "- success rate: the task's success flag on the final step of the episode (the paper's rule);",
        "- DTW / W similarity: how close the agent's states are to the human test episodes, by DTW "
        "(`dtw_state_mean`) and by Wasserstein-1 (`w1_state`), scaled so that 1 = human level "
        "(human train vs test episodes) and 0 = uniform random actions; higher is more human-like.",
        "",
        "Per-seed numbers: `evaluation_results/agent_performance_<env>.csv`; per-task tables: `reports/<task>.csv`.",
        "",
    ]
    return "\n".join(header + sections)


# -- videos ------------------------------------------------------------------------------------
def write_videos(paths: ReportPaths, runs: list[Run], cfg: ReportConfig) -> list[tuple[Path, str]]:
    """Videos of each run of `runs` (one task): its first `cfg.video_episodes` evaluation episodes,
    and its first episode next to the closest human test episode. Returns each video's path and
    Markdown line."""
    from pipeline import video  # imported only when videos are wanted: it sets MUJOCO_GL
    from pipeline.data.episodes import Episodes
    from pipeline.data.prepare import load_prepared

    task = runs[0].task
    _, human, meta = load_prepared(paths.prepared / task)
    fps = video.playback_fps(task)
    written = []
    for run in tqdm(runs, desc=f"videos {task}", unit="run"):
        agent = Episodes.load(run.trajectories_path)
        clips = [
            video.EpisodeVideo(video.episode_frames(task, agent, i, cfg.video_size), f"{run.method} seed {run.seed} env seed {agent.episode_ids[i]}")
            for i in range(min(cfg.video_episodes, agent.n_episodes))
        ]
        path = paths.reports / "videos" / f"{task}_{run.method}_seed{run.seed}.mp4"
        video.write_mp4(path, np.concatenate([video.labelled(c) for c in clips]), fps)
        written.append((path, f"[{run.method}, seed {run.seed}](videos/{path.name})"))

        first_episode = next(agent.episode_slices())
        frames, note = video.human_comparison(task, clips[0], agent.obs[first_episode], human, meta["source"], cfg.video_size)
        path = paths.reports / "videos" / f"{task}_{run.method}_vs_human.mp4"
        video.write_mp4(path, frames, fps)
        written.append((path, f"[{run.method} vs human](videos/{path.name}): {note}"))
    return written


# -- the stage ---------------------------------------------------------------------------------
def make_report(tasks: tuple[str, ...], methods: tuple[str, ...], seeds: tuple[int, ...], cfg: ReportConfig, paths: ReportPaths) -> list[Path]:
    """Load every listed run, aggregate, and write all report outputs; returns the written paths."""
    runs = load_runs(paths, tasks, methods, seeds)
    table = aggregate(runs, cfg)
    written: list[Path] = []
    sections = []
    for task in tasks:
        task_runs = [run for run in runs if run.task == task]
        task_table = table.filter(pl.col("task") == task).drop("task")
        references = load_references(paths, task)

        for frame, path in (
            (task_table, paths.reports / f"{task}.csv"),
            (official_table(task_runs), paths.results / f"agent_performance_{get_task(task).env_id}.csv"),
        ):
            with atomic_path(path) as tmp:
                frame.write_csv(tmp)
            written.append(path)

        figures = []
        for name, fig in (
            ("score_vs_humanlike", plot_score_vs_humanlike(task_table, task)),
            ("learning_curves", plot_learning_curves(task_runs, task)),
            ("code_usage", plot_code_usage(task_runs, task)),
        ):
            if fig is not None:
                path = paths.reports / "plots" / f"{task}_{name}.png"
                save_png(fig, path)
                written.append(path)
                figures.append(f"plots/{path.name}")

        first_seed_runs = [run for run in task_runs if run.seed == seeds[0]]
        videos = write_videos(paths, first_seed_runs, cfg) if cfg.videos else []
        written += [path for path, _ in videos]
        sections.append(task_section(task, task_table, task_runs, references, figures, [line for _, line in videos]))

    readme = paths.reports / "README.md"
    write_text_atomic(readme, markdown_report(sections, cfg))
    written.append(readme)
    return written
