"""Bad input, bad options and interrupted runs of the extractor's command lines: one clear
message naming the file/line/option, no traceback, nothing lost silently, no output left
half-written (developers' guide; docs/REFERENCE.md §9)."""

from __future__ import annotations

import gzip
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from reddit_extractor.download import download
from reddit_extractor.errors import UserError
from reddit_extractor.multiref import build

from .helpers import (
    MAKE,
    REDDIT_PY,
    ROOT,
    listdir,
    make,
    run,
    write_dumps,
    write_keys,
    write_ndjson,
)

MONTH = "2011-02"
SUB = {
    "id": "s1",
    "score": 1,
    "num_comments": 5,
    "domain": "d",
    "permalink": "/r/pics/comments/s1/x/",
    "title": "a title",
}
COMMENT = {
    "id": "c1",
    "author": "a",
    "parent_id": "t3_s1",
    "link_id": "t3_s1",
    "score": 2,
    "body": "hello there friend",
}
REPLY = dict(COMMENT, id="c2", parent_id="t1_c1", body="fine thanks a lot")


def extracted(tmp_path):
    inp = write_dumps(tmp_path, MONTH, [SUB], [COMMENT, REPLY])
    out = tmp_path / "out"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    return out


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["2011-13"], "(month 01 to 12), got '2011-13'"),
        (["2011-00"], "(month 01 to 12), got '2011-00'"),
        ([MONTH, "--min_depth", "0"], "--min_depth: must be at least 1, got 0"),
        ([MONTH, "--min_depth", "-1"], "--min_depth: must be at least 1, got -1"),
        ([MONTH, "--max_len", "-1"], "--max_len: must be at least 1, got -1"),
        ([MONTH, "--workers", "-3"], "--workers: must be 0 or more, got -3"),
        ([MONTH, "--use_title", "7"], "--use_title: expected 0 or 1, got 7"),
        ([MONTH, "--leaves_only", "2"], "--leaves_only: expected 0 or 1, got 2"),
        ([MONTH, "--max_len", "abc"], "--max_len: expected a whole number, got 'abc'"),
    ],
)
def test_out_of_range_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        run(*argv, "--task", "conv")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_min_depth_1_and_negative_min_score_still_work(tmp_path):
    # --min_depth 0 used to crash (IndexError); 1 is the smallest meaningful value, and
    # Reddit scores can be negative, so a negative --min_score stays allowed.
    out = extracted(tmp_path)
    assert (
        run(
            MONTH,
            "--task",
            "conv",
            "--reddit_output",
            out,
            "--use_title",
            "0",
            "--min_depth",
            "1",
            "--min_score",
            "-5",
        )
        == 0
    )
    lines = (out / "conv" / f"{MONTH}.tsv").read_text().splitlines()
    assert lines == [
        "t3_s1,t1_c1,t1_c2\thello there friend\tfine thanks a lot",
        "t3_s1,t3_s1,t1_c1\t\thello there friend",
    ]


# --- paths ---------------------------------------------------------------------------


def test_input_and_output_folders_that_are_files(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert (
        run(MONTH, "--task", "extract", "--reddit_input", afile, "--reddit_output", tmp_path / "o")
        == 2
    )
    err = capsys.readouterr().err
    assert f"input folder '{afile}' is not a folder" in err
    assert (
        run(
            MONTH,
            "--task",
            "extract",
            "--reddit_input",
            tmp_path / "none",
            "--reddit_output",
            tmp_path / "o",
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert (
        run(MONTH, "--task", "extract", "--reddit_input", tmp_path, "--reddit_output", afile) == 2
    )
    err = capsys.readouterr().err
    assert f"--reddit_output '{afile}' is a file" in err and "Errno" not in err


@pytest.mark.parametrize("name", [f"{MONTH}.tsv", f"{MONTH}.log", f"{MONTH}.stat.tsv"])
def test_conv_output_that_is_a_folder_is_refused_before_any_output(tmp_path, capsys, name):
    out = extracted(tmp_path)
    (out / "conv" / name).mkdir(parents=True)
    assert run(MONTH, "--task", "conv", "--reddit_output", out) == 2
    err = capsys.readouterr().err
    assert f"cannot write {out / 'conv' / name}: it is a folder" in err and ".tmp" not in err
    assert listdir(out / "conv") == [name]  # no other output of the month was put in place


# --- dumps ---------------------------------------------------------------------------


def test_json_that_is_not_an_object_is_named_as_such(tmp_path, capsys):
    inp = write_dumps(tmp_path, MONTH, [SUB, "[1, 2]", '"text"', "null", "42", "true"], [COMMENT])
    assert (
        run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", tmp_path / "o")
        == 0
    )
    err = capsys.readouterr().err
    for n, kind in [
        (2, "an array"),
        (3, "a string"),
        (4, "null"),
        (5, "a number"),
        (6, "true/false"),
    ]:
        assert f"RS_{MONTH}:{n}: not a JSON object but {kind} (skipped)" in err
    assert "Error" not in err  # no Python exception names in the messages


@pytest.mark.parametrize("ext", [".zst", ".gz", ""])
def test_empty_dump_file_is_reported(tmp_path, capsys, ext):
    inp = tmp_path / "in"
    inp.mkdir()
    write_ndjson(inp / f"RS_{MONTH}", [SUB])
    (inp / f"RC_{MONTH}{ext}").write_bytes(b"")
    out = tmp_path / "o"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    assert f"RC_{MONTH}{ext}: file is empty (0 bytes)" in capsys.readouterr().err
    assert "rc_truncated\t1" in (out / "extract" / MONTH / "skips.tsv").read_text()
    assert (
        run(
            MONTH,
            "--task",
            "extract",
            "--reddit_input",
            inp,
            "--reddit_output",
            tmp_path / "s",
            "--strict",
        )
        == 1
    )


# --- lists and key files ---------------------------------------------------------------


def test_invalid_utf8_in_lists_and_keys_names_the_line(tmp_path, capsys):
    out = extracted(tmp_path)
    words = tmp_path / "words.txt"
    words.write_bytes(b"# comment\r\nfine\r\nd\xe9j\xe0\r\n")
    assert run(MONTH, "--task", "conv", "--reddit_output", out, "--bl_words", words) == 2
    assert (
        "is not UTF-8 text: invalid continuation byte at line 3, column 2 (byte 0xe9)"
        in capsys.readouterr().err
    )
    keys = tmp_path / "keys.gz"
    with gzip.open(keys, "wb") as fh:
        fh.write(b"t3_s1\tt1_c2\tkeep\n\xff\n")
    assert run(MONTH, "--task", "conv", "--reddit_output", out, "--keep_keys", keys) == 2
    assert (
        f"key file '{keys}' is not UTF-8 text: invalid start byte at line 2, column 1"
        in capsys.readouterr().err
    )


def test_keep_keys_without_keys_is_a_warning(tmp_path, capsys):
    out = extracted(tmp_path)
    keys = tmp_path / "keys.gz"
    write_keys(keys, ["t3_s1\tt1_c2\tdep"])  # extract keys only: conv has nothing to keep
    assert run(MONTH, "--task", "conv", "--reddit_output", out, "--keep_keys", keys) == 0
    assert "holds no keep keys: every target will be left out" in capsys.readouterr().err


# --- Ctrl-C ----------------------------------------------------------------------------

HARNESS = textwrap.dedent("""
    import importlib.util, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from reddit_extractor import conv

    mode = sys.argv.pop(1)
    conv.MIN_PARALLEL_BYTES = 0
    conv.MIN_PARALLEL_TEXTS = 1
    if mode == "fork":
        launch = ProcessPoolExecutor._launch_processes
        def slow_launch(self):
            launch(self)
            print("READY", file=sys.stderr, flush=True)
            time.sleep(1.5)  # between the fork and the pool's manager thread
        ProcessPoolExecutor._launch_processes = slow_launch
    else:
        work = conv.weighted_turns
        def slow_work(texts, o):
            print("READY", file=sys.stderr, flush=True)
            time.sleep(1.5)
            return work(texts, o)
        conv.weighted_turns = slow_work
    spec = importlib.util.spec_from_file_location("cli", sys.argv.pop(1))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    sys.exit(cli.main(sys.argv[1:]))
""")


@pytest.mark.parametrize("mode", ["fork", "work"])
def test_ctrl_c_during_parallel_conv(tmp_path, mode):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the
    workers start or work: one line, exit 130, no worker traceback, no hang, no output."""
    out = extracted(tmp_path)
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [
            sys.executable,
            str(harness),
            mode,
            str(REDDIT_PY),
            MONTH,
            "--task",
            "conv",
            "--reddit_output",
            str(out),
            "--use_title",
            "0",
            "--workers",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    err = ""
    deadline = time.monotonic() + 30
    while "READY" not in err and time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        err += line
    assert "READY" in err, err
    os.killpg(p.pid, signal.SIGINT)
    try:
        err += p.communicate(timeout=20)[1]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("conv hung after Ctrl-C")
    assert p.returncode == 130, err
    assert "reddit.py: interrupted" in err and "Traceback" not in err
    assert not (out / "conv").exists() or listdir(out / "conv") == []


# --- Makefile ----------------------------------------------------------------------------


@pytest.mark.skipif(MAKE is None, reason="GNU make not installed")
def test_makefile_shows_why_conv_failed(tmp_path):
    write_dumps(tmp_path, MONTH, [SUB], [COMMENT, REPLY])
    r = make(tmp_path, f"TRAIN_MONTHS={MONTH}", f"WORDS_BLOCKLIST={tmp_path / 'missing.txt'}")
    assert r.returncode != 0
    assert "cannot read word blocklist" in r.stderr and "missing.txt" in r.stderr


@pytest.mark.skipif(MAKE is None, reason="GNU make not installed")
def test_makefile_empty_month_list_is_an_error(tmp_path):
    r = make(tmp_path, "TRAIN_MONTHS=")
    assert r.returncode != 0 and "no training months: TRAIN_MONTHS is empty" in r.stderr
    assert not (tmp_path / "data").exists()  # no train.tsv.tmp left behind
    r = make(tmp_path, f"MONTHS_DIR={tmp_path / 'nowhere'}")
    assert r.returncode != 0 and "nowhere/train.small.txt missing or empty?" in r.stderr
    r = make(tmp_path, "SIZE=full", "TRAIN_MONTHS=", "TEST_MONTHS=", "test")
    assert r.returncode != 0 and "no test months" in r.stderr


# --- create-multiref -------------------------------------------------------------------

CREATE_MULTIREF = ROOT / "reddit_extractor" / "src" / "create-multiref.py"


def multiref_inputs(tmp_path):
    data = tmp_path / "test.tsv.gz"
    with gzip.open(data, "wt", encoding="utf-8") as fh:
        fh.write("t3_a,t1_p,t1_x\thi you\tyes sir\nt3_a,t1_p,t1_y\thi you\tno\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("multiref\t0.9,t3_a,t1_p,t1_x\t0.5,t3_a,t1_p,t1_y\n")
    return data, ids


def create_multiref(*args):
    return subprocess.run(
        [sys.executable, str(CREATE_MULTIREF), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_multiref_bad_inputs_and_outputs(tmp_path):
    data, ids = multiref_inputs(tmp_path)
    bad_ids = tmp_path / "bad_ids.txt"
    bad_ids.write_bytes(b"multiref\t0.9,t3_a,t1_p,t1_x\nmultiref\t0.5,t3_\xff\n")
    r = create_multiref("--data", data, "--testids", bad_ids, "--out", tmp_path / "r.txt")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "are not UTF-8: invalid start byte at line 2, column 17 (byte 0xff)" in r.stderr
    assert not (tmp_path / "r.txt").exists()
    bad_data = tmp_path / "bad.tsv"
    bad_data.write_bytes(b"t3_a,t1_p,t1_x\thi\tok\nt3_a,t1_p,t1_y\thi\tn\xe9\n")
    r = create_multiref("--data", bad_data, "--testids", ids, "--out", tmp_path / "r.txt")
    assert r.returncode == 2 and "is not UTF-8: invalid continuation byte at line 2" in r.stderr
    for out in (tmp_path, tmp_path / "f" / "r.txt"):
        (tmp_path / "f").write_text("")
        r = create_multiref("--data", data, "--testids", ids, "--out", out)
        assert (
            r.returncode == 2 and "Traceback" not in r.stderr and f"cannot write {out}" in r.stderr
        )
    before = ids.read_text()
    r = create_multiref("--data", data, "--testids", ids, "--out", ids)
    assert r.returncode == 2 and "is also the --testids input" in r.stderr
    assert ids.read_text() == before


def test_create_multiref_truncated_data_says_how_far_it_got(tmp_path):
    data, ids = multiref_inputs(tmp_path)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(UserError, match=r"cannot read test data .*cut.gz' \(\d+ lines read\)"):
        build(str(cut), str(ids), str(tmp_path / "r.txt"))


# --- download --------------------------------------------------------------------------

DOWNLOAD = ROOT / "reddit_extractor" / "src" / "download.py"


_spec = importlib.util.spec_from_file_location("download_cli", DOWNLOAD)
download_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(download_cli)


@pytest.mark.parametrize(
    "url",
    [
        "notaurl",
        "http://[::1/x",
        "http://localhost:abc/x",
        "http://a b/x",
        "gopher://example.org/x",
        "file:///tmp/x.zst",
        "http://",
        "https:///x.zst",
    ],
)
def test_download_bad_url_is_usage_error(tmp_path, url):
    r = subprocess.run(
        [sys.executable, str(DOWNLOAD), url, str(tmp_path / "RS_2011-01.zst")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # exit status 2, as argparse gives for a usage error; nothing was tried or written
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"download.py: error: not a valid URL '{url}'" in r.stderr
    assert listdir(tmp_path) == []


def test_download_cli_usage_errors_exit_2(tmp_path, capsys):
    """Every mistake in the command line exits with 2: argparse's own and the
    destinations that cannot work; a download that fails exits with 1."""
    url = "http://127.0.0.1:9/x.zst"  # never contacted: the usage checks come first
    folder = tmp_path / "dumps"
    folder.mkdir()
    (tmp_path / "afile").write_text("")
    (folder / "y.zst.part").mkdir()
    for argv, message in [
        ([], "the following arguments are required: url, dest"),
        ([url], "the following arguments are required: dest"),
        ([url, str(folder / "z.zst"), "--timeout", "0"], "--timeout must be a positive"),
        ([url, str(folder / "z.zst"), "--timeout", "x"], "invalid float value: 'x'"),
        ([url, str(folder / "z.zst"), "--bogus"], "unrecognized arguments: --bogus"),
    ]:
        with pytest.raises(SystemExit) as exc:
            download_cli.main(argv)
        assert exc.value.code == 2, argv
        assert message in capsys.readouterr().err
    for dest, message in [
        (folder, "is a folder; give the dump's file name"),
        (folder / "y.zst", "y.zst.part': it is a folder"),
        (tmp_path / "afile" / "x.zst", "a file is in the way"),
    ]:
        assert download_cli.main([url, str(dest)]) == 2, dest
        err = capsys.readouterr().err
        assert err.startswith("download.py: error: ") and message in err, err
    # a valid command line whose download fails (nothing listens on port 9): 1, not 2
    assert download_cli.main([url, str(folder / "z.zst"), "--timeout", "5"]) == 1
    assert "cannot download" in capsys.readouterr().err
    assert listdir(folder) == ["y.zst.part"]


def test_download_bad_destination_and_timeout(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    # an existing folder used to count as a finished download (exit 0)
    with pytest.raises(UserError, match="is a folder"):
        download("http://127.0.0.1:9/x.zst", str(folder), quiet=True)
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="a file is in the way"):
        download("http://127.0.0.1:9/x.zst", str(tmp_path / "afile" / "x.zst"), quiet=True)
    (folder / "y.zst.part").mkdir()
    with pytest.raises(UserError, match=r"y.zst.part': it is a folder"):
        download("http://127.0.0.1:9/x.zst", str(folder / "y.zst"), quiet=True)
    r = subprocess.run(
        [
            sys.executable,
            str(DOWNLOAD),
            "http://127.0.0.1:9/x",
            str(folder / "z.zst"),
            "--timeout",
            "-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--timeout must be a positive number" in r.stderr
    assert "Traceback" not in r.stderr
