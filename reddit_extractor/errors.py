"""Errors that are the user's doing (bad path, bad option): reported without a traceback
by lsp_common.cli.run_cli."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from lsp_common.cli import UserError, run_cli

__all__ = ["DownloadError", "StrictError", "UsageError", "UserError", "run_cli", "utf8_error_where"]


class UsageError(UserError):
    """The command line itself cannot work (a malformed URL, a folder given as a file name):
    exit status 2, as argparse gives for its own usage errors."""


class DownloadError(UserError):
    """A download that failed (network, HTTP status, short file): exit status 1."""

    exit_status = 1


class StrictError(UserError):
    """A bad record when --strict is on: exit status 1."""

    exit_status = 1
    label = "error (--strict)"


def utf8_error_where(open_binary: Callable[[], AbstractContextManager[Iterable[bytes]]]) -> str:
    """'line N, column C (byte 0xXX)' of the first invalid UTF-8 byte of a text file,
    found again from its start (text readers decode ahead, so their line count lags)."""
    try:
        with open_binary() as fh:
            for n, line in enumerate(fh, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return f"line {n}, column {exc.start + 1} (byte 0x{line[exc.start]:02x})"
    except (OSError, EOFError, zlib.error):
        pass
    return "unknown position"
