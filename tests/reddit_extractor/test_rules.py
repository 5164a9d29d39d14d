"""Every docs/REFERENCE.md §8 rule on a small hand-made month whose expected lines are worked by hand."""

from __future__ import annotations

import pytest

from .helpers import PUBLISHED, counts, extract_and_conv, write_dumps, write_lists

MONTH = "2011-01"


def sub(sid, n=10, subreddit="AskReddit", title="Hello\tworld"):
    return {
        "id": sid,
        "num_comments": n,
        "score": 3,
        "domain": "self." + subreddit,
        "permalink": f"/r/{subreddit}/comments/{sid}/t/",
        "title": title,
        "author": "op",
        "created_utc": 1,
        "subreddit": subreddit,
    }


def com(cid, parent, body, score=1, link="t3_s1"):
    return {
        "id": cid,
        "parent_id": parent,
        "link_id": link,
        "body": body,
        "score": score,
        "author": "u",
        "created_utc": 2,
        "subreddit": "x",
    }


COMMA30 = ", ".join(f"w{i}" for i in range(30))  # 30 words, 59 tokens once normalised

SUBS = [sub("s1"), sub("s2", n=1), sub("s3", subreddit="BadPlace"), sub("s4"), sub("s5")]
COMMENTS = [
    com("c1", "t3_s1", "How are you doing today?", 5),
    com("c2", "t1_c1", "I am fine, thanks!", 3),
    com("c3", "t1_c1", "Low score reply here", 0),  # low_score
    com("c4", "t1_c1", "null score reply here", None),  # null counts as 0: low_score
    com("c5", "t3_s1", "[deleted]"),  # dropped at extract
    com("c6", "t1_c5", "reply to deleted comment", 2),  # chain of 1: min_depth
    com("c7", "t1_c1", "> quoted\nanswer"),  # dropped at extract
    com("c8", "t1_c1", "&gt; quoted answer"),  # dropped at extract
    com("c9", "t1_c1", "ok"),  # one word: dropped at extract
    com("c10", "t1_c1", "Check https://example.com now", 2),  # url
    com("c11", "t1_c1", "That is darn good", 2),  # blocklisted word: weight 0.0
    com("c12", "t1_c1", "I REALLY mean it"),  # allcaps
    com("c13", "t1_c1", "no no no way"),  # repetitions
    com("c14", "t1_c1", "see [this] one"),  # tags
    com("c15", "t1_c1", "multi\tline\nreply b/c w/o doubt"),  # tabs/newlines, b/c, w/o
    com("c16", "t1_c1", "this is Supercalifragilisticexpialidociousness indeed"),  # longword
    com("u1", "t1_c1", "café #tag naïve “quoted” words"),  # unicode, hashtag, curly quotes
    com("p1", "t1_c1", "well heck no I refuse"),  # blocklisted phrase: weight 0.0
    com("x1", "t1_c1", "#only #tags"),  # nothing left: emptytarget
    com("n1", "t3_s1", "darn it all"),  # blocklisted context turn: 0.0
    com("n2", "t1_n1", "calm down please"),
    com("q1", "t3_s2", "on a dropped submission", link="t3_s2"),  # num_comments < 2: dropped
    com("b1", "t3_s3", "hello there friend", link="t3_s3"),
    com("b2", "t1_b1", "nice to meet you", link="t3_s3"),  # blocklisted subreddit
    # deep thread: max_depth 5 keeps the five most recent turns
    *[
        com(f"d{i}", "t3_s4" if i == 1 else f"t1_d{i - 1}", f"turn {w} here", link="t3_s4")
        for i, w in enumerate(["one", "two", "three", "four", "five", "six", "seven"], 1)
    ],
    # an over-long ancestor (31 words) cuts the chain below it
    com("e1", "t3_s4", "short start here", link="t3_s4"),
    com("e2", "t1_e1", " ".join(["long"] * 31), link="t3_s4"),
    com("e3", "t1_e2", "after the long one", link="t3_s4"),
    com("e4", "t1_e3", "final answer here", link="t3_s4"),
    # more than 200 tokens in context + response: toolong
    *[
        com(f"t{i}", "t3_s5" if i == 1 else f"t1_t{i - 1}", COMMA30, link="t3_s5")
        for i in range(1, 5)
    ],
]

CTX = "1.0 How are you doing today ?"
EXPECTED = [
    f"t3_s1,t1_c1,t1_c11\t{CTX}\t0.0 That is darn good",
    f"t3_s1,t1_c1,t1_c15\t{CTX}\t1.0 multi line reply because without doubt",
    f"t3_s1,t1_c1,t1_c2\t{CTX}\t1.0 I am fine , thanks !",
    f"t3_s1,t1_c1,t1_p1\t{CTX}\t0.0 well heck no I refuse",
    f"t3_s1,t1_c1,t1_u1\t{CTX}\t1.0 caf na ve “ quoted ” words",
    "t3_s1,t1_n1,t1_n2\t0.0 darn it all\t1.0 calm down please",
    "t3_s4,t1_d6,t1_d7\t1.0 turn three here EOS 1.0 turn four here EOS 1.0 turn five here"
    " EOS 1.0 turn six here\t1.0 turn seven here",
    "t3_s4,t1_e3,t1_e4\t1.0 after the long one\t1.0 final answer here",
]


@pytest.fixture()
def month(tmp_path):
    return write_dumps(tmp_path, MONTH, SUBS, COMMENTS)


def test_published_settings_hand_worked(month, tmp_path):
    words, subs = write_lists(tmp_path)
    out = tmp_path / "out"
    text = extract_and_conv(
        month, out, conv_args=[*PUBLISHED, "--bl_words", words, "--bl_subreddits", subs]
    )
    assert text.splitlines() == EXPECTED
    skips = counts(out / "conv" / f"{MONTH}.skips.tsv")
    for reason, n in {
        "low_score": 2,
        "min_depth": 1,
        "url": 1,
        "allcaps": 1,
        "repetitions": 1,
        "tags": 1,
        "longword": 1,
        "bad_subreddit": 1,
        "emptytarget": 1,
        "toolong": 1,
    }.items():
        assert skips[reason] == n, reason
    ext = counts(out / "extract" / MONTH / "skips.tsv")
    assert ext["rc_deleted"] == 1 and ext["rc_quote"] == 2 and ext["rc_too_short"] == 1
    assert ext["rc_no_submission"] == 1 and ext["rs_few_comments"] == 1
    # stat.tsv: month, kept comments, comments read, kept submissions, submissions read
    assert (
        out / "extract" / MONTH / "stat.tsv"
    ).read_text() == f"{MONTH}\t{len(COMMENTS) - 5}\t{len(COMMENTS)}\t4\t5\n"
    log = (out / "conv" / f"{MONTH}.log").read_text().splitlines()
    assert "skip\tlow_score\taskreddit\tself.askreddit\tnull score reply here\tscore 0 < 1" in log
    assert any(line.startswith("skip\tbad_subreddit\tbadplace\t") for line in log)
    stat = (out / "conv" / f"{MONTH}.stat.tsv").read_text().splitlines()
    assert stat[-1] == f"{MONTH}\tall\t{len(EXPECTED)}\t{len(COMMENTS) - 5}\t"


def test_titles_all_targets_no_cleaning(month, tmp_path):
    out = tmp_path / "out"
    text = extract_and_conv(month, out, conv_args=["--use_title", "1", "--max_depth", "2"])
    lines = text.splitlines()
    # Not leaves only: c1 is a target too, its parent is the submission: the title is a turn.
    assert "t3_s1,t3_s1,t1_c1\ttitle : Hello world\tHow are you doing today ?" in lines
    # max_depth 2 counts comments only; the title comes on top of them.
    assert (
        "t3_s1,t1_c1,t1_c2\ttitle : Hello world EOS How are you doing today ?\tI am fine , thanks !"
        in lines
    )
    # No --clean: no weights, urls and capitals stay.
    assert (
        "t3_s1,t1_c1,t1_c12\ttitle : Hello world EOS How are you doing today ?\tI REALLY mean it"
        in lines
    )
    # Budget of 2: d7 keeps d6 and itself, no title.
    assert "t3_s4,t1_d6,t1_d7\tturn six here\tturn seven here" in lines


def test_not_leaves_only_offensive_is_skipped(month, tmp_path):
    words, _ = write_lists(tmp_path)
    out = tmp_path / "out"
    text = extract_and_conv(
        month, out, conv_args=["--clean", "True", "--use_title", "0", "--bl_words", words]
    )
    assert "\tThat is darn good" not in text  # response with a blocklisted word: skipped
    assert "t3_s1,t1_n1,t1_n2\tdarn it all\tcalm down please" in text.splitlines()
    assert counts(out / "conv" / f"{MONTH}.skips.tsv")["offensive"] == 2  # c11 and p1


def test_max_len_in_characters(month, tmp_path):
    out = tmp_path / "out"
    # n_char is the raw body length: "How are you doing today?" has 24 characters.
    text = extract_and_conv(
        month, out, conv_args=["--use_title", "0", "--max_len_type", "c", "--max_len", "23"]
    )
    assert "t3_s1,t1_c1,t1_c2\t" not in text
    text = extract_and_conv(
        month, out, conv_args=["--use_title", "0", "--max_len_type", "c", "--max_len", "24"]
    )
    assert "t3_s1,t1_c1,t1_c2\tHow are you doing today ?\tI am fine , thanks !" in text.splitlines()


def test_empty_title_loses_its_submission_like_the_published_tool(tmp_path):
    # An empty (or blank) title leaves a trailing tab that the conv reader strips: the
    # submission line then has 5 fields and is dropped, so its comments have no subreddit
    # ('missing' with a subreddit blocklist) and no title ('exception' with titles on).
    inp = write_dumps(
        tmp_path,
        MONTH,
        [sub("s1", title=""), sub("s2", title="\n\t")],
        [
            com("a1", "t3_s1", "first comment here"),
            com("a2", "t1_a1", "second comment here"),
            com("b1", "t3_s2", "first comment here", link="t3_s2"),
            com("b2", "t1_b1", "second comment here", link="t3_s2"),
        ],
    )
    words, subs = write_lists(tmp_path)
    out = tmp_path / "out"
    text = extract_and_conv(inp, out, conv_args=[*PUBLISHED, "--bl_subreddits", subs])
    assert text == ""
    assert counts(out / "conv" / f"{MONTH}.skips.tsv")["missing"] == 2
    text = extract_and_conv(inp, out, conv_args=["--use_title", "1"])
    assert text == ""
    assert counts(out / "conv" / f"{MONTH}.skips.tsv")["exception"] == 4
    text = extract_and_conv(inp, out, conv_args=["--use_title", "0"])
    assert text.splitlines() == [
        "t3_s1,t1_a1,t1_a2\tfirst comment here\tsecond comment here",
        "t3_s2,t1_b1,t1_b2\tfirst comment here\tsecond comment here",
    ]


def test_output_is_sorted_within_each_split_not_across(tmp_path):
    # split_size 1: s9 (first in the dump) is split 0, s1 split 1. Lines come split by
    # split, each split sorted by (link_id, parent_id, comment key).
    inp = write_dumps(
        tmp_path,
        MONTH,
        [sub("s9"), sub("s1")],
        [
            com("b", "t3_s1", "one two"),
            com("a", "t1_b", "three four"),
            com("z", "t3_s9", "five six", link="t3_s9"),
            com("y", "t1_z", "seven eight", link="t3_s9"),
            com("x", "t1_z", "nine ten", link="t3_s9"),
        ],
    )
    out = tmp_path / "out"
    text = extract_and_conv(inp, out, extract_args=["--split_size", "1"], conv_args=PUBLISHED)
    assert text.splitlines() == [
        "t3_s9,t1_z,t1_x\t1.0 five six\t1.0 nine ten",
        "t3_s9,t1_z,t1_y\t1.0 five six\t1.0 seven eight",
        "t3_s1,t1_b,t1_a\t1.0 one two\t1.0 three four",
    ]
    stat = (out / "conv" / f"{MONTH}.stat.tsv").read_text().splitlines()
    # the last split is empty (2 submissions, split size 1), as in the published tool
    assert stat == [
        f"{MONTH}\t0\t2\t3\t3.00",
        f"{MONTH}\t1\t1\t2\t3.00",
        f"{MONTH}\t2\t0\t0\t0.00",
        f"{MONTH}\tall\t3\t5\t",
    ]
