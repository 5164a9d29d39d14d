"""What every command line of the toolkit shares: user errors reported in one line with an
exit status instead of a traceback, and boolean flags written as words."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix; the message names the file, line or option and the reason.

    ``exit_status`` is what the command exits with: 2 by default, as argparse does for a
    command line that cannot work; subclasses for a failure of the work itself (a download
    that broke off, a run that cannot go on) use 1. ``label`` follows the program's name.
    """

    exit_status = 2
    label = "error"


def run_cli(
    prog: str,
    work: Callable[[], object],
    interrupted: str,
    *,
    report_os_errors: bool = True,
) -> int:
    """Run ``work`` for the command line ``prog`` and return the exit status.

    ``work``'s own return value when it is an int, else 0. A UserError prints ``prog:
    LABEL: message`` and gives its ``exit_status``; any other OSError one line and 1 (or
    propagates as it is when ``report_os_errors`` is false); Ctrl-C prints ``prog:
    interrupted; `` and ``interrupted`` (what the interruption left behind) and gives 130.
    """
    try:
        status = work()
    except UserError as exc:
        print(f"{prog}: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_status
    except OSError as exc:
        if not report_os_errors:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f", "off"})


def parse_bool(value: str | bool) -> bool:
    """An argparse ``type`` for booleans written as words: true/false in any case, 1/0,
    yes/no, on/off. (Python's ``bool("False")`` is True, which is why the published
    scripts' ``type=bool`` flags could not be turned off.)"""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def first_line(err: BaseException | None) -> str:
    """The first non-blank line of ``err``'s message, else its type name: what a one-line
    report keeps of a library's paragraph-long error (huggingface_hub wraps a network error
    in one; transformers names the bad config field on the first line)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
