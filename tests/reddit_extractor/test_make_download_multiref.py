"""Makefile end to end, the resumable downloader (loopback server only) and the multi-ref file."""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import subprocess
import threading

import pytest

from reddit_extractor.download import download
from reddit_extractor.errors import UserError
from reddit_extractor.multiref import build

from . import synth
from .helpers import MAKE, ROOT, make


@pytest.mark.slow
@pytest.mark.skipif(MAKE is None, reason="GNU make not installed")
def test_makefile_two_months_small_and_full(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i, (month, ext) in enumerate([("2011-01", ".zst"), ("2011-02", ".bz2")]):
        subs, comments = synth.random_month(40, 400, seed=i)
        synth.write_month(inp, month, subs, comments, ext)
    months = "TRAIN_MONTHS=2011-01 2011-02"
    r = make(tmp_path, "-j", "2", months)
    assert r.returncode == 0, r.stderr
    train = (tmp_path / "data" / "train.tsv").read_text(encoding="utf-8")
    expected = ""
    for month in ("2011-01", "2011-02"):
        with gzip.open(
            tmp_path / "out" / "train" / "conv" / f"{month}.tsv.gz", "rt", encoding="utf-8"
        ) as fh:
            expected += "".join("\t".join(line.split("\t")[1:]) for line in fh)
    assert train == expected and train.count("\n") > 20
    assert all(line.startswith(("1.0 ", "0.0 ")) for line in train.splitlines())
    # nothing left to do: a second make is a no-op
    r = make(tmp_path, "-j", "2", months)
    assert "Nothing to be done" in r.stdout
    # as if interrupted during the extract of 2011-02: only that month is redone
    shutil.rmtree(tmp_path / "out" / "train" / "extract" / "2011-02")
    os.remove(tmp_path / "out" / "train" / "conv" / "2011-02.tsv.gz")
    os.remove(tmp_path / "data" / "train.tsv")
    r = make(tmp_path, months)
    assert (
        r.returncode == 0
        and "2011-02 --task extract" in r.stdout
        and "2011-01 --task" not in r.stdout
    )
    assert (tmp_path / "data" / "train.tsv").read_text(encoding="utf-8") == train

    # SIZE=full: the test months go through conv without leaves-only, then create-multiref.
    full = [
        "SIZE=full",
        months,
        "TEST_MONTHS=2011-02",
        "TEST_KEYS=",
        f"MULTIREF_IDS={tmp_path / 'ids.txt'}",
    ]
    r = make(tmp_path, *full, "test")
    assert r.returncode == 0, r.stderr
    with gzip.open(tmp_path / "out" / "test.tsv.gz", "rt", encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    by_src: dict[str, list[list[str]]] = {}
    for row in rows:
        by_src.setdefault(row[1], []).append(row)
    multi = next(v for v in by_src.values() if len(v) >= 2)
    (tmp_path / "ids.txt").write_text(f"multiref\t0.9,{multi[0][0]}\t0.7,{multi[1][0]}\tmultiref\n")
    r = make(tmp_path, "-j", "2", *full)
    assert r.returncode == 0, r.stderr
    refs = (tmp_path / "data" / "test.refs.txt").read_text(encoding="utf-8")
    assert refs == f"{multi[0][1]}\t0.9|{multi[0][2]}\t0.7|{multi[1][2]}\n".replace(
        "“", '"'
    ).replace("”", '"')


@pytest.mark.skipif(MAKE is None, reason="GNU make not installed")
def test_makefile_missing_dump_is_reported(tmp_path):
    (tmp_path / "in").mkdir()
    r = make(tmp_path, "TRAIN_MONTHS=2011-03")
    assert r.returncode != 0
    assert "no RS dump for 2011-03" in r.stderr


def test_multiref_rules(tmp_path):
    data = tmp_path / "test.tsv.gz"
    with gzip.open(data, "wt", encoding="utf-8") as fh:
        fh.write("t3_a,t1_p,t1_x\thi “you”\tyes “sir”\n")
        fh.write("t3_a,t1_p,t1_y\thi “you”\tno\n")
        fh.write("t3_b,t1_q,t1_z\tother source\tmaybe\n")
        fh.write("malformed line\n")
    ids = tmp_path / "ids.txt"
    ids.write_text(
        "multiref\t1.0,t3_a,t1_p,t1_x\t0.5,t3_a,t1_p,t1_y\t0.3,t3_b,t1_q,t1_z\t0.2,t3_c,t1_r,t1_w\n"
        "something else\n"
        "multiref\t1.0,t3_c,t1_r,t1_w\n"
    )
    out = tmp_path / "refs.txt"
    assert build(str(data), str(ids), str(out)) == (1, 3)
    # quotes straightened; a different source and an unknown id are left out
    assert out.read_text() == 'hi "you"\t1.0|yes "sir"\t0.5|no\n'


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (enough for the downloader)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            body = data[start:]
        else:
            self.send_response(200)
            body = data
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_and_checks_size(server, tmp_path):
    root, base = server
    payload = os.urandom(300_000)
    (root / "RC_2011-01.zst").write_bytes(payload)
    dest = tmp_path / "dl" / "RC_2011-01.zst"
    dest.parent.mkdir()
    # an interrupted earlier download left the first 100 kB
    (tmp_path / "dl" / "RC_2011-01.zst.part").write_bytes(payload[:100_000])
    assert download(f"{base}/RC_2011-01.zst", str(dest), quiet=True) == len(payload)
    assert dest.read_bytes() == payload
    assert not (tmp_path / "dl" / "RC_2011-01.zst.part").exists()
    # complete part file: the server answers 416, the part is accepted after the size check
    dest2 = tmp_path / "dl" / "copy.zst"
    (tmp_path / "dl" / "copy.zst.part").write_bytes(payload)
    assert download(f"{base}/RC_2011-01.zst", str(dest2), quiet=True) == len(payload)
    assert dest2.read_bytes() == payload


def test_download_errors_are_clear(server, tmp_path):
    _, base = server
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{base}/missing.zst", str(tmp_path / "x.zst"), quiet=True)
    # nothing listens on this port: what an offline machine sees
    with pytest.raises(UserError, match="offline"):
        download(
            "http://127.0.0.1:9/RC_2011-01.zst", str(tmp_path / "y.zst"), timeout=5, quiet=True
        )
    assert not (tmp_path / "x.zst").exists() and not (tmp_path / "y.zst").exists()


def test_download_cli_http_error_exits_1(server, tmp_path, capsys):
    """A failed download is not a usage error: exit status 1 (argparse's 2 is for usage)."""
    _, base = server
    from .test_bad_input import download_cli

    assert download_cli.main([f"{base}/missing.zst", str(tmp_path / "x.zst")]) == 1
    assert "download.py: error: cannot download" in capsys.readouterr().err
    assert not (tmp_path / "x.zst").exists()


def test_download_cli_offline_message(tmp_path):
    r = subprocess.run(
        [
            "python3",
            str(ROOT / "reddit_extractor" / "src" / "download.py"),
            "http://127.0.0.1:9/RS_2011-01.zst",
            str(tmp_path / "RS_2011-01.zst"),
            "--timeout",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "cannot download" in r.stderr and "Traceback" not in r.stderr
