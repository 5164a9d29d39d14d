#!/usr/bin/env python
"""Download a Pushshift dump with resume (HTTP Range) and size check.

download.py URL DEST        e.g. download.py $U/comments/RC_2011-01.zst data/reddit/RC_2011-01.zst
"""

from __future__ import annotations

import argparse
import sys

from reddit_extractor.download import download
from reddit_extractor.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="download.py", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="http(s) URL of the dump")
    p.add_argument("dest", help="local file; DEST.part holds an unfinished download")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation [60]")
    args = p.parse_args(argv)
    if not args.timeout > 0:
        p.error(f"--timeout must be a positive number of seconds, got {args.timeout}")

    # Usage errors (a malformed URL, a folder as destination) exit with 2 as argparse's
    # do; a failed download (network, HTTP status, short file) with 1. An OSError is not
    # caught, as before run_cli.
    def work() -> None:
        download(args.url, args.dest, timeout=args.timeout)

    return run_cli(p.prog, work, f"run again to resume {args.dest}.part", report_os_errors=False)


if __name__ == "__main__":
    sys.exit(main())
