"""conv beyond the rules: how a month's run reads its extract files, shares normalisation
out to worker processes, reports and cleans up; and the per-target paths the hand-made
month never takes (tokenizer time limit, several exceptions or short chains in one block)."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import signal
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from reddit_extractor import conv

from .helpers import PUBLISHED, REDDIT_PY, ROOT, counts, extract_and_conv, run, write_dumps
from .test_rules import MONTH, com, sub

INFO = "askreddit\tself.askreddit"


def opts(**kw) -> conv.ConvOptions:
    return conv.ConvOptions(month=MONTH, output_dir=".", **kw)


# -- TurnCache and the worker entry points ------------------------------------------------


class ListPool:
    """Stands in for the process pool: runs the chunks here and remembers their sizes."""

    def __init__(self) -> None:
        self.chunks: list[int] = []

    def map(self, fn, chunks):
        self.chunks += [len(c) for c in chunks]
        return [fn(c) for c in chunks]


def letters(i: int) -> str:
    """A distinct word of letters for each i (digits would be split off by the tokenizer)."""
    word = ""
    while True:
        i, r = divmod(i, 26)
        word += "abcdefghijklmnopqrstuvwxyz"[r]
        if not i:
            return word


def test_big_fills_go_to_the_pool_in_chunks(monkeypatch):
    """With a pool, a fill of at least MIN_PARALLEL_TEXTS new texts is cut into chunks of
    max(200, n // (8 * workers)) texts; the cache maps each text to its own turn."""
    o = opts()
    monkeypatch.setattr(conv, "_OPTS", o)  # what the forked workers would have inherited
    monkeypatch.setattr(conv, "MIN_PARALLEL_TEXTS", 4000)
    texts = {letters(i) + "!" for i in range(4000)}
    pool = ListPool()
    cache = conv.TurnCache(o, pool, workers=2)
    cache.fill(texts)
    assert pool.chunks == [250] * 16  # 4000 // 16
    assert cache.map == {t: t[:-1] + " !" for t in texts}

    pool = ListPool()
    cache = conv.TurnCache(o, pool, workers=4)
    cache.fill(texts)  # 4000 // 32 = 125: chunks are at least 200 texts
    assert pool.chunks == [200] * 20

    pool = ListPool()
    cache = conv.TurnCache(o, pool, workers=2)
    cache.fill(set(list(texts)[:3999]))  # one short of the threshold: done here
    assert pool.chunks == []
    assert len(cache.map) == 3999


def test_fill_without_a_pool_stays_in_process(monkeypatch):
    monkeypatch.setattr(conv, "MIN_PARALLEL_TEXTS", 1)
    cache = conv.TurnCache(opts())
    cache.fill({"a,b", "c d"})
    assert cache.map == {"a,b": "a , b", "c d": "c d"}


def test_worker_entry_uses_the_inherited_options(monkeypatch):
    o = opts(leaves_only=1, clean=True)
    monkeypatch.setattr(conv, "_OPTS", o)
    assert conv._weighted_turns(["it's fine", "ok!"]) == ["1.0 it's fine", "1.0 ok !"]


def test_workers_ignore_ctrl_c():
    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conv._ignore_sigint()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)


def slow_norm(real):
    """full_norm, except that texts holding SLOW hit NLTK's time limit."""

    def norm(raw: str) -> str:
        if "SLOW" in raw:
            raise TimeoutError(raw)
        return real(raw)

    return norm


def test_tokenizer_time_limit(monkeypatch):
    """A turn whose tokenizer run times out makes its instance unusable: skipped as
    tokenizer_timeout, logged with the raw response; the other targets go on."""
    monkeypatch.setattr(conv, "full_norm", slow_norm(conv.full_norm))
    o = opts(use_title=0)
    assert conv.weighted_turns(["a b", "SLOW c", "d,e"], o) == ["a b", None, "d , e"]
    subs = {"t3_s": ("self.askreddit", "/r/AskReddit/comments/s/", "t")}
    comms = {
        "t1_a": ("t3_s", "t3_s", "1", "5", "first turn"),
        "t1_b": ("t1_a", "t3_s", "1", "5", "SLOW middle"),
        "t1_c": ("t1_b", "t3_s", "1", "5", "last one"),  # context timed out
        "t1_d": ("t1_a", "t3_s", "1", "5", "SLOW reply"),  # response timed out
        "t1_e": ("t1_a", "t3_s", "1", "5", "fine reply"),
    }
    job = conv.SplitJob(o, subs, comms)
    targets = [("t3_s", "t1_b", "t1_c"), ("t3_s", "t1_a", "t1_d"), ("t3_s", "t1_a", "t1_e")]
    lines, counts_, log, resp_len = job.process(targets, conv.TurnCache(o))
    assert counts_ == {"tokenizer_timeout": 2}
    assert log == [
        f"skip\ttokenizer_timeout\t{INFO}\tlast one\ttokenizer time limit",
        f"skip\ttokenizer_timeout\t{INFO}\tSLOW reply\ttokenizer time limit",
    ]
    assert lines == ["t3_s,t1_a,t1_e\tfirst turn\tfine reply"]
    assert resp_len == 2


def test_exceptions_and_short_chains_are_each_counted():
    """Two non-numeric n_char (with --max_len_type c) and two chains shorter than
    min_depth in one block; a short chain's log shows its raw turns joined by '|'."""
    o = opts(use_title=0, max_len_type="c", max_len=100, min_depth=3)
    comms = {
        "t1_a": ("t3_s", "t3_s", "1", "9", "one two"),
        "t1_b": ("t1_a", "t3_s", "1", "9", "three four"),
        "t1_c": ("t1_a", "t3_s", "1", "9", "five six"),
        "t1_x": ("t3_s", "t3_s", "1", "n1", "bad one"),
        "t1_y": ("t3_s", "t3_s", "1", "n2", "bad two"),
    }
    job = conv.SplitJob(o, {}, comms)
    targets = [("t3_s", c[0], cid) for cid, c in comms.items() if cid != "t1_a"]
    lines, counts_, log, _ = job.process(targets, conv.TurnCache(o))
    assert lines == []
    assert counts_ == {"min_depth": 2, "exception": 2}
    assert log == [
        "skip\tmin_depth\t\t\tthree four\tdepth 2 < 3: one two|three four",
        "skip\tmin_depth\t\t\tfive six\tdepth 2 < 3: one two|five six",
        "skip\texception\t\t\tbad one\tinvalid literal for int() with base 10: 'n1'",
        "skip\texception\t\t\tbad two\tinvalid literal for int() with base 10: 'n2'",
    ]


def test_no_fork_means_one_process(monkeypatch):
    """Workers get the options by inheritance, so without fork there are none."""
    monkeypatch.setattr(conv.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert conv._worker_count(opts(parallel=True, workers=4)) == 1


# -- a month's run ---------------------------------------------------------------------


def extracted(tmp_path, comments=None):
    """A one-submission month, extracted; returns (output folder, its rc_sub0 path)."""
    comments = comments or [com("a1", "t3_s1", "one two"), com("a2", "t1_a1", "three four")]
    inp = write_dumps(tmp_path, MONTH, [sub("s1")], comments)
    out = tmp_path / "out"
    extract_and_conv(inp, out, conv_args=["--use_title", "0"])
    return out, out / "extract" / MONTH / "rc_sub0.tsv.gz"


def write_rc(path, lines) -> None:
    # as extract writes them: UTF-8, lone surrogates (from JSON escapes) passed through
    with gzip.open(path, "wt", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write("".join(line + "\n" for line in lines))


def conv_run(out, *args) -> int:
    return run(MONTH, "--task", "conv", "--reddit_output", out, "--use_title", "0", *args)


RC_LINES = [
    "a1\tu\tt3_s1\tt3_s1\t1\t7\tPress X",
    "short\tline",  # a bad record between good ones
    "a2\tu\tt1_a1\tt3_s1\t1\t9\tsmile \ud83d here",
    "a\ud83d\tu\tt1_a1\tt3_s1\t1\t9\tsurrogate id",
    "a4\tu\tt1_a1\tt3_s1\t0\t9\tlow \ud83d score",
]


def test_extract_files_read_back_as_written(tmp_path):
    """conv reads what extract wrote: a bad record is counted and the next ones still read;
    text ending in X keeps it; lone surrogates survive, backslash-escaped in tsv and log."""
    out, rc = extracted(tmp_path)
    write_rc(rc, RC_LINES)
    assert conv_run(out, "--min_score", "1") == 0
    folder = out / "conv"
    assert (folder / f"{MONTH}.tsv").read_text().splitlines() == [
        "t3_s1,t1_a1,t1_a2\tPress X\tsmile here",
        "t3_s1,t1_a1,t1_a\\ud83d\tPress X\tsurrogate id",
    ]
    assert (folder / f"{MONTH}.log").read_text().splitlines() == [
        "bad\tbad_rc_line\trc_sub0.tsv.gz:2: 2 fields, expected 7",
        f"skip\tlow_score\t{INFO}\tlow \\ud83d score\tscore 0 < 1",
        f"skip\tmin_depth\t{INFO}\tPress X\tdepth 1 < 2: Press X",
    ]
    assert counts(folder / f"{MONTH}.skips.tsv") == {
        "bad_rc_line": 1,
        "low_score": 1,
        "min_depth": 1,
    }


def test_extract_files_are_utf8_whatever_the_locale(tmp_path):
    """In a C locale (ASCII) conv still reads the extract files as UTF-8."""
    out, rc = extracted(tmp_path)
    write_rc(rc, ["a1\tu\tt3_s1\tt3_s1\t1\t7\tcafé olé", "a2\tu\tt1_a1\tt3_s1\t1\t9\tnaïve one"])
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    cmd = [sys.executable, str(REDDIT_PY), MONTH, "--task", "conv", "--reddit_output", str(out)]
    res = subprocess.run(
        [*cmd, "--use_title", "0"], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    text = (out / "conv" / f"{MONTH}.tsv").read_text(encoding="utf-8")
    assert text == "t3_s1,t1_a1,t1_a2\tcaf ol\tna ve one\n"


def test_strict_stops_at_a_bad_extract_record(tmp_path, capsys):
    out, rc = extracted(tmp_path)
    write_rc(rc, RC_LINES[:2])
    assert conv_run(out, "--strict", "True") == 1
    err = capsys.readouterr().err
    assert "error (--strict): rc_sub0.tsv.gz:2: 2 fields, expected 7" in err


def test_unreadable_split_and_missing_extract(tmp_path, capsys):
    out, rc = extracted(tmp_path)
    rc.write_bytes(b"not gzip at all")
    assert conv_run(out) == 2
    err = capsys.readouterr().err
    assert f"cannot read {rc}: " in err and "; run --task extract again" in err
    for name in os.listdir(rc.parent):
        os.remove(rc.parent / name)  # the month's extract folder exists but is empty
    assert conv_run(out) == 2
    err = capsys.readouterr().err
    assert f"no extract output for {MONTH}: {rc.parent}/rs_sub0.tsv.gz is missing" in err


def test_summary_line_on_stderr(tmp_path, capsys):
    out, _ = extracted(tmp_path)
    capsys.readouterr()
    assert conv_run(out, *PUBLISHED[:2]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"[{MONTH}] conv: selected 1 instances from 2 comments in 1 split(s)\n")


def test_outputs_are_built_beside_their_final_place(tmp_path, monkeypatch):
    """The temporary outputs are in a work folder inside conv/ (one file system, so the
    renames are atomic), and nothing is left of the work folder afterwards."""
    out, _ = extracted(tmp_path)
    folder = out / "conv"
    real = conv.replace_set
    seen = []

    def spy(pairs):
        seen.extend(pairs)
        real(pairs)

    monkeypatch.setattr(conv, "replace_set", spy)
    monkeypatch.chdir(tmp_path)
    assert conv_run(out) == 0
    assert [dst for _, dst in seen] == [str(folder / (MONTH + e)) for e in conv.CONV_OUTPUTS]
    for src, dst in seen:
        assert os.path.dirname(os.path.dirname(src)) == str(folder)
        assert os.path.basename(src) == os.path.basename(dst)
    assert sorted(os.listdir(folder)) == sorted(MONTH + e for e in conv.CONV_OUTPUTS)


def test_work_folder_already_gone_is_no_error(tmp_path, monkeypatch):
    """Removing the work folder at the end is cleanup: if it is already gone the finished
    run still succeeds."""
    out, _ = extracted(tmp_path)

    def into(o, folder, work, outputs):
        os.rmdir(work)
        return 3, 4

    monkeypatch.setattr(conv, "_conv_into", into)
    assert conv.conv_month(conv.ConvOptions(month=MONTH, output_dir=str(out))) == (3, 4)


class SpyPool(ProcessPoolExecutor):
    made: list[SpyPool] = []

    def __init__(self, max_workers=None, mp_context=None, initializer=None):
        super().__init__(max_workers, mp_context=mp_context, initializer=initializer)
        self.args = (max_workers, mp_context)
        self.mapped = 0
        self.closed = False
        # what a worker does with Ctrl-C (the probe runs in one of them)
        self.sigint = self.submit(signal.getsignal, signal.SIGINT).result()
        SpyPool.made.append(self)

    def map(self, fn, chunks, **kw):
        self.mapped += 1
        self.chunks = [len(c) for c in chunks]
        return super().map(fn, chunks, **kw)

    def shutdown(self, *args, **kw):
        self.closed = True
        super().shutdown(*args, **kw)


@pytest.mark.parametrize(
    "parallel, extra_bytes, pool",
    [(True, 0, True), (True, 1, False), (False, 0, False)],
)
def test_worker_pool_only_for_big_parallel_months(
    tmp_path, monkeypatch, parallel, extra_bytes, pool
):
    """--parallel forks --workers processes (ignoring Ctrl-C) once the month's compressed
    comment splits reach MIN_PARALLEL_BYTES; they normalise the texts and are stopped at
    the end. A smaller month, or no --parallel, is done in one process."""
    out, rc = extracted(tmp_path)
    size = sum(
        os.path.getsize(rc.parent / n) for n in os.listdir(rc.parent) if n.startswith("rc_sub")
    )
    monkeypatch.setattr(conv, "MIN_PARALLEL_BYTES", size + extra_bytes)
    monkeypatch.setattr(conv, "MIN_PARALLEL_TEXTS", 0)
    monkeypatch.setattr(conv, "ProcessPoolExecutor", SpyPool)
    monkeypatch.setattr(SpyPool, "made", [])
    assert conv_run(out, "--parallel", str(parallel), "--workers", "2") == 0
    assert (out / "conv" / f"{MONTH}.tsv").read_text() == "t3_s1,t1_a1,t1_a2\tone two\tthree four\n"
    if not pool:
        assert SpyPool.made == []
        return
    [made] = SpyPool.made
    assert made.args == (2, multiprocessing.get_context("fork"))
    assert made.sigint is signal.SIG_IGN
    assert made.mapped == 1 and made.closed


def test_big_month_is_shared_out_by_worker_count(tmp_path, monkeypatch):
    """3200 texts to normalise and 2 workers: 16 chunks of 200 (8 per worker)."""
    comments = []
    for i in range(1600):
        comments.append(com(f"a{i}", "t3_s1", f"top {letters(i)} here"))
        comments.append(com(f"b{i}", f"t1_a{i}", f"reply {letters(i)} there"))
    out, _ = extracted(tmp_path, comments)
    monkeypatch.setattr(conv, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(conv, "ProcessPoolExecutor", SpyPool)
    monkeypatch.setattr(SpyPool, "made", [])
    assert conv_run(out, "--parallel", "True", "--workers", "2") == 0
    [made] = SpyPool.made
    assert made.chunks == [200] * 16
    assert len((out / "conv" / f"{MONTH}.tsv").read_text().splitlines()) == 1600
