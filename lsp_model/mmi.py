"""MMI reranking: prefer replies from which a backward model recovers the context.

The backward model is a DialoGPT trained on ``prepro.py --reverse`` data, so it reads a
conversation newest turn first. A candidate reply r for history t_1..t_k is scored by
``log P(t_k, ..., t_1 | r)``, averaged over the context tokens, under that model: bland
replies that fit any context score low (Zhang et al., 2019, section 3.4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from lsp_data.tokenizer import EOS_ID

if TYPE_CHECKING:
    from lsp_model.modeling import GPT2LMHeadModel

# Log-probabilities are computed for this many labelled positions at a time: each needs a
# 50257-wide row of logits (~200 MB of float32 per 1024 positions).
POSITIONS_PER_PROJECTION = 1024


def backward_scores(
    reverse_model: GPT2LMHeadModel,
    tokenizer,
    history: Sequence[str],
    candidates: Sequence[str],
    max_tokens: int = 512,
    batch_size: int = 16,
) -> list[float]:
    """Mean log-probability of the reversed history given each candidate (higher is better).

    Candidates are scored ``batch_size`` at a time, padded on the right: with causal
    attention the padding never reaches the positions that are scored. A candidate whose
    sequence leaves no context token inside ``max_tokens`` scores ``-inf``.
    """
    source: list[int] = []
    for turn in reversed(history):
        source += [*tokenizer.encode(turn.strip(), add_special_tokens=False), EOS_ID]
    rows: list[tuple[list[int], list[int]]] = []
    for candidate in candidates:
        reply = tokenizer.encode(candidate.strip(), add_special_tokens=False)
        ids = (reply + [EOS_ID] + source)[:max_tokens]
        # label at p = the token after ids[:p+1]: the source tokens, then nothing
        labels = ([-1] * len(reply) + ids[len(reply) + 1 :] + [-1])[: len(ids)]
        rows.append((ids, labels))

    device = next(reverse_model.parameters()).device
    scores: list[float] = []
    was_training = reverse_model.training
    reverse_model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                scores += _score_batch(reverse_model, rows[start : start + batch_size], device)
    finally:
        reverse_model.train(was_training)
    return scores


def _score_batch(
    model: GPT2LMHeadModel, rows: list[tuple[list[int], list[int]]], device: torch.device
) -> list[float]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), EOS_ID, dtype=torch.long)
    labels = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, (ids, labs) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        labels[r, : len(labs)] = torch.tensor(labs)
    input_ids, labels = input_ids.to(device), labels.to(device)
    hidden = model.transformer(input_ids, use_cache=False).last_hidden_state
    row_of, col_of = (labels != -1).nonzero(as_tuple=True)
    total = torch.zeros(len(rows), dtype=torch.float64, device=device)
    for lo in range(0, len(row_of), POSITIONS_PER_PROJECTION):
        rows_at = row_of[lo : lo + POSITIONS_PER_PROJECTION]
        cols_at = col_of[lo : lo + POSITIONS_PER_PROJECTION]
        logp = torch.log_softmax(model.lm_head(hidden[rows_at, cols_at]).float(), dim=-1)
        picked = logp.gather(1, labels[rows_at, cols_at].unsqueeze(1)).squeeze(1)
        total.index_add_(0, rows_at, picked.double())
    counts = (labels != -1).sum(dim=1)
    return [float(t / n) if n else float("-inf") for t, n in zip(total.tolist(), counts.tolist())]
