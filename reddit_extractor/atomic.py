"""Write-then-rename helpers, so an interrupted run never leaves a finished-looking file."""

from __future__ import annotations

import contextlib
import gzip
import os
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
