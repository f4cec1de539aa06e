"""Learning curves as DVCLive logs (pipeline/live.py): read back as logged, the same bytes when a resumed run
re-logs its checkpointed points, and no DVC repository side effects outside a pipeline run."""

import os
import subprocess
import sys
from pathlib import Path

from pipeline.live import METRICS_DIR, CurveLog, read_curve

ROWS = [{"env_steps": 0, "eval_return": -1.5, "eval_success_rate": 0.0},
        {"env_steps": 200, "eval_return": 0.25, "eval_success_rate": 0.1},
        {"env_steps": 400, "eval_return": 2.0, "eval_success_rate": 1 / 3}]


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` by its relative path."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def log(directory: Path, rows: list[dict], resumed_from: list[dict] = ()) -> None:
    curve = CurveLog(directory, "env_steps", resumed_from)
    for row in rows:
        curve.log(row)
    curve.close()


def test_a_curve_reads_back_as_logged_one_file_per_measure(tmp_path):
    log(tmp_path / "c", ROWS)
    assert read_curve(tmp_path / "c", "env_steps") == ROWS
    assert sorted(p.name for p in (tmp_path / "c" / METRICS_DIR).iterdir()) == ["eval_return.tsv", "eval_success_rate.tsv"]
    assert (tmp_path / "c" / METRICS_DIR / "eval_return.tsv").read_text() == "step\teval_return\n0\t-1.5\n200\t0.25\n400\t2.0\n"


def test_a_resumed_log_relogs_the_checkpointed_points_to_the_same_bytes(tmp_path):
    log(tmp_path / "straight", ROWS)
    log(tmp_path / "resumed", ROWS[:2] + [{"env_steps": 300, "eval_return": 9.0, "eval_success_rate": 1.0}])  # killed after
    log(tmp_path / "resumed", ROWS[2:], resumed_from=ROWS[:2])  # a point past the checkpoint: restarted from the checkpoint
    assert tree_bytes(tmp_path / "resumed") == tree_bytes(tmp_path / "straight")


def test_outside_a_pipeline_run_dvclive_leaves_a_git_repository_alone(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    code = "from pipeline.live import CurveLog; c = CurveLog('curve', 'epoch'); c.log({'epoch': 1, 'loss': 0.5}); c.close()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, "PYTHONPATH": os.pathsep.join(sys.path)}, check=True)
    assert not (tmp_path / ".dvc").exists() and read_curve(tmp_path / "curve", "epoch") == [{"epoch": 1, "loss": 0.5}]
