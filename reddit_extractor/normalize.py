"""Text normalisation of the published extractor (docs/REFERENCE.md §8).

``minimal_norm`` is applied at extract time to titles and bodies; ``full_norm`` to every
turn at conv time. Both must reproduce the published output character for character, so
the order of the steps below matters.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import sys
import types

# Anything outside this class becomes a space (the curly quotes are kept on purpose).
_ILLEGAL = re.compile(r"[^A-Za-z0-9()\[\]:,.!?'“” ]")


@functools.cache
def _tokenize():
    """NLTK's TweetTokenizer(preserve_case=True).tokenize, loaded on first use."""
    if "nltk" not in sys.modules:
        try:
            return _load_casual_only().TweetTokenizer(preserve_case=True).tokenize
        except Exception:  # noqa: BLE001 - any surprise: fall back to the normal import
            pass
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=True).tokenize


def _load_casual_only():
    """Import nltk.tokenize.casual without running nltk's package __init__.

    ``import nltk`` loads most of NLTK and costs 1-2 s per process, more than a small
    month takes; the tokenizer needs only a few modules. Placeholder package modules are
    used for the import, then every nltk module loaded here is removed from sys.modules
    again, so a later ``import nltk`` in the same process gets the complete package.
    """
    spec = importlib.util.find_spec("nltk")
    if spec is None or spec.origin is None:
        raise ImportError("nltk is not installed")
    root = os.path.dirname(spec.origin)
    before = set(sys.modules)
    try:
        for name, path in (("nltk", root), ("nltk.tokenize", os.path.join(root, "tokenize"))):
            stub = types.ModuleType(name)
            stub.__path__ = [path]
            sys.modules[name] = stub
        return importlib.import_module("nltk.tokenize.casual")
    finally:
        for name in set(sys.modules) - before:
            if name == "nltk" or name.startswith("nltk."):
                del sys.modules[name]


def minimal_norm(txt: str) -> str:
    """Drop backslashes (Reddit escapes as in 'b\\/c'); line breaks and tabs become spaces.

    Tabs and newlines must go because the intermediate files are one record per line,
    tab separated.
    """
    return txt.replace("\\", "").replace("\n", " ").replace("\r", " ").replace("\t", " ")


def _strip_tags_and_urls(txt: str) -> str:
    words = []
    for word in txt.split():
        if word[0] == "#":
            continue
        # The index is taken on the lower-cased word but applied to the original one, as
        # the published tool does (they differ only for rare characters whose lower case
        # has another length).
        i = word.lower().find("http")
        if i >= 0:
            word = word[:i] + " __url__"
        words.append(word.strip())
    return " ".join(words)


def full_norm(txt: str) -> str:
    """Normalise one turn for training (docs/REFERENCE.md §8, 'every turn gets the full normalisation')."""
    txt = _strip_tags_and_urls(txt)
    txt = txt.replace("\\", "")
    txt = txt.replace("b/c", "because").replace("j/k", "just kidding")
    txt = txt.replace("w/o", "without").replace("w/", "with")
    # The markers contain '_', which the character filter would destroy: protect them as
    # plain words. A literal URL/MENTION in the text therefore also becomes a marker.
    txt = txt.replace("__mention__", "MENTION").replace("__url__", "URL")
    txt = _ILLEGAL.sub(" ", txt)
    txt = txt.replace("MENTION", "__mention__").replace("URL", "__url__")
    # Tokens may themselves contain spaces (e.g. phone numbers), hence the final split.
    return " ".join(" ".join(_tokenize()(txt)).split())
