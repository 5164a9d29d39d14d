"""Shared helpers: run the CLI in-process, read outputs."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REDDIT_PY = ROOT / "reddit_extractor" / "src" / "reddit.py"
MAKE = shutil.which("make")

PUBLISHED = [
    "--clean",
    "True",
    "--min_score",
    "1",
    "--min_depth",
    "2",
    "--max_depth",
    "5",
    "--use_title",
    "0",
    "--leaves_only",
    "1",
]

_spec = importlib.util.spec_from_file_location("reddit_cli", REDDIT_PY)
reddit_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reddit_cli)


def run(*argv: str) -> int:
    return reddit_cli.main([str(a) for a in argv])


def write_lists(folder: Path) -> tuple[Path, Path]:
    words = folder / "words.txt"
    words.write_text("# test blocklist\ndarn\nheck no\n")
    subs = folder / "subs.txt"
    subs.write_text("# test blocklist\nBadPlace\n")
    return words, subs


def extract_and_conv(
    inp: Path, out: Path, month: str = "2011-01", conv_args=(), extract_args=()
) -> str:
    assert (
        run(
            month, "--task", "extract", "--reddit_input", inp, "--reddit_output", out, *extract_args
        )
        == 0
    )
    assert (
        run(month, "--task", "conv", "--reddit_input", inp, "--reddit_output", out, *conv_args) == 0
    )
    return (out / "conv" / f"{month}.tsv").read_text(encoding="utf-8")


def counts(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split("\t") for line in path.read_text().splitlines())}


def write_ndjson(path: Path, records) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def write_dumps(tmp_path: Path, month: str, subs, comments, ext: str = "") -> Path:
    """Make ``tmp_path/in`` holding the month's RS_ and RC_ dumps (NDJSON, file names ending
    in ``ext``); returns the folder."""
    inp = tmp_path / "in"
    inp.mkdir()
    write_ndjson(inp / f"RS_{month}{ext}", subs)
    write_ndjson(inp / f"RC_{month}{ext}", comments)
    return inp


def make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the Makefile with S, T and DATA under tmp_path (in, out, data) and one worker."""
    cmd = [
        MAKE,
        "-C",
        str(ROOT / "reddit_extractor"),
        f"S={tmp_path / 'in'}",
        f"T={tmp_path / 'out'}",
        f"DATA={tmp_path / 'data'}",
        "WORKERS=1",
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def write_keys(path: Path, keys) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("".join(k + "\n" for k in keys))


def listdir(path: Path) -> list[str]:
    return sorted(os.listdir(path))
