#!/usr/bin/env python
"""Build the multi-reference test file (test.refs.txt) from extracted test instances.

create-multiref.py --data test.tsv.gz --testids test-multi-refs-ids.txt --out test.refs.txt
"""

from __future__ import annotations

import argparse
import sys

from reddit_extractor.errors import run_cli
from reddit_extractor.multiref import build


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="create-multiref.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="conv output of the test months (gzip or plain)")
    p.add_argument(
        "--testids",
        required=True,
        help="reference ids: multiref<TAB>score,link_id,parent_id,comment_id<TAB>...",
    )
    p.add_argument("--out", required=True, help="output multi-reference file")
    args = p.parse_args(argv)

    def work() -> None:
        written, dropped = build(args.data, args.testids, args.out)
        print(
            f"wrote {written} test instances to {args.out}; {dropped} reference(s) left out",
            file=sys.stderr,
        )

    return run_cli(p.prog, work, f"{args.out} was not written")


if __name__ == "__main__":
    sys.exit(main())
