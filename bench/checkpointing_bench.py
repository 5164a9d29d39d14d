#!/usr/bin/env python
"""Peak memory and time of training passes with and without --gradient_checkpointing.

    python bench/checkpointing_bench.py [--config configs/117M] [--batch 8] [--seq 512]
                                        [--passes 2] [--device cpu]

Each variant runs in its own process (peak RSS, or peak CUDA memory on a GPU, is per
process): forward + backward of the loss on random tokens, ``--passes`` times. Reported:
the peak memory growth and the time of each, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(
    config: str, batch: int, seq: int, passes: int, device: str, checkpointing: bool
) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from lsp_model.modeling import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config.from_json_file(str(Path(config) / "config.json")))
    model.to(device).train()
    if checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    ids = torch.randint(0, 50000, (batch, seq), device=device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    for _ in range(passes):
        loss, _ = model(ids, None, None, ids)
        loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"peak_mb": (peak - base) / 2**20, "seconds": time.perf_counter() - start}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/117M")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", choices=["plain", "checkpointing"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(
            json.dumps(
                measure(
                    args.config,
                    args.batch,
                    args.seq,
                    args.passes,
                    args.device,
                    args.child == "checkpointing",
                )
            )
        )
        return
    results = {}
    for variant in ("plain", "checkpointing"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            variant,
            "--config",
            args.config,
            "--batch",
            str(args.batch),
            "--seq",
            str(args.seq),
            "--passes",
            str(args.passes),
            "--device",
            args.device,
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    print(
        f"{args.config}, batch {args.batch} x {args.seq} tokens, {args.passes} passes, {args.device}"
    )
    for variant, r in results.items():
        print(f"{variant:14s} peak memory growth {r['peak_mb']:8.0f} MB   {r['seconds']:6.1f} s")
    plain, ckpt = results["plain"], results["checkpointing"]
    print(
        f"checkpointing: {plain['peak_mb'] / ckpt['peak_mb']:.1f}x less memory, "
        f"{ckpt['seconds'] / plain['seconds']:.2f}x the time"
    )


if __name__ == "__main__":
    main()
