"""The bundled dialogue set of ``demo.py --data dummy``, built from chatterbot-corpus.

Source: the English conversations of the PyPI package ``chatterbot-corpus`` (1.3.3,
Gunther Cox and contributors, BSD-3-Clause licence,
https://github.com/gunthercox/chatterbot-corpus), read from the installed package's
``chatterbot_corpus/data/english/*.yml``. Each ``conversations`` entry there is a list of
turns spoken alternately by two people; most are question/answer pairs, about 80 are
longer exchanges.

What is written (docs/REFERENCE.md §1 formats):

* a **training tsv**, one line per conversation, as the Reddit extractor writes one line per
  comment chain: the turns before the last joined by `` EOS ``, a tab, the last turn. Every
  turn carries the weight ``1.0``, the first one included. prepro never learns the first turn
  of a line whatever its weight (it is context only), and DialoGPT's clean data weights every
  turn 1.0, so this keeps the file identical in form to extracted Reddit data. prepro learns
  every later turn of the line, so a long conversation is not unrolled into several lines
  (which would train its early turns several times).
* a **validation pair tsv** (``CONTEXT<TAB>RESPONSE``, no weights) from conversations held
  out of training: each turn after the first gives one pair, its context being all turns
  before it joined by `` EOS ``, so validation perplexity covers the same turns training
  learns.

Turn text is whitespace-normalised (code samples in the corpus span several lines; a tab
or line break would break the tsv), and a word ``EOS`` becomes ``eos`` so that it cannot
read as a turn separator. Exact duplicate conversations (the corpus repeats some across
files) are kept once. The held-out set is deterministic and independent of file order: the
conversations with the lowest SHA-256 of their text, ``valid_fraction`` of them.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lsp_common.atomic import write_lines_atomic
from lsp_data.parsing import TURN_SEPARATOR

__all__ = [
    "CITATION",
    "DummyDataError",
    "DummyDataStats",
    "corpus_folder",
    "load_conversations",
    "split_conversations",
    "training_line",
    "validation_pairs",
    "write_dummy_data",
]

CITATION = (
    "chatterbot-corpus 1.3.3 (English conversations), Gunther Cox and contributors, "
    "BSD-3-Clause, https://github.com/gunthercox/chatterbot-corpus"
)
WEIGHT = "1.0"


class DummyDataError(RuntimeError):
    """The corpus package is missing or gave no usable conversation."""


@dataclass
class DummyDataStats:
    """Counts of one build, for the demo's report and for tests."""

    files: int = 0
    conversations_read: int = 0
    conversations_kept: int = 0
    duplicates: int = 0
    # Skipped conversations by reason: "fewer than 2 turns", "not a list of turns",
    # "a bool turn" (any YAML value that is not text, a number or a date).
    skipped: Counter[str] = field(default_factory=Counter)
    converted_turns: int = 0  # numbers and dates read by YAML, written back as text
    train_conversations: int = 0
    valid_conversations: int = 0
    train_lines: int = 0
    valid_pairs: int = 0

    def summary(self) -> str:
        parts = [
            f"{self.conversations_read} conversations in {self.files} files",
            f"{self.conversations_kept} kept",
            f"{self.duplicates} exact duplicates dropped",
            f"{sum(self.skipped.values())} skipped"
            + (
                " (" + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) + ")"
                if self.skipped
                else ""
            ),
        ]
        if self.converted_turns:
            parts.append(f"{self.converted_turns} numeric/date turns converted to text")
        parts.append(
            f"training: {self.train_lines} lines from {self.train_conversations} conversations; "
            f"validation: {self.valid_pairs} pairs from {self.valid_conversations} held-out "
            "conversations"
        )
        return "; ".join(parts)


def corpus_folder() -> Path:
    """``chatterbot_corpus/data/english`` of the installed package (never imported: its
    ``__init__`` is not needed, only its data files)."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise DummyDataError(
            "the package 'chatterbot-corpus' is not installed; run "
            "`pip install -r requirements.txt` (it provides the demo's dialogue set)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "english"
    if not folder.is_dir():
        raise DummyDataError(f"{folder} is missing from the chatterbot-corpus package")
    return folder


def _clean_text(text: str) -> str:
    # str.split() also splits on \r, \x0b, \x1c-\x1f, \x85, \u2028...: every character a
    # reader could take as a line or field break is gone after this.
    words = ["eos" if w == "EOS" else w for w in text.split()]
    return " ".join(words)


def _turn_text(turn: object) -> tuple[str | None, bool]:
    """(text, converted) for one YAML value; text None when the turn is unusable."""
    if isinstance(turn, str):
        return _clean_text(turn), False
    # YAML reads an unquoted 1945 or 2.5 or 2001-09-11 as a number or a date; the text is
    # what the author typed. Booleans are not converted: YAML 1.1 reads yes/no/on/off as
    # True/False, so the original word is lost.
    if isinstance(turn, int | float | datetime.date) and not isinstance(turn, bool):
        return _clean_text(str(turn)), True
    return None, False


def load_conversations(
    folder: str | os.PathLike[str] | None = None,
    stats: DummyDataStats | None = None,
) -> list[list[str]]:
    """All usable conversations of ``folder``'s ``*.yml`` files (default: the package's English
    ones), in file order, exact duplicates dropped."""
    stats = stats if stats is not None else DummyDataStats()
    folder = Path(folder) if folder is not None else corpus_folder()
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise DummyDataError(f"{folder}: no *.yml files")
    seen: set[tuple[str, ...]] = set()
    out: list[list[str]] = []
    for path in files:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise DummyDataError(f"{path}: cannot read the corpus file: {err}") from err
        stats.files += 1
        conversations = doc.get("conversations") if isinstance(doc, dict) else None
        for conv in conversations or []:
            stats.conversations_read += 1
            if not isinstance(conv, list):
                stats.skipped["not a list of turns"] += 1
                continue
            turns: list[str] = []
            bad: str | None = None
            converted = 0
            for turn in conv:
                text, was_converted = _turn_text(turn)
                if text is None:
                    bad = type(turn).__name__
                    break
                if text:  # an empty turn is dropped; the two speakers still alternate
                    turns.append(text)
                    converted += was_converted
            if bad is not None:
                # A whole conversation goes: dropping one turn would make the next one
                # answer something that was never said.
                stats.skipped[f"with a {bad} turn"] += 1
                continue
            if len(turns) < 2:
                stats.skipped["with fewer than 2 turns"] += 1
                continue
            key = tuple(turns)
            if key in seen:
                stats.duplicates += 1
                continue
            seen.add(key)
            stats.converted_turns += converted
            out.append(turns)
    stats.conversations_kept = len(out)
    if not out:
        raise DummyDataError(f"{folder}: no conversation with at least two turns")
    return out


def _conversation_hash(turns: list[str]) -> str:
    return hashlib.sha256("\n".join(turns).encode("utf-8")).hexdigest()


def split_conversations(
    conversations: list[list[str]], valid_fraction: float = 0.1
) -> tuple[list[list[str]], list[list[str]]]:
    """(training, held-out) conversations, each list in the input order.

    The held-out ones are the ``ceil(valid_fraction * n)`` with the lowest SHA-256 of their
    text (at least one, and at least one left for training), so the split does not depend on
    file order and identical conversations always fall on the same side.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    if len(conversations) < 2:
        raise DummyDataError("need at least two conversations to hold one out for validation")
    n_valid = min(max(1, math.ceil(valid_fraction * len(conversations))), len(conversations) - 1)
    ranked = sorted(range(len(conversations)), key=lambda i: _conversation_hash(conversations[i]))
    held_out = set(ranked[:n_valid])
    train = [c for i, c in enumerate(conversations) if i not in held_out]
    valid = [c for i, c in enumerate(conversations) if i in held_out]
    return train, valid


def training_line(turns: list[str]) -> str:
    """``1.0 t1 EOS 1.0 t2 ...<TAB>1.0 tN`` (no newline)."""
    if len(turns) < 2:
        raise ValueError("a training line needs at least two turns")
    weighted = [f"{WEIGHT} {t}" for t in turns]
    return TURN_SEPARATOR.join(weighted[:-1]) + "\t" + weighted[-1]


def validation_pairs(turns: list[str]) -> list[str]:
    """One ``t1 EOS ... EOS t(i-1)<TAB>ti`` line per turn after the first (no newlines)."""
    return [TURN_SEPARATOR.join(turns[:i]) + "\t" + turns[i] for i in range(1, len(turns))]


def write_dummy_data(
    train_path: str | os.PathLike[str],
    valid_path: str | os.PathLike[str],
    *,
    valid_fraction: float = 0.1,
    corpus: str | os.PathLike[str] | None = None,
) -> DummyDataStats:
    """Write the training tsv and the validation pair tsv; returns the counts.

    ``corpus`` is a folder of chatterbot-style ``*.yml`` files (default: the installed
    package's English ones). The validation file is written first: the training file, whose
    presence tells the demo the step is done, appears last.
    """
    stats = DummyDataStats()
    conversations = load_conversations(corpus, stats)
    train, valid = split_conversations(conversations, valid_fraction)
    pairs = [pair for conv in valid for pair in validation_pairs(conv)]
    lines = [training_line(conv) for conv in train]
    stats.train_conversations, stats.valid_conversations = len(train), len(valid)
    stats.train_lines, stats.valid_pairs = len(lines), len(pairs)
    write_lines_atomic(Path(valid_path), pairs)
    write_lines_atomic(Path(train_path), lines)
    return stats
