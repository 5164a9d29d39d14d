"""Step 4: the LSP_train.py command, run live into output.log, and its learning check."""

from __future__ import annotations

import argparse
import codecs
import contextlib
import csv
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from lsp_common.atomic import remove_folder, replace_set, write_text_atomic
from lsp_demo import REPO
from lsp_demo.console import DemoError, say, shown
from lsp_demo.model_choice import ModelChoice

# Training settings per model kind, tuned on 2 CPU cores. The tiny model starts from random
# weights on ~800 conversations (~20k tokens, ~50 batches of 16 per epoch). With warmup and
# linear decay (BERT schedule), 1e-3 reached validation perplexity ~710 after 150 steps and
# ~590 after 450 (1.5e-3 and 2e-3 did worse: they overfit from epoch 4 on); 300 steps
# (~650) take under a minute of training on an idle 2-core machine, leaving room for a busy
# one. Pretrained models only need a gentle fine-tune, and each of their steps costs ~20x a
# tiny one on a CPU.
# "validations": how many times the run validates and saves (a pretrained model's .pkl and
# hf_model/ are 0.5-3 GB each time).
TINY_SETTINGS = {
    "learning_rate": 1e-3,
    "num_optim_steps": 300,
    "train_batch_size": 16,
    "eval_batch_size": 32,
    "validations": 10,
}
PRETRAINED_SETTINGS = {
    "learning_rate": 5e-5,
    "num_optim_steps": 60,
    "train_batch_size": 8,
    "eval_batch_size": 8,
    "validations": 3,
}


def train_command(
    args: argparse.Namespace,
    model: ModelChoice,
    db: Path,
    valid: Path,
    runs: Path,
    extra: list[str],
) -> list[str]:
    import torch

    defaults = PRETRAINED_SETTINGS if model.pretrained else TINY_SETTINGS
    steps = args.num_optim_steps or defaults["num_optim_steps"]
    # The first validation comes early enough to show where learning starts.
    valid_step = args.valid_step or max(1, steps // defaults["validations"])
    python = "python" if shutil.which("python") == sys.executable else sys.executable
    cmd = [
        python,
        shown(REPO / "LSP_train.py"),
        "--model_name_or_path",
        model.name_or_path,
        "--init_checkpoint",
        "None",
        "--train_input_file",
        shown(db),
        "--eval_input_file",
        shown(valid),
        "--output_dir",
        shown(runs),
        "--seed",
        str(args.seed),
        "--max_seq_length",
        str(args.max_seq_length),
        "--train_batch_size",
        str(args.train_batch_size or defaults["train_batch_size"]),
        "--gradient_accumulation_steps",
        "1",
        "--eval_batch_size",
        str(defaults["eval_batch_size"]),
        "--learning_rate",
        str(args.learning_rate or defaults["learning_rate"]),
        "--lr_schedule",
        args.lr_schedule,
        "--warmup_proportion",
        "0.1",
        "--num_optim_steps",
        str(steps),
        "--valid_step",
        str(valid_step),
        # One resumable checkpoint (model + optimizer state) at the end instead of one per
        # validation: on a laptop disk the copies cost more time than they are worth here.
        "--save_step",
        str(steps),
        "--keep_checkpoints",
        "1",
        # Said explicitly so that a CPU run gives no fp16 fallback warning.
        "--fp16",
        "true" if torch.cuda.is_available() else "false",
        "--pbar",
        "true" if sys.stdout.isatty() else "false",
    ]
    return cmd + extra


def _comparable(cmd: list[str]) -> list[str]:
    # The interpreter path and the progress bar do not change what is trained.
    out = list(cmd[1:])
    if "--pbar" in out:
        i = out.index("--pbar")
        del out[i : i + 2]
    return out


def flag_value(cmd: list[str], name: str) -> str | None:
    """The value of ``name`` in ``cmd``; the last one wins, as in argparse (``-- --flag X``)."""
    values = [cmd[i + 1] for i in range(len(cmd) - 1) if cmd[i] == name]
    return values[-1] if values else None


def finished_run(marker: Path, cmd: list[str]) -> Path | None:
    """The run folder of a previous, complete training with the same command."""
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict) or done.get("command") != _comparable(cmd):
        return None
    run_dir = Path(done.get("run_dir", ""))
    steps = flag_value(cmd, "--num_optim_steps")
    if (
        (run_dir / f"GP2-pretrain-step-{steps}.pkl").is_file()
        and (run_dir / "hf_model" / "config.json").is_file()
        and ("--skip_eval" in cmd or (run_dir / "eval_log.txt").is_file())
    ):
        return run_dir
    return None


def stream_to_log(cmd: list[str], log_path: Path, header: str = "") -> int:
    """Run ``cmd``, showing its output live and saving it to ``log_path``; its exit status.

    The terminal gets every byte (progress bars redraw in place); the log gets each line's
    final state, so a progress bar leaves one line there instead of hundreds of redraws.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    pending = ""
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(header)
        try:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                text = decoder.decode(chunk)
                sys.stdout.write(text)
                sys.stdout.flush()
                pending += text
                *lines, pending = pending.split("\n")
                for line in lines:
                    log.write(line.rstrip("\r").rsplit("\r", 1)[-1] + "\n")
                log.flush()
            pending += decoder.decode(b"", final=True)
            if pending:
                log.write(pending.rsplit("\r", 1)[-1] + "\n")
            return proc.wait()
        except BaseException:
            # Ctrl-C reaches the child too (same process group); give it time to stop.
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            proc.stdout.close()


def read_eval_log(path: Path) -> list[tuple[int, float]]:
    with open(path, encoding="utf-8", newline="") as f:
        return [(int(row["global_step"]), float(row["eval_ppl"])) for row in csv.DictReader(f)]


def _remove_partial_runs(runs: Path, before: set[Path]) -> list[Path]:
    """Delete the run folders that a failed or interrupted training made: the demo never
    resumes them, and left in place they look like runs."""
    partial = [p for p in runs.iterdir() if p.is_dir() and p not in before] if runs.is_dir() else []
    for folder in partial:
        remove_folder(folder)
    return partial


def train(cmd: list[str], output_dir: Path, runs: Path, force: bool) -> Path:
    """Run the training, or reuse the finished run of the same command.

    The reuse marker and ``output.log`` describe the last run that finished: a new run
    writes its output to ``output.running.log`` and replaces both only when it has finished
    (as one set, the marker last). A failed or interrupted run leaves its output in
    ``output.failed.log`` and its partial run folder is removed."""
    marker = output_dir / "training.json"
    log_path = output_dir / "output.log"
    running_log = output_dir / "output.running.log"
    failed_log = output_dir / "output.failed.log"
    say("LSP_train.py command (copy and modify it to train your own way):\n")
    say(shlex.join(cmd) + "\n")
    if not force and (run_dir := finished_run(marker, cmd)) is not None:
        say(
            f"reusing the finished run {shown(run_dir)} (same command; its output is in "
            f"{shown(log_path)}; --force to train again)"
        )
        return run_dir
    runs.mkdir(parents=True, exist_ok=True)
    before = {p for p in runs.iterdir() if p.is_dir()}
    header = f"$ {shlex.join(cmd)}\n"
    try:
        status = stream_to_log([sys.executable, *cmd[1:]], running_log, header=header)
    except BaseException:
        _remove_partial_runs(runs, before)
        with contextlib.suppress(OSError):
            os.replace(running_log, failed_log)
        raise
    if status != 0:
        removed = _remove_partial_runs(runs, before)
        os.replace(running_log, failed_log)
        raise DemoError(
            f"training failed (LSP_train.py exit status {status}); its output is in "
            f"{shown(failed_log)}"
            + (f"; its partial run folder {shown(removed[0])} was removed" if removed else "")
        )
    new = [p for p in runs.iterdir() if p.is_dir() and p not in before]
    if not new:
        raise DemoError(f"LSP_train.py made no run folder under {shown(runs)}")
    run_dir = max(new, key=lambda p: p.stat().st_mtime)
    done = {"command": _comparable(cmd), "run_dir": str(run_dir.resolve())}
    marker_tmp = output_dir / ".training.json.new"
    write_text_atomic(marker_tmp, json.dumps(done, indent=2) + "\n")
    replace_set([(str(running_log), str(log_path)), (str(marker_tmp), str(marker))])
    failed_log.unlink(missing_ok=True)  # it described a run that this one supersedes
    say(f"training output saved to {shown(log_path)}")
    return run_dir


def check_learning(run_dir: Path) -> tuple[tuple[int, float], tuple[int, float]]:
    path = run_dir / "eval_log.txt"
    try:
        rows = read_eval_log(path)
    except (OSError, ValueError, KeyError) as err:
        raise DemoError(f"cannot read {shown(path)}: {err}") from None
    if not rows:
        raise DemoError(f"{shown(path)} has no validation row")
    first, last = rows[0], rows[-1]
    say(
        f"validation perplexity: {first[1]:.1f} at step {first[0]} -> {last[1]:.1f} at step "
        f"{last[0]} ({len(rows)} validations in {shown(path)})"
    )
    if len(rows) == 1:
        say("(only one validation: use a --valid_step below --num_optim_steps to see a trend)")
    elif not (math.isfinite(last[1]) and last[1] < first[1]):
        raise DemoError(
            f"validation perplexity did not fall ({first[1]:.1f} at step {first[0]}, "
            f"{last[1]:.1f} at step {last[0]}): the model did not learn. Check the data and "
            "try another --learning_rate or more --num_optim_steps"
        )
    return first, last
