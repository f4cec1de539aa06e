"""Every stage's code dependencies in dvc.yaml cover the code it imports, so changing a module re-runs its stages.

dvc.yaml lists code deps by hand (a file or a directory per entry). This test derives the truth from the code: the
project modules a stage's entry point imports, transitively, at module level or inside functions (a lazy import
runs too), with every package `__init__` on the way. Each of those files must lie under one of the stage's deps.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from tests.test_dvc_pipeline import dvc, official_pkl
from tests.test_params import make_project

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("pipeline", "stages")


def module_file(module: str) -> Path | None:
    """The project file that defines `module` (a package's `__init__.py`), or None outside the project."""
    if module.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Modules `path` (module `module`) imports anywhere in its body, with each one's parent packages;
    `from package import name` counts `package.name` when that is a module."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}"))
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return with_parents


def code_closure(entry: str) -> set[Path]:
    """Every project file that running `python -m <entry>` can import."""
    seen: set[str] = set()
    todo = [entry, *(".".join(entry.split(".")[: i + 1]) for i in range(entry.count(".")))]
    files: set[Path] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        if path is None:
            continue
        files.add(path.relative_to(REPO_ROOT))
        todo.extend(imported_modules(path, module) - seen)
    return files


def stage_code_deps() -> dict[str, tuple[str, list[str]]]:
    """dvc.yaml's stages: name → (entry module, code deps: the entries under pipeline/ or stages/)."""
    stages = {}
    for name, stage in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        entry = re.match(r"python -m ([\w.]+)", body["cmd"]).group(1)
        stages[name] = (entry, [d for d in body["deps"] if d.split("/")[0] in PROJECT_PACKAGES])
    return stages


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


def test_every_stage_depends_on_the_code_it_imports():
    missing = {}
    for name, (entry, deps) in stage_code_deps().items():
        absent = [dep for dep in deps if not (REPO_ROOT / dep).exists()]
        assert not absent, f"stage {name} depends on {absent}, which do not exist"
        uncovered = sorted(str(path) for path in code_closure(entry) if not covered(path, deps))
        if uncovered:
            missing[name] = uncovered
    assert not missing, "dvc.yaml misses code deps (add them to the stage's deps):\n" + "\n".join(
        f"  {name}: {', '.join(paths)}" for name, paths in missing.items())


def test_the_import_walk_sees_lazy_and_from_imports():
    files = code_closure("stages.report")
    assert Path("pipeline/video.py") in files  # imported inside write_videos: `from pipeline import video`
    assert Path("pipeline/__init__.py") in files and Path("pipeline/tasks.py") in files


def test_changing_tasks_py_makes_dvc_status_report_prepare(tmp_path):
    project = make_project(tmp_path, {"door": "pkl:data/sources/door/demos.pkl"})
    official_pkl(project / "data/sources/door/demos.pkl", seed=0)
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    dvc(project, "repro", "prepare@door")
    assert "changed" not in dvc(project, "status", "prepare@door")
    tasks_py = project / "pipeline/tasks.py"
    tasks_py.write_text(tasks_py.read_text() + "\n# a reference score changed\n")
    status = dvc(project, "status", "prepare@door")
    assert "changed deps" in status and "pipeline/tasks.py" in status
