"""Write the "human" system of a multi-reference file: one reference per instance, the
K-th (0-based, default 1 as in the DSTC-7 / DialoGPT scripts), in keys-file order."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a file (python dstc/NAME.py): Python put this folder first on sys.path, where
    # dstc.py and tokenizers.py would shadow the dstc package and Hugging Face's tokenizers.
    # The package itself comes from the installed toolkit (pip install -e .).
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(
        os.path.abspath(__file__)
    ):
        del sys.path[0]

import argparse  # noqa: E402

from dstc.multiref import nth_ref, read_keys, read_multiref  # noqa: E402
from dstc.textio import InputError, check_output  # noqa: E402
from lsp_common.atomic import write_lines_atomic  # noqa: E402
from lsp_common.cli import run_cli  # noqa: E402


def extract_human(
    multiref: str, keys_path: str, ref_index: int = 1, keyed: bool = False, ref_mode: str = "dstc"
) -> list[str]:
    """Lines of the human system: ``REF`` (or ``KEY<TAB>REF`` with ``keyed``) per key."""
    key_line = read_keys(keys_path)
    cells = read_multiref(multiref, set(key_line), warn=lambda msg: print(msg, file=sys.stderr))
    out = []
    for key, key_no in key_line.items():
        if key not in cells:
            raise InputError(keys_path, key_no, f"key {key!r} has no line in {multiref}")
        ref_no, fields = cells[key]
        text = nth_ref(multiref, key, ref_no, fields, ref_index, ref_mode)
        out.append(f"{key}\t{text}" if keyed else text)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="extract_human.py",
        description="Write reference K of every instance of a multi-reference file as a hypothesis "
        "file (the human system), one line per key of the keys file, in its order. "
        "Score it with dstc.py --vshuman K so that reference is held out.",
    )
    p.add_argument(
        "--refs", "-g", required=True, help="multi-reference file KEY<TAB>SCORE|REF<TAB>..."
    )
    p.add_argument("--keys", "-k", required=True, help="keys file, one key per line")
    p.add_argument(
        "--out", "-o", default="human.resp.txt", help="output file (default human.resp.txt)"
    )
    p.add_argument(
        "--ref_index",
        "-v",
        type=int,
        default=1,
        help="0-based reference used as the human response (default 1)",
    )
    p.add_argument(
        "--keyed",
        action="store_true",
        help="write KEY<TAB>RESPONSE lines instead of bare responses",
    )
    p.add_argument(
        "--ref_text",
        choices=["dstc", "after_bar"],
        default="dstc",
        help="text of a SCORE|TEXT field: between the first two '|' (default) or all after the first",
    )
    args = p.parse_args(argv)
    if args.ref_index < 0:
        p.error("--ref_index must be >= 0")
    return run_cli(p.prog, lambda: run(args), "nothing was written")


def run(args: argparse.Namespace) -> int:
    check_output(args.out, [args.refs, args.keys])
    lines = extract_human(args.refs, args.keys, args.ref_index, args.keyed, args.ref_text)
    write_lines_atomic(args.out, lines)
    print(f"{len(lines)} human responses written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
