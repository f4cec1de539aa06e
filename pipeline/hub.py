"""Share model artifacts (codebooks, agents) and prepared datasets on the Hugging Face Hub.

An artifact is a directory holding `config.json` (with `format_version` and `kind`), `model.safetensors`
and `README.md` (a model card whose YAML front matter carries `model-index` results; see
pipeline.artifacts.cards). This module works on any such directory:

    push_artifact("models/codebooks/door", "org/maq-door-codebook")   -> PushResult (commit sha)
    download_artifact("org/maq-door-codebook@<sha>")                  -> the snapshot dir in the HF cache
    resolve_artifact_dir("org/maq-door-codebook", "<sha>")            -> a local dir as is, else a Hub download
    parse_hub_spec("hub:org/maq-door-codebook@v1")                    -> ("org/maq-door-codebook", "v1")

Downloads go through `huggingface_hub.snapshot_download`, so they live in the Hugging Face cache
(`HF_HOME`/`HF_HUB_CACHE`, shared with every other HF library) and nowhere else; the files there are
read-only symlinks into the cache's blobs: read them, never write them.

Offline by default: nothing here runs unless asked. With `HF_HUB_OFFLINE=1`, or when the endpoint cannot be
reached, push and download fail within seconds with a message saying what to do (no retry loops); a
download of a revision already in the HF cache still works offline (`local_files_only=True`), and a
commit sha already cached is served from the cache without any request.

The endpoint is read from `HF_ENDPOINT` when each function is called (huggingface_hub itself reads it once, at
import) and passed to the client explicitly. Tokens come from `HF_TOKEN` or the HF login, through the client;
this module never prints, logs or writes them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import yaml

from pipeline.entry import UserError

ARTIFACT_FILES = ("config.json", "model.safetensors", "README.md")
DEFAULT_ENDPOINT = "https://huggingface.co"
NETWORK_PROBE_TIMEOUT_S = 3.0
LIBRARY_NAME = "maq-hub"

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_TRUE = ("1", "true", "yes", "on")


class HubError(UserError, RuntimeError):
    """A push or download cannot be done; the message says which repo, what failed and what to do."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str  # the branch pushed to
    commit_sha: str  # pin this for reproducible downloads: hub:<repo_id>@<commit_sha>
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


# ---------------------------------------------------------------- artifact directories and their cards


def split_front_matter(text: str) -> tuple[dict, str]:
    """A card's text → (YAML front matter as a dict, body). Raises HubError if the front matter is missing or bad."""
    if not text.startswith("---"):
        raise HubError("the card has no YAML front matter (it must start with a '---' line)")
    end = text.find("\n---", 3)
    if end < 0:
        raise HubError("the card's YAML front matter is not closed by a '---' line")
    try:
        metadata = yaml.safe_load(text[3:end]) or {}
    except yaml.YAMLError as exc:
        raise HubError(f"the card's YAML front matter does not parse: {exc}") from None
    if not isinstance(metadata, dict):
        raise HubError("the card's YAML front matter must be a mapping")
    body = text[end + 4:].split("\n", 1)[1] if "\n" in text[end + 4:] else ""
    return metadata, body.lstrip("\n")


def check_card(path: Path, repo_type: str) -> None:
    """`path` is a card the Hub reads: YAML front matter that huggingface_hub's ModelCard (or DatasetCard)
    parses strictly, and, for a model, `model-index` results. Raises HubError naming the file."""
    from huggingface_hub import DatasetCard, ModelCard

    text = path.read_text()
    try:
        split_front_matter(text)
        card = (DatasetCard if repo_type == "dataset" else ModelCard)(text, ignore_metadata_errors=False)
    except HubError as exc:
        raise HubError(f"{path}: {exc}") from None
    except Exception as exc:  # ValueError and others from huggingface_hub's card parser
        raise HubError(f"{path}: huggingface_hub cannot read the card's metadata ({type(exc).__name__}: {exc})") from None
    if repo_type != "dataset" and not card.data.eval_results:
        raise HubError(f"{path}: the model card has no model-index results; write cards with pipeline.artifacts.cards")


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
    check_card(local_dir / "README.md", "model")
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
    check_card(local_dir / "README.md", "dataset")
    for path in splits:
        _check_safetensors_header(path)
    return meta


def validate_dir(local_dir: str | Path, repo_type: str) -> dict:
    """A model artifact or (repo_type "dataset") a prepared dataset; see the two validators."""
    return validate_dataset_dir(local_dir) if repo_type == "dataset" else validate_artifact_dir(local_dir)


HIDDEN = [".*", "*/.*"]  # never uploaded: hidden files and folders (fnmatch: `*` spans folders)


def _artifact_files(local_dir: Path) -> list[Path]:
    """Files to upload: everything under the directory except hidden files and folders (HIDDEN)."""
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
    the directory's files (plus the Hub's `.gitattributes`): `upload_folder(delete_patterns="*")` adds the
    files and deletes the remote files the directory no longer has, in the same commit. Reads the local
    directory only. A failure names the step that failed; a commit is atomic on the Hub, so re-running the same
    push is always safe. huggingface_hub shows its progress on stderr.
    """
    local_dir = Path(local_dir)
    config = validate_dir(local_dir, repo_type)
    if not _REPO_ID.match(repo_id):
        raise HubError(f"invalid repo id {repo_id!r}: expected '<namespace>/<name>'")
    leaking = _tokens_in_files(_artifact_files(local_dir))
    if leaking:
        raise HubError(f"refusing to push {local_dir}: {', '.join(str(p) for p in leaking)} contain(s) your HF token; remove it")
    endpoint = hub_endpoint()
    target = f"{repo_id}@{revision} on {endpoint}"
    reason = hub_unreachable_reason(endpoint)
    if reason:
        raise HubError(f"cannot push {local_dir} to {target}: {reason}")

    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    api = _hf_api(endpoint)
    step = "create the repo"
    try:
        api.create_repo(repo_id, private=private, repo_type=repo_type, exist_ok=True)
        step = "list the branches"
        if revision != "main" and revision not in {b.name for b in api.list_repo_refs(repo_id, repo_type=repo_type).branches}:
            step = f"create branch {revision!r}"
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        step = "upload and commit"
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=local_dir,
            repo_type=repo_type,
            revision=revision,
            commit_message=commit_message or f"Upload {config.get('kind', 'dataset')} artifact ({local_dir.name})",
            ignore_patterns=list(HIDDEN),
            delete_patterns="*",  # remote files the directory lacks go in the same commit (.gitattributes stays)
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


# ---------------------------------------------------------------- download (through the HF cache)


def is_hub_ref(ref: str | Path) -> bool:
    """Whether `ref` names a Hub repo (`[hub:]namespace/name[@revision]`) rather than a local path: a path
    that exists is always local; otherwise a string of that shape is a repo id."""
    text = str(ref)
    if text.startswith("hub:"):
        return True
    if isinstance(ref, Path) or Path(text).exists():
        return False
    return bool(_REPO_ID.match(text.partition("@")[0]))


def _spec(ref: str, revision: str | None, default_revision: str | None) -> tuple[str, str]:
    repo_id, sep, spec_rev = ref.removeprefix("hub:").partition("@")
    if sep and revision is not None and spec_rev != revision:
        raise HubError(f"{ref!r} names revision {spec_rev!r} but revision={revision!r} was given; give one")
    chosen = (spec_rev if sep else None) or revision or default_revision
    return parse_hub_spec(f"{repo_id}@{chosen}" if chosen else repo_id)


def _validated(snapshot: Path, repo_id: str, revision: str, repo_type: str) -> Path:
    try:
        validate_dir(snapshot, repo_type)
    except HubError as exc:
        what = "dataset" if repo_type == "dataset" else "model artifact"
        raise HubError(f"{repo_id}@{revision} (commit {snapshot.name}) is not a valid {what}: "
                       f"{str(exc).replace(str(snapshot), 'the downloaded files')}; push a fresh one or pin another revision") from None
    return snapshot


def download_artifact(
    spec_or_repo: str,
    revision: str | None = None,
    *,
    repo_type: str = "model",
    cache_dir: str | Path | None = None,
    default_revision: str | None = None,
) -> Path:
    """Download an artifact through the HF cache and return its snapshot directory (read-only), validated.

    `spec_or_repo` is `'[hub:]org/name@rev'`, or a repo id with `revision` given (or `default_revision`,
    e.g. "main"; with neither, a revision is required). A commit sha already in the cache is returned without
    any request; a branch or tag is re-resolved when the Hub is reachable and taken from the cache when not.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = _spec(spec_or_repo, revision, default_revision)
    target = f"{repo_id}@{revision}"
    kw = dict(repo_type=repo_type, revision=revision, cache_dir=cache_dir, library_name=LIBRARY_NAME)
    if _COMMIT_SHA.match(revision):  # a commit never changes: a complete cached snapshot needs no request
        try:
            snapshot = Path(snapshot_download(repo_id, local_files_only=True, **kw))
            validate_dir(snapshot, repo_type)
            return snapshot
        except (LocalEntryNotFoundError, HubError):
            pass  # not cached, or cached in part: download it
    endpoint = hub_endpoint()
    reason = hub_unreachable_reason(endpoint)
    if reason:
        try:
            snapshot = Path(snapshot_download(repo_id, local_files_only=True, **kw))
        except LocalEntryNotFoundError:
            raise HubError(
                f"cannot download {target}: {reason}; it is not in the HF cache either. Download it once with network "
                "access (it is then kept in the HF cache), or train it locally instead"
            ) from None
        return _validated(snapshot, repo_id, revision, repo_type)
    try:
        snapshot = Path(snapshot_download(repo_id, endpoint=endpoint, **kw))
    except RevisionNotFoundError:
        raise HubError(f"cannot download {target} from {endpoint}: revision {revision!r} not found; pin an existing branch, tag or commit sha") from None
    except RepositoryNotFoundError:
        raise HubError(f"cannot download {target} from {endpoint}: repository not found (or private: set HF_TOKEN or run `hf auth login`)") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise HubError(f"cannot download {target} from {endpoint}: {_http_problem(exc)}; check the network and re-run") from None
    return _validated(snapshot, repo_id, revision, repo_type)


def resolve_artifact_dir(
    ref: str | Path,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    repo_type: str = "model",
) -> tuple[Path, str | None]:
    """A local artifact directory, or a Hub repo downloaded through the HF cache (`is_hub_ref`):
    `(directory, "repo_id@revision" or None if local)`. A Hub repo without a revision means its `main` branch."""
    if not is_hub_ref(ref):
        if revision is not None:
            raise HubError(f"{ref} is a local directory: a revision ({revision!r}) applies to Hub repos only")
        return Path(ref), None
    repo_id, rev = _spec(str(ref), revision, "main")
    try:
        return download_artifact(repo_id, rev, repo_type=repo_type, cache_dir=cache_dir), f"{repo_id}@{rev}"
    except HubError as exc:
        if str(ref).startswith("hub:"):
            raise
        raise HubError(f"{exc} (no local directory {str(ref)!r} exists either)") from None
