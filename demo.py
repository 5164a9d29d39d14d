#!/usr/bin/env python
"""Run the whole DialoGPT chain with one command: model, data, prepro, training, a sample chat.

    python demo.py                      # offline, a few minutes on a laptop CPU
    python demo.py --model small        # fine-tune microsoft/DialoGPT-small (hub or local copy)
    python demo.py --data small         # Reddit data via reddit_extractor (needs the dumps)
    python demo.py -- --tensorboard true   # anything after -- goes to LSP_train.py

Steps (each one is skipped on a rerun when its result is already there; --force redoes all):
1. model: --model auto (default) takes DialoGPT-small from --model_dir, from the Hugging
   Face cache, or from the hub when it answers within a few seconds (a one-time ~350 MB
   download); else the tiny config (configs/tiny, 2 layers x 128, random init). The choice
   and the reason are printed. HF_HUB_OFFLINE=1 or --model tiny never touch the network.
2. data: --data dummy (default) writes a small bundled dialogue set built from the English
   conversations of chatterbot-corpus 1.3.3 (Gunther Cox and contributors, BSD-3-Clause,
   https://github.com/gunthercox/chatterbot-corpus) as a weighted training tsv plus a
   held-out validation tsv; --data small|full runs `make -C reddit_extractor SIZE=...`
   on the Pushshift dumps and holds out validation lines from its train.tsv.
3. prepro: the training tsv becomes a feature database (OUTPUT_DIR/data/DATA/train.128len.db).
4. training: LSP_train.py runs as a subprocess; its command is printed first so it can be
   copied and modified, and its output is shown live and saved to OUTPUT_DIR/output.log.
   The first and last validation perplexities are printed; the demo fails if it did not fall.
5. a short greedy conversation with the trained model (OUTPUT_DIR/sample_conversation.txt).

Exit status: 0 done, 1 a step failed, 2 something the user must fix (missing dumps or
model, bad option).
"""

from __future__ import annotations

import argparse
import codecs
import csv
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent
TINY_CONFIG = REPO / "configs" / "tiny"
HUB_NAMES = {
    "small": "microsoft/DialoGPT-small",
    "medium": "microsoft/DialoGPT-medium",
    "large": "microsoft/DialoGPT-large",
}
# Where `make download` and the Makefile's S put the dumps, and the order its `dump`
# function looks for them in.
# --model auto asks the hub whether DialoGPT-small is there; without an answer this fast the
# demo goes on offline rather than keep a user waiting on a dead network.
HUB_PROBE_TIMEOUT = 5.0
REDDIT_DUMPS = REPO / "reddit_extractor" / "data" / "reddit"
DUMP_SUFFIXES = (".zst", ".xz", ".bz2", ".gz", "", ".json", ".ndjson")
MAX_VALID_PAIRS = 1000  # Reddit validation lines held out; more only slows validation down

# Training settings per model kind, tuned on 2 CPU cores. The tiny model starts from random
# weights on ~800 conversations (~20k tokens, ~50 batches of 16 per epoch). With warmup and
# linear decay (BERT schedule), 1e-3 reached validation perplexity ~710 after 150 steps and
# ~590 after 450 (1.5e-3 and 2e-3 did worse: they overfit from epoch 4 on); 300 steps
# (~650) take under a minute of training on an idle 2-core machine, leaving room for a busy
# one. Pretrained models only need a gentle fine-tune, and each of their steps costs ~20x a
# tiny one on a CPU.
# "validations": how many times the run validates and saves (a pretrained model's .pkl and
# hf_model/ are 0.5-3 GB each time).
TINY_SETTINGS = {"learning_rate": 1e-3, "num_optim_steps": 300, "train_batch_size": 16,
                 "eval_batch_size": 32, "validations": 10}
PRETRAINED_SETTINGS = {"learning_rate": 5e-5, "num_optim_steps": 60, "train_batch_size": 8,
                       "eval_batch_size": 8, "validations": 3}


class DemoError(Exception):
    """A step that cannot go on; ``status`` 2 = the user must fix something, 1 = a failure."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass
class ModelChoice:
    kind: str  # tiny | small | medium | large
    name_or_path: str  # for LSP_train.py --model_name_or_path
    why: str
    pretrained: bool


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when inside it (shorter commands to copy)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def say(message: str = "") -> None:
    print(message, flush=True)


def step(title: str) -> None:
    say(f"\n=== {title}")


# ----------------------------------------------------------------------------- model


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        (folder / name).is_file()
        for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                     "pytorch_model.bin.index.json"))


def _local_copy(kind: str, model_dir: Path) -> Path | None:
    # `hf download microsoft/DialoGPT-small --local-dir models/DialoGPT-small` puts it here.
    for folder in (model_dir / f"DialoGPT-{kind}", model_dir / HUB_NAMES[kind]):
        if _has_weights(folder):
            return folder
    return None


def _cached_copy(hub_name: str) -> Path | None:
    """The Hugging Face cache's snapshot of ``hub_name`` with weights, without any network."""
    try:
        from lsp_model.loading import cached_snapshot

        folder = cached_snapshot(hub_name)
    except Exception:  # not cached, or an incomplete snapshot: both mean "no copy here"
        return None
    return folder if _has_weights(folder) else None


def choose_model(model: str, model_dir: Path) -> ModelChoice:
    """Resolve ``--model`` to a model folder or hub name, downloading it when needed."""
    tiny = ModelChoice("tiny", shown(TINY_CONFIG), "", pretrained=False)
    if model == "tiny":
        tiny.why = "asked for with --model tiny"
        return tiny
    if model == "auto":
        local = _local_copy("small", model_dir)
        if local is not None:
            return ModelChoice("small", shown(local), f"--model auto found a local copy in "
                               f"{shown(local)}", pretrained=True)
        name = HUB_NAMES["small"]
        if _cached_copy(name) is not None:
            return ModelChoice("small", name, "--model auto found it in the Hugging Face cache",
                               pretrained=True)
        from lsp_model.loading import ModelLoadError, hub_reachable, resolve_model_source

        reachable, reason = hub_reachable(name, timeout=HUB_PROBE_TIMEOUT)
        if reachable:
            say(f"--model auto: the Hugging Face Hub is reachable; downloading {name} once "
                "(about 350 MB; --model tiny or HF_HUB_OFFLINE=1 skips it) ...")
            try:
                resolve_model_source(name)
                return ModelChoice("small", name, "--model auto downloaded it from the Hugging "
                                   "Face Hub", pretrained=True)
            except ModelLoadError as err:
                reason = str(err)
        # The default demo must also run without a network: fall back, and say why.
        tiny.why = (f"--model auto found no DialoGPT-small in {shown(model_dir)}/DialoGPT-small "
                    f"or in the Hugging Face cache, and {reason}; so the offline default is "
                    "used (random init). To fine-tune DialoGPT-small offline, copy it there "
                    f"first: hf download {name} --local-dir {shown(model_dir)}/DialoGPT-small")
        return tiny
    local = _local_copy(model, model_dir)
    if local is not None:
        return ModelChoice(model, shown(local), f"local copy in {shown(local)}", pretrained=True)
    from lsp_model.loading import ModelLoadError, resolve_model_source

    name = HUB_NAMES[model]
    say(f"looking for {name} in the Hugging Face cache, then on the hub ...")
    try:
        resolve_model_source(name)
    except ModelLoadError as err:
        raise DemoError(f"--model {model}: {err}", status=2) from None
    return ModelChoice(model, name, "from the Hugging Face hub / cache", pretrained=True)


# ----------------------------------------------------------------------------- data


def dummy_data(data_dir: Path, force: bool) -> tuple[Path, Path]:
    from lsp_data.dummy import CITATION, DummyDataError, write_dummy_data

    train, valid = data_dir / "train.tsv", data_dir / "valid.tsv"
    say(f"dialogue set: {CITATION}")
    if train.is_file() and valid.is_file() and not force:
        say(f"reusing {shown(train)} and {shown(valid)} (already written; --force to redo)")
        return train, valid
    try:
        stats = write_dummy_data(train, valid)
    except DummyDataError as err:
        raise DemoError(str(err), status=2) from None
    say(stats.summary())
    say(f"wrote {shown(train)} (weighted training tsv) and {shown(valid)} (validation pairs)")
    return train, valid


def read_months(path: Path) -> list[str]:
    months = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            months.extend(line.split())
    return months


def find_dump(dumps: Path, kind: str, month: str) -> Path | None:
    for suffix in DUMP_SUFFIXES:
        path = dumps / f"{kind}_{month}{suffix}"
        if path.is_file():
            return path
    return None


def missing_dumps(size: str, dumps: Path) -> tuple[list[str], list[str]]:
    """(months of the SIZE list, dump names missing from ``dumps``)."""
    months = read_months(REPO / "configs" / "reddit" / f"train.{size}.txt")
    missing = [f"{kind}_{m}" for m in months for kind in ("RS", "RC")
               if find_dump(dumps, kind, m) is None]
    return months, missing


def split_reddit(extracted: Path, train: Path, valid: Path,
                 max_valid: int = MAX_VALID_PAIRS) -> tuple[int, int]:
    """Hold out every k-th usable line of ``extracted`` (at most ``max_valid``) as a validation
    pair (weights removed); all other lines go to ``train`` unchanged. Returns the counts."""
    from lsp_data.atomic import write_lines_atomic
    from lsp_data.parsing import TURN_SEPARATOR, MalformedLine, parse_training_line

    with open(extracted, "rb") as f:
        n_lines = sum(1 for _ in f)
    if n_lines < 2:
        raise DemoError(f"{extracted} has {n_lines} lines: too few to train on", status=2)
    # Every 10th line at most (a small extract keeps 90% for training), and spread over the
    # whole file so that every month is represented.
    stride = max(10, math.ceil(n_lines / max_valid))
    pairs: list[str] = []

    def training_lines():
        with open(extracted, encoding="utf-8", errors="replace", newline="\n") as f:
            for i, line in enumerate(f):
                line = line.rstrip("\n")
                if i % stride == stride - 1 and len(pairs) < max_valid:
                    try:
                        texts = parse_training_line(line)[1]
                    except MalformedLine:
                        texts = []
                    # A response of weight 0 is dropped by the parser: not a target, so no pair.
                    n_context = line.split("\t")[0].count(TURN_SEPARATOR) + 1
                    if len(texts) == n_context + 1:
                        pairs.append(TURN_SEPARATOR.join(texts[:-1]) + "\t" + texts[-1])
                        continue
                yield line

    # The pairs are collected while the training file is written, so validation comes second;
    # the demo reuses the data only when both files are there.
    write_lines_atomic(train, training_lines())
    write_lines_atomic(valid, pairs)
    return n_lines - len(pairs), len(pairs)


def reddit_data(size: str, data_dir: Path, dumps: Path, jobs: int,
                force: bool) -> tuple[Path, Path]:
    train, valid = data_dir / "train.tsv", data_dir / "valid.tsv"
    if train.is_file() and valid.is_file() and not force:
        say(f"reusing {shown(train)} and {shown(valid)} (already extracted; --force to redo)")
        return train, valid
    months, missing = missing_dumps(size, dumps)
    if missing:
        raise DemoError(
            f"--data {size} needs the Pushshift dumps of the {len(months)} months listed in "
            f"configs/reddit/train.{size}.txt (RS_YYYY-MM and RC_YYYY-MM, as .zst, .xz, .bz2, "
            f".gz or plain NDJSON) in {shown(dumps)}/; {len(missing)} of {2 * len(months)} are "
            f"missing (first: {', '.join(missing[:4])}). Fetch them with "
            f"`make -C reddit_extractor download SIZE={size}` (resumable) or copy them there "
            "(or point --reddit_dumps at their folder), then run the demo again. "
            "`python demo.py` (--data dummy) needs no download.", status=2)
    if shutil.which("make") is None:
        raise DemoError("--data small|full runs the Reddit extractor with `make`, which is not "
                        "installed", status=2)
    extracted = data_dir / "extracted"
    extracted.mkdir(parents=True, exist_ok=True)
    # The extractor's per-month work folder goes under the demo's output too: make reuses a
    # finished month by its files' dates alone, so a work folder shared with runs on other
    # dumps could hand back their months. It is shared by --data small and full (same months,
    # same results), and kept, so a rerun only redoes what changed.
    work = data_dir.parent / "reddit_work"
    cmd = ["make", "-C", shown(REPO / "reddit_extractor"), "-j", str(jobs), f"SIZE={size}",
           f"S={dumps.resolve()}", f"T={work.resolve()}", f"DATA={extracted.resolve()}",
           "train"]
    say(f"running the Reddit extractor ({len(months)} months):\n  {shlex.join(cmd)}")
    status = subprocess.call(cmd)
    if status != 0:
        raise DemoError(f"the Reddit extractor failed (make exit status {status}); its logs are "
                        f"in {shown(work / 'logs')}/")
    n_train, n_valid = split_reddit(extracted / "train.tsv", train, valid)
    # The extractor keeps its per-month results, so a forced rerun rebuilds this in seconds;
    # a full-size copy of it would double the disk use.
    (extracted / "train.tsv").unlink()
    say(f"wrote {shown(train)} ({n_train} lines) and {shown(valid)} ({n_valid} held-out "
        "validation pairs)")
    return train, valid


def prepro(train: Path, max_seq_len: int, force: bool) -> Path:
    from lsp_data.db import DatabaseError
    from lsp_data.prepro import PreproError, db_folder_for, run_prepro

    folder = db_folder_for(str(train), max_seq_len, False, False)
    meta = folder / "meta.json"
    # A database older than its tsv was made from an earlier version of the data.
    if meta.is_file() and meta.stat().st_mtime >= train.stat().st_mtime and not force:
        say(f"reusing {shown(folder)} (database already built; --force to redo)")
        return folder
    say(f"python prepro.py --corpus {shlex.quote(shown(train))} --max_seq_len {max_seq_len}")
    big = train.stat().st_size > 50 * 2**20
    try:
        folder, _ = run_prepro(
            str(train), max_seq_len=max_seq_len, overwrite=True,
            # Worker processes only pay off on real corpora; forking costs ~1 s each.
            workers=min(os.cpu_count() or 1, 8) if big else 1,
            progress=big and sys.stderr.isatty(), log=say)
    except (PreproError, DatabaseError) as err:
        raise DemoError(f"prepro: {err}") from None
    return folder


# ----------------------------------------------------------------------------- training


def train_command(args: argparse.Namespace, model: ModelChoice, db: Path, valid: Path,
                  runs: Path, extra: list[str]) -> list[str]:
    import torch

    defaults = PRETRAINED_SETTINGS if model.pretrained else TINY_SETTINGS
    steps = args.num_optim_steps or defaults["num_optim_steps"]
    # The first validation comes early enough to show where learning starts.
    valid_step = args.valid_step or max(1, steps // defaults["validations"])
    python = "python" if shutil.which("python") == sys.executable else sys.executable
    cmd = [
        python, shown(REPO / "LSP_train.py"),
        "--model_name_or_path", model.name_or_path,
        "--init_checkpoint", "None",
        "--train_input_file", shown(db),
        "--eval_input_file", shown(valid),
        "--output_dir", shown(runs),
        "--seed", str(args.seed),
        "--max_seq_length", str(args.max_seq_length),
        "--train_batch_size", str(args.train_batch_size or defaults["train_batch_size"]),
        "--gradient_accumulation_steps", "1",
        "--eval_batch_size", str(defaults["eval_batch_size"]),
        "--learning_rate", str(args.learning_rate or defaults["learning_rate"]),
        "--lr_schedule", args.lr_schedule,
        "--warmup_proportion", "0.1",
        "--num_optim_steps", str(steps),
        "--valid_step", str(valid_step),
        # One resumable checkpoint (model + optimizer state) at the end instead of one per
        # validation: on a laptop disk the copies cost more time than they are worth here.
        "--save_step", str(steps),
        "--keep_checkpoints", "1",
        # Said explicitly so that a CPU run gives no fp16 fallback warning.
        "--fp16", "true" if torch.cuda.is_available() else "false",
        "--pbar", "true" if sys.stdout.isatty() else "false",
    ]
    return cmd + extra


def _comparable(cmd: list[str]) -> list[str]:
    # The interpreter path and the progress bar do not change what is trained.
    out = list(cmd[1:])
    if "--pbar" in out:
        i = out.index("--pbar")
        del out[i:i + 2]
    return out


def _flag(cmd: list[str], name: str) -> str | None:
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
    steps = _flag(cmd, "--num_optim_steps")
    if ((run_dir / f"GP2-pretrain-step-{steps}.pkl").is_file()
            and (run_dir / "hf_model" / "config.json").is_file()
            and ("--skip_eval" in cmd or (run_dir / "eval_log.txt").is_file())):
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


def train(cmd: list[str], output_dir: Path, runs: Path, force: bool) -> Path:
    marker = output_dir / "training.json"
    log_path = output_dir / "output.log"
    say("LSP_train.py command (copy and modify it to train your own way):\n")
    say(shlex.join(cmd) + "\n")
    if not force and (run_dir := finished_run(marker, cmd)) is not None:
        say(f"reusing the finished run {shown(run_dir)} (same command; its output is in "
            f"{shown(log_path)}; --force to train again)")
        return run_dir
    marker.unlink(missing_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    before = {p for p in runs.iterdir() if p.is_dir()}
    status = stream_to_log([sys.executable, *cmd[1:]], log_path, header=f"$ {shlex.join(cmd)}\n")
    if status != 0:
        raise DemoError(f"training failed (LSP_train.py exit status {status}); its output is in "
                        f"{shown(log_path)}")
    new = [p for p in runs.iterdir() if p.is_dir() and p not in before]
    if not new:
        raise DemoError(f"LSP_train.py made no run folder under {shown(runs)}")
    run_dir = max(new, key=lambda p: p.stat().st_mtime)
    marker.write_text(json.dumps({"command": _comparable(cmd), "run_dir": str(run_dir.resolve())},
                                 indent=2) + "\n", encoding="utf-8")
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
    say(f"validation perplexity: {first[1]:.1f} at step {first[0]} -> {last[1]:.1f} at step "
        f"{last[0]} ({len(rows)} validations in {shown(path)})")
    if len(rows) == 1:
        say("(only one validation: use a --valid_step below --num_optim_steps to see a trend)")
    elif not (math.isfinite(last[1]) and last[1] < first[1]):
        raise DemoError(
            f"validation perplexity did not fall ({first[1]:.1f} at step {first[0]}, "
            f"{last[1]:.1f} at step {last[0]}): the model did not learn. Check the data and "
            "try another --learning_rate or more --num_optim_steps")
    return first, last


# ----------------------------------------------------------------------------- chat


def sample_user_turns(valid: Path, n: int) -> list[tuple[str, str]]:
    """(last context turn, response) of the first ``n`` validation lines with distinct turns."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    with open(valid, encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[0].strip():
                continue
            # The turn the response answers; earlier turns would not fit the running chat.
            user = fields[0].split(" EOS ")[-1].strip()
            if not user or user in seen:
                continue
            seen.add(user)
            out.append((user, fields[1]))
            if len(out) == n:
                break
    return out


def sample_conversation(run_dir: Path, valid: Path, out_path: Path, n_turns: int = 3) -> str:
    from lsp_model.decoding import generate_reply
    from lsp_model.loading import ModelLoadError, load_model
    from lsp_model.tokenizer import TokenizerError, load_tokenizer

    hf = run_dir / "hf_model"
    try:
        model = load_model(hf)
        tokenizer = load_tokenizer(hf)
    except (ModelLoadError, TokenizerError) as err:
        raise DemoError(f"cannot load the trained model: {err}") from None
    history: list[str] = []
    lines = [f"Sample conversation with {shown(hf)} (greedy decoding). The user turns come "
             f"from held-out conversations ({shown(valid)}); the bot sees the whole chat.", ""]
    for user, reference in sample_user_turns(valid, n_turns):
        history.append(user)
        reply = generate_reply(model, tokenizer, history, max_new_tokens=30, method="greedy")
        history.append(reply)
        # An undertrained model often ends its turn at once; say so rather than print nothing.
        shown_reply = reply or "(empty: the model ended its turn at once)"
        lines += [f"USER: {user}", f"BOT:  {shown_reply}", f"      (answer in the held-out data: "
                  f"{reference})", ""]
    text = "\n".join(lines)
    out_path.write_text(text, encoding="utf-8")
    return text


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="demo.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [-- LSP_train.py options]")
    p.add_argument("--data", choices=["dummy", "small", "full"], default="dummy",
                   help="dummy: the bundled dialogue set (default, offline); small/full: Reddit "
                   "data made by reddit_extractor from the Pushshift dumps")
    p.add_argument("--model", choices=["auto", "tiny", "small", "medium", "large"], default="auto",
                   help="auto (default): DialoGPT-small from --model_dir, the Hugging Face cache "
                   "or the hub if reachable, else tiny; tiny: configs/tiny from scratch; small/medium/large: "
                   "microsoft/DialoGPT-* from --model_dir, the cache or the hub")
    p.add_argument("--model_dir", type=Path, default=Path("models"),
                   help="where local copies live, as MODEL_DIR/DialoGPT-small etc. (default: models)")
    p.add_argument("--output_dir", type=Path, default=Path("demo_output"),
                   help="data, database, runs, output.log, sample_conversation.txt "
                   "(default: demo_output)")
    p.add_argument("--force", action="store_true", help="redo every step, even finished ones")
    p.add_argument("--reddit_dumps", type=Path, default=REDDIT_DUMPS,
                   help=f"folder of the RS_/RC_YYYY-MM dumps (default: {shown(REDDIT_DUMPS)})")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="months extracted in parallel (make -j) for --data small|full")
    g = p.add_argument_group("training (defaults depend on the model: tiny / pretrained)")
    g.add_argument("--num_optim_steps", type=int, default=None,
                   help=f"optimizer steps ({TINY_SETTINGS['num_optim_steps']} / "
                   f"{PRETRAINED_SETTINGS['num_optim_steps']})")
    g.add_argument("--valid_step", type=int, default=None,
                   help="validate and save every N steps (default: a tenth / a third of the steps)")
    g.add_argument("--train_batch_size", type=int, default=None,
                   help=f"({TINY_SETTINGS['train_batch_size']} / "
                   f"{PRETRAINED_SETTINGS['train_batch_size']})")
    g.add_argument("--learning_rate", type=float, default=None,
                   help=f"({TINY_SETTINGS['learning_rate']} / {PRETRAINED_SETTINGS['learning_rate']})")
    g.add_argument("--lr_schedule", choices=["noam", "noamwd", "BERT", "None"], default="BERT",
                   help="(BERT: 10%% linear warmup, then linear decay to 0)")
    g.add_argument("--max_seq_length", type=int, default=128,
                   help="prepro --max_seq_len and LSP_train.py --max_seq_length (128)")
    g.add_argument("--seed", type=int, default=42, help="LSP_train.py --seed (init, dropout, data order)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("num_optim_steps", "valid_step", "train_batch_size", "max_seq_length", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1")
    if args.learning_rate is not None and not args.learning_rate > 0:
        parser.error("--learning_rate must be positive")
    for name in ("output_dir", "model_dir", "reddit_dumps"):
        folder = getattr(args, name)
        if folder.exists() and not folder.is_dir():
            parser.error(f"--{name} {folder}: exists and is not a folder")

    start = time.time()
    output_dir: Path = args.output_dir
    data_dir = output_dir / "data" / args.data
    runs = output_dir / "models"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        step("1/5 model")
        model = choose_model(args.model, args.model_dir)
        say(f"model: {model.kind} ({model.name_or_path}): {model.why}")
        if model.pretrained and model.kind != "small":
            say(f"note: DialoGPT-{model.kind} trains slowly without a GPU")

        step(f"2/5 data ({args.data})")
        if args.data == "dummy":
            train_tsv, valid_tsv = dummy_data(data_dir, args.force)
        else:
            train_tsv, valid_tsv = reddit_data(args.data, data_dir, args.reddit_dumps, args.jobs,
                                               args.force)

        step("3/5 prepro")
        db = prepro(train_tsv, args.max_seq_length, args.force)

        step("4/5 training")
        cmd = train_command(args, model, db, valid_tsv, runs, extra)
        run_dir = train(cmd, output_dir, runs, args.force)
        ppl = None if "--skip_eval" in extra else check_learning(run_dir)

        step("5/5 sample conversation")
        conversation_path = output_dir / "sample_conversation.txt"
        say(sample_conversation(run_dir, valid_tsv, conversation_path))
        steps = _flag(cmd, "--num_optim_steps")
        say(f"saved to {shown(conversation_path)}\n")
        say(f"done in {time.time() - start:.0f} s. Run folder {shown(run_dir)}:")
        say(f"  GP2-pretrain-step-{steps}.pkl (state dict), hf_model/ (Hugging Face folder), "
            "train_log.txt, eval_log.txt, checkpoints/")
        if ppl is not None:
            (first_step, first_ppl), (last_step, last_ppl) = ppl
            say(f"  validation perplexity {first_ppl:.1f} (step {first_step}) -> {last_ppl:.1f} "
                f"(step {last_step})")
        if args.data == "dummy":
            from lsp_data.dummy import CITATION

            say(f"  training data: {CITATION}")
    except DemoError as err:
        print(f"demo.py: error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        print("demo.py: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # an unwritable --output_dir, a full disk...
        print(f"demo.py: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
