"""Write the files the DSTC-7 scripts hand to the real scorers, to check dstc/ against them.

``python -m dstc.scorer_inputs OUT_DIR HYP REF [REF ...] [--clean]`` writes into OUT_DIR:

- ``src.xml``, ``hyp.xml``, ``ref.xml``: mteval-v14c's inputs as the DSTC-7 ``metrics.py``
  builds them (``&`` and ``<`` blanked, an empty line written as ``__empty__``, one
  ``<seg>`` per line with a space either side of the text);
- ``hyp.txt`` and ``refs_merged.txt``: METEOR's inputs (the references of a segment on
  consecutive lines);

and prints the two commands that score them::

    perl mteval-v14c.pl -s OUT_DIR/src.xml -t OUT_DIR/hyp.xml -r OUT_DIR/ref.xml
    java -Xmx1g -jar meteor-1.5.jar OUT_DIR/hyp.txt OUT_DIR/refs_merged.txt -r N -l en -norm

Neither scorer ships with this package; the test fixtures in ``tests/dstc/data`` record the
figures they printed.
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
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from dstc.evaluate import Options, plain_instances  # noqa: E402
from dstc.mteval import EMPTY_PLACEHOLDER, dstc_sgml_text  # noqa: E402
from lsp_common.atomic import write_lines_atomic, write_text_atomic  # noqa: E402
from lsp_common.cli import run_cli  # noqa: E402

_SET_OPEN = {
    "src": '<srcset setid="unnamed" srclang="src">',
    "hyp": '<tstset setid="unnamed" srclang="src" trglang="tgt" sysid="unnamed">',
    "ref": '<refset setid="unnamed" srclang="src" trglang="tgt" refid="ref{i}">',
}
_SET_CLOSE = {"src": "</srcset>", "hyp": "</tstset>", "ref": "</refset>"}


def mteval_xml(role: str, sets: Sequence[Sequence[str]], empty_placeholder: str) -> str:
    """One mteval XML file: ``sets`` holds one list of segment texts per set (a single
    set for ``src`` and ``hyp``, one per reference for ``ref``)."""
    if role not in _SET_OPEN:
        raise ValueError(f"role must be src, hyp or ref, not {role!r}")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<!DOCTYPE mteval SYSTEM "">', "<mteval>"]
    for i, segments in enumerate(sets):
        lines.append(_SET_OPEN[role].format(i=i))
        lines.append('<doc docid="unnamed" genre="unnamed">')
        for no, text in enumerate(segments, 1):
            lines.append(f'<p><seg id="{no}"> {dstc_sgml_text(text, empty_placeholder)} </seg></p>')
        lines.append("</doc>")
        lines.append(_SET_CLOSE[role])
    lines.append("</mteval>")
    return "\n".join(lines)


def write_scorer_inputs(
    folder: str | os.PathLike,
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    empty_placeholder: str = EMPTY_PLACEHOLDER,
) -> list[str]:
    """Write the five files into ``folder``; return the commands that score them."""
    out = Path(folder)
    n_refs = len(refs[0])
    ref_sets = [[seg[i] for seg in refs] for i in range(n_refs)]
    # The DSTC script's source file has an empty segment per line: mteval only counts them.
    write_text_atomic(out / "src.xml", mteval_xml("src", [[""] * len(hyps)], empty_placeholder))
    write_text_atomic(out / "hyp.xml", mteval_xml("hyp", [hyps], empty_placeholder))
    write_text_atomic(out / "ref.xml", mteval_xml("ref", ref_sets, empty_placeholder))
    write_lines_atomic(out / "hyp.txt", hyps)
    write_lines_atomic(out / "refs_merged.txt", [r for seg in refs for r in seg])
    return [
        f"perl mteval-v14c.pl -s {out}/src.xml -t {out}/hyp.xml -r {out}/ref.xml",
        f"java -Xmx1g -jar meteor-1.5.jar {out}/hyp.txt {out}/refs_merged.txt "
        f"-r {n_refs} -l en -norm",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="scorer_inputs.py",
        description="Write the mteval-v14c XML files and METEOR files the DSTC-7 scripts would "
        "give the real scorers for HYP against the aligned REF files, and print the commands.",
    )
    p.add_argument("out_dir", help="folder for src.xml, hyp.xml, ref.xml, hyp.txt, refs_merged.txt")
    p.add_argument("hyp", help="hypothesis file, one response per line")
    p.add_argument("refs", nargs="+", help="reference files aligned with HYP")
    p.add_argument("--clean", "-c", action="store_true", help="clean_str() every line first")
    p.add_argument(
        "--empty_placeholder",
        default=EMPTY_PLACEHOLDER,
        help="text written for an empty line (default __empty__, as the DSTC script)",
    )
    args = p.parse_args(argv)

    def run() -> int:
        hyps, refs = plain_instances(args.hyp, args.refs, Options(clean=args.clean))
        for command in write_scorer_inputs(args.out_dir, hyps, refs, args.empty_placeholder):
            print(command)
        return 0

    return run_cli(p.prog, run, "no file was written")


if __name__ == "__main__":
    sys.exit(main())
