"""Hand-worked NIST/BLEU cases for the mteval-v14c port (expected values derived in the
comments from mteval's formulas), plus its tokenizer."""

import math

import pytest

from dstc.mteval import (
    dstc_sgml_text,
    nist_bleu,
    nist_length_penalty,
    tokenize,
)

LN2 = math.log(2)
BETA = -math.log(0.5) / math.log(1.5) ** 2  # NIST brevity penalty constant, ~4.2162


def raw(hyps, refs, **kw):
    return nist_bleu(hyps, refs, rounded=False, **kw)


def test_length_penalty_shape():
    assert nist_length_penalty(1.0) == 1.0
    assert nist_length_penalty(2.0) == 1.0
    assert nist_length_penalty(0.0) == 0.0
    # designed so that a hypothesis 2/3 of the reference length loses half its score
    assert nist_length_penalty(1 / 1.5) == pytest.approx(0.5)


def test_empty_hypothesis_becomes_placeholder():
    # The DSTC scripts write an empty line as "__empty__", which mteval's tokenizer splits
    # ("_" is punctuation to it) into 5 words: _ _ empty _ _.
    assert tokenize(dstc_sgml_text("")) == ["_", "_", "empty", "_", "_"]
    # Against reference "a b": 5/4/3/2 n-grams, no match. Closest length 2 < 5 -> BP 1.
    # Smoothed precisions 1/(2*5), 1/(4*4), 1/(8*3), 1/(16*2); no information -> NIST 0.
    nist, bleu = raw([""], [["a b"]])
    assert nist == [0.0] * 4
    logs = [math.log(1 / 10), math.log(1 / 16), math.log(1 / 24), math.log(1 / 32)]
    assert bleu == pytest.approx([math.exp(sum(logs[:n]) / n) for n in range(1, 5)])


def test_empty_hypothesis_and_empty_reference_match_through_the_placeholder():
    # Both become "_ _ empty _ _": every n-gram matches, BLEU 1. NIST: 5 ref words,
    # "_" 4 times -> info log2(5/4), "empty" log2(5); bigrams "_ _" (2 of 4 "_"): log2(4/2),
    # "_ empty" log2(4/1), "empty _" log2(1/1)... NIST1 = (4*log2(1.25) + log2 5)/5.
    nist, bleu = raw([""], [[""]])
    assert bleu == pytest.approx([1.0] * 4)
    assert nist[0] == pytest.approx((4 * math.log2(1.25) + math.log2(5)) / 5)


def test_empty_hypothesis_kept_empty():
    # Without the placeholder: no hypothesis words -> mteval's BLEU length factor is 0 and
    # the NIST length ratio 0 -> penalty 0.
    assert raw([""], [["a b"]], empty_placeholder="") == ([0.0] * 4, [0.0] * 4)


def test_hypothesis_shorter_than_every_reference():
    # hyp "a b" (2 words); refs "a b c d" (4) and "a b c d e f" (6).
    # BLEU: closest ref length 4, BP = exp(1 - 4/2) = e^-1; unigram 2/2, bigram 1/1, no
    # 3/4-grams (log term 0) -> every cumulative BLEU is e^-1.
    # NIST: 10 reference words, "a" and "b" occur twice -> info = log2(10/2) each;
    # info("a b") = log2(count(a)/count(a b)) = log2(2/2) = 0.
    # NIST1 = 2*log2(5)/2 = log2 5 = NIST2..4; length ratio 2 / (10/2) = 0.4.
    nist, bleu = raw(["a b"], [["a b c d", "a b c d e f"]])
    assert bleu == pytest.approx([math.exp(-1)] * 4)
    penalty = math.exp(-BETA * math.log(0.4) ** 2)
    assert nist == pytest.approx([math.log(5) / LN2 * penalty] * 4)


def test_hypothesis_longer_than_every_reference():
    # hyp "a b c d e" (5), ref "a b c" (3): BP = 1 (no penalty for long hypotheses).
    # clipped precisions: 3/5, 2/4, 1/3, and 0/2 for 4-grams -> smoothed 1/(2*2).
    # NIST: 3 ref words, each info log2(3); longer n-grams have info log2(1/1) = 0;
    # NIST1 = 3*log2(3)/5, length ratio 5/3 >= 1 -> no penalty.
    nist, bleu = raw(["a b c d e"], [["a b c"]])
    p = [3 / 5, 2 / 4, 1 / 3, 1 / 4]
    assert bleu == pytest.approx([math.prod(p[:n]) ** (1 / n) for n in range(1, 5)])
    assert nist == pytest.approx([3 * math.log(3) / LN2 / 5] * 4)


@pytest.mark.parametrize("order", [("a b", "a b c d"), ("a b c d", "a b")])
def test_tie_in_closest_reference_length_takes_the_shorter(order):
    # hyp "a b c" (3) is 1 away from both 2 and 4: mteval takes the shorter (2), so
    # BP = exp(min(0, 1 - 2/3)) = 1; all n-grams match -> BLEU = 1 (4-grams: none, log 0).
    # Taking 4 would give exp(1 - 4/3) = 0.7165.
    _, bleu = raw(["a b c"], [list(order)])
    assert bleu == pytest.approx([1.0] * 4)


def test_ngrams_absent_from_the_references():
    # hyp "x y z" vs ref "a b c": no match at any order. Closest length 3 -> BP 1.
    # Default (smoothed) mteval BLEU: the k-th order without matches gets 1/(2^k * count):
    # p1 = 1/(2*3), p2 = 1/(4*2), p3 = 1/(8*1), no 4-gram (log term 0).
    nist, bleu = raw(["x y z"], [["a b c"]])
    assert nist == [0.0] * 4
    logs = [math.log(1 / 6), math.log(1 / 8), math.log(1 / 8), 0.0]
    assert bleu == pytest.approx([math.exp(sum(logs[:n]) / n) for n in range(1, 5)])
    # mteval --no-smoothing: an order without matches scores 0
    assert raw(["x y z"], [["a b c"]], smoothing=False)[1] == [0.0] * 4


def test_corpus_level_sums():
    # Two segments: "a b" vs "a b" (perfect) and "c" vs "d e". Corpus counts:
    # unigrams 2 of 3 match, bigrams 1 of 1; closest ref lengths 2 + 2 = 4 vs 3 words:
    # BP = exp(1 - 4/3). BLEU1 = 2/3 * BP; BLEU2 = sqrt(2/3 * 1) * BP; orders 3/4: none.
    # NIST: 4 ref words, each word once -> info log2(4) = 2 bits; "a b": log2(1/1) = 0.
    # NIST1 = (2+2)/3; ratio 3 / (4/1) = 0.75.
    nist, bleu = raw(["a b", "c"], [["a b"], ["d e"]])
    bp = math.exp(1 - 4 / 3)
    assert bleu == pytest.approx(
        [2 / 3 * bp, math.sqrt(2 / 3) * bp, (2 / 3) ** (1 / 3) * bp, (2 / 3) ** (1 / 4) * bp]
    )
    assert nist == pytest.approx([4 / 3 * math.exp(-BETA * math.log(0.75) ** 2)] * 4)


def test_bigram_after_the_token_zero_is_weighted_like_a_unigram():
    # mteval tests the (n-1)-gram prefix string for truth; "0" is false in Perl, so the
    # bigram "0 x" gets log2(total words / count) instead of log2(count(0) / count(0 x)).
    # ref "0 x 0": 3 words; info(0) = log2(3/2), info(x) = log2(3), info("0 x") = log2(3).
    # hyp "0 x": NIST1 = (log2 1.5 + log2 3)/2, NIST2 = NIST1 + log2 3; ratio 2/3.
    nist, _ = raw(["0 x"], [["0 x 0"]])
    n1 = (math.log(1.5) + math.log(3)) / LN2 / 2
    pen = nist_length_penalty(2 / 3)
    assert nist[:2] == pytest.approx([n1 * pen, (n1 + math.log(3) / LN2) * pen])


def test_rounded_like_mteval_report():
    nist, bleu = nist_bleu(["a b c d e"], [["a b c"]])
    assert all(x == round(x, 4) for x in nist + bleu)


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("Hello, World!", ["hello", ",", "world", "!"]),
        ("3.5 1,000 5-4 x-y", ["3.5", "1,000", "5", "-", "4", "x-y"]),
        ("a.b e.g. end.", ["a", ".", "b", "e", ".", "g", ".", "end", "."]),
        # period/comma split unless a digit is on the side the rule looks at
        (".5 5. ,5 5,x 5,5", [".", "5", "5", ".", ",", "5", "5", ",", "x", "5,5"]),
        ("don't it's", ["don't", "it's"]),  # the apostrophe is not punctuation for mteval
        (
            "(x) [y] {z} a/b $5 50% #t @u ~ ^ _ `",
            [
                "(",
                "x",
                ")",
                "[",
                "y",
                "]",
                "{",
                "z",
                "}",
                "a",
                "/",
                "b",
                "$",
                "5",
                "50",
                "%",
                "#",
                "t",
                "@",
                "u",
                "~",
                "^",
                "_",
                "`",
            ],
        ),
        ("&quot;q&quot; &amp; &lt;b&gt;", ['"', "q", '"', "&", "<", "b", ">"]),
        (
            "see http://A.com/X?y=1 now",
            ["see", "http://A.com/X?y=1", "now"],
        ),  # URLs kept whole, case kept
        (
            "HTTP://X.COM",
            ["http", ":", "/", "/", "x", ".", "com"],
        ),  # the URL test is case-sensitive
        ("  spaced\tout  ", ["spaced", "out"]),
        ("", []),
    ],
)
def test_tokenizer(text, tokens):
    assert tokenize(text) == tokens


def test_tokenizer_unicode():
    # Only ASCII letters are lower-cased (tr/[A-Z]/[a-z]/); other letters and symbols stay
    # inside their token; Perl's Unicode whitespace (no-break, thin, ideographic) splits.
    assert tokenize("CAFÉ Ünï naïve 日本語 😀x") == ["cafÉ", "Ünï", "naïve", "日本語", "😀x"]
    assert tokenize("a\u00a0b\u2009c\u3000d") == ["a", "b", "c", "d"]
    assert tokenize("a\u200bb a—b") == ["a\u200bb", "a—b"]  # zero-width space, em dash: no split
    # \x1c is whitespace for Python's str.split but not for Perl's \s
    assert tokenize("a\x1cb") == ["a\x1cb"]


def test_unicode_scores():
    # Identical non-ASCII text matches; case differences outside ASCII do not.
    # hyp = ref = "naïve café": 2 words, each info log2(2/1) = 1 -> NIST1 = 1; bigram
    # info log2(1/1) = 0. BLEU: 2/2, 1/1, no 3/4-grams -> 1.
    nist, bleu = raw(["naïve café"], [["naïve café"]])
    assert nist == pytest.approx([1.0] * 4)
    assert bleu == pytest.approx([1.0] * 4)
    nist, _ = raw(["CAFÉ"], [["café"]])
    assert nist == [0.0] * 4


def test_dstc_sgml_step():
    # The DSTC scripts blank out "&" and "<" (illegal in their XML) and mark empty lines.
    assert dstc_sgml_text("a&b<c") == "a b c"
    assert dstc_sgml_text("") == "__empty__"
    assert dstc_sgml_text("", empty_placeholder="") == ""
    assert dstc_sgml_text(" ") == " "  # only a truly empty line gets the marker
    # "&quot;" therefore never reaches the entity rule: it becomes " quot;"
    nist, bleu = nist_bleu(["say &quot;hi&quot;"], [["say quot ; hi quot ;"]], rounded=False)
    assert bleu[0] == pytest.approx(1.0)


def test_mismatched_inputs_raise():
    with pytest.raises(ValueError):
        raw(["a"], [])
    with pytest.raises(ValueError):
        raw(["a", "b"], [["a"], ["a", "b"]])


def test_inputs_mteval_dies_on():
    from dstc.metrics import nlp_metrics
    from dstc.mteval import MtevalFailure, XmlIllegalText

    # expat rejects control characters and "]]>"; the DSTC script then reports -1
    with pytest.raises(XmlIllegalText, match="hypothesis 2"):
        raw(["ok", "a\x0cb"], [["ok"], ["a b"]])
    with pytest.raises(XmlIllegalText, match="reference 1 of segment 1"):
        raw(["ok"], [["x ]]> y"]])
    # blanked instead: "a\x0cb" reads as "a b", a perfect match
    assert raw(["a\x0cb"], [["a b"]], xml_illegal="blank")[1] == pytest.approx([1.0] * 4)
    # a segment whose references are all blank (not empty: no placeholder) divides by 0
    with pytest.raises(MtevalFailure, match="segment 2"):
        raw(["a", "b"], [["a"], [" "]])
    warnings = []
    scores = nlp_metrics(["a\x01"], [["a"]], use_meteor=False, warn=warnings.append)
    assert scores.nist == [-1.0] * 4 and scores.bleu == [-1.0] * 4
    assert "mteval fails" in warnings[0]
    assert scores.entropy == [0.0] * 4 and scores.avg_len == 1.0  # the rest still computed


def test_no_smoothing_bleu():
    # --no-smoothing: BLEU-n = exp(sum_{k<=n} log p_k / n + min(0, 1 - r/c)), and 0 for an
    # order with no match. "a b c d" vs "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, no 4-gram.
    _, bleu = raw(["a b c d"], [["a b c e"]], smoothing=False)
    p = [3 / 4, 2 / 3, 1 / 2]
    assert bleu[:3] == pytest.approx([math.prod(p[:n]) ** (1 / n) for n in (1, 2, 3)], rel=1e-12)
    assert bleu[3] == 0.0
    # 3 words against 6: brevity term 1 - 6/3 = -1 inside the exponent; all matches.
    _, bleu = raw(["a b c"], [["a b c d e f"]], smoothing=False)
    assert bleu[:3] == pytest.approx([math.exp(-1)] * 3, rel=1e-12)
    # longer than the reference: no brevity term
    _, bleu = raw(["a b c d e"], [["a b"]], smoothing=False)
    assert bleu[0] == pytest.approx(2 / 5, rel=1e-12)
    assert bleu[1] == pytest.approx(math.sqrt(2 / 5 * 1 / 4), rel=1e-12)


def test_smoothing_is_the_default_of_bleu_from_stats():
    from dstc.mteval import bleu_from_stats, ngram_stats

    stats = ngram_stats([tokenize("a b c d")], [[tokenize("a b c e")]])
    # no 4-gram match: smoothed to 1/(2*1) instead of 0
    assert bleu_from_stats(stats)[3] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** 0.25)
    assert bleu_from_stats(stats, smoothing=False)[3] == 0.0


def test_one_word_corpus():
    # No bigram at all: higher orders add log 1 (iscore 0), the brevity factor still 1.
    nist, bleu = raw(["a"], [["a"]])
    assert bleu == pytest.approx([1.0] * 4)
    assert nist == pytest.approx([0.0] * 4)  # info of "a" = log2(1/1)


def test_counts_clipped_by_the_references():
    # "the" 4 times against at most 2 in one reference: 2 matches of 4 unigrams (closest
    # reference length 3 < 4: no brevity penalty).
    _, bleu = raw(["the the the the"], [["the cat the", "the dog"]], smoothing=False)
    assert bleu[0] == pytest.approx(2 / 4, rel=1e-12)


def test_case_and_skipped_tags():
    # Lower-cased by default (mteval without -c), kept with preserve_case.
    assert raw(["A B C"], [["a b c"]])[1] == pytest.approx([1.0] * 4)
    # with -c, "A" and "a" differ: only "b c" of "A b c" matches
    assert raw(["A b c"], [["a b c"]], preserve_case=True, smoothing=False)[1][0] == (
        pytest.approx(2 / 3, rel=1e-12)
    )
    assert tokenize("Hello WORLD") == ["hello", "world"]
    assert tokenize("Hello WORLD", preserve_case=True) == ["Hello", "WORLD"]
    from dstc.mteval import MtevalTokenizer

    assert MtevalTokenizer()("ABC") == ["abc"]
    assert MtevalTokenizer(preserve_case=True)("ABC x") == ["ABC", "x"]
    # mteval strips "<skipped>" tags inside a token before anything else
    assert tokenize("a<skipped>b") == ["ab"]
    assert tokenize("<skipped>") == []


def test_error_messages():
    from dstc.mteval import (
        MtevalFailure,
        NgramStats,
        XmlIllegalText,
        ngram_stats,
        nist_from_stats,
    )

    with pytest.raises(ValueError, match="^2 hypotheses but 1 reference sets$"):
        ngram_stats([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match="^no segments to score$"):
        ngram_stats([], [])
    with pytest.raises(ValueError, match="^every segment needs the same, non-zero number"):
        ngram_stats([["a"]], [[]])
    with pytest.raises(MtevalFailure, match=r"^the references contain no words \(mteval"):
        nist_from_stats(NgramStats(n_refs=1))
    with pytest.raises(ValueError, match="^xml_illegal must be 'fail' or 'blank', not 'drop'$"):
        raw(["a"], [["a"]], xml_illegal="drop")
    exc = XmlIllegalText("hypothesis 3")
    assert exc.what == "hypothesis 3"
    assert str(exc).endswith("; --xml_illegal blank scores it with those characters blanked")
    assert str(exc).startswith("hypothesis 3 has a character XML forbids")
