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
        if human:
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

    dropped = False
    if hyps and hyps[-1] == "" and not keep_trailing_empty:
        # The DSTC script writes the hypotheses with '\n'.join and reads them back with
        # readlines(), which loses a trailing empty line: the last instance then drops out
        # of NIST/BLEU, entropy, distinct and length, and METEOR fails (-1) on the
        # mismatched line counts. Reproduced so the figures stay comparable.
        selected, hyps, refs = selected[:-1], hyps[:-1], refs[:-1]
        dropped = True
        if warn:
            warn(
                "warning: the last hypothesis (in key order) is empty: dropped, and METEOR "
                "reported as -1, as the DSTC script does (--keep_trailing_empty to score it)"
            )
    if n_lines is not None:
        selected, hyps, refs = selected[:n_lines], hyps[:n_lines], refs[:n_lines]
    if not hyps:
        raise InputError(submitted, None, "nothing left to score")
    return Instances(keys=selected, hyps=hyps, refs=refs, dropped_last_empty=dropped)
