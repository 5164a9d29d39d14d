"""Reading user text files with precise error locations; checking outputs before the work.
(Outputs are written with lsp_common.atomic.)"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from lsp_common.cli import UserError


class InputError(UserError):
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
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Line and column of the bad byte (lines counted as read_lines counts them below).
        head = raw[: exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        line = head.count(b"\n") + 1
        column = len(head) - (head.rfind(b"\n") + 1) + 1
        raise InputError(
            path,
            line,
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {column} "
            f"({exc.reason}); save the file as UTF-8",
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


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Refuse, before any work is done, an output path that cannot be written as a file or
    that names one of the inputs (writing it would destroy that input)."""
    target = Path(path)
    if target.is_dir():
        raise InputError(path, None, "is a folder; give the output a file name")
    for folder in [target.parent, *target.parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise InputError(path, None, f"cannot be written: {folder} is not a folder")
            break
    if target.exists():
        for item in inputs:
            if item is not None and Path(item).exists() and os.path.samefile(item, target):
                raise InputError(
                    path, None, "is also an input file; writing the output there would destroy it"
                )
