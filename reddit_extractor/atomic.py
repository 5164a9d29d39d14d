"""Write-then-rename helpers, so an interrupted run never leaves a finished-looking file."""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from typing import IO


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
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


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
            fh = gzip.open(tmp, "wt", encoding="utf-8", compresslevel=level, newline="", errors=errors)
        else:
            fh = open(tmp, "w", encoding="utf-8", newline="", errors=errors)
        with fh:
            yield fh


def write_text(path: str, text: str) -> None:
    """Atomically replace ``path`` with ``text``."""
    with atomic_text(path) as fh:
        fh.write(text)
