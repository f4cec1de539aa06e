"""The codebook stage as a function: prepared data in, codebook artifact + metrics + curve out.

`stages/codebook.py` and `pipeline.benchmarks.codebook` both call `run_codebook`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.artifacts.cards import codebook_card
from pipeline.codebook.metrics import code_counts, macro_mse, mean_macro_baseline_mse, perplexity, used_codes
from pipeline.codebook.model import Codebook
from pipeline.codebook.train import CHECKPOINT_FILE, TrainResult, train_codebook
from pipeline.config import CodebookConfig, section_to_dict
from pipeline.data.episodes import Episodes
from pipeline.data.windows import Windows, make_windows
from pipeline.io import remove_checkpoint, write_json_atomic
from pipeline.live import CurveLog

META_KEYS = ("task", "source", "source_sha256", "obs_dim", "action_dim", "obs_mean", "obs_std", "action_mean", "action_std")


@dataclass(frozen=True)
class Prepared:
    meta: dict
    train: Episodes
    test: Episodes

    @property
    def stats(self) -> dict:
        return {k: np.asarray(self.meta[k], dtype=np.float32) for k in ("obs_mean", "obs_std", "action_mean", "action_std")}


def load_prepared(directory: str | Path) -> Prepared:
    """Read a prepare-stage output (meta.json, train/test.safetensors) and check what the codebook needs."""
    from pipeline.data.prepare import load_prepared as load_split

    directory = Path(directory)
    train, test, meta = load_split(directory)
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{directory / 'meta.json'} lacks {', '.join(missing)}; re-run the prepare stage")
    for name, episodes in (("train", train), ("test", test)):
        if (episodes.obs_dim, episodes.action_dim) != (meta["obs_dim"], meta["action_dim"]):
            raise ValueError(f"{directory}/{name}.safetensors has obs/action dims {episodes.obs_dim}/{episodes.action_dim}, meta.json says {meta['obs_dim']}/{meta['action_dim']}; re-run prepare")
    return Prepared(meta=meta, train=train, test=test)


def evaluate_codebook(codebook: Codebook, train: Windows, test: Windows) -> dict:
    """The reported numbers: recon MSE in action units (train and test), the mean-macro baseline
    on test windows, and code usage on test (and train) windows."""
    K = codebook.spec.K
    train_code, test_code = codebook.encode(train.obs, train.macro), codebook.encode(test.obs, test.macro)
    train_counts, test_counts = code_counts(train_code, K), code_counts(test_code, K)
    test_mse = macro_mse(codebook.decode(test.obs, test_code), test.macro)
    baseline = mean_macro_baseline_mse(train.macro, test.macro)
    return {
        "train_mse": macro_mse(codebook.decode(train.obs, train_code), train.macro),
        "test_mse": test_mse,
        "test_baseline_mse": baseline,
        "test_mse_ratio": test_mse / baseline if baseline > 0 else float("nan"),
        "test_used_codes": used_codes(test_counts),
        "test_perplexity": perplexity(test_counts),
        "test_max_code_share": float(test_counts.max() / max(test_counts.sum(), 1)),
        "test_min_code_share": float(test_counts.min() / max(test_counts.sum(), 1)),
        "test_code_counts": test_counts.tolist(),
        "train_used_codes": used_codes(train_counts),
        "train_perplexity": perplexity(train_counts),
        "train_code_counts": train_counts.tolist(),
        "n_train_windows": len(train),
        "n_test_windows": len(test),
    }


def run_codebook(
    task: str,
    cfg: CodebookConfig,
    prepared_dir: str | Path,
    out_dir: str | Path,
    metrics_path: str | Path,
    curve_dir: str | Path,
    checkpoint_dir: str | Path,
    checkpoint_every: int = 0,
    progress: bool = True,
) -> tuple[TrainResult, dict]:
    """Train, evaluate and write everything the stage declares; remove the checkpoint at the end."""
    prepared = load_prepared(prepared_dir)
    if prepared.meta["task"] != task:
        raise ValueError(f"{prepared_dir}/meta.json is for task {prepared.meta['task']!r}, not {task!r}")
    train, test = make_windows(prepared.train, cfg.H), make_windows(prepared.test, cfg.H)
    info = {"task": task, "data_source": prepared.meta["source"], "data_source_sha256": prepared.meta["source_sha256"], "training": section_to_dict(cfg)}
    result = train_codebook(train, cfg, prepared.stats, test=test, checkpoint_dir=checkpoint_dir,
                            checkpoint_every=checkpoint_every, curve_dir=curve_dir, info=info, progress=progress)
    metrics = evaluate_codebook(result.codebook, train, test)
    metrics["train_seconds"] = round(result.train_seconds, 2)
    digest = result.codebook.hash
    metrics["codebook_sha256"] = digest
    written = result.codebook.save_pretrained(out_dir, card=codebook_card(result.codebook, metrics, cfg, prepared.meta, digest))
    assert written == digest
    # scalars for `dvc metrics`; not the wall time, so that a re-run writes the same bytes
    write_json_atomic(metrics_path, {k: v for k, v in metrics.items() if not isinstance(v, list) and k != "train_seconds"})
    remove_checkpoint(Path(checkpoint_dir) / CHECKPOINT_FILE)
    return result, metrics


def fetch_codebook(
    task: str,
    source: str,
    prepared_dir: str | Path,
    out_dir: str | Path,
    metrics_path: str | Path,
    curve_dir: str | Path,
    cache_dir: str | Path | None = None,
) -> tuple[Codebook, dict]:
    """`codebook.source: hub:<repo>@<revision>`: download a pretrained codebook (through the HF cache)
    instead of training one, check it fits the task's data, measure it on the prepared windows, and write
    the same outputs as `run_codebook` (the training curve is empty: there was no training here)."""
    import shutil

    from pipeline.hub import download_artifact

    snapshot = download_artifact(source, cache_dir=cache_dir)  # a revision is required: the spec pins it
    codebook = Codebook.from_pretrained(snapshot)
    prepared = load_prepared(prepared_dir)
    meta, spec = prepared.meta, codebook.spec
    if (spec.obs_dim, spec.action_dim) != (meta["obs_dim"], meta["action_dim"]):
        raise ValueError(f"{source} is a codebook for obs/action dims {spec.obs_dim}/{spec.action_dim}, but {task} data has "
                         f"{meta['obs_dim']}/{meta['action_dim']}: use a codebook trained on {task}")
    if codebook.info.get("task") not in (None, task):
        raise ValueError(f"{source} was trained on {codebook.info['task']!r}, not {task!r}: use a codebook trained on {task}")
    metrics = evaluate_codebook(codebook, make_windows(prepared.train, spec.H), make_windows(prepared.test, spec.H))
    metrics.update(train_seconds=0.0, codebook_sha256=codebook.hash, source=source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors", "README.md"):  # the downloaded bytes, unchanged (copyfile follows the cache's symlinks)
        shutil.copyfile(snapshot / name, out_dir / name)
    write_json_atomic(metrics_path, {k: v for k, v in metrics.items() if not isinstance(v, list) and k != "train_seconds"})
    CurveLog(curve_dir, "epoch").close()  # an empty curve
    return codebook, metrics
