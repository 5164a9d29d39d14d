"""Reading user text files with precise error locations, and atomic writes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


class InputError(Exception):
    """A problem with a user-supplied file: the CLIs print it and exit 2, no traceback."""

    def __init__(self, path: str | os.PathLike | None, line: int | None, reason: str):
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = reason
        where = self.path or ""
        if where and line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {reason}" if where else reason)


def read_lines(path: str | os.PathLike, allow_empty: bool = False) -> list[str]:
    """Lines of a UTF-8 file without their line ends.

    The DSTC scripts iterate over ``open(path, encoding='utf-8')``, whose universal-newline
    mode also ends a line at a lone ``\\r``; reading the same way keeps line counts equal
    to theirs.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(path, None, "no such file")
    if p.is_dir():
        raise InputError(path, None, "is a folder, expected a text file")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            path, line, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        # A BOM would otherwise glue itself to the first key or word.
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines and not allow_empty:
        raise InputError(path, None, "file is empty")
    return lines


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write through a temporary name in the same folder, then rename over the target, so
    a reader never sees a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_lines_atomic(path: str | os.PathLike, lines: Iterable[str]) -> None:
    write_atomic(path, "".join(line + "\n" for line in lines))
