"""Score every ``*.resp.txt`` of a folder into one report tsv."""

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
from pathlib import Path  # noqa: E402

from dstc.evaluate import (  # noqa: E402
    MultiRef,
    Options,
    evaluate_system,
    list_systems,
    report_name,
)
from dstc.report import write_report  # noqa: E402
from dstc.textio import InputError, check_output  # noqa: E402
from lsp_common.cli import run_cli  # noqa: E402


def run(args: argparse.Namespace) -> int:
    plain = args.ref_files is not None
    folder = Path(args.input_dir)
    if not folder.is_dir():
        raise InputError(folder, None, "not a folder")
    opts = Options(
        clean=args.clean,
        use_meteor=not args.no_meteor,
        require_meteor=args.require_meteor,
        meteor_jar=args.meteor_jar,
    )
    multiref = (
        None
        if plain
        else MultiRef(
            refs=args.refs,
            keys=args.keys,
            n_refs=args.n_refs,
            vshuman=args.vshuman,
            hyp_keys=args.hyp_keys,
        )
    )
    n_refs = len(args.ref_files) if plain else args.n_refs
    report = Path(args.report) if args.report else folder / "eval" / report_name(n_refs, args.clean)
    # Inputs that may sit in the folder and match the pattern are not systems.
    inputs = (args.ref_files or []) + [args.refs, args.keys, args.hyp_keys, str(report)]
    files = list_systems([str(folder)], inputs, args.pattern)
    # Before the scoring, which may take long.
    check_output(report, [*files, *(args.ref_files or []), args.refs, args.keys, args.hyp_keys])
    rows = []
    for path in files:
        print(f"evaluating {path}", file=sys.stderr)
        rows.append(
            (str(path), evaluate_system(path, opts, ref_files=args.ref_files, multiref=multiref))
        )
    write_report(report, rows)
    print(f"report saved to: {report}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="batch_eval.py",
        description="Score every *.resp.txt file of INPUT_DIR (responses, one per key of the keys "
        "file, or KEY<TAB>RESPONSE lines) against a multi-reference file, or against "
        "aligned --ref_files, and write one report tsv row per file.",
    )
    p.add_argument("input_dir", help="folder holding the *.resp.txt files")
    p.add_argument("--refs", "-g", help="multi-reference file KEY<TAB>SCORE|REF<TAB>...")
    p.add_argument("--keys", "-k", help="keys file, one key per line")
    p.add_argument(
        "--hyp_keys",
        help="keys of the response lines when they are not the --keys file (e.g. the whole test "
        "set's keys, of which --keys selects a part)",
    )
    p.add_argument(
        "--ref_files", nargs="+", metavar="REF", help="plain layout: aligned reference files"
    )
    p.add_argument("--pattern", default="*.resp.txt", help="file name pattern (default *.resp.txt)")
    p.add_argument(
        "--clean", "-c", action="store_true", help="clean_str() hypotheses and references first"
    )
    p.add_argument(
        "--n_refs", "-r", type=int, default=6, help="references per instance (default 6)"
    )
    p.add_argument(
        "--vshuman",
        "-v",
        type=int,
        default=1,
        help="reference held out of the references (default 1, -1 none)",
    )
    p.add_argument(
        "--report", "-o", help="report path (default INPUT_DIR/eval/report_ref<N>[_cleaned].tsv)"
    )
    p.add_argument("--no_meteor", action="store_true", help="skip METEOR")
    p.add_argument(
        "--require_meteor", action="store_true", help="fail when METEOR cannot be computed"
    )
    p.add_argument("--meteor_jar", help="path to meteor-1.5.jar")
    args = p.parse_args(argv)
    plain = args.ref_files is not None
    if plain == bool(args.refs or args.keys) or (not plain and not (args.refs and args.keys)):
        p.error("give --ref_files, or --refs and --keys")
    if args.n_refs < 1:
        p.error("--n_refs must be at least 1")
    if args.vshuman < -1:
        p.error("--vshuman must be a reference number >= 0, or -1 to keep all references")
    return run_cli(p.prog, lambda: run(args), "no report was written")


if __name__ == "__main__":
    sys.exit(main())
