"""Property-based fuzzing of every parser that reads a user's file (issue 14, part 2).

Each parser gets generated input, hostile where it can be (invalid UTF-8, NUL bytes, lone
``\\r``, 1 MB lines, NaN weights, JSON of the wrong shape, deep reply trees), and must keep
three promises: it does not crash (the only exceptions are the project's own, whose
message names file and line), every record it skips is counted with a reason, and the
counts reconcile (records read = kept + skipped).

Runs are reproducible (``derandomize``: the same examples on every run and machine).
``FAULTS_SOAK=1`` multiplies every example budget by 10. Example counts per parser:
``pytest tests/faults/test_fuzz_parsers.py --hypothesis-show-statistics``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

SOAK = os.environ.get("FAULTS_SOAK", "").strip().lower() not in ("", "0", "false", "no")
SCALE = 10 if SOAK else 1

settings.register_profile(
    "faults-fuzz",
    deadline=None,
    derandomize=True,
    database=None,  # derandomized runs need no example database (and write none into the tree)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_PROFILE = settings.get_profile("faults-fuzz")


def fuzz(examples: int) -> settings:
    """The module's profile with ``examples`` examples (x10 under FAULTS_SOAK)."""
    return settings(_PROFILE, max_examples=examples * SCALE)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    # Hypothesis runs many examples in one test call: a fresh folder per example, not tmp_path.
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        yield Path(folder)


def no_json_constants(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


# -- shared strategies ---------------------------------------------------------------------

WORDS = st.sampled_from(
    ["hello", "there", "EOS", "eos", "1.0", "0.0", "nan", "inf", "-5", "1_000", "1e400", "2",
     "café", "😀", "\u0661", "\uff11", "a\u00a0b", "\x00", "\x0b", "\x85", "\u2028", "[deleted]",
     "&gt;", ">", "|", ",", "\"", "\\", "“", "multiref", "t1_", "t3_"]
)  # fmt: skip
WEIGHTS = st.sampled_from(
    ["0.0", "1.0", "1", "0", "0.5", "+.5e1", "-0.0", "nan", "NaN", "inf", "-inf", "Infinity",
     "1e400", "3.5e38", "-5", "-1e-9", "1_000", "\u0661", "\uff11.0", "1.0x", "", "0x10"]
)  # fmt: skip
SEPARATORS = st.sampled_from([" EOS ", " EOS  ", "  EOS ", " eos ", "EOS", "\t", " ", "\r", "\n"])
LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r", b"", b"\n\r", b"\r\r\n"])
NASTY_BYTES = st.sampled_from(
    [b"\xff", b"\xc3", b"\xe9t\xe9", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\xf0\x9f\x98"]
)


@st.composite
def turn_texts(draw: st.DrawFn) -> str:
    words = draw(st.lists(st.one_of(WORDS, st.text(max_size=6)), max_size=6))
    return " ".join(words)


@st.composite
def training_lines(draw: st.DrawFn) -> str:
    """A line close to the training tsv format, with every part open to damage."""
    turns = []
    for _ in range(draw(st.integers(1, 5))):
        weight = draw(st.one_of(st.just(""), WEIGHTS))
        turns.append(f"{weight} {draw(turn_texts())}" if weight else draw(turn_texts()))
    parts = [turns[0]]
    for turn in turns[1:]:
        parts.append(draw(SEPARATORS))
        parts.append(turn)
    return "".join(parts)


@st.composite
def training_file_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a training or validation tsv: near-valid lines, garbage, bad bytes."""
    out = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind <= 5:
            line = draw(training_lines()).encode("utf-8", "surrogatepass")
        elif kind == 6:
            line = draw(st.binary(max_size=40))
        elif kind == 7:
            good = draw(training_lines()).encode("utf-8", "surrogatepass")
            cut = draw(st.integers(0, len(good)))
            line = good[:cut] + draw(NASTY_BYTES) + good[cut:]
        elif kind == 8:
            line = b""
        else:
            line = draw(st.sampled_from([b"\t", b" \t ", b"\x00\t\x00", b"1.0 a\t1.0 b\t1.0 c"]))
        out.append(line + draw(LINE_ENDS))
    return b"".join(out)


# A 1 MB line, given to the file-level tests as an explicit example (generated, it would make
# every shrinking step of an unrelated failure slow).
MEGABYTE_LINES = b"1.0 a\t1.0 b\n1.0 " + b"word " * 200_000 + b"\t1.0 end\r\n\x00\t\x00\n"


_BACKENDS: dict[int, object] = {}


def shared_backend(tokenizer: object) -> object:
    """``lsp_data.tokenizer.text_backend``, built once per tokenizer: building it takes a
    quarter of a second, more than a fuzz example's own work."""
    from lsp_data.tokenizer import text_backend

    if id(tokenizer) not in _BACKENDS:
        _BACKENDS[id(tokenizer)] = text_backend(tokenizer)  # type: ignore[arg-type]
    return _BACKENDS[id(tokenizer)]


def logical_lines(raw: bytes) -> list[bytes]:
    """Physical lines as prepro reads them (bytes split after each ``\\n``)."""
    return io.BytesIO(raw).readlines()


# -- training tsv (lsp_data.parsing, prepro) ------------------------------------------------


def check_weights(weights: list[float]) -> None:
    from lsp_data.parsing import MAX_WEIGHT

    for w in weights:
        assert math.isfinite(w) and 0.0 <= w <= MAX_WEIGHT, weights


@fuzz(400)
@given(st.one_of(training_lines(), st.text(max_size=80)))
def test_training_line_parses_or_is_malformed_with_a_reason(line: str) -> None:
    from lsp_data.parsing import SKIP_REASONS, MalformedLine, parse_training_line

    try:
        weights, texts = parse_training_line(line)
    except MalformedLine as err:
        assert err.reason in SKIP_REASONS and str(err)
        return
    assert len(weights) == len(texts) >= 1
    check_weights(weights)
    assert all("\t" not in t and t == t.strip() for t in texts)


GOOD_WEIGHTS = st.sampled_from(["0.0", "1.0", "0.5", "2", "1e-3", "+.5", "3.4e38"])
PLAIN_WORDS = st.lists(st.from_regex(r"[a-zA-Z,.?!']{1,8}", fullmatch=True), max_size=5)


@fuzz(200)
@given(st.lists(st.tuples(GOOD_WEIGHTS, PLAIN_WORDS), min_size=2, max_size=6))
def test_weighted_line_round_trips(turns: list[tuple[str, list[str]]]) -> None:
    from lsp_data.parsing import parse_training_line

    *context, response = [f"{w} {' '.join(words)}".strip() for w, words in turns]
    line = " EOS ".join(context) + "\t" + response
    expected = [(float(w), " ".join(words)) for w, words in turns]
    if expected[-1][0] == 0:
        expected.pop()  # a response with weight 0 is no target and is left out
    weights, texts = parse_training_line(line)
    assert list(zip(weights, texts)) == expected


@fuzz(300)
@given(st.binary(max_size=60))
def test_physical_line_splits_or_is_invalid_utf8(raw: bytes) -> None:
    from lsp_data.parsing import BAD_ENCODING, MalformedLine, split_physical_line

    try:
        lines = split_physical_line(raw)
    except MalformedLine as err:
        assert err.reason == BAD_ENCODING and "invalid UTF-8 at byte" in str(err)
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        return
    assert lines and all("\r" not in line for line in lines)


def expected_training_skips(raw: bytes) -> tuple[int, Counter[str]]:
    """(logical lines, skips by reason) by the parser's rules, one line at a time."""
    from lsp_data.parsing import MalformedLine, parse_training_line, split_physical_line

    n_line, skips = 0, Counter[str]()
    for physical in logical_lines(raw):
        try:
            lines = split_physical_line(physical)
        except MalformedLine as err:
            n_line += 1
            skips[err.reason] += 1
            continue
        for line in lines:
            n_line += 1
            try:
                parse_training_line(line)
            except MalformedLine as err:
                skips[err.reason] += 1
    return n_line, skips


@fuzz(40)
@given(training_file_bytes(), st.sampled_from([16, 64]), st.booleans())
@example(MEGABYTE_LINES, 64, False)
def test_prepro_counts_every_line(raw: bytes, max_seq_len: int, reverse: bool) -> None:
    from lsp_data import prepro_cli
    from lsp_data.db import FeatureDB
    from lsp_data.prepro import PreproError, run_prepro

    with scratch() as tmp:
        corpus = tmp / "fuzz.tsv"
        corpus.write_bytes(raw)
        messages: list[str] = []
        try:
            with mock.patch("lsp_data.prepro.text_backend", shared_backend):
                folder, meta = run_prepro(
                    str(corpus),
                    max_seq_len=max_seq_len,
                    chunk_size=7,
                    reverse=reverse,
                    progress=False,
                    log=messages.append,
                )
        except PreproError as err:
            # The only refusal allowed: one naming the corpus (e.g. nothing usable in it).
            assert str(corpus) in str(err), err
            return
        n_line, skips = expected_training_skips(raw)
        assert meta["n_line"] == n_line
        assert meta["skipped"] == {r: skips[r] for r in meta["skipped"]}
        assert sum(skips.values()) == meta["n_line_skipped"] == sum(meta["skipped"].values())
        parsed = n_line - meta["n_line_skipped"]
        with_feature = parsed - meta["n_line_without_feature"]
        assert 0 <= with_feature <= meta["n_example"]
        assert (with_feature == 0) == (meta["n_example"] == 0)
        for reason, count in skips.items():
            shown = [m for m in messages if f"({reason}):" in m]
            assert len(shown) == min(count, 5), (reason, messages)
            assert all(m.startswith(f"{corpus}:") for m in shown)
        with FeatureDB(str(folder)) as db:
            feats = list(db.iter_features())
        assert len(feats) == meta["n_example"]
        for feat in feats:
            check_weights(feat["weights"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            prepro_cli.inspect(str(folder), None)
        for line in out.getvalue().splitlines():
            json.loads(line, parse_constant=no_json_constants)


# -- validation tsv (lsp_data.loaders.DynamicBatchingLoader) --------------------------------


def expected_validation(raw: bytes, normalize: bool) -> tuple[int, int, int]:
    """(malformed physical lines, blank physical lines, examples) by the parser's rules."""
    from lsp_data.parsing import MalformedLine, parse_pair_line, split_physical_line

    bad = blank = examples = 0
    for physical in logical_lines(raw):
        try:
            lines = [line for line in split_physical_line(physical) if line.strip()]
            pairs = [parse_pair_line(line, normalize) for line in lines]
        except MalformedLine:
            bad += 1
            continue
        if not lines:
            blank += 1
        examples += sum(len(responses) for _, responses in pairs)
    return bad, blank, examples


@fuzz(60)
@given(
    training_file_bytes(),
    st.booleans(),
    st.integers(1, 4),
    st.sampled_from([1, 2, 3, 8, 64]),
)
@example(MEGABYTE_LINES, True, 2, 64)
def test_validation_loader_counts_every_line(
    raw: bytes, normalize: bool, batch_size: int, max_seq_length: int
) -> None:
    from lsp_data.loaders import DynamicBatchingLoader
    from lsp_data.tokenizer import load_tokenizer

    with scratch() as tmp:
        corpus = tmp / "valid.tsv"
        corpus.write_bytes(raw)
        messages: list[str] = []
        with mock.patch("lsp_data.loaders.text_backend", shared_backend):
            loader = DynamicBatchingLoader(
                str(corpus), load_tokenizer(), normalize, batch_size, max_seq_length,
                log=messages.append,
            )  # fmt: skip
        n_batches = len(loader)
        batches = list(loader)
    bad, blank, examples = expected_validation(raw, normalize)
    n_physical = len(logical_lines(raw))
    assert loader.n_skipped_lines == bad
    # read = kept + skipped, per line: a line gives examples, is blank, or is malformed
    assert loader.n_lines == n_physical
    assert loader.n_lines - loader.n_blank_lines - loader.n_skipped_lines == (
        n_physical - blank - bad
    )
    assert loader.n_examples == examples
    rows = sum(len(b[0]) for b in batches)
    assert rows == examples - loader.n_dropped  # read = kept + dropped, per example
    assert n_batches == len(batches)
    for input_ids, position_ids, _, labels, context_len, response_len in batches:
        assert input_ids.shape == labels.shape == position_ids.shape
        assert input_ids.shape[1] <= max_seq_length
        assert bool((context_len >= 0).all()) and bool((response_len >= 0).all())
    shown = [m for m in messages if ": skipped, " in m]
    assert len(shown) == min(bad, 5) and all(m.startswith(f"{corpus}:") for m in shown)
