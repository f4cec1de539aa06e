"""Validation of demonstrations in the official MAQ format, with errors that say what is wrong.

The format: a list of trajectory dicts, each with `observations` (T, S), `next_observations`
(T, S), `actions` (T, A), `rewards` (T,), `terminals` (T,); optional `truncations` (T,) and
`success` (T,). The official checker only looks at the keys; this one also checks types, shapes,
equal lengths, consistent sizes across trajectories (and against the task), finite values and
0/1 flags. `maq data check` prints its verdict; no input makes it crash.

Trajectory ends: the official code sets `terminals` at the last step of *every* trajectory, time-limit
ends included (Adroit episodes never terminate), so `read_official_ends` reads a trajectory-end
marker as a time-limit end (`truncations`), and its last transition is bootstrapped. Only a file
that says which ends are time limits (a `truncations` key) has its `terminals` taken literally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.safe_pickle import CorruptArrayError, UnsafePickleError, safe_load
from pipeline.entry import UserError
from pipeline.tasks import get_task

REQUIRED_KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")
OPTIONAL_FLAG_KEYS = ("truncations", "success")


class DemonstrationsError(UserError, ValueError):
    """Demonstrations are malformed; the message says which trajectory and what is wrong."""


def _as_array(value, where: str, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise DemonstrationsError(f"{where} is not an array ({type(exc).__name__}: {exc})") from None
    if ndim == 1 and array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # (T, 1) columns are common for rewards and terminals
    if array.ndim != ndim:
        raise DemonstrationsError(f"{where} must be {ndim}-D, got shape {array.shape}")
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DemonstrationsError(f"{where} must hold numbers, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise DemonstrationsError(f"{where} has non-finite values (NaN or inf)")
    return array


def _as_flags(value, where: str) -> np.ndarray:
    array = _as_array(value, where, ndim=1)
    if array.dtype != bool and not np.all((array == 0) | (array == 1)):
        raise DemonstrationsError(f"{where} must hold 0/1 or booleans")
    return array.astype(bool)


def validate_trajectories(data, task: str | None = None) -> list[dict[str, np.ndarray]]:
    """Check `data` against the format and return it as numpy arrays; raise DemonstrationsError."""
    if not isinstance(data, list):
        raise DemonstrationsError(f"expected a list of trajectory dicts, got {type(data).__name__}")
    if not data:
        raise DemonstrationsError("the list holds no trajectory; at least one is needed")
    expected = get_task(task) if task else None
    obs_dim = action_dim = None
    trajectories = []
    for i, raw in enumerate(data):
        where = f"trajectory {i}"
        if not isinstance(raw, dict):
            raise DemonstrationsError(f"{where} must be a dict, got {type(raw).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in raw]
        if missing:
            raise DemonstrationsError(f"{where} lacks key(s) {', '.join(missing)} (needs {', '.join(REQUIRED_KEYS)})")
        t = {
            "observations": _as_array(raw["observations"], f"{where} observations", 2),
            "next_observations": _as_array(raw["next_observations"], f"{where} next_observations", 2),
            "actions": _as_array(raw["actions"], f"{where} actions", 2),
            "rewards": _as_array(raw["rewards"], f"{where} rewards", 1),
            "terminals": _as_flags(raw["terminals"], f"{where} terminals"),
        }
        for key in OPTIONAL_FLAG_KEYS:
            if key in raw:
                t[key] = _as_flags(raw[key], f"{where} {key}")
        lengths = {key: len(value) for key, value in t.items()}
        if len(set(lengths.values())) != 1:
            raise DemonstrationsError(f"{where} has arrays of unequal lengths: {lengths}")
        if lengths["actions"] == 0:
            raise DemonstrationsError(f"{where} is empty (0 steps)")
        if np.any(t["terminals"][:-1]):
            raise DemonstrationsError(f"{where} terminates before its last step (step {int(np.argmax(t['terminals']))})")
        if t["observations"].shape[1] != t["next_observations"].shape[1]:
            raise DemonstrationsError(f"{where} observations and next_observations differ in size")
        if t["observations"].shape[1] == 0 or t["actions"].shape[1] == 0:
            raise DemonstrationsError(f"{where} has zero-sized observations or actions")
        if obs_dim is None:
            obs_dim, action_dim = t["observations"].shape[1], t["actions"].shape[1]
        if t["observations"].shape[1] != obs_dim or t["actions"].shape[1] != action_dim:
            raise DemonstrationsError(
                f"{where} has obs/action sizes {t['observations'].shape[1]}/{t['actions'].shape[1]}, "
                f"trajectory 0 has {obs_dim}/{action_dim}; all trajectories must agree"
            )
        trajectories.append(t)
    if expected and (obs_dim, action_dim) != (expected.obs_dim, expected.action_dim):
        raise DemonstrationsError(
            f"obs/action sizes {obs_dim}/{action_dim} do not match task {expected.name} "
            f"({expected.obs_dim}/{expected.action_dim}); is this the right task's data?"
        )
    return trajectories


def read_official_ends(trajectories: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Trajectories with the official format's end markers read as time limits (module docstring):
    without a `truncations` key, `terminals` becomes all False and `truncations` marks the last step."""
    out = []
    for t in trajectories:
        if "truncations" in t:
            out.append(t)
            continue
        last_step = np.arange(len(t["terminals"])) == len(t["terminals"]) - 1  # (T,)
        out.append({**t, "terminals": np.zeros_like(t["terminals"]), "truncations": last_step})
    return out


def load_pickle_trajectories(path: str | Path, task: str | None = None) -> list[dict[str, np.ndarray]]:
    """Load and validate a demonstrations pickle safely (see pipeline.data.safe_pickle)."""
    path = Path(path)
    if not path.is_file():
        raise DemonstrationsError(f"no file at {path}")
    try:
        data = safe_load(path)
    except (UnsafePickleError, CorruptArrayError) as exc:
        raise DemonstrationsError(str(exc)) from None
    except Exception as exc:  # truncated or garbage bytes: pickle raises many error types
        raise DemonstrationsError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    return validate_trajectories(data, task)


def check_pickle_file(path: str | Path, task: str | None = None) -> str | None:
    """None if the file is legal, else a one-line reason (what `maq data check` prints)."""
    try:
        load_pickle_trajectories(path, task)
    except (DemonstrationsError, KeyError) as exc:
        return str(exc).strip("'\"")
    except RecursionError:
        return "the pickle nests too deeply to be demonstrations"
    return None
