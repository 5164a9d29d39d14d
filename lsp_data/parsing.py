"""The text formats of docs/REFERENCE.md §1: weighted training lines and raw validation pairs.

Parsing is faithful to the published toolkit, Python semantics included (``str.split()``
whitespace, ``float()`` deciding whether a turn's first token is a weight), because the
feature ids of a database depend on exactly which lines give features. One departure: a
token that ``float()`` takes but that is no usable weight (NaN, infinite, negative, or
Python-only syntax such as ``1_000``) makes the line malformed instead of reaching the
database.
"""

from __future__ import annotations

import math
import re

TURN_SEPARATOR = " EOS "
# Batches carry weights as float32 (lsp_data.loaders): a larger weight would become inf there.
MAX_WEIGHT = 3.4028234663852886e38

# Reasons a line is skipped; the keys of ``meta.json``'s ``skipped`` counts.
EMPTY_LINE = "empty_line"
BAD_TAB_COUNT = "not_exactly_one_tab"
EMPTY_TURN = "empty_turn"
BAD_ENCODING = "invalid_utf8"
BAD_WEIGHT = "bad_weight"
SKIP_REASONS = (EMPTY_LINE, BAD_TAB_COUNT, EMPTY_TURN, BAD_ENCODING, BAD_WEIGHT)


class MalformedLine(ValueError):
    """A line that cannot be parsed; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def parse_weighted_turn(turn: str) -> tuple[float, str]:
    """Split a leading numeric weight from a turn: ``'0.0 hi there'`` -> ``(0.0, 'hi there')``.

    A turn whose first token is not a number has weight 1.0 and keeps the token, so an
    unweighted turn starting with a number (``'2 dogs'``) reads as weight 2.0 on ``'dogs'``.
    A weight is a plain ASCII decimal number, finite as a float32 and not negative; any
    other token that ``float()`` accepts raises ``MalformedLine`` (``bad_weight``).
    """
    weight, words = weighted_turn_words(turn)
    return weight, " ".join(words)


# The weights of nearly every real line, read without float() and its checks.
_PLAIN_WEIGHTS = {"0.0": 0.0, "1.0": 1.0, "0": 0.0, "1": 1.0}


def weighted_turn_words(turn: str) -> tuple[float, list[str]]:
    """``parse_weighted_turn`` with the text as its words (``str.split()``), not joined."""
    tokens = turn.split()
    if not tokens:
        raise MalformedLine(EMPTY_TURN, "a turn is empty")
    token = tokens[0]
    weight = _PLAIN_WEIGHTS.get(token)
    if weight is not None:
        del tokens[0]
        return weight, tokens
    try:
        weight = float(token)
    except ValueError:
        return 1.0, tokens
    if not 0.0 <= weight <= MAX_WEIGHT or "_" in token or not token.isascii():
        raise MalformedLine(BAD_WEIGHT, f"weight {token!r} {_weight_problem(token, weight)}")
    del tokens[0]
    return weight, tokens


def _weight_problem(token: str, weight: float) -> str:
    # Negative weights are refused because --use_weights divides by the sum of the weights
    # (lsp_model.modeling): a negative one would turn training on that turn into unlearning
    # it, and could make the sum zero or negative.
    if math.isnan(weight):
        return "is not a number"
    if math.isinf(weight) or abs(weight) > MAX_WEIGHT:
        return "is infinite or too large"
    if weight < 0:
        return "is negative"
    return "is not a plain decimal number"


# Every character str.split() cuts at but the space and the tab (test_parsing checks the
# list against str.isspace): a line holding none of them, no double space and no space
# before a tab is cut into turns and words at single spaces alone (parse_training_line).
# An explicit class: re's \s in a class with exceptions is several times slower.
_OTHER_WHITESPACE = re.compile(
    "[\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)


def _by_words(line: str) -> tuple[list[float], list[str]]:
    weights, turn_words = parse_training_line_words(line)
    return weights, [" ".join(words) for words in turn_words]


def parse_training_line(line: str) -> tuple[list[float], list[str]]:
    """Parse ``CONTEXT<TAB>RESPONSE`` into turn weights and texts, in conversation order.

    The response is left out when its weight is zero: it is never a target and, being the
    last turn, never context either. Each text is its turn's words joined by single spaces.

    Nearly every real line is single-spaced already. There, ``str.split()`` would only cut
    at the spaces, so each turn is read by ``str.partition`` instead of being cut into
    words and joined again: no turn is empty and none ends with a space (either takes a
    double space, a space before the tab or at the end of the line, which ``strip``
    removed); a turn starting with a space (the response, after the tab) is not led by a
    plain weight. Any other line, and any turn not led by a plain weight, goes through
    ``parse_training_line_words``, the definition; the tests compare the two.
    """
    stripped = line.strip()
    if (
        not stripped
        or "  " in stripped
        or " \t" in stripped
        or _OTHER_WHITESPACE.search(stripped) is not None
    ):
        return _by_words(line)
    fields = stripped.split("\t")
    if len(fields) != 2:
        return _by_words(line)  # raises: the tab count
    context, response = fields
    turns = context.split(TURN_SEPARATOR)
    turns.append(response)
    parts = [turn.partition(" ") for turn in turns]
    weights = [_PLAIN_WEIGHTS.get(token) for token, _, _ in parts]
    if None in weights:  # a weight float() must read, a text float() refuses, bad weights
        return _by_words(line)
    texts = [text for _, _, text in parts]
    if weights[-1] == 0:
        del weights[-1], texts[-1]
    return weights, texts  # type: ignore[return-value]  # no None left


def parse_training_line_words(line: str) -> tuple[list[float], list[list[str]]]:
    """``parse_training_line`` with each text as its words (``str.split()``), not joined:
    the definition of how a line reads, whatever its whitespace."""
    stripped = line.strip()
    if not stripped:
        raise MalformedLine(EMPTY_LINE, "the line is empty")
    fields = stripped.split("\t")
    if len(fields) != 2:
        raise MalformedLine(
            BAD_TAB_COUNT, f"expected CONTEXT<TAB>RESPONSE, found {len(fields) - 1} tabs"
        )
    context, response = fields
    weights: list[float] = []
    texts: list[list[str]] = []
    for turn in context.split(TURN_SEPARATOR):
        weight, words = weighted_turn_words(turn)
        weights.append(weight)
        texts.append(words)
    weight, words = weighted_turn_words(response)
    if weight != 0:
        weights.append(weight)
        texts.append(words)
    return weights, texts


def split_physical_line(raw: bytes) -> list[str]:
    """Decode one ``\\n``-terminated line the way Python's text mode reads it.

    Text mode treats a lone ``\\r`` as a line break too; the published prepro read the
    corpus that way, so such a line counts as several lines here as well.
    Raises ``MalformedLine`` for bytes that are not UTF-8.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedLine(BAD_ENCODING, f"invalid UTF-8 at byte {err.start}") from None
    text = text.removesuffix("\n").removesuffix("\r")
    return text.split("\r") if "\r" in text else [text]


def parse_pair_line(line: str, normalize: bool) -> tuple[str, list[str]]:
    """Parse a raw validation line ``CONTEXT<TAB>RESP1[<TAB>RESP2...]``.

    With ``normalize`` runs of whitespace collapse to one space, else ends are stripped.
    """
    fields = line.rstrip("\n").split("\t")
    if len(fields) < 2:
        raise MalformedLine(BAD_TAB_COUNT, "expected CONTEXT<TAB>RESPONSE, found no tab")

    def clean(text: str) -> str:
        return " ".join(text.split()) if normalize else text.strip()

    return clean(fields[0]), [clean(f) for f in fields[1:]]
