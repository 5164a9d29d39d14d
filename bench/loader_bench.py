#!/usr/bin/env python
"""Throughput of BucketingDataLoader against a per-feature Python baseline, same process.

    python bench/loader_bench.py [--lines 60000] [--batch 32] [--seconds 10]

The baseline builds each batch the way the published loader did: JSON-decoded Python
lists per feature, one tensor per feature, then ``pad_sequence``. Reported: tokens per
second for both and their ratio. For scale: GPT-2 small trains at a few hundred thousand
tokens per second on one modern GPU, so the loader should stay well above that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_data.db import FeatureDB  # noqa: E402
from lsp_data.loaders import BucketingDataLoader, bucket_batches  # noqa: E402
from lsp_data.prepro import run_prepro  # noqa: E402
from tests.conftest import write_corpus  # noqa: E402


def tokens_per_second(batches, seconds: float) -> float:
    n_tokens, start = 0, time.perf_counter()
    for batch in batches:
        n_tokens += batch[0].numel()
        if time.perf_counter() - start > seconds:
            break
    return n_tokens / (time.perf_counter() - start)


def baseline_batches(db: FeatureDB, batch_size: int, max_len: int):
    import numpy as np

    for key in db.keys:
        chunk = db.read_chunk(key)
        offsets = chunk.offsets
        feats = [chunk.feature_dict(i, offsets) for i in range(len(chunk))]
        feats = [f for f in feats if f["input_len"] <= max_len]
        lens = np.array([f["input_len"] for f in feats])
        for idx in bucket_batches(lens, batch_size, 100 * batch_size, np.random.default_rng(0)):
            group = [feats[i] for i in idx]
            yield tuple(
                pad_sequence(
                    [torch.tensor(f[name], dtype=torch.long) for f in group],
                    batch_first=True,
                    padding_value=pad,
                )
                for name, pad in (
                    ("input_ids", 0),
                    ("position_ids", 0),
                    ("token_type_ids", 0),
                    ("lm_labels", -1),
                )
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lines", type=int, default=60000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(
            Path(tmp) / "bench.tsv", args.lines, seed=1, max_turns=6, max_words=20
        )
        folder, meta = run_prepro(
            str(corpus), chunk_size=20000, workers=2, progress=False, log=lambda m: None
        )
        loader = BucketingDataLoader(str(folder), args.batch, 128, seed=0)
        ours = tokens_per_second(
            (b for e in range(100) for b in loader.iter_epoch(e)), args.seconds
        )
        with FeatureDB(folder) as db:
            base = tokens_per_second(
                (b for _ in range(100) for b in baseline_batches(db, args.batch, 128)), args.seconds
            )
        loader.close()
    print(f"features: {meta['n_example']}, batch {args.batch}")
    print(f"baseline (per-feature lists + pad_sequence): {base / 1e3:,.0f}k tokens/s")
    print(f"BucketingDataLoader (numpy + prefetch thread): {ours / 1e3:,.0f}k tokens/s")
    print(f"ratio: {ours / base:.1f}x")


if __name__ == "__main__":
    main()
