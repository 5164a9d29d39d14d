"""``clean_str``: the DSTC-7 text normalisation used by ``dstc.py --clean``.

Import it as ``dstc.tokenizers`` only: the scripts in this folder take their own folder off
``sys.path`` so this module never shadows the Hugging Face ``tokenizers`` library.
"""

from __future__ import annotations

import re
from functools import lru_cache

_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\] \( *__url__ *\)")
_OUTSIDE_ALPHABET = re.compile(r"[^A-Za-z0-9():,.!?\"']")
_WS = re.compile(r"\s+")
# Contraction suffixes that get a space in front of them (after tweet tokenization keeps
# "don't" as one token), in the order the DSTC script applies them.
_SPLIT_SUFFIXES = ("'s", "'m", "'re", "n't", "'ll", "'ve", "'d", "'em")


@lru_cache(maxsize=1)
def _tweet_tokenizer():
    from nltk.tokenize import TweetTokenizer

    return TweetTokenizer(preserve_case=False)


def _mark_urls(text: str) -> str:
    # Anything from "http" to the end of a whitespace token becomes a URL marker, even
    # when glued to preceding text ("this?https://x" -> "this? __url__").
    words = []
    for word in text.split():
        at = word.find("http")
        if at >= 0:
            word = word[:at] + " __url__"
        words.append(word.strip())
    return " ".join(words)


def clean_str(text: str) -> str:
    """Lower-case, replace URLs by ``__url__``, reduce markdown links ``[text](url)`` to
    their text, blank out characters other than ASCII letters, digits and ``():,.!?"'``,
    tweet-tokenize and split contractions (``don't`` -> ``do n't``, ``won't`` ->
    ``will n't``, ``can't`` -> ``can n't``)."""
    text = " " + text.lower() + " "
    text = _mark_urls(text)
    text = _MARKDOWN_LINK.sub(r"\1", text)
    # The marker's underscores would be blanked out: park it as upper case (no upper case
    # survives .lower()) while filtering characters.
    text = text.replace("__url__", "URL")
    text = _OUTSIDE_ALPHABET.sub(" ", text)
    text = text.replace("URL", "__url__")
    text = " " + " ".join(_tweet_tokenizer().tokenize(text)) + " "
    text = text.replace(" won't ", " will n't ").replace(" can't ", " can n't ")
    for suffix in _SPLIT_SUFFIXES:
        text = text.replace(suffix + " ", " " + suffix + " ")
    return _WS.sub(" ", text).strip()
