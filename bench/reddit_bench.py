#!/usr/bin/env python
"""Throughput of the Reddit extractor (extract + conv) on a synthetic month.

Builds a synthetic Pushshift month (default ~200k comments, zstd), then times, in this
process:

* baseline: decompress both dumps and json-parse every line (the least any extractor
  must do);
* extract and conv with the published settings.

and prints comments per second for each and the ratio (extract + conv) / baseline.

  python bench/reddit_bench.py [--comments 200000] [--workers 0] [--format .zst]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from reddit_extractor.blocklist import PhraseMatcher  # noqa: E402
from reddit_extractor.conv import ConvOptions, conv_month  # noqa: E402
from reddit_extractor.dumps import DumpReader, find_dump  # noqa: E402
from reddit_extractor.extract import ExtractOptions, extract_month  # noqa: E402
from tests.reddit_extractor import synth  # noqa: E402

MONTH = "2012-01"


def baseline(folder: str) -> int:
    n = 0
    for kind in ("RS", "RC"):
        for raw in DumpReader(find_dump(folder, kind, MONTH)):
            try:
                json.loads(raw.decode("utf-8"))
            except ValueError:
                pass
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comments", type=int, default=200_000)
    p.add_argument("--submissions", type=int, default=0, help="default: comments / 25")
    p.add_argument("--format", default=".zst", choices=[".zst", ".xz", ".bz2", ".gz", ""])
    p.add_argument("--workers", type=int, default=0, help="conv workers (0: all cores, 1: serial)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="reddit_bench.")
    try:
        inp = os.path.join(tmp, "in")
        os.makedirs(inp)
        t = time.perf_counter()
        subs, comments = synth.random_month(
            args.submissions or max(10, args.comments // 25), args.comments, seed=args.seed
        )
        synth.write_month(inp, MONTH, subs, comments, args.format)
        print(
            f"synthetic month: {len(subs)} submissions, {len(comments)} comments "
            f"({time.perf_counter() - t:.1f} s to build)"
        )
        del subs, comments

        t = time.perf_counter()
        lines = baseline(inp)
        t_base = time.perf_counter() - t

        out = os.path.join(tmp, "out")
        t = time.perf_counter()
        extract_month(ExtractOptions(month=MONTH, input_dir=inp, output_dir=out))
        t_extract = time.perf_counter() - t

        opts = ConvOptions(
            month=MONTH,
            output_dir=out,
            clean=True,
            min_score=1,
            min_depth=2,
            max_depth=5,
            use_title=0,
            leaves_only=1,
            bl_words=PhraseMatcher(synth.BLOCKED_WORDS),
            use_bl_words=True,
            bl_subreddits={synth.BLOCKED_SUBREDDIT},
            parallel=args.workers != 1,
            workers=args.workers,
        )
        t = time.perf_counter()
        selected, _ = conv_month(opts)
        t_conv = time.perf_counter() - t

        n = args.comments
        total = t_extract + t_conv
        rows = [
            (f"baseline: decompress + json.loads ({lines} lines)", t_base, lines, "lines"),
            ("extract", t_extract, n, "comments"),
            (f"conv ({selected} instances)", t_conv, n, "comments"),
            ("extract + conv", total, n, "comments"),
        ]
        for label, secs, count, unit in rows:
            print(f"{label:<48} {secs:7.2f} s {count / secs:10.0f} {unit}/s")
        print(f"ratio (extract + conv) / baseline: {total / t_base:.2f}")
        if args.keep:
            print(f"kept {tmp}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
