"""Validation perplexity over a DynamicBatchingLoader (the published ``eval_model_loss``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch

from lsp_data.loaders import DataError


def eval_model_loss(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    device: torch.device,
    no_token_id: bool = True,
    autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[float, float]:
    """Mean batch loss and mean batch perplexity, each weighted by the batch's example count.

    The model is left in eval mode; the caller switches it back to training.
    """
    model.eval()
    total_loss = total_ppl = 0.0
    n_examples = 0
    with torch.no_grad():
        for batch in batches:
            input_ids, position_ids, token_ids, labels = (t.to(device) for t in batch[:4])
            with autocast or contextlib.nullcontext():
                loss, ppl = model(
                    input_ids, position_ids, None if no_token_id else token_ids, labels
                )
            n = input_ids.shape[0]
            total_loss += float(loss) * n
            total_ppl += float(ppl) * n
            n_examples += n
    if n_examples == 0:
        raise DataError("the validation file gave no example that fits --max_seq_length")
    return total_loss / n_examples, total_ppl / n_examples
