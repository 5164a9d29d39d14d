"""Write-then-rename helpers, so an interrupted run never leaves a finished-looking file
(or, with ``replace_set``, a finished-looking set of files)."""

from __future__ import annotations

import contextlib
import glob
import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO

from .errors import UserError


def current_umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary file lives in the same folder so that os.replace is an atomic rename.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder
        )
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write {path}: a file is in the way of its folder") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        # Name the output, not the temporary file.
        reason = "it is a folder" if os.path.isdir(path) else (exc.strerror or str(exc))
        raise UserError(f"cannot write {path}: {reason}") from None


def check_outputs(paths: list[str]) -> None:
    """Refuse, before any work, output paths that are folders: the rename at the end would
    fail after the other outputs of the run were already in place."""
    for path in paths:
        if os.path.isdir(path):
            raise UserError(f"cannot write {path}: it is a folder (remove or rename it)")


@contextlib.contextmanager
def atomic_text(
    path: str, compress: bool = False, level: int = 1, errors: str = "strict"
) -> Iterator[IO[str]]:
    """Open a text file (optionally gzip) for writing under a temporary name, then rename.

    ``errors`` as for open(): "surrogatepass" lets lone surrogates from JSON escapes
    through the intermediate files, "backslashreplace" keeps logs writable.
    """
    with atomic_path(path) as tmp:
        if compress:
            # newline="" keeps "\n" as written: the format is the same on every platform.
            fh = gzip.open(
                tmp, "wt", encoding="utf-8", compresslevel=level, newline="", errors=errors
            )
        else:
            fh = open(tmp, "w", encoding="utf-8", newline="", errors=errors)
        with fh:
            yield fh


def write_text(path: str, text: str) -> None:
    """Atomically replace ``path`` with ``text``."""
    with atomic_text(path) as fh:
        fh.write(text)


def work_folder(folder: str, name: str) -> str:
    """A new hidden folder ``folder/.NAME.XXXX.tmp`` to build outputs in (same file system
    as their final place, so they can be renamed there).

    Leftovers of a killed earlier run for the same ``name`` are removed first: a killed
    run cannot clean up, and a month's conv output can be gigabytes. Two runs for the same
    name at once are not supported (make never runs one month twice at once).
    """
    try:
        os.makedirs(folder, exist_ok=True)
        for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
            if os.path.isdir(stale) and not os.path.islink(stale):
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(stale)
        work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"cannot write in {folder}: a file is in the way") from None
    except OSError as exc:
        raise UserError(f"cannot write in {folder}: {exc.strerror or exc}") from None
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
    for _, dst in pairs:  # before anything moves: a folder in the way would stop it halfway
        if os.path.isdir(dst):
            raise UserError(f"cannot write {dst}: it is a folder (remove or rename it)")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.remove(marker)
        for src, dst in files:
            os.replace(src, dst)
        os.replace(marker_src, marker)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename2 or exc.filename}: {exc.strerror}") from None
