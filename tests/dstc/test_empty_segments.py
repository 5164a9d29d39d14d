"""Empty and blank segments score exactly as the real mteval-v14c.pl and METEOR 1.5 score them.

Each folder of ``data/empty_segments`` is a 4-segment, 2-reference case (hyp.txt, ref0.txt,
ref1.txt); ``expected.json`` holds what the real scorers printed for it, raw and with
``--clean``. The figures were produced, for every CASE and with and without ``--clean``, by
(from the repository root, W a scratch folder)::

    python -m dstc.scorer_inputs W tests/dstc/data/empty_segments/CASE/hyp.txt \\
        tests/dstc/data/empty_segments/CASE/ref0.txt \\
        tests/dstc/data/empty_segments/CASE/ref1.txt [--clean]
    perl mteval-v14c.pl -s W/src.xml -t W/hyp.xml -r W/ref.xml
    java -Xmx1g -jar meteor-1.5.jar W/hyp.txt W/refs_merged.txt -r 2 -l en -norm

NIST and BLEU are columns 1-4 of the "NIST:" and "BLEU:" rows under "Cumulative N-gram
scoring" (-1 where mteval died, as the DSTC script reports it), METEOR the "Final score:".
mteval-v14c.pl is the copy in github.com/golsun/NLP-tools (perl 5.36, Debian's
libxml-twig-perl 3.52, libsort-naturally-perl, libstring-util-perl); the jar is
pycocoevalcap 1.2's, on OpenJDK 17.

The cases: empty_hyp (an empty hypothesis), empty_ref_one (one of two references empty),
empty_ref_all (both references of a segment empty), both_empty (hypothesis and references
of a segment empty), whitespace_only (blank hypothesis and references: not empty, so no
``__empty__`` placeholder, and no words), blank_segment (both references of a segment blank:
mteval divides by zero), clean_empties (emoji, CJK, "& <" and "[http://x.y]": text that
--clean empties, or not).
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dstc import dstc as cli
from dstc.evaluate import Options, plain_instances
from dstc.meteor import meteor
from dstc.metrics import nlp_metrics
from dstc.scorer_inputs import main as scorer_inputs_main
from dstc.scorer_inputs import mteval_xml

DATA = Path(__file__).parent / "data" / "empty_segments"
EXPECTED = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
CASES = sorted(k for k in EXPECTED if not k.startswith("_"))
MODES = ["raw", "clean"]


def load(case: str, mode: str):
    folder = DATA / case
    files = [folder / "ref0.txt", folder / "ref1.txt"]
    return plain_instances(folder / "hyp.txt", files, Options(clean=mode == "clean"))


def test_every_case_folder_has_expected_figures():
    folders = sorted(p.name for p in DATA.iterdir() if p.is_dir())
    assert folders == CASES and len(CASES) == 7


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES)
def test_nist_bleu_equal_mteval(case, mode):
    hyps, refs = load(case, mode)
    warnings = []
    scores = nlp_metrics(hyps, refs, use_meteor=False, warn=warnings.append)
    expected = EXPECTED[case][mode]
    assert scores.nist == expected["nist"]
    assert scores.bleu == expected["bleu"]
    # -1 exactly where mteval died, with the reason in a warning
    assert bool(warnings) == ("mteval_dies" in expected)


def test_clean_empties_a_line_of_emoji_or_cjk():
    # The point of the clean_empties case: cleaning leaves these lines empty (the DSTC
    # script then writes __empty__ for mteval), but keeps a bracketed URL as __url__.
    hyps, refs = load("clean_empties", "clean")
    assert hyps[0] == ""
    assert refs[1] == ["", ""]
    assert refs[2] == ["__url__", ""]


def test_cli_clean_equals_mteval(capsys):
    folder = DATA / "clean_empties"
    args = [str(folder / "hyp.txt"), "--ref_files", str(folder / "ref0.txt")]
    args += [str(folder / "ref1.txt"), "--no_meteor", "--json"]
    for mode, extra in (("raw", []), ("clean", ["--clean"])):
        assert cli.main(args + extra) == 0
        scores = json.loads(capsys.readouterr().out)
        assert scores["nist"] == EXPECTED["clean_empties"][mode]["nist"]
        assert scores["bleu"] == EXPECTED["clean_empties"][mode]["bleu"]


# One JVM per run costs ~10 s (the paraphrase table): the runs whose METEOR inputs hold an
# empty or blank line, which must reach the jar as they are (no placeholder, no stripping).
METEOR_RUNS = [
    ("both_empty", "raw"),
    ("empty_ref_one", "raw"),
    ("whitespace_only", "raw"),
    ("clean_empties", "clean"),
]


@pytest.mark.slow
def test_meteor_equals_the_jar(meteor_ready):
    jobs = [(case, mode, *load(case, mode)) for case, mode in METEOR_RUNS]
    # Two JVMs at once: each spends most of its time loading the paraphrase table.
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda job: meteor(job[2], job[3]), jobs))
    for (case, mode, *_), value in zip(jobs, got):
        assert value == EXPECTED[case][mode]["meteor"], (case, mode)


def test_mteval_xml_layout():
    xml = mteval_xml("ref", [["a & b", ""], ["<c", "   "]], "__empty__")
    assert '<refset setid="unnamed" srclang="src" trglang="tgt" refid="ref0">' in xml
    assert '<refset setid="unnamed" srclang="src" trglang="tgt" refid="ref1">' in xml
    # "&" and "<" blanked, an empty line marked, a blank one left blank; one space each side
    assert '<p><seg id="1"> a   b </seg></p>' in xml
    assert '<p><seg id="2"> __empty__ </seg></p>' in xml
    assert '<p><seg id="1">  c </seg></p>' in xml
    assert '<p><seg id="2">     </seg></p>' in xml
    assert xml.count("<doc ") == 2 and xml.endswith("</mteval>")
    hyp = mteval_xml("hyp", [[""]], "")
    assert 'sysid="unnamed"' in hyp and '<seg id="1">  </seg>' in hyp
    with pytest.raises(ValueError, match="role"):
        mteval_xml("tst", [[""]], "")


def test_scorer_inputs_command(tmp_path, capsys):
    folder = DATA / "clean_empties"
    out = tmp_path / "w"
    rc = scorer_inputs_main(
        [str(out), str(folder / "hyp.txt"), str(folder / "ref0.txt"), str(folder / "ref1.txt")]
        + ["--clean"]
    )
    assert rc == 0
    commands = capsys.readouterr().out.splitlines()
    assert commands[0] == f"perl mteval-v14c.pl -s {out}/src.xml -t {out}/hyp.xml -r {out}/ref.xml"
    assert commands[1].endswith("-r 2 -l en -norm")
    assert (out / "hyp.txt").read_text(encoding="utf-8").splitlines()[0] == ""
    merged = (out / "refs_merged.txt").read_text(encoding="utf-8").splitlines()
    assert merged[2:6] == ["", "", "__url__", ""]  # segment by segment, references together
    assert (out / "src.xml").read_text(encoding="utf-8").count("<seg ") == 4
    assert (out / "ref.xml").read_text(encoding="utf-8").count("__empty__") == 3
    assert scorer_inputs_main([str(out), str(tmp_path / "missing.txt"), "r.txt"]) == 2
