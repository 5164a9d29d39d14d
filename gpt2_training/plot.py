"""Plot the training curves of an LSP_train.py run.

Usage: ``python -m gpt2_training.plot RUN_DIR [--out PNG]``

Reads ``RUN_DIR/train_log.txt`` and, when present, ``RUN_DIR/eval_log.txt`` (CSV files
written by LSP_train.py) and writes one PNG with two panels against ``global_step``: loss,
and perplexity on a log scale, each with the training and the validation curve.
Default output: ``RUN_DIR/training_curves.png``. Exit status 2 on a missing, empty or
malformed log, with a message naming the file and line.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from gpt2_training.logs import EVAL_HEADER, TRAIN_HEADER
from lsp_common.atomic import atomic_file

__all__ = ["EVAL_COLUMNS", "TRAIN_COLUMNS", "LogError", "main", "plot_run", "read_log"]

# The columns as the trainer writes them (gpt2_training/logs.py, the one home of the format).
TRAIN_COLUMNS = TRAIN_HEADER
EVAL_COLUMNS = EVAL_HEADER


class LogError(ValueError):
    """A log file is missing, empty or malformed; the message names file and line."""


def read_log(path: Path, columns: Sequence[str]) -> dict[str, list[float]]:
    """Parse a CSV log whose header contains ``columns`` (extra columns are ignored).

    Every row must have as many fields as the header and numeric values in ``columns``
    (``nan``/``inf`` are accepted: a diverged run should still plot).
    """
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise LogError(f"{path}: cannot be read: {err}") from err
    if not rows or not any(field.strip() for field in rows[0]):
        raise LogError(f"{path}: empty file (expected the header {','.join(columns)})")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise LogError(
            f"{path}:1: header lacks column(s) {', '.join(missing)}; expected {','.join(columns)}"
        )
    index = {c: header.index(c) for c in columns}
    data: dict[str, list[float]] = {c: [] for c in columns}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line, e.g. a trailing newline too many
        if len(row) != len(header):
            raise LogError(
                f"{path}:{lineno}: {len(row)} fields, the header has {len(header)} "
                "(truncated or corrupted line?)"
            )
        for c in columns:
            raw = row[index[c]].strip()
            try:
                data[c].append(float(raw))
            except ValueError:
                raise LogError(f"{path}:{lineno}: column {c} is not a number: {raw!r}") from None
    return data


def plot_run(
    train: dict[str, list[float]], evals: dict[str, list[float]] | None, out: Path
) -> Path:
    """Draw the two panels and write ``out`` atomically (temporary file, then rename)."""
    # Figure + Agg canvas directly, not pyplot: no global backend switch, no GUI, nothing
    # left open in a long-running process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_ppl = fig.subplots(1, 2)
    step = train["global_step"]
    ax_loss.plot(step, train["mean_loss"], label="train", color="tab:blue", linewidth=1)
    ax_ppl.plot(step, train["mean_ppl"], label="train", color="tab:blue", linewidth=1)
    if evals and evals["global_step"]:
        ax_loss.plot(
            evals["global_step"], evals["eval_loss"], "o-", label="validation", color="tab:orange"
        )
        ax_ppl.plot(
            evals["global_step"], evals["eval_ppl"], "o-", label="validation", color="tab:orange"
        )
    ppls = train["mean_ppl"] + (evals or {}).get("eval_ppl", [])
    # A log axis needs at least one positive finite value; nan/inf points are just not drawn.
    if any(p > 0 and math.isfinite(p) for p in ppls):
        ax_ppl.set_yscale("log", nonpositive="mask")
    ax_loss.set(title="Loss", xlabel="global step (optimizer updates)", ylabel="cross-entropy")
    ax_ppl.set(title="Perplexity", xlabel="global step (optimizer updates)", ylabel="perplexity")
    for ax in (ax_loss, ax_ppl):
        ax.grid(True, alpha=0.3, which="both")
        ax.legend()

    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = out.suffix.lstrip(".").lower() or "png"
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpt2_training.plot",
        description="Plot loss and perplexity curves from train_log.txt / eval_log.txt.",
    )
    parser.add_argument(
        "run_dir", type=Path, help="folder holding train_log.txt (and eval_log.txt)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output image [RUN_DIR/training_curves.png]"
    )
    args = parser.parse_args(argv)

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        print(f"error: {run_dir}: not a folder", file=sys.stderr)
        return 2
    try:
        train = read_log(run_dir / "train_log.txt", TRAIN_COLUMNS)
        if not train["global_step"]:
            raise LogError(f"{run_dir / 'train_log.txt'}: header only, no training rows yet")
        eval_path = run_dir / "eval_log.txt"
        evals = read_log(eval_path, EVAL_COLUMNS) if eval_path.exists() else None
    except LogError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else run_dir / "training_curves.png"
    try:
        plot_run(train, evals, out)
    except (OSError, ValueError) as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return 2
    n_eval = len(evals["global_step"]) if evals else 0
    print(f"wrote {out} ({len(train['global_step'])} training rows, {n_eval} validation rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
