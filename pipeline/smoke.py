"""A smoke run of the whole DAG on tiny params, in a throw-away clone (CI runs it beside the tests).

    python -m pipeline.smoke [--keep DIR]

Clones the repository's HEAD into a temp dir, shrinks params.yaml with `TINY_PARAMS` (same DAG,
same code paths, every stage in seconds), then checks the user journey end to end:
`dvc repro` produces the report with every method; a second `dvc repro` runs nothing; `dvc push`
to a local remote and `dvc pull` into a fresh clone restore the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from pipeline.artifacts.layout import Layout
from pipeline.sweep import SWEEP_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_COMPARE_COLUMNS = 40  # the README's `dvc exp show` must stay readable (issue 15)

# Params that make every stage run in seconds (also used by the tests).
TINY_PARAMS = {
    "demos": {"episodes": 6},
    "codebook": {"epochs": 2, "hidden": 32, "latent_dim": 16},
    "finetune": {"env_steps": 200, "offline_updates": 10, "eval_every": 200, "eval_episodes": 1},
    "agents": {m: {"hidden": [32, 32], "batch_size": 16, **({"warmup_steps": 5} if m in ("sac", "rlpd", "maq_rlpd", "maq_dsac") else {})}
               for m in ("sac", "rlpd", "iql", "maq_rlpd", "maq_iql", "maq_dsac")},
    "evaluate": {"episodes": 1, "reference_episodes": 1},
    "report": {"bootstrap_reps": 50, "videos": False},
    "runtime": {"codebook_checkpoint_every": 1, "finetune_checkpoint_every": 0},
}


def shrink_params(params_path: Path, extra: dict | None = None) -> None:
    """Overwrite params.yaml with TINY_PARAMS merged in (section by section)."""
    raw = yaml.safe_load(params_path.read_text())
    for section, values in {**TINY_PARAMS, **(extra or {})}.items():
        if isinstance(raw.get(section), dict) and isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))


def run(cmd: list[str], cwd: Path) -> str:
    print(f"$ {' '.join(cmd)}   (in {cwd})", flush=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"smoke run failed: {' '.join(cmd)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


def readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with `prefix`, split as a shell would."""
    lines = [line.strip() for line in (REPO_ROOT / "README.md").read_text().splitlines() if line.strip().startswith(prefix)]
    if not lines:
        raise SystemExit(f"smoke run failed: the README has no command starting with {prefix!r}")
    return shlex.split(lines[0])


def check_compare_command(project: Path) -> None:
    """The README's `dvc exp show` comparison, on the sweep's two experiments (H=3, H=5): it runs, sorts, fits in
    MAX_COMPARE_COLUMNS columns, and the experiments' summary metrics (metrics/summary.json) differ in it."""
    command = readme_command("dvc exp show --drop")
    table = run([sys.executable, "-m", *command, "--md"], project)
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.splitlines() if line.startswith("|")]
    header, body = rows[0], [row for row in rows[2:] if row]
    summary = [i for i, name in enumerate(header) if name.startswith("across_tasks.")]
    experiments = [row for row in body if any(name in row[0] for name in ("H3", "H5"))]
    if len(header) > MAX_COMPARE_COLUMNS or not summary or len(experiments) != 2:
        raise SystemExit(f"smoke run failed: the README's `dvc exp show` should show the 2 experiments in <= "
                         f"{MAX_COMPARE_COLUMNS} columns with summary metrics, got {len(header)} columns:\n{table}")
    if all(experiments[0][i] == experiments[1][i] for i in summary):
        raise SystemExit(f"smoke run failed: the H=3 and H=5 experiments show the same summary metrics:\n{table}")
    print(f"README's dvc exp show: {len(header)} columns, {len(summary)} summary metrics, sorted, experiments differ")


def check_plots(project: Path, tasks: list[str]) -> None:
    """`dvc plots show`: the report's PNGs as images, each task's learning curves as one plot drawn by the
    `learning_curves` template (a line per method × seed), and the codebooks' curves as one plot; nothing else."""
    shown = json.loads(run([sys.executable, "-m", "dvc", "plots", "show", "--json"], project))["data"]
    layout = Layout()
    images = {name for name, plots in shown.items() if plots[0]["type"] == "image"}
    curves = {layout.report_curves(t).as_posix() for t in tasks}
    expected = curves | {layout.report_codebook_curves.as_posix()}
    if not images or any(not name.startswith(layout.reports.as_posix() + "/plots/") for name in images) or set(shown) - images != expected:
        raise SystemExit(f"smoke run failed: `dvc plots show` should give the report's PNGs, {sorted(expected)}; got {sorted(shown)}")
    colour = {name: ("method", "learning_curves") for name in curves} | {layout.report_codebook_curves.as_posix(): ("task", "codebook_curves")}
    for name, (field, template) in colour.items():  # each template colours its lines by its own field
        encoding = shown[name][0]["content"]["encoding"]
        if encoding.get("color", {}).get("field") != field:
            raise SystemExit(f"smoke run failed: {name} is not drawn by the {template} template: {encoding}")
    print(f"dvc plots show: {len(images)} images, {len(curves)} learning-curve plots, 1 plot of {len(tasks)} codebook curves")


def check_plots_diff(project: Path, experiments: list[str], out: Path) -> None:
    """`dvc plots diff` of two experiments writes both experiments' report images into its (offline) HTML."""
    run([sys.executable, "-m", "dvc", "plots", "diff", *experiments, "-o", str(out)], project)
    for experiment in experiments:
        if not list((out / "static").glob(f"{experiment}_*.png")):
            raise SystemExit(f"smoke run failed: `dvc plots diff {' '.join(experiments)}` has no image of {experiment}")
    print(f"dvc plots diff {' '.join(experiments)}: the report's images of both, offline")


def smoke(workdir: Path) -> None:
    project, storage, other = workdir / "project", workdir / "dvc-storage", workdir / "second-clone"
    run(["git", "clone", "-q", str(REPO_ROOT), str(project)], workdir)
    shrink_params(project / "params.yaml")
    run([sys.executable, "-m", "dvc", "remote", "modify", "--local", "local", "url", str(storage)], project)
    start = time.perf_counter()
    out = run([sys.executable, "-m", "dvc", "repro"], project)
    print(f"dvc repro (tiny params): {time.perf_counter() - start:.0f} s")
    report = (Layout(project).reports / "README.md").read_text()
    params = yaml.safe_load((project / "params.yaml").read_text())
    methods = params["methods"]["baselines"] + params["methods"]["maq"]
    missing = [m for m in methods if f"| {m} |" not in report]
    if missing:
        raise SystemExit(f"smoke run failed: the report lacks methods {missing}\n{report}")
    start = time.perf_counter()
    out = run([sys.executable, "-m", "dvc", "repro"], project)
    if "Running stage" in out:
        raise SystemExit(f"smoke run failed: a second `dvc repro` re-ran stages:\n{out}")
    print(f"second dvc repro: no-op in {time.perf_counter() - start:.1f} s")
    check_plots(project, params["tasks"])
    run([sys.executable, "-m", "dvc", "push"], project)
    outputs = {project: {"models", "evaluations", "reports", "evaluation_results", "data"}, project / ".dvc": {"cache", "tmp"}}
    shutil.copytree(project, other, ignore=lambda d, names: [n for n in names if n in outputs.get(Path(d), ())])
    run([sys.executable, "-m", "dvc", "pull"], other)
    restored = (Layout(other).reports / "README.md").read_text()
    if restored != report:
        raise SystemExit("smoke run failed: `dvc pull` into a second checkout did not restore the report")
    # experiments: two macro lengths through the sweep queue, collected into one table
    maq = [sys.executable, "-m", "pipeline.cli"]
    run([*maq, "sweep", "queue", "--tasks", "door", "--methods", "maq_iql", "--H", "3", "5", "--K", "8", "--seeds", "1", "--name", "smoke"], project)
    start = time.perf_counter()
    run([*maq, "sweep", "run", "--jobs", "1"], project)
    run([*maq, "sweep", "collect", "--name", "smoke"], project)
    table = (project / SWEEP_DIR / "smoke.csv").read_text().strip().splitlines()
    if len(table) != 3 or table[1].split(",")[4:] == table[2].split(",")[4:]:
        raise SystemExit(f"smoke run failed: the H=3 and H=5 experiments should give two rows with different metrics:\n{table}")
    print(f"sweep of 2 experiments (H=3, H=5) queued, run and collected in {time.perf_counter() - start:.0f} s")
    check_compare_command(project)
    check_plots_diff(project, ["smoke-door-maq_iql-H3-K8-s1", "smoke-door-maq_iql-H5-K8-s1"], workdir / "plots-diff")
    print(f"smoke run passed: {len(methods)} methods in the report, no-op second repro, dvc push/pull round trip, sweep, "
          "README's experiment comparison")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        smoke(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="maq-smoke-") as tmp:
            smoke(Path(tmp))


if __name__ == "__main__":
    main()
