"""Storage damage and full disks around the feature database (issue 14, items 4 and 6).

The rule every damage case must follow: each way of reading the database (FeatureDB,
BucketingDataLoader over all batches, ``prepro.py --inspect``, ``prepro.py --verify``)
either stops with the project's own error naming the database, within seconds, or -- when
the damaged bytes are genuinely unused (free space inside a page) -- gives exactly the
original data. Never a hang, never a traceback, never different data without an error.
A fresh database has no free pages, so overwriting a whole page must always be found by
``--verify``; a one-byte flip may land in unused space.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lsp_data import db as dbmod
from lsp_data import prepro_cli
from lsp_data.db import DatabaseError, FeatureDB, verify_database
from lsp_data.loaders import BucketingDataLoader
from tests.conftest import REPO, write_corpus

PAGE = 4096
LIMIT_S = 10.0  # what "promptly" means here; a healthy case takes well under a second
KINDS = ("random", "zeros", *["flip"] * 6)  # flips land at seeded random offsets
DB_ARGS = ["--chunk_size", "60", "--max_seq_len", "64", "--no_pbar", "--workers", "1"]


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """``fn()`` in a thread; a hang fails the test instead of blocking it forever."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # re-raised in the test's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    if "error" in box:
        raise box["error"]
    return box["value"]


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return prepro_cli.main(args)

    rc = within(LIMIT_S, call)
    return rc, out.getvalue(), err.getvalue()


def read_all(folder: Path) -> list[dict]:
    with FeatureDB(folder) as db:
        return list(db.iter_features())


def all_batches(folder: Path) -> list[tuple]:
    loader = BucketingDataLoader(str(folder), 4, 64, shuffle=False)
    try:
        return [tuple(t.tolist() for t in batch) for batch in loader]
    finally:
        loader.close()


def outcomes(folder: Path) -> dict[str, tuple[str, Any]]:
    """How each reader fares: ("ok", what it read) or ("error", the message)."""
    found: dict[str, tuple[str, Any]] = {}
    for name, reader in (("read", read_all), ("loader", all_batches)):
        try:
            found[name] = ("ok", within(LIMIT_S, lambda r=reader: r(folder)))  # type: ignore[misc]
        except DatabaseError as error:
            found[name] = ("error", str(error))
    for flag in ("--inspect", "--verify"):
        rc, out, err = run_cli([flag, str(folder)])
        assert "Traceback" not in err and rc in (0, 1, 2), (flag, rc, err)
        found[flag] = ("ok", out.replace(str(folder), "DB")) if rc == 0 else ("error", err)
    return found


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred features in several chunks."""
    base = tmp_path_factory.mktemp("pristine")
    write_corpus(base / "train.tsv", 300)
    assert prepro_cli.main(["--corpus", str(base / "train.tsv"), *DB_ARGS]) == 0
    folder = base / "train.64len.db"
    con = sqlite3.connect(folder / "db.sqlite")
    (free,) = con.execute("PRAGMA freelist_count").fetchone()
    (page_size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    assert free == 0 and page_size == PAGE  # every page is in use (see the module's rule)
    return folder


@pytest.fixture(scope="module")
def baseline(pristine: Path) -> dict[str, tuple[str, Any]]:
    found = outcomes(pristine)
    assert all(status == "ok" for status, _ in found.values()), found
    assert len(found["read"][1]) == 300 and verify_database(pristine).n_chunk == 5
    return found


def damaged_copy(pristine: Path, where: Path, page: int, kind: str, rng: random.Random) -> Path:
    folder = where / "train.64len.db"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    data = bytearray((pristine / "db.sqlite").read_bytes())
    lo = page * PAGE
    if kind == "random":
        data[lo : lo + PAGE] = rng.randbytes(PAGE)
    elif kind == "zeros":
        data[lo : lo + PAGE] = bytes(PAGE)
    else:
        data[lo + rng.randrange(PAGE)] ^= 1 << rng.randrange(8)
    (folder / "db.sqlite").write_bytes(bytes(data))
    return folder


def test_every_damaged_page_is_found_or_harmless(pristine, baseline, tmp_path):
    rng = random.Random(14)
    n_pages = (pristine / "db.sqlite").stat().st_size // PAGE
    tally: Counter[str] = Counter()
    started = time.monotonic()
    for page in range(n_pages):
        for kind in KINDS:
            folder = damaged_copy(pristine, tmp_path, page, kind, rng)
            case = f"page {page + 1} of {n_pages}, {kind}"
            found = outcomes(folder)
            for reader, (status, value) in found.items():
                if status == "ok":
                    assert value == baseline[reader][1], f"{case}: {reader} read other data"
                else:
                    assert str(folder) in value, f"{case}: {reader}: error without the db: {value}"
            if kind in ("random", "zeros"):
                assert found["--verify"][0] == "error", f"{case}: --verify missed it"
            if found["--verify"][0] == "ok":
                assert all(s == "ok" for s, _ in found.values()), f"{case}: {found}"
            tally[f"{kind} {'found' if found['--verify'][0] == 'error' else 'harmless'}"] += 1
    print(f"{n_pages} pages: {dict(tally)} in {time.monotonic() - started:.1f} s")
    assert tally["random found"] == tally["zeros found"] == n_pages


def test_flipped_bits_in_meta_json_are_found_or_harmless(pristine, baseline, tmp_path):
    """meta.json is the reference the chunks are checked against: damage there must not let
    other data through either (a flip in a free-text field such as ``corpus`` is harmless)."""
    rng = random.Random(41)
    text = (pristine / "meta.json").read_bytes()
    tally: Counter[str] = Counter()
    for offset in sorted(rng.sample(range(len(text)), 60)):
        folder = tmp_path / "train.64len.db"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(pristine, folder)
        data = bytearray(text)
        data[offset] ^= 1 << rng.randrange(8)
        (folder / "meta.json").write_bytes(bytes(data))
        for reader, (status, value) in outcomes(folder).items():
            case = f"meta.json byte {offset} ({text[offset - 8 : offset + 8]!r}): {reader}"
            if status == "ok":
                assert value == baseline[reader][1], f"{case} read other data"
            else:
                assert str(folder) in value, f"{case}: error without the db: {value}"
            tally[f"{reader} {status}"] += 1
    print(f"meta.json flips: {dict(tally)}")
    assert tally["--verify error"] > 0


def last_btree_page(db_file: Path) -> int:
    """Index of the file's last B-tree page (SQLite's page-type byte 2, 5, 10 or 13 first).

    Overflow and freelist pages begin with a 4-byte page number, whose first byte is 0 in
    any file under 16 M pages, so the type byte tells them apart. Which page comes last
    depends on the chunks' sizes, so the test finds it rather than taking the last page.
    """
    data = db_file.read_bytes()
    pages = [p for p in range(1, len(data) // PAGE) if data[p * PAGE] in (2, 5, 10, 13)]
    assert pages, f"{db_file}: no B-tree page past the first"
    return pages[-1]


def test_damaged_last_btree_page_ends_the_cli_promptly(pristine, tmp_path):
    """The case that hung: the sqlitedict worker thread died and prepro.py waited forever
    once SQLite itself found the file malformed (damage in a chunk's overflow pages is the
    checksums' job, covered page by page above)."""
    page = last_btree_page(pristine / "db.sqlite")
    folder = damaged_copy(pristine, tmp_path, page, "random", random.Random(1))
    for flag, rc in (("--inspect", 2), ("--verify", 1)):
        done = subprocess.run(
            [sys.executable, str(REPO / "prepro.py"), flag, str(folder)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == rc, done.stderr
        assert str(folder / "db.sqlite") in done.stderr and "Traceback" not in done.stderr
        assert "database disk image is malformed" in done.stderr


def test_deleted_chunk_row_is_found_at_open(pristine, tmp_path):
    folder = tmp_path / "train.64len.db"
    shutil.copytree(pristine, folder)
    con = sqlite3.connect(folder / "db.sqlite")
    con.execute("DELETE FROM features WHERE key = 'chunk_3'")
    con.commit()
    con.close()
    for reader in (read_all, all_batches, lambda f: FeatureDB(f)):
        with pytest.raises(DatabaseError, match="holds 4 chunk rows, meta.json says 5"):
            within(LIMIT_S, lambda r=reader: r(folder))
    rc, _, err = run_cli(["--inspect", str(folder)])
    assert rc == 2 and "missing: chunk_3" in err
    rc, _, err = run_cli(["--verify", str(folder)])
    assert rc == 1 and "missing: chunk_3" in err


def sqlite_full_after(pages: int) -> Callable[..., sqlite3.Connection]:
    """``sqlite3.connect`` whose write connections hit SQLite's own "database or disk is full"
    once the file reaches ``pages`` pages (``PRAGMA max_page_count``)."""
    real = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(database, *args, **kwargs)
        if "mode=ro" not in str(database):
            conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    return connect


def fsync_enospc(fd: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(("connect", sqlite_full_after(4)), id="sqlite-full-mid-chunks"),
        pytest.param(("fsync", fsync_enospc), id="enospc-at-sync"),
    ],
)
def test_full_disk_while_writing_keeps_the_previous_database(
    pristine, baseline, tmp_path, monkeypatch, failure
):
    shutil.copy(pristine.parent / "train.tsv", tmp_path / "train.tsv")
    shutil.copytree(pristine, tmp_path / "train.64len.db")
    name, replacement = failure
    if name == "connect":
        monkeypatch.setattr(dbmod.sqlite3, "connect", replacement)
    else:
        monkeypatch.setattr(dbmod.os, "fsync", replacement)
    rc, _, err = run_cli(["--corpus", str(tmp_path / "train.tsv"), "--overwrite", *DB_ARGS])
    monkeypatch.undo()
    assert rc == 2 and "Traceback" not in err, err
    assert f"prepro.py: error: cannot write {tmp_path / 'train.64len.db'}: " in err
    assert "the disk is full: free space and run prepro.py again" in err
    assert read_all(tmp_path / "train.64len.db") == baseline["read"][1]
    assert verify_database(tmp_path / "train.64len.db").ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.64len.db", "train.tsv"]


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); "
            "the patched full-disk tests cover the same paths"
        )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_really_full_disk_during_the_sqlite_phase(pristine, baseline, tiny_tmpfs):
    """A real ENOSPC from a small tmpfs: clear error, old database intact, and a rerun
    succeeds once space is freed."""
    shutil.copy(pristine.parent / "train.tsv", tiny_tmpfs / "train.tsv")
    shutil.copytree(pristine, tiny_tmpfs / "train.64len.db")
    left = shutil.disk_usage(tiny_tmpfs).free
    db_size = (pristine / "db.sqlite").stat().st_size
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\0" * (left - db_size // 2))  # room for half the chunks
    command = [sys.executable, str(REPO / "prepro.py"), "--corpus", str(tiny_tmpfs / "train.tsv")]
    command += ["--overwrite", *DB_ARGS]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "writing chunk 'chunk_" in done.stderr and "the disk is full" in done.stderr
    assert read_all(tiny_tmpfs / "train.64len.db") == baseline["read"][1]
    assert not [p for p in tiny_tmpfs.iterdir() if ".tmp-" in p.name]
    filler.unlink()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_all(tiny_tmpfs / "train.64len.db") == baseline["read"][1]


@pytest.mark.slow
def test_trainer_stops_on_a_chunk_damaged_mid_epoch(pristine, tmp_path):
    """The damage is met in the loader's prefetch thread during training: the trainer must
    end with the error, not wait for a batch that never comes."""
    import json

    from tests.gpt2_training.conftest import TINY, train_argv

    folder = tmp_path / "train.64len.db"
    shutil.copytree(pristine, folder)
    with FeatureDB(folder) as db:
        tail = db._read_blob("chunk_2")[-64:]
    data = bytearray((folder / "db.sqlite").read_bytes())
    page = data.index(tail) // PAGE  # the last overflow page of chunk_2
    data[page * PAGE : (page + 1) * PAGE] = bytes(PAGE)
    (folder / "db.sqlite").write_bytes(bytes(data))
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "valid.tsv").write_text("hello there\tfine thanks\n", encoding="utf-8")
    files = {"model": tmp_path / "tiny", "db": folder, "valid": tmp_path / "valid.tsv"}
    argv = train_argv(files, tmp_path / "out", "--num_optim_steps", "25", "--valid_step", "1000")
    done = subprocess.run(
        [sys.executable, str(REPO / "LSP_train.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"LSP_train.py: error: {folder / 'db.sqlite'}: chunk 'chunk_2' is corrupt" in done.stderr
