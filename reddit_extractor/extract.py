"""The extract pass: stream RS_ and RC_ dumps once, keep what conv needs, cut into splits.

Output, in ``OUT/extract/YYYY-MM/`` (docs/REFERENCE.md §8):

* ``rs_subK.tsv.gz``: kept submissions of split K, fields SUBMISSION_FIELDS, tab separated;
* ``rc_subK.tsv.gz``: kept comments whose submission is in split K, fields COMMENT_FIELDS;
* ``stat.tsv``: ``month, kept comments, comments read, kept submissions, submissions read``
  (the published format; written last, so its presence means the month is complete);
* ``skips.tsv``: skipped records by reason; ``extract.log``: one line per bad record.

The month folder is built under a temporary name and renamed into place at the end.

Memory: one line at a time, plus the map from kept submission id to split number
(about 100 bytes per kept submission).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lsp_common.atomic import atomic_text, replace_folder, work_folder

from .dumps import DumpReader, find_dump
from .normalize import minimal_norm
from .stats import Report, write_counts

SUBMISSION_FIELDS = ("id", "score", "num_comments", "domain", "permalink", "title")
COMMENT_FIELDS = ("id", "author", "parent_id", "link_id", "score", "n_char", "body")
FLUSH_LINES = 4096
BAD_REASONS = ("bad_record", "invalid_json", "bad_utf8", "truncated", "bad_id")


@dataclass
class ExtractOptions:
    month: str
    input_dir: str
    output_dir: str
    split_size: int = 500_000
    keep_keys: set[str] | None = None
    strict: bool = False


@dataclass
class ExtractSummary:
    kept_comments: int = 0
    comments: int = 0
    kept_submissions: int = 0
    submissions: int = 0
    splits: int = 0


def split_folder(output_dir: str, month: str) -> str:
    return os.path.join(output_dir, "extract", month)


# The C scanner is an attribute each decoder sets up itself, unknown to the type stubs.
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_json(text: str) -> Any:
    """json.loads(text), faster for the usual line: an object with nothing around it.

    The C scanner is called directly when the line starts with '{' and the object it reads
    ends the line; anything else (whitespace, extra data, errors) goes through json.loads,
    so what is accepted and the error messages are exactly json.loads'. JSON nested deeper
    than the interpreter's recursion limit (no Reddit record is) raises ValueError too,
    not the RecursionError that would stop the whole run.
    """
    try:
        if text[:1] == "{":
            try:
                obj, end = _scan_once(text, 0)
            except (StopIteration, ValueError):
                pass
            else:
                if end == len(text):
                    return obj
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _records(reader: DumpReader, report: Report, prefix: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each line; undecodable lines are reported and skipped."""
    name = os.path.basename(reader.path)
    for raw in reader:
        n = reader.lines_read
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.bad(prefix + "bad_utf8", f"{name}:{n}: invalid UTF-8 at byte {exc.start}")
            continue
        try:
            yield n, parse_json(text)
        except ValueError as exc:
            report.bad(prefix + "invalid_json", f"{name}:{n}: invalid JSON ({exc})")
    for problem in reader.problems:
        report.bad(prefix + "truncated", problem)


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true/false",
    type(None): "null",
}


def _raw_field(rec: dict, name: str) -> str:
    """A field written as it is (not normalised): a tab or line break in it would shift the
    columns of the extract file or cut the record in two there, so it makes the record bad.
    No Pushshift record has one; the published tool wrote such a record as it was."""
    value = str(rec[name])
    if "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(f"field {name!r} holds a tab or line break")
    return value


def _field_problem(exc: Exception, rec: object) -> str:
    if not isinstance(rec, dict):
        return f"not a JSON object but {_JSON_KINDS.get(type(rec), type(rec).__name__)}"
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return f"invalid field ({type(exc).__name__}: {exc})"


class _SplitWriters:
    """One gzip writer per split file, each written under a temporary name."""

    def __init__(self, folder: str, kind: str) -> None:
        self.folder = folder
        self.kind = kind
        self._ctx: list = []
        self._fh: list = []
        self._buf: list[list[str]] = []

    def open(self) -> int:
        k = len(self._fh)
        path = os.path.join(self.folder, f"{self.kind}_sub{k}.tsv.gz")
        ctx = atomic_text(path, compress=True, errors="surrogatepass")
        self._fh.append(ctx.__enter__())
        self._ctx.append(ctx)
        self._buf.append([])
        return k

    def write(self, k: int, line: str) -> None:
        buf = self._buf[k]
        buf.append(line)
        if len(buf) >= FLUSH_LINES:
            self._fh[k].write("\n".join(buf) + "\n")
            buf.clear()

    def close(self, k: int, ok: bool = True) -> None:
        if self._ctx[k] is None:
            return
        if ok and self._buf[k]:
            self._fh[k].write("\n".join(self._buf[k]) + "\n")
        self._buf[k] = []
        ctx, self._ctx[k] = self._ctx[k], None
        if ok:
            ctx.__exit__(None, None, None)
        else:
            ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def close_all(self, ok: bool = True) -> None:
        for k in range(len(self._fh)):
            self.close(k, ok)


def _extract_submissions(
    opts: ExtractOptions, path: str, out: _SplitWriters, report: Report, s: ExtractSummary
) -> dict[str, int]:
    """Kept submissions go to rs_subK; returns submission key -> split number (first wins)."""
    name = os.path.basename(path)
    split_of: dict[str, int] = {}
    k = out.open()
    in_split = 0
    reader = DumpReader(path)
    for n, rec in _records(reader, report, "rs_"):
        try:
            if int(rec["num_comments"]) < 2:
                report.skip("rs_few_comments")
                continue
            title = minimal_norm(rec["title"])
            line = "\t".join([_raw_field(rec, f) for f in SUBMISSION_FIELDS[:-1]] + [title])
        except Exception as exc:  # noqa: BLE001 - any malformed record is skipped, like the published tool
            report.bad("rs_bad_record", f"{name}:{n}: {_field_problem(exc, rec)}")
            continue
        out.write(k, line)
        s.kept_submissions += 1
        try:
            key = "t3_" + rec["id"]
        except TypeError:
            # The published tool has already written the line at this point but cannot
            # index the submission (non-string id): its comments find no submission.
            report.bad("rs_bad_id", f"{name}:{n}: submission id {rec['id']!r} is not a string")
            continue
        split_of.setdefault(key, k)
        in_split += 1
        if in_split == opts.split_size:
            out.close(k)
            k = out.open()
            in_split = 0
    out.close(k)
    s.submissions = reader.lines_read
    s.splits = k + 1
    return split_of


def _extract_comments(
    opts: ExtractOptions,
    path: str,
    split_of: dict[str, int],
    out: _SplitWriters,
    report: Report,
    s: ExtractSummary,
) -> None:
    name = os.path.basename(path)
    keys = opts.keep_keys
    for _ in range(s.splits):
        out.open()
    reader = DumpReader(path)
    for n, rec in _records(reader, report, "rc_"):
        # Same checks in the same order as the published tool, so that a malformed
        # record is dropped exactly when it would have been.
        try:
            if (
                keys is not None
                and "\t".join([rec["link_id"], "t1_" + rec["id"], "dep"]) not in keys
            ):
                report.skip("rc_not_in_keys")
                continue
            body = rec["body"]
            if body == "[deleted]":
                report.skip("rc_deleted")
                continue
            if ">" in body or "&gt;" in body:
                report.skip("rc_quote")
                continue
            link_id = rec["link_id"]
            k = split_of.get(link_id)
            if k is None:
                report.skip("rc_no_submission")
                continue
            n_char = len(body)
            body = minimal_norm(body)
            if len(body.split()) < 2:
                report.skip("rc_too_short")
                continue
            line = "\t".join(
                [
                    _raw_field(rec, "id"),
                    _raw_field(rec, "author"),
                    _raw_field(rec, "parent_id"),
                    str(link_id),  # a key of split_of: a kept submission's, without tab
                    _raw_field(rec, "score"),
                    str(n_char),
                    body,
                ]
            )
        except Exception as exc:  # noqa: BLE001 - any malformed record is skipped, like the published tool
            report.bad("rc_bad_record", f"{name}:{n}: {_field_problem(exc, rec)}")
            continue
        out.write(k, line)
        s.kept_comments += 1
    out.close_all()
    s.comments = reader.lines_read


def extract_month(opts: ExtractOptions) -> ExtractSummary:
    """Run the extract pass for one month; the month folder appears only when complete."""
    rs_path = find_dump(opts.input_dir, "RS", opts.month)
    rc_path = find_dump(opts.input_dir, "RC", opts.month)
    final = split_folder(opts.output_dir, opts.month)
    # Clears what a killed run of this month left (make never runs one month twice at once).
    work = work_folder(os.path.dirname(final), opts.month)
    summary = ExtractSummary()
    try:
        with atomic_text(os.path.join(work, "extract.log"), errors="backslashreplace") as log:
            report = Report(log, strict=opts.strict)
            rs_out = _SplitWriters(work, "rs")
            rc_out = _SplitWriters(work, "rc")
            try:
                split_of = _extract_submissions(opts, rs_path, rs_out, report, summary)
                _extract_comments(opts, rc_path, split_of, rc_out, report, summary)
            except BaseException:
                rs_out.close_all(ok=False)
                rc_out.close_all(ok=False)
                raise
        write_counts(os.path.join(work, "skips.tsv"), report.counts)
        stat = [
            opts.month,
            summary.kept_comments,
            summary.comments,
            summary.kept_submissions,
            summary.submissions,
        ]
        with atomic_text(os.path.join(work, "stat.tsv")) as fh:
            fh.write("\t".join(map(str, stat)) + "\n")
        replace_folder(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    bad = {k: v for k, v in report.counts.items() if k.endswith(BAD_REASONS)}
    print(
        f"[{opts.month}] extract: kept {summary.kept_submissions}/{summary.submissions} submissions, "
        f"{summary.kept_comments}/{summary.comments} comments in {summary.splits} split(s)"
        + (f"; bad records: {dict(sorted(bad.items()))}" if bad else ""),
        file=sys.stderr,
    )
    return summary
