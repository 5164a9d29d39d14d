"""Input formats, bad records and truncated streams."""

from __future__ import annotations

import gzip

import pytest
import zstandard

from reddit_extractor.dumps import DumpReader

from . import synth
from .helpers import PUBLISHED, counts, extract_and_conv, run, write_lists

MONTH = "2011-02"
EXTS = [".zst", ".xz", ".bz2", ".gz", ""]


@pytest.fixture(scope="module")
def random_records():
    return synth.random_month(n_submissions=80, n_comments=1500, seed=7)


def test_five_compressions_give_identical_output(tmp_path, random_records):
    subs, comments = random_records
    words, bl_subs = write_lists(tmp_path)
    conv_args = [*PUBLISHED, "--bl_words", words, "--bl_subreddits", bl_subs]
    results = {}
    for ext in EXTS:
        inp = tmp_path / f"in{ext or '.plain'}"
        inp.mkdir()
        synth.write_month(inp, MONTH, subs, comments, ext)
        out = tmp_path / f"out{ext or '.plain'}"
        text = extract_and_conv(inp, out, MONTH, conv_args=conv_args)
        stat = (out / "extract" / MONTH / "stat.tsv").read_text()
        results[ext] = (text, stat, counts(out / "conv" / f"{MONTH}.skips.tsv"))
    first = results[".zst"]
    assert first[0].count("\n") > 20
    for ext in EXTS[1:]:
        assert results[ext] == first, ext


def test_multi_frame_and_multi_member_streams(tmp_path):
    lines = [b'{"a": %d}' % i for i in range(100)]
    data1 = b"\n".join(lines[:50]) + b"\n"
    data2 = b"\n".join(lines[50:]) + b"\n"
    cctx = zstandard.ZstdCompressor()
    (tmp_path / "x.zst").write_bytes(cctx.compress(data1) + cctx.compress(data2))
    (tmp_path / "x.gz").write_bytes(gzip.compress(data1) + gzip.compress(data2))
    for name in ("x.zst", "x.gz"):
        reader = DumpReader(str(tmp_path / name))
        assert list(reader) == lines
        assert not reader.problems


def test_universal_newlines_like_textiowrapper(tmp_path):
    raw = b"a\r\nb\rc\n\nd\r\re"
    (tmp_path / "x").write_bytes(raw)
    import io

    expected = [line.rstrip("\n") for line in io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")]
    assert [x.decode() for x in DumpReader(str(tmp_path / "x"))] == expected


@pytest.mark.parametrize("ext", [".zst", ".gz", ".bz2", ".xz"])
def test_truncated_stream_keeps_records_before_it(tmp_path, capsys, ext):
    subs, comments = synth.random_month(
        n_submissions=30, n_comments=3000, seed=3, bad_records=False
    )
    inp = tmp_path / "in"
    inp.mkdir()
    synth.write_dump(inp, "RS", MONTH, subs, ext)
    path = synth.write_dump(inp, "RC", MONTH, comments, ext)
    full = open(path, "rb").read()
    cut = len(full) * 2 // 3
    with open(path, "wb") as fh:
        fh.write(full[:cut])
    out = tmp_path / "out"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    err = capsys.readouterr().err
    assert f"ends at byte {cut}" in err or "corrupt compressed data" in err
    stat = (out / "extract" / MONTH / "stat.tsv").read_text().split("\t")
    read = int(stat[2])
    assert 0 < read < len(comments)
    log = (out / "extract" / MONTH / "extract.log").read_text()
    assert "truncated" in log and f"kept the {read} " in log
    assert counts(out / "extract" / MONTH / "skips.tsv")["rc_truncated"] >= 1
    # the month's finished work is usable
    assert run(MONTH, "--task", "conv", "--reddit_output", out, "--use_title", "0") == 0


def test_bad_records_are_counted_and_named(tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    subs = [
        {
            "id": "s1",
            "num_comments": 5,
            "score": 1,
            "domain": "d",
            "permalink": "/r/a/comments/s1/",
            "title": "t",
        },
        "{broken",
        {"id": "s2", "num_comments": None, "title": "x"},
        {
            "id": "s3",
            "num_comments": 4,
            "score": 1,
            "domain": "d",
            "permalink": "/r/a/",
            "title": 7,
        },
        [1, 2],
    ]
    comments = [
        {
            "id": "c1",
            "author": "a",
            "parent_id": "t3_s1",
            "link_id": "t3_s1",
            "score": 1,
            "body": "one two",
        },
        "not json at all",
        {
            "id": "c2",
            "parent_id": "t3_s1",
            "link_id": "t3_s1",
            "score": 1,
            "body": "no author here",
        },
        {
            "id": "c3",
            "author": "a",
            "parent_id": "t3_s1",
            "link_id": "t3_s1",
            "score": 1,
            "body": None,
        },
        {
            "id": "c4",
            "author": "a",
            "parent_id": "t1_c1",
            "link_id": "t3_s1",
            "score": None,
            "body": "null score",
        },
        {
            "id": "c5",
            "author": "a",
            "parent_id": "t1_c1",
            "link_id": "t3_s1",
            "score": 2,
            "body": ["a", "b"],
        },
    ]
    synth.write_month(inp, MONTH, subs, comments, ".gz")
    out = tmp_path / "out"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    err = capsys.readouterr().err
    assert "RC_2011-02.gz:2: invalid JSON" in err
    assert "RC_2011-02.gz:3: missing field 'author'" in err
    assert "RS_2011-02.gz:3: invalid field" in err
    c = counts(out / "extract" / MONTH / "skips.tsv")
    assert c["rs_invalid_json"] == 1 and c["rs_bad_record"] == 3
    assert c["rc_invalid_json"] == 1 and c["rc_bad_record"] == 3
    assert (out / "extract" / MONTH / "stat.tsv").read_text() == f"{MONTH}\t2\t6\t1\t5\n"
    assert (
        run(MONTH, "--task", "conv", "--reddit_output", out, "--use_title", "0", "--min_score", "0")
        == 0
    )
    text = (out / "conv" / f"{MONTH}.tsv").read_text()
    assert text == "t3_s1,t1_c1,t1_c4\tone two\tnull score\n"


def test_strict_stops_at_first_bad_record(tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    synth.write_month(inp, MONTH, *synth.random_month(10, 50, seed=1), "")
    out = tmp_path / "out"
    assert (
        run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out, "--strict")
        == 1
    )
    assert "RS_2011-02:4: invalid JSON" in capsys.readouterr().err
    assert not (out / "extract" / MONTH).exists()


def test_missing_dump_is_a_clear_error(tmp_path, capsys):
    assert (
        run(
            MONTH,
            "--task",
            "extract",
            "--reddit_input",
            tmp_path,
            "--reddit_output",
            tmp_path / "o",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no RS dump for 2011-02" in err and "RS_2011-02.zst" in err and "Traceback" not in err
    assert run(MONTH, "--task", "conv", "--reddit_output", tmp_path / "o") == 2
    assert "run --task extract first" in capsys.readouterr().err


def test_bad_option_values(capsys):
    with pytest.raises(SystemExit):
        run("2011-1", "--task", "conv")
    assert "YYYY-MM" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("2011-01", "--clean", "maybe")
    assert "expected true or false" in capsys.readouterr().err.lower()


def test_parallel_workers_give_the_serial_output(tmp_path, random_records, monkeypatch):
    from reddit_extractor import conv

    monkeypatch.setattr(conv, "MIN_PARALLEL_TEXTS", 1)
    monkeypatch.setattr(conv, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(conv, "BLOCK_TARGETS", 50)  # several blocks per split
    subs, comments = random_records
    inp = tmp_path / "in"
    inp.mkdir()
    synth.write_month(inp, MONTH, subs, comments, ".gz")
    words, bl_subs = write_lists(tmp_path)
    args = [*PUBLISHED, "--bl_words", words, "--bl_subreddits", bl_subs]
    out = tmp_path / "out"
    serial = extract_and_conv(
        inp,
        out,
        MONTH,
        conv_args=[*args, "--parallel", "False"],
        extract_args=["--split_size", "20"],
    )
    assert (out / "extract" / MONTH / "rs_sub2.tsv.gz").exists()  # 3 splits
    assert (
        run(MONTH, "--task", "conv", "--reddit_output", out, *args, "--parallel", "--workers", "2")
        == 0
    )
    assert (out / "conv" / f"{MONTH}.tsv").read_text() == serial
    assert serial.count("\n") > 20


def test_script_runs_from_any_directory(tmp_path):
    import subprocess
    import sys

    from .helpers import REDDIT_PY

    inp = tmp_path / "in"
    inp.mkdir()
    synth.write_month(inp, MONTH, *synth.random_month(10, 60, seed=2, bad_records=False), ".xz")
    r = subprocess.run(
        [sys.executable, str(REDDIT_PY), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "--leaves_only" in r.stdout and "published settings" in r.stdout
    for task in ("extract", "conv"):
        r = subprocess.run(
            [
                sys.executable,
                str(REDDIT_PY),
                MONTH,
                "--task",
                task,
                "--reddit_input",
                "in",
                "--reddit_output",
                "out",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "conv" / f"{MONTH}.tsv").stat().st_size > 0


def test_zstd_with_pushshift_2gib_window(tmp_path):
    import io

    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True)
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(buf, closefd=False) as w:
        for i in range(100):
            w.write(b'{"a": %d}\n' % i)
    path = tmp_path / "RC_2011-01.zst"
    path.write_bytes(buf.getvalue())
    with pytest.raises(zstandard.ZstdError):  # the library default refuses such frames
        zstandard.ZstdDecompressor().decompressobj().decompress(buf.getvalue())
    reader = DumpReader(str(path))
    assert len(list(reader)) == 100 and not reader.problems


def test_dead_worker_is_an_error_not_a_hang(tmp_path, monkeypatch, capsys):
    import os

    from reddit_extractor import conv

    inp = tmp_path / "in"
    inp.mkdir()
    synth.write_month(inp, MONTH, *synth.random_month(20, 200, seed=4, bad_records=False), ".gz")
    out = tmp_path / "out"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    parent = os.getpid()
    real = conv.weighted_turns

    def dying(texts, o):
        if os.getpid() != parent:
            os._exit(1)  # as if killed by the kernel's out-of-memory killer
        return real(texts, o)

    monkeypatch.setattr(conv, "weighted_turns", dying)
    monkeypatch.setattr(conv, "MIN_PARALLEL_TEXTS", 1)
    monkeypatch.setattr(conv, "MIN_PARALLEL_BYTES", 0)
    assert (
        run(MONTH, "--task", "conv", "--reddit_output", out, "--use_title", "0", "--workers", "2")
        == 2
    )
    assert "worker process died" in capsys.readouterr().err
    assert not (out / "conv" / f"{MONTH}.tsv").exists()


def test_damaged_extract_file_is_a_clear_error(tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    synth.write_month(inp, MONTH, *synth.random_month(20, 300, seed=4, bad_records=False), ".gz")
    out = tmp_path / "out"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", out) == 0
    rc = out / "extract" / MONTH / "rc_sub0.tsv.gz"
    rc.write_bytes(rc.read_bytes()[:-20])
    assert run(MONTH, "--task", "conv", "--reddit_output", out) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "rc_sub0.tsv.gz" in err and "Traceback" not in err
    assert not (out / "conv" / f"{MONTH}.tsv").exists()


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        ' {"a": 1}',
        '{"a": 1} ',
        '{"a": 1}\t',
        '{"a": 1} x',
        '{"a": 1}{"b": 2}',
        '\ufeff{"a": 1}',
        '{"a": NaN, "a": 2}',
        '{"a": [1, {"b": null}]}',
        '{"a": 1',
        "{",
        "",
        "[1, 2]",
        '"str"',
        '{"a": "\\ud800"}',
        '{"a": "tab\there"}',
    ],
)
def test_parse_json_is_json_loads(text):
    import json

    from reddit_extractor.extract import parse_json

    try:
        expected = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            parse_json(text)
        assert str(got.value) == str(exc)
    else:
        got = parse_json(text)
        assert repr(got) == repr(expected)
