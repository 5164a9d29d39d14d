"""DSTC-7 inputs: keys file, multi-reference file and submissions, turned into aligned
hypothesis and reference lists the way the DSTC-7 ``dstc.py`` does it.

Formats:
- keys: one instance key per line; only these instances are scored.
- multi-reference: ``KEY<TAB>SCORE|REF1<TAB>SCORE|REF2...``. A reference is the text
  between the first and the second ``|`` (``split('|')[1]``, as the DSTC script reads it;
  ``ref_text="after_bar"`` keeps everything after the first ``|``), or the whole field when
  it has no ``|``.
- submission, keyed: ``KEY<TAB>...<TAB>RESPONSE`` (the last field is the response); or
  plain lines, one response per line aligned with the keys file (the layout of DialoGPT's
  decoding outputs and of ``extract_human.py``).

Instances are scored in sorted key order, as in the DSTC script, which matters for
``n_lines`` only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from dstc.textio import InputError, read_lines


@dataclass
class Instances:
    keys: list[str]
    hyps: list[str]
    refs: list[list[str]]  # refs[i]: the n_refs references of instance i
    dropped_last_empty: bool = False
    # Why the DSTC script gets no NIST/BLEU (it reports -1) or no METEOR (-1, or a crash)
    # on these instances; None when it scores them.
    mteval_failure: str | None = None
    meteor_failure: str | None = None


def read_keys(path: str | os.PathLike) -> dict[str, int]:
    """key -> line number, in file order (blank lines skipped)."""
    keys: dict[str, int] = {}
    for no, line in enumerate(read_lines(path), 1):
        key = line.strip()
        if not key:
            continue
        if "\t" in key:
            # A key never holds a tab (submission and reference keys end at the first
            # one): this is another kind of file, e.g. the multi-reference file.
            raise InputError(
                path,
                no,
                "has a tab: a keys file holds one key per line "
                "(was the multi-reference file or a submission given as keys?)",
            )
        if key in keys:
            raise InputError(path, no, f"key {key!r} is listed twice (first on line {keys[key]})")
        keys[key] = no
    if not keys:
        raise InputError(path, None, "no keys in file")
    return keys


def ref_text(field: str, mode: str = "dstc") -> str:
    if "|" not in field:
        return field
    if mode == "after_bar":
        return field.split("|", 1)[1]
    return field.split("|")[1]


def nth_ref(
    path: str | os.PathLike, key: str, line_no: int, fields: list[str], k: int, mode: str
) -> str:
    """Text of reference ``k`` (0-based) of an instance read from line ``line_no`` of the
    multi-reference file ``path``; an InputError when the instance has fewer references."""
    if k >= len(fields):
        raise InputError(
            path, line_no, f"instance {key!r} has {len(fields)} references, no reference {k}"
        )
    return ref_text(fields[k], mode)


def _warn_repeats(
    path: str | os.PathLike, repeats: list[tuple[int, str, int]], warn: Callable[[str], None] | None
) -> None:
    if repeats and warn:
        no, key, first = repeats[0]
        warn(
            f"warning: {path}:{no}: key {key!r} repeats line {first}; the last line of a "
            f"repeated key is used ({len(repeats)} repeated line(s) ignored)"
        )


def read_multiref(
    path: str | os.PathLike, wanted: set[str], warn: Callable[[str], None] | None = None
) -> dict[str, tuple[int, list[str]]]:
    """key -> (line number, reference fields) for the wanted keys (the last line wins for
    a repeated key, like the DSTC script's dict; ``warn`` is told about repeats)."""
    lines = read_lines(path)
    out: dict[str, tuple[int, list[str]]] = {}
    repeats: list[tuple[int, str, int]] = []
    for no, line in enumerate(lines, 1):
        cells = line.split("\t")
        if cells[0] not in wanted:
            continue
        if len(cells) < 2:
            raise InputError(
                path, no, f"instance {cells[0]!r} has no reference (expected KEY<TAB>SCORE|REF...)"
            )
        if cells[0] in out:
            repeats.append((no, cells[0], out[cells[0]][0]))
        out[cells[0]] = (no, cells[1:])
    if not out and not any("\t" in line for line in lines):
        # Otherwise every key would be reported missing, hiding the real problem.
        raise InputError(
            path,
            1,
            "no line has a tab: a multi-reference file has tab-separated "
            "KEY<TAB>SCORE|REF<TAB>SCORE|REF... lines",
        )
    _warn_repeats(path, repeats, warn)
    return out


def detect_format(lines: list[str]) -> str:
    return "keyed" if any("\t" in line for line in lines) else "lines"


def read_submission(
    path: str | os.PathLike,
    keys: list[str],
    fmt: str = "auto",
    line_keys: list[str] | None = None,
    line_keys_path: str | os.PathLike | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, tuple[int, str]]:
    """key -> (line number, response) for the keys the submission covers.

    A submission without keys is aligned line by line with ``line_keys`` when given (the
    keys of every hypothesis line, e.g. a whole test set of which ``keys`` selects a part,
    as DialoGPT's evaluation does), else with ``keys`` itself.
    """
    lines = read_lines(path)
    if fmt == "auto":
        fmt = detect_format(lines)
    wanted = set(keys)
    out: dict[str, tuple[int, str]] = {}
    if fmt == "keyed":
        repeats: list[tuple[int, str, int]] = []
        for no, line in enumerate(lines, 1):
            cells = line.split("\t")
            if len(cells) < 2:
                raise InputError(path, no, "no tab: a keyed submission line is KEY<TAB>RESPONSE")
            if cells[0] in wanted:
                if cells[0] in out:
                    repeats.append((no, cells[0], out[cells[0]][0]))
                out[cells[0]] = (no, cells[-1])
        _warn_repeats(path, repeats, warn)
        return out
    if fmt != "lines":
        raise ValueError(f"unknown submission format {fmt!r}")
    aligned = keys if line_keys is None else line_keys
    if len(lines) != len(aligned):
        source = "the keys file" if line_keys is None else str(line_keys_path or "--hyp_keys")
        raise InputError(
            path,
            min(len(lines), len(aligned)) + 1,
            f"has {len(lines)} lines but {source} has {len(aligned)} keys "
            "(a submission without keys must have one response per key, in key order)",
        )
    return {k: (no, line) for no, (k, line) in enumerate(zip(aligned, lines), 1) if k in wanted}


@dataclass
class TrailingEmpty:
    """What the DSTC script's file round trip does to an empty last instance.

    ``dstc.py`` writes ``hyp.txt`` and every ``refK.txt`` with ``'\\n'.join`` and
    ``metrics.py`` reads them back with ``readlines()``, so an empty last line vanishes
    from exactly the files where it is empty. Then:

    - mteval gets as many source segments as ``hyp.txt`` has lines, and ``refK.txt`` cut
      to that count; a reference file one line short of it makes mteval die
      ("translated documents must contain the same # of segments"): NIST/BLEU -1.
    - METEOR's merged reference file takes as many segments as ``ref0.txt`` has lines and
      indexes every other reference file there: one shorter than ``ref0.txt`` is an
      IndexError that stops the script; otherwise METEOR fails (-1) when the segment count
      differs from the line count of ``hyp.txt`` ("test and reference not same length").
    """

    hyp_empty: bool
    ref_slots: list[int]  # reference numbers (0-based) that are empty in the last instance

    def slot_list(self) -> str:
        return ", ".join(str(k) for k in self.ref_slots)

    def mteval_failure(self, cut_by_n_lines: bool) -> str | None:
        # With the hypothesis dropped too, every file keeps the lines mteval reads.
        if self.hyp_empty or not self.ref_slots or cut_by_n_lines:
            return None
        return (
            f"reference file(s) {self.slot_list()} lose their empty last line and have one "
            "segment fewer than the hypotheses"
        )

    def meteor_failure(self) -> str | None:
        if self.ref_slots and 0 not in self.ref_slots:
            return (
                f"reference file(s) {self.slot_list()} are one line shorter than reference "
                "file 0: the DSTC script stops with an IndexError while merging them for METEOR"
            )
        if self.hyp_empty != bool(self.ref_slots):
            return "METEOR's hypothesis and merged reference files differ in length"
        return None


def build_instances(
    submitted: str | os.PathLike | None,
    multiref: str | os.PathLike,
    keys_path: str | os.PathLike,
    *,
    n_refs: int = 6,
    vshuman: int = 1,
    human: bool = False,
    clean: Callable[[str], str] | None = None,
    skip_missing: bool = False,
    hyp_format: str = "auto",
    hyp_keys: str | os.PathLike | None = None,
    ref_mode: str = "dstc",
    n_lines: int | None = None,
    keep_trailing_empty: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Instances:
    """Hypotheses and ``n_refs`` references per instance, as the DSTC-7 ``dstc.py``
    builds them.

    References are cycled (``i % len(refs)``) to ``n_refs``; the reference numbered
    ``vshuman`` (0-based, default 1 as in the DSTC script, -1 for none) is replaced by the
    next one, so that it can serve as the "human" system. With ``human`` the hypothesis is
    that reference itself instead of a submission.
    """
    if n_refs < 1:
        raise ValueError("n_refs must be at least 1")
    key_line = read_keys(keys_path)
    keys = list(key_line)
    if human:
        if vshuman < 0:
            raise ValueError("--human needs --vshuman K >= 0 (the reference used as hypothesis)")
        hyp_cells = None
    else:
        if submitted is None:
            raise ValueError("no submission given")
        line_keys = None if hyp_keys is None else list(read_keys(hyp_keys))
        hyp_cells = read_submission(submitted, keys, hyp_format, line_keys, hyp_keys, warn)
    ref_cells = read_multiref(multiref, set(keys), warn)

    selected = []
    for key in keys:
        if hyp_cells is not None and key not in hyp_cells:
            if skip_missing:
                continue
            raise InputError(
                keys_path, key_line[key], f"key {key!r} has no response in {submitted}"
            )
        if key not in ref_cells:
            raise InputError(keys_path, key_line[key], f"key {key!r} has no line in {multiref}")
        selected.append(key)
    skipped = len(keys) - len(selected)
    if skipped and warn:
        warn(f"warning: {skipped} keys have no response in {submitted}; scored without them")
    if not selected:
        raise InputError(submitted, None, "no response for any key of the keys file")
    selected.sort()

    cleaned: dict[str, str] = {}

    def prep(text: str) -> str:
        # Cycling repeats references, and cleaning (tweet tokenization) is the slow part.
        if clean is None:
            return text
        if text not in cleaned:
            cleaned[text] = clean(text)
        return cleaned[text]

    hyps, refs = [], []
    for key in selected:
        ref_no, fields = ref_cells[key]
        if hyp_cells is None:  # --human: a reference stands in for the hypothesis
            hyps.append(prep(nth_ref(multiref, key, ref_no, fields, vshuman, ref_mode)))
        else:
            hyps.append(prep(hyp_cells[key][1]))
        chosen = []
        for i in range(n_refs):
            idx = i % len(fields)
            if idx == vshuman:
                idx = (idx + 1) % len(fields)
            chosen.append(prep(ref_text(fields[idx], ref_mode)))
        refs.append(chosen)

    trailing = TrailingEmpty(hyps[-1] == "", [i for i, r in enumerate(refs[-1]) if r == ""])
    if keep_trailing_empty:
        trailing = TrailingEmpty(False, [])
    dropped = trailing.hyp_empty
    if dropped:
        selected, hyps, refs = selected[:-1], hyps[:-1], refs[:-1]
        if warn:
            warn(
                "warning: the last hypothesis (in key order) is empty: dropped, as the DSTC "
                "script does (--keep_trailing_empty to score it)"
            )
    mteval_failure = trailing.mteval_failure(n_lines is not None and n_lines < len(hyps))
    meteor_failure = trailing.meteor_failure()
    if trailing.ref_slots and warn:
        warn(
            f"warning: reference(s) {trailing.slot_list()} of the last instance (in key order) "
            "are empty: the DSTC script loses them when it rewrites its reference files "
            "(--keep_trailing_empty to score them)"
        )
    if n_lines is not None:
        selected, hyps, refs = selected[:n_lines], hyps[:n_lines], refs[:n_lines]
    if not hyps:
        raise InputError(submitted, None, "nothing left to score")
    return Instances(
        keys=selected,
        hyps=hyps,
        refs=refs,
        dropped_last_empty=dropped,
        mteval_failure=mteval_failure,
        meteor_failure=meteor_failure,
    )
