"""LSP_train.py's entry point: parse the configuration, join the process group, train.

Failures a user can fix are reported in one line without a traceback; anything else
prints its traceback. Under torchrun a failing rank leaves at once (see ``main``).

torch and transformers (about 6 s to import on a small machine) are imported only once
the options are parsed and checked, so ``--help`` and a mistyped option answer at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from gpt2_training.args import ArgumentError, TrainConfig, parse_args

if TYPE_CHECKING:
    from gpt2_training.distributed import DistContext

PROG = "LSP_train.py"


def user_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can fix: reported in one line, no traceback."""
    from gpt2_training.checkpoint import CheckpointError
    from gpt2_training.distributed import LaunchError
    from lsp_common.cli import UserError
    from lsp_data.db import DatabaseError
    from lsp_data.loaders import DataError
    from lsp_model.errors import ModelLoadError

    return (
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
    from gpt2_training.checkpoint import newest_checkpoint

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


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes, not to the one
    there was when logging was set up: ``main`` called from Python (tests, notebooks) may
    outlive a replaced and closed stderr."""

    @property
    def stream(self):  # noqa: ANN201 - the StreamHandler attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001 - set by StreamHandler.__init__
        pass


def _configure_logging(ctx: DistContext) -> Callable[[], None]:
    """Log to stderr for this run; returns what undoes it. Called from Python (tests,
    notebooks), main leaves the caller's logging as it found it."""
    root = logging.getLogger()
    handler = _CurrentStderr()
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s [rank {ctx.rank}] %(levelname)s %(message)s"
            if ctx.enabled
            else "%(asctime)s %(levelname)s %(message)s",
            datefmt="%H:%M:%S",
        )
    )
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO if ctx.is_main else logging.WARNING)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(previous_level)

    return restore


def main(argv: list[str] | None = None) -> Path | int:
    """Returns the run folder, or an exit status after a reported error."""
    try:
        cfg = parse_args(argv)
    except ArgumentError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    from gpt2_training.distributed import DistContext, init_distributed, shutdown
    from gpt2_training.trainer import train

    ctx = DistContext()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    restore_logging = None
    try:
        ctx = init_distributed(cfg.local_rank, cfg.dist_backend)
        restore_logging = _configure_logging(ctx)
        run_dir = train(cfg, ctx)
    except BaseException as err:
        prefix = f"{PROG} [rank {ctx.rank}/{ctx.world_size}]" if ctx.enabled else PROG
        if isinstance(err, user_errors()):
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
        if restore_logging is not None:
            restore_logging()
    shutdown(ctx)
    return run_dir


def run() -> NoReturn:
    """``main`` as a script: exit status 0 after a finished run."""
    result = main()
    sys.exit(result if isinstance(result, int) else 0)
