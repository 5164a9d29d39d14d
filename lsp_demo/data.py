"""Steps 2 and 3: the training and validation tsv files, then the feature database."""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from lsp_demo import REPO
from lsp_demo.console import DemoError, say, shown

# Where `make download` and the Makefile's S put the dumps, and the order its `dump`
# function looks for them in.
REDDIT_DUMPS = REPO / "reddit_extractor" / "data" / "reddit"
DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", "", ".json", ".ndjson")
MAX_VALID_PAIRS = 1000  # Reddit validation lines held out; more only slows validation down


def dummy_data(data_dir: Path, force: bool) -> tuple[Path, Path]:
    from lsp_demo.dummy_data import CITATION, DummyDataError, write_dummy_data

    train, valid = data_dir / "train.tsv", data_dir / "valid.tsv"
    say(f"dialogue set: {CITATION}")
    if train.is_file() and valid.is_file() and not force:
        say(f"reusing {shown(train)} and {shown(valid)} (already written; --force to redo)")
        return train, valid
    try:
        stats = write_dummy_data(train, valid)
    except DummyDataError as err:
        raise DemoError(str(err), status=2) from None
    say(stats.summary())
    say(f"wrote {shown(train)} (weighted training tsv) and {shown(valid)} (validation pairs)")
    return train, valid


def read_months(path: Path) -> list[str]:
    months = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            months.extend(line.split())
    return months


def find_dump(dumps: Path, kind: str, month: str) -> Path | None:
    for suffix in DUMP_SUFFIXES:
        path = dumps / f"{kind}_{month}{suffix}"
        if path.is_file():
            return path
    return None


def missing_dumps(size: str, dumps: Path) -> tuple[list[str], list[str]]:
    """(months of the SIZE list, dump names missing from ``dumps``)."""
    months = read_months(REPO / "configs" / "reddit" / f"train.{size}.txt")
    missing = [
        f"{kind}_{m}" for m in months for kind in ("RS", "RC") if find_dump(dumps, kind, m) is None
    ]
    return months, missing


def split_reddit(
    extracted: Path, train: Path, valid: Path, max_valid: int = MAX_VALID_PAIRS
) -> tuple[int, int]:
    """Hold out every k-th usable line of ``extracted`` (at most ``max_valid``) as a validation
    pair (weights removed); all other lines go to ``train`` unchanged. Returns the counts."""
    from lsp_common.atomic import write_lines_atomic
    from lsp_data.parsing import TURN_SEPARATOR, MalformedLine, parse_training_line

    with open(extracted, "rb") as f:
        n_lines = sum(1 for _ in f)
    if n_lines < 2:
        raise DemoError(f"{extracted} has {n_lines} lines: too few to train on", status=2)
    # Every 10th line at most (a small extract keeps 90% for training), and spread over the
    # whole file so that every month is represented.
    stride = max(10, math.ceil(n_lines / max_valid))
    pairs: list[str] = []

    def training_lines():
        with open(extracted, encoding="utf-8", errors="replace", newline="\n") as f:
            for i, line in enumerate(f):
                line = line.rstrip("\n")
                if i % stride == stride - 1 and len(pairs) < max_valid:
                    try:
                        texts = parse_training_line(line)[1]
                    except MalformedLine:
                        texts = []
                    # A response of weight 0 is dropped by the parser: not a target, so no pair.
                    n_context = line.split("\t")[0].count(TURN_SEPARATOR) + 1
                    if len(texts) == n_context + 1:
                        pairs.append(TURN_SEPARATOR.join(texts[:-1]) + "\t" + texts[-1])
                        continue
                yield line

    # The pairs are collected while the training file is written, so validation comes second;
    # the demo reuses the data only when both files are there.
    write_lines_atomic(train, training_lines())
    write_lines_atomic(valid, pairs)
    return n_lines - len(pairs), len(pairs)


def reddit_data(
    size: str, data_dir: Path, dumps: Path, jobs: int, force: bool
) -> tuple[Path, Path]:
    train, valid = data_dir / "train.tsv", data_dir / "valid.tsv"
    if train.is_file() and valid.is_file() and not force:
        say(f"reusing {shown(train)} and {shown(valid)} (already extracted; --force to redo)")
        return train, valid
    months, missing = missing_dumps(size, dumps)
    if missing:
        raise DemoError(
            f"--data {size} needs the Pushshift dumps of the {len(months)} months listed in "
            f"configs/reddit/train.{size}.txt (RS_YYYY-MM and RC_YYYY-MM, as .zst, .xz, .bz2, "
            f".gz or plain NDJSON) in {shown(dumps)}/; {len(missing)} of {2 * len(months)} are "
            f"missing (first: {', '.join(missing[:4])}). Fetch them with "
            f"`make -C reddit_extractor download SIZE={size}` (resumable) or copy them there "
            "(or point --reddit_dumps at their folder), then run the demo again. "
            "`python demo.py` (--data dummy) needs no download.",
            status=2,
        )
    if shutil.which("make") is None:
        raise DemoError(
            "--data small|full runs the Reddit extractor with `make`, which is not installed",
            status=2,
        )
    extracted = data_dir / "extracted"
    extracted.mkdir(parents=True, exist_ok=True)
    # The extractor's per-month work folder goes under the demo's output too: make reuses a
    # finished month by its files' dates alone, so a work folder shared with runs on other
    # dumps could hand back their months. It is shared by --data small and full (same months,
    # same results), and kept, so a rerun only redoes what changed.
    work = data_dir.parent / "reddit_work"
    cmd = [
        "make",
        "-C",
        shown(REPO / "reddit_extractor"),
        "-j",
        str(jobs),
        f"SIZE={size}",
        f"S={dumps.resolve()}",
        f"T={work.resolve()}",
        f"DATA={extracted.resolve()}",
        "train",
    ]
    say(f"running the Reddit extractor ({len(months)} months):\n  {shlex.join(cmd)}")
    status = subprocess.call(cmd)
    if status != 0:
        raise DemoError(
            f"the Reddit extractor failed (make exit status {status}); its logs are "
            f"in {shown(work / 'logs')}/"
        )
    n_train, n_valid = split_reddit(extracted / "train.tsv", train, valid)
    # The extractor keeps its per-month results, so a forced rerun rebuilds this in seconds;
    # a full-size copy of it would double the disk use.
    (extracted / "train.tsv").unlink()
    say(
        f"wrote {shown(train)} ({n_train} lines) and {shown(valid)} ({n_valid} held-out "
        "validation pairs)"
    )
    return train, valid


def prepro(train: Path, max_seq_len: int, force: bool) -> Path:
    from lsp_data.db import DatabaseError
    from lsp_data.prepro import PreproError, db_folder_for, run_prepro

    folder = db_folder_for(str(train), max_seq_len, False, False)
    meta = folder / "meta.json"
    # A database older than its tsv was made from an earlier version of the data.
    if meta.is_file() and meta.stat().st_mtime >= train.stat().st_mtime and not force:
        say(f"reusing {shown(folder)} (database already built; --force to redo)")
        return folder
    say(f"python prepro.py --corpus {shlex.quote(shown(train))} --max_seq_len {max_seq_len}")
    big = train.stat().st_size > 50 * 2**20
    try:
        folder, _ = run_prepro(
            str(train),
            max_seq_len=max_seq_len,
            overwrite=True,
            # Worker processes only pay off on real corpora; forking costs ~1 s each.
            workers=min(os.cpu_count() or 1, 8) if big else 1,
            progress=big and sys.stderr.isatty(),
            log=say,
        )
    except (PreproError, DatabaseError) as err:
        raise DemoError(f"prepro: {err}") from None
    return folder
