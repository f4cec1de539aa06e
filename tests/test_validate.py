"""`maq data check` and the restricted unpickler: bad input is refused with a reason, never run."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main
from pipeline.data.safe_pickle import UnsafePickleError, safe_loads
from pipeline.data.validate import check_pickle_file


def trajectory(T=5, S=39, A=28, **overrides):
    rng = np.random.default_rng(0)
    t = {
        "observations": rng.normal(size=(T, S)),
        "next_observations": rng.normal(size=(T, S)),
        "actions": rng.uniform(-1, 1, (T, A)),
        "rewards": rng.normal(size=T),
        "terminals": np.zeros(T, bool),
    }
    t.update(overrides)
    return t


def check(tmp_path, obj, task=None, protocol=pickle.HIGHEST_PROTOCOL):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return check_pickle_file(path, task)


class RunsShell:
    """A pickle whose loading would call os.system (the classic pickle exploit)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legal_official_format_in_every_pickle_protocol(tmp_path, protocol):
    data = [trajectory(), trajectory(T=7, terminals=[0] * 6 + [1])]
    assert check(tmp_path, data, task="door", protocol=protocol) is None
    assert check(tmp_path, [dict(trajectory(), rewards=np.zeros((5, 1)))]) is None  # (T, 1) columns


def test_os_system_pickle_is_refused_and_not_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([dict(trajectory(), rewards=RunsShell(marker))]))
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("illegal: refused to load posix.system") or out.startswith("illegal: refused to load os.system")
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps(RunsShell(marker)))
    assert not marker.exists()


def test_cli_prints_verdicts_and_exit_codes(tmp_path):
    good, bad = tmp_path / "good.pkl", tmp_path / "bad.pkl"
    good.write_bytes(pickle.dumps([trajectory()]))
    bad.write_bytes(pickle.dumps([trajectory(rewards=np.zeros(4))]))
    run = lambda *a: subprocess.run([sys.executable, "-m", "pipeline.cli", "data", "check", *a], capture_output=True, text=True)  # noqa: E731
    ok = run(str(good), "--task", "door")
    assert (ok.returncode, ok.stdout) == (0, "is legal\n")
    wrong_task = run(str(good), "--task", "pen")
    assert wrong_task.returncode == 1 and "do not match task pen" in wrong_task.stdout
    unequal = run(str(bad))
    assert unequal.returncode == 1 and unequal.stdout.startswith("illegal: trajectory 0 has arrays of unequal lengths")


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"observations": []}, "expected a list of trajectory dicts, got dict"),
        ([], "holds no trajectory"),
        ([[1, 2]], "trajectory 0 must be a dict"),
        ([{k: v for k, v in trajectory().items() if k != "terminals"}], "lacks key(s) terminals"),
        ([trajectory(observations=np.zeros(5))], "observations must be 2-D"),
        ([trajectory(actions=np.full((5, 28), np.nan))], "non-finite"),
        ([trajectory(terminals=[0, 2, 0, 0, 0])], "0/1"),
        ([trajectory(terminals=[1, 0, 0, 0, 0])], "terminates before its last step"),
        ([trajectory(T=0)], "empty"),
        ([trajectory(), trajectory(A=27)], "all trajectories must agree"),
        ([trajectory(observations=np.array([["a"] * 39] * 5))], "must hold numbers"),
        ([trajectory(next_observations=np.zeros((5, 38)))], "differ in size"),
    ],
)
def test_malformed_demonstrations_are_named(tmp_path, data, reason):
    problem = check(tmp_path, data)
    assert problem is not None and reason in problem


def test_garbage_and_truncated_files(tmp_path):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps([trajectory()])[:100])
    assert "not a readable pickle" in check_pickle_file(path)
    assert "no file at" in check_pickle_file(tmp_path / "missing.pkl")


# Anything a pickle of plain data can hold: malformed structures must give a reason, not a crash.
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3),
    st.lists(st.floats(), max_size=4),
    st.builds(lambda n, m: np.zeros((n, m)), st.integers(0, 3), st.integers(0, 3)),
)
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
keys = st.sampled_from(["observations", "next_observations", "actions", "rewards", "terminals", "truncations", "x"])
trajectory_like = st.dictionaries(keys, values, max_size=7)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(values, st.lists(trajectory_like, max_size=3)))
def test_no_malformed_input_crashes_the_checker(tmp_path, data):
    problem = check(tmp_path, data)
    assert problem is None or isinstance(problem, str) and problem


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=200))
def test_no_byte_string_crashes_the_checker(tmp_path, blob):
    path = tmp_path / "d.pkl"
    path.write_bytes(blob)
    assert isinstance(check_pickle_file(path), str)


class ForgedShape:
    """Pickles as an array of 10¹² float64s over 8 bytes of data, the way numpy itself pickles
    arrays: `_reconstruct` + state for protocols ≤ 4, `_frombuffer` for protocol 5."""

    def __init__(self, protocol):
        self.protocol = protocol

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer

        shape, data = (10**6, 10**6), b"\0" * 8
        if self.protocol == 5:
            return _frombuffer, (data, np.dtype("f8"), shape, "C")
        return _reconstruct, (np.ndarray, (0,), b"b"), (1, shape, np.dtype("f8"), False, data)


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_forged_array_shape_is_refused_naming_its_key(tmp_path, protocol):
    reason = check(tmp_path, [trajectory(), dict(trajectory(), actions=ForgedShape(protocol))], protocol=protocol)
    assert reason.startswith("the array under key 'actions' cannot be built") and "corrupt or forged" in reason
