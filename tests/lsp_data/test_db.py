"""lsp_data/db.py: the sqlite layout, per-chunk checksums, open-time and read-time checks,
verify_database / prepro.py --verify, and write errors (full disk, locks)."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from lsp_data import db as dbmod
from lsp_data import prepro_cli
from lsp_data.db import (
    DatabaseError,
    FeatureChunk,
    FeatureDB,
    FeatureDBWriter,
    verify_database,
)
from lsp_data.loaders import BucketingDataLoader


def blobs(folder: Path) -> dict[str, bytes]:
    con = sqlite3.connect(folder / "db.sqlite")
    try:
        return {k: bytes(v) for k, v in con.execute("SELECT key, value FROM features")}
    finally:
        con.close()


def execute(folder: Path, sql: str, *params: object) -> None:
    con = sqlite3.connect(folder / "db.sqlite")
    con.execute(sql, params)
    con.commit()
    con.close()


def edit_meta(folder: Path, **changes: object) -> dict:
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    for name, value in changes.items():
        if value is None:
            meta.pop(name, None)
        else:
            meta[name] = value
    path.write_text(json.dumps(meta))
    return meta


def make_chunk(first: int, n: int) -> FeatureChunk:
    lens = np.full(n, 8, dtype=np.int32)
    total = int(lens.sum())
    return FeatureChunk(
        conv_id=np.arange(first, first + n, dtype=np.int64),
        input_len=lens,
        input_ids=np.arange(total, dtype=np.uint16),
        token_type_ids=np.zeros(total, dtype=np.int32),
        lm_labels=np.full(total, -1, dtype=np.int32),
        weights=np.zeros(total, dtype=np.float64),
    )


def test_meta_lists_size_and_sha256_of_every_stored_chunk(small_db):
    meta = json.loads((small_db / "meta.json").read_text())
    stored = blobs(small_db)
    assert meta["n_chunk"] == len(stored) == len(meta["chunks"]) == 3
    for k, info in enumerate(meta["chunks"]):
        blob = stored[f"chunk_{k}"]
        assert info["bytes"] == len(blob)
        assert info["sha256"] == hashlib.sha256(blob).hexdigest()
    assert sum(c["n_example"] for c in meta["chunks"]) == meta["n_example"]


def test_sqlitedict_layout_is_kept(small_db):
    """Same table and schema as sqlitedict wrote, so either side reads the other's files."""
    con = sqlite3.connect(small_db / "db.sqlite")
    (schema,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'features'").fetchone()
    con.close()
    assert schema == 'CREATE TABLE "features" (key TEXT PRIMARY KEY, value BLOB)'
    from sqlitedict import SqliteDict  # the published toolkit's reader

    raw = SqliteDict(
        str(small_db / "db.sqlite"), tablename="features", flag="r", encode=bytes, decode=bytes
    )
    try:
        assert dict(raw.items()) == blobs(small_db)
    finally:
        raw.close()


def test_database_written_by_sqlitedict_reads(tmp_path, small_db):
    from sqlitedict import SqliteDict

    folder = tmp_path / "old.db"
    folder.mkdir()
    (folder / "meta.json").write_text((small_db / "meta.json").read_text())
    out = SqliteDict(
        str(folder / "db.sqlite"), tablename="features", flag="n", encode=bytes, decode=bytes
    )
    for key, blob in blobs(small_db).items():
        out[key] = blob
    out.commit()
    out.close()
    with FeatureDB(folder) as old, FeatureDB(small_db) as new:
        assert list(old.iter_features()) == list(new.iter_features())


def test_deleted_chunk_row_is_refused_at_open(small_db):
    execute(small_db, "DELETE FROM features WHERE key = 'chunk_1'")
    with pytest.raises(DatabaseError) as err:
        FeatureDB(small_db)
    message = str(err.value)
    assert message.startswith(f"{small_db / 'db.sqlite'}: holds 2 chunk rows, meta.json says 3")
    assert "missing: chunk_1" in message
    with pytest.raises(DatabaseError, match="missing: chunk_1"):
        BucketingDataLoader(str(small_db), 2, 64)


def test_renamed_and_extra_chunk_rows_are_refused_at_open(small_db):
    execute(small_db, "UPDATE features SET key = 'chunk_7' WHERE key = 'chunk_2'")
    with pytest.raises(DatabaseError, match="missing: chunk_2; .*does not list: chunk_7"):
        FeatureDB(small_db)
    execute(small_db, "UPDATE features SET key = 'chunk_2' WHERE key = 'chunk_7'")
    execute(small_db, "INSERT INTO features VALUES ('chunk_3', x'00')")
    with pytest.raises(DatabaseError, match="holds 4 chunk rows, meta.json says 3"):
        FeatureDB(small_db)
    execute(small_db, "UPDATE features SET key = 'stray' WHERE key = 'chunk_3'")
    with pytest.raises(DatabaseError, match="does not list: stray"):
        FeatureDB(small_db)


def test_swapped_chunks_fail_their_checksums_when_read(small_db):
    stored = blobs(small_db)
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_0'", stored["chunk_1"])
    with FeatureDB(small_db) as db:  # the rows are all there: opening is fine
        db.read_chunk("chunk_1")
        with pytest.raises(DatabaseError) as err:
            db.read_chunk("chunk_0")
        with pytest.raises(DatabaseError, match="chunk 'chunk_0' is corrupt"):
            db.read_lengths("chunk_0")
    assert str(err.value).startswith(f"{small_db / 'db.sqlite'}: chunk 'chunk_0' is corrupt (")
    assert "SHA-256" in str(err.value) and "rebuild it with prepro.py" in str(err.value)


def test_meta_that_contradicts_itself_is_refused(small_db):
    meta = json.loads((small_db / "meta.json").read_text())
    edit_meta(small_db, n_chunk=4)
    with pytest.raises(DatabaseError, match="300 features cannot fill 4 chunks of 100"):
        FeatureDB(small_db)
    edit_meta(small_db, n_chunk=3, n_example=299)
    with pytest.raises(DatabaseError, match="do not add up to n_example = 299"):
        FeatureDB(small_db)
    chunks = meta["chunks"]
    chunks[1]["sha256"] = "not a digest"
    edit_meta(small_db, n_example=300, chunks=chunks)
    with pytest.raises(DatabaseError, match="'chunks' entry 1 is not"):
        FeatureDB(small_db)
    edit_meta(small_db, chunk_size="100")
    with pytest.raises(DatabaseError, match="meta.json: chunk_size is '100', not a count"):
        FeatureDB(small_db)


def test_database_without_checksums_loads_with_a_warning(small_db, caplog):
    with FeatureDB(small_db) as db:
        expected = list(db.iter_features())
    edit_meta(small_db, chunks=None, format=1)  # as written before checksums existed
    with caplog.at_level(logging.WARNING, logger="lsp_data.db"):
        with FeatureDB(small_db) as db:
            assert not db.has_checksums
            assert list(db.iter_features()) == expected
    assert "holds no per-chunk checksums" in caplog.text and str(small_db) in caplog.text
    assert verify_database(small_db).ok


def test_current_format_without_checksums_is_damaged_not_old(small_db):
    # A damaged "chunks" key must not pass the database off as one written before checksums.
    edit_meta(small_db, chunks=None)
    with pytest.raises(DatabaseError, match=r"the chunk checksums \('chunks'\) are missing"):
        FeatureDB(small_db)
    edit_meta(small_db, format=3)
    with pytest.raises(DatabaseError, match="database format 3, this toolkit reads 1 and 2"):
        FeatureDB(small_db)


def test_database_without_checksums_still_checks_shapes_and_crcs(small_db):
    edit_meta(small_db, chunks=None, format=1)
    stored = blobs(small_db)
    # A chunk with 99 of its 100 features: the count comes from chunk_size and n_example.
    with FeatureDB(small_db) as db:
        short = db.read_chunk("chunk_1").slice(0, 99).to_bytes()
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_1'", short)
    with FeatureDB(small_db) as db, pytest.raises(DatabaseError, match="99 features, meta.json"):
        db.read_chunk("chunk_1")
    # One flipped byte inside a deflated member: the zip CRC (or inflate) catches it.
    blob = bytearray(stored["chunk_2"])
    blob[len(blob) // 2] ^= 0x01
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_2'", bytes(blob))
    with FeatureDB(small_db) as db, pytest.raises(DatabaseError, match="chunk 'chunk_2' is corr"):
        db.read_chunk("chunk_2")


def test_chunk_with_inconsistent_arrays_is_corrupt(small_db):
    with FeatureDB(small_db) as db:
        chunk = db.read_chunk("chunk_0")
    chunk.weights = chunk.weights[:-1]
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_0'", chunk.to_bytes())
    edit_meta(small_db, chunks=None, format=1)  # no digest to stop it earlier
    with FeatureDB(small_db) as db, pytest.raises(DatabaseError, match="weights does not hold"):
        db.read_chunk("chunk_0")


def test_verify_reports_a_sound_database(small_db, capsys):
    result = verify_database(small_db)
    assert result.ok and result.has_checksums
    assert (result.n_chunk, result.n_example) == (3, 300)
    assert prepro_cli.main(["--verify", str(small_db)]) == 0
    out = capsys.readouterr().out
    assert f"{small_db}: ok: 300 features in 3 chunks" in out
    assert "every chunk matches its SHA-256" in out


def test_verify_names_every_problem_and_exits_1(small_db, capsys):
    stored = blobs(small_db)
    execute(small_db, "DELETE FROM features WHERE key = 'chunk_1'")
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_2'", stored["chunk_0"])
    result = verify_database(small_db)
    assert len(result.problems) == 2, result.problems
    assert "missing: chunk_1" in result.problems[0]
    assert "chunk 'chunk_2' is corrupt" in result.problems[1]
    assert prepro_cli.main(["--verify", str(small_db)]) == 1
    err = capsys.readouterr().err
    assert f"prepro.py: {small_db}: 2 problems found:" in err
    assert "missing: chunk_1" in err and "Traceback" not in err


def test_verify_checks_feature_ids(small_db):
    """Without checksums a chunk copied over another is found by its feature ids (§3)."""
    edit_meta(small_db, chunks=None, format=1)
    execute(
        small_db, "UPDATE features SET value = ? WHERE key = 'chunk_2'", blobs(small_db)["chunk_1"]
    )
    (problem,) = verify_database(small_db).problems
    assert "chunk 'chunk_2': feature ids are not 200..299" in problem


def test_verify_of_a_missing_or_foreign_folder(tmp_path, capsys):
    assert prepro_cli.main(["--verify", str(tmp_path / "nope.db")]) == 1
    assert "no such database folder" in capsys.readouterr().err
    (tmp_path / "x.db").mkdir()
    (tmp_path / "x.db" / "meta.json").write_text("{}")
    (tmp_path / "x.db" / "db.sqlite").write_bytes(b"")
    assert prepro_cli.main(["--verify", str(tmp_path / "x.db")]) == 1
    assert "database format None" in capsys.readouterr().err


def test_locked_database_waits_then_fails(small_db, monkeypatch):
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(small_db / "db.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseError, match="locked for over 0.2 s"):
            FeatureDB(small_db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    FeatureDB(small_db).close()


def full_after(pages: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make SQLite itself report a full disk once the writer's file reaches ``pages`` pages."""
    real = sqlite3.connect

    def connect(database, *args, **kwargs):
        conn = real(database, *args, **kwargs)
        if str(database).endswith("db.sqlite") and "mode=ro" not in str(database):
            conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(dbmod.sqlite3, "connect", connect)


def test_full_disk_while_writing_a_chunk_is_a_clear_error(tmp_path, monkeypatch):
    full_after(6, monkeypatch)
    writer = FeatureDBWriter(tmp_path / "out.db", chunk_size=500)
    with pytest.raises(DatabaseError) as err:
        for k in range(20):
            writer.add(make_chunk(500 * k, 500))
    writer.abort()
    message = str(err.value)
    assert message.startswith(f"cannot write {tmp_path / 'out.db'}: writing chunk 'chunk_")
    assert "database or disk is full; the disk is full: free space and run prepro.py" in message
    assert not list(tmp_path.iterdir())  # the temporary folder is gone


def test_full_disk_while_writing_meta_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    real = Path.write_text

    def write_text(self: Path, *args, **kwargs):
        if self.name == "meta.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    writer = FeatureDBWriter(tmp_path / "out.db", chunk_size=10)
    writer.add(make_chunk(0, 25))
    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(DatabaseError, match="writing meta.json in .*No space left on device; the"):
        writer.commit({})
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_verify_finds_damage_that_no_chunk_read_touches(small_db):
    """A damaged free-list page: every chunk still reads, only SQLite's integrity check sees it."""
    execute(small_db, "INSERT INTO features VALUES ('junk', zeroblob(20000))")
    execute(small_db, "DELETE FROM features WHERE key = 'junk'")  # leaves free pages
    path = small_db / "db.sqlite"
    data = bytearray(path.read_bytes())
    trunk = int.from_bytes(data[32:36], "big")  # first free-list trunk page (file header)
    assert trunk > 0
    data[(trunk - 1) * 4096 : (trunk - 1) * 4096 + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with FeatureDB(small_db) as db:
        assert len(list(db.iter_features())) == 300
    problems = verify_database(small_db).problems
    assert problems and all("SQLite integrity check: " in p for p in problems)
    assert any(f"freelist leaf count too big on page {trunk}" in p for p in problems)


def test_pickled_chunk_is_refused_as_code_not_with_numpys_advice(small_db, tmp_path):
    # Without checksums (format 1) the chunk is decoded: an object array inside is refused
    # because it could run code, and the message never suggests allow_pickle.
    import io

    edit_meta(small_db, chunks=None, format=1)
    buf = io.BytesIO()
    np.savez(buf, input_len=np.array([object()], dtype=object))
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_0'", buf.getvalue())
    with FeatureDB(small_db) as db, pytest.raises(DatabaseError) as err:
        db.read_chunk("chunk_0")
    assert "could run code" in str(err.value) and "allow_pickle" not in str(err.value)


def test_inspect_of_an_old_database_with_a_nan_weight_is_an_error_not_bad_json(small_db, capsys):
    from lsp_data.db import FeatureChunk
    from lsp_data.prepro_cli import main

    edit_meta(small_db, chunks=None, format=1)
    chunk = FeatureChunk.from_bytes(blobs(small_db)["chunk_0"])
    chunk.weights[0] = float("nan")
    execute(small_db, "UPDATE features SET value = ? WHERE key = 'chunk_0'", chunk.to_bytes())
    assert main(["--inspect", str(small_db)]) != 0
    err = capsys.readouterr().err
    assert "feature 0 holds a weight that is not a finite number" in err
    assert "Traceback" not in err


# -- the chunks' npz archives (npz_bytes) ----------------------------------------------------


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "input_ids": rng.integers(0, 50257, 5000).astype(np.uint16),
        "lm_labels": np.where(rng.random(5000) < 0.4, -1, rng.integers(0, 50257, 5000)).astype(
            np.int32
        ),
        "weights": np.repeat([0.0, 1.0, 0.25], [1000, 3000, 1000]),
        "empty": np.zeros(0, np.int64),
    }


@pytest.mark.parametrize("deflate", ["isal", "zlib", "zipfile-zip64"])
def test_npz_bytes_is_an_npz_any_reader_takes(monkeypatch, deflate):
    import io
    import zipfile

    if deflate == "zlib":
        monkeypatch.setattr(dbmod, "_isal_zlib", None)
    if deflate == "zipfile-zip64":  # an archive too large for 32-bit zip fields
        monkeypatch.setattr(dbmod, "_ZIP_LIMIT", 1000)
    arrays = _arrays()
    blob = dbmod.npz_bytes(arrays)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.testzip() is None  # every member's CRC-32 checks out
        assert archive.namelist() == [f"{name}.npy" for name in arrays]
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        for name, array in arrays.items():
            assert npz[name].dtype == array.dtype and np.array_equal(npz[name], array)
    assert len(blob) < 0.8 * sum(a.nbytes for a in arrays.values())  # compressed
    if deflate != "zipfile-zip64":  # fixed timestamps: the same arrays, the same bytes
        assert dbmod.npz_bytes(arrays) == blob


def test_isal_deflate_is_installed():
    # the dependency that keeps prepro's main process from compressing at zlib's speed
    assert dbmod._isal_zlib is not None
