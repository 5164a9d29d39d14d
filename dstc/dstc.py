"""Evaluate DSTC-7 task 2 style systems: NIST, BLEU, METEOR, entropy, distinct, length.

Run as ``python -m dstc.dstc ...`` from the repository root or as
``python /path/to/dstc/dstc.py ...`` from anywhere.
"""

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
import json  # noqa: E402
import math  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TextIO  # noqa: E402

from dstc.evaluate import (  # noqa: E402
    MultiRef,
    Options,
    default_report_path,
    evaluate_system,
    list_systems,
)
from dstc.meteor import JAR_ENV  # noqa: E402
from dstc.metrics import Scores  # noqa: E402
from dstc.report import write_report  # noqa: E402
from dstc.textio import check_output  # noqa: E402
from lsp_common.cli import run_cli  # noqa: E402

DESCRIPTION = """\
Score dialogue responses with the DSTC-7 metrics: NIST-1..4 and BLEU-1..4 (a Python port
of mteval-v14c.pl with its default options), METEOR 1.5 (-l en -norm, through the real
jar and java), entropy-1..4, distinct-1/2 and average length.

Two layouts:
  DSTC-7:  dstc.py SUBMITTED --refs test.refs.txt --keys keys.txt [--clean]
           SUBMITTED has KEY<TAB>RESPONSE lines (or one response per key, in keys-file
           order); the multi-reference file has KEY<TAB>SCORE|REF<TAB>SCORE|REF... lines.
  plain:   dstc.py hyp.txt --ref_files ref0.txt ref1.txt [--clean]

SUBMITTED may be several files or folders (every *.txt inside): one report tsv row per
system is then written (--report, default report_ref<N>[_cleaned].tsv next to the input).
"""

EPILOG = f"""\
METEOR needs java and meteor-1.5.jar (found in the pycocoevalcap package, or set
${JAR_ENV} or --meteor_jar); without them it is reported as null/nan unless
--require_meteor. Exit status: 0 ok, 1 METEOR failed under --require_meteor, 2 bad input.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dstc.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "submitted", nargs="*", help="hypothesis/submission files or folders of *.txt files"
    )
    g = p.add_argument_group("DSTC-7 layout")
    g.add_argument("--refs", "-g", help="multi-reference file KEY<TAB>SCORE|REF<TAB>...")
    g.add_argument(
        "--keys", "-k", help="keys file, one instance key per line (selects the instances)"
    )
    g.add_argument(
        "--n_refs",
        "-r",
        type=int,
        default=6,
        help="references per instance; fewer are cycled in order (default 6)",
    )
    g.add_argument(
        "--vshuman",
        "-v",
        type=int,
        default=1,
        help="reference K (0-based) is held out of the references, replaced by the next one, "
        "as the DSTC script does by default (default 1; -1 keeps all)",
    )
    g.add_argument(
        "--human",
        action="store_true",
        help="score the held-out reference K (--vshuman) as the hypothesis: the human system",
    )
    g.add_argument(
        "--skip_missing",
        action="store_true",
        help="score without keys that have no response (the DSTC script's silent behaviour) "
        "instead of failing",
    )
    g.add_argument(
        "--keep_trailing_empty",
        action="store_true",
        help="score an empty last hypothesis or reference (in key order); the DSTC script "
        "loses such a line when it rewrites its files, and its NIST/BLEU or METEOR then drop "
        "that instance or fail (-1): reproduced by default",
    )
    g.add_argument(
        "--hyp_format",
        choices=["auto", "keyed", "lines"],
        default="auto",
        help="submission layout: KEY<TAB>RESPONSE lines, or one response per key in "
        "keys-file order (default: keyed if any line has a tab)",
    )
    g.add_argument(
        "--hyp_keys",
        help="keys of the lines of a submission without keys, when they are not the --keys file "
        "(e.g. the whole test set's keys, of which --keys selects a part, as in DialoGPT)",
    )
    g.add_argument(
        "--ref_text",
        choices=["dstc", "after_bar"],
        default="dstc",
        help="reference text of a SCORE|TEXT field: 'dstc' = between the first and second "
        "'|' as the DSTC script reads it (default), 'after_bar' = all after the first",
    )
    g = p.add_argument_group("plain layout")
    g.add_argument(
        "--ref_files",
        nargs="+",
        metavar="REF",
        help="reference files aligned line by line with the hypotheses",
    )
    g = p.add_argument_group("options")
    g.add_argument(
        "--clean", "-c", action="store_true", help="clean_str() hypotheses and references first"
    )
    g.add_argument(
        "--n_lines",
        "-n",
        type=int,
        default=-1,
        help="score only the first N instances (default all)",
    )
    g.add_argument(
        "--report", "-o", help="report tsv path (written for several systems, or when given)"
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print the scores as JSON, alone on standard output (the summary goes to "
        "standard error)",
    )
    g.add_argument("--no_meteor", action="store_true", help="skip METEOR (reported as null/nan)")
    g.add_argument(
        "--require_meteor", action="store_true", help="fail (exit 1) when METEOR cannot be computed"
    )
    g.add_argument(
        "--meteor_jar", help=f"path to meteor-1.5.jar (default ${JAR_ENV}, else pycocoevalcap's)"
    )
    g.add_argument("--java", help="java executable (default: java on PATH)")
    g.add_argument("--meteor_no_norm", action="store_true", help="run METEOR without -norm")
    g.add_argument(
        "--empty_placeholder",
        default="__empty__",
        help="text given to the NIST/BLEU scorer for an empty line, as the DSTC script "
        "writes it (default __empty__; '' keeps empty lines empty)",
    )
    g.add_argument(
        "--xml_illegal",
        choices=["fail", "blank"],
        default="fail",
        help="text mteval's XML reader rejects (control characters, ']]>'): 'fail' reports NIST "
        "and BLEU as -1 like the DSTC script (default), 'blank' scores it with those blanked",
    )
    return p


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def print_scores(name: str, s: Scores, file: TextIO | None = None) -> None:
    """The human summary of one system, on ``file`` (standard output by default)."""
    out = sys.stdout if file is None else file
    print(f"evaluating {name}", file=out)
    print(f"n_lines = {s.n_lines}", file=out)
    print(f"NIST = {_fmt(s.nist)}", file=out)
    print(f"BLEU = {_fmt(s.bleu)}", file=out)
    print("METEOR = " + ("None" if s.meteor is None else f"{s.meteor:.4f}"), file=out)
    print(f"entropy = {_fmt(s.entropy)}", file=out)
    print(f"diversity = {_fmt(s.div)}", file=out)
    print(f"avg_len = {s.avg_len:.4f}", file=out)


def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    plain = args.ref_files is not None
    if plain and (args.refs or args.keys):
        parser.error("use either --ref_files (plain layout) or --refs with --keys (DSTC-7 layout)")
    if not plain and not (args.refs and args.keys):
        parser.error("give --ref_files, or --refs and --keys")
    if args.human and plain:
        parser.error("--human needs the DSTC-7 layout (--refs and --keys)")
    if not args.submitted and not args.human:
        parser.error("no hypothesis file given")
    if args.n_lines == 0 or args.n_lines < -1:
        parser.error("--n_lines must be positive (or -1 for all)")
    if args.n_refs < 1:
        parser.error("--n_refs must be at least 1")
    if args.vshuman < -1:
        parser.error("--vshuman must be a reference number >= 0, or -1 to keep all references")
    if args.human and args.vshuman < 0:
        parser.error("--human scores reference --vshuman K as the hypothesis: K must be >= 0")

    opts = Options(
        clean=args.clean,
        n_lines=None if args.n_lines < 0 else args.n_lines,
        use_meteor=not args.no_meteor,
        require_meteor=args.require_meteor,
        meteor_jar=args.meteor_jar,
        java=args.java,
        meteor_norm=not args.meteor_no_norm,
        empty_placeholder=args.empty_placeholder,
        xml_illegal=args.xml_illegal,
    )
    multiref = None
    if not plain:
        multiref = MultiRef(
            refs=args.refs,
            keys=args.keys,
            n_refs=args.n_refs,
            vshuman=args.vshuman,
            skip_missing=args.skip_missing,
            hyp_format=args.hyp_format,
            hyp_keys=args.hyp_keys,
            ref_mode=args.ref_text,
            keep_trailing_empty=args.keep_trailing_empty,
        )

    systems: Sequence[Path | None]
    if args.human:
        systems = [None]
    else:
        # Inputs that may sit in a scored folder are not systems (the --hyp_keys file too).
        exclude = (args.ref_files or []) + [args.refs, args.keys, args.hyp_keys, args.report]
        systems = list_systems(args.submitted, exclude)
    n_refs = len(args.ref_files) if plain else args.n_refs
    several = len(systems) > 1 or any(os.path.isdir(x) for x in args.submitted)
    report = None
    if args.report or (several and args.submitted):
        report = args.report or default_report_path(args.submitted, n_refs, args.clean)
        # Before the scoring, which may take long: a report that cannot be written, or
        # that would overwrite an input, is refused now.
        check_output(
            report, [*systems, *(args.ref_files or []), args.refs, args.keys, args.hyp_keys]
        )
    rows = []
    for path in systems:
        name = "human" if path is None else str(path)
        if len(systems) > 1:
            print(f"evaluating {name}", file=sys.stderr)
        s = evaluate_system(
            path, opts, ref_files=args.ref_files, multiref=multiref, human=args.human
        )
        rows.append((name, s))
        if len(systems) == 1:
            # With --json, standard output carries the JSON alone, for `| jq` and json.loads.
            print_scores(name, s, file=sys.stderr if args.json else sys.stdout)

    if report is not None:
        write_report(report, rows)
        print(f"report saved to: {report}", file=sys.stderr)
    if args.json:
        if len(rows) == 1:
            print(json.dumps(_json_safe(rows[0][1].to_json())))
        else:
            print(json.dumps([{"fname": n, **_json_safe(s.to_json())} for n, s in rows]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_cli(parser.prog, lambda: run(args, parser), "no report was written")


if __name__ == "__main__":
    sys.exit(main())
