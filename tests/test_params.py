"""Typed params: strict loading, and dvc.yaml's `params:` lists cover what each stage reads."""

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import ParamsError, load_params, parse_params, record_param_reads
from pipeline.smoke import TINY_PARAMS
from tests.conftest import REPO_ROOT


def raw_params() -> dict:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_repo_params_load():
    params = load_params(REPO_ROOT / "params.yaml")
    assert set(params.tasks) <= {"door", "hammer", "pen", "relocate"} and params.tasks
    assert params.prepare.test_fraction == 0.1


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["prepare"].update(tset_fraction=0.2), "unknown params key 'prepare.tset_fraction'"),
        (lambda p: p["prepare"].pop("split_seed"), "missing params key 'prepare.split_seed'"),
        (lambda p: p.update(extra=1), "unknown params key 'extra'"),
        (lambda p: p["prepare"].update(split_seed="1"), "'prepare.split_seed' must be int"),
        (lambda p: p["prepare"].update(allow_download=1), "'prepare.allow_download' must be bool"),
        (lambda p: p.update(tasks="door"), "'tasks' must be a list"),
        (lambda p: p.update(tasks=["door", "drawer"]), "unknown task 'drawer'"),
        (lambda p: p.update(demos=[1]), "'demos' must be a mapping"),
        # values outside their documented range (issue 19's audit): the key, the value and the range
        (lambda p: p["codebook"].update(K=0), "'codebook.K' is 0, outside its valid range [2, inf)"),
        (lambda p: p["codebook"].update(K=-3), "'codebook.K' is -3, outside its valid range [2, inf)"),
        (lambda p: p["codebook"].update(batch_size=0), "'codebook.batch_size' is 0, outside its valid range [1, inf)"),
        (lambda p: p["finetune"].update(env_steps=-5), "'finetune.env_steps' is -5, outside its valid range [0, inf)"),
        (lambda p: p["prepare"].update(test_fraction=1.0), "'prepare.test_fraction' is 1.0, outside its valid range (0, 1)"),
        (lambda p: p["report"].update(confidence=0), "'report.confidence' is 0.0, outside its valid range (0, 1)"),
        (lambda p: p["codebook"].update(device="tpu"), "'codebook.device' is 'tpu'; valid values: auto, cpu, cuda"),
        (lambda p: p["evaluate"].update(dtw="fast"), "'evaluate.dtw' is 'fast'; valid values: exact, fastdtw"),
        (lambda p: p.update(seeds=[1, -2]), "'seeds' must list distinct seeds ≥ 0"),
        (lambda p: p.update(seeds=[]), "'seeds' must list distinct seeds ≥ 0"),
        (lambda p: p["sources"].update(door="http://x"), "'sources.door' is 'http://x'; use 'synthetic'"),
        (lambda p: p["codebook"].update(source="hub"), "'codebook.source' is 'hub'; use 'train'"),
        (lambda p: p["methods"].update(maq=["maq_sac"]), "'methods.maq' names 'maq_sac', which is not one of maq_rlpd"),
        (lambda p: p["agents"].update(rlpd={"utd": 0}), "agents.rlpd.utd is 0, outside its valid range [1, inf)"),
        (lambda p: p["agents"].update(rlpd={"utdd": 3}), r"agents.rlpd sets unknown config keys ['utdd']"),
        (lambda p: p["agents"].update(iql={"hidden": "big"}), "agents.iql.hidden is 'big', which is not a valid tuple"),
        (lambda p: p["agents"].update(sac={"gamma": 1.5}), "agents.sac.gamma is 1.5, outside its valid range [0, 1]"),
        (lambda p: p["codebook"].update(lr=float("nan")), "'codebook.lr' must be a finite number, got nan"),
        (lambda p: p["macro"].update(execute_steps=0), "'macro.execute_steps' is 0, outside its valid range [1, inf)"),
        (lambda p: p["macro"].update(execute_steps=10), "'macro.execute_steps' is 10, more than the 9 actions a code decodes to"),
    ],
)
def test_bad_params_name_the_key(edit, message):
    raw = raw_params()
    edit(raw)
    with pytest.raises(ParamsError) as error:
        parse_params(raw)
    assert message.replace(r"['utdd']", "['utdd']") in str(error.value)


def test_int_is_accepted_where_a_float_is_expected():
    raw = raw_params()
    raw["codebook"]["beta"] = 0  # YAML `0` for a float field
    assert parse_params(raw).codebook.beta == 0.0


def declared_params(stage: str, item: str | dict) -> set[str]:
    """The `params:` list of a dvc.yaml stage for one item (a foreach item, or a matrix item dict)."""
    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"][stage]
    spec = spec.get("do", spec)
    declared = set()
    for p in spec.get("params", []):
        if isinstance(item, dict):
            for key, value in item.items():
                p = p.replace(f"${{item.{key}}}", str(value))
        declared.add(p.replace("${item}", str(item)))
    return declared




def make_project(tmp_path: Path, sources: dict, tasks=("door",)) -> Path:
    """A copy of the project's pipeline definition in tmp_path, running `tasks` from `sources`."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.yaml", "stages", "pipeline", "data/sources"):
        src = REPO_ROOT / name
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    raw = raw_params()
    raw["sources"].update(sources)
    raw["tasks"] = list(tasks)
    for section, values in TINY_PARAMS.items():  # seconds, not minutes
        raw[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return project


# How each stage is run for the coverage test; every stage of dvc.yaml must be listed here.
def run_demos(task):
    from stages import demos

    demos.main(["--task", task])


def run_prepare(task):
    from stages import prepare

    prepare.main(["--task", task])


def run_codebook(task):
    from stages import codebook

    codebook.main(["--task", task])


def run_references(task):
    from stages import references

    references.main(["--task", task])


def run_finetune(item):
    from stages import finetune

    finetune.main(["--task", item["task"], "--method", item["method"]])


def run_evaluate(item):
    from stages import evaluate

    evaluate.main(["--task", item["task"], "--method", item["method"]])


def run_report(_item):
    from stages import report

    report.main([])


def run_publish(_item):
    from stages import publish

    publish.main([])


# stage -> (runner, the item it runs), in DAG order
STAGE_RUNNERS = {
    "demos": (run_demos, "door"),
    "prepare": (run_prepare, "door"),
    "codebook": (run_codebook, "door"),
    "references": (run_references, "door"),
    "finetune": (run_finetune, {"task": "door", "method": "rlpd"}),
    "finetune_maq": (run_finetune, {"task": "door", "method": "maq_iql"}),
    "evaluate": (run_evaluate, {"task": "door", "method": "rlpd"}),
    "evaluate_maq": (run_evaluate, {"task": "door", "method": "maq_iql"}),
    "report": (run_report, None),
    "publish": (run_publish, None),
}


def test_every_dvc_stage_has_a_coverage_runner():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGE_RUNNERS)


def test_stage_params_in_dvc_yaml_cover_what_the_code_reads(tmp_path, monkeypatch, door_minari_store):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(door_minari_store))
    project = make_project(tmp_path, {"door": "minari:test/door/random-v0"})
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["methods"] = {"baselines": ["rlpd"], "maq": ["maq_iql"]}
    raw["seeds"] = [1]
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(project)
    runtime_reads = set()
    for stage, (run, item) in STAGE_RUNNERS.items():
        with record_param_reads() as reads:
            run(item)
        assert reads, f"stage {stage} read no params"
        declared = declared_params(stage, item)
        assert not any(d == "runtime" or d.startswith("runtime.") for d in declared), f"stage {stage} declares a runtime knob"
        runtime_reads |= {r for r in reads if r.startswith("runtime.")}  # read, but do not change results: not stage params
        undeclared = {r for r in reads if not r.startswith("runtime.") and not any(r == d or r.startswith(d + ".") for d in declared)}
        assert not undeclared, f"dvc.yaml stage {stage} lacks params {sorted(undeclared)}"
    assert runtime_reads == {"runtime.codebook_checkpoint_every", "runtime.finetune_checkpoint_every"}
    assert (project / "data/prepared/door/meta.json").is_file()
    assert (project / "models/codebooks/door/model.safetensors").is_file()


def test_loading_params_imports_no_torch():
    """The method registry is torch-free: validating params (every stage's first step) imports no torch."""
    import subprocess
    import sys

    code = "import sys; from pipeline.config import load_params; load_params(); assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated_params(draw):
    """A valid params tree with 1–3 mutations: a key's value replaced, a key deleted, or a key added."""
    raw = raw_params()
    for _ in range(draw(st.integers(1, 3))):
        node, path = raw, []
        while isinstance(node, dict) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str)))
            if not isinstance(node[key], dict):
                break
            node, path = node[key], path + [key]
        if not isinstance(node, dict):
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not node:
            node[draw(st.text(max_size=6))] = draw(VALUES)
        else:
            key = draw(st.sampled_from(sorted(node, key=str)))
            if action == "delete":
                del node[key]
            else:
                node[key] = draw(VALUES)
    return raw


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_params())
def test_params_fuzz_loads_or_fails_with_a_params_error(raw):
    """Issue 19: any mutation of a valid params file either loads or fails with ParamsError."""
    try:
        parse_params(raw)
    except ParamsError as exc:
        assert str(exc)


def test_a_stage_given_bad_params_prints_one_line_and_no_traceback(tmp_path):
    """A user's mistake (here `codebook.K: 0`) ends the stage with `error: …` and status 2, no traceback."""
    import subprocess
    import sys

    project = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "stages", project / "stages")
    raw = raw_params()
    raw["codebook"]["K"] = 0
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "stages.codebook", "--task", "door"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: params key 'codebook.K' is 0, outside its valid range [2, inf)"
