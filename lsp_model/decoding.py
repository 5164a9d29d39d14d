"""Reply generation for a dialogue history, in DialoGPT's input format.

The context is the turns joined and terminated by ``<|endoftext|>``
(``turn1<eos>turn2<eos>``), so the model continues with the next speaker's turn and ends it
with ``<|endoftext|>`` again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lsp_data.tokenizer import EOS_ID

if TYPE_CHECKING:
    from transformers.generation.streamers import BaseStreamer

    from lsp_model.modeling import GPT2LMHeadModel

__all__ = ["METHODS", "check_options", "encode_history", "generate_replies", "generate_reply"]

METHODS = ("greedy", "sample", "beam")


def encode_history(tokenizer, history: Sequence[str], max_context_tokens: int = 256) -> list[int]:
    """Token ids of ``turn1<eos>turn2<eos>...``, cut from the left to ``max_context_tokens``.

    Cutting from the left keeps the most recent turns, which matter most for the reply.
    An empty history gives ``[<eos>]`` (an unconditioned first turn).
    """
    if max_context_tokens < 1:
        raise ValueError(f"max_context_tokens must be >= 1, got {max_context_tokens}")
    ids: list[int] = []
    for turn in history:
        ids.extend(tokenizer.encode(turn.strip(), add_special_tokens=False))
        ids.append(EOS_ID)
    if not ids:
        ids = [EOS_ID]
    return ids[-max_context_tokens:]


def check_options(
    *,
    method: str,
    max_new_tokens: int,
    top_k: int,
    top_p: float,
    temperature: float,
    num_beams: int,
    repetition_penalty: float = 1.0,
) -> None:
    """Raise ValueError naming the first decoding option out of range for ``method``."""
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {', '.join(METHODS)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if repetition_penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
    if method == "sample":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
    if method == "beam" and num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")


def generate_reply(
    model: GPT2LMHeadModel,
    tokenizer,
    history: Sequence[str],
    *,
    max_new_tokens: int = 40,
    method: str = "greedy",
    top_k: int = 0,
    top_p: float = 1.0,
    temperature: float = 1.0,
    num_beams: int = 4,
    repetition_penalty: float = 1.0,
    max_context_tokens: int = 256,
    streamer: BaseStreamer | None = None,
) -> str:
    """Generate the next turn after ``history`` and return it as stripped text.

    ``method``: "greedy", "sample" (``top_k`` 0 = off, ``top_p`` 1.0 = off, ``temperature``)
    or "beam" (``num_beams``); ``repetition_penalty`` above 1 divides the scores of tokens
    already in the context or the reply (CTRL's penalty; 1.0 = off). Generation stops at
    ``<|endoftext|>`` or after ``max_new_tokens``. The model is run in eval mode (its
    previous mode is restored), so dropout never perturbs a reply. ``streamer``: a
    transformers streamer that receives the reply's tokens as they are made (greedy and
    sampling; beam search hands it only the finished beam).
    """
    return generate_replies(
        model,
        tokenizer,
        [history],
        max_new_tokens=max_new_tokens,
        method=method,
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
        max_context_tokens=max_context_tokens,
        streamer=streamer,
    )[0]


def generate_replies(
    model: GPT2LMHeadModel,
    tokenizer,
    histories: Sequence[Sequence[str]],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 40,
    method: str = "greedy",
    top_k: int = 0,
    top_p: float = 1.0,
    temperature: float = 1.0,
    num_beams: int = 4,
    repetition_penalty: float = 1.0,
    max_context_tokens: int = 256,
    progress: Callable[[int], object] | None = None,
    streamer: BaseStreamer | None = None,
) -> list[str]:
    """:func:`generate_reply` for many histories, ``batch_size`` at a time.

    Contexts are padded on the left with an attention mask, so every row continues right
    after its own context and greedy/beam replies are those of one-at-a-time decoding,
    except where two tokens score within float rounding of each other: padding changes
    the shapes of the matrix products, and with them the last bits (bench/decode_bench.py:
    31 of 32 replies identical for a random 117M model, the other split at a 0.007-logit
    tie after 17 tokens). Sampled replies depend on the batch layout as well as the seed. ``progress(n)`` is called after
    each batch with the number of replies it made.
    """
    # Imported here, not at the top: decode.py and chat.py read METHODS and check_options
    # while checking their options, before torch is worth its seconds of importing.
    import torch

    check_options(
        method=method,
        max_new_tokens=max_new_tokens,
        top_k=top_k,
        top_p=top_p,
        temperature=temperature,
        num_beams=num_beams,
        repetition_penalty=repetition_penalty,
    )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if streamer is not None and len(histories) != 1:
        # transformers' streamers take one sequence; rows of a batch would interleave.
        raise ValueError(f"a streamer takes one history at a time, got {len(histories)}")
    n_positions = getattr(model.config, "n_positions", None)
    if n_positions is not None:
        if max_new_tokens >= n_positions:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for context in the model's "
                f"{n_positions} positions"
            )
        # Position embeddings end at n_positions: the reply must fit after the context.
        max_context_tokens = min(max_context_tokens, n_positions - max_new_tokens)

    kwargs: dict = dict(
        max_new_tokens=max_new_tokens,
        pad_token_id=EOS_ID,
        eos_token_id=EOS_ID,
        num_return_sequences=1,
        repetition_penalty=repetition_penalty,
    )
    if streamer is not None:
        kwargs["streamer"] = streamer
    if method == "sample":
        # top_k is always passed: transformers would otherwise apply its default of 50.
        kwargs.update(
            do_sample=True, top_k=top_k, top_p=top_p, temperature=temperature, num_beams=1
        )
    elif method == "beam":
        kwargs.update(do_sample=False, num_beams=num_beams, early_stopping=True)
    else:
        kwargs.update(do_sample=False, num_beams=1)

    contexts = [encode_history(tokenizer, history, max_context_tokens) for history in histories]
    device = next(model.parameters()).device
    replies: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(contexts), batch_size):
            batch = contexts[start : start + batch_size]
            width = max(len(c) for c in batch)
            input_ids = torch.full((len(batch), width), EOS_ID, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, context in enumerate(batch):
                input_ids[row, width - len(context) :] = torch.tensor(context)
                attention_mask[row, width - len(context) :] = 1
            with torch.no_grad():
                output = model.generate(
                    input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs
                )
            for row in output[:, width:].tolist():
                if EOS_ID in row:  # finished rows are padded with eos after their end
                    row = row[: row.index(EOS_ID)]
                replies.append(tokenizer.decode(row, skip_special_tokens=True).strip())
            if progress is not None:
                progress(len(batch))
    finally:
        model.train(was_training)
    return replies
