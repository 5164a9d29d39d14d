"""Generate responses for a test file: one hypothesis per line, ready for dstc/.

    python decode.py --model_name_or_path RUN/hf_model --input test.refs.txt --output hyp.txt
    python decode.py ... --method beam --num_beams 5
    python decode.py ... --method sample --top_p 0.9 --mmi_model REVERSE_RUN/hf_model

Each input line's first tab-separated field is the context, turns joined by ` EOS `
(leading turn weights such as `0.0 ` are dropped), as in the training tsv, the validation
tsv and the multi-reference test file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from lsp_common.atomic import OutputError, write_text_atomic
from lsp_data.parsing import TURN_SEPARATOR
from lsp_data.tokenizer import TokenizerError
from lsp_decode.common import (
    DecodingSettings,
    add_decoding_arguments,
    add_model_arguments,
    add_runtime_arguments,
    check_device,
    check_dtype,
    load_for_decoding,
    mmi_pick,
)
from lsp_model.decoding import generate_replies
from lsp_model.errors import ModelLoadError

WEIGHT_TOKENS = ("0.0", "1.0")  # how this toolkit's data writes turn weights


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in --help."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    add_model_arguments(p)
    p.add_argument("--input", required=True, help="contexts, one per line (first tab field)")
    p.add_argument("--output", required=True, help="hypotheses, one per line")
    add_decoding_arguments(p)
    p.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="contexts decoded together (left-padded); greedy and beam replies do not "
        "depend on it up to float rounding at near-ties, sampled ones do (fixed by "
        "--seed for a given batch size)",
    )
    add_runtime_arguments(p, seed_help="random seed for sampling")
    return p


def read_contexts(path: str) -> list[list[str]]:
    """Context turns of each line; a leading ``0.0``/``1.0`` weight token is dropped."""
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{path}: is a folder; --input takes a text file")
    if not file.is_file():
        raise ValueError(f"{path}: no such file")
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({err.reason})") from None
    # Split on "\n" only: str.splitlines() would also break at U+2028 and friends inside
    # Reddit text, and the hypotheses would no longer align with the reference lines.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    contexts = []
    for lineno, line in enumerate(lines, start=1):
        turns = []
        for turn in line.rstrip("\r").split("\t", 1)[0].split(TURN_SEPARATOR):
            words = turn.split()
            if words and words[0] in WEIGHT_TOKENS:
                words = words[1:]
            if not words:
                raise ValueError(f"{path}:{lineno}: an empty turn in the context")
            turns.append(" ".join(words))
        contexts.append(turns)
    if not contexts:
        raise ValueError(f"{path}: no line to decode")
    return contexts


def check_output(path: str) -> None:
    """Refuse, before any model is loaded, an --output that cannot be written: a folder, a
    file in the way of its folder, or a folder (or the nearest existing one above a missing
    folder) where no file can be created, such as a read-only mount."""
    out = Path(path)
    if out.is_dir():
        raise OutputError(f"--output {path}: is a folder; give a file name")
    if out.exists() and not out.is_file():
        raise OutputError(f"--output {path}: is not a regular file")
    folder = out.parent
    while not folder.exists():
        if folder.is_symlink():  # a dangling link: mkdir would fail later
            raise OutputError(f"--output {path}: {folder} is a broken link")
        folder = folder.parent
    if not folder.is_dir():
        raise OutputError(f"--output {path}: {folder} is a file, not a folder")
    # Creating a file is the test that holds for root, ACLs and read-only mounts alike.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.probe-", dir=folder)
    except OSError as err:
        raise OutputError(
            f"--output {path}: cannot create files in {folder} ({err.strerror or err})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = DecodingSettings.from_args(args)
    try:
        settings.check(mmi=bool(args.mmi_model))
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
        contexts = read_contexts(args.input)
        check_output(args.output)  # now, not after the decoding
        args.device = check_device(args.device)  # the first step that imports torch
        dtype = check_dtype(args.dtype, args.device)
        model, tokenizer = load_for_decoding(
            args.model_name_or_path, args.init_checkpoint, args.device, dtype, args.random_init
        )
        reverse = (
            load_for_decoding(args.mmi_model, None, args.device, dtype, args.random_init)[0]
            if args.mmi_model
            else None
        )
    except (ValueError, OSError, ModelLoadError, TokenizerError) as err:
        print(f"decode.py: error: {err}", file=sys.stderr)
        return 2
    import torch

    torch.manual_seed(args.seed)
    pbar = tqdm(total=len(contexts), desc="decoding", unit="line", file=sys.stderr, disable=None)
    try:
        if reverse is None:
            replies = generate_replies(
                model,
                tokenizer,
                contexts,
                method=args.method,
                batch_size=args.batch_size,
                progress=pbar.update,
                **settings.generation_options(),
            )
        else:
            replies = []
            for history in contexts:
                replies.append(
                    mmi_pick(model, reverse, tokenizer, history, settings, args.batch_size)
                )
                pbar.update(1)
    except ValueError as err:  # options that only the model can refuse, e.g. its positions
        print(f"decode.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        pbar.close()
    hypotheses = [" ".join(reply.split()) for reply in replies]  # one line each, always
    try:
        write_text_atomic(args.output, "\n".join(hypotheses) + "\n")
    except OSError as err:  # e.g. the disk filled up while decoding
        print(
            f"decode.py: error: cannot write {args.output}: {err.strerror or err}", file=sys.stderr
        )
        return 1
    print(f"wrote {len(hypotheses)} hypotheses to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
