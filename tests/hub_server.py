"""A loopback stand-in for the Hugging Face Hub: the HTTP API subset that `huggingface_hub` 2.4.0 calls
to create a repo, commit files and download them again.

    server = HubServer(token="hf_test")          # binds 127.0.0.1 on a free port
    server.start(); ...; server.stop()
    server.url                                   # use as HF_ENDPOINT
    server.fail_next_commits(1)                  # the next commit POST answers 500 (the client retries a 5xx)
    server.fail_next_commits(1, status=422)      # ... or another status (a 4xx is not retried)

Endpoints (repo ids are `namespace/name`; `{type}s` is `models`, `datasets` or `spaces`):
- `POST /api/repos/create`                          create (409 if it exists; an initial commit holds `.gitattributes`)
- `POST /api/validate-yaml`                         parse the card's YAML front matter (400 with errors if invalid)
- `GET  /api/{type}s/{repo}[/revision/{rev}]`       repo info: `id`, `sha`, `private`, `siblings`
- `POST /api/{type}s/{repo}/preupload/{rev}`        every file is a regular (base64) upload; `oid` = git blob sha1
- `POST /api/{type}s/{repo}/commit/{rev}`           NDJSON: header, `file` (base64), `deletedFile`, `deletedFolder`
- `POST /api/{type}s/{repo}/branch/{branch}`        create a branch (from `startingPoint` or main; 409 if it exists)
- `GET  /api/{type}s/{repo}/refs`                   branches (and empty tags/converts)
- `GET  /api/{type}s/{repo}/tree/{rev}[/{path}]`    file/folder listing (`recursive` honoured), one page
- `POST /api/{type}s/{repo}/paths-info/{rev}`       listing of given paths
- `HEAD|GET /[{type}s/]{repo}/resolve/{rev}/{path}` file bytes with `ETag`, `X-Repo-Commit`, `Content-Length`;
                                                    `Range: bytes=a-b` honoured
Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) as the Hub does, so the
client raises its typed errors. Revisions resolve by branch name or full commit sha. LFS/Xet uploads are
not implemented: preupload never answers `lfs`, and an `lfsFile` commit line is refused with 400.
If a token is configured, write requests without `Authorization: Bearer <token>` get 401. The server keeps
every Authorization header it saw only as a count (never the value), a log of (method, path), and the
requests it does not implement (`unhandled`; the client's optional agent-registry fetch lands there when
telemetry is on).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)


class HttpError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code, self.headers = status, message, error_code, headers or {}


class HubServer:
    def __init__(self, token: str | None = None, host: str = "127.0.0.1"):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorized_requests = 0
        self.unhandled: list[tuple[str, str]] = []  # requests for endpoints this stand-in does not implement
        self._fail_commits = 0
        self._fail_status = 500
        self._lock = threading.Lock()
        self._counter = 0
        self._httpd = ThreadingHTTPServer((host, 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail_next_commits(self, n: int = 1, status: int = 500) -> None:
        """Answer the next `n` commit POSTs with `status` (nothing is committed)."""
        with self._lock:
            self._fail_commits, self._fail_status = n, status

    def commits_of(self, repo_id: str, repo_type: str = "model") -> list[Commit]:
        """Commits reachable from `main`, newest first."""
        repo = self.repos[(repo_type, repo_id)]
        out, sha = [], repo.branches.get("main")
        while sha is not None:
            out.append(repo.commits[sha])
            sha = repo.commits[sha].parent
        return out

    # ---- state changes (under the lock) ----

    def _new_commit(self, repo: Repo, parent: str | None, message: str, files: dict[str, bytes]) -> Commit:
        self._counter += 1
        payload = json.dumps([repo.repo_id, parent, message, sorted((p, git_blob_sha1(b)) for p, b in files.items()), self._counter, time.time()])
        commit = Commit(hashlib.sha1(payload.encode()).hexdigest(), parent, message, files)
        repo.commits[commit.sha] = commit
        return commit

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HttpError(404, f"Repository Not Found for url: {repo_type}s/{repo_id}.", "RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        if revision in repo.branches:
            return repo.commits[repo.branches[revision]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet
                pass

            def do_GET(self):
                self._dispatch("GET")

            def do_HEAD(self):
                self._dispatch("HEAD")

            def do_POST(self):
                self._dispatch("POST")

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, body: bytes = b"", content_type: str = "application/json", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, obj, headers: dict | None = None):
                self._send(status, json.dumps(obj).encode(), headers=headers)

            def _dispatch(self, method: str):
                split = urlsplit(self.path)
                segments = [unquote(s) for s in split.path.split("/")[1:]]
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                body = self._body() if method == "POST" else b""
                with server._lock:
                    server.requests.append((method, split.path))
                    if self.headers.get("Authorization"):
                        server.authorized_requests += 1
                try:
                    if segments[:1] == ["api"]:
                        self._api(method, segments[1:], query, body)
                    else:
                        self._resolve_file(method, segments)
                except HttpError as err:
                    headers = dict(err.headers)
                    if err.error_code:
                        headers["X-Error-Code"] = err.error_code
                        headers["X-Error-Message"] = err.message
                    self._send(err.status, json.dumps({"error": err.message}).encode(), headers=headers, head=method == "HEAD")

            def _require_write(self):
                if server.token is not None and self.headers.get("Authorization") != f"Bearer {server.token}":
                    raise HttpError(401, "Invalid credentials in Authorization header")

            # ---- /api/... ----

            def _api(self, method: str, seg: list[str], query: dict, body: bytes):
                if method == "POST" and seg == ["repos", "create"]:
                    return self._create_repo(json.loads(body))
                if method == "POST" and seg == ["validate-yaml"]:
                    return self._validate_yaml(json.loads(body))
                if len(seg) >= 3 and seg[0] in REPO_TYPES:
                    repo_type, repo_id, rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
                    with server._lock:
                        repo = server._repo(repo_type, repo_id)
                    if method == "GET" and rest in ([], ["revision"]):
                        return self._repo_info(repo, "main")
                    if method == "GET" and rest[:1] == ["revision"]:
                        return self._repo_info(repo, "/".join(rest[1:]))
                    if method == "GET" and rest == ["refs"]:
                        return self._json(200, {
                            "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()],
                            "converts": [], "tags": [], "pullRequests": [],
                        })
                    if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                        return self._tree(repo, rest[1], "/".join(rest[2:]), query.get("recursive", "").lower() in ("1", "true"))
                    if method == "POST" and rest[:1] == ["paths-info"] and len(rest) == 2:
                        return self._paths_info(repo, rest[1], body)
                    if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                        return self._preupload(repo, rest[1], json.loads(body))
                    if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                        return self._commit(repo, rest[1], body)
                    if method == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                        return self._create_branch(repo, rest[1], json.loads(body or b"{}"))
                with server._lock:
                    server.unhandled.append((method, self.path))
                raise HttpError(404, f"not implemented by the test Hub: {method} /api/{'/'.join(seg)}")

            def _create_repo(self, payload: dict):
                self._require_write()
                repo_type = payload.get("type") or "model"
                repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else f"user/{payload['name']}"
                prefix = "" if repo_type == "model" else f"{repo_type}s/"
                url = f"{server.url}/{prefix}{repo_id}"
                with server._lock:
                    if (repo_type, repo_id) in server.repos:  # the Hub answers 409 with the repo's url
                        return self._json(409, {"error": "You already created this model repo", "url": url})
                    repo = Repo(repo_id, repo_type, private=payload.get("visibility") == "private" or bool(payload.get("private")))
                    first = server._new_commit(repo, None, "initial commit", {".gitattributes": GITATTRIBUTES})
                    repo.branches["main"] = first.sha
                    server.repos[(repo_type, repo_id)] = repo
                self._json(200, {"url": url, "name": repo_id, "id": repo_id})

            def _validate_yaml(self, payload: dict):
                content = payload.get("content", "")
                errors = []
                if content.startswith("---"):
                    end = content.find("\n---", 3)
                    if end < 0:
                        errors.append({"message": "YAML front matter is not closed with '---'"})
                    else:
                        try:
                            meta = yaml.safe_load(content[3:end])
                            if meta is not None and not isinstance(meta, dict):
                                errors.append({"message": "YAML front matter must be a mapping"})
                        except yaml.YAMLError as exc:
                            errors.append({"message": f"invalid YAML: {exc}"})
                self._json(400 if errors else 200, {"errors": errors, "warnings": []})

            def _repo_info(self, repo: Repo, revision: str):
                with server._lock:
                    commit = server._resolve(repo, revision)
                    self._json(200, {
                        "id": repo.repo_id, "modelId": repo.repo_id, "sha": commit.sha, "private": repo.private,
                        "disabled": False, "gated": False, "tags": [], "lastModified": "2025-01-01T00:00:00.000Z",
                        "siblings": [{"rfilename": p, "size": len(b), "blobId": git_blob_sha1(b)} for p, b in sorted(commit.files.items())],
                    })

            def _entries(self, files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
                base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
                out: dict[str, dict] = {}
                for path, data in sorted(files.items()):
                    if not path.startswith(base):
                        continue
                    parts = path[len(base):].split("/")
                    for depth in range(1, len(parts)):  # folders on the way
                        folder = base + "/".join(parts[:depth])
                        if depth == 1 or recursive:
                            out.setdefault(folder, {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder})
                        if not recursive:
                            break
                    if recursive or len(parts) == 1:
                        out[path] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": path}
                return list(out.values())

            def _tree(self, repo: Repo, revision: str, path: str, recursive: bool):
                with server._lock:
                    files = server._resolve(repo, revision).files
                    if path and path not in {e["path"] for e in self._entries(files, "", True) if e["type"] == "directory"}:
                        raise HttpError(404, f"{path} does not exist on {revision}", "EntryNotFound")
                    self._json(200, self._entries(files, path, recursive))

            def _paths_info(self, repo: Repo, revision: str, body: bytes):
                form = parse_qs(body.decode())
                wanted = set(form.get("paths", []))
                with server._lock:
                    entries = self._entries(server._resolve(repo, revision).files, "", True)
                self._json(200, [e for e in entries if e["path"] in wanted])

            def _preupload(self, repo: Repo, revision: str, payload: dict):
                self._require_write()
                with server._lock:
                    files = server._resolve(repo, revision).files if revision in repo.branches or revision in repo.commits else {}
                self._json(200, {"files": [
                    {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                     "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None}
                    for f in payload["files"]
                ], "commitOid": repo.branches.get(revision)})

            def _create_branch(self, repo: Repo, branch: str, payload: dict):
                self._require_write()
                with server._lock:
                    if branch in repo.branches:
                        raise HttpError(409, f"Reference refs/heads/{branch} already exists")
                    repo.branches[branch] = server._resolve(repo, payload.get("startingPoint") or "main").sha
                self._json(200, {})

            def _commit(self, repo: Repo, revision: str, body: bytes):
                self._require_write()
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                with server._lock:
                    if server._fail_commits > 0:
                        server._fail_commits -= 1
                        raise HttpError(server._fail_status, "Internal Error - We're working hard to fix this as soon as possible!"
                                        if server._fail_status >= 500 else "Unprocessable commit (test Hub)")
                    if revision not in repo.branches:
                        raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
                    parent = repo.branches[revision]
                    files = dict(repo.commits[parent].files)
                    header = {}
                    for line in lines:
                        key, value = line["key"], line["value"]
                        if key == "header":
                            header = value
                            if value.get("parentCommit") not in (None, parent):
                                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
                        elif key == "file":
                            if value.get("encoding") != "base64":
                                raise HttpError(400, f"unsupported encoding {value.get('encoding')!r}")
                            files[value["path"]] = base64.b64decode(value["content"])
                        elif key == "deletedFile":
                            if value["path"] not in files:
                                raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
                            del files[value["path"]]
                        elif key == "deletedFolder":
                            prefix = value["path"].rstrip("/") + "/"
                            files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                        else:
                            raise HttpError(400, f"the test Hub does not implement commit operation {key!r} (LFS/Xet)")
                    commit = server._new_commit(repo, parent, header.get("summary", ""), files)
                    repo.branches[revision] = commit.sha
                prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
                self._json(200, {"success": True, "commitOid": commit.sha, "commitUrl": f"{server.url}/{prefix}{repo.repo_id}/commit/{commit.sha}", "pullRequestUrl": None})

            # ---- /{repo}/resolve/{rev}/{path} ----

            def _resolve_file(self, method: str, seg: list[str]):
                repo_type = "model"
                if seg[:1] and seg[0] in REPO_TYPES and seg[0] != "models":
                    repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
                if method not in ("GET", "HEAD") or len(seg) < 5 or seg[2] != "resolve":
                    with server._lock:
                        server.unhandled.append((method, self.path))
                    raise HttpError(404, f"not implemented by the test Hub: {method} {self.path}")
                repo_id, revision, path = f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:])
                with server._lock:
                    repo = server._repo(repo_type, repo_id)
                    commit = server._resolve(repo, revision)
                    if path not in commit.files:
                        raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
                    data = commit.files[path]
                headers = {"ETag": f'"{git_blob_sha1(data)}"', "X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes"}
                status, rng = 200, self.headers.get("Range")
                if rng and rng.startswith("bytes=") and method == "GET":
                    start_s, _, end_s = rng[6:].partition("-")
                    start, end = int(start_s or 0), int(end_s) if end_s else len(data) - 1
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    data, status = data[start : end + 1], 206
                if method == "HEAD":
                    self.send_response(status)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    return
                self._send(status, data, "application/octet-stream", headers)

        return Handler
