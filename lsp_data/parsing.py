"""The text formats of docs/REFERENCE.md §1: weighted training lines and raw validation pairs.

Parsing is faithful to the published toolkit, Python semantics included (``str.split()``
whitespace, ``float()`` for weights), because the feature ids of a database depend on
exactly which lines give features.
"""

from __future__ import annotations

TURN_SEPARATOR = " EOS "

# Reasons a line is skipped; the keys of ``meta.json``'s ``skipped`` counts.
EMPTY_LINE = "empty_line"
BAD_TAB_COUNT = "not_exactly_one_tab"
EMPTY_TURN = "empty_turn"
BAD_ENCODING = "invalid_utf8"
SKIP_REASONS = (EMPTY_LINE, BAD_TAB_COUNT, EMPTY_TURN, BAD_ENCODING)


class MalformedLine(ValueError):
    """A line that cannot be parsed; ``reason`` is one of ``SKIP_REASONS``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def parse_weighted_turn(turn: str) -> tuple[float, str]:
    """Split a leading numeric weight from a turn: ``'0.0 hi there'`` -> ``(0.0, 'hi there')``.

    A turn whose first token is not a number has weight 1.0 and keeps the token, so an
    unweighted turn starting with a number (``'2 dogs'``) reads as weight 2.0 on ``'dogs'``.
    """
    tokens = turn.split()
    if not tokens:
        raise MalformedLine(EMPTY_TURN, "a turn is empty")
    try:
        weight = float(tokens[0])
    except ValueError:
        return 1.0, " ".join(tokens)
    return weight, " ".join(tokens[1:])


def parse_training_line(line: str) -> tuple[list[float], list[str]]:
    """Parse ``CONTEXT<TAB>RESPONSE`` into turn weights and texts, in conversation order.

    The response is left out when its weight is zero: it is never a target and, being the
    last turn, never context either.
    """
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
    texts: list[str] = []
    for turn in context.split(TURN_SEPARATOR):
        weight, text = parse_weighted_turn(turn)
        weights.append(weight)
        texts.append(text)
    weight, text = parse_weighted_turn(response)
    if weight != 0:
        weights.append(weight)
        texts.append(text)
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
