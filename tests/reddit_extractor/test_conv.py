"""conv details beyond the output lines: the skip log in the published tool's format, the
stat and skips files, and output that does not depend on block size, text cache size or
worker processes (docs/REFERENCE.md §8)."""

from __future__ import annotations

import gzip

import pytest

from reddit_extractor import conv

from .helpers import PUBLISHED, counts, extract_and_conv, run, write_dumps, write_lists
from .test_rules import COMMA30, COMMENTS, EXPECTED, MONTH, SUBS, com, sub

INFO = "askreddit\tself.askreddit"
CTX = "1.0 How are you doing today ?"
LONG_TURN = "1.0 " + " ".join(COMMA30.replace(",", " ,").split())

# The published tool prints one line per skipped target on stderr, in target order:
#   "skip\t%s\t%s\t%s\t%s" % (reason, info, text, detail), info = subreddit \t domain;
# the text is the raw body before the chain is built, the normalised response after.
# Targets of s1 sorted by (link_id, parent_id, key): t1_c1's replies c10..c16, c2, c3,
# c4, p1, u1, x1, then c6 (parent c5), n2; then s3's b2, s4's leaves, s5's t4.
EXPECTED_LOG = [
    f"skip\turl\t{INFO}\t1.0 Check __url__ now\turl in tgt, or src =[{CTX}]",
    f"skip\tallcaps\t{INFO}\t1.0 I REALLY mean it\tall caps in tgt (or src: [{CTX}])",
    f"skip\trepetitions\t{INFO}\t1.0 no no no way\ttoo many repetitions",
    f"skip\ttags\t{INFO}\t1.0 see [ this ] one\ttag in tgt (or src: [{CTX}])",
    f"skip\tlongword\t{INFO}\t1.0 this is Supercalifragilisticexpialidociousness indeed"
    "\tword too long",
    f"skip\tlow_score\t{INFO}\tLow score reply here\tscore 0 < 1",
    f"skip\tlow_score\t{INFO}\tnull score reply here\tscore 0 < 1",
    f"skip\temptytarget\t{INFO}\t1.0 ",
    f"skip\tmin_depth\t{INFO}\treply to deleted comment\tdepth 1 < 2: reply to deleted comment",
    "skip\tbad_subreddit\tbadplace\tself.badplace\tN/A\toffensive subreddit: badplace",
    f"skip\ttoolong\t{INFO}\t{LONG_TURN}\tsrc+tgt too long, src=[{LONG_TURN} EOS {LONG_TURN}"
    f" EOS {LONG_TURN}]",
]


@pytest.fixture()
def month(tmp_path):
    return write_dumps(tmp_path, MONTH, SUBS, COMMENTS)


def published_run(month, tmp_path, *extra):
    tmp_path.mkdir(exist_ok=True)
    words, subs = write_lists(tmp_path)
    out = tmp_path / "out"
    args = [*PUBLISHED, "--bl_words", words, "--bl_subreddits", subs, *extra]
    return extract_and_conv(month, out, conv_args=args), out / "conv"


def test_skip_log_stat_and_skips_files(month, tmp_path):
    text, folder = published_run(month, tmp_path)
    assert text.splitlines() == EXPECTED
    assert (folder / f"{MONTH}.log").read_text().split("\n") == [*EXPECTED_LOG, ""]
    # 34 comments kept by extract: 15 of them are parents (c1, n1, b1, d1-d6, e1-e3, t1-t3)
    assert counts(folder / f"{MONTH}.skips.tsv") == {
        "allcaps": 1,
        "bad_subreddit": 1,
        "emptytarget": 1,
        "longword": 1,
        "low_score": 2,
        "min_depth": 1,
        "not_leaf": 15,
        "repetitions": 1,
        "tags": 1,
        "toolong": 1,
        "url": 1,
    }
    # average response length in whitespace tokens, weights included: 45 / 8
    resp = sum(len(line.split("\t")[2].split()) for line in EXPECTED)
    assert resp == 45
    assert (folder / f"{MONTH}.stat.tsv").read_text() == (
        f"{MONTH}\t0\t8\t34\t5.62\n{MONTH}\tall\t8\t34\t\n"
    )


def test_offensive_and_exception_log_lines(tmp_path):
    inp = write_dumps(
        tmp_path,
        MONTH,
        [sub("s1"), sub("s2", title="")],
        [
            com("a1", "t3_s1", "how is it going"),
            com("a2", "t1_a1", "darn fine thanks"),
            com("b1", "t3_s2", "first comment here", link="t3_s2"),
        ],
    )
    words, _ = write_lists(tmp_path)
    out = tmp_path / "out"
    # not leaves only: a blocklisted word in the response skips the instance
    text = extract_and_conv(inp, out, conv_args=["--clean", "True", "--bl_words", words])
    assert text == "t3_s1,t3_s1,t1_a1\ttitle : Hello world\thow is it going\n"
    log = (out / "conv" / f"{MONTH}.log").read_text().splitlines()
    # the empty title leaves 5 fields: the submission is dropped, as the published tool does
    assert log.pop(0) == "bad\tbad_rs_line\trs_sub0.tsv.gz:2: 5 fields, expected 6"
    assert log[0] == f"skip\toffensive\t{INFO}\tdarn fine thanks\tbad word(s)"
    # titles on, but s2 (empty title) was dropped: no title for b1's chain
    assert log[1] == "skip\texception\t\t\tfirst comment here\tno submission t3_s2 for the title"
    assert len(log) == 2


def test_bad_score_and_bad_n_char(tmp_path):
    """Fields shifted by a stray tab in an extract file: a non-numeric score is skipped as
    bad_score; a non-numeric n_char with --max_len_type c as an exception."""
    inp = write_dumps(tmp_path, MONTH, [sub("s1")], [com("a1", "t3_s1", "one two")])
    out = tmp_path / "out"
    extract_and_conv(inp, out, conv_args=["--use_title", "0"])
    folder = out / "extract" / MONTH
    with gzip.open(folder / "rc_sub0.tsv.gz", "wt", encoding="utf-8") as fh:
        fh.write("a1\tu\tt3_s1\tt3_s1\tx1\t7\tone two\n")  # score 'x1'
        fh.write("a2\tu\tt1_a1\tt3_s1\t1\tn7\tthree four\n")  # n_char 'n7'
    assert run(MONTH, "--task", "conv", "--reddit_output", out, "--max_len_type", "c") == 0
    log = (out / "conv" / f"{MONTH}.log").read_text().splitlines()
    assert log == [  # sorted by parent: t1_a1 (a2's) before t3_s1 (a1's)
        "skip\texception\taskreddit\tself.askreddit\tthree four"
        "\tinvalid literal for int() with base 10: 'n7'",
        "skip\tbad_score\taskreddit\tself.askreddit\tone two\tscore 'x1' is not an integer",
    ]
    assert counts(out / "conv" / f"{MONTH}.skips.tsv") == {"bad_score": 1, "exception": 1}


def test_output_independent_of_blocks_and_cache(month, tmp_path, monkeypatch):
    """Tiny blocks and a text cache smaller than a block evict texts still needed later:
    the output must not change."""
    text, folder = published_run(month, tmp_path / "a")
    monkeypatch.setattr(conv, "BLOCK_TARGETS", 2)
    monkeypatch.setattr(conv, "TEXT_CACHE_SIZE", 3)
    text_b, folder_b = published_run(month, tmp_path / "b")
    assert text_b == text
    for ext in conv.CONV_OUTPUTS:
        assert (folder_b / f"{MONTH}{ext}").read_bytes() == (folder / f"{MONTH}{ext}").read_bytes()


def test_cache_keeps_what_the_block_needs():
    """fill() past TEXT_CACHE_SIZE drops the texts of earlier blocks but keeps every text
    of the current one, already normalised or not."""
    cache = conv.TurnCache(conv.ConvOptions(month=MONTH, output_dir="."))
    cache.fill({"a b", "c d"})
    assert cache.map == {"a b": "a b", "c d": "c d"}
    old_size = conv.TEXT_CACHE_SIZE
    try:
        conv.TEXT_CACHE_SIZE = 3
        cache.fill({"c d", "e f"})  # 2 known + 1 new = 3: no eviction yet
        assert set(cache.map) == {"a b", "c d", "e f"}
        cache.fill({"e f", "g!h"})  # 3 + 1 > 3: only this block's texts remain
        assert cache.map == {"e f": "e f", "g!h": "g ! h"}
    finally:
        conv.TEXT_CACHE_SIZE = old_size


def test_parallel_workers_same_output(month, tmp_path, monkeypatch):
    """With the thresholds at zero every block is normalised by two forked workers, in
    chunks: the lines, log and counts are those of one process."""
    text, folder = published_run(month, tmp_path / "a", "--parallel", "False")
    monkeypatch.setattr(conv, "MIN_PARALLEL_TEXTS", 0)
    monkeypatch.setattr(conv, "MIN_PARALLEL_BYTES", 0)
    text_b, folder_b = published_run(month, tmp_path / "b", "--parallel", "True", "--workers", "2")
    assert text_b == text
    for ext in conv.CONV_OUTPUTS:
        assert (folder_b / f"{MONTH}{ext}").read_bytes() == (folder / f"{MONTH}{ext}").read_bytes()


@pytest.mark.parametrize(
    "parallel, workers, cpus, expected",
    [(False, 4, 8, 1), (True, 0, 8, 8), (True, 3, 8, 3), (True, 0, None, 1), (True, 99, 8, 32)],
)
def test_worker_count(monkeypatch, parallel, workers, cpus, expected):
    monkeypatch.setattr(conv.os, "cpu_count", lambda: cpus)
    opts = conv.ConvOptions(month=MONTH, output_dir=".", parallel=parallel, workers=workers)
    assert conv._worker_count(opts) == expected


def test_weighted_turns(tmp_path):
    words, _ = write_lists(tmp_path)
    from reddit_extractor.blocklist import load_words, turn_digest

    o = conv.ConvOptions(month=MONTH, output_dir=".", bl_words=load_words(str(words)))
    texts = ["Darn it", "it's fine", "heck no!"]
    assert conv.weighted_turns(texts, o) == ["Darn it", "it's fine", "heck no !"]
    o.leaves_only, o.clean = 1, True
    o.discard_keys = {turn_digest("it's fine")}
    assert conv.weighted_turns(texts, o) == ["0.0 Darn it", "0.0 it's fine", "0.0 heck no !"]
    o.discard_keys = None
    assert conv.weighted_turns(texts, o) == ["0.0 Darn it", "1.0 it's fine", "0.0 heck no !"]


def clean_job(**kw) -> conv.SplitJob:
    return conv.SplitJob(conv.ConvOptions(month=MONTH, output_dir=".", clean=True, **kw), {}, {})


@pytest.mark.parametrize(
    "src, tgt, reason",
    [
        # docs/REFERENCE.md §8 / the published filter_instance, at the edges of each rule
        ("a", "1.0", "emptytarget"),  # only the weight left
        ("a", "1.0 x", ""),
        ("a", "1.0 " + "w" * 30, ""),  # 30 characters is not too long
        ("a", "1.0 " + "w" * 31, "longword"),
        (" ".join(["a"] * 198), "1.0 b", ""),  # 200 tokens in all
        (" ".join(["a"] * 199), "1.0 b", "toolong"),
        ("ok ABCD", "EFG ok", ""),  # capitals of src and tgt do not join across the space
        ("ok ABCD", "EFGH ok", ""),
        ("ok ABCDE", "fine then", "allcaps"),
        ("ok", "say (this)", "tags"),
        ("a __url__", "fine then", "url"),
        ("a", "x a a a", "repetitions"),
        ("a", "a a a x", "repetitions"),
        ("a", "a x a a", ""),  # three equal tokens, not consecutive
        ("a", "x b b", ""),
        ("a", "b a b", ""),
    ],
)
def test_clean_filters_at_their_limits(src, tgt, reason):
    assert clean_job()._filter(src, tgt)[0] == reason


def test_subreddit_of_short_permalinks_and_repeated_skips():
    """The subreddit is the third '/' field of the permalink; a shorter permalink gives no
    subreddit ('missing' with a subreddit blocklist). Each skip is counted, one by one."""
    o = conv.ConvOptions(
        month=MONTH, output_dir=".", bl_subreddits={"pics"}, min_score=1, use_title=0
    )
    subs = {
        "t3_a": ("d", "/r/Pics", "t"),
        "t3_b": ("d", "/r", "t"),
        "t3_c": ("d", "nolink", "t"),
        "t3_d": ("D.com", "/r/Ok/comments/d/", "t"),
    }
    comms = {
        "t1_a1": ("t3_a", "t3_a", "5", "5", "one two"),
        "t1_a2": ("t3_a", "t3_a", "5", "5", "one two"),
        "t1_b1": ("t3_b", "t3_b", "5", "5", "one two"),
        "t1_c1": ("t3_c", "t3_c", "5", "5", "one two"),
        "t1_d1": ("t3_d", "t3_d", "x", "5", "one two"),
        "t1_d2": ("t3_d", "t3_d", "y", "5", "one two"),
        "t1_d3": ("t3_d", "t3_d", "0", "5", "one two"),
        "t1_d4": ("t3_d", "t3_d", "None", "5", "one two"),
        "t1_d5": ("t1_d9", "t3_d", "2", "5", "three four"),
        "t1_d9": ("t3_d", "t3_d", "2", "5", "one two"),
    }
    job = conv.SplitJob(o, subs, comms)
    targets = [(c[1], c[0], cid) for cid, c in comms.items()]
    lines, counts_, log, resp_len = job.process(targets, conv.TurnCache(o))
    assert counts_ == {
        "bad_subreddit": 2,
        "missing": 2,
        "bad_score": 2,
        "low_score": 2,
        "min_depth": 1,
    }
    assert [line.split("\t")[1] for line in log] == [
        "bad_subreddit",
        "bad_subreddit",
        "missing",
        "missing",
        "bad_score",
        "bad_score",
        "low_score",
        "low_score",
        "min_depth",
    ]
    assert log[2] == "skip\tmissing\t\td\tN/A\tmissing submission: t3_b"
    assert lines == ["t3_d,t1_d9,t1_d5\tone two\tthree four"]
    assert resp_len == 2
