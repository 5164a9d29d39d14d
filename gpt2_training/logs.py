"""train_log.txt / eval_log.txt: the published CSV formats, one row per optimizer step / validation."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from lsp_common.atomic import write_text_atomic

TRAIN_HEADER = (
    "epoch",
    "global_step",
    "step",
    "mean_loss",
    "mean_ppl",
    "n_token_real",
    "n_token_total",
    "epoch_time",
)
EVAL_HEADER = ("epoch", "global_step", "step", "eval_loss", "eval_ppl")


class CsvLog:
    """Append-only CSV log with a header, flushed after every row.

    When a run resumes from step N, rows past N (written before the interruption, and
    about to be trained again) are dropped first, so the log reads as one unbroken run.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: tuple[str, ...],
        keep_upto_step: int | None = None,
    ):
        self.path = Path(path)
        self.header = header
        if keep_upto_step is not None and self.path.is_file():
            self._truncate(keep_upto_step)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", encoding="utf-8", newline="")
        if new:
            self._file.write(",".join(header) + "\n")
            self._file.flush()

    def _truncate(self, step: int) -> None:
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        kept = [",".join(self.header) + "\n"]
        for line in lines[1:]:
            if not line.endswith("\n"):  # torn last line of a killed run
                break
            row = next(csv.reader(io.StringIO(line)))
            if len(row) == len(self.header) and int(float(row[1])) <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(kept))

    def write(self, *values: object) -> None:
        self._file.write(",".join(str(v) for v in values) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
