"""The training run of LSP_train.py, in the shape of nanoGPT's train.py and litgpt's recipes.

``train`` reads top to bottom: find the run folder (new, or the one resumed), build the
model, optimizer and data, start or restore the counters, then ``fit`` loops over
``train_step`` (one optimizer step), ``log_train_step``, and ``validate_and_save``.

Per optimizer step each process runs ``gradient_accumulation_steps`` forward/backward
passes of ``train_batch_size / gradient_accumulation_steps`` examples; under DDP the
gradients are all-reduced only on the last of them. ``Gradients`` is the one place that
decides the gradients' scale. Logged means and token counts are reduced over ranks; only
rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import transformers
from torch.nn.parallel import DistributedDataParallel

from gpt2_training.args import TrainConfig
from gpt2_training.checkpoint import (
    CheckpointError,
    disk_use_line,
    load_checkpoint,
    prune_weights,
    resolve_resume,
    save_checkpoint,
    sweep_run_leftovers,
)
from gpt2_training.distributed import (
    DistContext,
    broadcast_object,
    gather_objects,
    sum_over_ranks,
)
from gpt2_training.evaluation import eval_model_loss
from gpt2_training.logs import EVAL_HEADER, TRAIN_HEADER, CsvLog
from gpt2_training.precision import Precision, setup_precision
from lsp_common.atomic import OutputError, write_text_atomic
from lsp_data.loaders import BucketingDataLoader, DataError, DynamicBatchingLoader
from lsp_data.tokenizer import load_tokenizer
from lsp_model.hub import resolve_model_source
from lsp_model.loading import (
    checkpoint_state_dict,
    load_model,
    save_hf_folder,
    save_state_dict_file,
)
from lsp_model.modeling import GPT2LMHeadModel
from lsp_model.optim import MAX_GRAD_NORM, build_optimizer, lr_at_step, set_lr

logger = logging.getLogger("LSP_train")
transformers.utils.logging.disable_progress_bar()  # no "Writing model shards" bars mid-run

INF = 1e12  # a batch perplexity above this is not averaged in (as the original)
HF_FOLDER = "hf_model"

Batch = tuple[torch.Tensor, ...]


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


def run_folder_name(cfg: TrainConfig, n_gpu: int) -> str:
    timestamp = datetime.datetime.now().strftime("%Y-%m-%d%H%M%S")
    return f"GPT2.{cfg.learning_rate}.{cfg.micro_batch_size}.{n_gpu}gpu.{timestamp}"


def unused_folder_name(parent: str | Path, name: str) -> str:
    """``name``, or ``name.1``, ``name.2``, ... when a run folder of that name exists: run
    names count seconds, and a new run must never write into another run's folder."""
    candidate, k = name, 0
    while (Path(parent) / candidate).exists():
        k += 1
        candidate = f"{name}.{k}"
    return candidate


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


def _batch_stream(
    loader: BucketingDataLoader, epoch: int, skip: int
) -> Generator[tuple[int, Batch], None, None]:
    """(epoch, batch) forever: training stops on a step count, not at an epoch end."""
    while True:
        yield from ((epoch, b) for b in loader.iter_epoch(epoch, skip_batches=skip))
        epoch, skip = epoch + 1, 0


def _real_tokens(position_ids: torch.Tensor) -> int:
    # Padding has position 0 after position 0 itself; pad id 0 is also a real token ("!").
    return int(position_ids.shape[0] + (position_ids[:, 1:] > 0).sum())


def _allreduce_sum(process_group, bucket):  # noqa: ANN001, ANN202 - DDP rejects string annotations
    """DDP communication hook: sum the ranks' gradients, without DDP's division by world size.

    (Parameters: a ProcessGroup or None, and a ``dist.GradBucket``; returns a Future.)
    """
    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class Gradients:
    """The one owner of the gradients' scale: loss division, rank sum, loss scale, clipping.

    Each pass's loss is divided by ``accumulation x world size`` and the ranks' gradients
    are summed (``_allreduce_sum`` replaces DDP's averaging), so every per-batch gradient
    has the scale it has in one process running the same batches in ``accumulation x
    world size`` passes; only the summation order differs, which keeps multi-process runs
    equal to single-process ones to rounding. The fp16 loss scale is applied in
    ``backward`` and removed in ``step``, before clipping to ``MAX_GRAD_NORM``.
    """

    def __init__(self, model: torch.nn.Module, ctx: DistContext, accum: int, scaler: Any):
        self.accum = accum
        self.divisor = accum * ctx.world_size
        self.scaler = scaler  # torch GradScaler (possibly disabled) or StaticLossScaler
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ddp: DistributedDataParallel | None = None
        if ctx.enabled:
            device = ctx.device
            # Gradients live in DDP's buckets: no copy between them per all-reduce.
            # (static_graph=True would save a little more, but torch 2.13's reducer fails an
            # internal assert when it meets no_sync's gradient accumulation.)
            self.ddp = DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )
            self.ddp.register_comm_hook(None, _allreduce_sum)
        self.module: torch.nn.Module = self.ddp or model  # what the passes call

    def pass_context(self, micro: int) -> contextlib.AbstractContextManager:
        """Around pass ``micro``'s forward and backward: all-reduce on the last pass only."""
        if self.ddp is not None and micro < self.accum - 1:
            return self.ddp.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss / self.divisor).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Unscale, clip, update unless a gradient is inf/nan, clear.

        Returns whether the update was made as a 0-dim bool tensor on the device, read only
        when the step is logged: the step itself waits for the device nowhere (a fused
        optimizer takes the inf/nan flag as a tensor and skips the update on the device).
        """
        self.scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        finite = torch.isfinite(grad_norm)
        if self.scaler.is_enabled():
            self.scaler.step(optimizer)  # skips the update itself on inf/nan
            self.scaler.update()
        elif getattr(optimizer, "_step_supports_amp_scaling", False):
            optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]
            optimizer.step()
            del optimizer.found_inf  # type: ignore[attr-defined]
        elif bool(finite):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return finite


@dataclass
class Progress:
    """Counters and data position of one rank: what a checkpoint keeps to resume exactly."""

    global_step: int = 0  # optimizer steps done
    step: int = 0  # forward/backward passes done
    epoch: int = 0  # 0-based; logged 1-based
    batches_in_epoch: int = 0
    stats: RunningStats = field(default_factory=RunningStats)
    epoch_start: float = field(default_factory=time.time)
    n_skipped_steps: int = 0  # optimizer steps skipped for inf/nan gradients

    @classmethod
    def start(cls, cfg: TrainConfig, ctx: DistContext, resumed: dict | None) -> Progress:
        """Fresh counters (from --continue_from), or a checkpoint's, with its RNG states."""
        if resumed is None:
            accum = cfg.gradient_accumulation_steps
            return cls(global_step=cfg.continue_from, step=cfg.continue_from * accum)
        mine = resumed["ranks"][ctx.rank]
        _set_rng_state(mine["rng"], ctx.device)
        logger.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            resumed["checkpoint"],
            resumed["global_step"],
            mine["epoch"] + 1,
            mine["batches_in_epoch"],
        )
        return cls(
            global_step=resumed["global_step"],
            step=resumed["step"],
            epoch=mine["epoch"],
            batches_in_epoch=mine["batches_in_epoch"],
            stats=RunningStats(mine["stats"]),
            epoch_start=time.time() - mine["epoch_elapsed"],
            n_skipped_steps=resumed.get("n_skipped_steps", 0),
        )

    def new_epoch(self, epoch: int) -> None:
        self.epoch, self.batches_in_epoch = epoch, 0
        self.stats = RunningStats()
        self.epoch_start = time.time()

    def rank_state(self, device: torch.device) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "stats": vars(self.stats).copy(),
            "epoch_elapsed": time.time() - self.epoch_start,
            "rng": _rng_state(device),
        }


class RunLogs:
    """What rank 0 writes as it goes; the other ranks hold one that writes nothing."""

    def __init__(
        self,
        train_log: CsvLog | None = None,
        eval_log: CsvLog | None = None,
        tb: Any = None,  # torch.utils.tensorboard.SummaryWriter, imported only when asked for
        pbar: Any = None,  # tqdm.tqdm, likewise
    ):
        self.train_log, self.eval_log, self.tb, self.pbar = train_log, eval_log, tb, pbar

    @classmethod
    def open(cls, cfg: TrainConfig, log_dir: Path, global_step: int, resumed: bool) -> RunLogs:
        """train_log.txt, eval_log.txt (unless --skip_eval), TensorBoard, progress bar."""
        keep = global_step if resumed else None  # a resumed run drops rows it will redo
        train_log = CsvLog(log_dir / "train_log.txt", TRAIN_HEADER, keep_upto_step=keep)
        eval_log = tb = pbar = None
        if not cfg.skip_eval:
            eval_log = CsvLog(log_dir / "eval_log.txt", EVAL_HEADER, keep_upto_step=keep)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(log_dir / "tensorboard"), purge_step=global_step + 1)
        if cfg.pbar:
            import tqdm

            pbar = tqdm.tqdm(
                total=cfg.num_optim_steps, initial=global_step, desc="training", dynamic_ncols=True
            )
        return cls(train_log, eval_log, tb, pbar)

    def train_row(
        self, p: Progress, loss: float, ppl: float, n_real: int, n_total: int, lr: float
    ) -> None:
        if self.train_log is None:
            return
        epoch_time = time.time() - p.epoch_start
        self.train_log.write(
            p.epoch + 1, p.global_step, p.step, loss, ppl, n_real, n_total, epoch_time
        )
        tokens_per_s = n_real / max(epoch_time, 1e-9)
        if self.pbar is not None:
            self.pbar.set_postfix_str(
                f"tok/s: {tokens_per_s / 1000:.1f}k ppl: {ppl:.2f} epoch: {p.epoch + 1} "
                f"pad: {100 * (1 - n_real / max(n_total, 1)):.0f}%"
            )
            self.pbar.update(1)
        if self.tb is not None:
            for name, value in (("loss", loss), ("ppl", ppl), ("lr", lr)):
                self.tb.add_scalar(f"train/{name}", value, p.global_step)
            self.tb.add_scalar("train/tokens_per_s", tokens_per_s, p.global_step)

    def eval_row(self, p: Progress, loss: float, ppl: float) -> None:
        if self.eval_log is None:
            return
        self.eval_log.write(p.epoch + 1, p.global_step, p.step, loss, ppl)
        if self.tb is not None:
            self.tb.add_scalar("eval/loss", loss, p.global_step)
            self.tb.add_scalar("eval/ppl", ppl, p.global_step)

    def close(self) -> None:
        for closable in (self.train_log, self.eval_log, self.tb, self.pbar):
            if closable is not None:
                closable.close()


@dataclass
class Run:
    """What set-up builds and the loop works with."""

    cfg: TrainConfig
    ctx: DistContext
    dir: Path
    model: GPT2LMHeadModel
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    precision: Precision
    grads: Gradients
    train_loader: BucketingDataLoader
    eval_loader: DynamicBatchingLoader | None
    logs: RunLogs = field(default_factory=RunLogs)

    @property
    def log_dir(self) -> Path:
        return Path(self.cfg.log_dir) if self.cfg.log_dir else self.dir


# ----------------------------------------------------------------------------- set up


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# What defines a run: changing one of these on --resume would make the resumed steps
# those of another run (other data, batches, rates, model or numerics). The rest (how long,
# how often to validate and save, where logs go, what is shown) may change freely.
RUN_DEFINING = (
    "model_name_or_path",
    "init_checkpoint",
    "train_input_file",
    "seed",
    "max_seq_length",
    "train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_schedule",
    "warmup_proportion",
    "warmup_steps",
    "fp16",
    "bf16",
    "loss_scale",
    "no_token_id",
    "use_weights",
    "shuffle_data",
)
_PATH_ARGS = ("model_name_or_path", "init_checkpoint", "train_input_file")


def _same_arg(name: str, old: Any, new: Any) -> bool:
    if name in _PATH_ARGS and isinstance(old, str) and isinstance(new, str):
        # the same folder named from another working directory is the same run
        return old == new or os.path.realpath(old) == os.path.realpath(new)
    return old == new


def check_resume_args(cfg: TrainConfig, run_dir: Path, step: int, is_main: bool = True) -> None:
    """Refuse a resume whose run-defining arguments differ from the run's args.json,
    unless --resume_force; then say which changed and keep the old arguments as
    ``args.before-step-N.json`` (args.json gets the new ones)."""
    path = run_dir / "args.json"
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("%s is missing or unreadable: resumed arguments cannot be compared", path)
        return
    now = cfg.to_dict()
    changed = [
        f"--{name} {before[name]!s} -> {now[name]!s}"
        for name in RUN_DEFINING
        if name in before and not _same_arg(name, before[name], now[name])
    ]
    if changed and not cfg.resume_force:
        raise CheckpointError(
            f"--resume: this run ({run_dir}) was started with other arguments: "
            f"{'; '.join(changed)}. Resume with the same ones, or add --resume_force true "
            "to continue with the new ones anyway"
        )
    if changed and is_main:
        kept = run_dir / f"args.before-step-{step}.json"
        write_text_atomic(kept, json.dumps(before, indent=2) + "\n")
        logger.warning(
            "--resume_force: continuing with changed arguments: %s (the previous ones are in %s)",
            "; ".join(changed),
            kept,
        )
    if before.get("num_optim_steps") != cfg.num_optim_steps and cfg.lr_schedule == "BERT":
        logger.warning(
            "--num_optim_steps %s -> %s changes the BERT schedule's learning rates from here on",
            before.get("num_optim_steps"),
            cfg.num_optim_steps,
        )


def check_writable(folder: str | os.PathLike[str], flag: str) -> None:
    """Fail now, before the model is loaded, if ``folder`` cannot take files: checked in the
    nearest folder that exists (nothing is created for a run that cannot start)."""
    target = Path(folder).absolute()
    probe_dir = target
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    where = f"{flag} {folder}"
    if not probe_dir.is_dir():
        raise OutputError(f"{where}: cannot be created, {probe_dir} is not a folder")
    try:
        # A real write, synced: a read-only mount or a full disk fails here, not at the
        # first save hours later.
        with tempfile.TemporaryFile(dir=probe_dir, prefix=".write-test-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputError(f"{where}: cannot write in {probe_dir} ({err.strerror or err})") from None


def locate_run(cfg: TrainConfig, ctx: DistContext) -> tuple[Path, dict[str, Any] | None]:
    """The run folder (not created yet) and, with --resume, the checkpoint's state."""
    assert cfg.output_dir is not None  # TrainConfig requires it
    if ctx.is_main:
        check_writable(cfg.output_dir, "--output_dir")
        if cfg.log_dir:
            check_writable(cfg.log_dir, "--log_dir")
    if not cfg.resume:
        n_gpu = ctx.world_size if ctx.enabled else torch.cuda.device_count()
        name = (
            unused_folder_name(cfg.output_dir, run_folder_name(cfg, n_gpu)) if ctx.is_main else None
        )
        return Path(cfg.output_dir) / broadcast_object(name, ctx), None
    if ctx.is_main:  # finds the newest intact checkpoint, loading it once
        found, resumed = resolve_resume(cfg.resume, cfg.output_dir)
    path = broadcast_object(str(found) if ctx.is_main else None, ctx)
    if not ctx.is_main:
        resumed = load_checkpoint(path)
    if resumed["world_size"] != ctx.world_size:
        raise CheckpointError(
            f"{path} was written by {resumed['world_size']} processes; "
            f"resume it with the same number (this job has {ctx.world_size})"
        )
    run_dir = Path(path).parent.parent
    if ctx.is_main:
        check_writable(run_dir, "--resume")
    check_resume_args(cfg, run_dir, resumed["global_step"], ctx.is_main)
    return run_dir, resumed


def enable_gradient_checkpointing(model: GPT2LMHeadModel) -> None:
    # Non-reentrant: works under DDP and no_sync, and replays dropout's RNG state.
    # (transformers 5 renamed gradient_checkpointing_enable; both exist until v6.)
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_model_and_optimizer(
    cfg: TrainConfig, ctx: DistContext, resumed: dict[str, Any] | None
) -> tuple[GPT2LMHeadModel, Any, torch.optim.Optimizer, Precision, Gradients]:
    """Tokenizer, model, optimizer, precision and gradient handling, restored when resuming."""
    source = resolve_model_source(cfg.model_name_or_path)
    tokenizer = load_tokenizer(source)  # falls back to the packaged GPT-2 files
    model = load_model(cfg.model_name_or_path, cfg.init_checkpoint)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
    # transformers' decorator on .to() hides `self` from the type checker
    model.to(ctx.device)  # type: ignore[arg-type]
    model.train()
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    optimizer = build_optimizer(model, cfg.learning_rate)
    precision = setup_precision(cfg.fp16, cfg.bf16, cfg.loss_scale, ctx.device)
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        if resumed.get("scaler") and precision.scaler.is_enabled():
            precision.scaler.load_state_dict(resumed["scaler"])
    grads = Gradients(model, ctx, cfg.gradient_accumulation_steps, precision.scaler)
    if cfg.compile:
        # In place, so the model keeps its class and its state dict its keys; DDP's wrapper
        # is compiled when there is one, which lets it split the graph at its buckets.
        grads.module.compile()
    return model, tokenizer, optimizer, precision, grads


def build_loaders(
    cfg: TrainConfig, ctx: DistContext, tokenizer: Any
) -> tuple[BucketingDataLoader, DynamicBatchingLoader | None]:
    """This rank's share of the training data; the validation pairs on rank 0."""
    assert cfg.train_input_file is not None  # TrainConfig requires it
    train_loader = BucketingDataLoader(
        cfg.train_input_file,
        cfg.micro_batch_size,
        cfg.max_seq_length,
        shuffle=cfg.shuffle_data,
        seed=cfg.seed,
        prefetch=cfg.num_prefetch,
        pin_memory=ctx.device.type == "cuda",
        with_weights=cfg.use_weights,
        rank=ctx.rank,
        world_size=ctx.world_size,
        max_tokens=cfg.max_tokens_per_batch,
        pad_multiple=cfg.pad_to_multiple,
    )
    if not ctx.is_main or cfg.skip_eval:
        return train_loader, None
    assert cfg.eval_input_file is not None  # TrainConfig requires it without --skip_eval
    eval_loader = DynamicBatchingLoader(
        cfg.eval_input_file,
        tokenizer,
        cfg.normalize_data,
        cfg.eval_batch_size,
        cfg.max_seq_length,
    )
    if len(eval_loader) == 0:  # found now, not at the first validation hours later
        raise DataError(
            f"--eval_input_file {cfg.eval_input_file}: no CONTEXT<TAB>RESPONSE "
            f"pair in it that fits --max_seq_length {cfg.max_seq_length} "
            f"({eval_loader.n_skipped_lines} malformed lines skipped, "
            f"{eval_loader.n_dropped} examples too long dropped)"
        )
    return train_loader, eval_loader


def open_run_folder(run: Run, progress: Progress, resumed: bool) -> None:
    """Rank 0: create the folders, write args.json, open the logs (only now, so that a run
    that cannot start leaves nothing behind)."""
    cfg, ctx = run.cfg, run.ctx
    run.dir.mkdir(parents=True, exist_ok=True)
    run.log_dir.mkdir(parents=True, exist_ok=True)
    sweep_run_leftovers(run.dir, run.log_dir)  # what a killed earlier session left
    resolved = {
        **cfg.to_dict(),
        "run_dir": str(run.dir),
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "precision": run.precision.name,
        "micro_batch_size": cfg.micro_batch_size,
        "effective_batch_size": cfg.train_batch_size * ctx.world_size,
    }
    write_text_atomic(run.dir / "args.json", json.dumps(resolved, indent=2) + "\n")
    run.logs = RunLogs.open(cfg, run.log_dir, progress.global_step, resumed)
    logger.info(
        "run folder %s; %d process(es) on %s, %s; %d examples per optimizer step "
        "(%d per pass x %d accumulation x %d processes)",
        run.dir,
        ctx.world_size,
        ctx.device,
        run.precision.name,
        cfg.train_batch_size * ctx.world_size,
        cfg.micro_batch_size,
        cfg.gradient_accumulation_steps,
        ctx.world_size,
    )


# ----------------------------------------------------------------------------- the loop


@dataclass
class StepResult:
    """What one optimizer step leaves to log, still on the device until ``log_train_step``."""

    lr: float
    passes: list[tuple[RunningStats, torch.Tensor, torch.Tensor, int, int]]
    updated: torch.Tensor  # 0-dim bool: False when inf/nan gradients skipped the update


def forward_backward(
    run: Run, progress: Progress, stream: Iterator[tuple[int, Batch]]
) -> list[tuple[RunningStats, torch.Tensor, torch.Tensor, int, int]]:
    """The step's passes: gradients accumulate. Returns per pass (its epoch's stats, loss,
    ppl, real tokens, padded tokens), the losses still on the device."""
    cfg, device = run.cfg, run.ctx.device
    pending = []
    for micro in range(cfg.gradient_accumulation_steps):
        batch_epoch, batch = next(stream)
        if batch_epoch != progress.epoch:
            progress.new_epoch(batch_epoch)
        progress.batches_in_epoch += 1
        n_real = _real_tokens(batch[1])  # counted on the CPU copy: no device sync
        input_ids, position_ids, token_ids, labels, *rest = (
            t.to(device, non_blocking=True) for t in batch
        )
        weights = rest[0] if cfg.use_weights else None
        with run.grads.pass_context(micro):
            with run.precision.autocast():
                loss, ppl = run.grads.module(
                    input_ids, position_ids, None if cfg.no_token_id else token_ids, labels, weights
                )
            run.grads.backward(loss)
        pending.append((progress.stats, loss.detach(), ppl, n_real, input_ids.numel()))
        progress.step += 1
    return pending


def train_step(run: Run, progress: Progress, stream: Iterator[tuple[int, Batch]]) -> StepResult:
    """One optimizer step: the passes, then the update at this step's rate."""
    cfg = run.cfg
    passes = forward_backward(run, progress, stream)
    lr = lr_at_step(
        cfg.lr_schedule,
        progress.global_step,
        cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        warmup_proportion=cfg.warmup_proportion,
        num_optim_steps=cfg.num_optim_steps,
        n_embd=run.model.config.n_embd,
    )
    set_lr(run.optimizer, lr)
    updated = run.grads.step(run.optimizer)
    progress.global_step += 1
    return StepResult(lr, passes, updated)


def log_train_step(run: Run, progress: Progress, result: StepResult) -> None:
    """Read the step's values from the device (the one wait per step), add them to the
    epoch's stats, and write one train_log.txt row: running means averaged over ranks,
    tokens summed."""
    values = torch.stack(
        [torch.stack([loss.float(), ppl.float()]) for _, loss, ppl, _, _ in result.passes]
        + [torch.stack([result.updated.float(), result.updated.float()])]
    ).tolist()
    for (owner, _, _, pass_real, pass_total), (loss_value, ppl_value) in zip(result.passes, values):
        owner.add(loss_value, ppl_value, pass_real, pass_total)
    if not values[-1][0]:
        progress.n_skipped_steps += 1
        logger.warning(
            "step %d: non-finite gradients, update skipped (%d so far)",
            progress.global_step,
            progress.n_skipped_steps,
        )
    lr = result.lr
    stats, world = progress.stats, run.ctx.world_size
    loss, ppl, n_real, n_total = sum_over_ranks(
        [stats.mean_loss, stats.mean_ppl, stats.n_token_real, stats.n_token_total], run.ctx
    )
    run.logs.train_row(progress, loss / world, ppl / world, int(n_real), int(n_total), lr)


def validate(run: Run, progress: Progress) -> None:
    """Rank 0: validation loss and perplexity into eval_log.txt."""
    cfg = run.cfg
    assert run.eval_loader is not None  # built on rank 0 unless --skip_eval
    loss, ppl = eval_model_loss(
        run.model, run.eval_loader, run.ctx.device, cfg.no_token_id, run.precision.autocast()
    )
    run.model.train()
    run.logs.eval_row(progress, loss, ppl)
    logger.info("step %d: validation loss %.4f, perplexity %.2f", progress.global_step, loss, ppl)


def save_weights(run: Run, global_step: int) -> None:
    """Rank 0: GP2-pretrain-step-N.pkl (the published state dict, with its .sha256) and the
    HF folder (with its SHA256SUMS).

    The newest --keep_checkpoints .pkl files are kept; the oldest go before the new one is
    written, so the disk holds at most that many plus the one being written."""
    pkl = run.dir / f"GP2-pretrain-step-{global_step}.pkl"
    prune_weights(run.dir, global_step, run.cfg.keep_checkpoints)
    save_state_dict_file(checkpoint_state_dict(run.model), pkl)
    save_hf_folder(run.model, run.tokenizer, run.dir / HF_FOLDER)
    logger.info("saved %s and %s/; %s", pkl.name, HF_FOLDER, disk_use_line(run.dir))


def save_training_state(run: Run, progress: Progress) -> None:
    """A resumable checkpoint: the model, optimizer and scaler, and every rank's Progress."""
    ranks = gather_objects(progress.rank_state(run.ctx.device), run.ctx)
    if not run.ctx.is_main:
        return
    scaler = run.precision.scaler
    state = {
        "model": checkpoint_state_dict(run.model),
        "optimizer": run.optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "global_step": progress.global_step,
        "step": progress.step,
        "world_size": run.ctx.world_size,
        "n_skipped_steps": progress.n_skipped_steps,
        "ranks": ranks,
    }
    save_checkpoint(run.dir, progress.global_step, state, run.cfg.keep_checkpoints)


def validate_and_save(run: Run, progress: Progress) -> None:
    """After a step: --valid_step saves weights and validates, --eval_step only validates,
    --save_step writes a resumable checkpoint; the last step does all three."""
    cfg, step = run.cfg, progress.global_step
    done = step >= cfg.num_optim_steps
    publish = step % cfg.valid_step == 0 or done
    if run.ctx.is_main:
        if publish:
            save_weights(run, step)
        evaluate = publish or (cfg.eval_step > 0 and step % cfg.eval_step == 0)
        if run.eval_loader is not None and evaluate:
            validate(run, progress)
    if step % (cfg.save_step or cfg.valid_step) == 0 or done:
        save_training_state(run, progress)


def fit(run: Run, progress: Progress) -> None:
    """Optimizer steps until --num_optim_steps, looping over the data as often as needed."""
    stream = _batch_stream(run.train_loader, progress.epoch, progress.batches_in_epoch)
    try:
        while progress.global_step < run.cfg.num_optim_steps:
            result = train_step(run, progress, stream)
            log_train_step(run, progress, result)
            validate_and_save(run, progress)
    finally:
        stream.close()


def report_end(run: Run, progress: Progress) -> None:
    """Rank 0: what was skipped or dropped, and where the run is."""
    skipped = progress.n_skipped_steps
    if progress.stats.n_nonfinite or skipped:
        logger.warning(
            "%d non-finite batch losses, %d optimizer steps skipped",
            progress.stats.n_nonfinite,
            skipped,
        )
    loader = run.train_loader
    if loader.n_tokens_padded:
        logger.info(
            "padding: %.1f%% of the %d tokens in the training batches",
            100 * loader.padding_share,
            loader.n_tokens_padded,
        )
    if run.train_loader.n_dropped_long:
        logger.info(
            "%d features longer than --max_seq_length %d were left out",
            run.train_loader.n_dropped_long,
            run.cfg.max_seq_length,
        )
    evals = run.eval_loader
    if evals is not None and (evals.n_skipped_lines or evals.n_dropped):
        logger.info(
            "validation (%s): %d malformed lines skipped, %d of %d examples dropped as "
            "too long for --max_seq_length %d",
            run.cfg.eval_input_file,
            evals.n_skipped_lines,
            evals.n_dropped,
            evals.n_examples,
            run.cfg.max_seq_length,
        )
    logger.info(
        "done: %d optimizer steps; run folder %s; %s",
        progress.global_step,
        run.dir,
        disk_use_line(run.dir),
    )


def train(cfg: TrainConfig, ctx: DistContext) -> Path:
    """Run training; returns the run folder."""
    seed_everything(cfg.seed)
    run_dir, resumed = locate_run(cfg, ctx)
    model, tokenizer, optimizer, precision, grads = build_model_and_optimizer(cfg, ctx, resumed)
    train_loader, eval_loader = build_loaders(cfg, ctx, tokenizer)
    run = Run(
        cfg=cfg,
        ctx=ctx,
        dir=run_dir,
        model=model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        precision=precision,
        grads=grads,
        train_loader=train_loader,
        eval_loader=eval_loader,
    )
    progress = Progress.start(cfg, ctx, resumed)
    try:
        if ctx.is_main:
            open_run_folder(run, progress, resumed is not None)
        fit(run, progress)
    finally:
        train_loader.close()
        run.logs.close()
    if ctx.is_main:
        report_end(run, progress)
    return run_dir
