"""dstc.py, extract_human.py and batch_eval.py end to end (METEOR through a stand-in java
so these stay fast; the real jar is exercised in test_demo.py)."""

import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dstc import batch_eval, extract_human
from dstc import dstc as cli
from dstc.meteor import MeteorUnavailable
from dstc.mteval import nist_bleu
from dstc.report import COLUMNS, read_report
from dstc.textio import InputError
from dstc.tokenizers import clean_str
from lsp_common.cli import run_cli

from .helpers import demo_multiref, write

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "dstc" / "dstc.py"


def last_json(out: str):
    """The scores of a --json run: standard output must be the JSON and nothing else."""
    return json.loads(out)


def assert_demo(scores: dict, expected: dict):
    assert scores["nist"] == expected["nist"]
    assert scores["bleu"] == expected["bleu"]
    assert [round(x, 4) for x in scores["entropy"]] == expected["entropy"]
    assert [round(x, 4) for x in scores["div"]] == expected["distinct"]
    assert scores["avg_len"] == expected["avg_len"]
    assert scores["n_lines"] == 3


@pytest.fixture
def fake_java(tmp_path):
    """A stand-in for java: records its arguments and the reference file, prints a score."""
    log = tmp_path / "java_calls"
    script = tmp_path / "fake_java"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f'cat "$5" > "{tmp_path}/meteor_refs.txt"\n'
        f'cat "$4" > "{tmp_path}/meteor_hyps.txt"\n'
        'echo "Final score:            0.5"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    jar = tmp_path / "meteor.jar"
    jar.write_bytes(b"")
    return script, jar, log


def test_plain_mode_json_alone_on_stdout(demo, capsys):
    hyps, refs, expected = demo
    from .conftest import DEMO

    rc = cli.main(
        [
            str(DEMO / "hyp.txt"),
            "--ref_files",
            str(DEMO / "ref0.txt"),
            str(DEMO / "ref1.txt"),
            "--no_meteor",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0
    scores = last_json(captured.out)
    assert list(scores) == ["nist", "bleu", "meteor", "entropy", "div", "avg_len", "n_lines"]
    assert scores["meteor"] is None
    assert_demo(scores, expected)
    # the human summary still comes, on standard error
    assert "NIST = [1.8338, 2.0838, 2.1949, 2.1949]" in captured.err


def test_faithful_mode_reproduces_the_demo(demo, tmp_path, capsys, fake_java):
    hyps, refs, expected = demo
    sub, multiref, keys = demo_multiref(tmp_path, hyps, refs)
    java, jar, log = fake_java
    # two references, none held out: exactly the demo's setting
    rc = cli.main(
        [
            str(sub),
            "--refs",
            str(multiref),
            "--keys",
            str(keys),
            "--n_refs",
            "2",
            "--vshuman",
            "-1",
            "--java",
            str(java),
            "--meteor_jar",
            str(jar),
            "--json",
        ]
    )
    assert rc == 0
    scores = last_json(capsys.readouterr().out)
    assert_demo(scores, expected)
    assert scores["meteor"] == 0.5
    # the jar gets -l en -norm -r 2 and both references of a segment on consecutive lines
    assert log.read_text().split()[-5:] == ["-l", "en", "-r", "2", "-norm"]
    assert (tmp_path / "meteor_refs.txt").read_text().splitlines() == [
        r for seg in refs for r in seg
    ]
    assert (tmp_path / "meteor_hyps.txt").read_text().splitlines() == hyps


def test_faithful_defaults_hold_out_reference_1(demo, tmp_path, capsys):
    hyps, refs, _ = demo
    sub, multiref, keys = demo_multiref(tmp_path, hyps, refs)
    # Defaults --n_refs 6 --vshuman 1: with two references the second is held out, so
    # the scores equal a plain run against ref0 six times.
    assert (
        cli.main([str(sub), "--refs", str(multiref), "--keys", str(keys), "--no_meteor", "--json"])
        == 0
    )
    faithful = last_json(capsys.readouterr().out)
    ref0 = write(tmp_path / "ref0.txt", [seg[0] for seg in refs])
    hyp = write(tmp_path / "hyp.txt", hyps)
    assert cli.main([str(hyp), "--ref_files", *[str(ref0)] * 6, "--no_meteor", "--json"]) == 0
    assert last_json(capsys.readouterr().out) == faithful


def test_folder_gives_report_with_dstc_columns(demo, tmp_path, capsys):
    hyps, refs, expected = demo
    systems = tmp_path / "systems"
    systems.mkdir()
    write(systems / "a.txt", hyps)
    write(systems / "b.txt", ["i do n't know .", "", "i love it"])
    write(systems / "notes.md", ["not a system"])
    r0 = write(tmp_path / "ref0.txt", [s[0] for s in refs])
    r1 = write(tmp_path / "ref1.txt", [s[1] for s in refs])
    assert cli.main([str(systems), "--ref_files", str(r0), str(r1), "--no_meteor"]) == 0
    report = systems / "report_ref2.tsv"
    assert report.read_text().splitlines()[0].split("\t") == COLUMNS
    rows = read_report(report)
    assert [Path(r["fname"]).name for r in rows] == ["a.txt", "b.txt"]
    assert [float(rows[0][f"nist{i}"]) for i in range(1, 5)] == expected["nist"]
    assert math.isnan(float(rows[0]["meteor"]))
    assert rows[1]["n_lines"] == "3" and float(rows[1]["avg_len"]) == pytest.approx(8 / 3)
    assert not list(systems.glob(".*tmp"))  # written atomically, no temporary left
    # --clean: cleaned text scored, report named like the DSTC script's
    assert cli.main([str(systems), "--ref_files", str(r0), str(r1), "--no_meteor", "--clean"]) == 0
    cleaned = read_report(systems / "report_ref2_cleaned.tsv")
    nist, _ = nist_bleu([clean_str(h) for h in hyps], [[clean_str(r) for r in seg] for seg in refs])
    assert [float(cleaned[0][f"nist{i}"]) for i in range(1, 5)] == nist
    # several files and --json: one JSON list on the last line
    own = tmp_path / "own.tsv"
    assert (
        cli.main(
            [
                str(systems / "a.txt"),
                str(systems / "b.txt"),
                "--ref_files",
                str(r0),
                str(r1),
                "--no_meteor",
                "--json",
                "--report",
                str(own),
            ]
        )
        == 0
    )
    listed = last_json(capsys.readouterr().out)
    assert [Path(x["fname"]).name for x in listed] == ["a.txt", "b.txt"] and own.exists()


def test_meteor_missing_or_required(demo, tmp_path, capsys):
    from .conftest import DEMO

    args = [
        str(DEMO / "hyp.txt"),
        "--ref_files",
        str(DEMO / "ref0.txt"),
        str(DEMO / "ref1.txt"),
        "--json",
    ]
    missing = str(tmp_path / "nowhere.jar")
    assert cli.main(args + ["--meteor_jar", missing]) == 0
    captured = capsys.readouterr()
    assert last_json(captured.out)["meteor"] is None
    assert "METEOR skipped" in captured.err and "nowhere.jar" in captured.err
    assert cli.main(args + ["--meteor_jar", missing, "--require_meteor"]) == 1
    assert "nowhere.jar" in capsys.readouterr().err
    assert cli.main(args + ["--java", str(tmp_path / "no-java"), "--require_meteor"]) == 1
    assert "java" in capsys.readouterr().err


def test_input_errors_exit_2_with_file_and_line(demo, tmp_path, capsys):
    hyps, refs, _ = demo
    hyp = write(tmp_path / "hyp.txt", hyps)
    short = write(tmp_path / "short.txt", [s[0] for s in refs][:2])
    assert cli.main([str(hyp), "--ref_files", str(short), "--no_meteor"]) == 2
    err = capsys.readouterr().err
    assert f"{short}:3: line 3 is missing: 2 reference lines but 3 hypothesis lines" in err
    assert "Traceback" not in err
    empty = write(tmp_path / "empty.txt", [])
    assert cli.main([str(empty), "--ref_files", str(short), "--no_meteor"]) == 2
    assert f"{empty}: file is empty" in capsys.readouterr().err
    sub, multiref, keys = demo_multiref(tmp_path, hyps, refs)
    keys_more = write(tmp_path / "keys_more.txt", ["k1", "k2", "k7"])
    assert (
        cli.main([str(sub), "--refs", str(multiref), "--keys", str(keys_more), "--no_meteor"]) == 2
    )
    assert f"{keys_more}:3: key 'k7' has no response in {sub}" in capsys.readouterr().err
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"ok\ncaf\xe9\n")
    assert cli.main([str(bad), "--ref_files", str(short), "--no_meteor"]) == 2
    assert f"{bad}:2: not valid UTF-8" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main([str(hyp)])  # neither layout
    assert exc.value.code == 2


def test_extract_human_then_score_it(demo, tmp_path, capsys):
    hyps, refs, _ = demo
    sub, multiref, keys = demo_multiref(tmp_path, hyps, refs)
    out = tmp_path / "human.resp.txt"
    assert (
        extract_human.main(["--refs", str(multiref), "--keys", str(keys), "--out", str(out)]) == 0
    )
    # keys file order (k3, k2, k1), reference 1 of each
    assert out.read_text().splitlines() == [s[1] for s in reversed(refs)]
    common = ["--refs", str(multiref), "--keys", str(keys), "--no_meteor", "--json"]
    assert cli.main([str(out)] + common) == 0
    from_file = last_json(capsys.readouterr().out)
    assert cli.main(["--human"] + common) == 0
    assert last_json(capsys.readouterr().out) == from_file
    assert (
        extract_human.main(
            ["--refs", str(multiref), "--keys", str(keys), "--out", str(out), "-v", "5"]
        )
        == 2
    )
    assert "has 2 references, no reference 5" in capsys.readouterr().err


def test_batch_eval_scores_every_resp_file(demo, tmp_path, capsys):
    hyps, refs, expected = demo
    sub, multiref, keys = demo_multiref(tmp_path, hyps, refs)
    folder = tmp_path / "outputs"
    folder.mkdir()
    # bare responses in keys-file order (k3, k2, k1), as the decoder writes them
    write(folder / "greedy.resp.txt", list(reversed(hyps)))
    write(folder / "beam.resp.txt", ["i love it !"] * 3)
    write(folder / "ignored.txt", ["x"] * 3)
    rc = batch_eval.main(
        [
            str(folder),
            "--refs",
            str(multiref),
            "--keys",
            str(keys),
            "--n_refs",
            "2",
            "--vshuman",
            "-1",
            "--no_meteor",
        ]
    )
    assert rc == 0
    rows = read_report(folder / "eval" / "report_ref2.tsv")
    assert [Path(r["fname"]).name for r in rows] == ["beam.resp.txt", "greedy.resp.txt"]
    assert [float(rows[1][f"bleu{i}"]) for i in range(1, 5)] == expected["bleu"]
    empty = tmp_path / "none"
    empty.mkdir()
    assert (
        batch_eval.main([str(empty), "--refs", str(multiref), "--keys", str(keys), "--no_meteor"])
        == 2
    )
    assert "no *.resp.txt" in capsys.readouterr().err


def test_script_path_from_another_cwd(demo, tmp_path):
    from .conftest import DEMO

    # The package is importable as installed (pip install -e .) or, in a checkout that is
    # not, through the PYTHONPATH tests/conftest.py sets; the script must keep its own
    # folder (dstc.py, tokenizers.py) from shadowing it.
    env = dict(os.environ)
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(DEMO / "hyp.txt"),
            "--ref_files",
            str(DEMO / "ref0.txt"),
            str(DEMO / "ref1.txt"),
            "--no_meteor",
            "--json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["nist"] == demo[2]["nist"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "mteval-v14c" in proc.stdout


def test_script_does_not_shadow_hf_tokenizers(demo, tmp_path):
    # Run dstc.py exactly as `python dstc/dstc.py` would (its folder first on sys.path),
    # then import `tokenizers` in the same process: it must not be dstc/tokenizers.py.
    from .conftest import DEMO

    code = f"""
import runpy, sys, importlib.util
sys.path[0] = {str(SCRIPT.parent)!r}
sys.argv = [{str(SCRIPT)!r}, {str(DEMO / "hyp.txt")!r}, "--ref_files", {str(DEMO / "ref0.txt")!r}, "--no_meteor", "--clean"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
spec = importlib.util.find_spec("tokenizers")
print("TOKENIZERS", spec.origin if spec else None)
print("DSTC_TOKENIZERS", sys.modules["dstc.tokenizers"].__file__)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    found = dict(
        line.split(" ", 1)
        for line in proc.stdout.splitlines()
        if line.startswith(("TOKENIZERS", "DSTC_"))
    )
    assert found["DSTC_TOKENIZERS"] == str(SCRIPT.parent / "tokenizers.py")
    assert found["TOKENIZERS"] != str(SCRIPT.parent / "tokenizers.py")
    if found["TOKENIZERS"] != "None":  # the Hugging Face library, when installed
        assert "site-packages" in found["TOKENIZERS"] or "dist-packages" in found["TOKENIZERS"]


def test_trailing_empty_hypothesis_like_the_dstc_script(tmp_path, capsys, fake_java):
    java, jar, _ = fake_java
    refs = write(tmp_path / "refs.txt", ["a\t1|x y", "b\t1|y z", "c\t1|z"])
    keys = write(tmp_path / "keys.txt", ["a", "b", "c"])
    sub = write(tmp_path / "sub.txt", ["a\tx y", "b\ty", "c\t"])
    args = [
        str(sub),
        "--refs",
        str(refs),
        "--keys",
        str(keys),
        "--java",
        str(java),
        "--meteor_jar",
        str(jar),
        "--json",
    ]
    # default: the DSTC script loses the empty last line (key c), and its METEOR fails
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    scores = last_json(captured.out)
    assert scores["n_lines"] == 2 and scores["meteor"] == -1.0 and scores["avg_len"] == 1.5
    assert "--keep_trailing_empty" in captured.err
    assert cli.main(args + ["--keep_trailing_empty"]) == 0
    scores = last_json(capsys.readouterr().out)
    assert scores["n_lines"] == 3 and scores["meteor"] == 0.5 and scores["avg_len"] == 1.0


def test_trailing_empty_reference_like_the_dstc_script(tmp_path, capsys, fake_java):
    # The last reference (key c) of file 1 is emoji only: --clean empties it, the DSTC
    # script loses that line, mteval dies (-1) and merging the references for METEOR
    # raises IndexError (reported as -1). See test_multiref for how this was established.
    java, jar, log = fake_java
    refs = write(tmp_path / "refs.txt", ["a\t1|x y\t1|x", "b\t1|y z\t1|y", "c\t1|z\t1|🙂"])
    keys = write(tmp_path / "keys.txt", ["a", "b", "c"])
    sub = write(tmp_path / "sub.txt", ["a\tx y", "b\ty", "c\tz"])
    args = [str(sub), "--refs", str(refs), "--keys", str(keys), "--n_refs", "2"]
    args += ["--vshuman", "-1", "--java", str(java), "--meteor_jar", str(jar), "--json"]
    assert cli.main(args + ["--clean"]) == 0
    captured = capsys.readouterr()
    scores = last_json(captured.out)
    assert scores["nist"] == [-1.0] * 4 and scores["bleu"] == [-1.0] * 4
    assert scores["meteor"] == -1.0 and scores["n_lines"] == 3 and scores["avg_len"] == 4 / 3
    assert "IndexError" in captured.err and "--keep_trailing_empty" in captured.err
    assert not log.exists()  # no METEOR run for a figure the script never produced
    assert cli.main(args + ["--clean", "--keep_trailing_empty"]) == 0
    scores = last_json(capsys.readouterr().out)
    assert scores["meteor"] == 0.5 and scores["nist"][0] > 0
    # raw, the emoji line is not empty: nothing special
    assert cli.main(args) == 0
    scores = last_json(capsys.readouterr().out)
    assert scores["meteor"] == 0.5 and scores["nist"][0] > 0


def test_module_entry_point_from_repo_root():
    proc = subprocess.run(
        [sys.executable, "-m", "dstc.dstc", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--ref_files" in proc.stdout


# --- bad input and outputs (developers' guide: one clear message, nothing lost) ----------


@pytest.fixture
def small(tmp_path):
    """A tiny plain-layout and DSTC-7-layout system, independent of the demo data."""
    hyp = write(tmp_path / "hyp.txt", ["i do n't know .", "he is a trader", "ok then"])
    ref0 = write(tmp_path / "ref0.txt", ["i do not know", "he is an engineer", "ok"])
    refs = write(
        tmp_path / "refs.txt",
        [
            "k1\t0.9|i do not know\t0.8|no idea",
            "k2\t0.9|he is an engineer\t0.8|a trader",
            "k3\t0.9|ok\t0.8|fine",
        ],
    )
    keys = write(tmp_path / "keys.txt", ["k1", "k2", "k3"])
    return hyp, ref0, refs, keys


def test_report_path_problems_are_refused_before_scoring(small, tmp_path, capsys, monkeypatch):
    hyp, ref0, refs, keys = small
    scored = []
    real = cli.evaluate_system
    monkeypatch.setattr(cli, "evaluate_system", lambda *a, **k: scored.append(1) or real(*a, **k))
    folder = tmp_path / "a_folder"
    folder.mkdir()
    before = ref0.read_text()
    cases = [
        (folder, f"{folder}: is a folder; give the output a file name"),
        (ref0, f"{ref0}: is also an input file"),
        (hyp, f"{hyp}: is also an input file"),
        (ref0 / "r.tsv", f"{ref0 / 'r.tsv'}: cannot be written: {ref0} is not a folder"),
    ]
    for report, message in cases:
        rc = cli.main([str(hyp), "--ref_files", str(ref0), "--no_meteor", "--report", str(report)])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "Traceback" not in err and ".tmp" not in err
    assert scored == []  # refused up front, not after the (possibly long) scoring
    assert ref0.read_text() == before
    # the DSTC-7 layout's inputs are protected too
    rc = cli.main(
        [str(hyp), "--refs", str(refs), "--keys", str(keys), "--no_meteor", "--report", str(keys)]
    )
    assert rc == 2 and "is also an input file" in capsys.readouterr().err
    assert keys.read_text() == "k1\nk2\nk3\n"


def test_extract_human_and_batch_eval_refuse_bad_output_paths(small, tmp_path, capsys):
    hyp, ref0, refs, keys = small
    before = refs.read_text()
    args = ["--refs", str(refs), "--keys", str(keys)]
    assert extract_human.main(args + ["--out", str(refs)]) == 2
    assert f"{refs}: is also an input file" in capsys.readouterr().err
    assert refs.read_text() == before
    assert extract_human.main(args + ["--out", str(tmp_path)]) == 2
    assert f"{tmp_path}: is a folder" in capsys.readouterr().err
    systems = tmp_path / "systems"
    systems.mkdir()
    write(systems / "a.resp.txt", hyp.read_text().splitlines())
    rc = batch_eval.main([str(systems), *args, "--no_meteor", "--report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path}: is a folder" in err and "evaluating" not in err
    rc = batch_eval.main([str(systems), *args, "--no_meteor", "--report", str(keys)])
    assert rc == 2 and "is also an input file" in capsys.readouterr().err


def test_unwritable_output_names_the_output_not_a_temporary_file(small, tmp_path, monkeypatch):
    from lsp_common import atomic

    hyp, ref0, refs, keys = small

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    out = tmp_path / "out" / "h.txt"
    with pytest.raises(atomic.OutputError, match=rf"^cannot write {out}: Permission denied$"):
        atomic.write_text_atomic(out, "x\n")
    assert list(out.parent.iterdir()) == []  # the temporary file is gone


def test_outputs_get_the_usual_file_mode(small, tmp_path):
    hyp, ref0, refs, keys = small
    out = tmp_path / "human.txt"
    old = os.umask(0o022)
    try:
        assert extract_human.main(["--refs", str(refs), "--keys", str(keys), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not mkstemp's 0600


def test_interrupt_is_one_line_and_leaves_no_report(small, tmp_path, capsys, monkeypatch):
    hyp, ref0, refs, keys = small

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def main(entry, argv):
        try:
            return entry(argv)
        except KeyboardInterrupt:
            pytest.fail("KeyboardInterrupt escaped the command line (a traceback for the user)")

    report = tmp_path / "report.tsv"
    monkeypatch.setattr(cli, "evaluate_system", interrupted)
    rc = main(
        cli.main, [str(hyp), "--ref_files", str(ref0), "--no_meteor", "--report", str(report)]
    )
    err = capsys.readouterr().err
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    monkeypatch.setattr(batch_eval, "evaluate_system", interrupted)
    systems = tmp_path / "systems"
    systems.mkdir()
    write(systems / "a.resp.txt", ["x", "y", "z"])
    rc = main(batch_eval.main, [str(systems), "--ref_files", str(ref0), "--report", str(report)])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["hyp.txt", "ref0.txt", "refs.txt", "keys.txt", "systems"]
    )


def test_wrong_column_layouts_are_named(small, tmp_path, capsys):
    hyp, ref0, refs, keys = small
    spaces = write(
        tmp_path / "spaces.txt", [line.replace("\t", " ") for line in refs.read_text().splitlines()]
    )
    assert cli.main([str(hyp), "--refs", str(spaces), "--keys", str(keys), "--no_meteor"]) == 2
    err = capsys.readouterr().err
    assert f"{spaces}:1: no line has a tab" in err and "KEY<TAB>SCORE|REF" in err
    # the multi-reference file given as the keys file
    assert cli.main([str(hyp), "--refs", str(refs), "--keys", str(refs), "--no_meteor"]) == 2
    assert f"{refs}:1: has a tab: a keys file holds one key per line" in capsys.readouterr().err


def test_vshuman_below_minus_one_is_refused(small, capsys):
    hyp, ref0, refs, keys = small
    for main in (cli.main, batch_eval.main):
        target = str(hyp) if main is cli.main else str(hyp.parent)
        with pytest.raises(SystemExit) as exc:
            main([target, "--refs", str(refs), "--keys", str(keys), "--no_meteor", "-v", "-5"])
        assert exc.value.code == 2
        assert "--vshuman must be" in capsys.readouterr().err


def test_repeated_keys_are_reported_not_silently_dropped(small, tmp_path, capsys):
    hyp, ref0, refs, keys = small
    sub = write(tmp_path / "sub.txt", ["k1\ta", "k2\tb", "k3\tc", "k1\tagain"])
    assert cli.main([str(sub), "--refs", str(refs), "--keys", str(keys), "--no_meteor"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {sub}:4: key 'k1' repeats line 1" in err and "1 repeated line(s)" in err
    refs2 = write(
        tmp_path / "refs2.txt", refs.read_text().splitlines() + ["k2\t1|x\t1|y", "k3\t1|z\t1|w"]
    )
    out = tmp_path / "human.txt"
    assert extract_human.main(["--refs", str(refs2), "--keys", str(keys), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {refs2}:4: key 'k2' repeats line 2" in err and "2 repeated line(s)" in err
    assert out.read_text() == "no idea\ny\nw\n"  # the last line wins, as in the DSTC script


def test_utf8_error_names_line_and_column_with_crlf(small, tmp_path, capsys):
    hyp, ref0, refs, keys = small
    bad = tmp_path / "crlf.txt"
    bad.write_bytes(b"one\r\ntwo\r\nthr\xe9e\r\n")
    assert cli.main([str(bad), "--ref_files", str(ref0), "--no_meteor"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: not valid UTF-8: byte 0xe9 at column 4" in err


@pytest.mark.parametrize(
    "error, rc, message",
    [
        (InputError("in.txt", 3, "bad line"), 2, "prog.py: error: in.txt:3: bad line\n"),
        (MeteorUnavailable("no jar"), 1, "prog.py: error: METEOR: no jar\n"),
        (
            PermissionError(13, "Permission denied"),
            1,
            "prog.py: error: [Errno 13] Permission denied\n",
        ),
        (KeyboardInterrupt(), 130, "prog.py: interrupted; nothing was lost\n"),
    ],
)
def test_run_cli_turns_errors_into_one_line_and_a_status(error, rc, message, capsys):
    def body():
        raise error

    assert run_cli("prog.py", body, "nothing was lost") == rc
    assert capsys.readouterr().err == message
    assert run_cli("prog.py", lambda: 0, "unused") == 0


def test_folder_scoring_leaves_out_the_hyp_keys_file(demo, tmp_path, capsys):
    # DialoGPT's layout: responses for the whole test set, one per line, with the keys of
    # those lines in a file that may sit in the same folder; --keys picks a part.
    hyps, refs, expected = demo
    folder = tmp_path / "outputs"
    folder.mkdir()
    all_keys = ["k0", "k1", "k2", "k3"]  # k0 is not selected by --keys
    hyp_keys = write(folder / "test.keys.txt", all_keys)
    _, multiref, keys = demo_multiref(tmp_path, hyps, refs)
    write(folder / "greedy.txt", ["not scored"] + hyps)
    common = ["--refs", str(multiref), "--keys", str(keys), "--hyp_keys", str(hyp_keys)]
    common += ["--n_refs", "2", "--vshuman", "-1", "--no_meteor"]
    assert cli.main([str(folder), *common]) == 0
    rows = read_report(folder / "report_ref2.tsv")
    assert [Path(r["fname"]).name for r in rows] == ["greedy.txt"]
    assert [float(rows[0][f"nist{i}"]) for i in range(1, 5)] == expected["nist"]
    # batch_eval, with a pattern the keys file matches too
    write(folder / "beam.resp.txt", ["not scored"] + hyps)
    assert batch_eval.main([str(folder), *common, "--pattern", "*.txt"]) == 0
    rows = read_report(folder / "eval" / "report_ref2.tsv")
    assert [Path(r["fname"]).name for r in rows] == ["beam.resp.txt", "greedy.txt"]
    assert [float(rows[0][f"bleu{i}"]) for i in range(1, 5)] == expected["bleu"]
    capsys.readouterr()
