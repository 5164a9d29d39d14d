"""Feature construction of docs/REFERENCE.md §3: turns of token ids -> aligned training features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass
class FlatFeatures:
    """Features as flat arrays, feature i spanning ``input_len[:i].sum()`` on (the layout of
    ``lsp_data.db.FeatureChunk``), and how many conversations gave none."""

    input_len: np.ndarray  # int32 [n]
    input_ids: np.ndarray  # uint16 [total]
    token_type_ids: np.ndarray  # int32 [total]
    lm_labels: np.ndarray  # int32 [total]
    weights: np.ndarray  # float64 [total]
    n_without_feature: int


def turn_windows(lengths: list[int], max_len: int) -> list[tuple[int, int]]:
    """The turn ranges ``[lo, hi)`` that ``make_features`` makes features of (emitted or not),
    from the turns' token counts alone: the same walk, without touching a token."""
    windows: list[tuple[int, int]] = []
    lo = 0
    running = 0
    for k, n in enumerate(lengths):
        if n > max_len:
            if k - lo >= 2:
                windows.append((lo, k))
            lo, running = k + 1, 0
            continue
        if running > max_len:
            windows.append((lo, k))
            lo = k - 1
            running = lengths[lo] + 1
        running += n + 1
    if len(lengths) - lo >= 2:
        windows.append((lo, len(lengths)))
    return windows


def make_features_flat(
    ids: np.ndarray,
    turn_lengths: np.ndarray,
    turn_weights: list[float],
    conversations: list[tuple[int, int]],
    max_len: int,
    *,
    reverse: bool = False,
    two_turn: bool = False,
) -> FlatFeatures:
    """``make_features(conversation_turns(...))`` for many conversations at once, as arrays.

    ``ids`` holds every turn's token ids back to back, ``turn_lengths`` and ``turn_weights``
    one entry per turn, and ``conversations`` each conversation's (first turn, number of
    turns). The windows and their last target turns are found in Python from the turn
    lengths; every token is then placed by numpy gathers, so a feature costs a few list
    appends instead of a Python loop over its tokens. The result equals ``make_features``'s
    features concatenated (tests hold them to it).
    """
    lengths: list[int] = turn_lengths.tolist()
    # One row per emitted feature: its first turn, its number of turns, the step (+1 or -1
    # with --reverse) from one turn to the next.
    f_first: list[int] = []
    f_count: list[int] = []
    n_without = 0
    step = -1 if reverse else 1
    for first, count in conversations:
        if reverse:
            order = range(first + count - 1, first - 1, -1)
        else:
            order = range(first, first + count)
        if two_turn:
            order = order[:2]
        made = 0
        if len(order) >= 2:
            for lo, hi in turn_windows([lengths[t] for t in order], max_len):
                # The last turn with a weight ends the feature (make_feature's trim); none
                # after the first: no feature.
                last = hi - 1
                while last > lo and turn_weights[order[last]] == 0:
                    last -= 1
                if last > lo:
                    f_first.append(order[lo])
                    f_count.append(last - lo + 1)
                    made += 1
        if not made:
            n_without += 1
    return _place_tokens(
        ids, turn_lengths, np.asarray(turn_weights, np.float64), f_first, f_count, step, n_without
    )


def _ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])``."""
    ends = np.cumsum(counts)
    out = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    out -= np.repeat(ends - counts, counts)
    return out


def _place_tokens(
    ids: np.ndarray,
    turn_lengths: np.ndarray,
    turn_weights: np.ndarray,
    f_first: list[int],
    f_count: list[int],
    step: int,
    n_without: int,
) -> FlatFeatures:
    counts = np.asarray(f_count, np.int64)
    # Segments: turn p of a feature, p = 0.. (align_turns's i): turn 0 is its tokens alone,
    # every later turn ``eos`` + its tokens.
    pos = _ragged_arange(counts)
    turn = np.repeat(np.asarray(f_first, np.int64), counts) + step * pos
    n_tok = turn_lengths[turn].astype(np.int64)
    has_eos = (pos > 0).astype(np.int64)
    seg_len = n_tok + has_eos
    seg_weight = np.where(pos > 0, turn_weights[turn], 0.0)
    target = seg_weight != 0
    seg_weight[~target] = 0.0  # a -0.0 weight is no target, and stored as 0.0 as make_feature does
    # Feature lengths, padded to a multiple of PAD_MULTIPLE.
    feature_of_seg = np.repeat(np.arange(len(counts)), counts)
    real_len = np.bincount(feature_of_seg, weights=seg_len, minlength=len(counts)).astype(np.int64)
    input_len = real_len + (-real_len % PAD_MULTIPLE)
    total = int(input_len.sum())
    input_ids = np.zeros(total, np.uint16)
    token_types = np.zeros(total, np.int32)
    labels = np.full(total, -1, np.int32)
    weights = np.zeros(total, np.float64)
    # Where each segment starts in the output: its feature's start plus the segments before it.
    feature_start = np.cumsum(input_len) - input_len
    seg_end_in_feature = np.cumsum(seg_len) - np.repeat(np.cumsum(real_len) - real_len, counts)
    seg_start = np.repeat(feature_start, counts) + seg_end_in_feature - seg_len
    # Every real (unpadded) token: its segment, its offset k in it, its output position.
    k = _ragged_arange(seg_len)
    out = np.repeat(seg_start, seg_len) + k
    turn_start = np.cumsum(turn_lengths, dtype=np.int64) - turn_lengths
    eos_at = len(ids)
    ext = np.append(ids, np.uint16(EOS_ID))
    src_start = np.repeat(turn_start[turn], seg_len)
    src = src_start + k
    eos_first = np.repeat(has_eos, seg_len)
    src -= eos_first
    src[(k == 0) & (eos_first == 1)] = eos_at
    input_ids[out] = ext[src]
    token_types[out] = np.repeat(pos, seg_len)
    # Labels of a target turn: its tokens, then the eos that ends it.
    is_target = np.repeat(target, seg_len)
    label_src = src_start + k
    label_src[k == np.repeat(seg_len - 1, seg_len)] = eos_at
    labels[out[is_target]] = ext[label_src[is_target]]
    weights[out] = np.repeat(seg_weight, seg_len)
    return FlatFeatures(
        input_len=input_len.astype(np.int32),
        input_ids=input_ids,
        token_type_ids=token_types,
        lm_labels=labels,
        weights=weights,
        n_without_feature=n_without,
    )
