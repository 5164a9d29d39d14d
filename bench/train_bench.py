#!/usr/bin/env python
"""Training throughput: the published trainer's loop against the toolkit's step, in one process.

    python bench/train_bench.py                                  # CPU, 4-layer x 256, batch 32
    python bench/train_bench.py --device cuda --model configs/117M --batch 64 --seq 128 \\
        --precisions fp32,bf16,fp16 --compile both --json out.json

The same prepro database feeds every variant:

* ``baseline``: what the published trainer computes. transformers' ``GPT2LMHeadModel`` with
  eager attention (the published model computed attention by hand), logits at every position,
  cross-entropy with ignore index -1, torch's default AdamW, float32, gradient clipping at 1.0;
  batches of a fixed number of features, cut from length-sorted buckets as the published
  loader does.
* ``toolkit``: ``gpt2_training.trainer.train_step`` and ``log_train_step`` (the loop's own
  code) with the toolkit's model, optimizer and precision, on the same fixed batches.
* ``toolkit+budget``: the same step on token-budget batches (``--max_tokens_per_batch``) of
  the same data, the budget being the fixed batches' mean padded size.

Variants run in alternating rounds, so that a slower or busier stretch of the machine is shared
out. Reported per variant: real (unpadded) tokens/s, the ratio to the baseline, the share of
padding, achieved TFLOP/s and MFU against the matmul peak measured in the same run in the
variant's precision, and the peak memory (CUDA: allocated; CPU: the process's peak RSS so far,
which only grows). Model FLOPs per token are the usual 6 x parameters + 12 x layers x width x
sequence length, counted for every real token, whatever a variant skips.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2_training.args import TrainConfig  # noqa: E402
from gpt2_training.distributed import DistContext  # noqa: E402
from gpt2_training.precision import cpu_has_native_bf16  # noqa: E402
from gpt2_training.trainer import (  # noqa: E402
    Progress,
    Run,
    _real_tokens,
    build_model_and_optimizer,
    log_train_step,
    train_step,
)
from lsp_data.loaders import BucketingDataLoader  # noqa: E402
from lsp_data.prepro import run_prepro  # noqa: E402
from tests.conftest import write_corpus  # noqa: E402

Batch = tuple[torch.Tensor, ...]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--model", default=None, help="folder with config.json (default: 4 x 256)")
    p.add_argument("--batch", type=int, default=32, help="features per fixed batch")
    p.add_argument("--seq", type=int, default=128, help="--max_seq_length of the database")
    p.add_argument("--lines", type=int, default=4000, help="synthetic corpus lines")
    p.add_argument("--turns", type=int, default=8, help="synthetic threads: at most N turns")
    p.add_argument("--words", type=int, default=25, help="synthetic turns: at most N words")
    p.add_argument("--corpus", default=None, help="a training tsv to use instead")
    p.add_argument("--db", default=None, help="a prepro database to use (skips prepro)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per variant per round")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    p.add_argument(
        "--precisions",
        default=None,
        help="toolkit precisions, comma list (default: fp32,bf16; fp32 alone on a CPU that "
        "only emulates bf16)",
    )
    p.add_argument("--compile", default="off", choices=("off", "on", "both"))
    p.add_argument(
        "--batching", default="both", choices=("fixed", "budget", "both"), help="toolkit batches"
    )
    p.add_argument(
        "--pad_multiple",
        type=int,
        default=8,
        help="toolkit batches' width rounding (64 helps compile)",
    )
    p.add_argument("--no_baseline", action="store_true", help="toolkit variants only")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument(
        "--memory",
        action="store_true",
        help="also run each variant alone in a child process for its peak RSS (CPU)",
    )
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- the machine


def matmul_peak(device: torch.device, dtype: torch.dtype, budget_s: float = 0.3) -> float:
    """Best FLOP/s of large square matmuls in ``dtype`` on ``device``.

    The product grows from 256 until one takes a tenth of ``budget_s`` (or reaches the usual
    size, 1536 on a CPU and 4096 on a GPU), then each of three measurements repeats it for
    about ``budget_s``. A dtype the CPU only emulates (bf16 without AVX-512 BF16 or AMX, about
    100x below fp32) so stays small instead of holding the bench for minutes.
    """
    largest = 4096 if device.type == "cuda" else 1536
    n = 256
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b  # first call: kernel selection, page faults
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        once = time.perf_counter() - start
        if once >= budget_s / 10 or n >= largest:
            break
        n = min(largest, n * 2)
    reps = max(1, min(50, round(budget_s / max(once, 1e-6))))
    best = 2 * n**3 / once
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def default_precisions(device: torch.device) -> str:
    """fp32 and bf16, less bf16 on a CPU without native bf16 products (said once)."""
    if device.type == "cpu" and not cpu_has_native_bf16():
        print(
            "bf16 left out: this CPU only emulates it (no AVX-512 BF16 or AMX); ask with --precisions"
        )
        return "fp32"
    return "fp32,bf16"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- the variants


class Baseline:
    """The published trainer's computation, written plainly."""

    name = "baseline"
    precision = "fp32"

    def __init__(self, config_file: Path, device: torch.device, lr: float = 1e-4):
        import transformers

        config = transformers.GPT2Config.from_json_file(str(config_file))
        config._attn_implementation = "eager"
        torch.manual_seed(0)
        self.model = transformers.GPT2LMHeadModel(config).to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, eps=1e-6)
        self.device = device

    def step(self, batch: Batch) -> None:
        input_ids, position_ids, _, labels = (t.to(self.device) for t in batch[:4])
        logits = self.model(input_ids, position_ids=position_ids, use_cache=False).logits
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-1
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss.item()  # the published loop read the loss every step


class Toolkit:
    """The trainer's own step: ``train_step`` then ``log_train_step``."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        db: Path,
        out: Path,
        device: torch.device,
        precision: str,
        compiled: bool,
        batch: int,
        seq: int,
    ):
        self.name, self.precision = name, precision
        cfg = TrainConfig(
            model_name_or_path=str(model_dir),
            train_input_file=str(db),
            output_dir=str(out),
            skip_eval=True,
            train_batch_size=batch,
            gradient_accumulation_steps=1,
            learning_rate=1e-4,
            lr_schedule="None",
            max_seq_length=seq,
            fp16=precision == "fp16",
            bf16=precision == "bf16",
            compile=compiled,
            pbar=False,
        )
        ctx = DistContext(device=device)
        torch.manual_seed(0)
        model, tokenizer, optimizer, precision_, grads = build_model_and_optimizer(cfg, ctx, None)
        self.run = Run(
            cfg=cfg,
            ctx=ctx,
            dir=out,
            model=model,
            tokenizer=tokenizer,
            optimizer=optimizer,
            precision=precision_,
            grads=grads,
            train_loader=None,  # type: ignore[arg-type]  # batches are handed in below
            eval_loader=None,
        )
        self.progress = Progress()

    def step(self, batch: Batch) -> None:
        stream: Iterator[tuple[int, Batch]] = iter([(0, batch)])
        log_train_step(self.run, self.progress, train_step(self.run, self.progress, stream))


def timed(step: Callable[[Batch], None], batches: list[Batch], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for b in batches:
        step(b)
    sync(device)
    return time.perf_counter() - start


def build_variant(spec: dict[str, Any], device: torch.device) -> Any:
    """The Baseline or Toolkit a spec describes (the run and the --memory probes share it)."""
    if spec["kind"] == "baseline":
        return Baseline(Path(spec["model"]) / "config.json", device)
    return Toolkit(
        spec["name"],
        Path(spec["model"]),
        Path(spec["db"]),
        Path(spec["out"]),
        device,
        spec["precision"],
        spec["compiled"],
        spec["batch"],
        spec["seq"],
    )


def _peak_rss_alone(spec: dict[str, Any]) -> float:
    """In a fresh process: build one variant, run 3 steps, return the process's peak RSS (MB)."""
    device = torch.device("cpu")
    loader = BucketingDataLoader(
        spec["db"],
        spec["batch"],
        spec["seq"],
        seed=0,
        prefetch=0,
        max_tokens=spec["max_tokens"],
        pad_multiple=spec["pad_multiple"],
    )
    batches = list(loader)[:3]
    if "out" in spec:  # a run folder of its own, beside the main run's
        spec = {**spec, "out": spec["out"] + "-probe"}
    variant = build_variant(spec, device)
    for b in batches:
        variant.step(b)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and
    # exec, while the high-water mark belongs to this process's own address space.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_alone(spec: dict[str, Any]) -> float:
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_peak_rss_alone, spec).result()


# ----------------------------------------------------------------------------- the run


def make_data(args: argparse.Namespace, work: Path) -> Path:
    if args.db:
        return Path(args.db)
    corpus = Path(args.corpus) if args.corpus else work / "train.tsv"
    if not args.corpus:
        # Reddit-like threads: up to 8 turns of up to 25 words (a third of them context only).
        write_corpus(corpus, args.lines, seed=1, max_turns=args.turns, max_words=args.words)
    folder, _ = run_prepro(
        str(corpus), max_seq_len=args.seq, progress=False, overwrite=True, log=lambda m: None
    )
    return folder


def model_folder(args: argparse.Namespace, work: Path) -> Path:
    if args.model:
        return Path(args.model)
    folder = work / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "vocab_size": 50257,
                "n_positions": 1024,
                "n_embd": 256,
                "n_layer": 4,
                "n_head": 4,
            }
        )
    )
    return folder


def flops_per_token(config_file: Path, mean_len: float) -> float:
    cfg = json.loads(config_file.read_text())
    d, layers, vocab = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"]
    params = vocab * d + cfg.get("n_positions", 1024) * d + layers * 12 * d * d
    return 6 * params + 12 * layers * d * mean_len


def needed_flops_per_token(config_file: Path, fpt: float, labelled_share: float) -> float:
    """What the toolkit's step must compute per real token: the vocabulary projection (and
    its two gradients) only at labelled positions."""
    cfg = json.loads(config_file.read_text())
    return fpt - 6 * cfg["vocab_size"] * cfg["n_embd"] * (1 - labelled_share)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.precisions is None:
        args.precisions = default_precisions(device)
    needed = (args.warmup + args.steps * args.rounds) * (1 if args.no_baseline else 2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = make_data(args, work)
        model_dir = model_folder(args, work)
        fixed = list(BucketingDataLoader(str(db), args.batch, args.seq, seed=0, prefetch=0))
        if len(fixed) < needed:
            raise SystemExit(f"{len(fixed)} batches of {args.batch}; need {needed}: add --lines")
        budget = round(sum(b[0].numel() for b in fixed) / len(fixed))
        budgeted = list(
            BucketingDataLoader(
                str(db),
                args.batch,
                args.seq,
                seed=0,
                prefetch=0,
                max_tokens=budget,
                pad_multiple=args.pad_multiple,
            )
        )
        if args.pad_multiple > 8:  # the same fixed batches, widths rounded up further
            repadded = BucketingDataLoader(
                str(db), args.batch, args.seq, seed=0, prefetch=0, pad_multiple=args.pad_multiple
            )
            toolkit_fixed = list(repadded)
        else:
            toolkit_fixed = fixed
        real = sum(_real_tokens(b[1]) for b in fixed)
        mean_len = real / sum(b[0].shape[0] for b in fixed)
        fpt = flops_per_token(model_dir / "config.json", mean_len)
        labelled_share = sum(int((b[3] != -1).sum()) for b in fixed) / real
        needed_fpt = needed_flops_per_token(model_dir / "config.json", fpt, labelled_share)

        # Each variant as a spec (rebuilt from it by the --memory probes) and its batches.
        common = {"db": str(db), "model": str(model_dir), "seq": args.seq, "batch": args.batch}
        planned: list[tuple[dict[str, Any], list[Batch]]] = []
        if not args.no_baseline:
            baseline = {**common, "name": "baseline", "kind": "baseline"}
            planned.append(({**baseline, "max_tokens": 0, "pad_multiple": 1}, fixed))
        compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
        kinds = {
            "fixed": [(toolkit_fixed, "toolkit", 0)],
            "budget": [(budgeted, "toolkit+budget", budget)],
        }
        kinds["both"] = kinds["fixed"] + kinds["budget"]
        for precision in args.precisions.split(","):
            for compiled in compiles:
                tag = precision + (" compiled" if compiled else "")
                for batches, label, max_tokens in kinds[args.batching]:
                    spec = {
                        **common,
                        "name": f"{label} {tag}",
                        "kind": "toolkit",
                        "out": str(work / f"run-{len(planned)}"),
                        "precision": precision,
                        "compiled": compiled,
                        "max_tokens": max_tokens,
                        "pad_multiple": args.pad_multiple,
                    }
                    planned.append((spec, batches))
        specs = {spec["name"]: spec for spec, _ in planned}
        variants = [(build_variant(spec, device), batches) for spec, batches in planned]
        peaks = {p: matmul_peak(device, DTYPES[p]) for p in {v.precision for v, _ in variants}}
        results: dict[str, dict[str, float]] = {}
        for variant, batches in variants:  # warm-up: compilation, allocator, first-step costs
            timed(variant.step, batches[: args.warmup], device)
        for r in range(args.rounds):
            for variant, batches in variants:
                start = args.warmup + r * args.steps
                chunk = batches[start : start + args.steps] or batches[: args.steps]
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds = timed(variant.step, chunk, device)
                row = results.setdefault(
                    variant.name, {"seconds": 0.0, "real": 0, "padded": 0, "peak_mem_mb": 0.0}
                )
                row["seconds"] += seconds
                row["real"] += sum(_real_tokens(b[1]) for b in chunk)
                row["padded"] += sum(b[0].numel() for b in chunk)
                row["peak_mem_mb"] = max(row["peak_mem_mb"], peak_memory_mb(device))
            # The peak is measured again each round and the best kept: a busy moment during
            # one measurement would otherwise inflate every MFU.
            peaks = {p: max(v, matmul_peak(device, DTYPES[p])) for p, v in peaks.items()}
        base = results.get("baseline")
        base_tps = base["real"] / base["seconds"] if base else None
        print(
            f"{device.type}, {torch.get_num_threads()} threads; model {model_dir.name}; "
            f"batch {args.batch}, seq {args.seq}, mean length {mean_len:.1f}, token budget "
            f"{budget}; matmul peak "
            + ", ".join(f"{p} {v / 1e12:.2f} TFLOP/s" for p, v in sorted(peaks.items()))
        )
        print(
            f"{'variant':28s} {'tok/s':>9s} {'ratio':>6s} {'pad%':>5s} {'TFLOP/s':>8s} "
            f"{'MFU%':>5s} {'peak MB':>8s}"
        )
        for variant, _ in variants:
            row = results[variant.name]
            tps = row["real"] / row["seconds"]
            row["tokens_per_s"] = tps
            # None without a baseline: JSON has no NaN (json.dumps would write one anyway).
            row["ratio"] = tps / base_tps if base_tps else None
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
            row["padding"] = 1 - row["real"] / row["padded"]
            row["tflops"] = tps * fpt / 1e12
            row["mfu"] = tps * fpt / peaks[variant.precision]
            print(
                f"{variant.name:28s} {tps:9.0f} {ratio:>6s} {100 * row['padding']:5.1f} "
                f"{row['tflops']:8.3f} {100 * row['mfu']:5.1f} {row['peak_mem_mb']:8.0f}"
            )
        if base_tps:
            # The most any step computing the same thing could reach here: the needed FLOPs
            # at 100% of the measured peak, against the baseline's measured speed.
            ceilings = {p: v / needed_fpt / base_tps for p, v in sorted(peaks.items())}
            print(
                f"labelled share {100 * labelled_share:.1f}%: the toolkit's step needs "
                f"{needed_fpt / 1e6:.1f} of the {fpt / 1e6:.1f} MFLOP per token; ceiling at the "
                "measured peak: "
                + ", ".join(f"{p} {c:.1f}x the baseline" for p, c in ceilings.items())
            )
        if args.memory and device.type == "cpu":
            print("peak RSS of each variant run alone (3 steps, a fresh process each):")
            for variant, _ in variants:
                mb = peak_rss_alone(specs[variant.name])
                results[variant.name]["peak_rss_alone_mb"] = mb
                print(f"  {variant.name:28s} {mb:8.0f} MB")
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "device": torch.cuda.get_device_name(device)
                        if device.type == "cuda"
                        else "cpu",
                        "threads": torch.get_num_threads(),
                        "model": str(model_dir),
                        "batch": args.batch,
                        "seq": args.seq,
                        "mean_len": mean_len,
                        "token_budget": budget,
                        "flops_per_token": fpt,
                        "labelled_share": labelled_share,
                        "needed_flops_per_token": needed_fpt,
                        "matmul_peak_flops": peaks,
                        "results": results,
                    },
                    indent=2,
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
