"""`dvc repro` runs the real stages on a Minari dataset the test creates."""

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import write_adroit_minari_dataset
from tests.test_params import make_project


def run_dvc(project, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}")
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True)


def dvc(project, *args):
    result = run_dvc(project, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def dvc_fails(project, *args) -> str:
    """A dvc command that must fail: its stdout and stderr together."""
    result = run_dvc(project, *args)
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_dvc_repro_prepare_on_a_minari_dataset(tmp_path, monkeypatch, door_minari_store):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(door_minari_store))
    project = make_project(tmp_path, {"door": "minari:test/door/random-v0"})
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    result = run_dvc(project, "repro", "prepare@door")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "prepare@door: 9 train / 1 test episodes, 300 steps from minari:test/door/random-v0" in out
    assert f"was read from {door_minari_store / 'test/door/random-v0'}, which DVC does not track" in result.stderr
    meta = json.loads((project / "data/prepared/door/meta.json").read_text())
    assert meta["source"] == "minari:test/door/random-v0" and meta["obs_dim"] == 39
    assert len(meta["train_episode_ids"]) == 9
    assert (project / "data/demos/door/SOURCE.md").is_file()  # demos@door noted the external source
    # nothing changed: the second repro runs nothing
    assert "didn't change, skipping" in dvc(project, "repro", "prepare@door")
    # a changed split seed re-runs prepare only
    params = (project / "params.yaml").read_text().replace("split_seed: 1", "split_seed: 2")
    (project / "params.yaml").write_text(params)
    out = dvc(project, "repro", "prepare@door")
    assert "Running stage 'prepare@door'" in out and "Running stage 'demos@door'" not in out


def test_a_minari_dataset_in_data_sources_is_a_dependency_of_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty-user-store"))
    project = make_project(tmp_path, {"door": "minari:test/door/random-v0"})
    write_adroit_minari_dataset(project / "data/sources/door", "test/door/random-v0", "door", n_episodes=10, steps=30)
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    result = run_dvc(project, "repro", "prepare@door")
    assert result.returncode == 0 and "9 train / 1 test episodes, 300 steps" in result.stdout, result.stdout + result.stderr
    assert "does not track" not in result.stderr
    assert "changed" not in dvc(project, "status", "prepare@door")
    shutil.rmtree(project / "data/sources/door/test")
    write_adroit_minari_dataset(project / "data/sources/door", "test/door/random-v0", "door", n_episodes=10, steps=20, seed=1)
    status = dvc(project, "status", "prepare@door")  # the same id, rewritten: DVC sees it
    assert "changed deps" in status and "data/sources/door" in status
    assert "9 train / 1 test episodes, 200 steps" in dvc(project, "repro", "prepare@door")


def test_an_unknown_task_stops_dvc_repro_with_the_known_tasks(tmp_path):
    project = make_project(tmp_path, {}, tasks=("door", "drawer"))
    dvc(project, "init", "--no-scm", "-q")
    out = dvc_fails(project, "repro", "demos@drawer")
    assert "unknown task 'drawer'; known: door, hammer, pen, relocate" in out
    assert "Traceback" not in out


def official_pkl(path, seed: int, n: int = 10, T: int = 12) -> None:
    """A door-sized demonstrations pickle in the official MAQ format (random numbers)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    trajectories = [{"observations": rng.normal(size=(T, 39)), "next_observations": rng.normal(size=(T, 39)),
                     "actions": rng.uniform(-1, 1, (T, 28)), "rewards": rng.normal(size=T),
                     "terminals": np.arange(T) == T - 1} for _ in range(n)]
    path.write_bytes(pickle.dumps(trajectories, protocol=2))


def test_replacing_the_pkl_file_makes_dvc_rerun_prepare(tmp_path):
    project = make_project(tmp_path, {"door": "pkl:data/sources/door/demos.pkl"})
    official_pkl(project / "data/sources/door/demos.pkl", seed=0)
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "config", "core.analytics", "false")
    assert "prepare@door: 9 train / 1 test episodes, 120 steps" in dvc(project, "repro", "prepare@door")
    assert "changed" not in dvc(project, "status", "prepare@door")
    official_pkl(project / "data/sources/door/demos.pkl", seed=1)  # other demonstrations, same name
    status = dvc(project, "status", "prepare@door")
    assert "changed deps" in status and "data/sources/door" in status
    out = dvc(project, "repro", "prepare@door")
    assert "Running stage 'prepare@door'" in out


def test_a_pkl_file_outside_data_sources_is_refused_with_where_to_put_it(tmp_path):
    project = make_project(tmp_path, {"door": "pkl:elsewhere/demos.pkl"})
    (project / "elsewhere").mkdir()
    official_pkl(project / "elsewhere/demos.pkl", seed=0)
    dvc(project, "init", "--no-scm", "-q")
    out = dvc_fails(project, "repro", "prepare@door")
    assert "outside data/sources/door/" in out and "sources.door: pkl:data/sources/door/demos.pkl" in out
    assert "Traceback" not in out
