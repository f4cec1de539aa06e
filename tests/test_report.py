"""The report stage: seed aggregation (rliable IQM and CIs), tables, PNG plots, videos.

The inputs (what the finetune and evaluate stages write) are built here, small but in their exact
layout: `write_evaluated_runs`.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline.artifacts.layout import Layout
from pipeline.config import ReportConfig, record_param_reads
from pipeline.evaluation import DISTANCES, similarity_scores, summarize
from pipeline.live import CurveLog, read_curve
from pipeline.report import (Run, aggregate, improvement, iqm_curve, iqm_interval, load_runs, make_report, pairwise_wins,
                             plot_score_vs_humanlike, save_png)
from tests.conftest import REPO_ROOT
from tests.test_video import random_episodes

TASK = "door"
METHODS = ("sac", "rlpd", "maq_rlpd")
SEEDS = (1, 2, 3, 4)
# Each run's mean normalized score, by method and seed, for the hand checks.
NORMALIZED_SCORE = {"sac": (10.0, 20.0, 30.0, 100.0), "rlpd": (20.0, 30.0, 40.0, 50.0), "maq_rlpd": (50.0, 50.0, 50.0, 50.0)}
# The paired, discriminator and smoothness keys of summary.json, by method (seed i adds 0.01·i): maq_rlpd is
# more human-like than rlpd on each (its ratios are closer to 1, the jerk ratio lower, the LDLJ ratio higher);
# sac measured none of them (null, as under `evaluate.protocol: paper`), and rlpd seed 1 lacks the paired keys.
HUMANLIKE = {
    "sac": dict.fromkeys(("paired_dtw_state_similarity", "discriminator_auc", "action_jerk_ratio", "ldlj_ratio")),
    "rlpd": {"paired_dtw_state_similarity": 0.2, "discriminator_auc": 0.95, "action_jerk_ratio": 1.5, "ldlj_ratio": 0.6},
    "maq_rlpd": {"paired_dtw_state_similarity": 0.8, "discriminator_auc": 0.6, "action_jerk_ratio": 0.9, "ldlj_ratio": 1.2},
}
REFERENCES = {name: {"random": 100.0, "human": 20.0} for name in DISTANCES}
K = 8


def report_config(**changes) -> ReportConfig:
    values = dict(bootstrap_reps=50, confidence=0.95, videos=False, video_episodes=1, video_size=64) | changes
    return ReportConfig(**values)


def write_evaluated_runs(root: Path, steps: int = 10, episodes: int = 2) -> None:
    """The finetune and evaluate stages' outputs for TASK × METHODS × SEEDS under `root`, plus the
    similarity anchors and a synthetic prepared test split. Trajectories are real door episodes of
    random actions (replayable); the per-episode numbers are made up around NORMALIZED_SCORE."""
    rng = np.random.default_rng(0)
    horizon = 200
    human = random_episodes(TASK, [6, 13], steps, seed=1)
    layout = Layout(root)
    prepared = layout.prepared(TASK)
    prepared.mkdir(parents=True)
    human.save(prepared / "train.safetensors")
    human.save(prepared / "test.safetensors")
    (prepared / "meta.json").write_text(json.dumps({"task": TASK, "source": "synthetic"}))
    references = layout.references_file(TASK)
    references.parent.mkdir(parents=True)
    references.write_text(json.dumps({"dtw": "exact", "random_episodes": 2, "distances": REFERENCES}))  # run_references' format

    for method in METHODS:
        for i, seed in enumerate(SEEDS):
            run_dir = layout.evaluation(TASK, method, seed)
            run_dir.mkdir(parents=True)
            env_seeds = [200 * seed + e for e in range(episodes)]
            random_episodes(TASK, env_seeds, steps, seed=seed).save(run_dir / "trajectories.safetensors")
            score = NORMALIZED_SCORE[method][i]
            rows = [
                {
                    "env_seed": env_seed,
                    "terminated": False,
                    "raw_reward": float(rng.normal(100, 10)),
                    "normalized_score": score + (1.0 if e % 2 else -1.0),  # episode mean = score
                    "length": horizon,
                    "success": e == 0,
                    "success_ever": True,
                    "success_held": e == 0,
                    **{name: float(rng.uniform(30, 90)) for name in DISTANCES},
                }
                for e, env_seed in enumerate(env_seeds)
            ]
            pl.DataFrame(rows).write_parquet(run_dir / "episodes.parquet")
            summary = summarize(rows, horizon)
            summary |= similarity_scores(summary, REFERENCES)
            summary |= {k: None if v is None else v + 0.01 * i for k, v in HUMANLIKE[method].items()}
            if HUMANLIKE[method]["discriminator_auc"] is not None:
                summary |= {"paired_episodes": 2, "paired_dtw_state": 50.0 - i, "discriminator_auc_ci_low": 0.5, "discriminator_auc_ci_high": 1.0}
            if (method, seed) == ("rlpd", 1):
                summary = {k: v for k, v in summary.items() if not k.startswith("paired_")}
            code_counts = rng.integers(0, 20, K).tolist() if method.startswith("maq_") else None
            summary |= {"code_counts": code_counts, "task": TASK, "method": method, "seed": seed}
            (run_dir / "summary.json").write_text(json.dumps(summary))

            curve = CurveLog(layout.curve(TASK, method, seed), "env_steps")  # as the finetune stage logs it
            for row in pl.DataFrame(
                {
                    "env_steps": [0, 500, 1000],
                    "eval_return": rng.normal(100, 10, 3),
                    "eval_normalized_score": np.array([0.0, score / 2, score]),
                    "eval_success_rate": rng.uniform(0, 1, 3),
                }
            ).iter_rows(named=True):
                curve.log(row)
            curve.close()
    codebook_curve = CurveLog(layout.codebook_curve(TASK), "epoch")  # as the codebook stage logs it
    for epoch, test_mse in ((1, 0.5), (2, 0.25)):
        codebook_curve.log({"epoch": epoch, "recon_loss": 2 * test_mse, "test_mse": test_mse})
    codebook_curve.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    write_evaluated_runs(root)
    return root


@pytest.fixture(scope="module")
def report(project) -> Layout:
    """The report of `project`, videos included, written once for the tests that read it."""
    paths = Layout(project)
    make_report((TASK,), METHODS, SEEDS, report_config(videos=True), paths)
    return paths


# -- aggregation ---------------------------------------------------------------------------------
def test_iqm_of_known_values():
    iqm, low, high = iqm_interval(np.array([1.0, 2.0, 3.0, 10.0]), reps=200, confidence=0.95)
    assert iqm == pytest.approx(2.5)  # the middle half: mean of 2 and 3
    assert 1.0 <= low <= iqm <= high <= 10.0 and low < high


def test_identical_seeds_collapse_the_interval():
    assert iqm_interval(np.full(3, 7.5), reps=50, confidence=0.95) == pytest.approx((7.5, 7.5, 7.5))
    assert iqm_interval(np.array([4.0]), reps=50, confidence=0.95) == pytest.approx((4.0, 4.0, 4.0))  # one seed


def test_iqm_with_fewer_than_four_seeds_is_the_mean():
    iqm, _, _ = iqm_interval(np.array([1.0, 2.0, 9.0]), reps=50, confidence=0.95)
    assert iqm == pytest.approx(4.0)


def test_interval_is_reproducible_and_leaves_the_global_rng_alone():
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = iqm_interval(np.array([1.0, 5.0, 2.0, 8.0, 3.0]), reps=100, confidence=0.9)
    assert np.random.rand() == expected_next
    assert iqm_interval(np.array([1.0, 5.0, 2.0, 8.0, 3.0]), reps=100, confidence=0.9) == first


def test_aggregate_per_method(project):
    runs = load_runs(Layout(project), (TASK,), METHODS, SEEDS)
    table = aggregate(runs, report_config())
    sac, rlpd, maq = (table.filter(pl.col("method") == m).row(0, named=True) for m in METHODS)
    assert sac["n_seeds"] == 4 and sac["n_tasks"] == 1 and sac["normalized_score_iqm"] == pytest.approx(25.0)  # IQM of 10, 20, 30, 100
    assert sac["normalized_score_mean"] == pytest.approx(40.0)
    assert sac["success_rate_iqm"] == pytest.approx(0.5)  # one success in two episodes, every seed
    assert (maq["normalized_score_iqm"], maq["normalized_score_ci_low"], maq["normalized_score_ci_high"]) == pytest.approx((50, 50, 50))
    similarities = [json.loads((project / f"evaluations/door/maq_rlpd/seed{s}/summary.json").read_text())["dtw_state_mean_similarity"] for s in SEEDS]
    assert maq["dtw_similarity_mean"] == pytest.approx(np.mean(similarities))
    assert maq["discriminator_auc_iqm"] == pytest.approx(0.615)  # IQM of 0.60 … 0.63: the mean of 0.61 and 0.62
    assert rlpd["paired_dtw_similarity_iqm"] == pytest.approx(0.22)  # seed 1 not measured: the mean of 0.21, 0.22, 0.23
    assert np.isnan(sac["paired_dtw_similarity_iqm"]) and np.isnan(sac["ldlj_ratio_mean"])  # null in every run


def fake_run(task: str, method: str, seed: int, success: bool, score: float = 50.0, **summary) -> Run:
    """A run held in memory: two episodes of normalized score `score`, both successful or both not."""
    episodes = pl.DataFrame({"normalized_score": [score - 1, score + 1], "success": [success, success]})
    return Run(task, method, seed, episodes, summary, pl.DataFrame(), Path("unused"))


def test_iqm_across_tasks_pools_the_runs_of_every_task():
    assert iqm_interval(np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7, 8]), reps=50, confidence=0.95)[0] == pytest.approx(4.5)  # 3, 4, 5, 6
    runs = [fake_run(task, "sac", seed, True, score=base + seed) for task, base in (("door", 0.0), ("hammer", 10.0)) for seed in (1, 2, 3, 4)]
    row = aggregate(runs, report_config()).row(0, named=True)
    assert (row["n_tasks"], row["n_seeds"]) == (2, 4)
    assert row["normalized_score_iqm"] == pytest.approx(7.5)  # the middle half of 1 … 4, 11 … 14: mean of 3, 4, 11, 12
    assert row["normalized_score_ci_low"] < 7.5 < row["normalized_score_ci_high"]
    assert np.isnan(row["discriminator_auc_iqm"])  # no run measured it


def test_improvement_probability_is_one_when_every_maq_run_is_better_and_zero_the_other_way():
    """maq_rlpd fails where rlpd succeeds but is more human-like on every measure: a higher similarity, a lower
    AUC (lower is better), a jerk ratio lower and an LDLJ ratio higher than rlpd's, both closer to 1 (closer
    to 1 is better). maq_iql and iql swap those values, and so P(MAQ+X > X)."""
    better, worse = (0.8, 0.6, 0.8, 1.3), (0.2, 0.9, 1.5, 0.6)  # paired DTW similarity, AUC, jerk ratio, LDLJ ratio
    humanlike = ("paired_dtw_similarity", "discriminator_auc", "jerk_ratio", "ldlj_ratio")
    runs = [
        fake_run(task, method, seed, success, **{key: value + 0.01 * seed for key, value in zip(
            ("paired_dtw_state_similarity", "discriminator_auc", "action_jerk_ratio", "ldlj_ratio"), values)})
        for task in ("door", "hammer") for seed in (1, 2, 3)
        for method, success, values in (("rlpd", True, worse), ("maq_rlpd", False, better), ("iql", False, better), ("maq_iql", True, worse))
    ]
    runs.append(fake_run("door", "maq_dsac", 1, True))  # its baseline, sac, did not run: no row
    table = improvement(runs, report_config())
    scopes = ("across_tasks", "door", "hammer")
    assert table.select("method", "baseline", "scope").rows() == [(m, b, s) for m, b in (("maq_rlpd", "rlpd"), ("maq_iql", "iql")) for s in scopes]
    for row in table.iter_rows(named=True):
        p = 1.0 if row["method"] == "maq_rlpd" else 0.0
        for score in humanlike:
            assert (row[f"{score}_p"], row[f"{score}_ci_low"], row[f"{score}_ci_high"]) == pytest.approx((p, p, p)), (row["method"], score)
        assert row["success_rate_p"] == 1.0 - p and np.isnan(row["dtw_similarity_p"])  # not measured by either


def test_learning_curve_iqm_is_rliables_per_point_and_collapses_when_seeds_agree():
    from rliable import metrics

    values = np.array([[0.0, 1.0, 5.0], [0.0, 2.0, 5.0], [0.0, 3.0, 5.0], [0.0, 10.0, 5.0]])  # (seeds, points)
    iqm, low, high = iqm_curve(values, reps=50, confidence=0.95)
    assert iqm == pytest.approx([metrics.aggregate_iqm(values[:, j]) for j in range(3)]) and iqm[1] == pytest.approx(2.5)
    assert (low[0], high[0], low[2], high[2]) == (0.0, 0.0, 5.0, 5.0) and low[1] < 2.5 < high[1]


def test_a_missing_run_says_which_stage_to_run(tmp_path):
    write_evaluated_runs(tmp_path, episodes=1)
    shutil.rmtree(tmp_path / "evaluations/door/sac/seed3")
    with pytest.raises(FileNotFoundError, match=r"evaluations/door/sac/seed3.*dvc repro evaluate"):
        load_runs(Layout(tmp_path), (TASK,), METHODS, SEEDS)


def test_a_misplaced_summary_is_refused(tmp_path):
    write_evaluated_runs(tmp_path, episodes=1)
    summary_path = tmp_path / "evaluations/door/sac/seed1/summary.json"
    summary_path.write_text(json.dumps(json.loads(summary_path.read_text()) | {"seed": 2}))
    with pytest.raises(ValueError, match="describes task/method/seed"):
        load_runs(Layout(tmp_path), (TASK,), METHODS, SEEDS)


# -- outputs -------------------------------------------------------------------------------------
def test_official_csv_has_one_row_per_agent_and_the_official_columns(report):
    table = pl.read_csv(report.results / "agent_performance_AdroitHandDoor-v1.csv")
    assert table.height == len(METHODS) * len(SEEDS)
    identity = ["agent_type", "env_id", "model_path", "eval_episodes", "base_seed", "horizon", "default_horizon"]
    assert table.columns[:len(identity)] == identity
    assert set(table["agent_type"]) == set(METHODS) and set(table["base_seed"]) == set(SEEDS)
    assert set(table["env_id"]) == {"AdroitHandDoor-v1"} and set(table["horizon"]) == set(table["default_horizon"]) == {200}
    assert "models/agents/door/maq_rlpd/seed3" in table["model_path"].to_list()
    official = ["normalized_score_mean", "normalized_score_std", "raw_reward_mean", "raw_reward_std", "length_mean",
                "length_std", "success_rate", "early_termination_rate"]
    names = ["dtw_state_dtw_mean", "dtw_action_dtw_mean", "min_dtw_state_dtw_min", "min_dtw_action_dtw_min",
             "wasserstein_state_w2_dist", "wasserstein_action_w2_dist"]
    official += [f"{group}_{name}_{stat}" for name in names for group in ("success", "non_success") for stat in ("mean", "std", "max", "min")]
    official += [f"{name}_agg_{stat}" for name in names for stat in ("mean", "std")]
    assert set(table.columns[:len(identity) + len(official)]) == set(identity + official)  # the official columns first
    ours = {"w2_state_agg_mean", "success_w2_action_min", "dtw_state_mean_similarity", "paired_dtw_state_similarity", "ldlj_ratio"}
    assert ours <= set(table.columns)  # no official twin: our names, after the official ones
    assert not {"method", "seed", "episodes", "task", "code_counts", "dtw_state_mean_agg_mean", "w1_state_agg_mean"} & set(table.columns)


def _markdown_rows(section: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_task_csv_and_markdown_list_every_method(report):
    table = pl.read_csv(report.reports / f"{TASK}.csv")
    assert table["method"].to_list() == list(METHODS) and table["n_seeds"].to_list() == [4, 4, 4]
    readme = (report.reports / "README.md").read_text()
    across, task = readme.split("## Across tasks")[1].split(f"## {TASK} (")
    for section in (across, task):
        rows = _markdown_rows(section)
        assert [row[0] for row in rows] == ["method", *METHODS, "P(MAQ+X > X)", "maq_rlpd > rlpd"]
        assert rows[0][2:] == ["normalized score ↑", "success rate ↑", "DTW similarity ↑", "W similarity ↑", "paired DTW similarity ↑",
                               "discriminator AUC ↓", "jerk ratio →1", "LDLJ ratio →1"]
        assert rows[1][:2] == ["sac", "4"] and rows[1][2].startswith("25.0 [")
        assert rows[1][6:] == ["—"] * 4  # sac measured no paired, discriminator or smoothness score
        assert rows[-1][4:] == ["1.00 [1.00, 1.00]"] * 4  # maq_rlpd is more human-like than rlpd on each
    assert "4 seeds (1, 2, 3, 4)" in readme and "1,000 env steps" in readme
    assert readme.index("## Across tasks") < readme.index(f"## {TASK} (")


def test_summary_metrics_json_has_no_nan_and_the_headline_keys(report):
    text = (REPO_ROOT / "dvc.yaml").read_text()
    assert {"metrics/summary.json": {"cache": False}} in yaml.safe_load(text)["stages"]["report"]["metrics"]

    def refuse(constant):
        raise AssertionError(f"{constant} in metrics/summary.json")

    metrics = json.loads(report.summary.read_text(), parse_constant=refuse)
    assert set(metrics) == {"across_tasks", "per_task", "improvement"}
    assert set(metrics["across_tasks"]) == set(METHODS) and set(metrics["across_tasks"]["sac"]) == set(metrics["per_task"][TASK]["sac"])
    sac = metrics["across_tasks"]["sac"]["normalized_score"]
    assert set(sac) == {"iqm", "ci_low", "ci_high"} and sac["iqm"] == pytest.approx(25.0) and sac["ci_low"] <= 25.0 <= sac["ci_high"]
    assert metrics["per_task"][TASK]["sac"]["normalized_score"] == pytest.approx(25.0)
    assert metrics["per_task"][TASK]["sac"]["discriminator_auc"] is None  # not measured: null
    assert metrics["per_task"][TASK]["rlpd"]["paired_dtw_similarity"] == pytest.approx(0.22)
    pair = metrics["improvement"]["maq_rlpd_vs_rlpd"]
    assert pair["discriminator_auc"] == {"p": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert pair["ldlj_ratio"]["p"] == 1.0 and pair["dtw_similarity"]["p"] is not None


def test_curves_table_holds_every_runs_learning_curve(report):
    curves = pl.read_csv(report.reports / "curves" / f"{TASK}.csv")
    assert curves.columns == ["method", "seed", "env_steps", "eval_return", "eval_normalized_score", "eval_success_rate"]
    assert curves.select("method", "seed").unique(maintain_order=True).rows() == [(m, s) for m in METHODS for s in SEEDS]
    one_run = curves.filter((pl.col("method") == METHODS[0]) & (pl.col("seed") == SEEDS[0]))
    expected = pl.DataFrame(read_curve(report.curve(TASK, METHODS[0], SEEDS[0]), "env_steps"))
    assert one_run.drop("method", "seed").equals(expected.select(one_run.drop("method", "seed").columns))


def test_codebook_curves_table_holds_every_tasks_codebook_curve(report):
    curves = pl.read_csv(report.report_codebook_curves)
    assert curves.columns == ["task", "epoch", "recon_loss", "test_mse"]
    assert curves.rows() == [(TASK, 1, 1.0, 0.5), (TASK, 2, 0.5, 0.25)]


def test_pngs_are_pictures(report):
    from PIL import Image

    for name in ("score_vs_humanlike", "learning_curves", "code_usage"):
        path = report.reports / "plots" / f"{TASK}_{name}.png"
        assert path.stat().st_size > 0 and f"(plots/{path.name})" in (report.reports / "README.md").read_text()
        with Image.open(path) as image:
            width, height = image.size
            assert image.format == "PNG" and width > 200 and height > 200


def test_score_plot_is_deterministic(project, tmp_path):
    table = aggregate(load_runs(Layout(project), (TASK,), METHODS, SEEDS), report_config())
    for name in ("a.png", "b.png"):
        save_png(plot_score_vs_humanlike(table, TASK), tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_videos_of_the_first_seed_and_against_the_human(report):
    import imageio_ffmpeg

    readme = (report.reports / "README.md").read_text()
    for method in METHODS:
        for name, width in ((f"{TASK}_{method}_seed1.mp4", 64), (f"{TASK}_{method}_vs_human.mp4", 128)):
            reader = imageio_ffmpeg.read_frames(str(report.reports / "videos" / name))
            assert next(reader)["size"] == (width, 64)
            assert sum(1 for _ in reader) == 11  # one 10-step episode: reset + 10 frames
            assert f"(videos/{name})" in readme
    assert "next to human test episode" in readme


# -- the stage -----------------------------------------------------------------------------------
def test_stage_reads_only_the_declared_params(tmp_path, monkeypatch):
    write_evaluated_runs(tmp_path, episodes=1)
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw |= {"tasks": [TASK], "methods": {"baselines": ["sac"], "maq": ["maq_rlpd"]}, "seeds": list(SEEDS)}
    raw["report"] |= {"bootstrap_reps": 20, "videos": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    from stages import report as stage

    with record_param_reads() as reads:
        stage.main([])
    declared = ("tasks", "methods", "seeds", "report.bootstrap_reps", "report.confidence", "report.videos",
                "report.video_episodes", "report.video_size")
    uncovered = {read for read in reads if not any(read == key or read.startswith(f"{key}.") for key in declared)}
    assert reads and not uncovered  # a section key (`methods`) covers its fields (`methods.maq`)
    assert (tmp_path / "reports/README.md").is_file() and (tmp_path / "evaluation_results/agent_performance_AdroitHandDoor-v1.csv").is_file()


def test_pairwise_wins_is_rliables_probability_of_improvement():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for x, y in [(rng.normal(size=5), rng.normal(size=3)), (np.array([1.0, 2.0, 2.0]), np.array([2.0, 2.0])), (np.ones(2), np.ones(4))]:
        assert pairwise_wins(x, y) == pytest.approx(metrics.probability_of_improvement(x[:, None], y[:, None]))
