"""The feature database: a folder with ``db.sqlite``, ``meta.json`` and tokenizer files.

Each chunk of features is stored under ``chunk_{k}`` as one ``.npz`` blob (zip-deflated
numpy arrays, read with ``allow_pickle=False``): the features' tokens are concatenated
into flat arrays and ``input_len`` says where each one ends. Nothing in a database is a
pickle, so opening one received from elsewhere is safe. ``db.sqlite`` keeps sqlitedict's
table layout (table ``features``: ``key TEXT PRIMARY KEY, value BLOB``, values raw bytes),
so sqlitedict with a pass-through codec reads it and older databases read here.

SQLite is used directly, in the calling thread: sqlitedict ran every statement in a worker
thread that died on a damaged file or a full disk and left the caller waiting forever.
Every SQLite or OS error becomes a ``DatabaseError`` naming the file and the chunk.

``meta.json`` lists each chunk's feature count, size and SHA-256. Opening a database checks
its chunk rows against ``meta.json`` (cheap: no chunk is read); reading a chunk checks its
digest and shape; ``verify_database`` (``prepro.py --verify``) checks everything.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import struct
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # no wheel for the platform: zlib's deflate, slower, the same format
    _isal_zlib = None  # type: ignore[assignment]

from lsp_common.atomic import replace_folder, temp_sibling
from lsp_data.features import Feature

logger = logging.getLogger(__name__)

DB_FILE = "db.sqlite"
META_FILE = "meta.json"
TABLE = "features"
# 2: meta.json lists every chunk's feature count, size and SHA-256. Format 1 databases
# (written before the checksums) are still read, with a warning.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
FIELDS = (
    "conv_id",
    "input_ids",
    "position_ids",
    "token_type_ids",
    "lm_labels",
    "weights",
    "input_len",
)
# sqlitedict's own statement, so the schema text in sqlite_master is the same as its.
CREATE_TABLE = f'CREATE TABLE IF NOT EXISTS "{TABLE}" (key TEXT PRIMARY KEY, value BLOB)'
# How long a reader waits for a writer's lock before giving up with an error.
BUSY_TIMEOUT_S = 10.0
REBUILD = "rebuild it with prepro.py"
_DAMAGED = f"the file is damaged: {REBUILD} (prepro.py --verify DB lists what is wrong)"
_KEY = re.compile(r"chunk_(0|[1-9][0-9]*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SQLITE_FULL, _SQLITE_BUSY, _SQLITE_LOCKED = 13, 5, 6
# What numpy's npz reader raises on bytes that are not a well-formed archive.
_DECODE_ERRORS = (
    KeyError,
    ValueError,
    TypeError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
)


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """``tokenizer.save_pretrained(folder)``; the Rust tokenizer reports a failed write as a
    bare Exception ("No space left on device (os error 28)"), turned here into the OSError
    it is."""
    try:
        tokenizer.save_pretrained(str(folder))
    except OSError:
        raise
    except Exception as err:
        match = re.search(r"os error (\d+)", str(err))
        if match is None:
            raise
        raise OSError(int(match.group(1)), os.strerror(int(match.group(1)))) from None


class DatabaseError(RuntimeError):
    """A database folder is missing, incomplete, damaged or not one this toolkit wrote."""


_ARRAYS = ("conv_id", "input_len", "input_ids", "token_type_ids", "lm_labels", "weights")
_DTYPES = {
    "conv_id": np.dtype(np.int64),
    "input_len": np.dtype(np.int32),
    "input_ids": np.dtype(np.uint16),
    "token_type_ids": np.dtype(np.int32),
    "lm_labels": np.dtype(np.int32),
    "weights": np.dtype(np.float64),
}


def chunk_key(index: int) -> str:
    return f"chunk_{index}"


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_FULL


def _is_busy(err: BaseException) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _read_error(path: Path, doing: str, err: BaseException) -> DatabaseError:
    """``err`` met while reading ``path`` as one line: the file, what was read, what to do."""
    if _is_busy(err):
        hint = f"another process kept it locked for over {BUSY_TIMEOUT_S:g} s"
    elif _is_disk_full(err):
        hint = "the disk is full"
    else:
        hint = _DAMAGED
    return DatabaseError(f"{path}: {doing}: {_reason(err)}; {hint}")


def _few(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _read_meta(meta_path: Path) -> dict[str, Any]:
    """meta.json, refused unless its counts are consistent with one another."""
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatabaseError(f"{meta_path}: unreadable ({err}); {REBUILD}") from None
    if not isinstance(meta, dict):
        raise DatabaseError(f"{meta_path}: not a JSON object; {REBUILD}")
    if meta.get("format") not in READABLE_FORMATS:
        raise DatabaseError(
            f"{meta_path}: database format {meta.get('format')!r}, this toolkit reads "
            f"{' and '.join(map(str, READABLE_FORMATS))}; {REBUILD}"
        )
    problem = _meta_problem(meta)
    if problem:
        raise DatabaseError(f"{meta_path}: {problem}; {REBUILD}")
    return meta


def _meta_problem(meta: dict[str, Any]) -> str | None:
    n_example, n_chunk, size = meta.get("n_example"), meta.get("n_chunk"), meta.get("chunk_size")
    for name, value in (("n_example", n_example), ("n_chunk", n_chunk), ("chunk_size", size)):
        if not _is_count(value):
            return f"{name} is {value!r}, not a count"
    assert isinstance(n_example, int) and isinstance(n_chunk, int) and isinstance(size, int)
    if size < 1:
        return f"chunk_size is {size}"
    # Every chunk but the last is full (FeatureDBWriter.add), so the counts bound each other.
    if (n_chunk or n_example) and not (n_chunk - 1) * size < n_example <= n_chunk * size:
        return f"{n_example} features cannot fill {n_chunk} chunks of {size}"
    chunks = meta.get("chunks")
    if chunks is None:
        # Only format 1 predates the checksums: a later meta.json without them is damaged.
        return None if meta.get("format") == 1 else "the chunk checksums ('chunks') are missing"
    if not isinstance(chunks, list) or len(chunks) != n_chunk:
        return f"'chunks' does not list n_chunk = {n_chunk} chunks"
    for k, info in enumerate(chunks):
        if not (
            isinstance(info, dict)
            and _is_count(info.get("n_example"))
            and _is_count(info.get("bytes"))
            and isinstance(info.get("sha256"), str)
            and _SHA256.fullmatch(info["sha256"])
        ):
            return f"'chunks' entry {k} is not {{n_example, bytes, sha256}}"
    if sum(info["n_example"] for info in chunks) != n_example:
        return f"the chunks' feature counts do not add up to n_example = {n_example}"
    return None


class _SqliteReader:
    """Read-only SQLite access in the caller's thread; one statement at a time, from any thread
    (the batch loader reads chunks in its prefetch thread)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                check_same_thread=False,
            )
            found = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchone()
        except sqlite3.Error as err:
            self.close()
            if _is_busy(err):
                raise _read_error(path, "opening", err) from None
            raise DatabaseError(
                f"{path}: not a readable SQLite database ({err}); {REBUILD}"
            ) from None
        if found is None:
            self.close()
            raise DatabaseError(
                f"{path}: has no {TABLE!r} table, so it was not written by prepro.py"
            )

    def rows(self, sql: str, params: tuple[Any, ...], doing: str) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as err:
                raise _read_error(self.path, doing, err) from None

    def close(self) -> None:
        with self._lock:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                conn.close()
                self._conn = None  # type: ignore[assignment]


def _deflate(*parts: bytes | memoryview) -> tuple[int, bytes]:
    """(CRC-32, raw deflate) of ``parts`` back to back, at the fastest level: ISA-L's
    (``isal``, several times faster than zlib's level 1 for about the same size) when
    installed, else zlib's. Either is plain deflate."""
    lib: Any = _isal_zlib if _isal_zlib is not None else zlib
    compressor = lib.compressobj(1, lib.DEFLATED, -15)
    crc, out = 0, []
    for part in parts:
        crc = lib.crc32(part, crc)
        out.append(compressor.compress(part))
    out.append(compressor.flush())
    return crc, b"".join(out)


_ZIP_LIMIT = 0xFFFFFFFF  # sizes and offsets a zip without zip64 records can hold
_DOS_DATE_1980 = (1 << 5) | 1  # 1980-01-01, the earliest date a zip holds: archives repeat


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What ``np.savez_compressed`` writes, deflated faster (``_deflate``), with fixed
    timestamps: the same arrays give the same bytes, so a database's checksums repeat.

    A zip of ``<name>.npy`` members: local header, deflated data, then a central directory
    (PKWARE's APPNOTE 4.3). Archives too large for 32-bit fields go to ``zipfile`` with
    zip64 records, at zlib's speed."""
    members = []  # (file name, CRC-32, size, deflated bytes)
    for name, array in arrays.items():
        # The .npy header np.save writes for these dtypes (format 1.0), then the array's
        # memory as it lies: no copy of the data.
        array = np.ascontiguousarray(array)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, np.lib.format.header_data_from_array_1_0(array)
        )
        memory = array.reshape(-1).view(np.uint8).data
        crc, deflated = _deflate(header.getvalue(), memory)
        size = header.tell() + len(memory)
        members.append((f"{name}.npy".encode(), crc, size, deflated))
    total = sum(len(data) + 2 * (len(file) + 46) for file, _, _, data in members)
    if total >= _ZIP_LIMIT or any(size >= _ZIP_LIMIT for _, _, size, _ in members):
        return _npz_bytes_zip64(arrays)
    out = io.BytesIO()
    directory = []
    for file, crc, size, data in members:
        # version 2.0, no flags, deflated, 00:00 on _DOS_DATE_1980, CRC, sizes, name length
        common = struct.pack("<HHHHHIIIH", 20, 0, 8, 0, _DOS_DATE_1980, crc, len(data), size,
                             len(file))  # fmt: skip
        # made by version 2.0; no extra field, comment, disk number or attributes; offset
        directory.append(
            struct.pack("<IH", 0x02014B50, 20) + common
            + struct.pack("<HHHHII", 0, 0, 0, 0, 0, out.tell()) + file
        )  # fmt: skip
        out.write(struct.pack("<I", 0x04034B50) + common + struct.pack("<H", 0) + file + data)
    start = out.tell()
    out.write(b"".join(directory))
    n = len(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, out.tell() - start, start, 0))
    return out.getvalue()


def _npz_bytes_zip64(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buf.getvalue()


@dataclass
class FeatureChunk:
    """Features of one chunk as flat arrays; feature i spans ``offsets[i]:offsets[i+1]``."""

    conv_id: np.ndarray  # int64 [n]
    input_len: np.ndarray  # int32 [n]
    input_ids: np.ndarray  # uint16 [total]: GPT-2 ids fit in 16 bits
    token_type_ids: np.ndarray  # int32 [total]
    lm_labels: np.ndarray  # int32 [total], -1 = no label
    weights: np.ndarray  # float64 [total]: keeps the tsv's weights exact

    @property
    def offsets(self) -> np.ndarray:
        out = np.zeros(len(self.input_len) + 1, dtype=np.int64)
        np.cumsum(self.input_len, out=out[1:])
        return out

    def __len__(self) -> int:
        return len(self.conv_id)

    def to_bytes(self) -> bytes:
        """An ``.npz`` archive of the arrays (``np.load`` reads it), each member deflated."""
        return npz_bytes({name: getattr(self, name) for name in _ARRAYS})

    @classmethod
    def from_bytes(cls, blob: bytes) -> FeatureChunk:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return cls(**{name: npz[name] for name in npz.files})

    @classmethod
    def from_features(cls, conv_ids: list[int], features: list[Feature]) -> FeatureChunk:
        def flat(field: str, dtype: Any) -> np.ndarray:
            values = [v for f in features for v in getattr(f, field)]
            return np.asarray(values, dtype=dtype)

        return cls(
            conv_id=np.asarray(conv_ids, dtype=np.int64),
            input_len=np.asarray([f.input_len for f in features], dtype=np.int32),
            input_ids=flat("input_ids", np.uint16),
            token_type_ids=flat("token_type_ids", np.int32),
            lm_labels=flat("lm_labels", np.int32),
            weights=flat("weights", np.float64),
        )

    @classmethod
    def concat(cls, chunks: list[FeatureChunk]) -> FeatureChunk:
        return cls(**{name: np.concatenate([getattr(c, name) for c in chunks]) for name in _ARRAYS})

    def slice(self, start: int, stop: int) -> FeatureChunk:
        """Features ``start:stop`` as a chunk of their own."""
        offsets = self.offsets
        lo, hi = offsets[start], offsets[stop]
        return FeatureChunk(
            conv_id=self.conv_id[start:stop],
            input_len=self.input_len[start:stop],
            input_ids=self.input_ids[lo:hi],
            token_type_ids=self.token_type_ids[lo:hi],
            lm_labels=self.lm_labels[lo:hi],
            weights=self.weights[lo:hi],
        )

    def feature_dict(self, i: int, offsets: np.ndarray | None = None) -> dict[str, Any]:
        """Feature ``i`` with the stored field names of docs/REFERENCE.md §3, as plain Python values."""
        offsets = self.offsets if offsets is None else offsets
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        return {
            "conv_id": int(self.conv_id[i]),
            "input_ids": self.input_ids[lo:hi].tolist(),
            "position_ids": list(range(hi - lo)),
            "token_type_ids": self.token_type_ids[lo:hi].tolist(),
            "lm_labels": self.lm_labels[lo:hi].tolist(),
            "weights": self.weights[lo:hi].tolist(),
            "input_len": hi - lo,
        }


def _chunk_index(key: str) -> int:
    return int(key.rsplit("_", 1)[1])


_T = TypeVar("_T")


class FeatureDB:
    """Read access to a database folder written by ``prepro.py``.

    Opening checks the chunk rows against ``meta.json``: a missing, extra or renamed row is
    an error here, before any batch is made. ``check=False`` skips that, for
    ``verify_database``, which reports every problem rather than the first.
    """

    def __init__(self, folder: str | os.PathLike[str], *, check: bool = True):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatabaseError(f"{self.folder}: no such database folder (make one with prepro.py)")
        meta_path = self.folder / META_FILE
        self.db_file = self.folder / DB_FILE
        if not meta_path.is_file() or not self.db_file.is_file():
            raise DatabaseError(
                f"{self.folder}: not a complete prepro database "
                f"(expected {META_FILE} and {DB_FILE}; an interrupted prepro run leaves none)"
            )
        self.meta: dict[str, Any] = _read_meta(meta_path)
        self._chunks: list[dict[str, Any]] | None = self.meta.get("chunks")
        self._sqlite = _SqliteReader(self.db_file)
        try:
            rows = self._sqlite.rows(
                f'SELECT key FROM "{TABLE}" ORDER BY rowid', (), "reading the list of chunks"
            )
        except BaseException:
            self.close()
            raise
        self.stored_keys: list[Any] = [row[0] for row in rows]
        valid = {k for k in self.stored_keys if isinstance(k, str) and _KEY.fullmatch(k)}
        self.keys = sorted(valid, key=_chunk_index)
        self._key_set = set(self.keys)
        if check:
            problems = self.key_problems()
            if problems:
                self.close()
                raise DatabaseError(f"{self.db_file}: {problems[0]}; {_DAMAGED}")
        if self._chunks is None:
            logger.warning(
                "%s: meta.json holds no per-chunk checksums (written before they existed), so "
                "damage inside a chunk is found only by the npz CRCs; %s to add them",
                self.folder,
                REBUILD,
            )

    @property
    def has_checksums(self) -> bool:
        return self._chunks is not None

    def __len__(self) -> int:
        return int(self.meta["n_example"])

    def key_problems(self) -> list[str]:
        """How the stored chunk rows differ from the ``n_chunk`` chunks meta.json lists."""
        n_chunk = self.meta["n_chunk"]
        expected = [chunk_key(k) for k in range(n_chunk)]
        counts = Counter(k if isinstance(k, str) else repr(k) for k in self.stored_keys)
        missing = [k for k in expected if k not in counts]
        extra = [k for k in counts if k not in set(expected)]
        doubled = [k for k, n in counts.items() if n > 1]
        if not (missing or extra or doubled):
            return []
        problems = [f"holds {len(self.stored_keys)} chunk rows, meta.json says {n_chunk}"]
        if missing:
            problems.append(f"chunk rows missing: {_few(missing)}")
        if extra:
            problems.append(f"chunk rows meta.json does not list: {_few(extra)}")
        if doubled:
            problems.append(f"chunk rows stored twice: {_few(doubled)}")
        return ["; ".join(problems)]

    def expected_length(self, key: str) -> int:
        """The number of features chunk ``key`` holds according to meta.json."""
        index = _chunk_index(key)
        if self._chunks is not None:
            return int(self._chunks[index]["n_example"])
        size = int(self.meta["chunk_size"])
        return min(size, int(self.meta["n_example"]) - index * size)

    def _corrupt(self, key: str, why: str) -> DatabaseError:
        return DatabaseError(f"{self.db_file}: chunk {key!r} is corrupt ({why}); {_DAMAGED}")

    def _read_blob(self, key: str) -> bytes:
        if key not in self._key_set or _chunk_index(key) >= self.meta["n_chunk"]:
            raise DatabaseError(f"{self.db_file}: no chunk {key!r}")
        rows = self._sqlite.rows(
            f'SELECT value FROM "{TABLE}" WHERE key = ?', (key,), f"reading chunk {key!r}"
        )
        if not rows:
            raise DatabaseError(f"{self.db_file}: no chunk {key!r}; {_DAMAGED}")
        blob = rows[0][0]
        if not isinstance(blob, bytes):
            raise self._corrupt(key, f"stored as {type(blob).__name__}, not bytes")
        if self._chunks is not None:
            info = self._chunks[_chunk_index(key)]
            # Hashing costs little next to inflating the npz that follows.
            if len(blob) != info["bytes"] or hashlib.sha256(blob).hexdigest() != info["sha256"]:
                raise self._corrupt(
                    key,
                    f"{len(blob)} bytes whose SHA-256 is not the one meta.json gives for its "
                    f"{info['bytes']} bytes",
                )
        return blob

    def _decode(self, key: str, decode: Callable[[bytes], _T]) -> _T:
        blob = self._read_blob(key)
        try:
            return decode(blob)
        except _DECODE_ERRORS as err:
            reason = str(err) or type(err).__name__
            if "pickle" in reason:  # numpy's text would suggest loading it unsafely
                reason = "it holds pickled objects, which could run code when loaded: refused"
            raise self._corrupt(key, reason) from None

    def _check_lengths(self, key: str, input_len: np.ndarray) -> None:
        if input_len.dtype != _DTYPES["input_len"] or input_len.ndim != 1:
            raise self._corrupt(key, f"input_len is {input_len.dtype}[{input_len.shape}]")
        expected = self.expected_length(key)
        if len(input_len) != expected:
            raise self._corrupt(key, f"{len(input_len)} features, meta.json says {expected}")
        if len(input_len) and int(input_len.min()) < 0:
            raise self._corrupt(key, "a negative feature length")

    def read_chunk(self, key: str) -> FeatureChunk:
        chunk = self._decode(key, FeatureChunk.from_bytes)
        for name in _ARRAYS:
            array = getattr(chunk, name)
            if array.dtype != _DTYPES[name] or array.ndim != 1:
                raise self._corrupt(key, f"{name} is {array.dtype}[{array.shape}]")
        self._check_lengths(key, chunk.input_len)
        if len(chunk.conv_id) != len(chunk.input_len):
            raise self._corrupt(key, "conv_id and input_len differ in length")
        n_token = int(chunk.input_len.sum())
        for name in ("input_ids", "token_type_ids", "lm_labels", "weights"):
            if len(getattr(chunk, name)) != n_token:
                raise self._corrupt(key, f"{name} does not hold the {n_token} tokens of input_len")
        return chunk

    def read_lengths(self, key: str) -> np.ndarray:
        """Only the ``input_len`` array of a chunk (npz members are read one by one)."""

        def lengths(blob: bytes) -> np.ndarray:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                return npz["input_len"]

        input_len = self._decode(key, lengths)
        self._check_lengths(key, input_len)
        return input_len

    def iter_features(self) -> Iterator[dict[str, Any]]:
        """Every feature as a dict, in feature-id order."""
        for key in self.keys:
            chunk = self.read_chunk(key)
            offsets = chunk.offsets
            for i in range(len(chunk)):
                yield chunk.feature_dict(i, offsets)

    def close(self) -> None:
        sqlite = getattr(self, "_sqlite", None)
        if sqlite is not None:
            sqlite.close()

    def __enter__(self) -> FeatureDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class VerifyResult:
    """What ``verify_database`` found; ``problems`` is empty for a sound database."""

    folder: Path
    problems: list[str] = field(default_factory=list)
    n_chunk: int = 0
    n_example: int = 0
    n_bytes: int = 0
    has_checksums: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_database(folder: str | os.PathLike[str]) -> VerifyResult:
    """Check every page (SQLite's integrity check) and every chunk (digest, shape, feature
    count and ids) of a database against its meta.json."""
    result = VerifyResult(Path(folder))
    try:
        db = FeatureDB(folder, check=False)
    except DatabaseError as err:
        result.problems.append(str(err))
        return result
    with db:
        result.has_checksums = db.has_checksums
        problems = result.problems
        try:
            # Damage in a page that no chunk read touches (an index, free space) shows here.
            rows = db._sqlite.rows("PRAGMA integrity_check(10)", (), "SQLite integrity check")
        except DatabaseError as err:
            problems.append(str(err))
        else:
            if [tuple(row) for row in rows] != [("ok",)]:
                # A row can hold several lines, under a "*** in database main ***" heading.
                lines = [line for row in rows for line in str(row[0]).splitlines()]
                problems.extend(
                    f"{db.db_file}: SQLite integrity check: {line}"
                    for line in lines
                    if line.strip() and not line.startswith("***")
                )
        problems.extend(f"{db.db_file}: {p}" for p in db.key_problems())
        size = int(db.meta["chunk_size"])
        for key in db.keys:
            if _chunk_index(key) >= db.meta["n_chunk"]:
                continue  # reported by key_problems
            try:
                chunk = db.read_chunk(key)
            except DatabaseError as err:
                problems.append(str(err))
                continue
            first = _chunk_index(key) * size
            if not np.array_equal(chunk.conv_id, np.arange(first, first + len(chunk))):
                problems.append(
                    f"{db.db_file}: chunk {key!r}: feature ids are not "
                    f"{first}..{first + len(chunk) - 1} (§3: they count from 0 in file order)"
                )
            result.n_chunk += 1
            result.n_example += len(chunk)
            result.n_bytes += int(sum(getattr(chunk, name).nbytes for name in _ARRAYS))
        if not problems and result.n_example != len(db):
            problems.append(
                f"{db.db_file}: holds {result.n_example} features, meta.json says {len(db)}"
            )
    return result


class FeatureDBWriter:
    """Writes chunks into a temporary folder that ``commit`` renames into place.

    Until ``commit`` the final folder does not exist, so an interrupted run never
    leaves a database that looks complete. A write that fails (a full disk) raises
    ``DatabaseError``; ``abort`` then removes the temporary folder, and an earlier
    database under the final name is left as it was.
    """

    def __init__(self, folder: str | os.PathLike[str], chunk_size: int, overwrite: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not overwrite:
            raise DatabaseError(
                f"{self.folder} exists already; move it away or pass --overwrite to replace it"
            )
        self.chunk_size = chunk_size
        self.tmp = temp_sibling(self.folder)
        try:
            self.tmp.mkdir(parents=True)
        except OSError as err:
            raise self._write_error("creating the database folder", err) from None
        self.db_file = self.tmp / DB_FILE
        self._pending: list[FeatureChunk] = []
        self._pending_len = 0
        self._chunks: list[dict[str, Any]] = []
        self.n_chunk = 0
        self.n_example = 0
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = sqlite3.connect(self.db_file, timeout=BUSY_TIMEOUT_S)
            # No fsync per chunk: the folder counts only once renamed, and commit syncs it then.
            self._conn.execute("PRAGMA synchronous = OFF")
            self._conn.execute(CREATE_TABLE)
            self._conn.commit()
        except (sqlite3.Error, OSError) as err:
            self.abort()
            raise self._write_error("creating the database", err) from None

    def _write_error(self, doing: str, err: BaseException) -> DatabaseError:
        hint = (
            "the disk is full: free space and run prepro.py again"
            if _is_disk_full(err)
            else "check that the folder is writable"
        )
        return DatabaseError(
            f"cannot write {self.folder}: {doing} in {self.tmp}: {_reason(err)}; {hint} "
            f"(an earlier {self.folder.name} is left as it was)"
        )

    def stale_temp_folders(self) -> list[Path]:
        """Temporary folders for the same database that a killed earlier run left behind."""
        pattern = f".{self.folder.name}.tmp-*"
        return sorted(p for p in self.folder.parent.glob(pattern) if p != self.tmp and p.is_dir())

    def add(self, chunk: FeatureChunk) -> None:
        """Queue features (ids already assigned); full chunks are written as they fill."""
        if len(chunk) == 0:
            return
        self._pending.append(chunk)
        self._pending_len += len(chunk)
        self.n_example += len(chunk)
        while self._pending_len >= self.chunk_size:
            merged = FeatureChunk.concat(self._pending)
            self._write(merged.slice(0, self.chunk_size))
            rest = merged.slice(self.chunk_size, len(merged))
            self._pending = [rest] if len(rest) else []
            self._pending_len = len(rest)

    def _write(self, chunk: FeatureChunk) -> None:
        assert self._conn is not None, "write after commit or abort"
        key, blob = chunk_key(self.n_chunk), chunk.to_bytes()
        try:
            with self._conn:  # one transaction per chunk, rolled back if it fails
                self._conn.execute(f'INSERT INTO "{TABLE}" (key, value) VALUES (?, ?)', (key, blob))
        except (sqlite3.Error, OSError) as err:
            raise self._write_error(f"writing chunk {key!r}", err) from None
        self._chunks.append(
            {
                "n_example": len(chunk),
                "bytes": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(),
            }
        )
        self.n_chunk += 1

    def commit(self, meta: dict[str, Any], tokenizer: Any = None) -> Path:
        """Write the last chunk, meta.json and tokenizer files, then move the folder into place."""
        if self._pending:
            self._write(FeatureChunk.concat(self._pending))
            self._pending, self._pending_len = [], 0
        assert self._conn is not None, "commit after commit or abort"
        meta_file = self.tmp / META_FILE
        full_meta = {
            "format": FORMAT_VERSION,
            "n_example": self.n_example,
            "n_chunk": self.n_chunk,
            "chunk_size": self.chunk_size,
            **meta,
            "chunks": self._chunks,
        }
        doing = f"closing {DB_FILE}"
        try:
            self._conn.close()
            self._conn = None
            _fsync(self.db_file)
            if tokenizer is not None:
                doing = "saving the tokenizer files"
                _save_tokenizer(tokenizer, self.tmp)
            doing = f"writing {META_FILE}"
            meta_file.write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")
            _fsync(meta_file)
        except (sqlite3.Error, OSError) as err:
            self.abort()  # a half-written folder would hold on to the space that ran out
            raise self._write_error(doing, err) from None
        return replace_folder(self.tmp, self.folder)

    def abort(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        except sqlite3.Error:
            pass  # the folder goes anyway
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
