"""`maq sweep run --engine ray` on a real two-node Ray cluster on loopback (1 CPU each), a bare Git remote and a
local DVC remote, on tiny params: a worker killed mid-point is retried, the table equals the local engine's, and
nothing is re-trained when the points are already on the remotes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml
import ray  # noqa: F401  CI installs the extra: a missing ray fails here, it is not skipped

from pipeline.smoke import shrink_params

REPO_ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["--tasks", "door", "--methods", "maq_iql", "--H", "3", "5", "--K", "8", "--seeds", "1"]
ENV = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
           HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")


def sh(cwd: Path, *cmd: str) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def maq(cwd: Path, *args: str) -> str:
    return sh(cwd, sys.executable, "-m", "pipeline.cli", *args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node joined to it, each `ray start --block` in a private temp dir; torn down by
    stopping exactly the processes these two commands started (never `ray stop`, which stops every Ray here)."""
    port, base = free_port(), Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    address = f"127.0.0.1:{port}"
    ENV["RAY_TMPDIR"] = str(base)  # drivers too: a stale /tmp/ray/session_latest would give them another node IP
    common = ["--block", "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    ray_bin = str(Path(sys.executable).parent / "ray")
    nodes = []
    try:
        for i, extra in enumerate([["--head", "--port", str(port), "--include-dashboard", "false"], ["--address", address]]):
            (base / f"node{i}").mkdir()
            log = open(base / f"node{i}.log", "w")
            nodes.append(subprocess.Popen([ray_bin, "start", *extra, *common, "--temp-dir", str(base / f"node{i}")],
                                          env=ENV, stdout=log, stderr=subprocess.STDOUT))
            if os.environ.get("MAQ_RAY_PIDS"):  # .ci/run stops these if the tests die before tearing down
                with open(os.environ["MAQ_RAY_PIDS"], "a") as f:
                    f.write(f"{nodes[-1].pid}\n")
            if i == 0:
                wait_for_nodes(address, 1, base)
        wait_for_nodes(address, 2, base)
        yield address
    finally:
        started = [psutil.Process(n.pid) for n in nodes if n.poll() is None]
        procs = started + [c for p in started for c in p.children(recursive=True)]
        for node in nodes:
            node.terminate()
        _, alive = psutil.wait_procs(procs, timeout=30)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def wait_for_nodes(address: str, n: int, base: Path, timeout: float = 120) -> None:
    probe = f"import ray; ray.init(address='{address}', logging_level='ERROR'); print(sum(x['Alive'] for x in ray.nodes()))"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-c", probe], env=ENV, capture_output=True, text=True, timeout=60)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    logs = "\n".join(p.read_text()[-2000:] for p in base.glob("node*.log"))
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} nodes:\n{logs}")


@pytest.fixture(scope="module")
def remotes(tmp_path_factory):
    """A committed tiny-params project, its bare Git remote (origin) and a local DVC remote; the head's clone."""
    root = tmp_path_factory.mktemp("sweep-ray")
    head, origin, storage = root / "head", root / "origin.git", root / "dvc-storage"
    sh(root, "git", "clone", "-q", str(REPO_ROOT), str(head))
    shrink_params(head / "params.yaml")
    sh(head, "git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qam", "tiny params")
    sh(root, "git", "clone", "-q", "--bare", str(head), str(origin))
    sh(head, "git", "remote", "set-url", "origin", str(origin))
    sh(head, "git", "fetch", "-q", "origin")
    sh(head, sys.executable, "-m", "dvc", "remote", "modify", "--local", "local", "url", str(storage))
    return root, head, origin


def experiment_processes(marker: str) -> list[psutil.Process]:
    """Supervisors (pipeline.sweep_ray.SUPERVISOR) of `dvc exp run` attempts whose workdir contains `marker`."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if len(cmd) > 6 and cmd[1] == "-c" and marker in cmd[3] and cmd[7:9] == ["exp", "run"]:
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def ray_run(cluster, remotes):
    """Sweep `s` through the Ray engine; as soon as one point's first stage runs, its Ray worker is killed by pid."""
    root, head, _ = remotes
    maq(head, "sweep", "queue", "--engine", "ray", *SWEEP, "--name", "s")
    start = time.perf_counter()
    run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sweep", "run", "--engine", "ray", "--name", "s",
                            "--address", cluster], cwd=head, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    while killed is None and run.poll() is None:
        for supervisor in experiment_processes("maq-sweep-s-door"):
            try:
                stage_running = any("stages." in " ".join(c.cmdline()) for c in supervisor.children(recursive=True))
                worker = supervisor.parent()
                if stage_running and "ray::" in worker.name() + " ".join(worker.cmdline()):
                    dvc_group = os.getpgid(supervisor.children()[0].pid)
                    killed = {"worker": worker.pid, "group": dvc_group, "workdir": Path(supervisor.cmdline()[3])}
                    os.kill(worker.pid, signal.SIGKILL)
                    break
            except (psutil.NoSuchProcess, IndexError, ProcessLookupError):
                continue
        time.sleep(0.5)
    out, _ = run.communicate(timeout=1200)
    return {"rc": run.returncode, "out": out, "killed": killed, "seconds": time.perf_counter() - start, "head": head}


def test_a_worker_killed_mid_point_is_retried_and_leaves_nothing_running(ray_run):
    assert ray_run["killed"], f"no point's worker was seen running a stage:\n{ray_run['out']}"
    assert ray_run["rc"] == 0, ray_run["out"]
    assert "2 points run" in ray_run["out"] and "0 failed" in ray_run["out"], ray_run["out"]
    assert "1 CPUs and 0 GPUs each" in ray_run["out"], ray_run["out"]  # params runtime.sweep_point_*
    group = ray_run["killed"]["group"]
    assert not [p.pid for p in psutil.process_iter() if _pgid(p.pid) == group], "the killed attempt's commands still run"
    assert not ray_run["killed"]["workdir"].exists(), "the killed attempt's clone was not removed"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_the_ray_table_equals_the_local_engines(ray_run, remotes):
    root, _, origin = remotes
    local = root / "local"
    sh(root, "git", "clone", "-q", str(origin), str(local))
    maq(local, "sweep", "queue", *SWEEP, "--name", "s")
    maq(local, "sweep", "run", "--jobs", "1")
    maq(local, "sweep", "collect", "--name", "s")
    ray_table = (ray_run["head"] / "sweeps/s.csv").read_text().splitlines()
    assert len(ray_table) == 3, ray_table  # header + H=3, H=5
    assert ray_table == (local / "sweeps/s.csv").read_text().splitlines()


def test_points_on_the_remotes_are_not_retrained(ray_run, cluster):
    head = ray_run["head"]
    table = (head / "sweeps/s.csv").read_text()
    out = maq(head, "sweep", "run", "--engine", "ray", "--name", "s", "--address", cluster)
    assert "2 already on" in out and "0 to run" in out, out
    assert (head / "sweeps/s.csv").read_text() == table
    assert not list(Path(tempfile.gettempdir()).glob("maq-sweep-s-*")), "a point's clone was left behind"


def test_a_point_that_fails_is_listed_with_its_log_and_the_rest_is_collected(ray_run, cluster, remotes):
    """Also: a new experiment whose stages another sweep ran, on another clone, restores every one of them."""
    _, head, origin = remotes  # after ray_run: H=3, K=8 is in the shared run-cache, so its point here restores, not trains
    maq(head, "sweep", "queue", "--engine", "ray", "--tasks", "door", "--methods", "maq_iql", "--H", "3", "--K", "8", "1",
        "--seeds", "1", "--name", "f")  # K=1 is outside codebook.K's range: its codebook stage fails on the worker
    run = subprocess.run([sys.executable, "-m", "pipeline.cli", "sweep", "run", "--engine", "ray", "--name", "f",
                          "--address", cluster], cwd=head, env=ENV, capture_output=True, text=True)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "point f-door-maq_iql-H3-K1-s1 failed:" in out and "codebook.K" in out, out  # with its log's tail
    assert "1 points failed for good: f-door-maq_iql-H3-K1-s1" in out, out
    assert "sweep f: 1 points run (0 stages run, the rest restored from the run-cache), 1 failed" in out, out
    table = (head / "sweeps/f.csv").read_text().splitlines()
    assert len(table) == 2 and table[1].startswith("door,maq_iql,3,8,"), table  # header + the K=8 point
    refs = sh(head, "git", "ls-remote", str(origin), "refs/exps/*")
    assert "f-door-maq_iql-H3-K8-s1" in refs and "K1" not in refs, refs


def test_ctrl_c_cancels_the_points_and_pushes_nothing(cluster, remotes):
    _, head, origin = remotes
    maq(head, "sweep", "queue", "--engine", "ray", "--tasks", "door", "--methods", "maq_iql", "--H", "4", "--K", "8",
        "--seeds", "1", "--name", "c")  # a new codebook: it trains
    run = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sweep", "run", "--engine", "ray", "--name", "c",
                            "--address", cluster], cwd=head, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        running = [s for s in experiment_processes("maq-sweep-c-door") if _stage_running(s)]
        if running:
            run.send_signal(signal.SIGINT)
            break
        time.sleep(0.5)
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 130 and "interrupted: cancelled 1 unfinished points of sweep c" in out, out
    deadline = time.monotonic() + 30
    while (experiment_processes("maq-sweep-c-") or list(Path(tempfile.gettempdir()).glob("maq-sweep-c-*"))) and time.monotonic() < deadline:
        time.sleep(1)
    assert not experiment_processes("maq-sweep-c-"), "a cancelled point still runs"
    assert not list(Path(tempfile.gettempdir()).glob("maq-sweep-c-*")), "a cancelled point's clone was left behind"
    assert "/c-door" not in sh(head, "git", "ls-remote", str(origin), "refs/exps/*")


def _stage_running(supervisor: psutil.Process) -> bool:
    try:
        return any("stages." in " ".join(c.cmdline()) for c in supervisor.children(recursive=True))
    except psutil.NoSuchProcess:
        return False


def test_resources_per_point_come_from_the_params_at_the_sweeps_commit(tmp_path, monkeypatch):
    from pipeline.config import ParamsError
    from pipeline.sweep_ray import point_resources

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["runtime"].update(sweep_point_cpus=2, sweep_point_gpus=0.25)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, *git, "commit", "-q", "--allow-empty", "-m", "empty")
    sh(tmp_path, "git", "add", "params.yaml")
    sh(tmp_path, *git, "commit", "-qm", "params")
    commit = sh(tmp_path, "git", "rev-parse", "HEAD").strip()
    raw["runtime"]["sweep_point_gpus"] = -1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))  # the workspace's params do not count
    monkeypatch.chdir(tmp_path)
    assert point_resources(commit) == (2.0, 0.25)
    sh(tmp_path, *git, "commit", "-qam", "bad params")
    with pytest.raises(ParamsError, match="runtime.sweep_point_gpus"):
        point_resources("HEAD")
    with pytest.raises(RuntimeError, match="cannot read params.yaml at the sweep's commit"):
        point_resources("HEAD~2")  # the empty commit has no params.yaml
