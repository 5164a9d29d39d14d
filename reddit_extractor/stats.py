"""Skip counting, per-item skip log and bad-record messages."""

from __future__ import annotations

import sys
from collections import Counter
from typing import IO

from lsp_common.atomic import write_text_atomic

from .errors import StrictError

# Bad records are shown on stderr up to this many per run; all of them go to the log.
MAX_SHOWN = 10


class Report:
    """Counts skipped items by reason and logs them, one line per item.

    Log lines follow the published tool's stderr format:
    ``skip<TAB>reason<TAB>subreddit<TAB>domain<TAB>text<TAB>detail``.
    """

    def __init__(self, log: IO[str] | None = None, strict: bool = False) -> None:
        self.counts: Counter[str] = Counter()
        self.log = log
        self.strict = strict
        self.shown = 0

    def skip(self, reason: str, line: str | None = None) -> None:
        self.counts[reason] += 1
        if line is not None and self.log is not None:
            self.log.write(line + "\n")

    def bad(self, reason: str, message: str) -> None:
        """A malformed input record: counted, logged, shown (a few), fatal with --strict."""
        self.counts[reason] += 1
        if self.log is not None:
            self.log.write(f"bad\t{reason}\t{message}\n")
        if self.strict:
            raise StrictError(message)
        if self.shown < MAX_SHOWN:
            print(f"warning: {message} (skipped)", file=sys.stderr)
        elif self.shown == MAX_SHOWN:
            print("warning: more bad records; see the log and skips file", file=sys.stderr)
        self.shown += 1

    def merge(self, counts: Counter[str]) -> None:
        self.counts.update(counts)


def write_counts(path: str, counts: Counter[str]) -> None:
    """reason<TAB>count, sorted by reason, written atomically."""
    write_text_atomic(path, "".join(f"{k}\t{v}\n" for k, v in sorted(counts.items())))
