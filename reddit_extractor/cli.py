"""Extract DialoGPT training instances from one month of Pushshift Reddit dumps.

Two passes per month (docs/REFERENCE.md §8):

  reddit.py 2011-01 --task extract --reddit_input IN --reddit_output OUT
      reads IN/RS_2011-01.* and IN/RC_2011-01.* (.zst, .xz, .bz2, .gz or plain NDJSON)
      and writes OUT/extract/2011-01/{rs_subK,rc_subK}.tsv.gz and stat.tsv

  reddit.py 2011-01 --task conv --reddit_output OUT [filters...]
      writes OUT/conv/2011-01.tsv: link_id,parent_id,t1_id<TAB>CONTEXT<TAB>RESPONSE
      plus 2011-01.stat.tsv (per split), 2011-01.skips.tsv (skips by reason) and
      2011-01.log (one line per skipped target)

The published settings are --clean True --min_score 1 --min_depth 2 --max_depth 5
--use_title 0 --leaves_only 1 with word and subreddit blocklists.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from typing import Any

from lsp_common.cli import parse_bool
from reddit_extractor.blocklist import load_keys, load_subreddits, load_words
from reddit_extractor.conv import ConvOptions, conv_month
from reddit_extractor.download import download
from reddit_extractor.errors import UserError, run_cli
from reddit_extractor.extract import ExtractOptions, extract_month
from reddit_extractor.multiref import build

DOWNLOAD_DOC = """Download a Pushshift dump with resume (HTTP Range) and size check.

download.py URL DEST        e.g. download.py $U/comments/RC_2011-01.zst data/reddit/RC_2011-01.zst
"""

MULTIREF_DOC = """Build the multi-reference test file (test.refs.txt) from extracted test instances.

create-multiref.py --data test.tsv.gz --testids test-multi-refs-ids.txt --out test.refs.txt
"""


def month_arg(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(
            f"expected a month as YYYY-MM (month 01 to 12), got {value!r}"
        )
    return value


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def positive(value: str) -> int:
    n = _int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def non_negative(value: str) -> int:
    n = _int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def zero_one(value: str) -> int:
    n = _int(value)
    if n not in (0, 1):
        raise argparse.ArgumentTypeError(f"expected 0 or 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reddit.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flag: dict[str, Any] = {
        "type": parse_bool,
        "nargs": "?",
        "const": True,
        "metavar": "True|False",
    }
    p.add_argument(
        "dump_name", type=month_arg, help="month YYYY-MM: dumps RS_YYYY-MM.*, RC_YYYY-MM.*"
    )
    p.add_argument("--task", choices=["extract", "conv"], default="conv", help="pass to run [conv]")
    p.add_argument("--reddit_input", default="reddit_in", help="folder of the dumps [reddit_in]")
    p.add_argument(
        "--reddit_output",
        default="reddit_out",
        help="output folder: extract/ and conv/ are made in it [reddit_out]",
    )
    p.add_argument("--bl_words", help="word/phrase blocklist, one per line, '#' comments")
    p.add_argument("--bl_subreddits", help="subreddit blocklist, one per line, '#' comments")
    p.add_argument("--keep_keys", help="gzip keys of instances to keep (dep: extract, keep: conv)")
    p.add_argument("--discard_tgt_keys", help="gzip SHA-224 digests of turns to weight 0.0")
    p.add_argument("--ignore_keys", default=False, **flag, help="ignore the two key files [False]")
    p.add_argument("--max_len", type=positive, default=30, help="longest turn kept in a chain [30]")
    p.add_argument(
        "--max_len_type",
        choices=["w", "c"],
        default="w",
        help="max_len counts words (w) or raw characters (c) [w]",
    )
    p.add_argument(
        "--min_depth", type=positive, default=2, help="fewest turns, response included [2]"
    )
    p.add_argument("--max_depth", type=positive, default=10, help="most comment turns [10]")
    p.add_argument("--min_score", type=int, default=0, help="lowest score of a response [0]")
    p.add_argument(
        "--use_title", type=zero_one, default=1, help="1: the title is the first turn [1]"
    )
    p.add_argument(
        "--leaves_only",
        type=zero_one,
        default=0,
        help="1: only comments without replies are responses; turns get weights [0]",
    )
    p.add_argument(
        "--split_size",
        type=positive,
        default=500_000,
        help="submissions per split; conv holds one split in memory [500000]",
    )
    p.add_argument(
        "--parallel",
        default=True,
        **flag,
        help="conv: share each split's targets among worker processes; the output "
        "is the same either way [True]",
    )
    p.add_argument(
        "--workers",
        type=non_negative,
        default=0,
        help="worker processes with --parallel [0: all cores]",
    )
    p.add_argument("--clean", default=False, **flag, help="apply the cleaning filters [False]")
    p.add_argument(
        "--strict", default=False, **flag, help="stop at the first bad input record [False]"
    )
    return p


def run_task(args: argparse.Namespace) -> None:
    """The pass ``args.task`` for the month ``args.dump_name``."""
    if os.path.exists(args.reddit_output) and not os.path.isdir(args.reddit_output):
        raise UserError(f"--reddit_output {args.reddit_output!r} is a file, expected a folder")
    keep = discard = None
    if not args.ignore_keys:
        if args.keep_keys:
            keep = load_keys(args.keep_keys, args.task)
            if not keep:
                what = "keep keys" if args.task == "conv" else "keys"
                left_out = "target" if args.task == "conv" else "comment"
                print(
                    f"warning: --keep_keys {args.keep_keys!r} holds no {what}: every "
                    f"{left_out} will be left out",
                    file=sys.stderr,
                )
        if args.discard_tgt_keys:
            discard = load_keys(args.discard_tgt_keys, args.task)
    if args.task == "extract":
        extract_month(
            ExtractOptions(
                month=args.dump_name,
                input_dir=args.reddit_input,
                output_dir=args.reddit_output,
                split_size=args.split_size,
                keep_keys=keep,
                strict=args.strict,
            )
        )
    else:
        conv_month(
            ConvOptions(
                month=args.dump_name,
                output_dir=args.reddit_output,
                max_len=args.max_len,
                max_len_type=args.max_len_type,
                min_depth=args.min_depth,
                max_depth=args.max_depth,
                min_score=args.min_score,
                use_title=args.use_title,
                leaves_only=args.leaves_only,
                clean=args.clean,
                bl_words=load_words(args.bl_words),
                use_bl_words=bool(args.bl_words),
                bl_subreddits=load_subreddits(args.bl_subreddits) if args.bl_subreddits else None,
                keep_keys=keep,
                discard_keys=discard,
                parallel=args.parallel,
                workers=args.workers,
                strict=args.strict,
            )
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("reddit.py", lambda: run_task(args), "no partial output was kept")


def download_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="download.py", description=DOWNLOAD_DOC.split("\n\n")[0])
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


def multiref_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="create-multiref.py", description=MULTIREF_DOC.split("\n\n")[0]
    )
    p.add_argument("--data", required=True, help="conv output of the test months (gzip or plain)")
    p.add_argument(
        "--testids",
        required=True,
        help="reference ids: multiref<TAB>score,link_id,parent_id,comment_id<TAB>...",
    )
    p.add_argument("--out", required=True, help="output multi-reference file")
    args = p.parse_args(argv)

    def work() -> None:
        counts: Counter[str] = Counter()
        written, dropped = build(args.data, args.testids, args.out, counts)
        left_out = counts["not_multiref"] + counts["no_reference"]
        print(
            f"wrote {written} test instances to {args.out}; {dropped} reference(s) left out; "
            f"{left_out} of {counts['id_lines']} id line(s) left out",
            file=sys.stderr,
        )

    return run_cli(p.prog, work, f"{args.out} was not written")
