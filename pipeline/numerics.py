"""Portable numerics: the same bytes from the same inputs on x86-64 CPUs with AVX2.

The numerical libraries pick their kernels by the CPU they run on, and different kernels round
differently. Amplified by contact dynamics and thousands of SGD steps, one last bit becomes a
different demonstration, codebook or agent. Measured on one Xeon (Sapphire Rapids) by
`python -m pipeline.benchmarks.numerics fingerprint` under settings that emulate other CPUs:

  OPENBLAS_CORETYPE        numpy's OpenBLAS (the demonstrator's IK solves): Haswell vs this CPU's own
                           kernels gives other relocate demonstrations, and so everything downstream.
  MKL_CBWR                 torch's MKL matmuls: the AVX2 path vs the AVX-512 one gives another
                           codebook and other agents from identical demonstrations.
  ATEN_CPU_CAPABILITY      torch's vectorized kernels (sums, LayerNorm, softmax): avx2 vs avx512
                           sums in another order.
  NPY_DISABLE_CPU_FEATURES numpy's own loops (sin, exp, log, …): the AVX-512 ones round differently.

`pin()` sets each of them to its AVX2 choice, which every x86-64 CPU since 2013 (Intel Haswell,
AMD Excavator) can run, so a machine with AVX-512 computes what a machine with only AVX2 does.
It runs when `pipeline` is imported (pipeline/__init__.py), which every stage, the CLI, the
benchmarks and the tests do before numpy or torch load; the variables are read when those
libraries load, and child processes inherit them. The cost is measured by
`python -m pipeline.benchmarks.numerics speed` (README, "Reproducibility").

Intel and AMD compute different bytes under the default pin. MKL honours only its COMPATIBLE branch on
a non-Intel CPU: on an AMD EPYC with AVX-512, MKL_CBWR=AVX2, SSE4_2 and AVX512 give the same door codebook
(sha256 950004cb…), and it is not the one the same commit gives on a Xeon (deebb013…), although the
demonstrations are identical. `MAQ_PORTABLE_NUMERICS=compatible` selects MKL's COMPATIBLE branch (SSE2, the one
Intel documents as giving the same results on Intel and non-Intel CPUs): on the EPYC it trains ~1.7× slower
(`python -m pipeline.benchmarks.numerics speed`), so it is not the default.

Turn the pin off with `MAQ_PORTABLE_NUMERICS=0` (each library then uses the fastest kernels of the
CPU it runs on, and results are reproducible on that kind of CPU only). It does nothing on
other architectures (e.g. arm64), whose results are their own.

What it cannot pin: thread counts change the order of parallel sums, so they are params
(`codebook.threads`, `finetune.threads`) and part of the result, and `evaluate` runs its agents on
one thread whatever OMP_NUM_THREADS says; a GPU (`device: cuda`) computes
other bits than a CPU.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings

SWITCH = "MAQ_PORTABLE_NUMERICS"
MODES = {  # the values of SWITCH (unset: "1")
    "1": "AVX2 kernels: the same bytes on x86-64 CPUs of one vendor",
    "compatible": "also MKL's vendor-neutral branch: the same bytes on Intel and AMD, training ~1.7x slower",
    "0": "off: each library picks its CPU's fastest kernels",
}

# numpy's dispatch targets above AVX2, each with the /proc/cpuinfo flag that marks a CPU able to run it
# (numpy refuses to disable a target the CPU does not have, so only the CPU's own are listed).
_NUMPY_AVX512_TARGETS = {"X86_V4": "avx512f", "AVX512_ICL": "avx512_vbmi2", "AVX512_SPR": "avx512_fp16"}


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux), or None where /proc/cpuinfo does not say."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def mode() -> str:
    """This process's `SWITCH` value, one of `MODES`; another value stops with a message saying which are valid."""
    value = os.environ.get(SWITCH, "1")
    if value not in MODES:
        sys.exit(f"error: {SWITCH}={value!r} is not a mode; use one of: "
                 + "; ".join(f"{name} ({what})" for name, what in MODES.items()))
    return value


def portable_env(mode: str = "1") -> dict[str, str]:
    """The environment variables that select each library's AVX2 kernels on this CPU (`mode` "compatible":
    MKL's vendor-neutral branch instead of its AVX2 one)."""
    flags = _cpu_flags()
    numpy_targets = [t for t, flag in _NUMPY_AVX512_TARGETS.items() if flags is None or flag in flags]
    env = {"OPENBLAS_CORETYPE": "Haswell", "MKL_CBWR": "COMPATIBLE" if mode == "compatible" else "AVX2",
           "ATEN_CPU_CAPABILITY": "avx2"}
    if numpy_targets:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(numpy_targets)
    return env


def enabled() -> bool:
    """Whether this process pins its numerics (on by default, on x86-64)."""
    return mode() != "0" and platform.machine().lower() in ("x86_64", "amd64")


def pin() -> None:
    """Set `portable_env()` in this process's environment (overriding other values: a machine's own
    settings are what differ between machines). Warns if numpy or torch loaded unpinned before."""
    if not enabled():
        return
    env = portable_env(mode())
    changed = [name for name, value in env.items() if os.environ.get(name) != value]
    os.environ.update(env)
    loaded = [lib for lib in ("numpy", "torch") if lib in sys.modules]
    if changed and loaded:
        warnings.warn(
            f"{' and '.join(loaded)} loaded before `pipeline` pinned {', '.join(changed)}, so this process may not "
            f"compute portable results; import pipeline first, or set {SWITCH}=0 to silence this",
            RuntimeWarning, stacklevel=3,
        )
