"""Small IO helpers: atomic writes and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or an exception leaves `path` as it was (old content or absent), never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; artifacts are meant to be shared
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(root: str | Path) -> str:
    """Hash of every file under `root` (relative paths and contents), independent of walk order."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(sha256_file(path).encode() + b"\0")
    return h.hexdigest()


def save_checkpoint_file(path: str | Path, tensors: dict, state: dict) -> None:
    """Write a resumable checkpoint atomically: torch tensors + a JSON-able `state` (which must hold
    the run's `fingerprint`) as the safetensors metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(state)})


def load_checkpoint_file(path: str | Path, fingerprint: str) -> tuple[dict, dict] | None:
    """(tensors, state) of a checkpoint written by `save_checkpoint_file`, or None (with a printed
    reason) when there is none, it is unreadable, or it belongs to another run (other fingerprint)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            state = json.loads(f.metadata()["state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # a torn or foreign file: start over rather than fail
        print(f"ignoring unreadable checkpoint {path} ({exc}); training from scratch")
        return None
    if state.get("fingerprint") != fingerprint:
        print(f"ignoring checkpoint {path}: it was made by a run with other params, data or codebook; training from scratch")
        return None
    return tensors, state


def remove_checkpoint(path: str | Path) -> None:
    """Remove a finished run's checkpoint file, and its directory when that is left empty."""
    path = Path(path)
    path.unlink(missing_ok=True)
    if path.parent.is_dir() and not any(path.parent.iterdir()):
        path.parent.rmdir()
