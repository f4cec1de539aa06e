"""Portable numerics (pipeline/numerics.py): two emulated CPUs agree with the pin, and only with it."""

import os
import subprocess
import sys

import pytest

from pipeline import numerics
from pipeline.benchmarks.numerics import STAGES, compare

pytestmark = pytest.mark.skipif(not numerics.enabled(), reason="the pin applies to x86-64 only")


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in numerics.portable_env()}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)


def test_two_emulated_cpus_give_the_same_bytes_with_the_pin_and_different_ones_without(tmp_path):
    # demos → prepare → codebook → rlpd finetune of relocate on tiny params, on "this CPU" and on "an AVX2-only CPU"
    table = compare(tmp_path)
    assert table["off"] == {stage: False for stage in STAGES}, "without the pin the emulated CPUs should differ: the test would prove nothing"
    assert table["on"] == {stage: True for stage in STAGES}


def test_the_pin_selects_avx2_kernels_and_the_switch_turns_it_off():
    probe = "import pipeline, torch; print(torch.backends.cpu.get_cpu_capability())"
    assert python(probe).stdout.strip() == "AVX2"
    native = python("import torch; print(torch.backends.cpu.get_cpu_capability())").stdout.strip()
    assert python(probe, MAQ_PORTABLE_NUMERICS="0").stdout.strip() == native
    # a machine's own setting is what differs between machines: the pin overrides it
    assert python("import pipeline, os; print(os.environ['MKL_CBWR'])", MKL_CBWR="AUTO").stdout.strip() == "AVX2"


def test_the_compatible_mode_selects_mkls_vendor_neutral_branch_and_a_bad_mode_is_refused_by_name():
    env = "import pipeline, os; print(os.environ['MKL_CBWR'], os.environ['ATEN_CPU_CAPABILITY'])"
    assert python(env, MAQ_PORTABLE_NUMERICS="compatible").stdout.split() == ["COMPATIBLE", "avx2"]
    refused = subprocess.run([sys.executable, "-c", "import pipeline"], env={**os.environ, "MAQ_PORTABLE_NUMERICS": "yes"},
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "MAQ_PORTABLE_NUMERICS='yes' is not a mode" in refused.stderr
    assert "compatible" in refused.stderr and "Traceback" not in refused.stderr


def test_numpy_loaded_before_the_pin_is_warned_about():
    result = python("import numpy, pipeline")
    assert "numpy loaded before `pipeline` pinned" in result.stderr and "MAQ_PORTABLE_NUMERICS=0" in result.stderr
    assert "loaded before" not in python("import pipeline, numpy").stderr
