#!/usr/bin/env python
"""prepro throughput against a line-by-line baseline, same process.

    python bench/prepro_bench.py [--lines 40000] [--workers 2]

The baseline does what the published prepro did per line: parse it, call the tokenizer
once per turn, build the feature lists (no database writes, which only favours it).
Reported: MB of tsv per second for the baseline and for ``run_prepro`` with 1 and N
worker processes, and the ratios.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_data.features import conversation_turns, make_features  # noqa: E402
from lsp_data.parsing import MalformedLine, parse_training_line  # noqa: E402
from lsp_data.prepro import run_prepro  # noqa: E402
from lsp_data.tokenizer import load_tokenizer  # noqa: E402
from tests.conftest import write_corpus  # noqa: E402


def baseline(corpus: Path) -> int:
    tokenizer = load_tokenizer()
    n = 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            try:
                weights, texts = parse_training_line(line)
            except MalformedLine:
                continue
            turns = [tokenizer.encode(t) for t in texts]
            turns, weights = conversation_turns(turns, weights, reverse=False, two_turn=False)
            n += len(make_features(turns, weights, 128))
    return n


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lines", type=int, default=40000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(
            Path(tmp) / "bench.tsv", args.lines, seed=2, max_turns=6, max_words=20
        )
        mb = corpus.stat().st_size / 1e6
        t_base, n_base = timed(lambda: baseline(corpus))
        runs = {}
        for workers in sorted({1, args.workers}):
            t, (_, meta) = timed(
                lambda w=workers: run_prepro(
                    str(corpus), workers=w, overwrite=True, progress=False, log=lambda m: None
                )
            )
            assert meta["n_example"] == n_base
            runs[workers] = t
    print(f"{args.lines} lines, {mb:.1f} MB, {n_base} features")
    print(f"baseline (line by line): {mb / t_base:.2f} MB/s")
    for workers, t in runs.items():
        print(f"run_prepro, {workers} worker(s): {mb / t:.2f} MB/s  ({t_base / t:.1f}x baseline)")


if __name__ == "__main__":
    main()
