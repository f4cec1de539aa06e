"""Grid points as Ray core tasks over a shared DVC remote and a Git remote (`maq sweep run --engine ray`).

    maq sweep queue --engine ray --tasks door --methods maq_iql --H 3 5 --K 8 --seeds 1 --name s   # records sweeps/s.points.json
    maq sweep run --engine ray --name s [--address HOST:PORT]                                   # one Ray task per point

Each point is one Ray task (`run_point`) with the resources and retries asked for. An attempt runs on a
worker in a fresh clone of the Git remote at the sweep's base commit, with the DVC remote pointed at the
shared one: `dvc exp run --pull` (a stage whose result is in the shared run-cache is restored, not run),
then `dvc push` (the outs to the DVC remote), then the run-cache entries with every output they name
(`PUSH_RUN_CACHE`: `dvc push --run-cache` in DVC 3.67 leaves out the `cache: false` metrics, and without them
another machine runs the stage again) and, last, `dvc exp push --no-cache` (the experiment ref to the Git remote; one atomic ref
update). So an experiment ref on the Git remote always has its data on the DVC remote, and a point whose
ref is already there is skipped. Every command of an
attempt runs under a small supervisor in its own process group: if the Ray worker dies (killed, or
`ray.cancel(force=True)`), the supervisor kills the group and removes the clone, so nothing keeps running.

The head shows a bar of finished/total points with the failed count, lists each point that failed for good
with the tail of its log, then pulls the experiments (`dvc exp pull`) and collects them into the same table
as the local engine (`pipeline.sweep.collect`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.sweep import Point, collect, dvc, load_sweep

# Runs one command in its own process group (argv: clone dir, command...). Beside it, a janitor in its own session
# holds a pipe from the supervisor: when the pipe closes without "done" (the supervisor was killed with its Ray
# worker, got SIGTERM from a cancelled attempt, or saw the worker die), it kills the command's group, waits for
# it to be gone and removes the clone. The janitor is not the worker's child, so the raylet's kill of a dead
# worker's children does not reach it.
JANITOR = r"""
import os, shutil, signal, sys, time
pgid, cleanup = int(sys.argv[1]), sys.argv[2]
if sys.stdin.read() == "done":
    sys.exit(0)
try:
    os.killpg(pgid, signal.SIGKILL)
    for _ in range(200):
        os.killpg(pgid, 0)
        time.sleep(0.05)
except (ProcessLookupError, PermissionError):
    pass
shutil.rmtree(cleanup, ignore_errors=True)
"""
SUPERVISOR = r"""
import os, signal, subprocess, sys
cleanup, cmd = sys.argv[1], sys.argv[2:]
parent = os.getppid()
child = subprocess.Popen(cmd, start_new_session=True)
janitor = subprocess.Popen([sys.executable, "-c", JANITOR, str(child.pid), cleanup], stdin=subprocess.PIPE,
                           start_new_session=True, text=True)
signal.signal(signal.SIGTERM, lambda *_: os._exit(137))  # the janitor sees the pipe close and cleans up
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the head; the worker decides
while True:
    try:
        rc = child.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        if os.getppid() != parent:  # the worker died
            os._exit(137)
        continue
    try:
        os.killpg(child.pid, signal.SIGKILL)  # anything the command left behind in its group
    except (ProcessLookupError, PermissionError):
        pass
    janitor.stdin.write("done")
    janitor.stdin.close()
    janitor.wait()
    sys.exit(rc)
""".replace("JANITOR, ", repr(JANITOR) + ", ", 1)
# The clone's run-cache entries and every output they name, pushed to the default DVC remote. `dvc push --run-cache`
# sends the entries and the workspace's DVC-cached outs, but not the `cache: false` outs (metrics), which DVC copies
# into the local cache only for the run-cache; a worker restoring such an entry finds them missing on the remote
# and runs the stage again (seen with `dvc repro --pull` in a second clone; tests/test_sweep_ray.py checks it).
PUSH_RUN_CACHE = r"""
import os, sys
from dvc.repo import Repo
with Repo(".") as repo:
    runs = repo.stage_cache.cache_dir  # runs/<key[:2]>/<key>/<value>
    entries = [(key, value) for prefix in (os.listdir(runs) if os.path.isdir(runs) else [])
               for key in os.listdir(os.path.join(runs, prefix)) for value in os.listdir(os.path.join(runs, prefix, key))]
    objs = set().union(*repo.stage_cache.get_used_objs(entries).values()) if entries else set()
    result = repo.cloud.push(objs)  # the outputs first, so an entry on the remote always has them
    if result.failed:
        sys.exit(f"could not push {len(result.failed)} run-cache outputs: {sorted(h.value for h in result.failed)[:5]}")
    repo.stage_cache.push(None)
print(f"run-cache: {len(entries)} entries and the {len(objs)} outputs they name pushed ({len(result.transferred)} new)")
"""
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class PointSpec:
    """What a worker needs to run one point; plain values only (it travels to the worker)."""

    name: str  # the experiment name, `<sweep>-<point>`
    overrides: tuple[str, ...]  # `dvc exp run -S` values
    base: str  # the commit the sweep was queued at
    git_url: str  # where workers clone from and push experiment refs to
    dvc_url: str  # the shared DVC remote (outs and run-cache)


def run_point(spec: PointSpec) -> dict:
    """One attempt at one point, on a Ray worker. Returns {name, status: done|skipped|failed, stages_run,
    log_tail, node}; a failure of the point itself is returned (not retried), a dead worker is retried by Ray."""
    import shutil
    import socket
    import tempfile

    ref = f"refs/exps/{spec.base[:2]}/{spec.base[2:]}/{spec.name}"
    workdir = Path(tempfile.mkdtemp(prefix=f"maq-sweep-{spec.name}-"))
    project, log = workdir / "project", workdir / "attempt.log"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    dvc_cmd = [sys.executable, "-m", "dvc"]
    result = {"name": spec.name, "node": socket.gethostname(), "pid": os.getpid(), "stages_run": 0, "log_tail": ""}

    def step(cmd: list[str], cwd: Path) -> int:
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(workdir), *cmd], cwd=cwd, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            try:
                while True:  # short waits: ray.cancel's KeyboardInterrupt lands between them, not in a blocking wait
                    try:
                        return proc.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:  # ray.cancel without force raises KeyboardInterrupt here
                proc.terminate()
                proc.wait()
                raise

    def tail() -> str:
        return "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]) if log.exists() else ""

    try:
        remote = subprocess.run(["git", "ls-remote", spec.git_url, ref], capture_output=True, text=True)
        if remote.returncode == 0 and remote.stdout.strip():
            return result | {"status": "skipped"}  # an earlier attempt pushed it
        steps = [
            (["git", "clone", "-q", "--no-checkout", spec.git_url, str(project)], workdir),
            (["git", "checkout", "-q", "--detach", spec.base], project),
            ([*dvc_cmd, "remote", "add", "--local", "--default", "--force", "sweep", spec.dvc_url], project),
            ([*dvc_cmd, "exp", "run", "--pull", "-n", spec.name, *(a for o in spec.overrides for a in ("-S", o))], project),
            ([*dvc_cmd, "push"], project),  # data first ...
            ([sys.executable, "-c", PUSH_RUN_CACHE], project),
            ([*dvc_cmd, "exp", "push", "--no-cache", spec.git_url, spec.name], project),  # ... the ref last
        ]
        for cmd, cwd in steps:
            if step(cmd, cwd) != 0:
                hint = (f"\n(is commit {spec.base} pushed to {spec.git_url}?)" if cmd[1] == "checkout" else "")
                return result | {"status": "failed", "log_tail": tail() + hint}
        result["stages_run"] = log.read_text(errors="replace").count("Running stage '")
        return result | {"status": "done"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class SweepInterrupted(RuntimeError):
    pass


def remote_experiments(git_url: str, base: str) -> set[str]:
    """Names of the experiments of commit `base` on the Git remote (`git ls-remote`)."""
    out = subprocess.run(["git", "ls-remote", git_url, f"refs/exps/{base[:2]}/{base[2:]}/*"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"cannot read the Git remote {git_url}: {out.stderr.strip()}")
    return {line.split("\t")[1].rsplit("/", 1)[1] for line in out.stdout.splitlines() if "\t" in line}


def git_remote_url(remote: str) -> str:
    """A remote's URL (a name from `git remote`, or a URL/path as is)."""
    out = subprocess.run(["git", "remote", "get-url", remote], capture_output=True, text=True)
    if out.returncode == 0:
        url = out.stdout.strip()
    elif "/" in remote or ":" in remote:
        url = remote
    else:
        raise RuntimeError(f"no Git remote {remote!r}; add the one workers push experiment refs to (`git remote add {remote} <url>`)")
    return str(Path(url).resolve()) if Path(url).exists() else url  # workers have another cwd


def dvc_remote_url(name: str | None) -> tuple[str, str]:
    """(name, URL) of a DVC remote of this project (default: core.remote); local paths made absolute."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        config = repo.config
        name = name or config["core"].get("remote")
        if not name or name not in config["remote"]:
            raise RuntimeError(f"no DVC remote {name!r}; add the shared one (`dvc remote add -d <name> <url>`)")
        return name, str(config["remote"][name]["url"])


def point_resources(base: str) -> tuple[float, float]:
    """(CPUs, GPUs) each point asks Ray for: params `runtime.sweep_point_cpus` / `_gpus` at the sweep's commit."""
    import yaml

    from pipeline.config import parse_params

    shown = subprocess.run(["git", "show", f"{base}:params.yaml"], capture_output=True, text=True)
    if shown.returncode != 0:
        raise RuntimeError(f"cannot read params.yaml at the sweep's commit {base[:7]}: {shown.stderr.strip()}")
    runtime = parse_params(yaml.safe_load(shown.stdout) or {}).runtime
    return runtime.sweep_point_cpus, runtime.sweep_point_gpus


def run_sweep(name: str, address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
              max_retries: int = 3, git_remote: str = "origin", dvc_remote: str | None = None) -> int:
    """Run sweep `name`'s points (sweeps/<name>.points.json) as Ray tasks, pull and collect them; returns the
    number of points that failed for good. Resources per point: the arguments, else the sweep commit's params."""
    import ray
    import ray.cloudpickle
    from tqdm import tqdm

    sweep = load_sweep(name)
    git_url = git_remote_url(git_remote)
    dvc_name, dvc_url = dvc_remote_url(dvc_remote)
    if num_cpus is None or num_gpus is None:
        cpus, gpus = point_resources(sweep["base"])
        num_cpus, num_gpus = cpus if num_cpus is None else num_cpus, gpus if num_gpus is None else num_gpus
    points: list[Point] = sweep["points"]
    names = {f"{name}-{p.name}": p for p in points}
    on_remote = remote_experiments(git_url, sweep["base"]) & set(names)
    todo = [n for n in names if n not in on_remote]
    print(f"sweep {name}: {len(points)} points at {sweep['base'][:7]}; {len(on_remote)} already on {git_url} (skipped), "
          f"{len(todo)} to run on Ray, {num_cpus:g} CPUs and {num_gpus:g} GPUs each", flush=True)

    failed: dict[str, str] = {}
    if todo:
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this module
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        task = ray.remote(run_point).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries, name="maq-sweep-point")
        pending = {task.remote(PointSpec(n, tuple(names[n].overrides()), sweep["base"], git_url, dvc_url)): n for n in todo}
        stages_run = 0
        with tqdm(total=len(points), initial=len(on_remote), unit="point", desc=f"sweep {name}", dynamic_ncols=True) as bar:
            bar.set_postfix(failed=0)
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        point = pending.pop(ref)
                        try:
                            result = ray.get(ref)
                        except ray.exceptions.RayError as exc:  # the worker died more than max_retries times
                            result = {"status": "failed", "log_tail": f"{type(exc).__name__}: {exc}"[-4000:]}
                        if result["status"] == "failed":
                            failed[point] = result["log_tail"]
                            tqdm.write(f"point {point} failed:\n{result['log_tail']}")
                        stages_run += result.get("stages_run", 0)
                        bar.update(1)
                        bar.set_postfix(failed=len(failed))
            except KeyboardInterrupt:
                for ref in pending:  # a KeyboardInterrupt in each running attempt: it stops its commands, removes its clone
                    ray.cancel(ref)
                _, stuck = ray.wait(list(pending), num_returns=len(pending), timeout=20)
                for ref in stuck:
                    ray.cancel(ref, force=True)  # kills the worker; the raylet and the supervisor kill its commands
                raise SweepInterrupted(
                    f"interrupted: cancelled {len(pending)} unfinished points of sweep {name} (nothing of theirs was pushed); "
                    f"finished points are on {git_url}; `maq sweep run --engine ray --name {name}` resumes") from None
        print(f"sweep {name}: {len(todo) - len(failed)} points run ({stages_run} stages run, the rest restored from the "
              f"run-cache), {len(failed)} failed", flush=True)

    finished = sorted(set(names) - set(failed))
    if finished:
        dvc("exp", "pull", "-f", "-r", dvc_name, git_url, *finished)
        csv_path, md_path = collect(name, rev=sweep["base"])
        print(f"wrote {csv_path} and {md_path}")
    if failed:
        print(f"{len(failed)} points failed for good: {', '.join(sorted(failed))} (logs above); "
              f"`maq sweep run --engine ray --name {name}` retries only them", file=sys.stderr)
    return len(failed)
