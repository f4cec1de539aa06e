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

from pipeline.config import ReportConfig, record_param_reads
from pipeline.evaluation import DISTANCES, similarity_scores, summarize
from pipeline.report import ReportPaths, aggregate, iqm_interval, load_runs, make_report, plot_score_vs_humanlike, save_png
from tests.conftest import REPO_ROOT
from tests.test_video import random_episodes

TASK = "door"
METHODS = ("sac", "maq_rlpd")
SEEDS = (1, 2, 3, 4)
# Each run's mean normalized score, by method and seed, for the hand checks.
NORMALIZED_SCORE = {"sac": (10.0, 20.0, 30.0, 100.0), "maq_rlpd": (50.0, 50.0, 50.0, 50.0)}
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
    prepared = root / "data/prepared" / TASK
    prepared.mkdir(parents=True)
    human.save(prepared / "train.safetensors")
    human.save(prepared / "test.safetensors")
    (prepared / "meta.json").write_text(json.dumps({"task": TASK, "source": "synthetic"}))
    references = root / "data/references" / TASK / "references.json"
    references.parent.mkdir(parents=True)
    references.write_text(json.dumps({"dtw": "exact", "random_episodes": 2, "distances": REFERENCES}))  # run_references' format

    for method in METHODS:
        for i, seed in enumerate(SEEDS):
            run_dir = root / "evaluations" / TASK / method / f"seed{seed}"
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
            code_counts = rng.integers(0, 20, K).tolist() if method.startswith("maq_") else None
            summary |= {"code_counts": code_counts, "task": TASK, "method": method, "seed": seed}
            (run_dir / "summary.json").write_text(json.dumps(summary))

            curve = root / "plots/finetune" / TASK / method / f"seed{seed}.csv"
            curve.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame(
                {
                    "env_steps": [0, 500, 1000],
                    "eval_return": rng.normal(100, 10, 3),
                    "eval_normalized_score": np.array([0.0, score / 2, score]),
                    "eval_success_rate": rng.uniform(0, 1, 3),
                }
            ).write_csv(curve)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    write_evaluated_runs(root)
    return root


@pytest.fixture(scope="module")
def report(project) -> ReportPaths:
    """The report of `project`, videos included, written once for the tests that read it."""
    paths = ReportPaths.under(project)
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
    runs = load_runs(ReportPaths.under(project), (TASK,), METHODS, SEEDS)
    table = aggregate(runs, report_config())
    sac, maq = (table.filter(pl.col("method") == m).row(0, named=True) for m in METHODS)
    assert sac["n_seeds"] == 4 and sac["normalized_score_iqm"] == pytest.approx(25.0)  # IQM of 10, 20, 30, 100
    assert sac["normalized_score_mean"] == pytest.approx(40.0)
    assert sac["success_rate_iqm"] == pytest.approx(0.5)  # one success in two episodes, every seed
    assert (maq["normalized_score_iqm"], maq["normalized_score_ci_low"], maq["normalized_score_ci_high"]) == pytest.approx((50, 50, 50))
    similarities = [json.loads((project / f"evaluations/door/maq_rlpd/seed{s}/summary.json").read_text())["dtw_state_mean_similarity"] for s in SEEDS]
    assert maq["dtw_similarity_mean"] == pytest.approx(np.mean(similarities))


def test_a_missing_run_says_which_stage_to_run(tmp_path):
    write_evaluated_runs(tmp_path, episodes=1)
    shutil.rmtree(tmp_path / "evaluations/door/sac/seed3")
    with pytest.raises(FileNotFoundError, match=r"evaluations/door/sac/seed3.*dvc repro evaluate"):
        load_runs(ReportPaths.under(tmp_path), (TASK,), METHODS, SEEDS)


def test_a_misplaced_summary_is_refused(tmp_path):
    write_evaluated_runs(tmp_path, episodes=1)
    summary_path = tmp_path / "evaluations/door/sac/seed1/summary.json"
    summary_path.write_text(json.dumps(json.loads(summary_path.read_text()) | {"seed": 2}))
    with pytest.raises(ValueError, match="describes task/method/seed"):
        load_runs(ReportPaths.under(tmp_path), (TASK,), METHODS, SEEDS)


# -- outputs -------------------------------------------------------------------------------------
def test_official_csv_has_one_row_per_agent_and_the_official_columns(report):
    table = pl.read_csv(report.results / "agent_performance_AdroitHandDoor-v1.csv")
    assert table.height == len(METHODS) * len(SEEDS)
    assert set(table["method"]) == set(METHODS) and set(table["seed"]) == set(SEEDS)
    official = ["normalized_score_mean", "normalized_score_std", "raw_reward_mean", "raw_reward_std", "length_mean",
                "length_std", "success_rate", "early_termination_rate"]
    official += [f"{group}_{name}_{stat}" for name in DISTANCES for group in ("success", "non_success") for stat in ("mean", "std", "max", "min")]
    official += [f"{name}_agg_{stat}" for name in DISTANCES for stat in ("mean", "std")]
    assert not set(official) - set(table.columns)
    assert "code_counts" not in table.columns and "dtw_state_mean_similarity" in table.columns


def test_task_csv_and_markdown_list_every_method(report):
    table = pl.read_csv(report.reports / f"{TASK}.csv")
    assert table["method"].to_list() == list(METHODS) and table["n_seeds"].to_list() == [4, 4]
    readme = (report.reports / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| ") and "method" not in line]
    assert [row.split("|")[1].strip() for row in rows] == list(METHODS)
    assert "| sac | 4 | 25.0 [" in readme
    assert "4 seeds (1, 2, 3, 4)" in readme and "1,000 env steps" in readme


def test_pngs_are_pictures(report):
    from PIL import Image

    for name in ("score_vs_humanlike", "learning_curves", "code_usage"):
        path = report.reports / "plots" / f"{TASK}_{name}.png"
        assert path.stat().st_size > 0 and f"(plots/{path.name})" in (report.reports / "README.md").read_text()
        with Image.open(path) as image:
            width, height = image.size
            assert image.format == "PNG" and width > 200 and height > 200


def test_score_plot_is_deterministic(project, tmp_path):
    table = aggregate(load_runs(ReportPaths.under(project), (TASK,), METHODS, SEEDS), report_config())
    for name in ("a.png", "b.png"):
        save_png(plot_score_vs_humanlike(table.drop("task"), TASK), tmp_path / name)
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
