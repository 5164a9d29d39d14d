"""Speed of the DSTC-7 NIST/BLEU pass on synthetic data, relative to a baseline measured in
the same process (plain whitespace tokenisation of the same text), so the figure does not
depend on the machine.

    python bench/dstc_bench.py [--lines 5000] [--refs 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dstc.metrics import calc_diversity, calc_entropy  # noqa: E402
from dstc.mteval import nist_bleu  # noqa: E402

PUNCT = [".", ",", "!", "?", "'s", "n't", "(", ")", "3.5", "1,000", "-", "&", "http://x.com/a?b=1"]


def synthetic(n_lines: int, n_refs: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)] + PUNCT
    # Zipf-like word frequencies, like real chat text
    weights = [1 / (i + 1) for i in range(len(vocab))]

    def line() -> str:
        return " ".join(rng.choices(vocab, weights, k=rng.randint(3, 25)))

    hyps = [line() for _ in range(n_lines)]
    refs = [[line() for _ in range(n_refs)] for _ in range(n_lines)]
    return hyps, refs


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lines", type=int, default=5000)
    p.add_argument("--refs", type=int, default=6)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    hyps, refs = synthetic(args.lines, args.refs, args.seed)
    texts = hyps + [r for seg in refs for r in seg]

    baseline = best_of(args.repeat, lambda: [t.split() for t in texts])
    nist_time = best_of(args.repeat, lambda: nist_bleu(hyps, refs))
    other_time = best_of(args.repeat, lambda: (calc_entropy(hyps), calc_diversity(hyps)))
    result = {
        "lines": args.lines,
        "refs": args.refs,
        "baseline_split_s": round(baseline, 4),
        "nist_bleu_s": round(nist_time, 4),
        "entropy_distinct_s": round(other_time, 4),
        "nist_bleu_over_baseline": round(nist_time / baseline, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
