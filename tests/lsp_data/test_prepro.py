"""prepro.py end to end: parsing, tokenization, database, --inspect, bad input."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lsp_data import prepro_cli as prepro
from lsp_data.db import FIELDS, FeatureDB
from lsp_data.parsing import parse_training_line, parse_weighted_turn
from lsp_data.prepro import db_folder_for, run_prepro
from lsp_data.tokenizer import load_tokenizer

E = 50256


def ids(text: str) -> list[int]:
    return load_tokenizer().encode(text)


def inspect(folder: Path, capsys, *extra: str) -> list[dict]:
    assert prepro.main(["--inspect", str(folder), *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def run(tmp_path: Path, text: str, *args: str, name: str = "c.tsv") -> int:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return prepro.main(["--corpus", str(path), "--no_pbar", "--workers", "1", *args])


def test_weight_parsing_is_python_float():
    assert parse_weighted_turn("0.0 hello  there") == (0.0, "hello there")
    assert parse_weighted_turn("hello there") == (1.0, "hello there")
    assert parse_weighted_turn("2 dogs") == (2.0, "dogs")  # documented quirk
    assert parse_weighted_turn("1e-1 x") == (0.1, "x")
    assert parse_weighted_turn("1.0") == (1.0, "")
    assert parse_training_line("0.0 a EOS 1.0 b\t0.0 c") == ([0.0, 1.0], ["a", "b"])
    assert parse_training_line("  a\tb \n") == ([1.0, 1.0], ["a", "b"])


def test_tokenizer_matches_gpt2_ids():
    tok = load_tokenizer()
    assert len(tok) == 50257 and tok.convert_tokens_to_ids("<|endoftext|>") == E
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(" Hello world!") == [18435, 995, 0]
    assert tok.encode("I'm fine.") == [40, 1101, 3734, 13]


def test_output_folder_naming():
    assert str(db_folder_for("data/train.tsv", 128, False, False)) == "data/train.128len.db"
    assert (
        str(db_folder_for("data/train.tsv", 64, True, True)) == "data/train.64len.reverse.2turn.db"
    )


def test_round_trip_hand_worked(tmp_path, capsys):
    text = (
        "0.0 hello there EOS 1.0 how are you ?\t1.0 fine , thanks\n"
        "0.0 a EOS 0.5 b\t0.0 c\n"
        "1.0 only one turn\t0.0 ignored\n"
        "0.0 x EOS 0.0 y\t1.0 z\n"
    )
    assert run(tmp_path, text) == 0
    folder = tmp_path / "c.128len.db"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_example"] == 3 and meta["n_line"] == 4
    assert meta["n_line_without_feature"] == 1 and meta["n_line_skipped"] == 0
    assert meta["max_seq_len"] == 128 and meta["reverse"] is False and meta["two_turn"] is False
    feats = inspect(folder, capsys)
    assert [list(f) for f in feats] == [list(FIELDS)] * 3
    assert [f["conv_id"] for f in feats] == [0, 1, 2]

    h, q, r = ids("hello there"), ids("how are you ?"), ids("fine , thanks")
    f0 = feats[0]
    n = len(h) + 1 + len(q) + 1 + len(r)
    assert f0["input_ids"][:n] == h + [E] + q + [E] + r
    assert f0["lm_labels"][:n] == [-1] * len(h) + q + [E] + r + [E]
    assert f0["input_len"] == len(f0["input_ids"]) and f0["input_len"] % 8 == 0
    assert f0["position_ids"] == list(range(f0["input_len"]))
    assert f0["weights"][len(h)] == 1.0 and f0["weights"][0] == 0.0

    a, b = ids("a"), ids("b")
    assert feats[1]["input_ids"] == a + [E] + b + [0] * (8 - len(a) - 1 - len(b))
    assert feats[1]["lm_labels"][:3] == [-1, *b, E][:3]
    assert feats[1]["weights"][1:3] == [0.5, 0.5]

    # first two turns zero-weight: only the response is a target
    f2 = feats[2]
    x, y, z = ids("x"), ids("y"), ids("z")
    assert f2["lm_labels"][: len(x) + len(y) + len(z) + 2] == [-1] * (len(x) + 1 + len(y)) + z + [E]
    assert inspect(folder, capsys, "--limit", "1") == feats[:1]


def test_non_ascii_text_tokenizes(tmp_path, capsys):
    text = "0.0 café 😀 naïve EOS 1.0 “curly” quotes — ok\t1.0 日本語 ok ✓\n"
    assert run(tmp_path, text) == 0
    feat = inspect(tmp_path / "c.128len.db", capsys)[0]
    expected = ids("café 😀 naïve") + [E] + ids("“curly” quotes — ok") + [E] + ids("日本語 ok ✓")
    assert feat["input_ids"][: len(expected)] == expected


def test_literal_endoftext_is_plain_text(tmp_path, capsys):
    assert run(tmp_path, "1.0 a <|endoftext|> b\t1.0 c\n") == 0
    feat = inspect(tmp_path / "c.128len.db", capsys)[0]
    assert feat["input_ids"].count(E) == 1  # only the separator


def test_reverse_and_two_turn_folders(tmp_path, capsys):
    text = "1.0 one EOS 1.0 two\t1.0 three\n"
    assert run(tmp_path, text, "--reverse") == 0
    feat = inspect(tmp_path / "c.128len.reverse.db", capsys)[0]
    expected = ids("three") + [E] + ids("two") + [E] + ids("one")
    assert feat["input_ids"][: len(expected)] == expected
    assert run(tmp_path, text, "--two_turn", "--max_seq_len", "64") == 0
    feat = inspect(tmp_path / "c.64len.2turn.db", capsys)[0]
    expected = ids("one") + [E] + ids("two")
    assert feat["input_ids"][: len(expected) + 1] == expected + [0]


def test_long_conversation_split_at_max_len(tmp_path, capsys):
    turn = " ".join(["word"] * 10)  # 10 tokens
    line = " EOS ".join(f"1.0 {turn}" for _ in range(6)) + f"\t1.0 {turn}\n"
    assert run(tmp_path, line, "--max_seq_len", "32") == 0
    feats = inspect(tmp_path / "c.32len.db", capsys)
    # running length 11, 22, 33 > 32 -> emit turns 0-2, restart from turn 2; then 2-4, 4-6
    assert len(ids(turn)) == 10
    assert len(feats) == 3
    assert [f["input_len"] for f in feats] == [32, 32, 32]  # 3 turns of 10 + 2 eos, no pad
    assert [max(f["token_type_ids"]) for f in feats] == [2, 2, 2]
    assert [f["conv_id"] for f in feats] == [0, 1, 2]


def test_malformed_lines_counted_and_reported(tmp_path, capsys):
    raw = (
        (
            b"1.0 a\t1.0 b\n"  # ok
            b"\n"  # empty
            b"no tab here\n"
            b"1.0 a\t1.0 b\t1.0 c\n"  # two tabs
            b"1.0 a EOS  EOS 1.0 b\t1.0 c\n"  # empty turn
        )
        + b"1.0 caf\xe9\t1.0 x\n"
        + b"1.0 d\t1.0 e\n" * 4  # 5 of 10 malformed: not more than half, so the run goes on
    )
    assert run(tmp_path, raw) == 0
    err = capsys.readouterr().err
    assert "c.tsv:3: skipped" in err and "not_exactly_one_tab" in err
    assert "c.tsv:6: skipped, invalid UTF-8" in err
    meta = json.loads((tmp_path / "c.128len.db" / "meta.json").read_text())
    assert meta["skipped"] == {
        "empty_line": 1,
        "not_exactly_one_tab": 2,
        "empty_turn": 1,
        "invalid_utf8": 1,
        "bad_weight": 0,
    }
    assert meta["skipped_first_lines"]["not_exactly_one_tab"] == [3, 4]
    assert meta["n_example"] == 5 and meta["n_line"] == 10 and meta["n_line_skipped"] == 5


def _no_json_constants(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def test_bad_weights_are_malformed_lines_and_inspect_prints_standard_json(tmp_path, capsys):
    bad = ["nan", "inf", "-inf", "1e400", "-5", "1_000"]
    # fewer than half of the lines malformed: this is about counting them, not refusing
    good = ["0.0 hello\t1.0 there", "1.0 x\t0.0"] + ["1.0 q\t1.0 r"] * 6
    lines = [f"1.0 a\t{w} b" for w in bad] + good
    assert run(tmp_path, "\n".join(lines) + "\n") == 0
    err = capsys.readouterr().err
    assert "c.tsv:1: skipped, weight 'nan' is not a number (bad_weight)" in err
    assert "c.tsv:5: skipped, weight '-5' is negative (bad_weight)" in err
    meta = json.loads((tmp_path / "c.128len.db" / "meta.json").read_text())
    assert meta["skipped"]["bad_weight"] == 6 and meta["n_line_skipped"] == 6
    assert meta["skipped_first_lines"]["bad_weight"] == [1, 2, 3, 4, 5, 6]
    assert meta["n_line"] == 14 and meta["n_example"] == 7  # "1.0 x<TAB>0.0": no target
    assert prepro.main(["--inspect", str(tmp_path / "c.128len.db")]) == 0
    out = capsys.readouterr().out.splitlines()
    feats = [json.loads(line, parse_constant=_no_json_constants) for line in out]
    assert [max(f["weights"]) for f in feats] == [1.0] * 7


def test_strict_stops_at_first_malformed_line(tmp_path, capsys):
    assert run(tmp_path, "1.0 a\t1.0 b\nbad\n", "--strict") == 2
    assert "c.tsv:2:" in capsys.readouterr().err
    assert not (tmp_path / "c.128len.db").exists()
    assert not list(tmp_path.glob("*.tmp-*"))


def test_existing_output_refused_unless_overwrite(tmp_path, capsys):
    assert run(tmp_path, "1.0 a\t1.0 b\n") == 0
    assert run(tmp_path, "1.0 a\t1.0 b\n") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run(tmp_path, "1.0 a\t1.0 b\n1.0 c\t1.0 d\n", "--overwrite") == 0
    assert json.loads((tmp_path / "c.128len.db" / "meta.json").read_text())["n_example"] == 2


def test_missing_corpus_and_bad_db(tmp_path, capsys):
    assert prepro.main(["--corpus", str(tmp_path / "nope.tsv"), "--no_pbar"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert prepro.main(["--inspect", str(tmp_path)]) == 2
    assert "not a complete prepro database" in capsys.readouterr().err
    (tmp_path / "folder.tsv").mkdir()
    assert prepro.main(["--corpus", str(tmp_path / "folder.tsv"), "--no_pbar"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_damaged_database_file_is_named_without_traceback(tmp_path, capsys):
    assert run(tmp_path, "1.0 a\t1.0 b\n") == 0
    capsys.readouterr()
    sqlite_file = tmp_path / "c.128len.db" / "db.sqlite"
    sqlite_file.write_bytes(b"not sqlite at all" * 100)
    assert prepro.main(["--inspect", str(tmp_path / "c.128len.db")]) == 2
    err = capsys.readouterr().err
    assert f"{sqlite_file}: not a readable SQLite database" in err and "Traceback" not in err
    sqlite_file.unlink()
    sqlite3.connect(sqlite_file).close()  # a valid, empty SQLite file
    assert prepro.main(["--inspect", str(tmp_path / "c.128len.db")]) == 2
    assert "has no 'features' table" in capsys.readouterr().err


def test_interrupted_run_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    corpus = tmp_path / "c.tsv"
    corpus.write_text("1.0 a\t1.0 b\n" * 5000)
    import lsp_data.prepro as mod

    calls = {"n": 0}
    real = mod.process_batch

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(mod, "process_batch", failing)
    monkeypatch.setattr(mod, "BATCH_BYTES", 4096)
    with pytest.raises(KeyboardInterrupt):
        run_prepro(str(corpus), chunk_size=1000, progress=False, log=lambda m: None)
    assert not (tmp_path / "c.128len.db").exists()
    assert not list(tmp_path.glob("*.tmp-*"))


_STUCK_DIR: list[Path] = []  # where a stuck worker notes its pid (forked workers see it)


def _stuck_after_the_first(first_lineno: int, *args: object) -> object:
    """process_batch for the test below (module level: the pool sends it by name)."""
    import os
    import time

    if first_lineno == 1:
        time.sleep(0.5)  # the other worker is stuck by then
        raise ValueError("bad batch")
    (_STUCK_DIR[0] / f"stuck-{os.getpid()}").touch()
    time.sleep(600)
    raise AssertionError("not killed")


def test_a_failed_run_kills_a_worker_stuck_in_its_batch(tmp_path, monkeypatch):
    # Running batches may finish after an error (_Pool.terminate); one that never does is
    # killed after the grace period, and the error reaches the caller.
    import os
    import time

    import lsp_data.prepro as mod

    (tmp_path / "c.tsv").write_text("1.0 a\t1.0 b\n" * 5000)
    monkeypatch.setattr(mod, "process_batch", _stuck_after_the_first)  # workers are forked
    monkeypatch.setattr(mod, "BATCH_BYTES", 4096)
    monkeypatch.setattr(mod._Pool, "GRACE_S", 1.0)
    _STUCK_DIR[:] = [tmp_path]
    start = time.monotonic()
    with pytest.raises(ValueError, match="bad batch"):
        run_prepro(str(tmp_path / "c.tsv"), workers=2, progress=False, log=lambda m: None)
    assert time.monotonic() - start < 30
    stuck = [int(f.name.split("-")[1]) for f in tmp_path.glob("stuck-*")]
    assert stuck and os.getpid() not in stuck
    assert _survivors(stuck) == []
    assert not (tmp_path / "c.128len.db").exists() and not list(tmp_path.glob(".*.tmp-*"))


def test_leftover_of_a_killed_run_is_pointed_out(tmp_path, capsys):
    stale = tmp_path / ".c.128len.db.tmp-deadbeef"  # what SIGKILL leaves mid-run
    stale.mkdir()
    assert run(tmp_path, "1.0 a\t1.0 b\n") == 0
    out = capsys.readouterr()
    assert f"{stale} was left by an interrupted prepro run" in out.out + out.err
    assert stale.is_dir()  # not deleted: it may belong to a prepro still running


def test_chunks_and_workers_agree(tmp_path, capsys):
    from tests.conftest import write_corpus

    write_corpus(tmp_path / "a.tsv", 2500, seed=3)
    write_corpus(tmp_path / "b.tsv", 2500, seed=3)
    run_prepro(
        str(tmp_path / "a.tsv"), chunk_size=700, workers=1, progress=False, log=lambda m: None
    )
    run_prepro(
        str(tmp_path / "b.tsv"), chunk_size=300, workers=2, progress=False, log=lambda m: None
    )
    with FeatureDB(tmp_path / "a.128len.db") as a, FeatureDB(tmp_path / "b.128len.db") as b:
        assert a.meta["n_chunk"] == -(-len(a) // 700)
        assert list(a.iter_features()) == list(b.iter_features())


LINES_FOR_BLOCKS = (
    b"1.0 a\t1.0 b\n\n" + b"1.0 " + b"x" * 300 + b"\t1.0 y\r\n" + b"\xff\t\n"
    + b"1.0 c\r1.0 d\t1.0 e\n" * 3 + b"no tab here\n" + b"1.0 f\t1.0 g"
)  # fmt: skip


@pytest.mark.parametrize("block_bytes", [1, 5, 64, 1 << 20])
def test_line_blocks_hold_every_line_once_with_its_number(tmp_path, block_bytes):
    import io

    from lsp_data.prepro import iter_line_blocks

    (tmp_path / "c.tsv").write_bytes(LINES_FOR_BLOCKS)
    blocks = list(iter_line_blocks(tmp_path / "c.tsv", block_bytes))
    assert b"".join(block for _, block in blocks) == LINES_FOR_BLOCKS
    assert all(block.endswith(b"\n") for _, block in blocks[:-1])  # whole lines only
    numbered = [
        (first + i, line)
        for first, block in blocks
        for i, line in enumerate(io.BytesIO(block).readlines())
    ]
    assert numbered == list(enumerate(io.BytesIO(LINES_FOR_BLOCKS).readlines(), start=1))


def test_batches_of_any_size_give_the_same_database_and_skips(tmp_path, monkeypatch):
    import lsp_data.prepro as mod

    good = b"".join(b"0.0 hello there %d EOS 1.0 how are you\t1.0 fine\n" % i for i in range(9))
    (tmp_path / "c.tsv").write_bytes((good + LINES_FOR_BLOCKS + b"\n") * 40)
    metas, features = [], []
    for batch_bytes, workers in ((1 << 20, 1), (64, 1), (300, 2)):
        monkeypatch.setattr(mod, "BATCH_BYTES", batch_bytes)
        folder, meta = run_prepro(
            str(tmp_path / "c.tsv"), workers=workers, overwrite=True, progress=False,
            chunk_size=50, log=lambda m: None,
        )  # fmt: skip
        metas.append(meta)
        with FeatureDB(folder) as db:
            features.append(list(db.iter_features()))
    assert metas[0]["n_line_skipped"] == 40 * 6 and len(metas[0]["skipped_first_lines"]) == 3
    assert metas[1] == metas[0] and metas[2] == metas[0]  # line numbers in it too
    assert features[1] == features[0] and features[2] == features[0]


def test_database_holds_no_pickle(small_db):
    con = sqlite3.connect(small_db / "db.sqlite")
    blobs = [row[0] for row in con.execute("SELECT value FROM features")]
    con.close()
    assert blobs and all(bytes(b[:2]) == b"PK" for b in blobs)  # zip (npz), not pickle
    assert not list(small_db.glob("*.pt")) and (small_db / "tokenizer.json").is_file()


# -- corpora that are not training data (issue 14) ------------------------------------------


def _no_output(tmp_path: Path) -> bool:
    return not (tmp_path / "c.128len.db").exists() and not list(tmp_path.glob(".*.tmp-*"))


def test_empty_corpus_fails(tmp_path, capsys):
    assert run(tmp_path, "") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'c.tsv'}: the file is empty; nothing written" in err
    assert "Traceback" not in err and _no_output(tmp_path)


def test_corpus_without_any_feature_fails(tmp_path, capsys):
    # single turns, and a response weighted 0 after an unweighted context: no target anywhere
    assert run(tmp_path, "1.0 a\t0.0 b\n0.0 a EOS 0.0 b\t0.0 c\n") == 2
    err = capsys.readouterr().err
    assert "c.tsv: no features from 2 lines (0 malformed, 2 with fewer than two turns" in err
    assert _no_output(tmp_path)


def _elf_library() -> Path:
    import numpy

    libs = sorted(Path(numpy.__file__).parent.rglob("*.so"))
    assert libs, "numpy ships compiled extension modules"
    return libs[0]


@pytest.mark.parametrize("binary", ["/bin/ls", "elf_library"])
def test_binary_file_fails_naming_file_and_counts(tmp_path, capsys, binary):
    source = _elf_library() if binary == "elf_library" else Path(binary)
    assert source.read_bytes()[:4] == b"\x7fELF"
    assert run(tmp_path, source.read_bytes()) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"prepro.py: error: {tmp_path / 'c.tsv'}: ")
    assert "lines are malformed (invalid_utf8: " in err and "more than 50%" in err
    assert _no_output(tmp_path)


def _mixed_corpus(n_bad: int, n_good: int) -> str:
    bad = ["no tab here\n", "\n", "a\tb\tc\n", "1.0 a EOS  EOS 1.0 b\t1.0 c\n"]
    return "".join(bad[i % len(bad)] for i in range(n_bad)) + "1.0 a\t1.0 b\n" * n_good


def test_mostly_malformed_corpus_fails_and_keeps_previous_output(tmp_path, capsys):
    assert run(tmp_path, "1.0 x\t1.0 y\n" * 3) == 0
    before = inspect(tmp_path / "c.128len.db", capsys)
    assert run(tmp_path, _mixed_corpus(6, 4), "--overwrite") == 2  # 60% malformed
    err = capsys.readouterr().err
    assert "c.tsv: 6 of 10 lines are malformed (" in err and "nothing written" in err
    assert inspect(tmp_path / "c.128len.db", capsys) == before  # the old database, untouched
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_minority_of_malformed_lines_is_skipped_and_counted(tmp_path, capsys):
    assert run(tmp_path, _mixed_corpus(4, 6)) == 0  # 40% malformed
    meta = json.loads((tmp_path / "c.128len.db" / "meta.json").read_text())
    assert meta["n_line"] == 10 and meta["n_line_skipped"] == 4 and meta["n_example"] == 6
    assert sum(meta["skipped"].values()) == 4
    assert "4 malformed lines skipped" in capsys.readouterr().err


def test_help_states_the_malformed_threshold(capsys):
    with pytest.raises(SystemExit):
        prepro.main(["--help"])
    assert "more than half of its lines malformed" in " ".join(capsys.readouterr().out.split())


# -- SIGTERM (issue 14) ---------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid``, read from /proc (field 4 of /proc/PID/stat is the ppid)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_prepro_with_workers(tmp_path: Path):
    """prepro.py with two workers on a corpus big enough to be mid-run; returns (process,
    worker pids) once both workers run and have taken batches."""
    import subprocess
    import sys
    import time

    from tests.conftest import REPO, write_corpus

    write_corpus(tmp_path / "c.tsv", 100_000, seed=5)
    corpus = (tmp_path / "c.tsv").read_bytes()
    (tmp_path / "c.tsv").write_bytes(corpus * 20)  # many seconds of work: still mid-run
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "prepro.py"), "--corpus", str(tmp_path / "c.tsv")]
        + ["--no_pbar", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        workers = _children(proc.pid)
    if len(workers) < 2:
        proc.kill()
        pytest.fail("prepro never started its two workers")
    time.sleep(1.0)  # let them take batches
    assert proc.poll() is None and list(tmp_path.glob(".c.128len.db.tmp-*"))  # mid-run
    return proc, workers


def _survivors(workers: list[int]) -> list[int]:
    import os
    import signal
    import time

    deadline = time.monotonic() + 5
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # a failing test must not leave them running
        os.kill(pid, signal.SIGKILL)
    return survivors


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_stops_prepro_and_its_workers_leaving_nothing(tmp_path):
    import signal

    proc, workers = _start_prepro_with_workers(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        survivors = _survivors(workers)
    assert proc.returncode == 143, err
    assert "interrupted; nothing written" in err and "Traceback" not in err
    assert survivors == [], "workers outlived prepro"
    assert _no_output(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_die_when_prepro_is_killed(tmp_path):
    import signal

    proc, workers = _start_prepro_with_workers(tmp_path)
    proc.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel must end the workers
    proc.wait(timeout=10)  # not communicate(): live workers would hold its stderr open
    proc.stderr.close()
    assert _survivors(workers) == [], "workers outlived prepro"
    assert not (tmp_path / "c.128len.db").exists()  # only the hidden temporary folder is left


# -- the fast path against the published one (issue 13) -------------------------------------

TRICKY_WORDS = [
    "café", "naïve", "Ａｂｃ", "𝐀𝐁𝐂", "x²", "٣٤٥", "日本語", "한국어", "עברית", "العربية",
    "e\u0301", "Ελλάδα", "😀", "👍🏽", "🧑‍🤝‍🧑", "🏳️‍🌈", "🇫🇷", "\U0001fae8", "\U0001fae9",
    "\U00010d50\U00010d51", "\ue000", "a\u200bb", "x\ufeffy", "m\u180en", "\x00", "\x07\x7f",
    "<|endoftext|>", "don't", "IT'S", "we'LL", "’tis", "“quoted”", "—", "…", "12345678901234",
    "1.5e3", "$$$", "http://x.io/a?b=c&d", ":-)", "'", "''", "'s's", "\\", "hello", "world",
]  # fmt: skip
ODD_SPACES = [" ", "  ", "\u00a0", "\u2003", "\u3000", "\x1c", "\x85", "\u2028", "\x0b", "\x0c"]


def _tricky_corpus(path: Path, n_lines: int, seed: int = 7) -> tuple[int, int]:
    """Lines mixing odd scripts, emoji, whitespace and very long turns; returns (logical
    lines, malformed lines) as prepro counts them."""
    import random

    rng = random.Random(seed)

    def turn(max_words: int) -> str:
        words = rng.choices(TRICKY_WORDS, k=rng.randint(1, max_words))
        return "".join(w + rng.choice(ODD_SPACES) for w in words).strip(" ")

    lines, n_logical, n_bad = [], 0, 0
    for i in range(n_lines):
        max_words = 3000 if i % 50 == 0 else 15  # some turns far longer than max_seq_len
        n_turns = 60 if i % 37 == 0 else rng.randint(1, 6)
        context = " EOS ".join(
            f"{rng.choice(['0.0', '1.0', '0.5'])} {turn(max_words)}" for _ in range(n_turns)
        )
        line = f"{context}\t{rng.choice(['1.0 ', '', '0.0 '])}{turn(max_words)}"
        if i % 41 == 0:
            line = line.replace("\t", " ")  # malformed: no tab
            n_bad += 1
        lines.append(line.encode("utf-8"))
        n_logical += 1
        if i % 43 == 0:  # a lone CR splits a physical line in two, as text mode reads it
            lines.append(b"1.0 before\r1.0 after\t1.0 cr")
            n_logical += 2
            n_bad += 1
    lines.append(b"1.0 bad \xff byte\t1.0 x")
    path.write_bytes(
        b"\r\n".join(lines[: n_lines // 2]) + b"\r\n" + b"\n".join(lines[n_lines // 2 :]) + b"\n"
    )
    return n_logical + 1, n_bad + 1


def _bad_weight_lines(path: Path) -> int:
    from lsp_data.parsing import BAD_WEIGHT, MalformedLine, split_physical_line

    n = 0
    for raw in path.read_bytes().split(b"\n"):  # physical lines, as prepro reads them
        try:
            lines = split_physical_line(raw)
        except MalformedLine:
            continue
        for line in lines:
            try:
                parse_training_line(line)
            except MalformedLine as err:
                n += err.reason == BAD_WEIGHT
    return n


def _as_dicts(features) -> list[dict]:
    return [
        {
            "input_ids": f.input_ids,
            "token_type_ids": f.token_type_ids,
            "lm_labels": f.lm_labels,
            "weights": f.weights,
        }
        for f in features
    ]


@pytest.mark.parametrize("reverse", [False, True])
def test_fast_path_equals_published_path_on_tricky_text(tmp_path, reverse):
    from lsp_data.prepro import published_path_features
    from lsp_data.tokenizer import load_published_bpe, text_backend

    n_logical, n_bad = _tricky_corpus(tmp_path / "c.tsv", 300)
    n_bad += _bad_weight_lines(tmp_path / "c.tsv")  # e.g. a turn led by "٣٤٥" (not ASCII)
    rust = text_backend(load_tokenizer())
    slow = _as_dicts(
        published_path_features(
            tmp_path / "c.tsv", load_published_bpe().encode, max_seq_len=64, reverse=reverse
        )
    )
    per_turn_rust = _as_dicts(
        published_path_features(
            tmp_path / "c.tsv",
            lambda text: rust.encode(text, add_special_tokens=False).ids,
            max_seq_len=64,
            reverse=reverse,
        )
    )
    assert len(slow) > 300 and per_turn_rust == slow
    for workers, chunk_size in ((1, 1000), (2, 37)):
        folder, meta = run_prepro(
            str(tmp_path / "c.tsv"), max_seq_len=64, reverse=reverse, chunk_size=chunk_size,
            workers=workers, overwrite=True, progress=False, log=lambda m: None,
        )  # fmt: skip
        assert meta["n_line"] == n_logical and meta["n_line_skipped"] == n_bad  # none dropped
        with FeatureDB(folder) as db:
            stored = [{k: f[k] for k in slow[0]} for f in db.iter_features()]
        assert stored == slow, f"workers={workers}"


def test_encode_words_equals_rust_tokenizer_per_text():
    # the word cache (vocabularies tiktoken cannot take): the parser's words through the
    # slot table, empty texts among them, twice (the second time from the cache)
    from lsp_data.tokenizer import BatchEncoder, text_backend

    rust = text_backend(load_tokenizer())
    encoder = BatchEncoder(lambda: rust)
    single = ["", "a", "a b", "it 's", "<|endoftext|> x", "😀 😀😀 é", "", "9x9 99 .5", ""]
    others = ["'s'S'll'LL", "a-b_c~d\x00e\x7f", "x" * 300, "hello , world !", "日本語 x"]
    for batch in [single, single[1:], single, *([t, *single] for t in others), []]:
        ids, lengths = encoder.encode_words([t.split() for t in batch])
        encoded = [rust.encode(t, add_special_tokens=False).ids for t in batch]
        assert ids.dtype == np.uint16 and lengths.tolist() == [len(e) for e in encoded]
        assert ids.tolist() == [i for e in encoded for i in e], batch


@pytest.mark.parametrize("fast", [True, False], ids=["tiktoken", "word-cache"])
def test_encode_texts_equals_rust_tokenizer_per_text(fast):
    # prepro's route: a batch's single-spaced texts in one call, split back per text
    from lsp_data.tokenizer import BatchEncoder, load_fast_bpe, text_backend

    rust = text_backend(load_tokenizer())
    encoder = BatchEncoder(lambda: rust, load_fast_bpe() if fast else None)
    assert (encoder.fast_bpe is not None) == fast
    texts = [
        "", "a", "a b", "it 's you're I'LL", "<|endoftext|> x", "😀 😀😀 é", "", "9x9 99 .5",
        "hello , world !", "'s 's", "a-b_c~d\x00e\x7f", "日本語 Ünïcödé", "", "x" * 300, "",
    ]  # fmt: skip
    for batch in [texts, texts[:1], texts[1:], [], ["a\nb c", "d"]]:  # the last: a newline
        ids, lengths = encoder.encode_texts(batch)  # ... is no word separator: still right
        encoded = [rust.encode(t, add_special_tokens=False).ids for t in batch]
        assert ids.dtype == np.uint16 and lengths.dtype == np.int64
        assert lengths.tolist() == [len(e) for e in encoded], batch
        assert ids.tolist() == [i for e in encoded for i in e], batch


def test_batch_encoder_cache_is_bounded(monkeypatch):
    from lsp_data.tokenizer import BatchEncoder, text_backend

    monkeypatch.setattr(BatchEncoder, "MAX_CACHED_WORDS", 40)
    rust = text_backend(load_tokenizer())
    encoder = BatchEncoder(lambda: rust)
    texts = [f"w{i} v{i} " + "y" * 5000 + f" {i}" for i in range(100)]
    for _ in range(2):  # the slot table starts over between batches once too full
        ids, lengths = encoder.encode_words([t.split() for t in texts])
        assert ids.tolist() == [i for t in texts for i in rust.encode(t).ids]
        assert len(encoder._table.slot) <= 40
        # words met once are remembered only up to a length: long ones are rarely met again
        assert all(len(word) <= encoder.MAX_CACHED_CHARS for word in encoder._seen_once)
    assert any(len(word) > 1000 for t in texts for word in t.split())


def test_batch_encoder_makes_the_rust_tokenizer_only_when_needed():
    from lsp_data.tokenizer import BatchEncoder, load_fast_bpe, text_backend

    made = []

    def make():
        made.append(1)
        return text_backend(load_tokenizer())

    encoder = BatchEncoder(make, load_fast_bpe())
    encoder.encode_texts(["hello there", "x"])
    assert made == []  # tiktoken took the batch
    encoder.encode_texts(["a\nb"])  # a text outside the contract: the Rust tokenizer's turn
    assert made == [1]


@pytest.mark.slow
def test_fast_bpe_equals_rust_tokenizer_on_every_vocabulary_word():
    """tiktoken merges by merged-token rank, the published BPE by merge-rule rank: the same
    ids for GPT-2's vocabulary, checked on every entry as a word (alone and after a space)
    and on made-up words glued from entries, as ``BatchEncoder`` hands them over."""
    import random

    from lsp_data.tokenizer import BatchEncoder, load_fast_bpe, text_backend

    fast = load_fast_bpe()
    if fast is None:
        pytest.skip("tiktoken is not installed: prepro encodes new words with tokenizers")
    rust = text_backend(load_tokenizer())
    words = [w for w in rust.get_vocab() if w != "<|endoftext|>"]
    texts = [rust.decoder.decode([w]) for w in words]
    texts = [t for t in texts if t and not any(c.isspace() for c in t)]
    rng = random.Random(3)
    glued = ["".join(rng.choices(texts, k=rng.randint(2, 4))) for _ in range(30000)]
    keys = [k for t in texts + glued for k in ("\n" + t, t)]
    # WORDS_PATTERN relies on words from str.split() holding nothing the pre-split's \\s
    # matches (Unicode White_Space): every such character is whitespace to str.split().
    import regex

    spaces = regex.findall(r"\s", "".join(map(chr, range(0x110000))))
    assert spaces and all(c.isspace() for c in spaces)
    with_fast = BatchEncoder(lambda: rust, fast)._encode_keys(keys)
    without = BatchEncoder(lambda: rust, None)._encode_keys(keys)
    assert with_fast[1].tolist() == without[1].tolist()
    assert np.array_equal(with_fast[0], without[0])
