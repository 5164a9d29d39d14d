"""The report tsv: one row per system, the DSTC-7 ``dstc.py`` columns."""

from __future__ import annotations

import os
from collections.abc import Sequence

from dstc.metrics import Scores
from lsp_common.atomic import write_lines_atomic

COLUMNS = (
    ["fname", "n_lines"]
    + [f"nist{i}" for i in range(1, 5)]
    + [f"bleu{i}" for i in range(1, 5)]
    + ["meteor"]
    + [f"entropy{i}" for i in range(1, 5)]
    + ["div1", "div2", "avg_len"]
)


def format_row(fname: str, scores: Scores) -> str:
    return "\t".join([fname] + [str(v) for v in scores.row()])


def write_report(path: str | os.PathLike, rows: Sequence[tuple[str, Scores]]) -> None:
    write_lines_atomic(path, ["\t".join(COLUMNS)] + [format_row(name, s) for name, s in rows])


def read_report(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a report as dicts (for tests and downstream scripts)."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
