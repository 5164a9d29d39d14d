"""Feature construction of docs/REFERENCE.md §3: turns of token ids -> aligned training features."""

from __future__ import annotations

from dataclasses import dataclass

from lsp_data.tokenizer import EOS_ID

PAD_MULTIPLE = 8  # features are padded to a multiple of 8 tokens (tensor-core friendly)


@dataclass
class Feature:
    """One training sequence; labels are aligned to input positions (no shift needed)."""

    input_ids: list[int]
    token_type_ids: list[int]
    lm_labels: list[int]
    weights: list[float]

    @property
    def input_len(self) -> int:
        return len(self.input_ids)


def align_turns(
    turns: list[list[int]], weights: list[float]
) -> tuple[list[int], list[int], list[int], list[float]]:
    """(input_ids, token_type_ids, lm_labels, label weights) for turns s_0..s_k, labels aligned
    to input positions: the label at a position is the token that follows it.

    s_0 is input only. Each later turn i adds ``eos s_i`` to the input, with token type i,
    and ``s_i eos`` as its labels, or -1 when its weight is 0 (context, not a target). This
    is the one place the alignment is made: prepro's features and the validation loader's
    examples both come from it.
    """
    input_ids: list[int] = []
    token_types: list[int] = []
    labels: list[int] = []
    label_weights: list[float] = []
    for i, (ids, w) in enumerate(zip(turns, weights)):
        if i == 0:
            input_ids.extend(ids)
            token_types.extend([0] * len(ids))
            labels.extend([-1] * len(ids))
            label_weights.extend([0.0] * len(ids))
            continue
        # The eos before turn i is the input whose next token is s_i[0]; the label run of
        # turn i is s_i followed by the eos that ends it.
        input_ids.append(EOS_ID)
        input_ids.extend(ids)
        token_types.extend([i] * (len(ids) + 1))
        if w == 0:
            labels.extend([-1] * (len(ids) + 1))
            label_weights.extend([0.0] * (len(ids) + 1))
        else:
            labels.extend(ids)
            labels.append(EOS_ID)
            label_weights.extend([w] * (len(ids) + 1))
    return input_ids, token_types, labels, label_weights


def make_feature(turns: list[list[int]], weights: list[float]) -> Feature | None:
    """Build the feature for turns s_0..s_k, or None when no turn after the first is a target."""
    if all(w == 0 for w in weights[1:]):
        return None
    input_ids, token_types, labels, label_weights = align_turns(turns, weights)
    end = len(labels)
    while end > 0 and labels[end - 1] == -1:
        end -= 1
    del input_ids[end:], token_types[end:], labels[end:], label_weights[end:]

    pad = -end % PAD_MULTIPLE
    input_ids.extend([0] * pad)
    token_types.extend([0] * pad)
    labels.extend([-1] * pad)
    label_weights.extend([0.0] * pad)
    return Feature(input_ids, token_types, labels, label_weights)


def make_features(turns: list[list[int]], weights: list[float], max_len: int) -> list[Feature]:
    """Split a conversation into features of about ``max_len`` tokens (docs/REFERENCE.md §3).

    Walks the turns keeping a running window; a turn longer than ``max_len`` closes the
    window and is skipped, and once the window's length passes ``max_len`` it is emitted
    and restarted from its last turn, so consecutive features overlap by one turn.
    """
    features: list[Feature] = []
    sents: list[list[int]] = []
    ws: list[float] = []
    running = 0

    def emit() -> None:
        feature = make_feature(sents, ws)
        if feature is not None:
            features.append(feature)

    for ids, w in zip(turns, weights):
        if len(ids) > max_len:
            if len(sents) >= 2:
                emit()
            sents, ws, running = [], [], 0
            continue
        if running > max_len:
            emit()
            sents, ws = sents[-1:], ws[-1:]
            running = len(sents[0]) + 1
        sents.append(ids)
        ws.append(w)
        running += len(ids) + 1
    if len(sents) >= 2:
        emit()
    return features


def conversation_turns(
    turns: list[list[int]], weights: list[float], *, reverse: bool, two_turn: bool
) -> tuple[list[list[int]], list[float]]:
    """Apply ``--reverse`` (backward model for MMI) and ``--two_turn`` (first two turns)."""
    if reverse:
        turns, weights = turns[::-1], weights[::-1]
    if two_turn:
        turns, weights = turns[:2], weights[:2]
    return turns, weights
