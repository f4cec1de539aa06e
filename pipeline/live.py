"""Learning curves logged with DVCLive while a stage trains: one directory per run.

    <dir>/metrics.json               the latest point (DVCLive's summary, with its `step`)
    <dir>/plots/metrics/<name>.tsv   one file per measure, columns `step` and the measure

A point is written as soon as it is measured, so the curve of a long or queued run can be watched
while it trains: `dvc plots show -x step <dir>/plots/metrics` in the run's workspace (a queued
experiment's workspace is under .dvc/tmp/exps/; `-x step` because DVC's own index column is also
named `step`), or any viewer of DVCLive files (the VS Code extension, Studio).
`step` is the row's x column: `epoch` for a codebook, `env_steps` for an agent.

Same bytes, interrupted or not: no timestamps are logged, and a run resumed from its checkpoint
opens a fresh log (DVCLive empties the directory) and re-logs the checkpointed points before new
ones, so a run killed at any moment (kill -9 included) and resumed leaves the files an
uninterrupted run leaves.

DVCLive is used for its files only: no experiment of its own (`save_dvc_exp=False`: dvc.yaml
declares these directories as stage outputs), no dvc.yaml, no report. Outside a DVC pipeline run
(`DVC_ROOT` unset, e.g. `run_finetune` called from a notebook) its repository side is skipped too,
because DVCLive 3.49 would otherwise run `dvc init` in any Git repository that is not a DVC one.
`read_curve` reads a directory back as rows (the report's learning curves).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from dvclive import Live

METRICS_DIR = Path("plots") / "metrics"  # DVCLive's place for logged scalars under a log directory


class _FilesOnly(Live):
    """DVCLive that ties into DVC (experiment name, Studio's live view) only when a DVC pipeline runs it."""

    def _init_dvc(self) -> None:
        if os.environ.get("DVC_ROOT"):
            super()._init_dvc()


class CurveLog:
    """A learning curve logged point by point under `directory`, `step` naming the x column of each row.
    `rows` are points already measured (from a checkpoint): they are logged again first."""

    def __init__(self, directory: str | Path, step: str, rows: Iterable[dict] = ()):
        self.step = step
        self.live = _FilesOnly(str(directory), resume=False, report=None, save_dvc_exp=False, dvcyaml=None, monitor_system=False)
        for row in rows:
            self.log(row)

    def log(self, row: dict) -> None:
        """Log one point: every key of `row` but `step` is a measure."""
        self.live.step = int(row[self.step])
        for name, value in row.items():
            if name != self.step:
                self.live.log_metric(name, value)
        self.live.next_step()  # writes metrics.json (and Studio's live update, where configured)

    def close(self) -> None:
        self.live.end()


def read_curve(directory: str | Path, step: str) -> list[dict]:
    """The rows a CurveLog wrote under `directory` (x column named `step`), in step order, each measure a float."""
    directory = Path(directory)
    files = sorted((directory / METRICS_DIR).glob("*.tsv"))
    if not files:
        raise FileNotFoundError(f"{directory} holds no learning curve ({METRICS_DIR}/*.tsv)")
    rows: dict[int, dict] = {}
    for file in files:
        with open(file, newline="") as f:
            for record in csv.DictReader(f, delimiter="\t"):
                rows.setdefault(int(record["step"]), {step: int(record["step"])})[file.stem] = float(record[file.stem])
    return [rows[s] for s in sorted(rows)]

