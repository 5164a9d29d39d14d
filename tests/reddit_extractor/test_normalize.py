"""The fast tokenizer import of normalize.py: NLTK's TweetTokenizer without nltk's package
__init__ (1-2 s per process), leaving sys.modules as a later ``import nltk`` needs it."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys

import pytest

from reddit_extractor import normalize
from reddit_extractor.normalize import full_norm

SAMPLES = [
    "wait!!!!! ok",
    "it's 3.5 “x” (y) [z] :-) <3",
    "call 555-123-4567 now @user #tag",
    "soooooo goooood",
]


class _PackageInits(importlib.abc.MetaPathFinder):
    """Records which of nltk's package __init__ modules are executed."""

    WATCHED = ("nltk", "nltk.tokenize")

    def __init__(self) -> None:
        self.ran: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name not in self.WATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            inner, ran = spec.loader, self.ran

            class Loader(importlib.abc.Loader):
                def create_module(self, spec):
                    return inner.create_module(spec)

                def exec_module(self, module):
                    ran.append(module.__name__)
                    inner.exec_module(module)

            spec.loader = Loader()
        return spec


@pytest.fixture()
def without_nltk(monkeypatch):
    """A sys.modules without nltk (as in a fresh conv worker); restored afterwards."""
    for name in list(sys.modules):
        if name == "nltk" or name.startswith("nltk."):
            monkeypatch.delitem(sys.modules, name)
    watch = _PackageInits()
    monkeypatch.setattr(sys, "meta_path", [watch, *sys.meta_path])
    return watch


def test_casual_only_tokenizes_as_nltk_and_leaves_no_trace(without_nltk):
    before = dict(sys.modules)
    casual = normalize._load_casual_only()
    ours = casual.TweetTokenizer(preserve_case=True).tokenize
    # nltk's own package code never ran: that is the point of the fast path
    assert without_nltk.ran == []
    # nothing of nltk (no placeholder package either) stays behind for a later import
    added = set(sys.modules) - set(before)
    assert not [n for n in added if "nltk" in n.lower()]
    assert all(sys.modules[n] is before[n] for n in before)
    assert all(getattr(sys.modules[n], "__spec__", None) is not None for n in added)
    from nltk.tokenize import TweetTokenizer  # the complete package, imported normally

    assert without_nltk.ran == ["nltk", "nltk.tokenize"]
    reference = TweetTokenizer(preserve_case=True).tokenize
    for text in SAMPLES:
        assert ours(text) == reference(text), text


def test_casual_only_without_nltk(without_nltk, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nltk" else real(name, *a)
    )
    with pytest.raises(ImportError, match="^nltk is not installed$"):
        normalize._load_casual_only()
    assert "nltk" not in sys.modules


@pytest.mark.parametrize(
    "raw, expected",
    [
        # the first 'http' of a word counts: what precedes it is kept (docs/REFERENCE.md §8)
        ("go to http://a.com/http-page ok", "go to __url__ ok"),
        ("xhttp://a/HTTP", "x __url__"),
    ],
)
def test_full_norm_first_http_of_a_word(raw, expected):
    assert full_norm(raw) == expected
