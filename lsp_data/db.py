"""The feature database: a folder with ``db.sqlite`` (sqlitedict), ``meta.json`` and tokenizer files.

Each chunk of features is stored under ``chunk_{k}`` as one ``.npz`` blob (zip-deflated
numpy arrays, read with ``allow_pickle=False``): the features' tokens are concatenated
into flat arrays and ``input_len`` says where each one ends. Nothing in a database is a
pickle, so opening one received from elsewhere is safe.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlitedict import SqliteDict

from lsp_common.atomic import replace_folder, temp_sibling
from lsp_data.features import Feature

DB_FILE = "db.sqlite"
META_FILE = "meta.json"
TABLE = "features"
FORMAT_VERSION = 1
FIELDS = (
    "conv_id",
    "input_ids",
    "position_ids",
    "token_type_ids",
    "lm_labels",
    "weights",
    "input_len",
)


class DatabaseError(RuntimeError):
    """A database folder is missing, incomplete or not one this toolkit wrote."""


_ARRAYS = ("conv_id", "input_len", "input_ids", "token_type_ids", "lm_labels", "weights")


def _raw(value: bytes) -> bytes:
    return value


def _open(path: Path, flag: str) -> SqliteDict:
    # encode/decode pass bytes through: the default sqlitedict codec is pickle.
    return SqliteDict(str(path), tablename=TABLE, flag=flag, encode=_raw, decode=_raw)


def _check_sqlite(path: Path) -> None:
    """Refuse a damaged db.sqlite here, with its name, before sqlitedict's worker thread
    meets it (there it would end as a thread traceback)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise DatabaseError(
            f"{path}: not a readable SQLite database ({err}); rebuild it with prepro.py"
        ) from None
    if found is None:
        raise DatabaseError(f"{path}: has no {TABLE!r} table, so it was not written by prepro.py")


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
        """An ``.npz`` archive of the arrays, deflated at level 1.

        Level 1 compresses about 4x faster than ``np.savez_compressed``'s level 6 for files
        about 10% larger; the main prepro process compresses every chunk, so this keeps it
        from becoming the bottleneck when many workers tokenize.
        """
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for name in _ARRAYS:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, getattr(self, name), allow_pickle=False)
        return buf.getvalue()

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


class FeatureDB:
    """Read access to a database folder written by ``prepro.py``."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DatabaseError(f"{self.folder}: no such database folder (make one with prepro.py)")
        meta_path = self.folder / META_FILE
        db_path = self.folder / DB_FILE
        if not meta_path.is_file() or not db_path.is_file():
            raise DatabaseError(
                f"{self.folder}: not a complete prepro database "
                f"(expected {META_FILE} and {DB_FILE}; an interrupted prepro run leaves none)"
            )
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise DatabaseError(f"{meta_path}: unreadable ({err})") from None
        if self.meta.get("format") != FORMAT_VERSION:
            raise DatabaseError(
                f"{meta_path}: database format {self.meta.get('format')!r}, this toolkit reads "
                f"{FORMAT_VERSION}; rebuild it with prepro.py"
            )
        _check_sqlite(db_path)
        self._db = _open(db_path, "r")
        self.keys = sorted(self._db.keys(), key=_chunk_index)

    def __len__(self) -> int:
        return int(self.meta["n_example"])

    def _decode(self, key: str, decode: Any) -> Any:
        try:
            blob = self._db[key]
        except KeyError:
            raise DatabaseError(f"{self.folder}: no chunk {key!r}") from None
        try:
            return decode(blob)
        except (KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
            raise DatabaseError(f"{self.folder}: chunk {key!r} is corrupt ({err})") from None

    def read_chunk(self, key: str) -> FeatureChunk:
        return self._decode(key, FeatureChunk.from_bytes)

    def read_lengths(self, key: str) -> np.ndarray:
        """Only the ``input_len`` array of a chunk (npz members are read one by one)."""

        def lengths(blob: bytes) -> np.ndarray:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                return npz["input_len"]

        return self._decode(key, lengths)

    def iter_features(self) -> Iterator[dict[str, Any]]:
        """Every feature as a dict, in feature-id order."""
        for key in self.keys:
            chunk = self.read_chunk(key)
            offsets = chunk.offsets
            for i in range(len(chunk)):
                yield chunk.feature_dict(i, offsets)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeatureDBWriter:
    """Writes chunks into a temporary folder that ``commit`` renames into place.

    Until ``commit`` the final folder does not exist, so an interrupted run never
    leaves a database that looks complete.
    """

    def __init__(self, folder: str | os.PathLike[str], chunk_size: int, overwrite: bool = False):
        self.folder = Path(folder)
        if self.folder.exists() and not overwrite:
            raise DatabaseError(
                f"{self.folder} exists already; move it away or pass --overwrite to replace it"
            )
        self.chunk_size = chunk_size
        self.tmp = temp_sibling(self.folder)
        self.tmp.mkdir(parents=True)
        self._db = _open(self.tmp / DB_FILE, "n")
        self._pending: list[FeatureChunk] = []
        self._pending_len = 0
        self.n_chunk = 0
        self.n_example = 0

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
        self._db[f"chunk_{self.n_chunk}"] = chunk.to_bytes()
        self._db.commit()
        self.n_chunk += 1

    def commit(self, meta: dict[str, Any], tokenizer: Any = None) -> Path:
        """Write the last chunk, meta.json and tokenizer files, then move the folder into place."""
        if self._pending:
            self._write(FeatureChunk.concat(self._pending))
            self._pending, self._pending_len = [], 0
        self._db.close()
        if tokenizer is not None:
            tokenizer.save_pretrained(str(self.tmp))
        full_meta = {
            "format": FORMAT_VERSION,
            "n_example": self.n_example,
            "n_chunk": self.n_chunk,
            "chunk_size": self.chunk_size,
            **meta,
        }
        (self.tmp / META_FILE).write_text(json.dumps(full_meta, indent=2) + "\n", encoding="utf-8")
        return replace_folder(self.tmp, self.folder)

    def abort(self) -> None:
        try:
            self._db.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
