"""LSP_train.py's entry point: parse the configuration, join the process group, train.

Failures a user can fix are reported in one line without a traceback; anything else
prints its traceback. Under torchrun a failing rank leaves at once (see ``main``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType
from typing import NoReturn

from gpt2_training.args import ArgumentError, TrainConfig, parse_args
from gpt2_training.checkpoint import CheckpointError, newest_checkpoint
from gpt2_training.distributed import DistContext, LaunchError, init_distributed, shutdown
from gpt2_training.trainer import train
from lsp_common.cli import UserError
from lsp_data.db import DatabaseError
from lsp_data.loaders import DataError
from lsp_model.loading import ModelLoadError

PROG = "LSP_train.py"

# Failures a user can fix: reported in one line, no traceback.
USER_ERRORS = (
    ArgumentError,
    CheckpointError,
    DatabaseError,
    DataError,
    LaunchError,
    ModelLoadError,
    UserError,  # lsp_common.atomic.OutputError: an output folder that cannot take files
)


def _terminated(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a scheduler's stop, kill, torchrun shutting its workers down) ends the run
    # as Ctrl-C does: writes in progress are cleaned up, the same message is printed.
    raise KeyboardInterrupt


def how_to_continue(cfg: TrainConfig) -> str:
    """What the 'interrupted' line adds: the checkpoint a resume would start from."""
    try:
        newest = newest_checkpoint(cfg.output_dir)
    except OSError:
        newest = None
    if newest is None:
        first = cfg.save_step or cfg.valid_step
        return (
            f"no checkpoint under --output_dir {cfg.output_dir} yet (the first is written at "
            f"step {first}), so there is nothing to resume: run the command again to start over"
        )
    return (
        f"to continue from {newest}, run the same command with --resume latest "
        f"(it looks under --output_dir {cfg.output_dir})"
    )


def _configure_logging(ctx: DistContext) -> None:
    logging.basicConfig(
        level=logging.INFO if ctx.is_main else logging.WARNING,
        format=f"%(asctime)s [rank {ctx.rank}] %(levelname)s %(message)s"
        if ctx.enabled
        else "%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )


def main(argv: list[str] | None = None) -> Path | int:
    """Returns the run folder, or an exit status after a reported error."""
    try:
        cfg = parse_args(argv)
    except ArgumentError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    ctx = DistContext()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        ctx = init_distributed(cfg.local_rank, cfg.dist_backend)
        _configure_logging(ctx)
        run_dir = train(cfg, ctx)
    except BaseException as err:
        prefix = f"{PROG} [rank {ctx.rank}/{ctx.world_size}]" if ctx.enabled else PROG
        if isinstance(err, USER_ERRORS):
            print(f"{prefix}: error: {err}", file=sys.stderr)
        elif isinstance(err, KeyboardInterrupt):
            print(f"{prefix}: interrupted; {how_to_continue(cfg)}", file=sys.stderr)
        else:
            print(f"{prefix}: failed:", file=sys.stderr)
            traceback.print_exc()
        if ctx.enabled:
            # Leave at once: a clean shutdown would wait on the other ranks, which are
            # blocked in a collective this rank will never join; the launcher ends them.
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    shutdown(ctx)
    return run_dir


def run() -> NoReturn:
    """``main`` as a script: exit status 0 after a finished run."""
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
