"""dstc.metrics: entropy, distinct, length, the Scores record and nlp_metrics' handling of
METEOR and mteval failures (hand-computed values)."""

import math
import stat

import pytest

from dstc.meteor import MeteorUnavailable
from dstc.metrics import Scores, calc_avg_len, calc_diversity, calc_entropy, nlp_metrics

CORPUS = ["a b a", "b"]  # unigrams a:2 b:2; bigrams "a b", "b a"; one trigram; no 4-gram


def test_entropy_by_hand():
    assert calc_entropy(CORPUS) == pytest.approx([math.log(2), math.log(2), 0.0, 0.0], abs=1e-15)
    # 3:1 unigram split, whitespace tokens (tabs and runs of spaces are one separator)
    p = [3 / 4, 1 / 4]
    assert calc_entropy(["x  x\tx y"])[0] == pytest.approx(-sum(q * math.log(q) for q in p))
    assert calc_entropy(["x  x\tx y"])[3] == 0.0  # one 4-gram


def test_diversity_and_length_by_hand():
    assert calc_diversity(CORPUS) == [2 / 4, 2 / 2]
    assert calc_diversity(["a a a"]) == [1 / 3, 1 / 2]
    assert calc_diversity(["", " "]) == [0.0, 0.0]  # no n-gram at all: 0, not a crash
    assert calc_avg_len(CORPUS) == 2.0
    assert calc_avg_len(["a  b", ""]) == 1.0
    assert calc_avg_len([]) == 0.0


def test_scores_record():
    s = Scores(
        n_lines=2,
        nist=[1.0, 2.0, 3.0, 4.0],
        bleu=[0.1, 0.2, 0.3, 0.4],
        meteor=None,
        entropy=[5.0, 6.0, 7.0, 8.0],
        div=[0.5, 0.6],
        avg_len=2.5,
    )
    assert list(s.to_json()) == ["nist", "bleu", "meteor", "entropy", "div", "avg_len", "n_lines"]
    assert s.to_json()["meteor"] is None and s.to_json()["n_lines"] == 2
    row = s.row()
    assert row[:9] == [2, 1.0, 2.0, 3.0, 4.0, 0.1, 0.2, 0.3, 0.4]
    assert math.isnan(row[9])
    assert row[10:] == [5.0, 6.0, 7.0, 8.0, 0.5, 0.6, 2.5]
    s.meteor = 0.25
    assert s.row()[9] == 0.25


@pytest.fixture
def fake_java(tmp_path):
    """A stand-in java that records its arguments and prints a METEOR score."""
    log = tmp_path / "args"
    script = tmp_path / "java"
    script.write_text(f'#!/bin/sh\necho "$@" > "{log}"\necho "Final score:            0.125"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    jar = tmp_path / "meteor.jar"
    jar.write_bytes(b"")
    return str(script), str(jar), log


def test_nlp_metrics_runs_meteor_with_the_options(fake_java):
    java, jar, log = fake_java
    s = nlp_metrics(["a b"], [["a b", "a c"]], meteor_jar=jar, java=java, warn=pytest.fail)
    assert s.meteor == 0.125 and s.n_lines == 1
    assert s.nist[0] > 0 and s.bleu == [1.0] * 4 and s.avg_len == 2.0
    args = log.read_text().split()
    assert args[-5:] == ["-l", "en", "-r", "2", "-norm"] and args[2] == jar
    s = nlp_metrics(["a b"], [["a b"]], meteor_jar=jar, java=java, meteor_norm=False)
    assert log.read_text().split()[-2:] == ["-r", "1"]
    # the placeholder and xml_illegal reach NIST/BLEU: "" kept empty, "\x01" blanked
    s = nlp_metrics(
        ["", "a\x01b"],
        [["x"], ["a b"]],
        use_meteor=False,
        empty_placeholder="",
        xml_illegal="blank",
        warn=pytest.fail,
    )
    assert s.meteor is None and s.bleu[0] == pytest.approx(round(2 / 2 * math.exp(1 - 3 / 2), 4))
    # by default an empty line is the DSTC script's "__empty__": an empty hypothesis and
    # an empty reference match perfectly (kept empty, mteval would divide by zero)
    s = nlp_metrics([""], [[""]], use_meteor=False, warn=pytest.fail)
    assert s.bleu == [1.0] * 4


def test_nlp_metrics_without_meteor(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.jar")
    warnings = []
    s = nlp_metrics(["a"], [["a"]], meteor_jar=missing, warn=warnings.append)
    assert s.meteor is None
    assert warnings == [
        f"warning: METEOR skipped: METEOR jar {missing} (from --meteor_jar) does not exist"
    ]
    with pytest.raises(MeteorUnavailable, match="nowhere.jar"):
        nlp_metrics(["a"], [["a"]], use_meteor=False, require_meteor=True, meteor_jar=missing)
    # default warn: standard error
    nlp_metrics(["a"], [["a"]], meteor_jar=missing)
    assert "warning: METEOR skipped" in capsys.readouterr().err
    assert nlp_metrics(["a"], [["a"]], use_meteor=False, warn=pytest.fail).meteor is None


def test_nlp_metrics_mteval_failure_given():
    warnings = []
    s = nlp_metrics(
        ["a b"], [["a b"]], use_meteor=False, mteval_failure="why", warn=warnings.append
    )
    assert s.nist == [-1.0] * 4 and s.bleu == [-1.0] * 4
    assert warnings == [
        "warning: NIST/BLEU reported as -1 as the DSTC script does, since mteval fails here: why"
    ]
    assert s.entropy[0] == pytest.approx(math.log(2)) and s.div == [1.0, 1.0]
