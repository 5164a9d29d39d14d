"""LSP_train.py's configuration (docs/REFERENCE.md §6): one dataclass, read from flags and ``--config`` alike.

``TrainConfig`` lists every option with its default and, under it, its documentation,
which becomes the ``--help`` text. ``build_parser`` derives the command line from it;
``--config FILE.json`` sets any field from a JSON object, and flags given on the command
line win over it. Whatever the source, the values end in ``TrainConfig(...)``, whose
``__post_init__`` is the one place where they are checked. Boolean options take the
strings true/false.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import os
import textwrap
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsp_common.cli import parse_bool
from lsp_model.optim import SCHEDULES, ScheduleError, lr_at_step


class ArgumentError(ValueError):
    """An argument or config file a user must fix."""


# Field metadata, for what the command line needs beyond a field's name, type and doc:
# "store_true" (a bare switch, as the published --skip_eval), "aliases" (more flag spellings),
# "choices" (the allowed values; a dict of functions also lists each one's docstring in --help).
STORE_TRUE = {"store_true": True}


@dataclass
class TrainConfig:
    """Everything LSP_train.py reads; the first block is the published toolkit's (docs/REFERENCE.md §6)."""

    model_name_or_path: str | None = None
    """folder with config.json (+ tokenizer / HF weights), or a hub name such as
    microsoft/DialoGPT-small"""
    init_checkpoint: str | None = None
    """state dict to start from (.pkl/.pt/.bin/.safetensors); None = the config's random init,
    or the HF weights in --model_name_or_path"""
    train_input_file: str | None = None
    """training database folder (prepro.py)"""
    eval_input_file: str | None = None
    """validation pair tsv CONTEXT<TAB>RESPONSE (for perplexity)"""
    output_dir: str | None = None
    """runs go to OUTPUT_DIR/GPT2.{lr}.{batch}.{n}gpu.{timestamp}/"""
    log_dir: str | None = None
    """where train_log.txt/eval_log.txt go (default: the run folder)"""
    seed: int = 42
    """random seed (model init, dropout, data order)"""
    max_seq_length: int = 128
    """longer training features are dropped"""
    skip_eval: bool = field(default=False, metadata=STORE_TRUE)
    """no validation runs"""
    continue_from: int = 0
    """start the step counters (and LR schedule) at this optimizer step"""
    train_batch_size: int = 4
    """examples per optimizer step per process; must divide by --gradient_accumulation_steps"""
    gradient_accumulation_steps: int = 2
    """forward/backward passes per optimizer step"""
    eval_batch_size: int = 4
    """validation pairs per forward pass"""
    learning_rate: float = 1e-5
    """peak learning rate (noam schedules scale it further by the model width)"""
    num_optim_steps: int = 1000000
    """training stops after this many optimizer steps"""
    valid_step: int = 10000
    """every N optimizer steps: save GP2-pretrain-step-N.pkl + HF folder and validate"""
    warmup_proportion: float = 0.1
    """BERT schedule warmup fraction"""
    warmup_steps: int = 16000
    """noam/noamwd warmup steps"""
    normalize_data: bool = True
    """collapse whitespace in the validation tsv"""
    fp16: bool | None = None
    """float16 mixed precision on CUDA (dynamic loss scale unless --loss_scale > 0); without
    CUDA: a warning and float32. Neither --fp16 nor --bf16 given (None): bfloat16 on GPUs
    that compute it natively (Ampere and newer) and on CPUs that do (AMX or AVX-512 BF16),
    float16 on older GPUs, float32 on other CPUs"""
    lr_schedule: str = field(default="noam", metadata={"choices": SCHEDULES})
    """learning-rate schedule"""
    loss_scale: float = 0
    """fp16 loss scale; 0 = dynamic"""
    no_token_id: bool = True
    """do not feed token type ids to the model"""
    pbar: bool = True
    """show a progress bar"""
    local_rank: int = field(default=-1, metadata={"aliases": ("--local-rank",)})
    """set by torch.distributed.launch; torchrun passes LOCAL_RANK in the environment"""

    # Beyond the published toolkit.
    bf16: bool | None = None
    """bfloat16 autocast (CUDA, or CPU autocast); takes precedence over --fp16 (None: see
    --fp16)"""
    use_weights: bool = False
    """weight the loss by the per-turn weights stored in the database"""
    eval_step: int = 0
    """also validate every N optimizer steps without saving anything (0 = validate only with
    --valid_step's saves)"""
    resume: str | None = None
    """continue exactly from a checkpoint folder, a run folder, or 'latest' (newest complete
    checkpoint under --output_dir)"""
    save_step: int | None = None
    """write a resumable checkpoint every N optimizer steps (default: --valid_step)"""
    keep_checkpoints: int = 3
    """resumable checkpoints kept per run (oldest removed)"""
    dist_backend: str = field(default="auto", metadata={"choices": ("auto", "nccl", "gloo")})
    """process group backend; auto = nccl on GPUs, gloo on CPU"""
    tensorboard: bool = False
    """also log to TensorBoard (LOG_DIR/tensorboard)"""
    shuffle_data: bool = True
    """shuffle chunks, buckets and batches (false: database order, e.g. for curricula)"""
    num_prefetch: int = 8
    """batches prepared ahead in a background thread"""
    gradient_checkpointing: bool = False
    """recompute each layer's activations in the backward pass: same results, far less
    activation memory (762M or long sequences on a small GPU), one more forward pass of
    compute"""
    max_tokens_per_batch: int = 0
    """token budget per forward/backward pass: batches of similar-length features whose
    padded size (rows x longest row) stays within it, so padding stays small and every
    feature is used; 0 = fixed batches of train_batch_size / gradient_accumulation_steps
    features (the published loader). Must hold one --max_seq_length feature"""
    pad_to_multiple: int = 8
    """round each batch's width up to a multiple of this (64 lets a compiled model reuse its
    kernels across batches)"""
    compile: bool = False
    """torch.compile the transformer (the loss stays eager: its shapes follow the labels);
    first steps are slow while it compiles; meant for GPUs, on a CPU it ran as fast as eager"""
    resume_force: bool = False
    """with --resume: continue although run-defining arguments (data, batch sizes, learning
    rate and schedule, seed, model, precision) differ from the run's args.json"""

    def __post_init__(self) -> None:
        """The one place where options are checked, alone and in combination."""
        self._check_paths()
        for name in (
            "train_batch_size",
            "gradient_accumulation_steps",
            "eval_batch_size",
            "num_optim_steps",
            "valid_step",
            "max_seq_length",
        ):
            if getattr(self, name) < 1:
                raise ArgumentError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.train_batch_size % self.gradient_accumulation_steps:
            raise ArgumentError(
                f"--train_batch_size {self.train_batch_size} is not divisible by "
                f"--gradient_accumulation_steps {self.gradient_accumulation_steps}"
            )
        if not self.learning_rate >= 0:  # also refuses nan
            raise ArgumentError(f"--learning_rate must be >= 0, got {self.learning_rate}")
        self._check_schedule()
        if not self.loss_scale >= 0:
            raise ArgumentError(f"--loss_scale must be >= 0 (0 = dynamic), got {self.loss_scale}")
        for name, least in (
            ("num_prefetch", 0),
            ("continue_from", 0),
            ("eval_step", 0),
            ("max_tokens_per_batch", 0),
        ):
            if getattr(self, name) < least:
                raise ArgumentError(f"--{name} must be >= {least}, got {getattr(self, name)}")
        if self.save_step is not None and self.save_step < 1:
            raise ArgumentError(f"--save_step must be at least 1, got {self.save_step}")
        if self.keep_checkpoints < 1:
            raise ArgumentError(
                f"--keep_checkpoints must be at least 1, got {self.keep_checkpoints}"
            )
        if self.pad_to_multiple < 1:
            raise ArgumentError(f"--pad_to_multiple must be at least 1, got {self.pad_to_multiple}")
        budget_floor = -(-self.max_seq_length // self.pad_to_multiple) * self.pad_to_multiple
        if self.max_tokens_per_batch and self.max_tokens_per_batch < budget_floor:
            raise ArgumentError(
                f"--max_tokens_per_batch {self.max_tokens_per_batch} cannot hold one feature of "
                f"--max_seq_length {self.max_seq_length} (at least {budget_floor}; 0 = off)"
            )
        if self.eval_step and self.skip_eval:
            raise ArgumentError("--eval_step asks for validation, --skip_eval for none: drop one")
        if self.resume is not None and self.continue_from:
            raise ArgumentError("--resume restores the step counters itself; drop --continue_from")

    def _check_paths(self) -> None:
        if self.train_input_file is None:
            raise ArgumentError(
                "--train_input_file is required (a database folder made by prepro.py)"
            )
        if not os.path.isdir(self.train_input_file):
            raise ArgumentError(
                f"--train_input_file {self.train_input_file}: no such database folder"
            )
        if self.model_name_or_path is None:
            raise ArgumentError(
                "--model_name_or_path is required: a folder with config.json "
                "(e.g. configs/117M), a Hugging Face folder, or a hub name"
            )
        if self.output_dir is None:
            raise ArgumentError("--output_dir is required")
        for name in ("output_dir", "log_dir"):
            value = getattr(self, name)
            if value is not None and os.path.exists(value) and not os.path.isdir(value):
                raise ArgumentError(f"--{name} {value}: exists and is not a folder")
        if not self.skip_eval:
            if self.eval_input_file is None:
                raise ArgumentError("--eval_input_file is required unless --skip_eval is given")
            if not os.path.isfile(self.eval_input_file):
                raise ArgumentError(f"--eval_input_file {self.eval_input_file}: no such file")
        if self.init_checkpoint not in (None, "None", "none", "") and not os.path.isfile(
            self.init_checkpoint
        ):
            raise ArgumentError(f"--init_checkpoint {self.init_checkpoint}: no such file")

    def _check_schedule(self) -> None:
        # The schedule functions know their own ranges: ask the registry at step 0 (n_embd
        # only scales the rate) rather than repeat each schedule's conditions here.
        try:
            lr_at_step(
                self.lr_schedule,
                0,
                self.learning_rate,
                warmup_steps=self.warmup_steps,
                warmup_proportion=self.warmup_proportion,
                num_optim_steps=self.num_optim_steps,
                n_embd=1,
            )
        except ScheduleError as err:
            raise ArgumentError(
                f"--{err.param} must be {err.requirement} for the {err.schedule} schedule, "
                f"got {err.value}"
            ) from None
        except ValueError as err:  # an unknown name, from a config built in Python
            raise ArgumentError(f"--lr_schedule: {err}") from None

    @property
    def micro_batch_size(self) -> int:
        """Examples per forward/backward pass."""
        return self.train_batch_size // self.gradient_accumulation_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def field_docs(cls: type = TrainConfig) -> dict[str, str]:
    """Each field's docstring (the string literal under it), whitespace collapsed."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source shipped: flags keep working, without help text
        return {}
    (class_def,) = ast.parse(source).body
    assert isinstance(class_def, ast.ClassDef)
    body = class_def.body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _value_type(f: dataclasses.Field) -> Callable[[Any], Any]:
    """The converter for a field's annotation: int, float, str or parse_bool."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    kinds = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    (kind,) = kinds
    return parse_bool if kind is bool else kind


def build_parser() -> argparse.ArgumentParser:
    """The command line of LSP_train.py, one flag per TrainConfig field, plus --config."""
    parser = argparse.ArgumentParser(
        prog="LSP_train.py",
        description="Train or fine-tune a GPT-2 dialogue model (DialoGPT) on a prepro database.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    docs = field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        text = docs.get(f.name, "")
        kwargs: dict[str, Any] = {"default": f.default}
        if f.metadata.get("store_true"):
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = _value_type(f)
        choices = f.metadata.get("choices")
        if choices is not None:
            kwargs["choices"] = list(choices)
            if isinstance(choices, dict):
                text += ": " + "; ".join(f"{k}: {fn.__doc__.strip()}" for k, fn in choices.items())
        kwargs["help"] = text.replace("%", "%%")  # argparse formats help with %
        parser.add_argument(f"--{f.name}", *f.metadata.get("aliases", ()), **kwargs)
    parser.add_argument(
        "--config", type=str, default=None, help="JSON file of arguments; command-line flags win"
    )
    return parser


def _convert(f: dataclasses.Field, value: Any) -> Any:
    """A JSON value for field ``f``, converted as its flag's string would be."""
    if value is None:
        return None
    convert = _value_type(f)
    if convert is int and (
        isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())
    ):
        raise ValueError(f"expected an integer, got {value!r}")
    if convert is float and isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    value = convert(value)
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"must be one of {list(choices)}, got {value!r}")
    return value


def read_config_file(path: str) -> dict[str, Any]:
    """The fields a ``--config`` JSON file sets, converted to their types."""
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
    known = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ArgumentError(f"--config {path}: unknown argument {key!r}")
        try:
            values[key] = _convert(known[key], value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            raise ArgumentError(f"--config {path}: {key}: {err}") from None
    return values


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Flags over ``--config`` over the defaults, checked by ``TrainConfig``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        parser.set_defaults(**read_config_file(args.config))
        args = parser.parse_args(argv)
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
