"""Errors that are the user's doing (bad path, bad option): reported without a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO


class UserError(Exception):
    """A problem the user can fix: the message names the file/option and the reason."""


def utf8_error_where(open_binary: Callable[[], IO[bytes]]) -> str:
    """'line N, column C (byte 0xXX)' of the first invalid UTF-8 byte of a text file,
    found again from its start (text readers decode ahead, so their line count lags)."""
    try:
        with open_binary() as fh:
            for n, line in enumerate(fh, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"line {n}, column {exc.start + 1} (byte 0x{line[exc.start]:02x})"
    except (OSError, EOFError):
        pass
    return "unknown position"
