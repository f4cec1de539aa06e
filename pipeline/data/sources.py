"""Data sources: where a task's demonstrations come from, turned into validated `Episodes`.

A source is a string in params.yaml (`sources.<task>`):
- `synthetic`            this project's demonstrator output: the Minari dataset
                         `synthetic/<task>/human-v0` in the project's store `data/demos/<task>/`
                         (written by the `demos` stage);
- `minari:<dataset id>`  a Minari dataset, read from `data/sources/<task>/` used as a Minari store
                         (a dependency of `prepare@<task>`, so replacing the dataset re-runs prepare:
                         `MINARI_DATASETS_PATH=data/sources/<task> minari download <id>`), else from
                         the user's Minari store (`MINARI_DATASETS_PATH`, default ~/.minari/datasets),
                         which DVC does not track; downloaded (into `data/sources/<task>/`) only when
                         allowed;
- `pkl:<path>`           a pickle in the official MAQ format, loaded with a restricted unpickler;
                         its trajectory ends are time limits (`read_official_ends`). In the DAG
                         the file lives in `data/sources/<task>/`, a dependency of `prepare@<task>`,
                         so replacing it re-runs prepare (`Layout.sources`).

A Minari dataset is named by an id with a version (`D4RL/door/human-v2`): other data is another
version, so another param value. Read from the user's store, a dataset rewritten in place under
the same id is not noticed (prepare says so when it reads one from there); run
`dvc repro -s -f prepare@<task>` then, or move the dataset into `data/sources/<task>/`.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from pipeline.data.episodes import Episodes
from pipeline.data.validate import DemonstrationsError, load_pickle_trajectories, read_official_ends, validate_trajectories
from pipeline.entry import UserError
from pipeline.io import sha256_file, sha256_tree
from pipeline.tasks import get_task

NETWORK_PROBE_TIMEOUT_S = 3.0


class DataSourceError(UserError, RuntimeError):
    """A data source cannot be read; the message says how to get the data."""


@dataclass(frozen=True)
class LoadedSource:
    episodes: Episodes
    source: str  # the spec as written in params.yaml
    sha256: str  # content hash of the source files
    description: str  # what the data is, in words (e.g. "synthetic, not human data")
    untracked: Path | None = None  # where the data was read from when DVC does not track it (the user's Minari store)
    start_states: dict[str, np.ndarray] | None = None  # per env-state key, (E, ·): each episode's start (`minari_start_states`)


def parse_source(spec: str) -> tuple[str, str]:
    """`'minari:D4RL/door/human-v2'` → `('minari', 'D4RL/door/human-v2')`; `'synthetic'` → `('synthetic', '')`."""
    kind, _, ref = spec.partition(":")
    if kind == "synthetic" and not ref:
        return kind, ""
    if kind in ("minari", "pkl") and ref:
        return kind, ref
    raise DataSourceError(
        f"unknown data source {spec!r}; use 'synthetic', 'minari:<dataset id>' or 'pkl:<path>'"
    )


@contextmanager
def minari_store(root: Path | None) -> Iterator[Path]:
    """Point Minari at `root` (or leave its default store) for the duration of the block."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def require_network(purpose: str) -> None:
    """Fail within seconds, with a clear message, when the Hugging Face Hub cannot be reached.

    Minari downloads from the Hub (`hf://farama-minari`); without this check the client retries
    for about 23 s before failing. `HF_HUB_OFFLINE=1` refuses at once.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise DataSourceError(f"cannot {purpose}: HF_HUB_OFFLINE is set (offline mode); unset it to allow downloads")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=NETWORK_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise DataSourceError(f"cannot {purpose}: no connection to {host}:{port} ({exc}); check the network") from None


def _minari_dataset_dir(store: Path, dataset_id: str) -> Path:
    return store / dataset_id


def minari_source_store(dataset_id: str, sources_dir: Path | None) -> Path | None:
    """The Minari store to read `dataset_id` from: `sources_dir` (tracked by DVC) when the dataset is there or
    is in no store yet (a download lands there), else None: the user's store, where it is."""
    if sources_dir is None or (_minari_dataset_dir(sources_dir, dataset_id) / "data").is_dir():
        return sources_dir
    with minari_store(None) as user:
        return None if (_minari_dataset_dir(user, dataset_id) / "data").is_dir() else sources_dir


def minari_start_states(dataset) -> dict[str, np.ndarray] | None:
    """Each episode's start state, stacked per key ((E, ·), in episode order), where the dataset records the env
    state at every step: `infos["state"]`, the dict of `env.get_env_state()` at the reset and after each step (T + 1
    entries), which is what Minari's D4RL Adroit datasets hold. `env.reset(options={"initial_state_dict": s})`
    restores it. None when the dataset records no states (then the paired protocol is unavailable)."""
    starts = []
    for episode in dataset.iterate_episodes():
        state = (episode.infos or {}).get("state")
        if not isinstance(state, dict) or not state:
            return None
        T = len(episode.actions)
        for key, values in state.items():
            if len(values) != T + 1:
                raise DataSourceError(
                    f"infos['state'][{key!r}] of episode {episode.id} has {len(values)} entries, not {T + 1} (the reset's "
                    "and one per step), so the episode's start state cannot be told from it")
        starts.append({key: np.asarray(values[0], dtype=np.float64) for key, values in state.items()})
    if any(s.keys() != starts[0].keys() for s in starts):
        raise DataSourceError("the episodes' infos['state'] have different keys; cannot stack their start states")
    return {key: np.stack([s[key] for s in starts]) for key in sorted(starts[0])}


def episodes_from_minari(dataset, task: str | None = None) -> Episodes:
    """Convert a loaded `minari.MinariDataset` to validated `Episodes`.

    Episode ids are the env reset seeds where the dataset records them (the `episode_seeds`
    metadata of this project's synthetic datasets, which keep only successful attempts, so the
    seeds skip the failed ones), else Minari's episode ids.
    """
    seeds = dataset.storage.metadata.get("episode_seeds")
    seeds = json.loads(seeds) if seeds is not None else None
    trajectories, ids = [], []
    for episode in dataset.iterate_episodes():
        obs = np.asarray(episode.observations)  # (T + 1, S)
        T = len(episode.actions)
        trajectory = {
            "observations": obs[:-1],
            "next_observations": obs[1:],
            "actions": episode.actions,
            "rewards": episode.rewards,
            "terminals": episode.terminations,
            "truncations": episode.truncations,
        }
        success = (episode.infos or {}).get("success")
        if success is not None:
            success = np.asarray(success).reshape(-1)
            trajectory["success"] = success[-T:]  # infos may hold the reset step too (T + 1 entries)
        trajectories.append(trajectory)
        ids.append(int(episode.id) if seeds is None else int(seeds[episode.id]))
    return Episodes.from_trajectories(validate_trajectories(trajectories, task), episode_ids=ids)


def load_minari_source(dataset_id: str, task: str | None, store: Path | None, allow_download: bool,
                       ) -> tuple[Episodes, str, dict[str, np.ndarray] | None]:
    """Episodes, content hash and start states (`minari_start_states`) of a Minari dataset from the local store
    (downloading it only if allowed)."""
    import minari

    with minari_store(store) as root:
        dataset_dir = _minari_dataset_dir(root, dataset_id)
        if not (dataset_dir / "data").is_dir():
            if not allow_download:
                raise DataSourceError(
                    f"Minari dataset {dataset_id!r} is not in the local store {root}. On a machine with "
                    f"network run `minari download {dataset_id}` (with MINARI_DATASETS_PATH={root}), or set "
                    "`prepare.allow_download: true` in params.yaml to let the pipeline download it"
                )
            require_network(f"download Minari dataset {dataset_id!r}")
            minari.download_dataset(dataset_id)
        try:
            dataset = minari.load_dataset(dataset_id)
        except Exception as exc:
            raise DataSourceError(f"Minari dataset {dataset_id!r} in {root} cannot be read ({exc}); re-download it") from exc
        return episodes_from_minari(dataset, task), sha256_tree(dataset_dir), minari_start_states(dataset)


def require_tracked_file(task: str, ref: str, sources_dir: Path) -> None:
    """A `pkl:` file must lie in `sources_dir` (the DAG's dependency), or DVC would not see it change."""
    if not Path(ref).resolve().is_relative_to(sources_dir.resolve()):
        name = Path(ref).name
        raise DataSourceError(
            f"sources.{task} is 'pkl:{ref}', outside {sources_dir}/, which is what `prepare@{task}` depends on: "
            f"DVC would not notice when the file changes. Move it there (`mv {ref} {sources_dir}/`) and set "
            f"`sources.{task}: pkl:{sources_dir}/{name}`"
        )


def load_source(task: str, spec: str, *, synthetic_store: Path, allow_download: bool = False,
                sources_dir: Path | None = None) -> LoadedSource:
    """Load the demonstrations of `task` from the source `spec` (see module docstring). With
    `sources_dir`, a `pkl:` file must lie in it (`require_tracked_file`)."""
    kind, ref = parse_source(spec)
    if kind == "pkl" and sources_dir is not None:
        require_tracked_file(task, ref, sources_dir)
    untracked = start_states = None
    try:
        if kind == "synthetic":
            if not synthetic_store.is_dir():
                raise DataSourceError(
                    f"no synthetic demonstrations in {synthetic_store}; run `dvc repro demos@{task}` "
                    f"(or `maq data generate --task {task}`) first"
                )
            episodes, sha, _ = load_minari_source(get_task(task).synthetic_dataset_id, task, synthetic_store, False)  # seeds restore its starts
            description = "synthetic demonstrations from this project's human motor-control model (not human data)"
        elif kind == "minari":
            store = minari_source_store(ref, sources_dir)
            episodes, sha, start_states = load_minari_source(ref, task, store, allow_download)
            description = f"Minari dataset {ref}"
            if store is None and sources_dir is not None:
                with minari_store(None) as user:
                    untracked = _minari_dataset_dir(user, ref)  # read from there: DVC does not see it change
        else:
            episodes = Episodes.from_trajectories(read_official_ends(load_pickle_trajectories(ref, task)))
            sha = sha256_file(ref)
            description = f"demonstrations pickle {ref} (official MAQ format)"
    except DemonstrationsError as exc:
        raise DataSourceError(f"demonstrations from {spec!r} are malformed: {exc}") from None
    return LoadedSource(episodes=episodes, source=spec, sha256=sha, description=description,
                        untracked=untracked, start_states=start_states)
