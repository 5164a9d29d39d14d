"""LSP_train.py's command line (docs/REFERENCE.md §6): the published flags and defaults, plus extensions.

Boolean flags take the strings true/false. ``--config FILE.json`` sets any argument from
a JSON object; flags given on the command line win over it.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


class ArgumentError(ValueError):
    """An argument or config file a user must fix."""


def boolean_string(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "y", "on"):
        return True
    if lowered in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="LSP_train.py",
        description="Train or fine-tune a GPT-2 dialogue model (DialoGPT) on a prepro database.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    a = p.add_argument
    a(
        "--model_name_or_path",
        type=str,
        default=None,
        help="folder with config.json (+ tokenizer / HF weights), or a hub name such as "
        "microsoft/DialoGPT-small",
    )
    a(
        "--init_checkpoint",
        type=str,
        default=None,
        help="state dict to start from (.pkl/.pt/.bin/.safetensors); None = the config's random "
        "init, or the HF weights in --model_name_or_path",
    )
    a("--train_input_file", type=str, default=None, help="training database folder (prepro.py)")
    a(
        "--eval_input_file",
        type=str,
        default=None,
        help="validation pair tsv CONTEXT<TAB>RESPONSE (for perplexity)",
    )
    a(
        "--output_dir",
        type=str,
        default=None,
        help="runs go to OUTPUT_DIR/GPT2.{lr}.{batch}.{n}gpu.{timestamp}/",
    )
    a(
        "--log_dir",
        type=str,
        default=None,
        help="where train_log.txt/eval_log.txt go (default: the run folder)",
    )
    a("--seed", type=int, default=42, help="random seed (model init, dropout, data order)")
    a("--max_seq_length", type=int, default=128, help="longer training features are dropped")
    a("--skip_eval", action="store_true", help="no validation runs")
    a(
        "--continue_from",
        type=int,
        default=0,
        help="start the step counters (and LR schedule) at this optimizer step",
    )
    a(
        "--train_batch_size",
        type=int,
        default=4,
        help="examples per optimizer step per process; must divide by --gradient_accumulation_steps",
    )
    a(
        "--gradient_accumulation_steps",
        type=int,
        default=2,
        help="forward/backward passes per optimizer step",
    )
    a("--eval_batch_size", type=int, default=4, help="validation pairs per forward pass")
    a(
        "--learning_rate",
        type=float,
        default=1e-5,
        help="peak learning rate (noam schedules scale it further by the model width)",
    )
    a(
        "--num_optim_steps",
        type=int,
        default=1000000,
        help="training stops after this many optimizer steps",
    )
    a(
        "--valid_step",
        type=int,
        default=10000,
        help="every N optimizer steps: save GP2-pretrain-step-N.pkl + HF folder and validate",
    )
    a("--warmup_proportion", type=float, default=0.1, help="BERT schedule warmup fraction")
    a("--warmup_steps", type=int, default=16000, help="noam/noamwd warmup steps")
    a(
        "--normalize_data",
        type=boolean_string,
        default=True,
        help="collapse whitespace in the validation tsv",
    )
    a(
        "--fp16",
        type=boolean_string,
        default=True,
        help="float16 mixed precision on CUDA (dynamic loss scale unless --loss_scale > 0); "
        "without CUDA: a warning and float32",
    )
    a(
        "--bf16",
        type=boolean_string,
        default=False,
        help="bfloat16 autocast (CUDA, or CPU autocast); takes precedence over --fp16",
    )
    a(
        "--lr_schedule",
        type=str,
        default="noam",
        choices=["noam", "noamwd", "BERT", "None"],
        help="noam: warmup over --warmup_steps then inverse square root; noamwd: noam, halved at "
        "step 500 and every 1000 steps after; BERT: linear warmup over --warmup_proportion then linear decay; None: "
        "constant",
    )
    a("--loss_scale", type=float, default=0, help="fp16 loss scale; 0 = dynamic")
    a(
        "--no_token_id",
        type=boolean_string,
        default=True,
        help="do not feed token type ids to the model",
    )
    a(
        "--use_weights",
        type=boolean_string,
        default=False,
        help="weight the loss by the per-turn weights stored in the database",
    )
    a("--pbar", type=boolean_string, default=True, help="show a progress bar")
    a(
        "--local_rank",
        "--local-rank",
        type=int,
        default=-1,
        help="set by torch.distributed.launch; torchrun passes LOCAL_RANK in the environment",
    )
    a("--config", type=str, default=None, help="JSON file of arguments; command-line flags win")
    # Beyond the published toolkit.
    a(
        "--resume",
        type=str,
        default=None,
        help="continue exactly from a checkpoint folder, a run folder, or 'latest' (newest complete "
        "checkpoint under --output_dir)",
    )
    a(
        "--save_step",
        type=int,
        default=None,
        help="write a resumable checkpoint every N optimizer steps (default: --valid_step)",
    )
    a(
        "--keep_checkpoints",
        type=int,
        default=3,
        help="resumable checkpoints kept per run (oldest removed)",
    )
    a(
        "--dist_backend",
        type=str,
        default="auto",
        choices=["auto", "nccl", "gloo"],
        help="process group backend; auto = nccl on GPUs, gloo on CPU",
    )
    a(
        "--tensorboard",
        type=boolean_string,
        default=False,
        help="also log to TensorBoard (LOG_DIR/tensorboard)",
    )
    a(
        "--shuffle_data",
        type=boolean_string,
        default=True,
        help="shuffle chunks, buckets and batches (false: database order, e.g. for curricula)",
    )
    a("--num_prefetch", type=int, default=8, help="batches prepared ahead in a background thread")
    a(
        "--gradient_checkpointing",
        type=boolean_string,
        default=False,
        help="recompute each layer's activations in the backward pass: same results, far less "
        "activation memory (762M or long sequences on a small GPU), one more forward pass of "
        "compute",
    )
    return p


def _config_defaults(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as err:
        raise ArgumentError(f"--config {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ArgumentError(
            f"--config {path}: not valid JSON (line {err.lineno}: {err.msg})"
        ) from None
    if not isinstance(raw, dict):
        raise ArgumentError(f"--config {path}: expected a JSON object of argument names to values")
    actions = {a.dest: a for a in parser._actions}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        action = actions.get(key)
        if action is None or key in ("help", "config"):
            raise ArgumentError(f"--config {path}: unknown argument {key!r}")
        if value is not None and action.type is not None:
            try:
                value = action.type(value)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
                raise ArgumentError(f"--config {path}: {key}: {err}") from None
        if action.choices is not None and value not in action.choices:
            raise ArgumentError(f"--config {path}: {key} must be one of {list(action.choices)}")
        values[key] = value
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse flags, merging ``--config`` under them, and check the combinations."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**_config_defaults(parser, args.config))
        args = parser.parse_args(argv)
    validate(args)
    return args


def validate(args: argparse.Namespace) -> None:
    if args.train_input_file is None:
        raise ArgumentError("--train_input_file is required (a database folder made by prepro.py)")
    if not os.path.isdir(args.train_input_file):
        raise ArgumentError(f"--train_input_file {args.train_input_file}: no such database folder")
    if args.model_name_or_path is None:
        raise ArgumentError(
            "--model_name_or_path is required: a folder with config.json "
            "(e.g. configs/117M), a Hugging Face folder, or a hub name"
        )
    if args.output_dir is None:
        raise ArgumentError("--output_dir is required")
    for name in ("output_dir", "log_dir"):
        value = getattr(args, name)
        if value is not None and os.path.exists(value) and not os.path.isdir(value):
            raise ArgumentError(f"--{name} {value}: exists and is not a folder")
    if not args.skip_eval:
        if args.eval_input_file is None:
            raise ArgumentError("--eval_input_file is required unless --skip_eval is given")
        if not os.path.isfile(args.eval_input_file):
            raise ArgumentError(f"--eval_input_file {args.eval_input_file}: no such file")
    if args.init_checkpoint not in (None, "None", "none", "") and not os.path.isfile(
        args.init_checkpoint
    ):
        raise ArgumentError(f"--init_checkpoint {args.init_checkpoint}: no such file")
    for name in (
        "train_batch_size",
        "gradient_accumulation_steps",
        "eval_batch_size",
        "num_optim_steps",
        "valid_step",
        "max_seq_length",
    ):
        if getattr(args, name) < 1:
            raise ArgumentError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.train_batch_size % args.gradient_accumulation_steps:
        raise ArgumentError(
            f"--train_batch_size {args.train_batch_size} is not divisible by "
            f"--gradient_accumulation_steps {args.gradient_accumulation_steps}"
        )
    if not args.learning_rate >= 0:  # also refuses nan
        raise ArgumentError(f"--learning_rate must be >= 0, got {args.learning_rate}")
    # The same ranges lsp_model.optim checks, refused here before any model is built.
    if args.lr_schedule == "BERT" and not 0 < args.warmup_proportion <= 1:
        raise ArgumentError(
            f"--warmup_proportion must be in (0, 1] for the BERT schedule, "
            f"got {args.warmup_proportion}"
        )
    if args.lr_schedule in ("noam", "noamwd") and args.warmup_steps < 1:
        raise ArgumentError(
            f"--warmup_steps must be at least 1 for the {args.lr_schedule} "
            f"schedule, got {args.warmup_steps}"
        )
    if not args.loss_scale >= 0:
        raise ArgumentError(f"--loss_scale must be >= 0 (0 = dynamic), got {args.loss_scale}")
    if args.num_prefetch < 0:
        raise ArgumentError(f"--num_prefetch must be >= 0, got {args.num_prefetch}")
    if args.save_step is not None and args.save_step < 1:
        raise ArgumentError("--save_step must be at least 1")
    if args.keep_checkpoints < 1:
        raise ArgumentError("--keep_checkpoints must be at least 1")
    if args.continue_from < 0:
        raise ArgumentError("--continue_from must be >= 0")
    if args.resume is not None and args.continue_from:
        raise ArgumentError("--resume restores the step counters itself; drop --continue_from")
