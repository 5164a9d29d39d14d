"""Shared fixtures: tiny corpora and databases made in temp dirs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

WORDS = (
    "hello there how are you doing today fine thanks what about the weather it is "
    "sunny and warm i like tea coffee please tell me more about your day"
).split()


def write_corpus(
    path: Path, n_lines: int, seed: int = 0, max_turns: int = 5, max_words: int = 12
) -> Path:
    """A weighted training tsv of random multi-turn conversations."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        turns = []
        for _ in range(rng.randint(1, max_turns)):
            weight = rng.choice(["0.0", "1.0", "1.0"])
            turns.append(weight + " " + " ".join(rng.choices(WORDS, k=rng.randint(1, max_words))))
        response = "1.0 " + " ".join(rng.choices(WORDS, k=rng.randint(1, max_words)))
        lines.append(" EOS ".join(turns) + "\t" + response)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "train.tsv", 300)


@pytest.fixture
def small_db(corpus: Path) -> Path:
    from lsp_data.prepro import run_prepro

    folder, _ = run_prepro(
        str(corpus), max_seq_len=64, chunk_size=100, progress=False, log=lambda m: None
    )
    return folder


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
