"""The `report` stage: aggregate seeds and tasks, write tables, PNG plots, videos and headline metrics.

Inputs, per task t, method m and seed s (written by the finetune and evaluate stages):
- `evaluations/<t>/<m>/seed<s>/episodes.parquet`  one row per evaluation episode;
- `evaluations/<t>/<m>/seed<s>/summary.json`      the summary columns, similarity, discriminator and smoothness scores, code counts;
- `evaluations/<t>/<m>/seed<s>/trajectories.safetensors`  the episodes (videos only);
- `plots/finetune/<t>/<m>/seed<s>/`               the learning curve (a DVCLive log, pipeline.live);
- `plots/codebook/<t>/`                           the codebook's training curve (likewise);
- `data/references/<t>/references.json`           the anchors of the similarity scores;
- `data/prepared/<t>/`                            the human test split (videos only).
Outputs: `reports/<t>.csv`, `reports/curves/<t>.csv` (every learning curve, a DVC plot), `reports/codebook_curves.csv`
(every codebook's training curve, a DVC plot), `reports/README.md`, `reports/plots/*.png`, `reports/videos/*.mp4`, the
official per-agent table `evaluation_results/agent_performance_<env id>.csv`, and `metrics/summary.json`.

Aggregation follows rliable (Agarwal et al., 2021): a run (task × method × seed) has one value of each
score (SCORES). Per task × method and per method across tasks (the seeds × tasks runs, tasks as strata),
the report gives the interquartile mean (IQM) with a stratified-bootstrap percentile confidence interval,
and the plain mean; the IQM trims 25% of the runs at each end, which removes nothing with fewer than 4
runs: there it equals the mean, and one run gives a point interval. Whether MAQ+X beats X (MAQ_BASELINES)
is rliable's probability of improvement with its CI, per task and across tasks. A score a run did not
measure (absent, null or NaN in summary.json) is left out of every aggregate and shown as "—".
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from pipeline.artifacts.layout import Layout
from pipeline.config import ReportConfig
from pipeline.evaluation import DISTANCES
from pipeline.io import atomic_path, write_json_atomic, write_text_atomic
from pipeline.live import read_curve
from pipeline.tasks import get_task

EPISODE_COLUMNS = ("env_seed", "terminated", "raw_reward", "normalized_score", "length", "success", "success_ever", "success_held", *DISTANCES)
CURVE_COLUMNS = ("env_steps", "eval_return", "eval_normalized_score", "eval_success_rate")
BOOTSTRAP_SEED = 0


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


def load_run(paths: Layout, task: str, method: str, seed: int) -> Run:
    """Read one run's evaluation and learning curve, with errors that name the stage to run."""
    run_dir = paths.evaluation(task, method, seed)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no evaluation of {task} / {method} / seed {seed} at {run_dir}; run `dvc repro evaluate` first")
    # the paper protocol's episodes; under `evaluate.protocol: paired` only, the paired ones (same columns)
    prefix = "" if (run_dir / "episodes.parquet").is_file() or not (run_dir / "paired_episodes.parquet").is_file() else "paired_"
    for name in (f"{prefix}episodes.parquet", "summary.json", f"{prefix}trajectories.safetensors"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} is missing; re-run `dvc repro evaluate`")
    curve_path = paths.curve(task, method, seed)
    if not curve_path.is_dir():
        raise FileNotFoundError(f"no learning curve at {curve_path}; run `dvc repro finetune` first")

    episodes = pl.read_parquet(run_dir / f"{prefix}episodes.parquet")
    _require_columns(episodes, EPISODE_COLUMNS, run_dir / f"{prefix}episodes.parquet")
    if episodes.height == 0:
        raise ValueError(f"{run_dir / prefix}episodes.parquet holds no episodes")
    summary = json.loads((run_dir / "summary.json").read_text())
    identity = (summary.get("task"), summary.get("method"), summary.get("seed"))
    if identity != (task, method, seed):
        raise ValueError(f"{run_dir / 'summary.json'} describes task/method/seed {identity}, not {(task, method, seed)}")
    curve = pl.DataFrame(read_curve(curve_path, "env_steps"))
    _require_columns(curve, CURVE_COLUMNS, curve_path)
    return Run(task, method, seed, episodes, summary, curve.sort("env_steps"), run_dir / f"{prefix}trajectories.safetensors")


def load_runs(paths: Layout, tasks: tuple[str, ...], methods: tuple[str, ...], seeds: tuple[int, ...]) -> list[Run]:
    """Every listed task × method × seed, in that order."""
    return [load_run(paths, t, m, s) for t in tasks for m in methods for s in seeds]


def load_references(paths: Layout, task: str) -> dict[str, dict[str, float]]:
    """`{distance: {"random": float, "human": float}}`, the anchors of the task's similarity scores."""
    path = paths.references_file(task)
    if not path.is_file():
        raise FileNotFoundError(f"no similarity anchors at {path}; run `dvc repro references` first")
    return json.loads(path.read_text())["distances"]  # written by pipeline.evaluation.run_references


# -- per-run scores and their aggregation --------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """A per-run score: its title, its number format, and which way is better (more successful for the
    task scores, more human-like for the others)."""

    title: str
    fmt: str
    better: str  # "higher", "lower" or "closer to 1"

    @property
    def label(self) -> str:
        return f"{self.title} {ARROWS[self.better]}"

    def oriented(self, values: np.ndarray) -> np.ndarray:
        """`values` turned so that higher is better: as they are, negated, or −|log ratio| (a ratio of 0 is −inf)."""
        if self.better == "higher":
            return values
        if self.better == "lower":
            return -values
        with np.errstate(divide="ignore"):
            return -np.abs(np.log(values))


ARROWS = {"higher": "↑", "lower": "↓", "closer to 1": "→1"}
SCORES = {
    "normalized_score": Score("normalized score", ".1f", "higher"),
    "success_rate": Score("success rate", ".2f", "higher"),
    "dtw_similarity": Score("DTW similarity", ".2f", "higher"),
    "w_similarity": Score("W similarity", ".2f", "higher"),
    "paired_dtw_similarity": Score("paired DTW similarity", ".2f", "higher"),
    "discriminator_auc": Score("discriminator AUC", ".2f", "lower"),
    "jerk_ratio": Score("jerk ratio", ".2f", "closer to 1"),
    "ldlj_ratio": Score("LDLJ ratio", ".2f", "closer to 1"),
}
# P(MAQ+X > X) is asked of success (task performance) and of every human-likeness score.
IMPROVEMENT_SCORES = tuple(name for name in SCORES if name != "normalized_score")
# Each MAQ method and the baseline it extends (the paper's question: is MAQ+X more human-like than X?).
# Only the report asks; it could move to the torch-free registry pipeline/methods.py if another stage does.
MAQ_BASELINES = {"maq_rlpd": "rlpd", "maq_iql": "iql", "maq_dsac": "sac"}
NOT_MEASURED = (float("nan"),) * 3


def _summary_value(summary: dict, key: str) -> float:
    """A summary.json number; NaN when absent or null (not measured, e.g. paired scores under the paper protocol)."""
    value = summary.get(key)
    return float("nan") if value is None else float(value)


def run_scores(run: Run) -> dict[str, float]:
    """A run's score of each of SCORES (NaN: not measured). The task scores are means over its evaluation
    episodes; similarity is linear in the distance, so the score of the episode mean is the mean score."""
    value = lambda key: _summary_value(run.summary, key)  # noqa: E731
    return {
        "normalized_score": float(run.episodes["normalized_score"].mean()),
        "success_rate": float(run.episodes["success"].cast(pl.Float64).mean()),
        "dtw_similarity": value("dtw_state_mean_similarity"),
        "w_similarity": value("w1_state_similarity"),
        "paired_dtw_similarity": value("paired_dtw_state_similarity"),
        "discriminator_auc": value("discriminator_auc"),
        "jerk_ratio": value("action_jerk_ratio"),
        "ldlj_ratio": value("ldlj_ratio"),
    }


def score_arrays(runs: list[Run]) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """`{method: {task: {score: per-seed values (n_seeds,)}}}`, in the order of `runs`; NaN = not measured."""
    groups: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        groups.setdefault(run.method, {}).setdefault(run.task, []).append(run_scores(run))
    return {
        method: {task: {score: np.array([r[score] for r in per_run]) for score in SCORES} for task, per_run in tasks.items()}
        for method, tasks in groups.items()
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


def _stratified(strata: list[np.ndarray], statistic, reps: int, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rliable's point estimate of `statistic(*strata)` (a 1-D array) and its stratified-bootstrap percentile
    CI: each stratum (runs, 1, ...) (a task, or one method on one task) has its runs resampled on its own.
    Returns (point, low, high), each of `statistic`'s shape."""
    from rliable import library

    with _global_numpy_seed(BOOTSTRAP_SEED):
        points, intervals = library.get_interval_estimates({"x": strata}, statistic, reps=reps, confidence_interval_size=confidence)
    return points["x"], intervals["x"][0], intervals["x"][1]


def _measured(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)[~np.isnan(values)]


def iqm_interval(*per_task: np.ndarray, reps: int, confidence: float) -> tuple[float, float, float]:
    """IQM over the runs of every task (one array (n_seeds,) per task; NaN = not measured, left out) and its
    stratified-bootstrap percentile CI, tasks as strata: (iqm, low, high); NaNs when no run measured it."""
    from rliable import metrics

    strata = [values.reshape(-1, 1) for values in map(_measured, per_task) if values.size]  # (runs, 1) each
    if not strata:
        return NOT_MEASURED
    point, low, high = _stratified(strata, lambda *s: np.array([metrics.aggregate_iqm(np.concatenate(s))]), reps, confidence)
    return float(point[0]), float(low[0]), float(high[0])


def pairwise_wins(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) from runs x (n,) and y (m,): the share of (x_i, y_j) pairs with x_i > y_j, ties counting 1/2.
    This is rliable's `metrics.probability_of_improvement` on one task (its Mann–Whitney U / (n·m), a test
    checks they agree); rliable calls scipy's test once per task and resample, ~2 ms each, which made this
    the report's slowest step (≈ 110 s of bootstrap for the default run), where this takes microseconds."""
    diff = x[:, None] - y[None, :]  # (n, m)
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def improvement_probability(x: list[np.ndarray], y: list[np.ndarray], reps: int, confidence: float) -> np.ndarray:
    """rliable's P(X > Y), the chance that a run of X scores higher than a run of Y on the same task, with its
    stratified-bootstrap CI. `x[i]` and `y[i]` are the run scores (n,) of X and Y on task i, higher is better;
    NaN = not measured, left out, and so is a task where X or Y measured nothing. Returns (3, 1 + tasks):
    rows p, low, high; column 0 averaged over the tasks left (NaN if none), then each task. One bootstrap
    serves all columns: a task's column depends only on its own resampled runs."""
    out = np.full((3, 1 + len(x)), np.nan)
    kept = [i for i, (a, b) in enumerate(zip(x, y)) if _measured(a).size and _measured(b).size]
    if not kept:
        return out
    strata = [_measured(scores[i]).reshape(-1, 1) for scores in (x, y) for i in kept]  # x's tasks, then y's
    n = len(kept)

    def statistic(*s: np.ndarray) -> np.ndarray:
        per_task = [pairwise_wins(a[:, 0], b[:, 0]) for a, b in zip(s[:n], s[n:])]
        return np.array([np.mean(per_task), *per_task])  # rliable's average over tasks, and each task

    out[:, [0, *(1 + i for i in kept)]] = _stratified(strata, statistic, reps, confidence)
    return out


def iqm_curve(values: np.ndarray, reps: int, confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM across seeds at each point of learning curves `values` (seeds, points) and its stratified-bootstrap
    percentile CI (seeds resampled at each point): (iqm, low, high), each (points,). The statistic is rliable's
    `metrics.aggregate_iqm` (a 25% trimmed mean) taken along the seeds for every point at once: calling it once
    per point costs ~100x more (30 s for a 100-point curve at 2000 resamples)."""
    from scipy import stats

    return _stratified([values[:, None, :]], lambda s: stats.trim_mean(s[:, 0], 0.25, axis=0), reps, confidence)  # (seeds, tasks=1, points)


def aggregate(runs: list[Run], cfg: ReportConfig) -> pl.DataFrame:
    """One row per method (in the order of `runs`) over every task of `runs` (one task: the per-task table):
    `n_tasks`, `n_seeds` and, for each of SCORES, `<score>_iqm`, `<score>_ci_low`, `<score>_ci_high` (IQM over the
    seeds × tasks runs, stratified-bootstrap CI with tasks as strata) and `<score>_mean`, over the runs that
    measured the score (NaN where none did)."""
    rows = []
    for method, tasks in score_arrays(runs).items():
        row = {"method": method, "n_tasks": len(tasks), "n_seeds": len({run.seed for run in runs if run.method == method})}
        for score in SCORES:
            per_task = [scores[score] for scores in tasks.values()]
            iqm, low, high = iqm_interval(*per_task, reps=cfg.bootstrap_reps, confidence=cfg.confidence)
            measured = _measured(np.concatenate(per_task))
            mean = float(measured.mean()) if measured.size else float("nan")
            row |= {f"{score}_iqm": iqm, f"{score}_ci_low": low, f"{score}_ci_high": high, f"{score}_mean": mean}
        rows.append(row)
    return pl.DataFrame(rows)


def improvement(runs: list[Run], cfg: ReportConfig) -> pl.DataFrame:
    """P(MAQ+X > X) for each pair of MAQ_BASELINES with both methods in `runs`: one row per pair and `scope`
    ("across_tasks", then each task), `method`, `baseline` and, for each of IMPROVEMENT_SCORES, `<score>_p`,
    `<score>_ci_low`, `<score>_ci_high`, oriented so that > 0.5 means MAQ+X is better (more successful, more
    human-like)."""
    arrays = score_arrays(runs)
    rows = []
    for maq, baseline in MAQ_BASELINES.items():
        if maq not in arrays or baseline not in arrays:
            continue
        tasks = [task for task in arrays[maq] if task in arrays[baseline]]
        scopes = [{"scope": scope, "method": maq, "baseline": baseline} for scope in ("across_tasks", *tasks)]
        for name in IMPROVEMENT_SCORES:
            x, y = ([SCORES[name].oriented(arrays[m][t][name]) for t in tasks] for m in (maq, baseline))
            p = improvement_probability(x, y, cfg.bootstrap_reps, cfg.confidence)  # (3, scopes)
            for row, (point, low, high) in zip(scopes, p.T):
                row |= {f"{name}_p": point, f"{name}_ci_low": low, f"{name}_ci_high": high}
        rows += scopes
    return pl.DataFrame(rows)


def _json_number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None  # JSON has no NaN: null = not measured


def summary_metrics(across: pl.DataFrame, per_task: dict[str, pl.DataFrame], improvement_table: pl.DataFrame) -> dict:
    """metrics/summary.json, the one metrics file for comparing experiments (`dvc exp show`): per method across
    tasks `across_tasks.<method>.<score>.{iqm,ci_low,ci_high}`; per task × method `per_task.<task>.<method>.<score>`
    (IQM); and per MAQ+X vs X pair across tasks `improvement.<maq>_vs_<baseline>.<score>.{p,ci_low,ci_high}`.
    null = not measured. Per-task P(MAQ+X > X) stays in the report's tables, per-run numbers in metrics/evaluate/."""
    stats = lambda row, score, point: {k: _json_number(row[f"{score}_{k}"]) for k in (point, "ci_low", "ci_high")}  # noqa: E731
    return {
        "across_tasks": {row["method"]: {s: stats(row, s, "iqm") for s in SCORES} for row in across.iter_rows(named=True)},
        "per_task": {
            task: {row["method"]: {s: _json_number(row[f"{s}_iqm"]) for s in SCORES} for row in table.iter_rows(named=True)}
            for task, table in per_task.items()
        },
        "improvement": {
            f"{row['method']}_vs_{row['baseline']}": {s: stats(row, s, "p") for s in IMPROVEMENT_SCORES}
            for row in improvement_table.iter_rows(named=True) if row["scope"] == "across_tasks"
        },
    }


# Our names (summary.json, or added by `official_table`) → the official code's `agent_performance_<env>.csv`
# names, in the official column order. A distance stands for its statistics: `<d>_agg_{mean,std}` (all
# episodes) and `{success,non_success}_<d>_{mean,std,max,min}`. Our W1 is the official "w2" (W1 on unsquared
# costs); what has no twin (w2_*: a true W2, similarities, paired, discriminator, smoothness) keeps our name.
OFFICIAL_NAMES = {
    "method": "agent_type", "env_id": "env_id", "model_path": "model_path", "episodes": "eval_episodes", "seed": "base_seed",
    "horizon": "horizon", "default_horizon": "default_horizon",
    **{name: name for name in ("normalized_score_mean", "normalized_score_std", "raw_reward_mean", "raw_reward_std",
                               "length_mean", "length_std", "success_rate", "early_termination_rate")},
    "dtw_state_mean": "dtw_state_dtw_mean", "dtw_action_mean": "dtw_action_dtw_mean",
    "min_dtw_state": "min_dtw_state_dtw_min", "min_dtw_action": "min_dtw_action_dtw_min",
    "w1_state": "wasserstein_state_w2_dist", "w1_action": "wasserstein_action_w2_dist",
}


def _official_columns() -> dict[str, str]:
    """OFFICIAL_NAMES with each distance expanded into its statistics' columns."""
    columns = {}
    for ours, official in OFFICIAL_NAMES.items():
        if ours not in DISTANCES:
            columns[ours] = official
            continue
        columns |= {f"{ours}_agg_{stat}": f"{official}_agg_{stat}" for stat in ("mean", "std")}
        columns |= {f"{group}_{ours}_{stat}": f"{group}_{official}_{stat}"
                    for group in ("success", "non_success") for stat in ("mean", "std", "max", "min")}
    return columns


def official_table(runs: list[Run]) -> pl.DataFrame:
    """The official `agent_performance_<env>.csv`: one row per method × seed, the official columns under their
    official names first (OFFICIAL_NAMES), then the other summary.json columns (without `code_counts`)."""
    columns = _official_columns()
    rows = []
    for run in runs:
        task = get_task(run.task)
        ours = {k: v for k, v in run.summary.items() if k not in ("task", "code_counts")}  # env_id names the task
        ours |= {"env_id": task.env_id, "model_path": Layout().agent(run.task, run.method, run.seed).as_posix(),
                 "horizon": task.horizon, "default_horizon": task.horizon}
        official = {name: ours.pop(key) for key, name in columns.items() if key in ours}
        rows.append(official | ours)
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


def plot_learning_curves(runs: list[Run], task: str, cfg: ReportConfig) -> Figure:
    """IQM over seeds of the learning curves with its stratified-bootstrap CI band, per method, on the env
    steps that every seed of the method evaluated."""
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    methods = list(dict.fromkeys(run.method for run in runs))
    colors = _method_colors(methods)
    for method in methods:
        curves = [run.curve for run in runs if run.method == method]
        steps = sorted(set.intersection(*(set(c["env_steps"].to_list()) for c in curves)))
        for ax, column in zip(axes, ("eval_normalized_score", "eval_success_rate")):
            values = np.stack([c.filter(pl.col("env_steps").is_in(steps))[column].to_numpy() for c in curves])  # (seeds, points)
            iqm, low, high = iqm_curve(values, cfg.bootstrap_reps, cfg.confidence)
            ax.plot(steps, iqm, color=colors[method], label=f"{method} (n={len(curves)})")
            ax.fill_between(steps, low, high, color=colors[method], alpha=0.2, linewidth=0)
    for ax, title in zip(axes, ("normalized score", "success rate")):
        ax.set_xlabel("env steps")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{task}: learning curves (IQM over seeds, band: {cfg.confidence:.0%} CI)")
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


def curves_table(runs: list[Run]) -> pl.DataFrame:
    """Every run's learning curve in one long table (`method`, `seed`, then CURVE_COLUMNS), in the order of `runs`:
    `reports/curves/<task>.csv`, the DVC plot drawn with the `learning_curves` template (a line per method × seed)."""
    return pl.concat([run.curve.select(pl.lit(run.method).alias("method"), pl.lit(run.seed).alias("seed"), *CURVE_COLUMNS)
                      for run in runs])


def codebook_curves_table(paths: Layout, tasks: tuple[str, ...]) -> pl.DataFrame:
    """Every task's codebook training curve in one long table (`task`, `epoch`, then its measures):
    `reports/codebook_curves.csv`, the DVC plot drawn with the `codebook_curves` template (a line per task).
    A codebook pulled from the Hub (`codebook.source: hub:…`) was not trained here: its task has no rows."""
    frames = []
    for task in tasks:
        curve_dir = paths.codebook_curve(task)
        if not curve_dir.is_dir():
            raise FileNotFoundError(f"no codebook training curve at {curve_dir}; run `dvc repro codebook@{task}` first")
        if any(curve_dir.rglob("*.tsv")):
            frames.append(pl.DataFrame(read_curve(curve_dir, "epoch")).select(pl.lit(task).alias("task"), pl.all()))
    return pl.concat(frames, how="diagonal") if frames else pl.DataFrame({"task": [], "epoch": []})


def save_png(fig: Figure, path: Path) -> None:
    """Render a figure with Agg and write it as PNG, atomically."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# -- Markdown ----------------------------------------------------------------------------------
def _cell(row: dict, score: str, point: str, fmt: str) -> str:
    """`point [low, high]` of one score in a table row, "—" when not measured."""
    value = row[f"{score}_{point}"]
    if not np.isfinite(value):
        return "—"
    return f"{value:{fmt}} [{row[f'{score}_ci_low']:{fmt}}, {row[f'{score}_ci_high']:{fmt}}]"


def _score_table(table: pl.DataFrame) -> list[str]:
    """The Markdown table of an `aggregate` table: one row per method, IQM [CI] of every score."""
    lines = ["| method | seeds | " + " | ".join(s.label for s in SCORES.values()) + " |", "|---|---|" + "---|" * len(SCORES)]
    for row in table.iter_rows(named=True):
        lines.append(f"| {row['method']} | {row['n_seeds']} | " + " | ".join(_cell(row, name, "iqm", s.fmt) for name, s in SCORES.items()) + " |")
    return lines


def _improvement_table(table: pl.DataFrame, scope: str) -> list[str]:
    """The Markdown table of one scope ("across_tasks" or a task) of an `improvement` table: one row per
    MAQ+X vs X, P [CI] of each score."""
    rows = [row for row in table.iter_rows(named=True) if row["scope"] == scope]
    if not rows:
        pairs = ", ".join(f"{maq} vs {baseline}" for maq, baseline in MAQ_BASELINES.items())
        return [f"P(MAQ+X > X): no pair ran ({pairs})."]
    lines = ["| P(MAQ+X > X) | " + " | ".join(SCORES[s].title for s in IMPROVEMENT_SCORES) + " |", "|---|" + "---|" * len(IMPROVEMENT_SCORES)]
    for row in rows:
        lines.append(f"| {row['method']} > {row['baseline']} | " + " | ".join(_cell(row, s, "p", ".2f") for s in IMPROVEMENT_SCORES) + " |")
    return lines


def across_section(tasks: tuple[str, ...], table: pl.DataFrame, improvement_table: pl.DataFrame) -> str:
    """The README section across tasks: the per-method table (`aggregate` over all tasks) and P(MAQ+X > X)
    (the "across_tasks" rows of `improvement`)."""
    lines = [
        "## Across tasks",
        "",
        f"Every run of a method on {', '.join(tasks)} pooled: IQM over the seeds × tasks runs, the bootstrap "
        "stratified by task.",
        "",
        *_score_table(table),
        "",
        *_improvement_table(improvement_table, "across_tasks"),
    ]
    return "\n".join(lines) + "\n"


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


def task_section(task: str, table: pl.DataFrame, improvement_table: pl.DataFrame, runs: list[Run], references: dict,
                 figures: list[str], videos: list[str]) -> str:
    """The README section of one task: budget, anchors, the method table, P(MAQ+X > X), plots and videos."""
    dtw, w1 = references["dtw_state_mean"], references["w1_state"]
    lines = [
        f"## {task} (`{get_task(task).env_id}`)",
        "",
        _budget_note(runs),
        "",
        f"Similarity anchors (random / human): DTW on states {dtw['random']:.1f} / {dtw['human']:.1f}, "
        f"W1 on states {w1['random']:.3f} / {w1['human']:.3f}.",
        "",
        *_score_table(table),
        "",
        *_improvement_table(improvement_table, task),
        "",
    ]
    for name in figures:
        lines += [f"![{Path(name).stem}]({name})", ""]
    if videos:
        lines += ["Videos:", ""] + [f"- {line}" for line in videos]
    return "\n".join(lines) + "\n"


def markdown_report(sections: list[str], cfg: ReportConfig) -> str:
    """reports/README.md: how to read the tables, then the sections (across tasks, then one per task)."""
    header = [
        "# Results",
        "",
        "Written by the `report` stage (`python -m stages.report`); do not edit by hand.",
        "",
        f"Each cell: the interquartile mean (IQM) across runs of each run's score, with a {cfg.confidence:.0%} "
        f"stratified-bootstrap confidence interval `[low, high]` (rliable, {cfg.bootstrap_reps} resamples). The IQM "
        "drops the lowest and highest 25% of runs: with fewer than 4 runs nothing is dropped and it is the mean; "
        "one run gives a point interval. \"—\": no run measured the score; runs that did not measure a score are "
        "left out of its aggregates. ↑ higher is better, ↓ lower is better, →1 closer to 1 is better.",
        "",
        "- normalized score ↑: D4RL's, 0 = random policy, 100 = expert (per episode, then averaged);",
        "- success rate ↑: the task's success flag on the final step of the episode (the paper's rule);",
        "- DTW / W similarity ↑: how close the agent's states are to every human test episode (paper protocol), by "
        "DTW (`dtw_state_mean`) and by Wasserstein-1 (`w1_state`), scaled so that 1 = human level (human train vs "
        "test episodes) and 0 = uniform random actions;",
        "- paired DTW similarity ↑: the agent starts from each human test episode's start state and is compared "
        "with that episode by DTW on states (paired protocol), scaled so that 1 = other people from the same start "
        "states and 0 = the nearer of a uniform-random and a zero-action agent;",
        "- discriminator AUC ↓: ROC AUC of a classifier telling agent from human windows; 0.5 = indistinguishable "
        "from the humans, 1 = trivially machine;",
        "- jerk / LDLJ ratio →1: the agent's median action jerk / log dimensionless jerk over the human test "
        "episodes' median; 1 = as smooth as the humans;",
        "- P(MAQ+X > X): rliable's probability of improvement, the chance that a run of MAQ+X beats a run of X on "
        "the same task, averaged over tasks; > 0.5 means MAQ+X is better (more successful, more human-like; the "
        "ratios compare −|log ratio|), 0.5 = no difference.",
        "",
        "Per-seed numbers: `evaluation_results/agent_performance_<env>.csv`; per-task tables: `reports/<task>.csv`; "
        "headline numbers for `dvc exp show`: `metrics/summary.json`.",
        "",
    ]
    return "\n".join(header + sections)


# -- videos ------------------------------------------------------------------------------------
def write_videos(paths: Layout, runs: list[Run], cfg: ReportConfig) -> list[tuple[Path, str]]:
    """Videos of each run of `runs` (one task): its first `cfg.video_episodes` evaluation episodes,
    and its first episode next to the closest human test episode. Returns each video's path and
    Markdown line."""
    from pipeline import video  # imported only when videos are wanted: it sets MUJOCO_GL
    from pipeline.data.episodes import Episodes
    from pipeline.data.prepare import load_prepared

    task = runs[0].task
    _, human, meta = load_prepared(paths.prepared(task))
    fps = video.playback_fps(task)
    written = []
    for run in tqdm(runs, desc=f"videos {task}", unit="run"):
        agent = Episodes.load(run.trajectories_path)
        clips = [
            video.EpisodeVideo(video.episode_frames(task, agent, i, cfg.video_size), f"{run.method} seed {run.seed} env seed {agent.episode_ids[i]}")
            for i in range(min(cfg.video_episodes, agent.n_episodes))
        ]
        path = paths.video(task, run.method, run.seed)
        video.write_mp4(path, np.concatenate([video.labelled(c) for c in clips]), fps)
        written.append((path, f"[{run.method}, seed {run.seed}](videos/{path.name})"))

        first_episode = next(agent.episode_slices())
        frames, note = video.human_comparison(task, clips[0], agent.obs[first_episode], human, meta["source"], cfg.video_size)
        path = paths.reports / "videos" / f"{task}_{run.method}_vs_human.mp4"
        video.write_mp4(path, frames, fps)
        written.append((path, f"[{run.method} vs human](videos/{path.name}): {note}"))
    return written


# -- the stage ---------------------------------------------------------------------------------
def make_report(tasks: tuple[str, ...], methods: tuple[str, ...], seeds: tuple[int, ...], cfg: ReportConfig, paths: Layout) -> list[Path]:
    """Load every listed run, aggregate, and write all report outputs; returns the written paths."""
    runs = load_runs(paths, tasks, methods, seeds)
    across, improvement_table = aggregate(runs, cfg), improvement(runs, cfg)
    per_task: dict[str, pl.DataFrame] = {}
    written: list[Path] = []
    sections = [across_section(tasks, across, improvement_table)]
    for task in tasks:
        task_runs = [run for run in runs if run.task == task]
        task_table = per_task[task] = aggregate(task_runs, cfg)
        references = load_references(paths, task)

        for frame, path in (
            (task_table, paths.report_table(task)),
            (official_table(task_runs), paths.results / f"agent_performance_{get_task(task).env_id}.csv"),
            (curves_table(task_runs), paths.report_curves(task)),
        ):
            with atomic_path(path) as tmp:
                frame.write_csv(tmp)
            written.append(path)

        figures = []
        for name, fig in (
            ("score_vs_humanlike", plot_score_vs_humanlike(task_table, task)),
            ("learning_curves", plot_learning_curves(task_runs, task, cfg)),
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
        sections.append(task_section(task, task_table, improvement_table, task_runs, references, figures, [line for _, line in videos]))

    with atomic_path(paths.report_codebook_curves) as tmp:
        codebook_curves_table(paths, tasks).write_csv(tmp)
    written.append(paths.report_codebook_curves)
    readme, metrics = paths.reports / "README.md", paths.summary
    write_text_atomic(readme, markdown_report(sections, cfg))
    write_json_atomic(metrics, summary_metrics(across, per_task, improvement_table))
    return written + [readme, metrics]
