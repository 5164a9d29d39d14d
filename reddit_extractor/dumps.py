"""Find and stream Pushshift dumps (RS_/RC_YYYY-MM in any supported compression).

Lines come out exactly as the published tool saw them through ``io.TextIOWrapper``
(universal newlines: ``\\n``, ``\\r`` and ``\\r\\n`` all end a line), but the input is read in
chunks, so memory stays constant whatever the size of the dump.

A truncated or corrupt compressed stream is not fatal: the lines decoded before the fault
are kept, and the fault (with its compressed byte offset and the last good line number)
is reported through ``DumpReader.problems``.
"""

from __future__ import annotations

import bz2
import lzma
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import zstandard

from .errors import UserError

# Pushshift compresses with long-distance matching and a 2 GiB window: the default
# zstandard limit (128 MiB) refuses those frames.
ZSTD_MAX_WINDOW = 2**31
CHUNK = 1 << 20

# Searched in this order; the first one present wins.
EXTENSIONS = (".zst", ".xz", ".bz2", ".gz", "", ".json", ".ndjson")


def find_dump(folder: str, kind: str, month: str) -> str:
    """Path of ``{kind}_{month}`` with the first extension found in EXTENSIONS."""
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise UserError(f"input folder {folder!r} {what} (--reddit_input: the folder of the dumps)")
    tried = []
    for ext in EXTENSIONS:
        path = os.path.join(folder, f"{kind}_{month}{ext}")
        if os.path.isfile(path):
            return path
        tried.append(os.path.basename(path))
    raise UserError(f"no {kind} dump for {month} in {folder!r}: looked for {', '.join(tried)}")


class _Plain:
    eof = True

    def feed(self, data: bytes) -> bytes:
        return data


class _MultiStream:
    """Chunked decoder for formats whose files may hold several concatenated streams."""

    def __init__(self, factory) -> None:
        self._factory = factory
        self._dec = factory()
        self._fresh = True  # no byte fed to the current stream yet
        self.eof = True

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            self._fresh = False
            out.append(self._dec.decompress(data))
            if self._dec.eof:
                data = self._dec.unused_data
                self._dec = self._factory()
                self._fresh = True
                # gzip/xz files are sometimes padded with zero bytes after the last member
                if data and not data.strip(b"\0"):
                    data = b""
            else:
                data = b""
        self.eof = self._fresh
        return b"".join(out)


def _decoder(path: str):
    if path.endswith(".zst"):
        dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        return _MultiStream(dctx.decompressobj)
    if path.endswith(".xz"):
        return _MultiStream(lambda: lzma.LZMADecompressor(format=lzma.FORMAT_AUTO))
    if path.endswith(".bz2"):
        return _MultiStream(bz2.BZ2Decompressor)
    if path.endswith(".gz"):
        return _MultiStream(lambda: zlib.decompressobj(wbits=31))
    return _Plain()


@dataclass
class DumpReader:
    """Iterate over the lines (bytes, without terminator) of one dump file."""

    path: str
    problems: list[str] = field(default_factory=list)
    truncated: bool = False
    lines_read: int = 0

    def __iter__(self) -> Iterator[bytes]:
        dec = _decoder(self.path)
        name = os.path.basename(self.path)
        carry = b""
        offset = 0
        with open(self.path, "rb") as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                try:
                    data = dec.feed(chunk)
                except (zstandard.ZstdError, OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                    self.truncated = True
                    self.problems.append(
                        f"{name}: corrupt compressed data in the block starting at byte "
                        f"{offset} ({exc}); kept the {self.lines_read} lines before it"
                    )
                    break
                offset += len(chunk)
                if not data:
                    continue
                pieces = (carry + data).split(b"\n")
                carry = pieces.pop()
                yield from self._emit(pieces)
            if offset == 0 and not self.truncated:
                # Nothing to decode: no dump has an empty month (a failed download or copy?)
                self.truncated = True
                self.problems.append(f"{name}: file is empty (0 bytes); no record read from it")
            if not self.truncated and not dec.eof:
                self.truncated = True
                self.problems.append(
                    f"{name}: compressed stream ends at byte {offset} before its end marker "
                    f"(truncated file?); kept the {self.lines_read} complete lines before it"
                )
        if self.truncated:
            if carry:
                self.problems.append(
                    f"{name}: dropped the incomplete record after line {self.lines_read}"
                )
            return
        if carry:
            yield from self._emit([carry])

    def _emit(self, pieces: list[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if b"\r" in piece:
                # Universal newlines, as io.TextIOWrapper does: a lone "\r" ends a line too,
                # and "\r\n" is one terminator (the "\n" part was split on already).
                parts = piece.split(b"\r")
                if piece.endswith(b"\r"):
                    parts.pop()
                for part in parts:
                    self.lines_read += 1
                    yield part
            else:
                self.lines_read += 1
                yield piece
