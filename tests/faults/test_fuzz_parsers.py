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
import gzip
import io
import json
import math
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, example, given, settings
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


def _outcome(parse, line: str) -> object:
    from lsp_data.parsing import MalformedLine

    try:
        return parse(line)
    except MalformedLine as err:
        return (err.reason, str(err))


@st.composite
def single_spaced_lines(draw: st.DrawFn) -> str:
    """Lines for parse_training_line's single-space route: turns mostly led by a plain
    weight, separators that may leave "EOS" inside a turn, tokens float() refuses or reads;
    half of them with one odd whitespace somewhere, which the route must notice."""
    token = st.one_of(WORDS.filter(lambda w: not any(c.isspace() for c in w)),
                      st.from_regex(r"[a-z0-9.+-]{1,4}", fullmatch=True))  # fmt: skip
    weight = st.one_of(st.sampled_from(["0.0", "1.0", "0", "1"]), token)
    turns = [
        " ".join([draw(weight), *draw(st.lists(token, max_size=4))])
        for _ in range(draw(st.integers(2, 5)))
    ]
    line = " EOS ".join(turns[:-1]) + "\t" + turns[-1]
    if draw(st.booleans()):  # anywhere, or where turns and fields meet
        tab, eos = line.index("\t"), line.find(" EOS ")
        places = [tab, tab + 1, eos, eos + 1, eos + 4, eos + 5] if eos >= 0 else [tab, tab + 1]
        at = draw(st.one_of(st.integers(0, len(line)), st.sampled_from(places)))
        line = line[:at] + draw(ODD_SPACES) + line[at:]
    return line


ODD_SPACES = st.sampled_from([" ", "  ", "\t", " \t", "\u00a0", "\x1c", "\u3000", "\x0b", "\x85"])


@fuzz(400)
@given(st.one_of(single_spaced_lines(), training_lines(), st.text(max_size=80)))
def test_training_line_reads_as_its_words_do(line: str) -> None:
    # parse_training_line reads single-spaced lines without cutting them into words: it must
    # give what the definition (parse_training_line_words, words joined) gives, error included.
    from lsp_data.parsing import parse_training_line, parse_training_line_words

    def by_words(text: str) -> tuple[list[float], list[str]]:
        weights, turn_words = parse_training_line_words(text)
        return weights, [" ".join(words) for words in turn_words]

    assert _outcome(parse_training_line, line) == _outcome(by_words, line)


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


@fuzz(60)
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


@fuzz(100)
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


# -- Pushshift records (reddit_extractor: extract, then conv) -------------------------------

MONTH = "2011-03"
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and inf included: json.dumps writes them as NaN/Infinity, as Python reads
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.text(max_size=12),
    st.sampled_from(["a\tb", "a\nb", "a\rb", "t3_\t", "\x00", "\ud800", "", " "]),
)
ODD_BODIES = st.one_of(
    st.sampled_from(
        ["[deleted]", "[removed]", "> quoted\n\nreply text here", "&gt; quoted", "", "   ",
         "ok", "line one\nline two\ttabbed", "b\\/c w/o URL http://x.y #tag", "SHOUTING LOUD",
         "(tags) [and] more", "no no no no", "\u2028 sep \u0085 nel \x0b vt", "lone \ud800"]
    ),
    st.lists(WORDS, min_size=1, max_size=8).map(" ".join),
    st.text(max_size=30),
)  # fmt: skip
SENTENCES = st.lists(
    st.sampled_from("how are you doing today fine thanks what about the weather".split()),
    min_size=2,
    max_size=8,
).map(" ".join)


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """Mostly a plain sentence that passes every filter, else something odd."""
    return draw(SENTENCES if draw(st.integers(0, 9)) < 6 else ODD_BODIES)


def maybe_damage(draw: st.DrawFn, record: dict) -> dict:
    """Leave a record intact (mostly), or drop a field, or give one a value of a wrong type."""
    kind = draw(st.integers(0, 9))
    if kind >= 2 or not record:
        return record
    name = draw(st.sampled_from(sorted(record)))
    if kind == 0:
        del record[name]
    else:
        record[name] = draw(ODD_VALUES)
    return record


GARBAGE_LINES = st.sampled_from(
    [b"", b"{not json", b"[1, 2]", b"null", b"42", b'"text"', b"{}", b"\xff\xfe{}",
     b'{"id": "x\xe9"}', b"\x00", b'{"a": 1} {"b": 2}', b"[" * 5000, b'{"a":' + b"[" * 5000,
     b'{"id": NaN}', b"1" * 5000, b'{"id": "' + b"\\ud800" + b'"}', b"\r"]
)  # fmt: skip


@st.composite
def pushshift_month(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(RS dump, RC dump): a few submissions and a comment forest, some of it damaged."""
    n_subs = draw(st.integers(1, 3))
    subs_lines: list[bytes] = []
    for i in range(n_subs):
        sub = {
            "id": f"s{i}",
            "score": draw(st.integers(-5, 50)),
            "num_comments": draw(st.sampled_from([10, 10, 10, 0, 1, 2, "7", 2.5])),
            "domain": draw(st.sampled_from(["self.pics", "i.imgur.com", "YouTube.com"])),
            "permalink": draw(st.sampled_from([f"/r/pics/comments/s{i}/x/", "/r/", "", "nope"])),
            "title": draw(bodies()),
        }
        subs_lines.append(json.dumps(maybe_damage(draw, sub)).encode("utf-8", "surrogatepass"))
    comment_lines: list[bytes] = []
    link_of: dict[str, str] = {}  # comment key -> its submission: replies stay in its thread
    deep = draw(st.integers(0, 4)) == 0
    for j in range(draw(st.integers(0, 40 if deep else 16))):
        keys = list(link_of)
        # s{n_subs}: a submission that is not in the dump
        link = f"t3_s{draw(st.integers(0, n_subs) if j % 5 == 4 else st.integers(0, n_subs - 1))}"
        if deep:
            parent = keys[-1] if keys else link  # one long reply chain
        elif keys and j % 3:
            parent = draw(st.sampled_from(keys[-4:]))
        else:  # a top-level comment; or a reply to a missing comment, or to itself
            parent = draw(st.sampled_from([link, link, "t1_nowhere", f"t1_c{j}"]))
        link = link_of.get(parent, link)
        cid = f"c{j}" if j % 7 != 6 else f"c{j - 1}"  # now and then a repeated id
        comment: dict[str, object] = {
            "id": cid,
            "author": draw(st.sampled_from(["a", "b", "[deleted]"])),
            "parent_id": parent,
            "link_id": link,
            "score": draw(st.sampled_from([1, 5, 2, None, -3, 0, "2"])),
            "body": draw(bodies()),
        }
        link_of["t1_" + cid] = link
        comment_lines.append(
            json.dumps(maybe_damage(draw, comment)).encode("utf-8", "surrogatepass")
        )
    for lines in (subs_lines, comment_lines):
        for _ in range(draw(st.integers(0, 2))):
            lines.insert(draw(st.integers(0, len(lines))), draw(GARBAGE_LINES))
    end = draw(st.sampled_from([b"\n", b"\r\n"]))
    return end.join(subs_lines) + end, end.join(comment_lines) + end


def universal_lines(raw: bytes) -> list[str]:
    """Lines as Python's text mode splits them (\\n, \\r and \\r\\n), whatever the bytes."""
    return io.TextIOWrapper(io.BytesIO(raw), encoding="latin-1", newline=None).readlines()


def read_counts(path: Path) -> Counter[str]:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return Counter({k: int(v) for k, v in (line.split("\t") for line in text.splitlines())})


def gz_lines(path: Path) -> list[str]:
    """The lines of an extract file as conv reads them (text mode: \\n, \\r, \\r\\n end one)."""
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogatepass") as fh:
        return list(fh)


EXTRACT_BAD = ("bad_record", "invalid_json", "bad_utf8")  # records read and not kept
CONV_SKIPS_OF_COMMENTS = (
    "not_in_keys", "not_leaf", "missing", "bad_subreddit", "bad_score", "low_score",
    "exception", "min_depth", "tokenizer_timeout", "offensive", "emptytarget", "longword",
    "toolong", "url", "tags", "allcaps", "repetitions",
)  # fmt: skip


def _found_month() -> tuple[bytes, bytes]:
    """What fuzzing found in the extractor, kept as a fixed example: JSON nested past the
    recursion limit, a tab and a line break in fields written as they are, a repeated id."""
    sub = {"id": "s0", "score": 1, "num_comments": 10, "domain": "d",
           "permalink": "/r/pics/comments/s0/x/", "title": "a title"}  # fmt: skip
    com = {"id": "c0", "author": "a", "parent_id": "t3_s0", "link_id": "t3_s0", "score": 1,
           "body": "how are you"}  # fmt: skip
    rs = [sub, dict(sub, id="s1", domain="a\tb"), dict(sub, id="s2", permalink="/r/\n/")]
    rc = [com, dict(com, id="c1", parent_id="t1_c0"), dict(com, id="c1", parent_id="t1_c0"),
          dict(com, id="c2", author="x\ty"), dict(com, id="c3", score="1\r")]  # fmt: skip
    lines = [json.dumps(r).encode() for r in rs], [json.dumps(r).encode() for r in rc]
    lines[0].append(b"[" * 5000)
    lines[1].append(b'{"body": ' + b"[" * 5000)
    return b"\n".join(lines[0]) + b"\n", b"\n".join(lines[1]) + b"\n"


@fuzz(100)
@given(
    pushshift_month(),
    st.booleans(),
    st.sampled_from([0, 1]),
    st.sampled_from([0, 1]),
    st.sampled_from(["w", "c"]),
)
@example(_found_month(), True, 0, 1, "w")
@example(_found_month(), False, 1, 0, "c")
def test_extractor_counts_every_record(
    dumps: tuple[bytes, bytes], clean: bool, leaves_only: int, use_title: int, max_len_type: str
) -> None:
    from lsp_data.parsing import (
        BAD_TAB_COUNT,
        EMPTY_LINE,
        EMPTY_TURN,
        MalformedLine,
        parse_training_line,
    )
    from reddit_extractor.conv import ConvOptions, conv_month
    from reddit_extractor.errors import StrictError
    from reddit_extractor.extract import ExtractOptions, extract_month, split_folder

    rs, rc = dumps
    with scratch() as tmp, contextlib.redirect_stderr(io.StringIO()):
        (tmp / "in").mkdir()
        (tmp / "in" / f"RS_{MONTH}").write_bytes(rs)
        (tmp / "in" / f"RC_{MONTH}").write_bytes(rc)
        out = tmp / "out"
        summary = extract_month(ExtractOptions(MONTH, str(tmp / "in"), str(out), split_size=2))
        folder = Path(split_folder(str(out), MONTH))
        skips = read_counts(folder / "skips.tsv")
        assert set(skips) <= {f"{p}{r}" for p in ("rs_", "rc_") for r in
                              (*EXTRACT_BAD, "few_comments", "bad_id", "truncated", "deleted",
                               "quote", "no_submission", "too_short", "not_in_keys")}  # fmt: skip
        # read = kept + skipped (a submission with a non-string id is kept and also counted)
        assert summary.submissions == len(universal_lines(rs))
        assert summary.submissions == summary.kept_submissions + sum(
            skips[f"rs_{r}"] for r in (*EXTRACT_BAD, "few_comments")
        )
        assert summary.comments == summary.kept_comments + sum(
            skips[k] for k in skips if k.startswith("rc_") and k != "rc_truncated"
        )
        # every bad record is logged naming its dump and line, and --strict stops at the first
        logged = (folder / "extract.log").read_text(encoding="utf-8").splitlines()
        bad = [entry for entry in (line.split("\t", 2) for line in logged)
               if not entry[1].endswith("truncated")]  # fmt: skip
        assert len(bad) == sum(skips[k] for k in skips if k.endswith(EXTRACT_BAD + ("bad_id",)))
        assert all(re.match(rf"R[SC]_{MONTH}:\d+: ", message) for _, _, message in bad), bad
        if bad:
            with pytest.raises(StrictError, match=rf"^R[SC]_{MONTH}:\d+: "):
                extract_month(ExtractOptions(MONTH, str(tmp / "in"), str(tmp / "o2"), strict=True))
            assert not (tmp / "o2" / "extract" / MONTH).exists()
        rs_lines = [line for f in sorted(folder.glob("rs_sub*.tsv.gz")) for line in gz_lines(f)]
        rc_lines = [line for f in sorted(folder.glob("rc_sub*.tsv.gz")) for line in gz_lines(f)]
        assert len(rs_lines) == summary.kept_submissions
        assert len(rc_lines) == summary.kept_comments
        assert all(line.count("\t") == 5 for line in rs_lines)
        assert all(line.count("\t") == 6 for line in rc_lines)

        opts = ConvOptions(
            MONTH, str(out), clean=clean, leaves_only=leaves_only, use_title=use_title,
            max_len_type=max_len_type,
        )  # fmt: skip
        selected, comments = conv_month(opts)
        event(f"extract kept comments: {min(summary.kept_comments, 3)}")
        event(f"conv selected instances: {min(selected, 3)}")
        conv = out / "conv"
        counts = read_counts(conv / f"{MONTH}.skips.tsv")
        assert set(counts) <= {*CONV_SKIPS_OF_COMMENTS, "bad_rs_line", "bad_rc_line",
                               "duplicate_submission", "duplicate_comment"}  # fmt: skip
        # every comment read from the extract files: selected, skipped, or a repeated id
        assert len(rc_lines) == comments + counts["bad_rc_line"] + counts["duplicate_comment"]
        assert comments == selected + sum(counts[r] for r in CONV_SKIPS_OF_COMMENTS)
        lines = (conv / f"{MONTH}.tsv").read_text(encoding="utf-8").split("\n")
        assert lines.pop() == "" and len(lines) == selected
        assert all(line.count("\t") == 2 for line in lines)
        # what the extractor writes, prepro reads: at worst a turn that normalised to nothing
        for line in lines:
            try:
                parse_training_line(line.split("\t", 1)[1])
            except MalformedLine as err:
                assert err.reason in (EMPTY_TURN, EMPTY_LINE, BAD_TAB_COUNT), (line, err)


# -- multi-reference files: written by reddit_extractor.multiref ----------------------------

HEADERS = [f"t3_a,t1_p,t1_x{i}" for i in range(5)]


@st.composite
def multiref_inputs(draw: st.DrawFn) -> tuple[bytes, bool, bytes]:
    """(conv output of the test months, gzip it?, reference ids), both open to damage."""
    data = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 5))
        if kind <= 3:
            fields = [
                draw(st.sampled_from(HEADERS)),
                draw(st.sampled_from(["hi “you”", "other source", "", "a|b"])),
                draw(st.sampled_from(["yes “sir”", "no", "", "x|y"])),
            ]
            data.append("\t".join(fields).encode("utf-8"))
        elif kind == 4:
            data.append(draw(st.sampled_from([b"", b"one field", b"a\tb", b"a\tb\tc\td", b"\r"])))
        else:
            data.append(draw(st.text(max_size=20)).encode("utf-8", "surrogatepass"))
    ids = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 4)):
            refs = [
                draw(st.sampled_from(["1.0", "0.5", "", "x"])) + ","
                + draw(st.sampled_from([*HEADERS, "t3_z,t1_z,t1_z"]))
                if draw(st.integers(0, 5)) else draw(st.sampled_from(["no comma", ""]))
                for _ in range(draw(st.integers(0, 4)))
            ]  # fmt: skip
            ids.append("\t".join(["multiref", *refs]).encode("utf-8"))
        else:
            ids.append(draw(st.sampled_from([b"", b"something else", b"multirefx\t1,a", b" "])))
    data_bytes = b"\n".join(data) + draw(st.sampled_from([b"\n", b""]))
    ids_bytes = b"\r\n".join(ids) + draw(st.sampled_from([b"\r\n", b""]))
    if draw(st.integers(0, 5)) == 0:
        data_bytes += draw(NASTY_BYTES)
    if draw(st.integers(0, 5)) == 0:
        ids_bytes += draw(NASTY_BYTES)
    return data_bytes, draw(st.booleans()), ids_bytes


@fuzz(150)
@given(multiref_inputs(), st.sampled_from(["none", "truncate", "flip"]), st.integers(0, 2**16))
@example((b"t3_a,t1_p,t1_x0\thi\tyes\n" * 40, True, b"multiref\t1.0,t3_a,t1_p,t1_x0\n"), "flip", 30)
def test_multiref_build_counts_every_line(
    inputs: tuple[bytes, bool, bytes], damage: str, where: int
) -> None:
    from reddit_extractor.errors import UserError
    from reddit_extractor.multiref import build, load_instances

    data_bytes, compressed, ids_bytes = inputs
    if compressed:
        data_bytes = gzip.compress(data_bytes, mtime=0)
        cut = 10 + where % max(1, len(data_bytes) - 10)  # past the gzip magic number
        if damage == "truncate":
            data_bytes = data_bytes[:cut]
        elif damage == "flip":
            data_bytes = data_bytes[:cut] + bytes([data_bytes[cut] ^ 0x55]) + data_bytes[cut + 1 :]
    with scratch() as tmp, contextlib.redirect_stderr(io.StringIO()):
        data, ids, out = tmp / "test.tsv", tmp / "ids.txt", tmp / "refs.txt"
        data.write_bytes(data_bytes)
        ids.write_bytes(ids_bytes)
        counts: Counter[str] = Counter()
        try:
            written, dropped = build(str(data), str(ids), str(out), counts)
        except UserError as err:
            assert str(data) in str(err) or str(ids) in str(err), err
            assert not out.exists()  # nothing half-written
            return
        loaded: Counter[str] = Counter()
        instances = load_instances(str(data), loaded)
        assert loaded["data_lines"] == (
            len(instances) + loaded["malformed_data_line"] + loaded["duplicate_data_line"]
        )
        id_lines = universal_lines(ids_bytes)
        assert counts["id_lines"] == len(id_lines)
        assert counts["id_lines"] == written + counts["not_multiref"] + counts["no_reference"]
        assert dropped == (
            counts["malformed_reference"] + counts["missing_reference"]
            + counts["mismatched_source"]
        )  # fmt: skip
        refs_asked = sum(
            len(els) - 1
            for els in (line.rstrip().split("\t") for line in id_lines)
            if els[0] == "multiref"
        )
        lines = out.read_text(encoding="utf-8").split("\n")
        assert lines.pop() == "" and len(lines) == written
        assert refs_asked == dropped + sum(len(line.split("\t")) - 1 for line in lines)


def damage_gzip(blob: bytes, damage: str, where: int) -> bytes:
    cut = 10 + where % max(1, len(blob) - 10)  # past the gzip header's magic number
    if damage == "truncate":
        return blob[:cut]
    return blob[:cut] + bytes([blob[min(cut, len(blob) - 1)] ^ 0x55]) + blob[cut + 1 :]


@fuzz(100)
@given(
    st.lists(st.text(max_size=30), max_size=20).map("\n".join),
    st.sampled_from(["truncate", "flip"]),
    st.integers(0, 2**16),
    st.sampled_from(["keys", "rs_split", "rc_split"]),
)
@example("Ð", "flip", 1, "rs_split")  # found: a damaged split gave a UnicodeDecodeError
@example("a\tb\tc\td\te\tf\tg\n" * 50, "flip", 30, "rc_split")
@example("key\tkeep\n" * 50, "flip", 30, "keys")
def test_damaged_gzip_inputs_are_named(text: str, damage: str, where: int, reader: str) -> None:
    """The extractor's other gzip readers: key files and the extract splits conv reads."""
    from reddit_extractor.blocklist import load_keys
    from reddit_extractor.conv import load_split
    from reddit_extractor.errors import UserError
    from reddit_extractor.stats import Report

    blob = damage_gzip(gzip.compress(text.encode("utf-8", "surrogatepass"), mtime=0), damage, where)
    with scratch() as tmp, contextlib.redirect_stderr(io.StringIO()):
        good = gzip.compress(b"")
        (tmp / "rs_sub0.tsv.gz").write_bytes(blob if reader == "rs_split" else good)
        (tmp / "rc_sub0.tsv.gz").write_bytes(blob if reader == "rc_split" else good)
        (tmp / "keys.gz").write_bytes(blob)
        report = Report()
        try:
            if reader == "keys":
                load_keys(str(tmp / "keys.gz"), "conv")
            else:
                load_split(str(tmp), 0, report)
        except UserError as err:
            name = "keys.gz" if reader == "keys" else reader.replace("_split", "_sub0.tsv.gz")
            assert name in str(err), err
            return
    # Read without an error: only when gzip itself finds the file whole (a flip in a header
    # field that no check covers), never a silent partial read.
    gzip.decompress(blob)


# -- DSTC hypothesis, reference and keys files (dstc.multiref, dstc.evaluate) ---------------

DSTC_KEYS = ["k1", "k2", "k3", "k4"]
DSTC_TEXTS = st.one_of(
    st.sampled_from(["", "hello there", "a|b|c", "|", "score|", "x\u2028y", "é", " "]),
    st.text(alphabet=st.characters(exclude_characters="\t\n\r"), max_size=12),
)


@st.composite
def dstc_file(draw: st.DrawFn, kind: str) -> bytes:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from([*DSTC_KEYS, "", "other"]))
        if kind == "keys":
            line = key
        elif kind == "refs":
            fields = [draw(st.sampled_from(["1.0", "x", ""])) + "|" + draw(DSTC_TEXTS)
                      for _ in range(draw(st.integers(0, 3)))]  # fmt: skip
            if draw(st.integers(0, 6)) == 0:
                fields.append(draw(DSTC_TEXTS))  # a field without '|'
            line = "\t".join([key, *fields])
        else:  # hyp: keyed or plain
            line = f"{key}\t{draw(DSTC_TEXTS)}" if draw(st.booleans()) else draw(DSTC_TEXTS)
        if draw(st.integers(0, 9)) == 0:
            line = draw(st.sampled_from(["", "\ufeff" + line, line + "\t", "\x00", "\t"]))
        lines.append(line)
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    raw = (end.join(lines) + draw(st.sampled_from([end, ""]))).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        raw += draw(NASTY_BYTES)
    return raw


def check_input_error(err: Exception, paths: dict[str, bytes]) -> None:
    """A DSTC InputError names one of the files and, with a line, one that exists in it."""
    from dstc.textio import InputError

    assert isinstance(err, InputError), err
    if err.path is None:
        assert err.reason == "no reference files given"
        return
    assert err.path in paths and str(err).startswith(err.path)
    if err.line is not None:
        n_lines = len(universal_lines(paths[err.path]))
        assert 1 <= err.line <= n_lines + 1, (err, n_lines)


@fuzz(200)
@given(
    dstc_file("keys"),
    dstc_file("refs"),
    dstc_file("hyp"),
    st.booleans(),
    st.sampled_from(["auto", "keyed", "lines"]),
    st.booleans(),
)
def test_dstc_readers_take_or_name_the_line(
    keys: bytes, refs: bytes, hyp: bytes, skip_missing: bool, hyp_format: str, human: bool
) -> None:
    from dstc.multiref import build_instances
    from dstc.textio import InputError

    with scratch() as tmp:
        paths = {
            str(tmp / "keys.txt"): keys,
            str(tmp / "refs.txt"): refs,
            str(tmp / "hyp.txt"): hyp,
        }
        for path, raw in paths.items():
            Path(path).write_bytes(raw)
        warnings: list[str] = []
        try:
            inst = build_instances(
                str(tmp / "hyp.txt"), str(tmp / "refs.txt"), str(tmp / "keys.txt"),
                n_refs=3, human=human, skip_missing=skip_missing, hyp_format=hyp_format,
                warn=warnings.append,
            )  # fmt: skip
        except InputError as err:
            check_input_error(err, paths)
            return
    assert len(inst.keys) == len(inst.hyps) == len(inst.refs) >= 1
    assert all(len(r) == 3 for r in inst.refs)
    assert inst.keys == sorted(inst.keys) and len(set(inst.keys)) == len(inst.keys)
    n_keys = len({line.strip() for line in universal_lines(keys) if line.strip()} - {"\ufeff"})
    missing = [w for w in warnings if "keys have no response" in w]
    skipped = int(missing[0].split()[1]) if missing else 0
    # every key of the keys file is scored, or counted as missing, or is the dropped empty one
    assert n_keys == len(inst.keys) + skipped + int(inst.dropped_last_empty)


@fuzz(150)
@given(dstc_file("hyp"), st.lists(dstc_file("hyp"), max_size=3), st.booleans())
def test_dstc_plain_files_align_or_name_the_line(
    hyp: bytes, refs: list[bytes], clean: bool
) -> None:
    from dstc.evaluate import Options, plain_instances
    from dstc.textio import InputError

    with scratch() as tmp:
        paths = {str(tmp / "hyp.txt"): hyp}
        for i, raw in enumerate(refs):
            paths[str(tmp / f"ref{i}.txt")] = raw
        for path, raw in paths.items():
            Path(path).write_bytes(raw)
        try:
            hyps, ref_sets = plain_instances(
                str(tmp / "hyp.txt"),
                [str(tmp / f"ref{i}.txt") for i in range(len(refs))],
                Options(clean=clean),
            )
        except InputError as err:
            check_input_error(err, paths)
            return
    assert len(hyps) == len(ref_sets) == len(universal_lines(hyp))
    assert all(len(r) == len(refs) for r in ref_sets)
