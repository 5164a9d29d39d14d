#!/usr/bin/env python
"""prepro throughput and peak memory against the published prepro's path, in one run.

    python bench/prepro_bench.py [--lines 20000,80000] [--workers 2]

For each corpus size, three phases run one after the other, each in a child process of its
own (so that its peak RSS is its own and imports are counted once per phase):

- ``published``: what the published prepro did: one line at a time, the pure-Python GPT-2
  BPE (``PublishedBPE``, the published tokenizer's algorithm, with its per-word cache)
  called once per turn, one process, features kept as dicts and written per chunk of 65536
  as gzip-compressed JSON into sqlitedict, as the published prepro stored them;
- ``toolkit xN``: ``run_prepro`` with N worker processes (1 and ``--workers``), database
  written.

Printed per phase: lines/s over the work (wall clock; CPU seconds too, as other load on
the machine inflates wall time) (imports and tokenizer loading excluded: they are
shown as ``startup``), the ratio to ``published``, and peak RSS of the main process and of
its largest worker. Every phase must read every line and give the same features (a SHA-256
over all feature fields, in order): the run stops otherwise. After each size, a probe says
how many cores' worth N busy processes get on the machine at that moment: on a shared machine
it bounds what N workers can gain.

The corpus is synthetic but shaped like Reddit text rather than a toy vocabulary: words
drawn with Zipf frequencies from the ~25,000 whole-word entries of GPT-2's vocabulary, rare
made-up words (the tail that misses the BPE's cache), capitals, numbers, punctuation,
emoji and accented text; 1 to 6 turns, mostly 5 to 30 words each.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START = time.perf_counter()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXTRA = [
    "😀",
    "👍",
    "🤔",
    "🎉",
    "❤️",
    "café",
    "naïve",
    "façade",
    "日本語",
    "Ελλάδα",
    "—",
    "…",
    "“ok”",
]
PUNCT = [",", ".", "!", "?", "...", ":", ";", "'s", "n't", ")", "(", "*", '"']


def word_list() -> list[str]:
    from lsp_data.tokenizer import packaged_gpt2_files

    vocab_file, _ = packaged_gpt2_files()
    vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
    # "Ġword" entries are whole words after a space; vocab ids follow merge order, which
    # is roughly frequency order, so rank by id.
    words = sorted(
        ((i, t[1:]) for t, i in vocab.items() if t.startswith("Ġ") and t[1:].isalpha()),
    )
    return [w for _, w in words]


def write_reddit_like_corpus(path: Path, n_lines: int, seed: int) -> Path:
    rng = random.Random(seed)
    words = word_list()
    zipf = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(words))))

    def turn_text() -> str:
        n = min(int(rng.expovariate(1 / 14)) + 1, 120)
        out = []
        for w in rng.choices(words, cum_weights=zipf, k=n):
            r = rng.random()
            if r < 0.03:  # a word the cache has not seen: a made-up compound
                w = w + rng.choice(words).lower() + str(rng.randint(0, 99))
            elif r < 0.08:
                w = w.capitalize()
            elif r < 0.10:
                w = str(rng.randint(0, 100000))
            elif r < 0.115:
                w = rng.choice(EXTRA)
            out.append(w)
            if rng.random() < 0.12:
                out.append(rng.choice(PUNCT))
        return " ".join(out)

    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_lines):
            n_turns = rng.randint(1, 6)
            turns = [f"{rng.choice(['0.0', '1.0', '1.0'])} {turn_text()}" for _ in range(n_turns)]
            f.write(" EOS ".join(turns) + "\t1.0 " + turn_text() + "\n")
    return path


def feature_digest(features) -> str:
    """SHA-256 over every feature's fields, in order (the same for any phase that agrees)."""
    import numpy as np

    h = hashlib.sha256()
    for f in features:
        for name, dtype in (
            ("input_ids", np.int64),
            ("token_type_ids", np.int64),
            ("lm_labels", np.int64),
            ("weights", np.float64),
        ):
            h.update(np.asarray(f[name], dtype=dtype).tobytes())
            h.update(b"|")
    return h.hexdigest()


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the workers)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(name: str, corpus: Path, workers: int, chunk_size: int) -> dict:
    """Runs in the child process; returns its figures."""
    from lsp_data.db import FeatureDB
    from lsp_data.prepro import published_path_features, run_prepro
    from lsp_data.tokenizer import load_published_bpe, load_tokenizer, text_backend

    if name == "published":
        from sqlitedict import SqliteDict

        bpe = load_published_bpe()
        db_file = corpus.parent / "published.db.sqlite"
        rss_startup = peak_rss_mb()
        work_start, cpu_start = time.perf_counter(), cpu_seconds()
        # The published storage: a list of feature dicts per chunk, written as gzip-compressed
        # JSON into sqlitedict (its default codec) when it holds --chunk_size features.
        chunk: list[dict] = []
        n_chunk = 0
        with SqliteDict(str(db_file), flag="n") as db:
            for n_feature, feature in enumerate(published_path_features(corpus, bpe.encode)):
                if len(chunk) >= chunk_size:
                    db[f"chunk_{n_chunk}"] = gzip.compress(json.dumps(chunk).encode("utf-8"))
                    db.commit()
                    chunk, n_chunk = [], n_chunk + 1
                chunk.append(
                    {
                        "conv_id": n_feature,
                        "input_ids": feature.input_ids,
                        "position_ids": list(range(feature.input_len)),
                        "token_type_ids": feature.token_type_ids,
                        "lm_labels": feature.lm_labels,
                        "weights": feature.weights,
                        "input_len": feature.input_len,
                    }
                )
            db[f"chunk_{n_chunk}"] = gzip.compress(json.dumps(chunk).encode("utf-8"))
            db.commit()
        work, cpu, rss = time.perf_counter() - work_start, cpu_seconds() - cpu_start, peak_rss_mb()
        del chunk

        def stored() -> Iterator[dict]:
            with SqliteDict(str(db_file), flag="r") as db:
                for k in range(n_chunk + 1):
                    yield from json.loads(gzip.decompress(db[f"chunk_{k}"]).decode("utf-8"))

        n_line = sum(1 for _ in open(corpus, "rb"))
        n_feature = sum(1 for _ in stored())
        result = {"n_feature": n_feature, "n_line": n_line, "digest": feature_digest(stored())}
    else:
        text_backend(load_tokenizer())  # what run_prepro loads first, outside the work time
        rss_startup = peak_rss_mb()
        work_start, cpu_start = time.perf_counter(), cpu_seconds()
        folder, meta = run_prepro(
            str(corpus),
            workers=workers,
            chunk_size=chunk_size,
            overwrite=True,
            progress=False,
            log=lambda m: None,
        )
        work, cpu, rss = time.perf_counter() - work_start, cpu_seconds() - cpu_start, peak_rss_mb()
        with FeatureDB(folder) as db:
            digest_hex = feature_digest(db.iter_features())
        result = {"n_feature": meta["n_example"], "n_line": meta["n_line"], "digest": digest_hex}
        result["n_line_skipped"] = meta["n_line_skipped"]
    result.update(
        work_s=work,
        cpu_s=cpu,
        startup_s=work_start - START,
        rss_startup_mb=rss_startup,
        rss_main_mb=rss,  # taken before the digest pass, which is no part of the work
        workers=workers if name == "toolkit" else 1,
        rss_worker_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )
    return result


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def effective_cores(n_proc: int) -> float:
    """How many cores ``n_proc`` CPU-bound processes really get now: the same loop once, then
    in ``n_proc`` processes at a time. On a shared machine this is below the core count, and
    it bounds what N workers can gain."""
    import multiprocessing

    n = 10_000_000
    start = time.perf_counter()
    _burn(n)
    alone = time.perf_counter() - start
    with multiprocessing.get_context("fork").Pool(n_proc) as pool:
        start = time.perf_counter()
        pool.map(_burn, [n] * n_proc)
        together = time.perf_counter() - start
    return n_proc * alone / together


def run_phase(name: str, corpus: Path, workers: int, chunk_size: int) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            name,
            "--corpus",
            str(corpus),
            "--workers",
            str(workers),
            "--chunk_size",
            str(chunk_size),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lines", default="20000,80000", help="corpus sizes, comma-separated")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=2)
    p.add_argument(
        "--chunk_size",
        type=int,
        default=10000,
        help="features per stored chunk, both paths (10000): both hold one chunk in memory, "
        "so RSS is flat only on corpora of more than a chunk",
    )
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args.phase, Path(args.corpus), args.workers, args.chunk_size)))
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}; load average {load:.1f}")
    for n_lines in (int(n) for n in args.lines.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            corpus = write_reddit_like_corpus(Path(tmp) / "bench.tsv", n_lines, args.seed)
            mb = corpus.stat().st_size / 1e6
            phases = [("published", "published", 1)] + [
                (f"toolkit x{w}", "toolkit", w) for w in sorted({1, args.workers})
            ]
            results = {
                label: run_phase(name, corpus, w, args.chunk_size) for label, name, w in phases
            }
            cores = effective_cores(args.workers)
        base = results["published"]
        print(
            f"\n{n_lines} lines, {mb:.1f} MB, {base['n_feature']} features, "
            f"chunks of {args.chunk_size}"
        )
        for label, r in results.items():
            if r["n_line"] != n_lines or r.get("n_line_skipped", 0):
                sys.exit(f"{label}: read {r['n_line']} of {n_lines} lines")
            if r["digest"] != base["digest"] or r["n_feature"] != base["n_feature"]:
                sys.exit(f"{label}: features differ from the published path's")
            rate = n_lines / r["work_s"]
            print(
                f"  {label:12s} {rate:9.0f} lines/s  {base['work_s'] / r['work_s']:5.1f}x"
                f"  (work {r['work_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU; startup {r['startup_s']:.1f} s)"
                f"  peak RSS main {r['rss_main_mb']:.0f} MB"
                f" ({r['rss_startup_mb']:.0f} MB after startup)"
                + (f", largest worker {r['rss_worker_mb']:.0f} MB" if r["workers"] > 1 else "")
            )
        print("  all phases: every line read, identical features")
        print(f"  {args.workers} busy processes got {cores:.1f} cores' worth just after")


if __name__ == "__main__":
    main()
