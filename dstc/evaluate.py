"""Scoring one or many systems, in the DSTC-7 (multi-reference + keys) or the plain
(hypothesis file + aligned reference files) layout."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dstc.metrics import Scores, nlp_metrics
from dstc.mteval import EMPTY_PLACEHOLDER
from dstc.multiref import build_instances
from dstc.textio import InputError, read_lines
from dstc.tokenizers import clean_str


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class Options:
    clean: bool = False
    n_lines: int | None = None
    use_meteor: bool = True
    require_meteor: bool = False
    meteor_jar: str | None = None
    java: str | None = None
    meteor_norm: bool = True
    empty_placeholder: str = EMPTY_PLACEHOLDER
    xml_illegal: str = "fail"
    warn: Callable[[str], None] = field(default=_stderr)


@dataclass
class MultiRef:
    """The DSTC-7 layout: a multi-reference file and a keys file."""

    refs: str
    keys: str
    n_refs: int = 6
    vshuman: int = 1
    skip_missing: bool = False
    hyp_format: str = "auto"
    hyp_keys: str | None = None
    ref_mode: str = "dstc"
    keep_trailing_empty: bool = False


def plain_instances(
    hyp_path: str | os.PathLike, ref_paths: Sequence[str | os.PathLike], opts: Options
) -> tuple[list[str], list[list[str]]]:
    hyps = read_lines(hyp_path)
    ref_sets = []
    for path in ref_paths:
        lines = read_lines(path)
        if len(lines) != len(hyps):
            where = min(len(lines), len(hyps)) + 1
            what = "is missing" if len(lines) < len(hyps) else "is extra"
            raise InputError(
                path,
                where,
                f"line {where} {what}: {len(lines)} reference lines but {len(hyps)} "
                f"hypothesis lines in {hyp_path}",
            )
        ref_sets.append(lines)
    if not ref_sets:
        raise InputError(None, None, "no reference files given")
    if opts.clean:
        hyps = [clean_str(h) for h in hyps]
        ref_sets = [[clean_str(r) for r in lines] for lines in ref_sets]
    refs = [list(seg) for seg in zip(*ref_sets)]
    if opts.n_lines is not None:
        hyps, refs = hyps[: opts.n_lines], refs[: opts.n_lines]
    return hyps, refs


def score(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    opts: Options,
    *,
    mteval_failure: str | None = None,
    meteor_failure: str | None = None,
) -> Scores:
    """All metrics; ``mteval_failure`` / ``meteor_failure`` name why the DSTC script gets
    -1 for NIST/BLEU / METEOR on this input (see :class:`dstc.multiref.TrailingEmpty`)."""
    wants_meteor = opts.use_meteor or opts.require_meteor
    scores = nlp_metrics(
        hyps,
        refs,
        use_meteor=opts.use_meteor and meteor_failure is None,
        require_meteor=opts.require_meteor and meteor_failure is None,
        meteor_jar=opts.meteor_jar,
        java=opts.java,
        meteor_norm=opts.meteor_norm,
        empty_placeholder=opts.empty_placeholder,
        xml_illegal=opts.xml_illegal,
        mteval_failure=mteval_failure,
        warn=opts.warn,
    )
    if meteor_failure is not None and wants_meteor:
        opts.warn(f"warning: METEOR reported as -1 as the DSTC script does: {meteor_failure}")
        scores.meteor = -1.0
    return scores


def evaluate_system(
    hyp_path: str | os.PathLike | None,
    opts: Options,
    ref_files: Sequence[str | os.PathLike] | None = None,
    multiref: MultiRef | None = None,
    human: bool = False,
) -> Scores:
    """Scores of one system; exactly one of ``ref_files`` and ``multiref`` is given."""
    if (ref_files is None) == (multiref is None):
        raise ValueError("give either reference files or a multi-reference file with keys")
    if ref_files is not None:
        if hyp_path is None:
            raise ValueError("no hypothesis file given")
        hyps, refs = plain_instances(hyp_path, ref_files, opts)
    else:
        assert multiref is not None  # the check above: exactly one of the two
        inst = build_instances(
            hyp_path,
            multiref.refs,
            multiref.keys,
            n_refs=multiref.n_refs,
            vshuman=multiref.vshuman,
            human=human,
            clean=clean_str if opts.clean else None,
            skip_missing=multiref.skip_missing,
            hyp_format=multiref.hyp_format,
            hyp_keys=multiref.hyp_keys,
            ref_mode=multiref.ref_mode,
            n_lines=opts.n_lines,
            keep_trailing_empty=multiref.keep_trailing_empty,
            warn=opts.warn,
        )
        return score(
            inst.hyps,
            inst.refs,
            opts,
            mteval_failure=inst.mteval_failure,
            meteor_failure=inst.meteor_failure,
        )
    return score(hyps, refs, opts)


def list_systems(
    inputs: Sequence[str], exclude: Sequence[str], pattern: str = "*.txt"
) -> list[Path]:
    """Hypothesis files named directly, plus the files matching ``pattern`` in the folders
    named; reference, keys and report files are left out."""
    skip = {Path(p).resolve() for p in exclude if p}
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.glob(pattern) if f.is_file() and f.resolve() not in skip)
            if not found:
                raise InputError(p, None, f"folder has no {pattern} hypothesis files")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise InputError(p, None, "no such file or folder")
    return files


def report_name(n_refs: int, clean: bool) -> str:
    """Named like the DSTC script's report: ``report_ref6[_cleaned].tsv``."""
    return f"report_ref{n_refs}{'_cleaned' if clean else ''}.tsv"


def default_report_path(inputs: Sequence[str], n_refs: int, clean: bool) -> Path:
    """Next to the input, named by :func:`report_name`."""
    first = Path(inputs[0])
    folder = first if first.is_dir() else first.parent
    return folder / report_name(n_refs, clean)
