#!/usr/bin/env python
"""Batched decoding against one context at a time, same process, same model.

    python bench/decode_bench.py [--config configs/117M] [--contexts 64] [--batch_size 16]
                                 [--max_new_tokens 20] [--device cpu]

The model has random weights (the speed does not depend on them) with a wide init so the
greedy replies run to --max_new_tokens instead of stopping at once. Reported: replies per
second for both, the ratio, and whether the replies are identical (they must be).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_data.tokenizer import load_tokenizer  # noqa: E402
from lsp_model.decoding import generate_replies, generate_reply  # noqa: E402
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel  # noqa: E402
from tests.conftest import WORDS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/117M")
    p.add_argument("--contexts", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_new_tokens", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    config = GPT2Config.from_json_file(str(Path(args.config) / "config.json"))
    config.initializer_range = 0.3
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(args.device).eval()
    tokenizer = load_tokenizer()
    rng = random.Random(0)
    histories = [
        [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(rng.randint(1, 4))]
        for _ in range(args.contexts)
    ]
    options = dict(method="greedy", max_new_tokens=args.max_new_tokens)

    generate_replies(model, tokenizer, histories[:2], **options)  # warm-up
    start = time.perf_counter()
    single = [generate_reply(model, tokenizer, h, **options) for h in histories]
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = generate_replies(model, tokenizer, histories, batch_size=args.batch_size, **options)
    batched_s = time.perf_counter() - start

    print(
        f"{args.contexts} contexts, {args.config}, {args.device}, greedy, "
        f"{args.max_new_tokens} new tokens"
    )
    print(f"one at a time:      {args.contexts / single_s:7.1f} replies/s")
    print(
        f"batch {args.batch_size:<3}:          {args.contexts / batched_s:7.1f} replies/s  "
        f"({single_s / batched_s:.1f}x)"
    )
    same = sum(a == b for a, b in zip(single, batched))
    print(f"identical replies:  {same}/{args.contexts}")


if __name__ == "__main__":
    main()
