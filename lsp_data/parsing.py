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


def parse_training_line(line: str) -> tuple[list[float], list[str]]:
    """Parse ``CONTEXT<TAB>RESPONSE`` into turn weights and texts, in conversation order.

    The response is left out when its weight is zero: it is never a target and, being the
    last turn, never context either.
    """
    weights, turn_words = parse_training_line_words(line)
    return weights, [" ".join(words) for words in turn_words]


def parse_training_line_words(line: str) -> tuple[list[float], list[list[str]]]:
    """``parse_training_line`` with each text as its words, not joined (what prepro's
    tokenizer looks up)."""
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
