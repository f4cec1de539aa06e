"""The `prepare` step: load → validate → split whole episodes → write arrays, meta.json and a card.

Output directory (`data/prepared/<task>/`):
- `train.safetensors`, `test.safetensors`  `Episodes` of each split (see pipeline.data.episodes);
- `meta.json`   source and its content hash, sizes, D4RL references, split seed and episode ids,
                observation/action mean and std of the train split;
- `README.md`   the dataset card (pipeline.artifacts.cards.dataset_card): episodes, steps, returns, lengths, success;
- `start_states.safetensors`  only for a source that records env states (Minari's D4RL data): each test episode's
                start state, per env-state key (`load_test_start_states`), for the paired protocol.
The test split is the human reference that evaluation compares agents with.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pipeline.artifacts.cards import dataset_card
from pipeline.config import PrepareConfig
from pipeline.data.episodes import FORMAT_VERSION, Episodes
from pipeline.data.sources import LoadedSource
from pipeline.tasks import get_task

STD_FLOOR = 1e-6  # stored stds are floored so constant features can be divided by them
START_STATES_FILE = "start_states.safetensors"


def split_episodes(n_episodes: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle whole episodes with `seed`; the first `floor((1 - test_fraction) · E)` train.

    25 episodes with test_fraction 0.1 give 22 train / 3 test, the paper's split. Both splits are
    returned sorted, and each keeps at least one episode.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"prepare.test_fraction must be between 0 and 1, got {test_fraction}")
    if n_episodes < 2:
        raise ValueError(f"need at least 2 episodes to split into train and test, got {n_episodes}")
    order = np.random.default_rng(seed).permutation(n_episodes)
    n_train = min(max(int(np.floor((1.0 - test_fraction) * n_episodes + 1e-9)), 1), n_episodes - 1)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def _stats(values: np.ndarray) -> tuple[list[float], list[float]]:
    mean = values.astype(np.float64).mean(axis=0)
    std = np.maximum(values.astype(np.float64).std(axis=0), STD_FLOOR)
    return mean.tolist(), std.tolist()


def _summary(episodes: Episodes) -> dict:
    returns, lengths = episodes.returns(), episodes.lengths
    out = {
        "episodes": episodes.n_episodes,
        "steps": episodes.n_steps,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "length_mean": float(lengths.mean()),
        "length_min": int(lengths.min()),
        "length_max": int(lengths.max()),
    }
    if episodes.success is not None:
        final = np.array([episodes.success[s][-1] for s in episodes.episode_slices()])
        ever = np.array([episodes.success[s].any() for s in episodes.episode_slices()])
        out["success_rate_final_step"] = float(final.mean())
        out["success_rate_ever"] = float(ever.mean())
    return out


def write_prepared(task: str, loaded: LoadedSource, cfg: PrepareConfig, out_dir: Path) -> dict:
    """Split `loaded` and write `out_dir` (replacing it whole, never leaving it half-written)."""
    spec = get_task(task)
    episodes = loaded.episodes
    train_idx, test_idx = split_episodes(episodes.n_episodes, cfg.test_fraction, cfg.split_seed)
    train, test = episodes.select(train_idx), episodes.select(test_idx)
    obs_mean, obs_std = _stats(train.obs)
    action_mean, action_std = _stats(train.actions)
    meta = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "env_id": spec.env_id,
        "source": loaded.source,
        "source_description": loaded.description,
        "source_sha256": loaded.sha256,
        "obs_dim": episodes.obs_dim,
        "action_dim": episodes.action_dim,
        "ref_min_score": spec.ref_min_score,
        "ref_max_score": spec.ref_max_score,
        "split_seed": cfg.split_seed,
        "test_fraction": cfg.test_fraction,
        "train_episode_ids": train.episode_ids.tolist(),
        "test_episode_ids": test.episode_ids.tolist(),
        "obs_mean": obs_mean,
        "obs_std": obs_std,
        "action_mean": action_mean,
        "action_std": action_std,
        "train": _summary(train),
        "test": _summary(test),
    }
    if loaded.start_states is not None:  # real data that records env states: the paired protocol can restore them
        meta["test_start_states"] = START_STATES_FILE
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        train.save(staging / "train.safetensors")
        test.save(staging / "test.safetensors")
        if loaded.start_states is not None:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v[test_idx]) for k, v in loaded.start_states.items()}, staging / START_STATES_FILE)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (staging / "README.md").write_text(dataset_card(task, meta))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return meta


def load_test_start_states(task_dir: Path, meta: dict) -> list[dict[str, np.ndarray]] | None:
    """The env state each test episode starts from (`env.reset(options={"initial_state_dict": s})`), in test order,
    where the source records them (`minari_start_states`); None otherwise."""
    if "test_start_states" not in meta:
        return None
    from safetensors.numpy import load_file

    stacked = load_file(Path(task_dir) / meta["test_start_states"])
    return [{k: v[i] for k, v in stacked.items()} for i in range(len(meta["test_episode_ids"]))]


def load_prepared(task_dir: Path) -> tuple[Episodes, Episodes, dict]:
    """The train split, the test split and meta.json of a prepared task directory."""
    task_dir = Path(task_dir)
    meta_path = task_dir / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no prepared data in {task_dir}; run `dvc repro prepare` first")
    meta = json.loads(meta_path.read_text())
    return Episodes.load(task_dir / "train.safetensors"), Episodes.load(task_dir / "test.safetensors"), meta
