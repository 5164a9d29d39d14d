"""A rerun after a killed run removes what the killed run left (temporary and trash
folders or files of its own outputs) and writes what an uninterrupted run writes."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reddit_extractor.multiref import build

from .helpers import REDDIT_PY, ROOT, run, write_dumps
from .test_rules import COMMENTS, MONTH, SUBS

# reddit.py with os.replace wrapped: SIGKILLs itself just before the KILL_AT-th rename
# that moves the month's extract folder (into the trash, or the finished one into place).
KILLER = textwrap.dedent(
    """
    import os, runpy, signal, sys

    final, kill_at, reddit_py = os.path.abspath(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    real_replace, seen = os.replace, 0

    def replace(src, dst, *args, **kwargs):
        global seen
        if final in (os.path.abspath(src), os.path.abspath(dst)):
            seen += 1
            if seen == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    sys.argv = [reddit_py, *sys.argv[4:]]
    runpy.run_path(reddit_py, run_name="__main__")
    """
)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): gzip.decompress(p.read_bytes())
        if p.suffix == ".gz"
        else p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "kill_at, previous",
    [(1, False), (1, True), (2, True)],
    ids=["before-rename", "before-trashing-old", "between-renames"],
)
def test_extract_rerun_after_kill_cleans_its_leftovers(tmp_path, kill_at, previous):
    inp = write_dumps(tmp_path, MONTH, SUBS, COMMENTS)
    reference = tmp_path / "reference"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", reference) == 0
    want = _files(reference / "extract" / MONTH)
    out = tmp_path / "out"
    args = ["--task", "extract", "--reddit_input", str(inp), "--reddit_output", str(out)]
    if previous:  # an earlier complete extract that the killed run was replacing
        assert run(MONTH, *args) == 0
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    final = out / "extract" / MONTH
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, str(killer), str(final), str(kill_at), str(REDDIT_PY), MONTH, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = sorted(p.name for p in (out / "extract").iterdir() if p.name.startswith("."))
    assert left, "the kill left nothing to clean"
    assert run(MONTH, *args) == 0
    assert sorted(p.name for p in (out / "extract").iterdir()) == [MONTH]
    assert _files(final) == want


def test_multiref_rerun_removes_the_temp_file_of_a_killed_run(tmp_path):
    data = tmp_path / "test.tsv.gz"
    with gzip.open(data, "wt", encoding="utf-8") as fh:
        fh.write("t3_a,t1_p,t1_x\thi\tyes\n")
    ids = tmp_path / "ids.txt"
    ids.write_text("multiref\t1.0,t3_a,t1_p,t1_x\n")
    out = tmp_path / "refs.txt"
    stale = [tmp_path / ".refs.txt.tmp-0badf00d", tmp_path / ".refs.txt.tmp-1badf00d"]
    for path in stale:
        path.write_text("half written by a killed run\n")
    others = [tmp_path / ".other.txt.tmp-0badf00d", tmp_path / "refs.txt.tmp-user"]
    for path in others:
        path.write_text("not ours\n")
    assert build(str(data), str(ids), str(out)) == (1, 0)
    assert out.read_text() == "hi\t1.0|yes\n"
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in others)


def test_conv_workers_end_when_the_main_process_is_killed(tmp_path):
    from .test_bad_input import HARNESS, extracted
    from .test_bad_input import MONTH as month

    out = extracted(tmp_path)
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)  # "work": a worker says READY, then works slowly
    p = subprocess.Popen(
        [sys.executable, str(harness), "work", str(REDDIT_PY), month, "--task", "conv"]
        + ["--reddit_output", str(out), "--use_title", "0", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        assert "READY" in p.stderr.readline()
        workers = [int(w) for w in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        assert workers
        os.kill(p.pid, signal.SIGKILL)  # the main process only, as an OOM kill would
        p.wait()
        deadline = time.time() + 20
        while any(_running(w) for w in workers) and time.time() < deadline:
            time.sleep(0.05)
        assert not [w for w in workers if _running(w)], "orphaned conv workers"
    finally:
        for w in workers:
            if _running(w):
                os.kill(w, signal.SIGKILL)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.stderr.close()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
