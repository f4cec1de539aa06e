"""Portable numerics (pipeline/numerics.py): does it make two CPUs agree, and what does it cost?

    python -m pipeline.benchmarks.numerics fingerprint --workdir DIR [--task relocate]
    python -m pipeline.benchmarks.numerics compare
    python -m pipeline.benchmarks.numerics speed

`fingerprint` runs demos → prepare → codebook → a short rlpd finetune of one task on tiny params in
DIR (the stages' own `main`s, in this process) and prints the sha256 of each output as JSON.

`compare` emulates two CPUs on this one: it runs `fingerprint` in subprocesses under this CPU's own
kernel dispatch and under `OTHER_CPU`'s (what the libraries pick on their own on a CPU without
AVX-512), once with the pin off (`MAQ_PORTABLE_NUMERICS=0`) and once with it on, and prints which
outputs agree. tests/test_numerics.py asserts the expected table.

`speed` prints, pin off, on and `compatible` side by side in one run (each in its own process): rlpd critic
updates/s (door-sized, P = 2, the default seeds), codebook training steps/s (default sizes) and
demonstrator episodes/s (relocate).

`lockcheck` is the check of a machine against the committed results, in minutes instead of a whole
`make repro`: it clones HEAD into a temp dir, runs `dvc repro` of the given stages (default
`LOCKCHECK_STAGES`: the OpenBLAS-sensitive relocate demonstrations and a codebook, with what they
need) and prints, per stage, whether its outputs' hashes equal the committed `dvc.lock`'s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# What the libraries choose on their own on a CPU with AVX2 but no AVX-512 (AMD EPYC up to Zen 3,
# Intel Xeons up to Broadwell, most laptops): OpenBLAS's Haswell kernels, MKL's and ATen's AVX2
# paths, numpy's AVX2 loops. (Emulating a Skylake-X Xeon instead, OPENBLAS_CORETYPE=SkylakeX and
# MKL_CBWR=AVX512, gave this Sapphire Rapids machine's own bytes for all four stages.)
OTHER_CPU = {
    "OPENBLAS_CORETYPE": "Haswell",
    "MKL_CBWR": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
STAGES = ("demos", "prepare", "codebook", "finetune")
LOCKCHECK_STAGES = ("demos@relocate", "prepare@relocate", "codebook@relocate")
REPO_ROOT = Path(__file__).resolve().parents[2]  # a checkout: stages/ is not an installed package


def _digest(path: Path) -> str:
    """sha256 over the files under `path` (names and bytes), README cards aside (they hold wall times)."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix != ".md"):
        h.update(file.relative_to(path).as_posix().encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def fingerprint(workdir: Path, task: str) -> dict[str, str]:
    """Run the four stages of `task` on tiny params in `workdir`; the sha256 of each one's outputs."""
    import yaml

    from pipeline.smoke import TINY_PARAMS, shrink_params

    sys.path.insert(0, str(REPO_ROOT))
    from stages import codebook, demos, finetune, prepare

    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params.update(tasks=[task], seeds=[1])
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shrink_params(Path("params.yaml"), {"demos": {"episodes": 4},
                                        "finetune": {**TINY_PARAMS["finetune"], "env_steps": 100, "threads": 1}})
    demos.main(["--task", task])
    prepare.main(["--task", task])
    codebook.main(["--task", task])
    finetune.main(["--task", task, "--method", "rlpd"])
    outs = {"demos": f"data/demos/{task}", "prepare": f"data/prepared/{task}", "codebook": f"models/codebooks/{task}",
            "finetune": f"models/agents/{task}/rlpd"}
    return {stage: _digest(Path(out)) for stage, out in outs.items()}


def run_fingerprint(workdir: Path, env: dict[str, str], task: str = "relocate") -> dict[str, str]:
    """`fingerprint` in a fresh process whose environment has `env` on top of this one's."""
    process_env = {**os.environ, **env}
    from pipeline.numerics import portable_env

    for name in {*portable_env(), *OTHER_CPU}:
        if name not in env:  # this process's pin must not leak into the emulated CPU
            process_env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.benchmarks.numerics", "fingerprint", "--workdir", str(workdir), "--task", task],
        env=process_env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"fingerprint failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(root: Path, task: str = "relocate") -> dict[str, dict[str, bool]]:
    """For pin off and on: does each stage's output agree between this CPU and OTHER_CPU?"""
    table = {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # the two CPUs side by side, one process each
        for pin in ("0", "1"):
            here = pool.submit(run_fingerprint, root / f"pin{pin}-here", {"MAQ_PORTABLE_NUMERICS": pin}, task)
            other = pool.submit(run_fingerprint, root / f"pin{pin}-other", {"MAQ_PORTABLE_NUMERICS": pin, **OTHER_CPU}, task)
            table["on" if pin == "1" else "off"] = {stage: here.result()[stage] == other.result()[stage] for stage in STAGES}
    return table


# -- speed -------------------------------------------------------------------------------------
def _speed_here(seconds: float) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    from pipeline.benchmarks.agents import critic_updates_per_s

    out = {"rlpd critic updates/s (P=2)": critic_updates_per_s("rlpd", 2, "cpu", seconds)}

    import torch.nn.functional as F

    from pipeline.codebook.model import VQVAE, CodebookSpec
    from pipeline.config import load_params

    cfg = load_params().codebook
    model = VQVAE(CodebookSpec(obs_dim=39, action_dim=28, H=cfg.H, K=cfg.K, latent_dim=cfg.latent_dim, hidden=cfg.hidden))
    optim = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    obs, macro = torch.randn(cfg.batch_size, 39), torch.randn(cfg.batch_size, cfg.H, 28)  # (B, S), (B, H, A)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:  # the training step of pipeline/codebook/train.py
        recon, z_e, e_k, _ = model(obs, macro)
        loss = F.mse_loss(recon, macro) + cfg.beta * F.mse_loss(z_e, e_k.detach()) + F.mse_loss(e_k, z_e.detach())
        optim.zero_grad()
        loss.backward()
        optim.step()
        n += 1
    out["codebook steps/s (batch 32)"] = n / (time.perf_counter() - start)

    from pipeline.demonstrator.dataset import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset("relocate", episodes=2, seed=0, store_root=Path(tmp))
        out["relocate demo episodes/s"] = 2 / (time.perf_counter() - start)
    return out


def speed(seconds: float) -> None:
    rows = {}
    for pin in ("0", "1", "compatible"):
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.benchmarks.numerics", "speed-here", "--seconds", str(seconds)],
            env={**os.environ, "MAQ_PORTABLE_NUMERICS": pin}, capture_output=True, text=True, check=True,
        )
        rows[pin] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"{'one core':32s} {'pin off':>10s} {'pin on':>10s} {'on/off':>7s} {'compatible':>11s} {'/off':>6s}")
    for name in rows["0"]:
        off, on, compatible = rows["0"][name], rows["1"][name], rows["compatible"][name]
        print(f"{name:32s} {off:10.1f} {on:10.1f} {on / off:6.2f}× {compatible:11.1f} {compatible / off:5.2f}×")


# -- lockcheck ---------------------------------------------------------------------------------
def _out_hashes(lock: dict, stage: str) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in lock["stages"][stage].get("outs", [])}


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def lockcheck(stages: list[str]) -> bool:
    """Re-run `stages` in a clone of HEAD; print and return whether their outputs match dvc.lock."""
    import yaml

    committed = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    unknown = [s for s in stages if s not in committed["stages"]]
    if unknown:
        raise SystemExit(f"error: {', '.join(unknown)} not in dvc.lock; `dvc stage list` names the stages (e.g. {LOCKCHECK_STAGES[0]})")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory(prefix="maq-lockcheck-") as tmp:
        clone = Path(tmp) / "project"
        subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "dvc", "repro", *stages], cwd=clone, env=env, text=True)
        if result.returncode != 0:
            raise SystemExit(f"error: dvc repro {' '.join(stages)} failed ({result.returncode})")
        rerun = yaml.safe_load((clone / "dvc.lock").read_text())
    same = True
    from pipeline.numerics import SWITCH, mode

    print(f"dvc repro {' '.join(stages)} in a clone of HEAD: {time.perf_counter() - start:.0f} s "
          f"on {_cpu_model()} with {SWITCH}={mode()}")
    for stage in stages:
        match = _out_hashes(rerun, stage) == _out_hashes(committed, stage)
        same &= match
        print(f"{stage:24s} {'same outputs as dvc.lock' if match else 'DIFFERENT outputs from dvc.lock'}")
    return same


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    fp = sub.add_parser("fingerprint", help="run the tiny chain in --workdir; print the output hashes")
    fp.add_argument("--workdir", type=Path, required=True)
    fp.add_argument("--task", default="relocate")
    sub.add_parser("compare", help="this CPU vs OTHER_CPU, pin off and on")
    lc = sub.add_parser("lockcheck", help="re-run stages in a clone of HEAD and compare their outputs with dvc.lock")
    lc.add_argument("stages", nargs="*", default=list(LOCKCHECK_STAGES))
    for name in ("speed", "speed-here"):
        sp = sub.add_parser(name, help="pin off vs on: speed" if name == "speed" else argparse.SUPPRESS)
        sp.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "fingerprint":
        hashes = fingerprint(args.workdir.resolve(), args.task)
        print(json.dumps(hashes))
    elif args.command == "compare":
        with tempfile.TemporaryDirectory(prefix="maq-numerics-") as tmp:
            table = compare(Path(tmp))
        print(f"{'pin':4s} " + " ".join(f"{s:>9s}" for s in STAGES) + "   (same bytes on both emulated CPUs?)")
        for pin, row in table.items():
            print(f"{pin:4s} " + " ".join(f"{'same' if row[s] else 'DIFFER':>9s}" for s in STAGES))
    elif args.command == "speed":
        speed(args.seconds)
    elif args.command == "lockcheck":
        sys.exit(0 if lockcheck(args.stages) else 1)
    else:
        print(json.dumps(_speed_here(args.seconds)))


if __name__ == "__main__":
    main()
