"""The Hub layer (push with upload_folder, downloads through the HF cache) against a loopback Hub (tests/hub_server.py) with the real huggingface_hub client.

conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported, and the client reads HF_ENDPOINT,
HF_HUB_OFFLINE and HF_HUB_DISABLE_TELEMETRY once at import. In-process tests therefore go online through
the `online` fixture, which sets the environment (read by pipeline.hub at call time) and the matching
`huggingface_hub.constants` for the duration of one test; telemetry off keeps the client from fetching its
agent registry from huggingface.co. CLI tests run `maq` in a subprocess with the environment set before import.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file, save_file

from tests.hub_server import HubServer
from pipeline.artifacts.cards import _model_data, card_text, rl_result
from pipeline.hub import (
    HubError,
    download_artifact,
    is_hub_ref,
    parse_hub_spec,
    push_artifact,
    resolve_artifact_dir,
    validate_artifact_dir,
)
from pipeline.io import sha256_file

TOKEN = "hf_TESTtokenNEVERprintXYZ0123456789"
REPO = "maq-test/door-codebook"
REPO_ROOT = Path(__file__).resolve().parents[1]


def write_artifact(root: Path, seed: int = 0, kind: str = "codebook") -> Path:
    """A small artifact directory: config.json, model.safetensors (safetensors.numpy), README.md."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    save_file({"codebook": rng.normal(size=(8, 4)).astype(np.float32), "obs_mean": np.zeros(39, np.float32)}, str(root / "model.safetensors"))
    (root / "config.json").write_text(json.dumps({"format_version": 1, "kind": kind, "K": 8, "D": 4, "seed": seed}, indent=2) + "\n")
    env = "AdroitHandDoor-v1"
    data = _model_data(model_name=f"maq-{kind}-door", tags=["door"], datasets=["maq-test/maq-door-demos"],
                       eval_results=[rl_result(env, "mean_reward", 12.5 + seed), rl_result(env, "success_rate", np.float64(0.75))])
    (root / "README.md").write_text(card_text(data, f"# MAQ {kind} (seed {seed})\n\nTest artifact."))
    return root


def file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


def _set_client(monkeypatch, endpoint: str, offline: bool) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")


@pytest.fixture
def online(hub, monkeypatch, tmp_path):
    """Client pointed at the loopback Hub, online, with HF_TOKEN set; returns a switch to go offline."""
    _set_client(monkeypatch, hub.url, offline=False)
    return lambda offline=True: _set_client(monkeypatch, hub.url, offline=offline)


def test_parse_hub_spec():
    assert parse_hub_spec("hub:org/name@v1") == ("org/name", "v1")
    assert parse_hub_spec("org/name@" + "a" * 40) == ("org/name", "a" * 40)
    with pytest.raises(HubError, match=r"no revision: pin one .*commit sha"):
        parse_hub_spec("hub:org/name")
    with pytest.raises(HubError, match="invalid Hub spec"):
        parse_hub_spec("hub:just-a-name@main")


def test_a_local_path_that_exists_wins_over_a_repo_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_ref("org/name") and is_hub_ref("org/name@v1") and is_hub_ref("hub:org/name@v1")
    assert not is_hub_ref("models/codebooks/door") and not is_hub_ref(Path("org/name"))
    write_artifact(tmp_path / "org" / "name")
    assert not is_hub_ref("org/name")
    assert resolve_artifact_dir("org/name") == (Path("org/name"), None)


def test_round_trip_is_bit_identical_in_one_commit(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    before = file_hashes(art)
    result = push_artifact(art, REPO)
    assert result.repo_id == REPO and result.revision == "main" and len(result.commit_sha) == 40
    commits = hub.commits_of(REPO)
    assert [c.sha for c in commits][0] == result.commit_sha and len(commits) == 2  # repo creation + one push
    assert sum(1 for method, path in hub.requests if path.endswith("/commit/main")) == 1
    assert sorted(commits[0].files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]

    cache = tmp_path / "cache"
    snapshot = download_artifact(f"hub:{REPO}@{result.commit_sha}", cache_dir=cache)
    assert snapshot.is_relative_to(cache) and snapshot.name == result.commit_sha  # the HF cache, no copy elsewhere
    assert {k: v for k, v in file_hashes(snapshot).items() if k != ".gitattributes"} == before  # bit-identical
    assert file_hashes(art) == before
    assert validate_artifact_dir(snapshot)["kind"] == "codebook"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "cache"]  # nothing written beside the cache
    assert hub.unhandled == []  # the stand-in answered every call the client made


def test_older_revision_gives_old_bytes_after_second_push(online, hub, tmp_path):
    first = push_artifact(write_artifact(tmp_path / "v1", seed=1), REPO)
    second = push_artifact(write_artifact(tmp_path / "v2", seed=2), REPO, commit_message="second")
    assert first.commit_sha != second.commit_sha and hub.commits_of(REPO)[0].message == "second"

    cache = tmp_path / "cache"
    old = download_artifact(REPO, revision=first.commit_sha, cache_dir=cache)
    new = download_artifact(f"{REPO}@main", cache_dir=cache)
    assert new.name == second.commit_sha
    np.testing.assert_array_equal(load_file(str(old / "model.safetensors"))["codebook"], load_file(str(tmp_path / "v1" / "model.safetensors"))["codebook"])
    assert json.loads((old / "config.json").read_text())["seed"] == 1
    assert json.loads((new / "config.json").read_text())["seed"] == 2


def test_stale_files_are_deleted_in_the_same_commit(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    (art / "extra.txt").write_text("only in the first push\n")
    (art / "sub").mkdir()
    (art / "sub" / "old.txt").write_text("also stale\n")
    (art / ".hidden").write_text("never pushed\n")
    push_artifact(art, REPO)
    assert sorted(hub.commits_of(REPO)[0].files) == [".gitattributes", "README.md", "config.json", "extra.txt", "model.safetensors", "sub/old.txt"]
    shutil.rmtree(art / "sub")
    (art / "extra.txt").unlink()
    write_artifact(art, seed=5)
    n_commits = len(hub.commits_of(REPO))
    result = push_artifact(art, REPO)
    assert len(hub.commits_of(REPO)) == n_commits + 1  # additions and deletions in one commit
    assert sorted(hub.commits_of(REPO)[0].files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    snapshot = download_artifact(f"{REPO}@main", cache_dir=tmp_path / "cache")
    assert snapshot.name == result.commit_sha and not (snapshot / "extra.txt").exists()


def test_push_to_a_new_branch(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    result = push_artifact(art, REPO, revision="exp-1")
    assert hub.repos[("model", REPO)].branches["exp-1"] == result.commit_sha
    assert len(hub.commits_of(REPO)) == 1  # main still holds only the initial commit
    snapshot = download_artifact(f"{REPO}@exp-1", cache_dir=tmp_path / "cache")
    assert snapshot.name == result.commit_sha and file_hashes(snapshot)["model.safetensors"] == file_hashes(art)["model.safetensors"]
    assert hub.unhandled == []


def test_failed_commit_is_reported_and_a_rerun_succeeds(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    before = file_hashes(art)
    hub.fail_next_commits(1, status=422)  # huggingface_hub retries a 5xx itself; a 4xx it reports
    with pytest.raises(HubError) as err:
        push_artifact(art, REPO)
    message = str(err.value)
    assert REPO in message and "step 'upload and commit'" in message and "HTTP 422" in message and "re-run" in message
    assert TOKEN not in message
    assert file_hashes(art) == before
    assert len(hub.commits_of(REPO)) == 1  # only the repo's initial commit
    result = push_artifact(art, REPO)
    assert hub.commits_of(REPO)[0].sha == result.commit_sha
    assert file_hashes(download_artifact(f"{REPO}@{result.commit_sha}", cache_dir=tmp_path / "cache"))["README.md"] == before["README.md"]


def test_download_of_unknown_repo_or_revision_says_so(online, hub, tmp_path):
    push_artifact(write_artifact(tmp_path / "art"), REPO)
    with pytest.raises(HubError, match=r"revision 'no-such-branch' not found; pin an existing branch, tag or commit sha"):
        download_artifact(f"{REPO}@no-such-branch", cache_dir=tmp_path / "cache")
    with pytest.raises(HubError, match=r"maq-test/nope@main .*repository not found"):
        download_artifact("maq-test/nope@main", cache_dir=tmp_path / "cache")


def test_a_hub_repo_that_is_not_an_artifact_is_refused(online, hub, tmp_path):
    from huggingface_hub import HfApi

    art = write_artifact(tmp_path / "art")
    sha = push_artifact(art, REPO).commit_sha
    info = HfApi(endpoint=hub.url).delete_file("model.safetensors", REPO, commit_message="break it")
    with pytest.raises(HubError, match=rf"{REPO}@main \(commit {info.oid}\) is not a valid model artifact: .*missing model.safetensors"):
        download_artifact(f"{REPO}@main", cache_dir=tmp_path / "cache")
    assert download_artifact(f"{REPO}@{sha}", cache_dir=tmp_path / "cache").name == sha  # the pinned commit is intact


def test_invalid_artifact_is_refused_before_any_request(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    (art / "README.md").write_text("---\nlibrary_name: [unclosed\n---\n\nbody\n")
    with pytest.raises(HubError, match="front matter does not parse"):
        push_artifact(art, REPO)
    (art / "README.md").write_text("---\nlibrary_name: maq-hub\n---\n\nno results\n")
    with pytest.raises(HubError, match="no model-index results"):
        push_artifact(art, REPO)
    (art / "README.md").write_text("# no front matter\n")
    with pytest.raises(HubError, match="no YAML front matter"):
        push_artifact(art, REPO)
    (art / "README.md").unlink()
    with pytest.raises(HubError, match="missing README.md"):
        push_artifact(art, REPO)
    write_artifact(art)
    data = (art / "model.safetensors").read_bytes()
    (art / "model.safetensors").write_bytes(data[:-10])
    with pytest.raises(HubError, match="truncated"):
        push_artifact(art, REPO)
    assert hub.requests == []


def test_offline_push_and_download_fail_fast(hub, monkeypatch, tmp_path):
    _set_client(monkeypatch, hub.url, offline=True)
    art = write_artifact(tmp_path / "art")
    start = time.monotonic()
    with pytest.raises(HubError, match=r"cannot download .*HF_HUB_OFFLINE is set.*not in the HF cache.*Download it once with network"):
        download_artifact(f"{REPO}@main", cache_dir=tmp_path / "cache")
    with pytest.raises(HubError, match=r"cannot push .*HF_HUB_OFFLINE is set"):
        push_artifact(art, REPO)
    assert time.monotonic() - start < 5
    assert hub.requests == []


def test_no_network_fails_fast(monkeypatch, tmp_path):
    _set_client(monkeypatch, f"http://127.0.0.1:{closed_port()}", offline=False)
    art = write_artifact(tmp_path / "art")
    start = time.monotonic()
    with pytest.raises(HubError, match=r"cannot download .*no connection to 127\.0\.0\.1"):
        download_artifact(f"{REPO}@main", cache_dir=tmp_path / "cache")
    with pytest.raises(HubError, match=r"cannot push .*no connection to 127\.0\.0\.1"):
        push_artifact(art, REPO)
    assert time.monotonic() - start < 5


def test_cached_download_works_offline(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    sha = push_artifact(art, REPO).commit_sha
    cache = tmp_path / "cache"
    by_sha = download_artifact(f"{REPO}@{sha}", cache_dir=cache)
    by_branch = download_artifact(f"{REPO}@main", cache_dir=cache)
    assert by_sha == by_branch
    n_requests = len(hub.requests)

    assert download_artifact(f"{REPO}@{sha}", cache_dir=cache) == by_sha  # a pinned commit needs no request
    assert len(hub.requests) == n_requests

    online(offline=True)
    start = time.monotonic()
    assert download_artifact(f"{REPO}@{sha}", cache_dir=cache) == by_sha
    assert download_artifact(f"{REPO}@main", cache_dir=cache) == by_branch  # the branch as last resolved
    assert time.monotonic() - start < 5
    assert len(hub.requests) == n_requests


def test_cards_parse_with_model_card_load(tmp_path):
    from huggingface_hub import ModelCard

    art = write_artifact(tmp_path / "art")
    card = ModelCard.load(art / "README.md", ignore_metadata_errors=False)
    assert card.data.library_name == "maq-hub" and card.data.datasets == ["maq-test/maq-door-demos"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {"mean_reward": 12.5, "success_rate": 0.75}
    assert {(r.task_type, r.dataset_type, r.dataset_name) for r in card.data.eval_results} == {("reinforcement-learning", "AdroitHandDoor-v1", "AdroitHandDoor-v1")}
    assert card.text.strip().startswith("# MAQ codebook")
    front = yaml.safe_load((art / "README.md").read_text().split("---\n")[1])
    assert front["model-index"][0]["results"][0]["metrics"][0] == {"type": "mean_reward", "value": 12.5, "name": "mean_reward"}


def _maq(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_push_pull_and_the_token_never_leaks(hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1", PYTHONPATH=str(REPO_ROOT))
    art = write_artifact(tmp_path / "art")

    pushed = _maq(["hub", "push", str(art), REPO, "--private"], env, tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    lines = pushed.stdout.strip().splitlines()
    assert len(lines) == 1
    sha, where = lines[0].split()
    assert where == f"{REPO}@main" and hub.commits_of(REPO)[0].sha == sha
    assert hub.repos[("model", REPO)].private

    pulled = _maq(["hub", "pull", f"hub:{REPO}@{sha}"], env, tmp_path)  # into the HF cache under HF_HOME
    assert pulled.returncode == 0, pulled.stderr
    snapshot = Path(pulled.stdout.strip())
    assert snapshot.is_relative_to(tmp_path / "hf-home") and snapshot.name == sha
    assert file_hashes(snapshot)["model.safetensors"] == file_hashes(art)["model.safetensors"]
    assert not (tmp_path / "models").exists()

    offline = _maq(["hub", "pull", f"{REPO}@main", "--cache-dir", str(tmp_path / "c2")], {**env, "HF_HUB_OFFLINE": "1"}, tmp_path)
    assert offline.returncode == 1 and offline.stdout == ""
    assert offline.stderr.startswith("error: cannot download") and "HF_HUB_OFFLINE" in offline.stderr

    assert hub.authorized_requests > 0  # the token was used ...
    for proc in (pushed, pulled, offline):  # ... and never shown
        assert TOKEN not in proc.stdout + proc.stderr
    for commit in hub.repos[("model", REPO)].commits.values():
        assert all(TOKEN.encode() not in data for data in commit.files.values())
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaked == []


def test_a_file_holding_the_token_is_not_pushed(online, hub, tmp_path):
    art = write_artifact(tmp_path / "art")
    config = json.loads((art / "config.json").read_text())
    (art / "config.json").write_text(json.dumps({**config, "oops": TOKEN}))
    with pytest.raises(HubError, match="contain\\(s\\) your HF token") as err:
        push_artifact(art, REPO)
    assert TOKEN not in str(err.value) and hub.requests == []


def test_wrong_token_says_what_to_do(online, hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubError, match="step 'create the repo'.*HTTP 401.*set HF_TOKEN"):
        push_artifact(write_artifact(tmp_path / "art"), REPO)


@pytest.mark.skipif(not (os.environ.get("HF_TOKEN") and os.environ.get("MAQ_HUB_LIVE") == "1"), reason="live Hub test: needs HF_TOKEN and MAQ_HUB_LIVE=1")
def test_live_hub_round_trip(monkeypatch, tmp_path):
    from huggingface_hub import HfApi, constants

    endpoint = os.environ.get("MAQ_HUB_LIVE_ENDPOINT", "https://huggingface.co")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    api = HfApi(endpoint=endpoint)
    repo_id = f"{api.whoami()['name']}/maq-hub-live-test-{os.getpid()}"
    art = write_artifact(tmp_path / "art")
    try:
        result = push_artifact(art, repo_id, private=True)
        snapshot = download_artifact(f"{repo_id}@{result.commit_sha}", cache_dir=tmp_path / "cache")
        assert file_hashes(snapshot)["model.safetensors"] == file_hashes(art)["model.safetensors"]
    finally:
        api.delete_repo(repo_id, missing_ok=True)
