"""Where every DVC output lives: one method per artifact, so no stage, report, CLI or test spells a path.

    layout = Layout()                        # relative to the repository root (what `dvc repro` runs in)
    layout.prepared("door")                  # data/prepared/door
    layout.agent("door", "maq_iql", 1)       # models/agents/door/maq_iql/seed1
    Layout(tmp_path).summary                 # the same layout under another root (tests, smoke runs)

dvc.yaml declares the same paths, with `${item}` for the task and method: `tests/test_artifacts.py` checks that
each stage's outs are the ones named here. Formats and readers stay with their owners (pipeline.data.prepare,
pipeline.codebook, pipeline.agents.artifact, pipeline.evaluation); cards are written by pipeline.artifacts.cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path = Path(".")

    def _at(self, *parts: str) -> Path:
        return Path(self.root, *parts)

    # -- data ------------------------------------------------------------------------------
    def demos(self, task: str) -> Path:
        """`demos`: the synthetic Minari dataset store of `task` (a note when the data comes from elsewhere)."""
        return self._at("data", "demos", task)

    def sources(self, task: str) -> Path:
        """Local source files of `task` (a `pkl:` file lives here): a dependency of `prepare`."""
        return self._at("data", "sources", task)

    def prepared(self, task: str) -> Path:
        """`prepare`: train/test splits, meta.json and the dataset card."""
        return self._at("data", "prepared", task)

    def references(self, task: str) -> Path:
        """`references`: the anchors of the similarity scores (a directory holding references.json)."""
        return self._at("data", "references", task)

    def references_file(self, task: str) -> Path:
        return self.references(task) / "references.json"

    # -- models ----------------------------------------------------------------------------
    def codebook(self, task: str) -> Path:
        """`codebook`: config.json, model.safetensors, README.md."""
        return self._at("models", "codebooks", task)

    def codebook_metrics(self, task: str) -> Path:
        return self._at("metrics", "codebook", f"{task}.json")

    def codebook_curve(self, task: str) -> Path:
        """`codebook`: the training curve, one row per epoch (a DVCLive log: pipeline.live)."""
        return self._at("plots", "codebook", task)

    def agents(self, task: str, method: str) -> Path:
        """`finetune`: one agent directory per seed below this one."""
        return self._at("models", "agents", task, method)

    def agent(self, task: str, method: str, seed: int) -> Path:
        return self.agents(task, method) / f"seed{seed}"

    def curves(self, task: str, method: str) -> Path:
        """`finetune`: one learning curve per seed below this directory."""
        return self._at("plots", "finetune", task, method)

    def curve(self, task: str, method: str, seed: int) -> Path:
        """A seed's learning curve, one row per evaluation point (a DVCLive log: pipeline.live)."""
        return self.curves(task, method) / f"seed{seed}"

    def finetune_metrics(self, task: str, method: str) -> Path:
        """`finetune`: one metrics JSON per seed below this directory."""
        return self._at("metrics", "finetune", task, method)

    # -- evaluation and report -------------------------------------------------------------
    def evaluations(self, task: str, method: str) -> Path:
        return self._at("evaluations", task, method)

    def evaluation(self, task: str, method: str, seed: int) -> Path:
        """`evaluate`: episodes.parquet, summary.json, trajectories.safetensors of one agent."""
        return self.evaluations(task, method) / f"seed{seed}"

    def evaluate_metrics(self, task: str, method: str, seed: int) -> Path:
        return self._at("metrics", "evaluate", task, method, f"seed{seed}.json")

    @property
    def reports(self) -> Path:
        """`report`: README.md, <task>.csv, curves/<task>.csv, codebook_curves.csv, plots/*.png, videos/*.mp4."""
        return self._at("reports")

    def report_table(self, task: str) -> Path:
        """`report`: one row per method of `task` (IQM and CI of every score)."""
        return self.reports / f"{task}.csv"

    def report_curves(self, task: str) -> Path:
        """`report`: every learning curve of `task` in one table (a DVC plot)."""
        return self.reports / "curves" / f"{task}.csv"

    @property
    def report_codebook_curves(self) -> Path:
        """`report`: every task's codebook training curve in one table (a DVC plot)."""
        return self.reports / "codebook_curves.csv"

    def video(self, task: str, method: str, seed: int) -> Path:
        """`report`: an agent's evaluation episodes (rendered for the first seed; publish ships it as replay.mp4)."""
        return self.reports / "videos" / f"{task}_{method}_seed{seed}.mp4"

    @property
    def results(self) -> Path:
        """`report`: the official per-agent tables, agent_performance_<env id>.csv."""
        return self._at("evaluation_results")

    @property
    def summary(self) -> Path:
        """`report`: the one metrics file experiments are compared on (`dvc exp show`)."""
        return self._at("metrics", "summary.json")

    @property
    def publish(self) -> Path:
        """`publish`: every artifact staged for the Hub, with its card."""
        return self._at("models", "publish")

    def checkpoints(self, stage: str, *parts: str) -> Path:
        """Resumable checkpoints of `stage`: outside the DVC outs, so `dvc repro` does not delete them."""
        return self._at(".checkpoints", stage, *parts)
