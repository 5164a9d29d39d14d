"""NIST and BLEU exactly as NIST's mteval-v14c.pl computes them with its default options.

Defaults reproduced: the non-international tokenizer (lower-cased, i.e. without ``-c``),
BLEU's "closest" brevity penalty, and the default BLEU formula of v13+ (which smooths an
n-gram order with no match at all by 1/2^k instead of letting the score drop to 0; the
``--no-smoothing`` formula is available as ``smoothing=False``). The DSTC-7 scripts feed
mteval XML files in which ``&`` and ``<`` were replaced by spaces and an empty line was
written as ``__empty__``; :func:`dstc_sgml_text` applies those two steps.

Only the cumulative scores for n = 1..4 are computed: they depend on n-grams up to order 4
only, so the 9-gram bookkeeping of the Perl script is not needed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_N = 4

# Perl's \s on character strings (XML::Twig hands mteval decoded text). Python's own
# notion of whitespace also includes \x1c-\x1f, which Perl's does not.
_PERL_WS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS_RUN = re.compile(f"[{_PERL_WS}]+")
_WS_EDGES = re.compile(f"^[{_PERL_WS}]+|[{_PERL_WS}]+$")

# mteval's punctuation class [\{-\~\[-\` -\&\(-\+\:-\@\/], i.e. ASCII punctuation except
# the apostrophe, hyphen, period and comma (handled by the rules after it).
_PUNCT = re.compile(r"([{-~\[-` -&(-+:-@/])")
_PERIOD_COMMA_AFTER_NONDIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_COMMA_BEFORE_NONDIGIT = re.compile(r"([.,])([^0-9])")
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_URL_TOKEN = re.compile(r"https?://")
# tr/[A-Z]/[a-z]/ lower-cases ASCII letters only.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

EMPTY_PLACEHOLDER = "__empty__"

# What the XML parser behind mteval (expat, via XML::Twig) rejects in text: control
# characters other than tab/newline/carriage return, U+FFFE/U+FFFF, and "]]>".
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|]]>")


class MtevalFailure(ValueError):
    """Input on which mteval-v14c.pl dies; the DSTC script then reports NIST and BLEU as -1."""


class XmlIllegalText(MtevalFailure):
    """A line the XML reader in front of mteval rejects."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(
            f"{what} has a character XML forbids (a control character or ']]>'); "
            "--xml_illegal blank scores it with those characters blanked"
        )


def dstc_sgml_text(line: str, empty_placeholder: str = EMPTY_PLACEHOLDER) -> str:
    """What the DSTC-7 scripts put inside ``<seg>`` for one line of text."""
    line = line.replace("&", " ").replace("<", " ")
    if not line and empty_placeholder:
        return empty_placeholder
    return line


def _normalize_token(text: str, preserve_case: bool) -> str:
    # mteval's tokenization_orig, which v14 applies to each whitespace token on its own.
    text = text.replace("<skipped>", "")
    text = text.replace("-\n", "").replace("\n", " ")
    text = text.replace("&quot;", '"').replace("&amp;", "&")
    text = text.replace("&lt;", "<").replace("&gt;", ">")
    text = f" {text} "
    if not preserve_case:
        text = text.translate(_ASCII_LOWER)
    text = _PUNCT.sub(r" \1 ", text)
    text = _PERIOD_COMMA_AFTER_NONDIGIT.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE_NONDIGIT.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    text = _WS_RUN.sub(" ", text)
    return _WS_EDGES.sub("", text)


class MtevalTokenizer:
    """mteval-v14c's default ``tokenization``: trim, split on whitespace, keep tokens that
    start with ``http://`` or ``https://`` untouched (not even lower-cased), normalise the
    others. Results are cached per raw token since real corpora repeat tokens heavily."""

    def __init__(self, preserve_case: bool = False):
        self.preserve_case = preserve_case
        self._cache: dict[str, list[str]] = {}

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        cache = self._cache
        for raw in _WS_RUN.split(text):
            if not raw:
                continue
            words = cache.get(raw)
            if words is None:
                if _URL_TOKEN.match(raw):
                    words = [raw]
                else:
                    # A token can only vanish through a literal "<skipped>", which the DSTC
                    # "<" replacement rules out; empty pieces are dropped.
                    words = _normalize_token(raw, self.preserve_case).split(" ")
                    words = [w for w in words if w]
                cache[raw] = words
            out.extend(words)
        return out


def tokenize(text: str, preserve_case: bool = False) -> list[str]:
    """Tokens of one segment as mteval-v14c sees them (no caching; see MtevalTokenizer)."""
    return MtevalTokenizer(preserve_case)(text)


def _ngram_iter(words: Sequence[str], max_n: int = MAX_N):
    # zip over shifted views yields the n-grams as tuples; feeding these iterators to
    # Counter keeps the counting loop in C.
    for n in range(1, min(max_n, len(words)) + 1):
        yield zip(*(words[i:] for i in range(n)))


def _ngrams(words: Sequence[str], max_n: int = MAX_N) -> Counter:
    counts: Counter = Counter()
    for grams in _ngram_iter(words, max_n):
        counts.update(grams)
    return counts


def _closest_ref_length(ref_lengths: Sequence[int], hyp_length: int) -> int:
    # brevity_penalty_closest folded over the references: the length nearest to the
    # hypothesis length, the shorter one on a tie.
    best = ref_lengths[0]
    for length in ref_lengths[1:]:
        d_new, d_best = abs(hyp_length - length), abs(hyp_length - best)
        if d_new < d_best or (d_new == d_best and length < best):
            best = length
    return best


def nist_length_penalty(ratio: float) -> float:
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    ratio_x, score_x = 1.5, 0.5
    beta = -math.log(score_x) / math.log(ratio_x) / math.log(ratio_x)
    return math.exp(-beta * math.log(ratio) * math.log(ratio))


@dataclass
class NgramStats:
    """Corpus totals behind the scores (what mteval sums over segments)."""

    n_refs: int
    ref_length: int = 0  # sum of the per-segment closest reference lengths
    ref_words: int = 0  # all reference words, every reference counted
    match: list[int] = field(default_factory=lambda: [0] * (MAX_N + 1))
    hyp_ngrams: list[int] = field(default_factory=lambda: [0] * (MAX_N + 1))
    info: list[float] = field(default_factory=lambda: [0.0] * (MAX_N + 1))


def _information_weights(refs_tok: Sequence[Sequence[Sequence[str]]]):
    """info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)) over every reference of every
    segment; for unigrams the denominator's role is played by the total word count."""
    counts: Counter = Counter()
    total_words = 0
    for seg_refs in refs_tok:
        for words in seg_refs:
            total_words += len(words)
            for grams in _ngram_iter(words):
                counts.update(grams)
    cache: dict[tuple, float] = {}
    log2 = math.log(2)

    def info(ngram: tuple) -> float:
        value = cache.get(ngram)
        if value is None:
            prefix = ngram[:-1]
            # Perl tests the prefix string for truth, and the string "0" is false: a
            # bigram starting with the token "0" is weighted like a unigram.
            if prefix and prefix != ("0",):
                ratio = counts[ngram] / counts[prefix]
            else:
                ratio = counts[ngram] / total_words
            value = -math.log(ratio) / log2
            cache[ngram] = value
        return value

    return info


def ngram_stats(
    hyps_tok: Sequence[Sequence[str]], refs_tok: Sequence[Sequence[Sequence[str]]]
) -> NgramStats:
    """One pass over the segments. ``refs_tok[i]`` holds the tokenised references of
    segment ``i``; every segment needs the same number of references (as in mteval)."""
    if len(hyps_tok) != len(refs_tok):
        raise ValueError(f"{len(hyps_tok)} hypotheses but {len(refs_tok)} reference sets")
    if not hyps_tok:
        raise ValueError("no segments to score")
    n_refs = len(refs_tok[0])
    if n_refs == 0 or any(len(r) != n_refs for r in refs_tok):
        raise ValueError("every segment needs the same, non-zero number of references")
    info = _information_weights(refs_tok)
    stats = NgramStats(n_refs=n_refs)
    for seg_no, (hyp, seg_refs) in enumerate(zip(hyps_tok, refs_tok), 1):
        hyp_counts = _ngrams(hyp)
        ref_counts = [_ngrams(words) for words in seg_refs]
        stats.ref_words += sum(len(words) for words in seg_refs)
        if not any(seg_refs):
            # mteval's segment-level NIST divides by this segment's reference word count.
            raise MtevalFailure(f"every reference of segment {seg_no} is blank")
        n_hyp = len(hyp)
        for n in range(1, MAX_N + 1):
            if n <= n_hyp:
                stats.hyp_ngrams[n] += n_hyp - n + 1
        stats.ref_length += _closest_ref_length([len(w) for w in seg_refs], n_hyp)
        for ngram, c in hyp_counts.items():
            # clipped by the most times any one reference has the n-gram
            r = max([rc[ngram] for rc in ref_counts if ngram in rc], default=0)
            if not r:
                continue
            clipped = c if c < r else r
            n = len(ngram)
            stats.match[n] += clipped
            stats.info[n] += info(ngram) * clipped
    return stats


def nist_from_stats(stats: NgramStats) -> list[float]:
    """Cumulative NIST-1..4: sum of per-order information gains, times the NIST brevity
    penalty on hypothesis length / average reference length (corpus level)."""
    if stats.ref_words == 0:
        raise MtevalFailure("the references contain no words (mteval divides by zero here)")
    penalty = nist_length_penalty(stats.hyp_ngrams[1] / (stats.ref_words / stats.n_refs))
    scores, total = [], 0.0
    for n in range(1, MAX_N + 1):
        total += stats.info[n] / max(stats.hyp_ngrams[n], 1)
        scores.append(total * penalty)
    return scores


def bleu_from_stats(stats: NgramStats, smoothing: bool = True) -> list[float]:
    """Cumulative BLEU-1..4 (mteval's ``bleu_score``, or ``bleu_score_nosmoothing``)."""
    scores: list[float] = []
    total = 0.0
    if not smoothing:
        for n in range(1, MAX_N + 1):
            if stats.match[n] == 0:
                scores.append(0.0)
                continue
            len_score = min(0.0, 1 - stats.ref_length / stats.hyp_ngrams[1])
            total += math.log(stats.match[n] / stats.hyp_ngrams[n])
            scores.append(math.exp(total / n + len_score))
        return scores
    exp_len_score = 0.0
    if stats.hyp_ngrams[1] > 0:
        exp_len_score = math.exp(min(0.0, 1 - stats.ref_length / stats.hyp_ngrams[1]))
    smooth = 1
    for n in range(1, MAX_N + 1):
        if stats.hyp_ngrams[n] == 0:
            iscore = 0.0
        elif stats.match[n] == 0:
            smooth *= 2
            iscore = math.log(1 / (smooth * stats.hyp_ngrams[n]))
        else:
            iscore = math.log(stats.match[n] / stats.hyp_ngrams[n])
        total += iscore
        scores.append(math.exp(total / n) * exp_len_score)
    return scores


def round4(x: float) -> float:
    """mteval prints ``%2.4f`` and the DSTC scripts parse that text back."""
    return float(f"{x:.4f}")


def nist_bleu(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    empty_placeholder: str = EMPTY_PLACEHOLDER,
    preserve_case: bool = False,
    smoothing: bool = True,
    rounded: bool = True,
    xml_illegal: str = "fail",
) -> tuple[list[float], list[float]]:
    """Corpus NIST-1..4 and BLEU-1..4 of raw hypothesis lines against raw references.

    ``refs[i]`` lists the references of segment ``i``. Text goes through the DSTC SGML step
    (``&``/``<`` to spaces, empty line to ``empty_placeholder``; pass ``""`` to keep empty
    lines empty) and mteval's tokenizer. With ``rounded`` the scores are rounded to 4
    decimals, as the DSTC scripts read them from mteval's report.

    Text the XML reader of mteval rejects raises :class:`XmlIllegalText` with
    ``xml_illegal="fail"``; ``"blank"`` turns the offending characters into spaces.
    """
    if xml_illegal not in ("fail", "blank"):
        raise ValueError(f"xml_illegal must be 'fail' or 'blank', not {xml_illegal!r}")

    def sgml(text: str, what) -> str:
        text = dstc_sgml_text(text, empty_placeholder)
        if _XML_ILLEGAL.search(text):
            if xml_illegal == "fail":
                raise XmlIllegalText(what())
            text = _XML_ILLEGAL.sub(lambda m: " " * len(m.group()), text)
        return text

    tok = MtevalTokenizer(preserve_case)
    hyps_tok = [tok(sgml(h, lambda i=i: f"hypothesis {i + 1}")) for i, h in enumerate(hyps)]
    refs_tok = [
        [
            tok(sgml(r, lambda i=i, j=j: f"reference {j + 1} of segment {i + 1}"))
            for j, r in enumerate(seg)
        ]
        for i, seg in enumerate(refs)
    ]
    stats = ngram_stats(hyps_tok, refs_tok)
    nist = nist_from_stats(stats)
    bleu = bleu_from_stats(stats, smoothing=smoothing)
    if rounded:
        nist = [round4(x) for x in nist]
        bleu = [round4(x) for x in bleu]
    return nist, bleu
