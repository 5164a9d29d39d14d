"""SHA-256 checksums beside saved files, in the format of coreutils' ``sha256sum``.

A single file ``NAME`` gets a sidecar ``NAME.sha256``; a folder gets one ``SHA256SUMS``
listing the files that matter in it. Both hold lines ``<64 hex digits>  <file name>``, so
``sha256sum -c NAME.sha256`` (run in the file's folder) checks them by hand as well.

Verification distinguishes three cases: the checksum matches; it does not (the file was
damaged or replaced: :class:`ChecksumError`); or there is no checksum at all (a file from
elsewhere, which the caller loads with a warning).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from lsp_common.atomic import write_text_atomic
from lsp_common.cli import UserError

SIDECAR_SUFFIX = ".sha256"
SUMS_FILE = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")


class ChecksumError(UserError):
    """A file whose content does not match its recorded checksum, or an unreadable record."""

    exit_status = 1


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``NAME.sha256`` beside ``NAME``."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _line(digest: str, name: str) -> str:
    return f"{digest}  {name}\n"


def parse_sums(text: str, source: str | os.PathLike[str]) -> dict[str, str]:
    """``{file name: hex digest}`` from ``sha256sum`` output; a malformed line is an error
    naming ``source`` and the line number."""
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.rstrip("\r"))
        if match is None:
            raise ChecksumError(
                f"{source}:{lineno}: not a sha256sum line (expected '<64 hex digits>  <file>')"
            )
        sums[match.group(2)] = match.group(1).lower()
    if not sums:
        raise ChecksumError(f"{source}: holds no checksum")
    return sums


def _read_sums(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ChecksumError(f"{path}: unreadable checksum file ({err})") from None
    return parse_sums(text, path)


def write_sidecar(path: str | os.PathLike[str], digest: str | None = None) -> Path:
    """Write ``path.sha256`` atomically (``digest`` if already computed)."""
    path = Path(path)
    digest = digest or file_sha256(path)
    return write_text_atomic(sidecar_path(path), _line(digest, path.name))


def write_sums(folder: str | os.PathLike[str], names: Iterable[str]) -> Path:
    """Write ``folder/SHA256SUMS`` (atomically) for the files ``names`` inside it."""
    folder = Path(folder)
    text = "".join(_line(file_sha256(folder / name), name) for name in sorted(names))
    return write_text_atomic(folder / SUMS_FILE, text)


def _mismatch(path: Path, record: Path) -> ChecksumError:
    return ChecksumError(
        f"{path}: checksum mismatch with {record}: the file is damaged or was replaced "
        "(copy it again from its source)"
    )


def verify_file(path: str | os.PathLike[str]) -> bool:
    """Check ``path`` against its sidecar: True when it matches, False when there is no
    sidecar; raise :class:`ChecksumError` when it does not match."""
    path = Path(path)
    record = sidecar_path(path)
    if not record.is_file():
        return False
    sums = _read_sums(record)
    if len(sums) != 1:
        raise ChecksumError(f"{record}: expected one checksum line, found {len(sums)}")
    (expected,) = sums.values()
    if file_sha256(path) != expected:
        raise _mismatch(path, record)
    return True


def verify_folder(folder: str | os.PathLike[str], names: Iterable[str]) -> bool:
    """Check the files ``names`` of ``folder`` against its ``SHA256SUMS``.

    False when the folder has no ``SHA256SUMS``. With one, every listed file must exist
    and match, and every file of ``names`` must be listed; otherwise :class:`ChecksumError`.
    """
    folder = Path(folder)
    record = folder / SUMS_FILE
    if not record.is_file():
        return False
    sums = _read_sums(record)
    for name in sums:
        if not (folder / name).is_file():
            raise ChecksumError(f"{folder / name}: listed in {record} but missing")
    for name in names:
        if name not in sums:
            raise ChecksumError(f"{folder / name}: not listed in {record}")
        if file_sha256(folder / name) != sums[name]:
            raise _mismatch(folder / name, record)
    return True
