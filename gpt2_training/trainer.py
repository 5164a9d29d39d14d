"""The training run of LSP_train.py, top to bottom: setup, one plain loop, saving, validation.

Per optimizer step each process runs ``gradient_accumulation_steps`` forward/backward
passes of ``train_batch_size / gradient_accumulation_steps`` examples; under DDP the
gradients are all-reduced only on the last of them. Logged means and token counts are
reduced over ranks; only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch.nn.parallel import DistributedDataParallel

from gpt2_training.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)
from gpt2_training.distributed import (
    DistContext,
    allreduce_sum_hook,
    broadcast_object,
    gather_objects,
    sum_over_ranks,
)
from gpt2_training.evaluation import eval_model_loss
from gpt2_training.logs import EVAL_HEADER, TRAIN_HEADER, CsvLog
from gpt2_training.precision import setup_precision
from lsp_common.atomic import write_text_atomic
from lsp_data.loaders import BucketingDataLoader, DataError, DynamicBatchingLoader
from lsp_data.tokenizer import load_tokenizer
from lsp_model.loading import (
    checkpoint_state_dict,
    load_model,
    resolve_model_source,
    save_hf_folder,
)
from lsp_model.optim import MAX_GRAD_NORM, build_optimizer, lr_at_step, set_lr

logger = logging.getLogger("LSP_train")
transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bars mid-run

INF = 1e12  # a batch perplexity above this is not averaged in (as the original)
HF_FOLDER = "hf_model"
FAIL_AT_ENV = "LSP_FAIL_AT"  # "RANK:STEP": raise on that rank at that step (fault-injection tests)


class RunningStats:
    """Per-epoch running means and token counts, as the published train_log.txt reports them."""

    def __init__(self, state: dict[str, float] | None = None):
        self.loss_sum = self.ppl_sum = 0.0
        self.n_steps = 0
        self.n_token_real = self.n_token_total = 0
        self.n_nonfinite = 0
        if state:
            self.__dict__.update(state)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(self.n_steps, 1)

    @property
    def mean_ppl(self) -> float:
        return self.ppl_sum / max(self.n_steps, 1)

    def add(self, loss: float, ppl: float, n_real: int, n_total: int) -> None:
        self.n_token_real += n_real
        self.n_token_total += n_total
        if not math.isfinite(loss):
            self.n_nonfinite += 1
            return
        self.loss_sum += loss
        self.ppl_sum += ppl if (math.isfinite(ppl) and ppl < INF) else self.mean_ppl
        self.n_steps += 1


def run_folder_name(args: argparse.Namespace, n_gpu: int) -> str:
    timestamp = datetime.datetime.now().strftime("%Y-%m-%d%H%M%S")
    micro = args.train_batch_size // args.gradient_accumulation_steps
    return f"GPT2.{args.learning_rate}.{micro}.{n_gpu}gpu.{timestamp}"


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _batch_stream(loader: BucketingDataLoader, epoch: int, skip: int):
    """(epoch, batch) forever: training stops on a step count, not at an epoch end."""
    while True:
        yield from ((epoch, b) for b in loader.iter_epoch(epoch, skip_batches=skip))
        epoch, skip = epoch + 1, 0


def _real_tokens(position_ids: torch.Tensor) -> int:
    # Padding has position 0 after position 0 itself; pad id 0 is also a real token ("!").
    return int(position_ids.shape[0] + (position_ids[:, 1:] > 0).sum())


def train(args: argparse.Namespace, ctx: DistContext) -> Path:
    """Run training; returns the run folder."""
    seed = args.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    device = ctx.device
    accum = args.gradient_accumulation_steps
    micro_batch = args.train_batch_size // accum

    # --- where this run lives: a new folder, or the folder of the checkpoint resumed
    resumed: dict[str, Any] | None = None
    if args.resume:
        if ctx.is_main:  # finds the newest intact checkpoint, loading it once
            found, resumed = resolve_resume(args.resume, args.output_dir)
        path = broadcast_object(str(found) if ctx.is_main else None, ctx)
        if not ctx.is_main:
            resumed = load_checkpoint(path)
        run_dir = Path(path).parent.parent
        if resumed["world_size"] != ctx.world_size:
            raise CheckpointError(
                f"{path} was written by {resumed['world_size']} processes; "
                f"resume it with the same number (this job has {ctx.world_size})"
            )
    else:
        n_gpu = ctx.world_size if ctx.enabled else torch.cuda.device_count()
        run_dir = Path(args.output_dir) / broadcast_object(run_folder_name(args, n_gpu), ctx)
    log_dir = Path(args.log_dir) if args.log_dir else run_dir

    # --- model, tokenizer, optimizer, precision
    source = resolve_model_source(args.model_name_or_path)
    tokenizer = load_tokenizer(source)  # falls back to the packaged GPT-2 files
    model = load_model(args.model_name_or_path, args.init_checkpoint)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
    model.to(device).train()
    if args.gradient_checkpointing:
        # Non-reentrant: works under DDP and no_sync, and replays dropout's RNG state.
        # (transformers 5 renamed gradient_checkpointing_enable; both exist until v6.)
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    optimizer = build_optimizer(model, args.learning_rate)
    precision = setup_precision(args.fp16, args.bf16, args.loss_scale, device)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        if resumed.get("scaler") and precision.scaler.is_enabled():
            precision.scaler.load_state_dict(resumed["scaler"])
    ddp_model = model
    if ctx.enabled:
        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        ddp_model.register_comm_hook(None, allreduce_sum_hook)
    loss_divisor = accum * ctx.world_size  # gradients are summed over passes and ranks
    params = [p for p in model.parameters() if p.requires_grad]
    n_embd = model.config.n_embd

    # --- data
    train_loader = BucketingDataLoader(
        args.train_input_file,
        micro_batch,
        args.max_seq_length,
        shuffle=args.shuffle_data,
        seed=seed,
        prefetch=args.num_prefetch,
        pin_memory=device.type == "cuda",
        with_weights=args.use_weights,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    eval_loader = None
    if ctx.is_main and not args.skip_eval:
        eval_loader = DynamicBatchingLoader(
            args.eval_input_file,
            tokenizer,
            args.normalize_data,
            args.eval_batch_size,
            args.max_seq_length,
        )
        if len(eval_loader) == 0:  # found now, not at the first validation hours later
            raise DataError(
                f"--eval_input_file {args.eval_input_file}: no CONTEXT<TAB>RESPONSE "
                f"pair in it that fits --max_seq_length {args.max_seq_length} "
                f"({eval_loader.n_skipped_lines} malformed lines skipped, "
                f"{eval_loader.n_dropped} examples too long dropped)"
            )

    # --- counters and data position
    global_step, step = args.continue_from, args.continue_from * accum
    epoch, batches_in_epoch = 0, 0
    stats = RunningStats()
    epoch_elapsed = 0.0
    n_skipped_steps = 0
    if resumed is not None:
        global_step, step = resumed["global_step"], resumed["step"]
        n_skipped_steps = resumed.get("n_skipped_steps", 0)
        mine = resumed["ranks"][ctx.rank]
        epoch, batches_in_epoch = mine["epoch"], mine["batches_in_epoch"]
        stats = RunningStats(mine["stats"])
        epoch_elapsed = mine["epoch_elapsed"]
        _set_rng_state(mine["rng"], device)
        logger.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            resumed["checkpoint"],
            global_step,
            epoch + 1,
            batches_in_epoch,
        )

    train_log = eval_log = tb = pbar = None
    if ctx.is_main:  # folders only now: a run that cannot start leaves nothing behind
        run_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        keep = global_step if resumed is not None else None
        train_log = CsvLog(log_dir / "train_log.txt", TRAIN_HEADER, keep_upto_step=keep)
        if not args.skip_eval:
            eval_log = CsvLog(log_dir / "eval_log.txt", EVAL_HEADER, keep_upto_step=keep)
        resolved = {
            **vars(args),
            "run_dir": str(run_dir),
            "world_size": ctx.world_size,
            "device": str(device),
            "precision": precision.name,
            "micro_batch_size": micro_batch,
            "effective_batch_size": args.train_batch_size * ctx.world_size,
        }
        write_text_atomic(run_dir / "args.json", json.dumps(resolved, indent=2) + "\n")
        if args.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(log_dir / "tensorboard"), purge_step=global_step + 1)
        if args.pbar:
            import tqdm

            pbar = tqdm.tqdm(
                total=args.num_optim_steps, initial=global_step, desc="training", dynamic_ncols=True
            )
        logger.info(
            "run folder %s; %d process(es) on %s, %s; %d examples per optimizer step "
            "(%d per pass x %d accumulation x %d processes)",
            run_dir,
            ctx.world_size,
            device,
            precision.name,
            args.train_batch_size * ctx.world_size,
            micro_batch,
            accum,
            ctx.world_size,
        )

    fail_at = os.environ.get(FAIL_AT_ENV)

    def save_and_validate() -> None:
        if not ctx.is_main:
            return
        atomic_torch_save(
            checkpoint_state_dict(model), run_dir / f"GP2-pretrain-step-{global_step}.pkl"
        )
        save_hf_folder(model, tokenizer, run_dir / HF_FOLDER)
        if eval_loader is not None:
            eval_loss, eval_ppl = eval_model_loss(
                model, eval_loader, device, args.no_token_id, precision.autocast()
            )
            model.train()
            eval_log.write(epoch + 1, global_step, step, eval_loss, eval_ppl)
            logger.info(
                "step %d: validation loss %.4f, perplexity %.2f", global_step, eval_loss, eval_ppl
            )
            if tb is not None:
                tb.add_scalar("eval/loss", eval_loss, global_step)
                tb.add_scalar("eval/ppl", eval_ppl, global_step)

    def checkpoint() -> None:
        mine = {
            "epoch": epoch,
            "batches_in_epoch": batches_in_epoch,
            "stats": vars(stats).copy(),
            "epoch_elapsed": time.time() - epoch_start,
            "rng": _rng_state(device),
        }
        ranks = gather_objects(mine, ctx)
        if ctx.is_main:
            state = {
                "model": checkpoint_state_dict(model),
                "optimizer": optimizer.state_dict(),
                "scaler": precision.scaler.state_dict() if precision.scaler.is_enabled() else None,
                "global_step": global_step,
                "step": step,
                "world_size": ctx.world_size,
                "n_skipped_steps": n_skipped_steps,
                "ranks": ranks,
            }
            save_checkpoint(run_dir, global_step, state, args.keep_checkpoints)

    save_step = args.save_step or args.valid_step
    stream = _batch_stream(train_loader, epoch, batches_in_epoch)
    epoch_start = time.time() - epoch_elapsed
    try:
        while global_step < args.num_optim_steps:
            pending = []  # per pass: (its epoch's stats, loss, ppl, tokens); read once per step
            for micro in range(accum):
                batch_epoch, batch = next(stream)
                if batch_epoch != epoch:
                    epoch, batches_in_epoch = batch_epoch, 0
                    stats = RunningStats()
                    epoch_start = time.time()
                batches_in_epoch += 1
                n_real = _real_tokens(batch[1])  # counted on the CPU copy: no device sync
                input_ids, position_ids, token_ids, labels, *rest = (
                    t.to(device, non_blocking=True) for t in batch
                )
                weights = rest[0] if args.use_weights else None
                last = micro == accum - 1
                sync = ddp_model.no_sync() if ctx.enabled and not last else contextlib.nullcontext()
                with sync:
                    with precision.autocast():
                        loss, ppl = ddp_model(
                            input_ids,
                            position_ids,
                            None if args.no_token_id else token_ids,
                            labels,
                            weights,
                        )
                    precision.scaler.scale(loss / loss_divisor).backward()
                pending.append((stats, loss.detach(), ppl, n_real, input_ids.numel()))
                step += 1
            values = torch.stack(
                [torch.stack([p[1].float(), p[2].float()]) for p in pending]
            ).tolist()
            for (owner, _, _, n_real, n_total), (loss_value, ppl_value) in zip(pending, values):
                owner.add(loss_value, ppl_value, n_real, n_total)

            if fail_at == f"{ctx.rank}:{global_step + 1}":
                raise RuntimeError(
                    f"{FAIL_AT_ENV}: injected failure on rank {ctx.rank} at step {global_step + 1}"
                )
            lr = lr_at_step(
                args.lr_schedule,
                global_step,
                args.learning_rate,
                warmup_steps=args.warmup_steps,
                warmup_proportion=args.warmup_proportion,
                num_optim_steps=args.num_optim_steps,
                n_embd=n_embd,
            )
            set_lr(optimizer, lr)
            precision.scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            finite = bool(torch.isfinite(grad_norm))
            if precision.scaler.is_enabled():
                precision.scaler.step(optimizer)  # skips the update itself on inf/nan
                precision.scaler.update()
            elif finite:
                optimizer.step()
            if not finite:
                n_skipped_steps += 1
                logger.warning(
                    "step %d: non-finite gradients, update skipped (%d so far)",
                    global_step + 1,
                    n_skipped_steps,
                )
            optimizer.zero_grad(set_to_none=True)
            global_step += 1

            mean_loss, mean_ppl, n_real, n_total = sum_over_ranks(
                [stats.mean_loss, stats.mean_ppl, stats.n_token_real, stats.n_token_total], ctx
            )
            mean_loss /= ctx.world_size
            mean_ppl /= ctx.world_size
            if ctx.is_main:
                epoch_time = time.time() - epoch_start
                train_log.write(
                    epoch + 1,
                    global_step,
                    step,
                    mean_loss,
                    mean_ppl,
                    int(n_real),
                    int(n_total),
                    epoch_time,
                )
                if pbar is not None:
                    pbar.set_postfix_str(
                        f"tok/s: {n_real / max(epoch_time, 1e-9) / 1000:.1f}k "
                        f"ppl: {mean_ppl:.2f} epoch: {epoch + 1}"
                    )
                    pbar.update(1)
                if tb is not None:
                    tb.add_scalar("train/loss", mean_loss, global_step)
                    tb.add_scalar("train/ppl", mean_ppl, global_step)
                    tb.add_scalar("train/lr", lr, global_step)
                    tb.add_scalar("train/tokens_per_s", n_real / max(epoch_time, 1e-9), global_step)

            done = global_step >= args.num_optim_steps
            if global_step % args.valid_step == 0 or done:
                save_and_validate()
            if global_step % save_step == 0 or done:
                checkpoint()
    finally:
        stream.close()
        train_loader.close()
        for closable in (train_log, eval_log, tb, pbar):
            if closable is not None:
                closable.close()
    if ctx.is_main:
        if stats.n_nonfinite or n_skipped_steps:
            logger.warning(
                "%d non-finite batch losses, %d optimizer steps skipped",
                stats.n_nonfinite,
                n_skipped_steps,
            )
        if train_loader.n_dropped_long:
            logger.info(
                "%d features longer than --max_seq_length %d were left out",
                train_loader.n_dropped_long,
                args.max_seq_length,
            )
        if eval_loader is not None and (eval_loader.n_skipped_lines or eval_loader.n_dropped):
            logger.info(
                "validation (%s): %d malformed lines skipped, %d of %d examples dropped as "
                "too long for --max_seq_length %d",
                args.eval_input_file,
                eval_loader.n_skipped_lines,
                eval_loader.n_dropped,
                eval_loader.n_examples,
                args.max_seq_length,
            )
        logger.info("done: %d optimizer steps; run folder %s", global_step, run_dir)
    return run_dir
