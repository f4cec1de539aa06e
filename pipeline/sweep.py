"""Grid sweeps as DVC experiments: queue a grid, run it, collect one report.

    maq sweep queue --tasks door relocate --methods maq_iql --H 1 2 3 4 5 6 7 8 9 --K 16 --seeds 1 10 100
    maq sweep run --jobs 2          # = dvc queue start -j 2, then waits for the queue to drain
    maq sweep collect               # -> sweeps/<name>.csv and sweeps/<name>.md
    maq sweep run --engine ray --name <name> [--address HOST:PORT]   # across machines (pipeline.sweep_ray)

Each grid point (task × method × H × K × seed) is one experiment (baselines, which do not use
the codebook, get one point per task × seed), `dvc exp run --queue` with
`-S` overrides of tasks, methods, seeds and codebook.H/K, so DVC's run cache shares the stages
that do not depend on a point's values (demos, prepare, references) across experiments. The
paper's H ablation is 9 H × 4 tasks × 3 seeds = 108 points per method. `collect` reads
`dvc exp show --json` and aggregates seeds per (task, method, H, K) with IQM and a stratified
bootstrap CI (pipeline.report).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts.layout import Layout
from pipeline.io import write_text_atomic
from pipeline.methods import METHODS, dag_methods
from pipeline.tasks import get_task

SWEEP_DIR = Path("sweeps")
SCORES = ("normalized_score_mean", "success_rate", "dtw_state_mean_similarity", "w1_state_similarity")


@dataclass(frozen=True)
class Point:
    task: str
    method: str
    H: int
    K: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.method}-H{self.H}-K{self.K}-s{self.seed}"

    def overrides(self) -> list[str]:
        """`dvc exp run -S` arguments that make the DAG run exactly this point."""
        maq = METHODS[self.method].macro
        return [
            f"tasks=[{self.task}]",
            f"methods.baselines=[{'' if maq else self.method}]",
            f"methods.maq=[{self.method if maq else ''}]",
            f"seeds=[{self.seed}]",
            f"codebook.H={self.H}",
            f"codebook.K={self.K}",
        ]


def grid(tasks, methods, Hs, Ks, seeds) -> list[Point]:
    for task in tasks:
        get_task(task)
    for method in methods:
        if method not in dag_methods():
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(dag_methods())}")
    points = []
    for task, method, H, K, seed in itertools.product(tasks, methods, Hs, Ks, seeds):
        if not METHODS[method].macro and (H, K) != (Hs[0], Ks[0]):
            continue  # a baseline does not use the codebook: one point per task × seed is enough
        points.append(Point(task, method, H, K, seed))
    return points


def dvc(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`dvc {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def queue(points: list[Point], prefix: str, dry_run: bool = False) -> list[list[str]]:
    """Queue one experiment per point (named `<prefix>-<point>`); returns the dvc commands."""
    commands = []
    for point in points:
        args = ["exp", "run", "--queue", "--name", f"{prefix}-{point.name}"]
        for override in point.overrides():
            args += ["-S", override]
        commands.append(["dvc", *args])
        if not dry_run:
            dvc(*args)
    return commands


def points_path(prefix: str, directory: Path = SWEEP_DIR) -> Path:
    return directory / f"{prefix}.points.json"


def git_head(clean: bool) -> str:
    """HEAD's commit; with `clean`, refuses a working tree whose tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        raise RuntimeError(f"not in a Git repository with a commit: {head.stderr.strip()}")
    if clean:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
        if dirty.strip():
            raise RuntimeError(f"uncommitted changes ({', '.join(line[3:] for line in dirty.splitlines())}): workers clone "
                               "the sweep's commit from the Git remote; commit and push them first")
    return head.stdout.strip()


def record_sweep(points: list[Point], prefix: str, base: str, directory: Path = SWEEP_DIR) -> Path:
    """Write sweeps/<prefix>.points.json: the points and the base commit, for `maq sweep run --engine ray`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = points_path(prefix, directory)
    write_text_atomic(path, json.dumps({"name": prefix, "base": base, "points": [vars(p) for p in points]}, indent=1) + "\n")
    return path


def load_sweep(prefix: str, directory: Path = SWEEP_DIR) -> dict:
    """{name, base, points: [Point]} of a recorded sweep."""
    path = points_path(prefix, directory)
    if not path.is_file():
        raise RuntimeError(f"no recorded sweep {prefix!r} ({path} is missing); record it with "
                           f"`maq sweep queue --engine ray --name {prefix} --tasks … --methods … --H … --K … --seeds …`")
    raw = json.loads(path.read_text())
    return {"name": raw["name"], "base": raw["base"], "points": [Point(**p) for p in raw["points"]]}


def run_queue(jobs: int) -> None:
    """Start `jobs` workers and wait until the queue is drained (`dvc queue start`, then `dvc queue status`)."""
    import time

    dvc("queue", "start", "-j", str(jobs))
    while True:
        status = dvc("queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            return
        time.sleep(10)


def experiment_rows(exp_show: list[dict], prefix: str) -> list[dict]:
    """One row per finished experiment named `<prefix>-…`: its point and evaluation scores
    (from `dvc exp show --json`)."""
    rows = []
    for commit in exp_show:
        for exp in commit.get("experiments") or []:
            for revision in exp.get("revs", []):
                name = revision.get("name") or ""
                data = revision.get("data") or {}
                if not name.startswith(prefix + "-") or data.get("status", "Success") != "Success":
                    continue
                params = data["params"]["params.yaml"]["data"]
                method = (params["methods"]["baselines"] or params["methods"]["maq"])[0]
                task, seed = params["tasks"][0], params["seeds"][0]
                metrics_file = Layout().evaluate_metrics(task, method, seed).as_posix()
                metrics = (data.get("metrics") or {}).get(metrics_file, {}).get("data")
                if metrics is None:
                    continue
                rows.append({"experiment": name, "task": task, "method": method, "H": params["codebook"]["H"],
                             "K": params["codebook"]["K"], "seed": seed, **{s: metrics[s] for s in SCORES}})
    return rows


def aggregate(rows: list[dict], reps: int = 2000, confidence: float = 0.95) -> list[dict]:
    """IQM and CI over seeds per (task, method, H, K)."""
    from pipeline.report import iqm_interval

    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"], row["H"], row["K"]), []).append(row)
    out = []
    for (task, method, H, K), group in sorted(groups.items()):
        entry = {"task": task, "method": method, "H": H, "K": K, "n_seeds": len(group)}
        for score in SCORES:
            iqm, low, high = iqm_interval(np.array([r[score] for r in group], dtype=np.float64), reps=reps, confidence=confidence)
            entry |= {f"{score}_iqm": iqm, f"{score}_ci_low": low, f"{score}_ci_high": high}
        out.append(entry)
    return out


def write_report(table: list[dict], prefix: str, directory: Path = SWEEP_DIR) -> tuple[Path, Path]:
    import polars as pl

    from pipeline.io import atomic_path

    directory.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = directory / f"{prefix}.csv", directory / f"{prefix}.md"
    with atomic_path(csv_path) as tmp:
        pl.DataFrame(table).write_csv(tmp)
    lines = [f"# Sweep `{prefix}`", "", "IQM over seeds [95% stratified bootstrap CI].", "",
             "| task | method | H | K | seeds | normalized score | success | DTW similarity | W1 similarity |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        cells = [f"{r[f'{s}_iqm']:.2f} [{r[f'{s}_ci_low']:.2f}, {r[f'{s}_ci_high']:.2f}]" for s in SCORES]
        lines.append(f"| {r['task']} | {r['method']} | {r['H']} | {r['K']} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return csv_path, md_path


def collect(prefix: str, rev: str | None = None) -> tuple[Path, Path]:
    """The table of experiments `<prefix>-…` of HEAD (or of commit `rev`)."""
    rows = experiment_rows(json.loads(dvc("exp", "show", "--json", *(["--rev", rev] if rev else []))), prefix)
    if not rows:
        raise RuntimeError(f"no finished experiments named {prefix}-…; queue them (`maq sweep queue`) and run them (`maq sweep run`)")
    return write_report(aggregate(rows), prefix)
