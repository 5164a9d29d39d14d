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
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from lsp_common.atomic import write_text_atomic
from lsp_data.parsing import TURN_SEPARATOR
from lsp_data.tokenizer import load_tokenizer
from lsp_model.decoding import METHODS, check_options, generate_replies
from lsp_model.loading import ModelLoadError, load_model, resolve_model_source
from lsp_model.mmi import backward_scores
from lsp_model.modeling import GPT2LMHeadModel

WEIGHT_TOKENS = ("0.0", "1.0")  # how this toolkit's data writes turn weights
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in --help."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument(
        "--model_name_or_path",
        required=True,
        help="HF folder (e.g. RUN/hf_model), config folder with --init_checkpoint, or hub name",
    )
    p.add_argument(
        "--init_checkpoint", default=None, help="state dict (.pkl) to load into the model"
    )
    p.add_argument("--input", required=True, help="contexts, one per line (first tab field)")
    p.add_argument("--output", required=True, help="hypotheses, one per line")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="greedy",
        help="greedy: the most likely token each step; sample: top-k/top-p sampling; "
        "beam: beam search (ignored with --mmi_model, which samples)",
    )
    p.add_argument("--num_beams", type=int, default=4, help="beam search width")
    p.add_argument(
        "--top_k", type=int, default=0, help="sampling: keep the k best tokens (0 = all)"
    )
    p.add_argument("--top_p", type=float, default=1.0, help="sampling: nucleus mass (1.0 = off)")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling: divide the scores by this (below 1 = more conservative)",
    )
    p.add_argument(
        "--max_new_tokens",
        type=int,
        default=40,
        help="longest reply in tokens; a reply normally ends at <|endoftext|>",
    )
    p.add_argument(
        "--max_context_tokens",
        type=int,
        default=256,
        help="context tokens kept, the most recent ones (also capped by the model's "
        "positions minus --max_new_tokens)",
    )
    p.add_argument(
        "--mmi_model",
        default=None,
        help="backward model (trained on prepro.py --reverse data): rerank "
        "--mmi_candidates sampled replies by log P(context | reply)",
    )
    p.add_argument(
        "--mmi_candidates",
        type=int,
        default=16,
        help="sampled replies per context for --mmi_model to choose from",
    )
    p.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="contexts decoded together (left-padded); greedy and beam replies do not "
        "depend on it up to float rounding at near-ties, sampled ones do (fixed by "
        "--seed for a given batch size)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed for sampling")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="weights and activations while decoding; float16 needs CUDA, bfloat16 "
        "also runs on CPUs (half the memory; replies may differ at near-ties)",
    )
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


def check_device(device: str) -> None:
    """Refuse a device this machine lacks before any model is loaded."""
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ValueError(f"--device {device}: {err}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here; use --device cpu")


def _load(
    name: str, checkpoint: str | None, device: str, dtype: torch.dtype
) -> tuple[GPT2LMHeadModel, object]:
    source = resolve_model_source(name)
    tokenizer = load_tokenizer(source)  # falls back to the packaged GPT-2 files
    model = load_model(name, checkpoint)
    # transformers' decorator on .to() hides `self` from the type checker
    model.to(device=device, dtype=dtype)  # type: ignore[call-arg]
    return model.eval(), tokenizer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = dict(
        max_new_tokens=args.max_new_tokens,
        top_k=args.top_k,
        top_p=args.top_p,
        temperature=args.temperature,
        num_beams=args.num_beams,
    )
    try:
        check_options(method="sample" if args.mmi_model else args.method, **options)
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
        if args.mmi_model and args.mmi_candidates < 1:
            raise ValueError(f"--mmi_candidates must be >= 1, got {args.mmi_candidates}")
        check_device(args.device)
        if args.dtype == "float16" and torch.device(args.device).type != "cuda":
            raise ValueError("--dtype float16 needs a CUDA device; use bfloat16 on a CPU")
        dtype = DTYPES[args.dtype]
        contexts = read_contexts(args.input)
        model, tokenizer = _load(args.model_name_or_path, args.init_checkpoint, args.device, dtype)
        reverse = _load(args.mmi_model, None, args.device, dtype)[0] if args.mmi_model else None
    except (ValueError, OSError, ModelLoadError) as err:
        print(f"decode.py: error: {err}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    options["max_context_tokens"] = args.max_context_tokens
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
                **options,
            )
        else:
            replies = []
            for history in contexts:
                # The candidates of one context are sampled together, as one batch.
                candidates = generate_replies(
                    model,
                    tokenizer,
                    [history] * args.mmi_candidates,
                    method="sample",
                    batch_size=args.batch_size,
                    **options,
                )
                scores = backward_scores(
                    reverse, tokenizer, history, candidates, batch_size=args.batch_size
                )
                replies.append(candidates[max(range(len(candidates)), key=scores.__getitem__)])
                pbar.update(1)
    except ValueError as err:  # options that only the model can refuse, e.g. its positions
        print(f"decode.py: error: {err}", file=sys.stderr)
        return 2
    finally:
        pbar.close()
    hypotheses = [" ".join(reply.split()) for reply in replies]  # one line each, always
    write_text_atomic(args.output, "\n".join(hypotheses) + "\n")
    print(f"wrote {len(hypotheses)} hypotheses to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
