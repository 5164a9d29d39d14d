"""The DSTC-7 metric set over a hypothesis list and its references.

NIST/BLEU come from :mod:`dstc.mteval` (a port of mteval-v14c.pl), METEOR from the real
jar (:mod:`dstc.meteor`); entropy, distinct and length follow the arithmetic of the DSTC-7
``metrics.py`` so the figures agree with it to floating-point noise.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from dstc.meteor import MeteorUnavailable, find_meteor_jar, meteor
from dstc.mteval import EMPTY_PLACEHOLDER, MtevalFailure, nist_bleu

__all__ = [
    "Scores",
    "calc_avg_len",
    "calc_diversity",
    "calc_entropy",
    "meteor",
    "MeteorUnavailable",
    "find_meteor_jar",
    "nist_bleu",
    "nlp_metrics",
]


def _ngram_counts(hyps: Sequence[str], orders: int) -> list[Counter]:
    counts: list[Counter] = [Counter() for _ in range(orders)]
    for line in hyps:
        words = line.split()
        for n in range(orders):
            counter = counts[n]
            for i in range(len(words) - n):
                counter[" ".join(words[i : i + n + 1])] += 1
    return counts


def calc_entropy(hyps: Sequence[str]) -> list[float]:
    """Entropy-1..4 (natural log) of the n-gram frequency distribution of all hypotheses,
    whitespace tokens."""
    scores = []
    for counter in _ngram_counts(hyps, 4):
        total = sum(counter.values())
        score = 0.0
        for v in counter.values():
            # Same expression as the DSTC script, so rounding matches term by term.
            score += -v / total * (math.log(v) - math.log(total))
        scores.append(score)
    return scores


def calc_diversity(hyps: Sequence[str]) -> list[float]:
    """Distinct-1/2: distinct n-grams / total n-grams over all hypotheses (0.0 when there
    are no n-grams, where the DSTC script would divide by zero)."""
    out = []
    for counter in _ngram_counts(hyps, 2):
        total = sum(counter.values())
        out.append(len(counter) / total if total else 0.0)
    return out


def calc_avg_len(hyps: Sequence[str]) -> float:
    """Mean hypothesis length in whitespace tokens."""
    if not hyps:
        return 0.0
    return sum(len(h.split()) for h in hyps) / len(hyps)


@dataclass
class Scores:
    n_lines: int
    nist: list[float]
    bleu: list[float]
    meteor: float | None
    entropy: list[float]
    div: list[float]
    avg_len: float

    def to_json(self) -> dict:
        d = asdict(self)
        order = ["nist", "bleu", "meteor", "entropy", "div", "avg_len", "n_lines"]
        return {k: d[k] for k in order}

    def row(self) -> list:
        """Values in the report column order after ``fname``."""
        meteor_value = math.nan if self.meteor is None else self.meteor
        return [
            self.n_lines,
            *self.nist,
            *self.bleu,
            meteor_value,
            *self.entropy,
            *self.div,
            self.avg_len,
        ]


def nlp_metrics(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    use_meteor: bool = True,
    require_meteor: bool = False,
    meteor_jar: str | None = None,
    java: str | None = None,
    meteor_norm: bool = True,
    empty_placeholder: str = EMPTY_PLACEHOLDER,
    xml_illegal: str = "fail",
    mteval_failure: str | None = None,
    warn=None,
) -> Scores:
    """All metrics of one system. ``refs[i]`` holds the references of segment ``i``.

    When METEOR cannot run (no java, no jar) the score is ``None`` and ``warn`` (default:
    print to stderr) is told why, unless ``require_meteor`` makes it an error.

    Text that mteval's XML reader rejects gives NIST = BLEU = -1, the DSTC script's result
    (``xml_illegal="blank"`` scores it with those characters blanked instead).
    ``mteval_failure`` says why mteval fails on the DSTC script's files for this input
    when the texts alone do not show it: NIST and BLEU are then -1 without scoring.
    """
    warn = warn or (lambda m: print(m, file=sys.stderr))
    try:
        if mteval_failure is not None:
            raise MtevalFailure(mteval_failure)
        nist, bleu = nist_bleu(
            hyps, refs, empty_placeholder=empty_placeholder, xml_illegal=xml_illegal
        )
    except MtevalFailure as exc:
        warn(
            f"warning: NIST/BLEU reported as -1 as the DSTC script does, since mteval fails here: {exc}"
        )
        nist, bleu = [-1.0] * 4, [-1.0] * 4
    meteor_score = None
    if use_meteor or require_meteor:
        try:
            meteor_score = meteor(hyps, refs, jar=meteor_jar, java=java, norm=meteor_norm)
        except MeteorUnavailable as exc:
            if require_meteor:
                raise
            warn(f"warning: METEOR skipped: {exc}")
    return Scores(
        n_lines=len(hyps),
        nist=nist,
        bleu=bleu,
        meteor=meteor_score,
        entropy=calc_entropy(hyps),
        div=calc_diversity(hyps),
        avg_len=calc_avg_len(hyps),
    )
