"""What decode.py and chat.py share: the model and decoding flags, their checks, loading and
MMI reranking, so that both commands take the same settings with the same meaning.

The flags and their range checks need no torch: it is imported where a device is checked or
a model loaded, so that ``--help`` and a mistaken option answer at once.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Self

from lsp_model.decoding import METHODS, check_options, generate_replies
from lsp_model.errors import NoWeightsError

if TYPE_CHECKING:
    import torch

    from lsp_model.modeling import GPT2LMHeadModel

logger = logging.getLogger(__name__)

DTYPES = ("bfloat16", "float16", "float32")  # torch's names of the --dtype choices
AUTO_DEVICE = "auto"


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model_name_or_path",
        required=True,
        help="HF folder (e.g. RUN/hf_model), config folder with --init_checkpoint, or hub name",
    )
    p.add_argument(
        "--init_checkpoint", default=None, help="state dict (.pkl) to load into the model"
    )
    p.add_argument(
        "--random_init",
        action="store_true",
        help="allow a model folder without weights and without --init_checkpoint: decode "
        "with the config's random weights (for timing and tests; refused otherwise)",
    )


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    """The decoding flags of decode.py and chat.py (every one but decode's --batch_size)."""
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
        "--repetition_penalty",
        type=float,
        default=1.0,
        help="divide the scores of tokens already in the context or reply by this "
        "(CTRL's penalty; 1.0 = off, 1.2 is common)",
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


def add_runtime_arguments(p: argparse.ArgumentParser, seed_help: str) -> None:
    p.add_argument("--seed", type=int, default=42, help=seed_help)
    p.add_argument(
        "--device",
        default=AUTO_DEVICE,
        help=f"cpu, cuda or cuda:N; {AUTO_DEVICE}: cuda when a GPU is available, else cpu",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="weights and activations while decoding; float16 needs CUDA, bfloat16 "
        "also runs on CPUs (half the memory; replies may differ at near-ties)",
    )


@dataclass
class DecodingSettings:
    """The decoding flags as one value: checked together, changed together (chat /settings)."""

    method: str = "greedy"
    num_beams: int = 4
    top_k: int = 0
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 40
    max_context_tokens: int = 256
    mmi_candidates: int = 16

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Self:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    def check(self, mmi: bool) -> None:
        """Raise ValueError naming the first setting out of range (MMI always samples)."""
        check_options(
            method="sample" if mmi else self.method,
            max_new_tokens=self.max_new_tokens,
            top_k=self.top_k,
            top_p=self.top_p,
            temperature=self.temperature,
            num_beams=self.num_beams,
            repetition_penalty=self.repetition_penalty,
        )
        if self.max_context_tokens < 1:
            raise ValueError(f"max_context_tokens must be >= 1, got {self.max_context_tokens}")
        if mmi and self.mmi_candidates < 1:
            raise ValueError(f"--mmi_candidates must be >= 1, got {self.mmi_candidates}")

    def generation_options(self) -> dict:
        """Keyword arguments of generate_replies / generate_reply, less ``method``."""
        return dict(
            num_beams=self.num_beams,
            top_k=self.top_k,
            top_p=self.top_p,
            temperature=self.temperature,
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_new_tokens,
            max_context_tokens=self.max_context_tokens,
        )


def check_device(device: str) -> str:
    """The device to decode on (``auto`` resolved); refuses one this machine lacks before
    any model is loaded."""
    import torch

    if device == AUTO_DEVICE:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ValueError(f"--device {device}: {err}") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return device


def check_dtype(dtype: str, device: str) -> torch.dtype:
    """The torch dtype of a --dtype choice on ``device`` (a checked, resolved device)."""
    import torch

    if dtype == "float16" and torch.device(device).type != "cuda":
        raise ValueError("--dtype float16 needs a CUDA device; use bfloat16 on a CPU")
    return getattr(torch, dtype)


def load_for_decoding(
    name: str,
    checkpoint: str | None,
    device: str,
    dtype: torch.dtype,
    random_init: bool = False,
) -> tuple[GPT2LMHeadModel, object]:
    """The model in eval mode on ``device`` and its tokenizer (the packaged GPT-2 files when
    the model folder has none).

    A folder without weights (and no ``checkpoint``) is refused unless ``random_init``:
    replies from random weights look like a broken model, not like a missing file.
    """
    from lsp_data.tokenizer import load_tokenizer
    from lsp_model.hub import NONE_STRINGS, resolve_model_source
    from lsp_model.loading import has_weights, load_model

    source = resolve_model_source(name)
    tokenizer = load_tokenizer(source)
    try:
        model = load_model(name, checkpoint, allow_random_init=random_init)
    except NoWeightsError as err:
        raise NoWeightsError(
            f"{err}; pass a folder with weights (e.g. RUN/hf_model), --init_checkpoint "
            "RUN/GP2-pretrain-step-N.pkl, or --random_init to decode with random weights "
            "on purpose"
        ) from None
    no_checkpoint = checkpoint is None or str(checkpoint).strip().lower() in NONE_STRINGS
    if random_init and no_checkpoint and source is not None and not has_weights(source):
        logger.warning("%s: no weights, decoding with random ones (--random_init)", source)
    # transformers' decorator on .to() hides `self` from the type checker
    model.to(device=device, dtype=dtype)  # type: ignore[call-arg]
    return model.eval(), tokenizer


def mmi_pick(
    model: GPT2LMHeadModel,
    reverse: GPT2LMHeadModel,
    tokenizer,
    history: Sequence[str],
    settings: DecodingSettings,
    batch_size: int,
) -> str:
    """Sample ``settings.mmi_candidates`` replies to ``history`` and return the one the
    backward model scores best (the first of equals)."""
    from lsp_model.mmi import backward_scores

    # The candidates of one context are sampled together, as one batch.
    candidates = generate_replies(
        model,
        tokenizer,
        [history] * settings.mmi_candidates,
        method="sample",
        batch_size=batch_size,
        **settings.generation_options(),
    )
    scores = backward_scores(reverse, tokenizer, history, candidates, batch_size=batch_size)
    return candidates[max(range(len(candidates)), key=scores.__getitem__)]
