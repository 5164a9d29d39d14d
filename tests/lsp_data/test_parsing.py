"""The text formats of docs/REFERENCE.md §1, against hand-worked lines."""

import pytest

from lsp_data.parsing import (
    BAD_ENCODING,
    BAD_TAB_COUNT,
    BAD_WEIGHT,
    EMPTY_LINE,
    EMPTY_TURN,
    SKIP_REASONS,
    TURN_SEPARATOR,
    MalformedLine,
    parse_pair_line,
    parse_training_line,
    parse_training_line_words,
    parse_weighted_turn,
    split_physical_line,
)


def reason_of(call, *args) -> tuple[str, str]:
    with pytest.raises(MalformedLine) as info:
        call(*args)
    assert isinstance(info.value, ValueError)  # callers may catch it as a ValueError
    return info.value.reason, str(info.value)


def test_constants():
    assert TURN_SEPARATOR == " EOS "
    # the keys of meta.json's skipped counts: renaming one changes every database's meta
    assert SKIP_REASONS == (
        "empty_line",
        "not_exactly_one_tab",
        "empty_turn",
        "invalid_utf8",
        "bad_weight",
    )
    assert (EMPTY_LINE, BAD_TAB_COUNT, EMPTY_TURN, BAD_ENCODING, BAD_WEIGHT) == SKIP_REASONS


@pytest.mark.parametrize(
    "turn, expected",
    [
        ("0.0 hello there", (0.0, "hello there")),
        ("1.0 how are you ?", (1.0, "how are you ?")),
        ("0.5   spaced \t out  ", (0.5, "spaced out")),  # str.split() whitespace, one space
        ("hello there", (1.0, "hello there")),  # no weight: 1.0, first token kept
        ("  hello   there ", (1.0, "hello there")),
        ("2 dogs", (2.0, "dogs")),  # the documented consequence of float() on token 1
        ("1e-1 sci", (0.1, "sci")),
        ("+.5e+1 x", (5.0, "x")),  # every plain decimal form
        ("-0.0 zero", (0.0, "zero")),  # negative zero is zero
        ("3.4e38 big", (3.4e38, "big")),  # still a finite 32-bit float
        ("1.0", (1.0, "")),  # a weight-only turn has empty text
        ("0.0", (0.0, "")),
        ("1.0x nope", (1.0, "1.0x nope")),
    ],
)
def test_parse_weighted_turn(turn, expected):
    assert parse_weighted_turn(turn) == expected


@pytest.mark.parametrize(
    "token, why",
    [
        ("nan", "is not a number"),
        ("NaN", "is not a number"),
        ("inf", "is infinite or too large"),
        ("-inf", "is infinite or too large"),
        ("Infinity", "is infinite or too large"),
        ("1e400", "is infinite or too large"),  # float() overflows to inf
        ("3.5e38", "is infinite or too large"),  # finite in Python, inf as a batch's float32
        ("-5", "is negative"),
        ("-1e-9", "is negative"),
        ("1_000", "is not a plain decimal number"),  # Python-only syntax
        ("\u0661", "is not a plain decimal number"),  # Arabic-Indic digit one: float() takes it
        ("\uff11.0", "is not a plain decimal number"),  # full-width digit
    ],
)
def test_bad_weight_makes_the_line_malformed(token, why):
    # float() accepts each of these, so the published parser took them as weights (NaN and
    # inf reached the database and --inspect's JSON); here the line is malformed instead.
    float(token)  # accepted by float(), hence a weight and not text
    reason, message = reason_of(parse_weighted_turn, f"{token} words")
    assert (reason, message) == (BAD_WEIGHT, f"weight {token!r} {why}")
    for line in (f"{token} a\t1.0 b", f"1.0 a EOS {token} b\t1.0 c", f"1.0 a\t{token} b"):
        assert reason_of(parse_training_line, line)[0] == BAD_WEIGHT, line


def test_a_token_float_refuses_is_text():
    assert parse_weighted_turn("nanny x") == (1.0, "nanny x")
    assert parse_weighted_turn("1.0.0 x") == (1.0, "1.0.0 x")
    assert parse_weighted_turn("0x10 y") == (1.0, "0x10 y")


@pytest.mark.parametrize("turn", ["", "   ", "\t \n"])
def test_empty_turn_is_malformed(turn):
    assert reason_of(parse_weighted_turn, turn) == (EMPTY_TURN, "a turn is empty")


def test_parse_training_line_in_conversation_order():
    line = "0.0 hello there EOS 1.0 how are you ?\t1.0 fine , thanks\n"
    assert parse_training_line(line) == (
        [0.0, 1.0, 1.0],
        ["hello there", "how are you ?", "fine , thanks"],
    )


def test_zero_weight_response_is_dropped_but_zero_weight_context_kept():
    assert parse_training_line("0.0 a EOS 0.0 b\t0.0 c") == ([0.0, 0.0], ["a", "b"])
    assert parse_training_line("0.0 a\t0.0") == ([0.0], ["a"])
    # a non-zero weight other than 1.0 is kept as given
    assert parse_training_line("1.0 a\t0.25 b") == ([1.0, 0.25], ["a", "b"])


def test_unweighted_turns():
    assert parse_training_line("hi EOS there\tyou") == ([1.0, 1.0, 1.0], ["hi", "there", "you"])


def test_separator_is_the_literal_space_eos_space():
    # "EOS" glued to a word, or lower case, is text, not a separator
    assert parse_training_line("1.0 aEOS b eos c\t1.0 d") == ([1.0, 1.0], ["aEOS b eos c", "d"])
    # extra spaces around the separator end up inside the turns, where split() drops them
    assert parse_training_line("1.0 a  EOS  1.0 b\t1.0 c") == ([1.0, 1.0, 1.0], ["a", "b", "c"])


def test_surrounding_whitespace_is_stripped_before_the_tab_split():
    # faithful: a trailing tab (an empty third field) disappears with the strip
    assert parse_training_line("  1.0 a\t1.0 b\t\r\n") == ([1.0, 1.0], ["a", "b"])


@pytest.mark.parametrize("line", ["", "\n", "  \t \r\n"])
def test_empty_line(line):
    assert reason_of(parse_training_line, line) == (EMPTY_LINE, "the line is empty")


@pytest.mark.parametrize(
    "line, tabs",
    [
        ("1.0 no tab at all", 0),
        ("\t1.0 leading tab is stripped away", 0),
        ("1.0 a\t1.0 b\t1.0 c", 2),
        ("1.0 a\t\t1.0 b", 2),
    ],
)
def test_tab_count(line, tabs):
    assert reason_of(parse_training_line, line) == (
        BAD_TAB_COUNT,
        f"expected CONTEXT<TAB>RESPONSE, found {tabs} tabs",
    )


def test_empty_turn_inside_a_line():
    # two separators in a row, or a context ending with one, leave an empty turn
    for line in ("1.0 a EOS  EOS 1.0 b\t1.0 c", "1.0 a EOS \t1.0 b"):
        assert reason_of(parse_training_line, line) == (EMPTY_TURN, "a turn is empty"), line
    # ... but not one at the very start: the line's strip eats its leading space
    assert parse_training_line(" EOS 1.0 a\t1.0 b") == ([1.0, 1.0], ["EOS 1.0 a", "b"])
    # an empty response cannot reach the turn parser: the strip removes its tab
    assert reason_of(parse_training_line, "1.0 a\t \t")[0] == BAD_TAB_COUNT


@pytest.mark.parametrize(
    "raw, lines",
    [
        (b"a\tb\n", ["a\tb"]),
        (b"a\tb", ["a\tb"]),  # last line without newline
        (b"a\tb\r\n", ["a\tb"]),  # Windows line end: one line
        (b"a\rb\n", ["a", "b"]),  # a lone \r breaks the line, as text mode does
        (b"a\r\rb\r\n", ["a", "", "b"]),
        (b"\n", [""]),
        (b"caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80\n", ["café — 😀"]),
        (b"a\n\r", ["a\n"]),  # only one line end is removed, and \n before \r
    ],
)
def test_split_physical_line(raw, lines):
    assert split_physical_line(raw) == lines


def test_split_physical_line_rejects_bad_utf8_naming_the_byte():
    assert reason_of(split_physical_line, b"ok \xff bad\n") == (
        BAD_ENCODING,
        "invalid UTF-8 at byte 3",
    )
    assert reason_of(split_physical_line, b"\xe9t\xe9\n") == (
        BAD_ENCODING,
        "invalid UTF-8 at byte 0",
    )


def test_parse_pair_line_normalized():
    assert parse_pair_line("how  are\tyou ?\tfine ,  thanks\t  good \n", True) == (
        "how are",
        ["you ?", "fine , thanks", "good"],
    )


def test_parse_pair_line_not_normalized_only_strips_ends():
    assert parse_pair_line(" how  are \t you  ?\n", False) == ("how  are", ["you  ?"])
    # only the newline is removed before the split: a trailing tab gives an empty response
    assert parse_pair_line("a\tb\t\n", False) == ("a", ["b", ""])
    assert parse_pair_line("XOXO\txoxoX\n", False) == ("XOXO", ["xoxoX"])


@pytest.mark.parametrize("line", ["no tab here\n", "", "\n"])
def test_parse_pair_line_needs_a_tab(line):
    assert reason_of(parse_pair_line, line, True) == (
        BAD_TAB_COUNT,
        "expected CONTEXT<TAB>RESPONSE, found no tab",
    )


def _by_words(line):
    weights, turn_words = parse_training_line_words(line)
    return weights, [" ".join(words) for words in turn_words]


@pytest.mark.parametrize(
    "line",
    [
        "1.0 a  b\t1.0 c",  # a double space
        "1.0 a \t1.0 b",  # a space before the tab ...
        "1.0 a\t 1.0 b",  # ... and after it
        "1.0 a\u00a0b\t1.0 c",  # whitespace that is no space: split() cuts there
        "1.0 a\x1cb\t1.0 c",  # a separator str.split() takes as whitespace
        "1.0 a\nb\t1.0 c",  # a line break inside a line (a tsv read by other means)
        "1.0 a\u3000b EOS 0.0 c\t1.0 d",
        "1.0 a EOS EOS b\t1.0 c",  # "EOS" left inside a turn
        "0.0 a\t-0.0 b",  # a response weighted -0.0 is no target either
        "nan a\t1.0 b",  # a weight float() reads but the toolkit refuses
        "2 dogs EOS hi\t1.0 c",  # numbers and unweighted turns read by float()
        "0.0\t1.0",  # turns of a weight alone
    ],
)
def test_single_space_route_reads_as_the_words_do(line):
    # parse_training_line reads single-spaced lines without cutting them into words
    def outcome(parse):
        try:
            return parse(line)
        except MalformedLine as err:
            return err.reason, str(err)

    assert outcome(parse_training_line) == outcome(_by_words)


def test_the_single_space_route_knows_every_whitespace_character():
    import sys

    from lsp_data.parsing import _OTHER_WHITESPACE

    listed = {c for c in map(chr, range(sys.maxunicode + 1)) if _OTHER_WHITESPACE.match(c)}
    every = {c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()}
    assert listed == every - {" ", "\t"}
