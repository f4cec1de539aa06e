"""Share model artifacts (codebooks, agents) on the Hugging Face Hub.

An artifact is a directory holding `config.json` (with `format_version` and `kind`), `model.safetensors`
and `README.md` (a model card with YAML front matter). This module works on any such directory:

    push_artifact("models/codebooks/door", "org/maq-door-codebook")        -> PushResult (commit sha)
    pull_artifact("org/maq-door-codebook@<sha>")                           -> models/hub/org/maq-door-codebook/<sha>/
    parse_hub_spec("hub:org/maq-door-codebook@v1")                         -> ("org/maq-door-codebook", "v1")
    render_card(make_card_front_matter(...), body)                         -> README.md text

Offline by default: nothing here runs unless asked. With `HF_HUB_OFFLINE=1`, or when the endpoint cannot be
reached, push and pull fail within seconds with a message saying what to do (no retry loops); a pull of a
revision already in the local store (or in the HF cache) still works offline.

The endpoint is read from `HF_ENDPOINT` when each function is called (huggingface_hub itself reads it once, at
import) and passed to the client explicitly. Tokens come from `HF_TOKEN` or the HF login, through the client;
this module never prints, logs or writes them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote, urlparse

import yaml

from pipeline.entry import UserError
from pipeline.io import sha256_file, write_json_atomic

ARTIFACT_FILES = ("config.json", "model.safetensors", "README.md")
DEFAULT_STORE = Path("models/hub")  # pulled artifacts: <store>/<repo_id>/<revision>/
DEFAULT_ENDPOINT = "https://huggingface.co"
NETWORK_PROBE_TIMEOUT_S = 3.0
LIBRARY_NAME = "maq-hub"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_TRUE = ("1", "true", "yes", "on")


class HubError(UserError, RuntimeError):
    """A push or pull cannot be done; the message says which repo, what failed and what to do."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str  # the branch pushed to
    commit_sha: str  # pin this for reproducible pulls: hub:<repo_id>@<commit_sha>
    commit_url: str


# ---------------------------------------------------------------- specs and environment


def parse_hub_spec(spec: str) -> tuple[str, str]:
    """`'hub:org/name@rev'` (or `'org/name@rev'`) → `('org/name', 'rev')`. The revision is required."""
    ref = spec[len("hub:"):] if spec.startswith("hub:") else spec
    repo_id, sep, revision = ref.partition("@")
    if not _REPO_ID.match(repo_id):
        raise HubError(f"invalid Hub spec {spec!r}: expected 'hub:<namespace>/<name>@<revision>'")
    if not sep or not revision:
        raise HubError(
            f"Hub spec {spec!r} has no revision: pin one for reproducibility, e.g. 'hub:{repo_id}@<commit sha>' "
            f"(best: the commit sha printed by `maq hub push`) or 'hub:{repo_id}@<branch or tag>'"
        )
    return repo_id, revision


def hub_endpoint() -> str:
    """The Hub URL: `HF_ENDPOINT` as set now (not at import), else https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline_flag() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return True
    try:  # the client read the flag at import; if it says offline it refuses every request
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def hub_unreachable_reason(endpoint: str | None = None) -> str | None:
    """Why the Hub cannot be used now (offline mode, or no TCP connection within 3 s), or None if it can."""
    if _offline_flag():
        return "HF_HUB_OFFLINE is set (offline mode); unset it (HF_HUB_OFFLINE=0) to allow Hub access"
    url = urlparse(endpoint or hub_endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=NETWORK_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"no connection to {host}:{port} ({exc}); check the network or HF_ENDPOINT"
    return None


def _hf_api(endpoint: str):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, library_name=LIBRARY_NAME)


def _http_problem(exc: Exception) -> str:
    """One line about a client error, without request headers (the token travels there)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"HTTP {status}: {first_line}" if status else f"{type(exc).__name__}: {first_line}"


# ---------------------------------------------------------------- artifact directories and cards


def split_front_matter(text: str) -> tuple[dict, str]:
    """A card's text → (YAML front matter as a dict, body). Raises HubError if the front matter is missing or bad."""
    if not text.startswith("---"):
        raise HubError("the model card has no YAML front matter (it must start with a '---' line)")
    end = text.find("\n---", 3)
    if end < 0:
        raise HubError("the model card's YAML front matter is not closed by a '---' line")
    try:
        metadata = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as exc:
        raise HubError(f"the model card's YAML front matter does not parse: {exc}") from None
    if not isinstance(metadata, dict):
        raise HubError("the model card's YAML front matter must be a mapping")
    body = text[end + 4:].split("\n", 1)[1] if "\n" in text[end + 4:] else ""
    return metadata, body.lstrip("\n")


def _check_safetensors_header(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HubError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise HubError(f"{path} is truncated: its header says {n} bytes of metadata, the file has {size - 8}")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise HubError(f"{path} is not a safetensors file (its header is not JSON)") from None
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if ends and 8 + n + max(ends) > size:
        raise HubError(f"{path} is truncated: tensors need {8 + n + max(ends)} bytes, the file has {size}")


def validate_artifact_dir(local_dir: str | Path) -> dict:
    """Check that `local_dir` is a model artifact; return its config. Raises HubError saying what is wrong."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise HubError(f"{local_dir} is not a directory (a model artifact is a directory)")
    missing = [name for name in ARTIFACT_FILES if not (local_dir / name).is_file()]
    if missing:
        raise HubError(f"{local_dir} is not a model artifact: missing {', '.join(missing)} (an artifact holds {', '.join(ARTIFACT_FILES)})")
    try:
        config = json.loads((local_dir / "config.json").read_text())
    except ValueError as exc:
        raise HubError(f"{local_dir / 'config.json'} does not parse as JSON: {exc}") from None
    if not isinstance(config, dict):
        raise HubError(f"{local_dir / 'config.json'} must hold a JSON object")
    absent = [key for key in ("format_version", "kind") if key not in config]
    if absent:
        raise HubError(f"{local_dir / 'config.json'} lacks {', '.join(absent)}")
    try:
        split_front_matter((local_dir / "README.md").read_text())
    except HubError as exc:
        raise HubError(f"{local_dir / 'README.md'}: {exc}") from None
    _check_safetensors_header(local_dir / "model.safetensors")
    return config


def validate_dataset_dir(local_dir: str | Path) -> dict:
    """Check that `local_dir` is a prepared dataset (the `prepare` stage's output: meta.json, split
    safetensors files, README.md dataset card); return meta.json. Raises HubError saying what is wrong."""
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise HubError(f"{local_dir} is not a directory (a dataset is a directory)")
    missing = [name for name in ("meta.json", "README.md") if not (local_dir / name).is_file()]
    splits = sorted(local_dir.glob("*.safetensors"))
    if missing or not splits:
        raise HubError(f"{local_dir} is not a prepared dataset: it needs meta.json, README.md and split .safetensors files")
    try:
        meta = json.loads((local_dir / "meta.json").read_text())
    except ValueError as exc:
        raise HubError(f"{local_dir / 'meta.json'} does not parse as JSON: {exc}") from None
    try:
        split_front_matter((local_dir / "README.md").read_text())
    except HubError as exc:
        raise HubError(f"{local_dir / 'README.md'}: {exc}") from None
    for path in splits:
        _check_safetensors_header(path)
    return meta


def validate_dir(local_dir: str | Path, repo_type: str) -> dict:
    """A model artifact or (repo_type "dataset") a prepared dataset; see the two validators."""
    return validate_dataset_dir(local_dir) if repo_type == "dataset" else validate_artifact_dir(local_dir)


def _artifact_files(local_dir: Path) -> list[Path]:
    """Files to upload: everything under the directory except hidden files and folders."""
    return sorted(p for p in local_dir.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(local_dir).parts))


def _tokens_in_files(files: Sequence[Path]) -> list[Path]:
    """Files that contain the HF token in use (never pushed)."""
    try:
        from huggingface_hub import get_token

        token = get_token()
    except ImportError:
        token = os.environ.get("HF_TOKEN")
    if not token or len(token) < 16:  # real tokens are long; a short test value would match by chance
        return []
    needle = token.encode()
    return [p for p in files if needle in p.read_bytes()]


def _plain(value):
    """numpy scalars and tuples → plain Python, so the card dumps with yaml.safe_dump."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def make_card_front_matter(
    *,
    model_name: str,
    dataset: str,
    metrics: Mapping[str, float] | Sequence[Mapping[str, Any]],
    task_type: str = "reinforcement-learning",
    task_name: str = "Reinforcement Learning",
    dataset_name: str | None = None,
    tags: Sequence[str] = (),
    datasets: Sequence[str] | None = None,
    license: str | None = None,
    library_name: str = LIBRARY_NAME,
) -> dict:
    """Card metadata with `library_name`, `tags`, `datasets` and one `model-index` result.

    `metrics` is `{type: value}` (name = type) or a list of `{"name", "type", "value"}` dicts; `dataset` is
    the id of the evaluation data (e.g. `D4RL/door/human-v2`). Stages fill in the values.
    """
    if isinstance(metrics, Mapping):
        metric_list = [{"name": k, "type": k, "value": v} for k, v in metrics.items()]
    else:
        metric_list = [dict(m) for m in metrics]
    for m in metric_list:
        if not {"type", "value"} <= m.keys():
            raise ValueError(f"a metric needs 'type' and 'value': {m}")
        m.setdefault("name", m["type"])
    metadata = {
        "library_name": library_name,
        "tags": list(dict.fromkeys([*tags, "reinforcement-learning", "maq", "macro-actions"])),
        "datasets": list(datasets) if datasets is not None else [dataset],
    }
    if license is not None:
        metadata["license"] = license
    metadata["model-index"] = [{
        "name": model_name,
        "results": [{
            "task": {"type": task_type, "name": task_name},
            "dataset": {"type": dataset, "name": dataset_name or dataset},
            "metrics": [{"name": m["name"], "type": m["type"], "value": m["value"], **{k: v for k, v in m.items() if k not in ("name", "type", "value")}} for m in metric_list],
        }],
    }]
    return _plain(metadata)


def render_card(metadata: Mapping[str, Any], body: str) -> str:
    """README.md text: YAML front matter between '---' lines, then the body (markdown)."""
    front = yaml.safe_dump(_plain(metadata), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return f"---\n{front}---\n\n{body.strip()}\n"


# ---------------------------------------------------------------- push


def push_artifact(
    local_dir: str | Path,
    repo_id: str,
    *,
    revision: str = "main",
    commit_message: str | None = None,
    private: bool = False,
    repo_type: str = "model",
) -> PushResult:
    """Upload an artifact directory to `repo_id` at branch `revision` in one commit; return the commit.

    Validates the directory first, creates the repo (and branch) if missing, and makes the branch hold exactly
    the directory's files (plus the Hub's `.gitattributes`). Reads the local directory only. A failure names the
    step that failed; a commit is atomic on the Hub, so re-running the same push is always safe.
    """
    local_dir = Path(local_dir)
    config = validate_dir(local_dir, repo_type)
    if not _REPO_ID.match(repo_id):
        raise HubError(f"invalid repo id {repo_id!r}: expected '<namespace>/<name>'")
    files = _artifact_files(local_dir)
    leaking = _tokens_in_files(files)
    if leaking:
        raise HubError(f"refusing to push {local_dir}: {', '.join(str(p) for p in leaking)} contain(s) your HF token; remove it")
    endpoint = hub_endpoint()
    target = f"{repo_id}@{revision} on {endpoint}"
    reason = hub_unreachable_reason(endpoint)
    if reason:
        raise HubError(f"cannot push {local_dir} to {target}: {reason}")

    import httpx2
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    api = _hf_api(endpoint)
    step = "create the repo"
    try:
        api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True)
        step = "list the branch"
        if revision != "main" and revision not in {b.name for b in api.list_repo_refs(repo_id, repo_type=repo_type).branches}:
            step = f"create branch {revision!r}"
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        step = "list the files already there"
        remote = {f.path for f in api.list_repo_tree(repo_id, revision=revision, recursive=True, repo_type=repo_type) if hasattr(f, "blob_id")}
        local = {p.relative_to(local_dir).as_posix() for p in files}
        operations = [CommitOperationAdd(path_in_repo=p.relative_to(local_dir).as_posix(), path_or_fileobj=str(p)) for p in files]
        operations += [CommitOperationDelete(path_in_repo=p) for p in sorted(remote - local) if p != ".gitattributes"]
        step = "commit"
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {config.get('kind', 'dataset')} artifact ({local_dir.name})",
            revision=revision,
            repo_type=repo_type,
        )
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        hint = (
            "set HF_TOKEN (or run `hf auth login`) with a token that can write to this namespace"
            if status in (401, 403)
            else "nothing was committed (a Hub commit is all or nothing) and the local artifact is unchanged; re-run the same push"
        )
        raise HubError(f"push of {local_dir} to {target} failed at step '{step}': {_http_problem(exc)}; {hint}") from None
    except (httpx2.TransportError, OSError) as exc:
        raise HubError(
            f"push of {local_dir} to {target} failed at step '{step}': {_http_problem(exc)}; the local artifact is "
            "unchanged; check the network and re-run the same push"
        ) from None
    return PushResult(repo_id=repo_id, revision=revision, commit_sha=info.oid, commit_url=info.commit_url)


# ---------------------------------------------------------------- pull


def _store_dir(store: str | Path, repo_id: str, revision: str) -> Path:
    return Path(store) / repo_id / quote(revision, safe="")


def _manifest_path(dest: Path) -> Path:
    return dest.parent / f"{dest.name}.pull.json"


def _read_complete_manifest(dest: Path) -> dict | None:
    """The pull manifest if `dest` holds exactly what was pulled (files and sha256s), else None."""
    try:
        manifest = json.loads(_manifest_path(dest).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for name, digest in files.items():
        path = dest / name
        if not path.is_file() or sha256_file(path) != digest:
            return None
    return manifest


def _materialize(snapshot: Path, dest: Path, repo_id: str, revision: str, commit_sha: str, repo_type: str = "model") -> Path:
    """Copy a snapshot (minus `.gitattributes`) into `dest` atomically, then write its manifest beside it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        for src in sorted(snapshot.rglob("*")):
            rel = src.relative_to(snapshot)
            if src.is_file() and rel.as_posix() != ".gitattributes" and not rel.parts[0].startswith("."):
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp / rel)  # follows the cache's symlinks to the blobs
        try:
            validate_dir(tmp, repo_type)
        except HubError as exc:
            raise HubError(f"{repo_id}@{revision} (commit {commit_sha}) is not a {'dataset' if repo_type == 'dataset' else 'model artifact'}: "
                           f"{str(exc).replace(str(tmp), 'the pulled files')}") from None
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        _manifest_path(dest).unlink(missing_ok=True)
        if dest.exists():
            trash = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
            os.replace(dest, trash / "old")
            os.replace(tmp, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_json_atomic(_manifest_path(dest), {"repo_id": repo_id, "revision": revision, "commit_sha": commit_sha, "files": files})
    return dest


def pull_artifact(
    spec_or_repo: str,
    revision: str | None = None,
    store: str | Path = DEFAULT_STORE,
    *,
    repo_type: str = "model",
    cache_dir: str | Path | None = None,
) -> Path:
    """Download an artifact into `<store>/<repo_id>/<revision>/` and return that directory.

    `spec_or_repo` is `'[hub:]org/name@rev'`, or a repo id with `revision` given. A commit-sha revision already
    in the store is returned without any network access; a branch or tag is re-resolved when the Hub is
    reachable and taken from the store (or the HF cache, `cache_dir`) when it is not.
    """
    if revision is None:
        repo_id, revision = parse_hub_spec(spec_or_repo)
    else:
        repo_id, sep, spec_rev = spec_or_repo.removeprefix("hub:").partition("@")
        if sep and spec_rev != revision:
            raise HubError(f"{spec_or_repo!r} names revision {spec_rev!r} but revision={revision!r} was given; give one")
        repo_id, revision = parse_hub_spec(f"{repo_id}@{revision}")
    dest = _store_dir(store, repo_id, revision)
    manifest = _read_complete_manifest(dest)
    if manifest is not None and _COMMIT_SHA.match(revision):
        return dest  # a commit never changes

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hub_endpoint()
    target = f"{repo_id}@{revision}"
    reason = hub_unreachable_reason(endpoint)
    if reason:
        if manifest is not None:
            return dest
        try:  # the HF cache may hold it from an earlier download
            snapshot = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type, cache_dir=cache_dir, local_files_only=True))
        except LocalEntryNotFoundError:
            raise HubError(
                f"cannot pull {target}: {reason}; it is not in the local store ({dest}) nor in the HF cache. "
                "Pull it once with network access (it is then kept in the store), or train it locally instead"
            ) from None
        return _materialize(snapshot, dest, repo_id, revision, snapshot.name, repo_type)

    try:
        snapshot = Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type, cache_dir=cache_dir, endpoint=endpoint))
    except RevisionNotFoundError:
        raise HubError(f"cannot pull {target} from {endpoint}: revision {revision!r} not found; pin an existing branch, tag or commit sha") from None
    except RepositoryNotFoundError:
        raise HubError(f"cannot pull {target} from {endpoint}: repository not found (or private: set HF_TOKEN or run `hf auth login`)") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise HubError(f"cannot pull {target} from {endpoint}: {_http_problem(exc)}; check the network and re-run") from None
    commit_sha = snapshot.name  # the HF cache keeps snapshots under their commit sha
    if manifest is not None and manifest.get("commit_sha") == commit_sha:
        return dest
    return _materialize(snapshot, dest, repo_id, revision, commit_sha, repo_type)
