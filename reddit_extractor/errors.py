"""Errors that are the user's doing (bad path, bad option): reported without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO


class UserError(Exception):
    """A problem the user can fix: the message names the file/option and the reason."""


class UsageError(UserError):
    """The command line itself cannot work (a malformed URL, a folder given as a file name):
    exit status 2, as argparse gives for its own usage errors, whatever the tool's status
    for other user errors."""


class StrictError(Exception):
    """Raised for a bad record when --strict is on."""


def run_cli(
    prog: str,
    work: Callable[[], object],
    interrupted: str,
    *,
    user_error_status: int = 2,
    report_os_errors: bool = True,
) -> int:
    """Run the work of the command line ``prog`` and return its exit status.

    0 when done; a UsageError (2), another UserError (``user_error_status``), a StrictError or an OSError (1, the
    latter re-raised as it is when ``report_os_errors`` is false) and Ctrl-C (130) become
    one line on stderr, ``prog: interrupted; `` followed by ``interrupted`` for Ctrl-C.
    """
    try:
        work()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return user_error_status
    except StrictError as exc:
        print(f"{prog}: error (--strict): {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if not report_os_errors:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
    return 0


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
