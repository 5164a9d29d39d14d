"""Blocklist matching, key files (keep / discard) and normalisation details."""

from __future__ import annotations

import hashlib
import random

import pytest

from reddit_extractor.blocklist import PhraseMatcher, load_words, turn_digest
from reddit_extractor.normalize import full_norm, minimal_norm

from .helpers import PUBLISHED, counts, extract_and_conv, write_dumps, write_keys
from .test_rules import COMMENTS, MONTH, SUBS


@pytest.mark.parametrize(
    "text, found",
    [
        ("that is darn good", True),
        ("DARN it", True),  # case-insensitive
        ("darned thing", False),  # whole words only
        ("a_darn b", False),  # underscore is a word character
        ("x darn2", False),
        ("well , darn .", True),
        ("oh heck no !", True),  # phrase
        ("heck now", False),
        ("heck  no", False),  # phrases match their exact spacing
        ("", False),
    ],
)
def test_phrase_matcher(text, found):
    assert PhraseMatcher(["darn", "Heck no"]).found(text) is found


def test_blocklist_file_comments_and_blank_lines(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("# comment darn\n\nfoo\n  \n")
    m = load_words(str(path))
    assert m.found("a foo b") and not m.found("a darn b") and not m.found("a b")


def test_matches_flashtext_on_random_text():
    """PhraseMatcher gives flashtext's answer (the published tool's matcher) on random
    keyword lists and texts built from word characters, boundaries, capitals and phrases."""
    try:
        import flashtext
    except ImportError:  # a dev requirement: this comparison is the reference, never skipped
        pytest.fail("flashtext is not installed: pip install flashtext (dev requirement)")
    rng = random.Random(0)
    alphabet = ["a", "b", "ab", "ba", "A", "B a", " ", ",", ".", "_", "1", "é", "a b", "b a"]
    answers = []
    for _ in range(300):
        kws = ["".join(rng.choices(alphabet, k=rng.randint(1, 3))).strip() for _ in range(4)]
        kp = flashtext.KeywordProcessor()
        for k in kws:
            kp.add_keyword(k)
        ours = PhraseMatcher(kws)
        for _ in range(30):
            text = "".join(rng.choices(alphabet, k=rng.randint(0, 8)))
            expected = bool(kp.extract_keywords(text))
            assert ours.found(text) == expected, (kws, text)
            answers.append(expected)
    # both answers are common, so neither "always" nor "never" could pass
    assert 0.1 < sum(answers) / len(answers) < 0.9


def test_phrase_added_after_a_search():
    m = PhraseMatcher(["darn"])
    assert not m.found("oh heck no")
    m.add("Heck no")
    assert m.found("oh heck no") and m.found("darn") and bool(m)
    assert not PhraseMatcher(["", ""]) and not PhraseMatcher([""]).found("")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Visit HTTPS://x.com/a now", "Visit __url__ now"),
        ("seehttp://x.y", "see __url__"),
        ("#tag word #x", "word"),
        ("b\\/c w/ j/k w/o", "because with just kidding without"),
        ("a __mention__ b", "a __mention__ b"),
        ("my URL and MENTION", "my __url__ and __mention__"),
        ("tab\there & there", "tab here there"),
        ("wait!!!!! ok", "wait ! ! ! ok"),
        ("it's 3.5 “x” (y) [z]", "it's 3.5 “ x ” ( y ) [ z ]"),
    ],
)
def test_full_norm(raw, expected):
    assert full_norm(raw) == expected


def test_minimal_norm():
    assert minimal_norm("a\\b\tc\r\nd") == "ab c  d"


@pytest.fixture()
def month(tmp_path):
    return write_dumps(tmp_path, MONTH, SUBS, COMMENTS, ".json")


def test_keep_keys_select_at_both_stages(month, tmp_path):
    keys = tmp_path / "keys.gz"
    write_keys(
        keys,
        [
            # extract: 'dep' keys select the comments kept (c1 is needed as context)
            "t3_s1\tt1_c1\tdep",
            "t3_s1\tt1_c2\tdep",
            "t3_s1\tt1_c11\tdep",
            "t3_s1\tt1_c15\tdep",
            # conv: 'keep' keys select the targets
            "t3_s1\tt1_c2\tkeep",
            "t3_s1\tt1_c15\tkeep",
        ],
    )
    out = tmp_path / "out"
    text = extract_and_conv(
        month, out, extract_args=["--keep_keys", keys], conv_args=[*PUBLISHED, "--keep_keys", keys]
    )
    assert [line.split("\t")[0] for line in text.splitlines()] == [
        "t3_s1,t1_c1,t1_c15",
        "t3_s1,t1_c1,t1_c2",
    ]
    assert (out / "extract" / MONTH / "stat.tsv").read_text().split("\t")[1] == "4"
    assert counts(out / "conv" / f"{MONTH}.skips.tsv")["not_in_keys"] == 2  # c1, c11


def test_discard_keys_weight_turns_zero(month, tmp_path):
    discard = tmp_path / "discard.gz"
    # the discard-key format (docs/REFERENCE.md §8): SHA-224 hex digest of the normalised turn, no weight
    fine, how = "I am fine , thanks !", "How are you doing today ?"
    assert turn_digest(fine) == hashlib.sha224(fine.encode()).hexdigest()
    write_keys(discard, [hashlib.sha224(t.encode()).hexdigest() for t in (fine, how)])
    out = tmp_path / "out"
    text = extract_and_conv(month, out, conv_args=[*PUBLISHED, "--discard_tgt_keys", discard])
    assert (
        "t3_s1,t1_c1,t1_c2\t0.0 How are you doing today ?\t0.0 I am fine , thanks !"
        in text.splitlines()
    )


def test_ignore_keys(month, tmp_path):
    keys = tmp_path / "keys.gz"
    write_keys(keys, ["t3_s1\tt1_c2\tkeep"])
    out = tmp_path / "out"
    text = extract_and_conv(
        month,
        out,
        extract_args=["--keep_keys", keys, "--ignore_keys", "True"],
        conv_args=[*PUBLISHED, "--keep_keys", keys, "--ignore_keys", "True"],
    )
    assert len(text.splitlines()) == 9  # no subreddit blocklist here: b2 is in


def test_unreadable_key_file(month, tmp_path, capsys):
    from .helpers import run

    bad = tmp_path / "keys.gz"
    bad.write_text("not gzip")
    assert (
        run(
            MONTH,
            "--task",
            "extract",
            "--reddit_input",
            month,
            "--reddit_output",
            tmp_path / "o",
            "--keep_keys",
            bad,
        )
        == 2
    )
    assert "cannot read key file" in capsys.readouterr().err
