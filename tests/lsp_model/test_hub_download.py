"""Hub names downloaded end to end from a fake hub on 127.0.0.1 (tests/fakehub.py).

The real huggingface_hub code runs unpatched in a child process whose HF_ENDPOINT points at
the fake server (huggingface_hub reads it once, at import) and whose HF_HUB_CACHE is a temp dir.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lsp_data.tokenizer import load_tokenizer
from lsp_model.loading import load_model, save_hf_folder
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel
from tests.conftest import HEAVY_LOADED, REPO
from tests.fakehub import SHA, FakeHub, hub_env, serve_repo

REPO_ID = "someorg/TinyDialo"
TINY = {
    "model_type": "gpt2",
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 32,
    "n_positions": 64,
    "vocab_size": 50257,
}
# Files a hub repo may hold that this toolkit must not download (HUB_FILE_PATTERNS).
NOT_WANTED = {"flax_model.msgpack": b"flax weights", "README.md": b"# TinyDialo\n"}

RESOLVE = """
import json, sys, time
from lsp_model.errors import ModelLoadError
from lsp_model.hub import resolve_model_source
start = time.perf_counter()
try:
    out = {"path": str(resolve_model_source(sys.argv[1]))}
except ModelLoadError as err:
    out = {"error": str(err)}
out["seconds"] = time.perf_counter() - start
out["heavy"] = HEAVY_LOADED
print(json.dumps(out))
""".replace("HEAVY_LOADED", HEAVY_LOADED)


def resolve_in_child(name: str, endpoint: str, cache: Path, **env: str) -> dict:
    """``resolve_model_source(name)`` in a fresh interpreter: {"path"} or {"error"}, "seconds"."""
    child_env = {**hub_env(endpoint, cache), "PYTHONPATH": str(REPO), **env}
    proc = subprocess.run(
        [sys.executable, "-c", RESOLVE, name],
        env=child_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_repo(folder: Path) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**TINY)).eval()
    save_hf_folder(model, load_tokenizer(), folder)
    return model


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny model, its hub folder, and the files a download should fetch."""
    folder = tmp_path_factory.mktemp("hub") / "TinyDialo"
    model = make_repo(folder)
    wanted = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in wanted and "config.json" in wanted
    for name, data in NOT_WANTED.items():
        (folder / name).write_bytes(data)
    return model, folder, wanted


@pytest.fixture(scope="module")
def hub(served) -> FakeHub:
    with serve_repo(REPO_ID, served[1]) as fake:
        yield fake


@pytest.fixture(scope="module")
def downloaded(hub, tmp_path_factory):
    """One download into an empty cache: (result, cache dir, requests it made)."""
    cache = tmp_path_factory.mktemp("cache")
    hub.requests.clear()
    result = resolve_in_child(REPO_ID, hub.endpoint, cache)
    return result, cache, list(hub.requests)


def test_download_from_hub_gives_the_served_model(served, downloaded):
    model, folder, wanted = served
    result, cache, requests = downloaded
    assert "error" not in result, result["error"]
    snapshot = Path(result["path"])
    assert snapshot == (cache / "models--someorg--TinyDialo" / "snapshots" / SHA).resolve()
    assert sorted(p.name for p in snapshot.iterdir()) == wanted  # README, flax: not fetched
    for name in wanted:
        assert (snapshot / name).read_bytes() == (folder / name).read_bytes(), name
    fetched = sorted(r.rsplit("/", 1)[1] for r in requests if r.startswith("GET /someorg/"))
    assert fetched == wanted  # each file downloaded once
    assert result["heavy"] == []  # finding and fetching a model needs no torch

    loaded = load_model(snapshot)
    expected = model.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_second_call_is_served_from_cache(hub, downloaded):
    first, cache, _ = downloaded
    hub.requests.clear()
    again = resolve_in_child(REPO_ID, hub.endpoint, cache)
    assert again.get("path") == first["path"], again
    # The cache is tried first (local_files_only): a complete snapshot needs no request at all.
    assert hub.requests == []


def test_unknown_repo(hub, tmp_path):
    hub.requests.clear()
    result = resolve_in_child("someorg/NoSuchModel", hub.endpoint, tmp_path / "cache")
    assert "the hub has no accessible repository of that name" in result.get("error", ""), result
    assert "someorg/NoSuchModel" in result["error"]
    assert hub.requests and all("/someorg/NoSuchModel" in r for r in hub.requests)


def test_hub_down(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on once the socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = resolve_in_child(REPO_ID, f"http://127.0.0.1:{port}", tmp_path / "cache")
    msg = result.get("error", "")
    assert "the Hugging Face Hub is unreachable" in msg and REPO_ID in msg, result
    assert "no cached copy was found" in msg
    assert result["seconds"] < 3, "huggingface_hub retried instead of failing fast"


@pytest.mark.slow
def test_repo_with_both_weight_formats_is_usable_offline_once_cached(tmp_path):
    make_repo(tmp_path / "repo")
    torch.save({}, tmp_path / "repo" / "pytorch_model.bin")  # never fetched: safetensors wins
    cache = tmp_path / "cache"
    with serve_repo(REPO_ID, tmp_path / "repo") as fake:
        first = resolve_in_child(REPO_ID, fake.endpoint, cache)
        assert not (Path(first["path"]) / "pytorch_model.bin").exists()
        fake.requests.clear()
        again = resolve_in_child(REPO_ID, fake.endpoint, cache)
        assert again == {**again, "path": first["path"]} and fake.requests == []  # cache only
    offline = resolve_in_child(REPO_ID, fake.endpoint, cache, HF_HUB_OFFLINE="1")
    assert offline.get("path") == first["path"], offline


PROBE = """
import json, sys
from lsp_model.hub import hub_reachable
print(json.dumps([hub_reachable(name, timeout=5) for name in sys.argv[1:]]))
"""


def test_hub_reachable_probe(hub, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    answers = []
    for endpoint in (hub.endpoint, dead):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, REPO_ID, "someorg/NoSuchModel"],
            env={**hub_env(endpoint, tmp_path / "cache"), "PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        answers += json.loads(proc.stdout.strip().splitlines()[-1])
    (up, why_up), (missing, why_missing), (down, why_down), _ = answers
    assert up and why_up == "" and not missing and not down
    assert "no accessible repository someorg/NoSuchModel" in why_missing
    assert "unreachable" in why_down


HUB_CALLS = """
import sys
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError
repo = sys.argv[1]
print(HfApi().model_info(repo, timeout=5).sha)
print(hf_hub_download(repo, "config.json"))
for call in (lambda: HfApi().model_info("someorg/Other", timeout=5),
             lambda: hf_hub_download(repo, "missing.json")):
    try:
        call()
    except (RepositoryNotFoundError, RemoteEntryNotFoundError) as err:
        print(type(err).__name__)
"""


def test_fake_hub_speaks_the_hub_protocol(served, hub, tmp_path):
    """model_info, hf_hub_download and their not-found errors, as huggingface_hub sees them."""
    proc = subprocess.run(
        [sys.executable, "-c", HUB_CALLS, REPO_ID],
        env=hub_env(hub.endpoint, tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    sha, config, *errors = proc.stdout.splitlines()
    assert sha == SHA
    assert Path(config).read_bytes() == (served[1] / "config.json").read_bytes()
    assert errors == ["RepositoryNotFoundError", "RemoteEntryNotFoundError"]
