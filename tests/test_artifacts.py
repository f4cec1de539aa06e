"""dvc.yaml declares each stage's outputs where pipeline.artifacts.layout says they are."""

from pathlib import Path

import yaml

from pipeline.artifacts.layout import Layout

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK, METHOD, SEED = "door", "maq_iql", 1


def declared(stage: dict, kind: str) -> set[Path]:
    """The paths a stage declares under `kind` (outs, metrics, plots), for TASK × METHOD."""
    body = stage.get("do", stage)
    paths = set()
    for entry in body.get(kind, []):
        path = entry if isinstance(entry, str) else next(iter(entry))
        for var, value in (("${item.task}", TASK), ("${item.method}", METHOD), ("${item}", TASK)):
            path = path.replace(var, value)
        paths.add(Path(path))
    return paths


def test_stage_outputs_are_the_layouts():
    layout = Layout()
    expected = {
        "demos": {"outs": {layout.demos(TASK)}},
        "prepare": {"outs": {layout.prepared(TASK)}},
        "codebook": {"outs": {layout.codebook(TASK), layout.codebook_curve(TASK)}, "metrics": {layout.codebook_metrics(TASK)}},
        "references": {"outs": {layout.references(TASK)}},
        "finetune": {"outs": {layout.agents(TASK, METHOD), layout.curves(TASK, METHOD)}, "metrics": {layout.finetune_metrics(TASK, METHOD)}},
        "evaluate": {"outs": {layout.evaluations(TASK, METHOD)}, "metrics": {layout.evaluate_metrics(TASK, METHOD, SEED).parent}},
        "report": {"outs": {layout.reports, layout.results}, "metrics": {layout.summary}},
        "publish": {"outs": {layout.publish}},
    }
    expected["finetune_maq"], expected["evaluate_maq"] = expected["finetune"], expected["evaluate"]
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(expected)
    for name, stage in stages.items():
        for kind in ("outs", "metrics", "plots"):
            assert declared(stage, kind) == expected[name].get(kind, set()), f"stage {name} {kind}"


def test_per_seed_paths_sit_inside_their_stage_outputs():
    layout = Layout(Path("/tmp/project"))
    assert layout.agent(TASK, METHOD, SEED).parent == layout.agents(TASK, METHOD)
    assert layout.curve(TASK, METHOD, SEED) == Path("/tmp/project/plots/finetune/door/maq_iql/seed1")
    assert layout.evaluation(TASK, METHOD, SEED).parent == layout.evaluations(TASK, METHOD)
    assert layout.references_file(TASK).parent == layout.references(TASK)
    assert layout.summary == Path("/tmp/project/metrics/summary.json")
