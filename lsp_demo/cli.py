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
import os
import sys
import time
from pathlib import Path

from lsp_demo.chat import sample_conversation
from lsp_demo.console import DemoError, say, shown, step
from lsp_demo.data import REDDIT_DUMPS, dummy_data, prepro, reddit_data
from lsp_demo.model_choice import choose_model
from lsp_demo.training import (
    PRETRAINED_SETTINGS,
    TINY_SETTINGS,
    check_learning,
    flag_value,
    train,
    train_command,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="demo.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [options] [-- LSP_train.py options]",
    )
    p.add_argument(
        "--data",
        choices=["dummy", "small", "full"],
        default="dummy",
        help="dummy: the bundled dialogue set (default, offline); small/full: Reddit "
        "data made by reddit_extractor from the Pushshift dumps",
    )
    p.add_argument(
        "--model",
        choices=["auto", "tiny", "small", "medium", "large"],
        default="auto",
        help="auto (default): DialoGPT-small from --model_dir, the Hugging Face cache "
        "or the hub if reachable, else tiny; tiny: configs/tiny from scratch; small/medium/large: "
        "microsoft/DialoGPT-* from --model_dir, the cache or the hub",
    )
    p.add_argument(
        "--model_dir",
        type=Path,
        default=Path("models"),
        help="where local copies live, as MODEL_DIR/DialoGPT-small etc. (default: models)",
    )
    p.add_argument(
        "--output_dir",
        type=Path,
        default=Path("demo_output"),
        help="data, database, runs, output.log, sample_conversation.txt (default: demo_output)",
    )
    p.add_argument("--force", action="store_true", help="redo every step, even finished ones")
    p.add_argument(
        "--reddit_dumps",
        type=Path,
        default=REDDIT_DUMPS,
        help=f"folder of the RS_/RC_YYYY-MM dumps (default: {shown(REDDIT_DUMPS)})",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="months extracted in parallel (make -j) for --data small|full",
    )
    g = p.add_argument_group("training (defaults depend on the model: tiny / pretrained)")
    g.add_argument(
        "--num_optim_steps",
        type=int,
        default=None,
        help=f"optimizer steps ({TINY_SETTINGS['num_optim_steps']} / "
        f"{PRETRAINED_SETTINGS['num_optim_steps']})",
    )
    g.add_argument(
        "--valid_step",
        type=int,
        default=None,
        help="validate and save every N steps (default: a tenth / a third of the steps)",
    )
    g.add_argument(
        "--train_batch_size",
        type=int,
        default=None,
        help=f"({TINY_SETTINGS['train_batch_size']} / {PRETRAINED_SETTINGS['train_batch_size']})",
    )
    g.add_argument(
        "--learning_rate",
        type=float,
        default=None,
        help=f"({TINY_SETTINGS['learning_rate']} / {PRETRAINED_SETTINGS['learning_rate']})",
    )
    g.add_argument(
        "--lr_schedule",
        choices=["noam", "noamwd", "BERT", "None"],
        default="BERT",
        help="(BERT: 10%% linear warmup, then linear decay to 0)",
    )
    g.add_argument(
        "--max_seq_length",
        type=int,
        default=128,
        help="prepro --max_seq_len and LSP_train.py --max_seq_length (128)",
    )
    g.add_argument(
        "--seed", type=int, default=42, help="LSP_train.py --seed (init, dropout, data order)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
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
            train_tsv, valid_tsv = reddit_data(
                args.data, data_dir, args.reddit_dumps, args.jobs, args.force
            )

        step("3/5 prepro")
        db = prepro(train_tsv, args.max_seq_length, args.force)

        step("4/5 training")
        cmd = train_command(args, model, db, valid_tsv, runs, extra)
        run_dir = train(cmd, output_dir, runs, args.force)
        ppl = None if "--skip_eval" in extra else check_learning(run_dir)

        step("5/5 sample conversation")
        conversation_path = output_dir / "sample_conversation.txt"
        say(sample_conversation(run_dir, valid_tsv, conversation_path))
        steps = flag_value(cmd, "--num_optim_steps")
        say(f"saved to {shown(conversation_path)}\n")
        say(f"done in {time.time() - start:.0f} s. Run folder {shown(run_dir)}:")
        say(
            f"  GP2-pretrain-step-{steps}.pkl (state dict), hf_model/ (Hugging Face folder), "
            "train_log.txt, eval_log.txt, checkpoints/"
        )
        if ppl is not None:
            (first_step, first_ppl), (last_step, last_ppl) = ppl
            say(
                f"  validation perplexity {first_ppl:.1f} (step {first_step}) -> {last_ppl:.1f} "
                f"(step {last_step})"
            )
        if args.data == "dummy":
            from lsp_demo.dummy_data import CITATION

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
