"""Fixtures for training tests: a tiny model folder, a database and a validation file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_data.prepro import run_prepro
from tests.conftest import write_corpus

# Small enough to train in seconds on 2 cores; no dropout so runs compare exactly.
TINY = {
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 256,
    "n_ctx": 256,
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 2,
    "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attn_pdrop": 0.0,
}


def make_train_data(root: Path, lines: int, chunk_size: int, valid_text: str) -> dict[str, Path]:
    """Under ``root``: the tiny model folder, a database of ``lines`` random conversations
    (features of at most 64 tokens) and a validation file."""
    model_dir = root / "tiny"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(TINY))
    corpus = write_corpus(root / "train.tsv", lines, seed=11, max_turns=3, max_words=8)
    db, _ = run_prepro(
        str(corpus), max_seq_len=64, chunk_size=chunk_size, progress=False, log=lambda m: None
    )
    valid = root / "valid.tsv"
    valid.write_text(valid_text, encoding="utf-8")
    return {"model": model_dir, "db": db, "valid": valid, "root": root}


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> dict[str, Path]:
    valid = "".join(
        f"hello there EOS how are you\tfine thanks {w}\n" for w in ("today", "and you", "a lot")
    )
    return make_train_data(tmp_path_factory.mktemp("train_data"), 400, 150, valid)


def train_argv(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(data["model"]),
        "--train_input_file",
        str(data["db"]),
        "--eval_input_file",
        str(data["valid"]),
        "--output_dir",
        str(out),
        "--train_batch_size",
        "8",
        "--gradient_accumulation_steps",
        "2",
        "--learning_rate",
        "3e-3",
        "--lr_schedule",
        "None",
        "--fp16",
        "false",
        "--pbar",
        "false",
        "--max_seq_length",
        "64",
        *extra,
    ]


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), [line.split(",") for line in lines[1:]]
