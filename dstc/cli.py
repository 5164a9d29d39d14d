"""The error handling shared by the command lines: a bad input file is one line and exit
status 2, a missing METEOR under --require_meteor or another OS error one line and 1,
Ctrl-C one line and 130; never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable

from dstc.meteor import MeteorUnavailable
from dstc.textio import InputError


def run_cli(prog: str, body: Callable[[], int], interrupted: str) -> int:
    """``body()``'s exit status, or the status of the error it raised, printed after
    ``prog``; ``interrupted`` says what Ctrl-C left behind (e.g. "no report was written")."""
    try:
        return body()
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except MeteorUnavailable as exc:
        print(f"{prog}: error: METEOR: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
