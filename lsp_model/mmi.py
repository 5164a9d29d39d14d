"""MMI reranking: prefer replies from which a backward model recovers the context.

The backward model is a DialoGPT trained on ``prepro.py --reverse`` data, so it reads a
conversation newest turn first. A candidate reply r for history t_1..t_k is scored by
``log P(t_k, ..., t_1 | r)``, averaged over the context tokens, under that model: bland
replies that fit any context score low (Zhang et al., 2019, section 3.4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lsp_model.tokenizer import EOS_ID


def backward_scores(reverse_model: torch.nn.Module, tokenizer, history: Sequence[str],
                    candidates: Sequence[str], max_tokens: int = 512) -> list[float]:
    """Mean log-probability of the reversed history given each candidate (higher is better)."""
    source: list[int] = []
    for turn in reversed(history):
        source += [*tokenizer.encode(turn.strip(), add_special_tokens=False), EOS_ID]
    device = next(reverse_model.parameters()).device
    scores = []
    was_training = reverse_model.training
    reverse_model.eval()
    try:
        with torch.no_grad():
            for candidate in candidates:
                reply = tokenizer.encode(candidate.strip(), add_special_tokens=False)
                ids = (reply + [EOS_ID] + source)[:max_tokens]
                # label at p = token after reading ids[:p+1]: the source tokens, then nothing
                labels = [-1] * len(reply) + ids[len(reply) + 1:] + [-1]
                labels = labels[:len(ids)]
                if all(label == -1 for label in labels):
                    scores.append(float("-inf"))
                    continue
                x = torch.tensor([ids], device=device)
                y = torch.tensor([labels], device=device)
                loss, _ = reverse_model(x, None, None, y)
                scores.append(-float(loss))
    finally:
        reverse_model.train(was_training)
    return scores
