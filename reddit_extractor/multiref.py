"""Assemble the multi-reference test file (docs/REFERENCE.md §8, last paragraph).

Inputs: the conv output of the test months (``ids<TAB>CONTEXT<TAB>RESPONSE``, gzip or
plain) and a list of reference ids, one test instance per line:
``multiref<TAB>score,ids<TAB>score,ids...`` where ``ids`` is a
``link_id,parent_id,comment_id`` header. Output, one line per test instance:
``CONTEXT<TAB>score|response<TAB>score|response...``.
"""

from __future__ import annotations

import glob
import gzip
import os
import sys
import zlib
from collections import Counter

from lsp_common.atomic import atomic_text, refuse_folders

from .errors import UserError, utf8_error_where


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text(path: str):
    if _is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _open_binary(path: str):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def load_instances(path: str, counts: Counter[str] | None = None) -> dict[str, tuple[str, str]]:
    """ids header -> (context, response), with curly double quotes made straight.

    ``counts`` gets ``data_lines`` (read), ``malformed_data_line`` (skipped) and
    ``duplicate_data_line`` (an ids header seen before: the later line wins)."""
    counts = Counter() if counts is None else counts
    data: dict[str, tuple[str, str]] = {}
    bad = n = 0
    try:
        with _open_text(path) as fh:
            for n, line in enumerate(fh, 1):
                line = line.rstrip().replace("“", '"').replace("”", '"')
                cells = line.split("\t")
                if len(cells) != 3:
                    bad += 1
                    if bad <= 10:
                        print(
                            f"warning: {path}:{n}: {len(cells)} fields, expected 3 (skipped)",
                            file=sys.stderr,
                        )
                    continue
                if cells[0] in data:
                    counts["duplicate_data_line"] += 1  # the later line wins
                data[cells[0]] = (cells[1], cells[2])
    except (OSError, EOFError, zlib.error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserError(f"cannot read test data {path!r} ({n} lines read): {reason}") from None
    except UnicodeDecodeError as exc:
        where = utf8_error_where(lambda: _open_binary(path))
        raise UserError(f"test data {path!r} is not UTF-8: {exc.reason} at {where}") from None
    counts["data_lines"] += n
    counts["malformed_data_line"] += bad
    if bad:
        print(f"warning: {bad} malformed line(s) in {path}", file=sys.stderr)
    return data


def build(
    data_path: str, ids_path: str, out_path: str, counts: Counter[str] | None = None
) -> tuple[int, int]:
    """Write the multi-ref file; returns (instances written, references left out).

    ``counts`` gets, beside the counts of ``load_instances``: ``id_lines`` (read),
    ``not_multiref`` and ``no_reference`` (id lines left out), and per reference left out
    ``malformed_reference``, ``missing_reference`` or ``mismatched_source``."""
    counts = Counter() if counts is None else counts
    refuse_folders([out_path])
    for path, what in ((data_path, "--data"), (ids_path, "--testids")):
        if os.path.exists(path) and os.path.exists(out_path) and os.path.samefile(path, out_path):
            raise UserError(
                f"--out {out_path!r} is also the {what} input; writing it would destroy it"
            )
    remove_stale_temps(out_path)
    data = load_instances(data_path, counts)
    try:
        fi = open(ids_path, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read reference ids {ids_path!r}: {exc.strerror}") from None
    try:
        return _write(data, fi, ids_path, out_path, counts)
    except UnicodeDecodeError as exc:
        where = utf8_error_where(lambda: open(ids_path, "rb"))
        raise UserError(
            f"reference ids {ids_path!r} are not UTF-8: {exc.reason} at {where}"
        ) from None


def remove_stale_temps(out_path: str) -> list[str]:
    """Delete the temporary siblings (``.NAME.tmp-*``) that a killed earlier run writing
    ``out_path`` left; two runs writing the same output at once are not supported."""
    folder, name = os.path.split(os.path.abspath(out_path))
    stale = glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.tmp-*"))
    removed = []
    for path in stale:
        if os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except OSError:
                continue
            removed.append(path)
    return removed


def _write(
    data: dict[str, tuple[str, str]], fi, ids_path: str, out_path: str, counts: Counter[str]
) -> tuple[int, int]:
    written = dropped = 0
    with fi, atomic_text(out_path) as fo:
        for n, line in enumerate(fi, 1):
            counts["id_lines"] += 1
            els = line.rstrip().split("\t")
            if els[0] != "multiref":
                counts["not_multiref"] += 1
                print(
                    f"{ids_path}:{n}: ignoring line (does not start with 'multiref')",
                    file=sys.stderr,
                )
                continue
            src = None
            refs = []
            for el in els[1:]:
                score, sep, ids = el.partition(",")
                if not sep:
                    print(
                        f"{ids_path}:{n}: malformed reference {el!r} (expected score,ids)",
                        file=sys.stderr,
                    )
                    dropped += 1
                    counts["malformed_reference"] += 1
                    continue
                if ids not in data:
                    print(f"{ids_path}:{n}: can't find data for ref ID: {ids}", file=sys.stderr)
                    dropped += 1
                    counts["missing_reference"] += 1
                    continue
                ref_src, response = data[ids]
                if src is None:
                    src = ref_src
                elif ref_src != src:
                    print(f"{ids_path}:{n}: mismatch source for ref ID: {ids}", file=sys.stderr)
                    dropped += 1
                    counts["mismatched_source"] += 1
                    continue
                refs.append(f"{score}|{response}")
            if src is None:
                print(f"{ids_path}:{n}: no reference found, instance left out", file=sys.stderr)
                counts["no_reference"] += 1
                continue
            fo.write(src + "".join("\t" + r for r in refs) + "\n")
            written += 1
    return written, dropped
