"""Blocklists (words/phrases, subreddits) and key files (instances to keep, targets to discard).

The published tool matches blocklisted words with the flashtext library. Its result is
reproduced here by ``PhraseMatcher``, which walks the same character trie with the same
rules: case-insensitive, whole words or phrases, where a "word character" is an ASCII
letter, digit or underscore (docs/REFERENCE.md §8). A plain substring test runs first: a keyword that
does not even occur as a substring cannot match, and that is the common case.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import string
import zlib

from .errors import UserError, utf8_error_where

_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_END = ""  # trie key marking the end of a keyword; never a character of the text


def _read_list(path: str, what: str) -> list[str]:
    """Entries of a blocklist file: one per line, lines starting with '#' are comments."""
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip() for line in fh if line[0] != "#"]
    except OSError as exc:
        raise UserError(f"cannot read {what} {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        where = utf8_error_where(lambda: open(path, "rb"))
        raise UserError(f"{what} {path!r} is not UTF-8 text: {exc.reason} at {where}") from None


class PhraseMatcher:
    """Does a text contain a blocklisted word or phrase (flashtext semantics)?"""

    def __init__(self, phrases: list[str] | None = None) -> None:
        self._trie: dict = {}
        self._prefilter: re.Pattern[str] | None = None
        self._phrases: list[str] = []
        for phrase in phrases or []:
            self.add(phrase)

    def add(self, phrase: str) -> None:
        if not phrase:  # flashtext ignores empty keywords (e.g. blank lines)
            return
        phrase = phrase.lower()
        node = self._trie
        for ch in phrase:
            node = node.setdefault(ch, {})
        node[_END] = True
        self._phrases.append(phrase)
        self._prefilter = None

    def __bool__(self) -> bool:
        return bool(self._phrases)

    def found(self, text: str) -> bool:
        if not self._phrases or not text:
            return False
        low = text.lower()
        if self._prefilter is None:
            alts = sorted(set(self._phrases), key=len, reverse=True)
            self._prefilter = re.compile("|".join(map(re.escape, alts)))
        if self._prefilter.search(low) is None:
            return False
        return self._scan(low)

    def _scan(self, s: str) -> bool:
        """The flashtext extraction loop, stopped at the first keyword it would report."""
        root = self._trie
        node = root
        n = len(s)
        idx = 0
        while idx < n:
            ch = s[idx]
            if ch not in _WORD_CHARS:
                # A word boundary: does a keyword end here, or continue across it?
                if _END in node or ch in node:
                    found = _END in node
                    if ch in node:
                        cont = node[ch]
                        idy = idx + 1
                        while idy < n:
                            inner = s[idy]
                            if inner not in _WORD_CHARS and _END in cont:
                                return True
                            if inner in cont:
                                cont = cont[inner]
                            else:
                                break
                            idy += 1
                        else:
                            if _END in cont:
                                return True
                    if found:
                        return True
                node = root
            elif ch in node:
                node = node[ch]
            else:
                # Mid-word mismatch: nothing can start before the next boundary.
                node = root
                idy = idx + 1
                while idy < n and s[idy] in _WORD_CHARS:
                    idy += 1
                idx = idy
            if idx + 1 >= n and _END in node:
                return True
            idx += 1
        return False


def load_words(path: str | None) -> PhraseMatcher:
    """Word/phrase blocklist (case-insensitive)."""
    return PhraseMatcher(_read_list(path, "word blocklist") if path else [])


def load_subreddits(path: str | None) -> set[str]:
    """Subreddit blocklist, lower-cased."""
    return {s.lower() for s in _read_list(path, "subreddit blocklist")} if path else set()


def load_keys(path: str, task: str) -> set[str]:
    """Keys from a gzip file, one per line.

    ``dep`` keys (``link_id<TAB>t1_id<TAB>dep``) select comments at extract time; ``keep``
    keys select targets at conv time; discard files hold SHA-224 digests of turns. As in
    the published tool, conv ignores the ``dep`` keys and extract loads everything.
    """
    keys: set[str] = set()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                key = line.rstrip()
                if task == "conv" and key.endswith("\tdep"):
                    continue
                keys.add(key)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"cannot read key file {path!r} (gzip, one key per line): {exc}") from None
    except UnicodeDecodeError as exc:
        where = utf8_error_where(lambda: gzip.open(path, "rb"))
        raise UserError(f"key file {path!r} is not UTF-8 text: {exc.reason} at {where}") from None
    return keys


def turn_digest(turn: str) -> str:
    """SHA-224 hex digest of a normalised turn (without its weight): the discard-key format."""
    return hashlib.sha224(turn.encode("utf-8")).hexdigest()
