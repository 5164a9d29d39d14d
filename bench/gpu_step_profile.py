#!/usr/bin/env python
"""Where a training step's time goes on a GPU: model-only loop vs LSP_train's loop, 117M shape.

    python bench/gpu_step_profile.py
Reports tokens/s of a bare fwd/bwd/AdamW loop on synthetic batches (the ceiling) for a few
batch sizes, to compare with the trainer's train_log figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_model.modeling import GPT2Config, GPT2LMHeadModel  # noqa: E402
from lsp_model.optim import build_optimizer  # noqa: E402


def run(batch: int, seq: int, dtype: torch.dtype, steps: int = 30) -> float:
    cfg = GPT2Config.from_json_file("configs/117M/config.json")
    model = GPT2LMHeadModel(cfg).cuda().train()
    opt = build_optimizer(model, 1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = torch.randint(0, 50000, (batch, seq), device="cuda")
    labels = x.clone()
    labels[:, : seq // 2] = -1
    for i in range(steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype):
            loss, ppl = model(x, None, None, labels)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return batch * seq * steps / (time.perf_counter() - start)


if __name__ == "__main__":
    for batch, seq in ((64, 104), (256, 104), (32, 128)):
        for dtype in (torch.float16, torch.bfloat16):
            print(
                f"batch {batch}x{seq} {dtype}: {run(batch, seq, dtype) / 1e3:.0f}k tokens/s",
                flush=True,
            )
