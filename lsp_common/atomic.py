"""Atomic writes for files and folders: write under a temporary sibling name, then rename.

A rename within one folder is atomic, so a run killed at any moment leaves either the old
content or the new one under the final name, never a half-written file that looks done.
Temporary names start with a dot and carry a random tag, so concurrent writers of
different targets never collide and leftovers are easy to recognise.

This is the one place the toolkit writes outputs from. An output that cannot be written
raises OutputError, which names the output (not its temporary name) and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import gzip
import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from lsp_common.cli import UserError

TRASH_PREFIX = ".trash-"


class OutputError(UserError, OSError):
    """An output that cannot be written (read-only folder, a file in the way, a full disk at
    the final rename). Still an OSError for callers that handle those."""


def current_umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot write {path}: a file is in the way of its folder") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def temp_sibling(path: Path) -> Path:
    """A hidden, randomly tagged sibling name for ``path`` (``.NAME.tmp-1a2b3c4d``), the form
    :func:`is_leftover` recognises."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


# Failures that only a write can meet: whatever the block was doing, the output is at fault.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _is_storage_error(exc: OSError, tmp: Path) -> bool:
    """Whether ``exc``, raised inside an atomic write's block, is the output's fault (a full
    disk, a read-only file system, or any failure on the temporary file itself) rather than
    the block's own business (e.g. reading an input)."""
    if exc.filename is not None and os.fsdecode(exc.filename) == str(tmp):
        return True
    return exc.errno in _STORAGE_ERRNOS and exc.filename in (None, str(tmp))


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and the
    previous content of ``path``, if any, is left untouched.
    """
    path = Path(path)
    _make_parent(path)
    tmp = temp_sibling(path)
    try:
        try:
            yield tmp
        except OSError as exc:
            if _is_storage_error(exc, tmp):
                raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
            raise
        try:
            os.replace(tmp, path)
        except OSError as exc:
            reason = "it is a folder" if path.is_dir() else (exc.strerror or str(exc))
            raise OutputError(f"cannot write {path}: {reason}") from None
    finally:
        # On a read-only mount even this unlink fails (EROFS, though there is no file): its
        # error must not replace the one that says why the write failed.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text(
    path: str | os.PathLike[str], compress: bool = False, level: int = 1, errors: str = "strict"
) -> Iterator[IO[str]]:
    """Open a UTF-8 text file (gzip when ``compress``) under a temporary name; rename it onto
    ``path`` when the block ends without an exception.

    ``errors`` as for open(): "surrogatepass" lets lone surrogates from JSON escapes through
    intermediate files, "backslashreplace" keeps logs writable whatever they quote.
    """
    # newline="": "\n" is written as it is, so files are the same on every platform.
    with atomic_file(path) as tmp:
        if compress:
            # The gzip header names the final file (not the random temporary) and carries no
            # time stamp, so the same content gives the same bytes on every run.
            raw = open(tmp, "wb")
            gz = gzip.GzipFile(
                filename=Path(path).name, mode="wb", compresslevel=level, fileobj=raw, mtime=0
            )
            fh: IO[str] = io.TextIOWrapper(gz, encoding="utf-8", newline="", errors=errors)
            try:
                with fh:
                    yield fh
            finally:
                raw.close()
        else:
            with open(tmp, "w", encoding="utf-8", newline="", errors=errors) as fh:
                yield fh


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8)."""
    with atomic_text(path) as f:
        f.write(text)
    return Path(path)


def write_lines_atomic(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Replace ``path`` with ``lines`` (each given without its newline), streamed."""
    with atomic_text(path) as f:
        for line in lines:
            f.write(line + "\n")
    return Path(path)


def refuse_folders(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse, before any work, output paths that are folders: the rename at the end would
    fail after the work was done (or after other outputs of the run were in place)."""
    for path in paths:
        if os.path.isdir(path):
            raise OutputError(f"cannot write {path}: it is a folder (remove or rename it)")


def work_folder(folder: str | os.PathLike[str], name: str) -> str:
    """A new hidden folder ``folder/.NAME.XXXX.tmp`` to build outputs in, on the same file
    system as their final place so that they can be renamed there.

    What a killed earlier run for the same ``name`` left (its work folder, or the trash of a
    replaced folder) is removed first: a killed run cannot clean up after itself. Two runs
    for the same ``name`` at once are not supported.
    """
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        base = glob.escape(folder)
        stale = glob.glob(os.path.join(base, f".{glob.escape(name)}.*.tmp"))
        stale += glob.glob(os.path.join(base, f"{TRASH_PREFIX}{glob.escape(name)}-*"))
        for path in stale:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
        work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"cannot write in {folder}: a file is in the way") from None
    except OSError as exc:
        raise OutputError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    os.chmod(work, 0o777 & ~current_umask())  # mkdtemp makes 0700
    return work


def replace_set(pairs: list[tuple[str, str]]) -> None:
    """Rename each finished file ``src`` onto its output ``dst``, as one set.

    The last pair is the set's completion marker: the old marker is removed before the
    first rename and the new one is renamed last. Whenever the marker exists, every file of
    the set beside it comes from the same run; a kill in between leaves no marker (a rerun
    writes the whole set again). The outputs must be in one folder that has no readers
    which ignore the marker.
    """
    *files, (marker_src, marker) = pairs
    refuse_folders(dst for _, dst in pairs)  # before anything moves: else it stops halfway
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(marker)
        for src, dst in files:
            os.replace(src, dst)
        os.replace(marker_src, marker)
    except OSError as exc:
        name = exc.filename2 or exc.filename
        raise OutputError(f"cannot write {name}: {exc.strerror}") from None


def remove_folder(folder: str | os.PathLike[str]) -> None:
    """Delete a folder so that a kill half-way never leaves a partial copy under its name.

    It is first renamed to a hidden ``.trash-*`` sibling (atomic), then removed; what a
    killed process leaves is found with :func:`is_leftover`.
    """
    folder = Path(folder)
    trash = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def replace_folder(tmp: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``tmp`` onto ``folder``, replacing what was there.

    Between the two renames ``folder`` is briefly absent, never partial.
    """
    tmp, folder = Path(tmp), Path(folder)
    if folder.exists():
        old = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except BaseException:
            os.replace(old, folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``folder``; on success it replaces ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, folder)
    finally:
        if tmp.exists():  # only after a failure: on success it was renamed away
            shutil.rmtree(tmp, ignore_errors=True)


def is_leftover(entry: Path) -> bool:
    """Whether ``entry`` is a temporary or trash sibling that a killed writer left behind."""
    name = entry.name
    return name.startswith(TRASH_PREFIX) or (name.startswith(".") and ".tmp-" in name)
