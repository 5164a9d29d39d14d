"""lsp_demo.model_choice: --model auto|tiny|small|..., local copies, the cache and the hub."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_demo import REPO
from lsp_demo import model_choice as mc


def test_auto_model_is_tiny_without_a_local_copy(tmp_path: Path, offline_hub: Path) -> None:
    choice = mc.choose_model("auto", tmp_path / "models")
    assert choice.kind == "tiny" and not choice.pretrained
    assert Path(choice.name_or_path).resolve() == mc.TINY_CONFIG
    assert "HF_HUB_OFFLINE is set" in choice.why  # the probe was not even tried
    assert "hf download microsoft/DialoGPT-small --local-dir" in choice.why


CHOOSE = """
import json, sys
from pathlib import Path
from lsp_demo.model_choice import choose_model
choice = choose_model("auto", Path(sys.argv[1]))
print(json.dumps({"kind": choice.kind, "name": choice.name_or_path, "why": choice.why}))
"""


def test_auto_model_downloads_dialogpt_small_when_the_hub_answers(tmp_path: Path) -> None:
    """The real download path, against tests/fakehub.py serving a tiny model as DialoGPT-small."""
    import torch

    from lsp_data.tokenizer import load_tokenizer
    from lsp_model.loading import save_hf_folder
    from lsp_model.modeling import GPT2Config, GPT2LMHeadModel
    from tests.fakehub import hub_env, serve_repo

    torch.manual_seed(0)
    tiny = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32))
    save_hf_folder(tiny, load_tokenizer(), tmp_path / "repo")
    cache = tmp_path / "cache"

    def choose(endpoint: str, **env: str) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", CHOOSE, str(tmp_path / "models")],
            env={**hub_env(endpoint, cache), "PYTHONPATH": str(REPO), **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with serve_repo(mc.HUB_NAMES["small"], tmp_path / "repo") as hub:
        first = choose(hub.endpoint)
        assert first["kind"] == "small" and "downloaded it" in first["why"], first
        assert any("/resolve/" in r and r.endswith("/model.safetensors") for r in hub.requests)
    # Later runs find it in the cache, also with the hub gone and offline mode on.
    again = choose(hub.endpoint, HF_HUB_OFFLINE="1")
    assert again["kind"] == "small" and "Hugging Face cache" in again["why"], again


def test_auto_model_falls_back_when_the_download_fails(
    tmp_path: Path, offline_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lsp_model.hub as hub
    from lsp_model.errors import ModelLoadError

    def broken_download(name):
        raise ModelLoadError(f"cannot load model '{name}': connection reset")

    monkeypatch.setattr(hub, "hub_reachable", lambda name, timeout: (True, ""))
    monkeypatch.setattr(hub, "resolve_model_source", broken_download)
    choice = mc.choose_model("auto", tmp_path / "models")
    assert choice.kind == "tiny" and "connection reset" in choice.why


def test_auto_model_takes_a_local_dialogpt_small(tmp_path: Path, offline_hub: Path) -> None:
    folder = tmp_path / "models" / "DialoGPT-small"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert mc.choose_model("auto", tmp_path / "models").kind == "tiny"  # no weights yet
    (folder / "model.safetensors").write_bytes(b"")
    choice = mc.choose_model("auto", tmp_path / "models")
    assert choice.kind == "small" and choice.pretrained
    assert Path(choice.name_or_path).resolve() == folder.resolve()
