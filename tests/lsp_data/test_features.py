"""Feature construction against hand-worked examples (docs/REFERENCE.md §3)."""

import pytest

from lsp_data.features import conversation_turns, make_feature, make_features

E = 50256  # eos


def fields(f) -> tuple[list, list, list, list]:
    """The feature's four parallel lists, after checking they stay aligned and padded."""
    n = f.input_len
    assert n % 8 == 0
    assert len(f.input_ids) == len(f.token_type_ids) == len(f.lm_labels) == len(f.weights) == n
    return f.input_ids, f.token_type_ids, f.lm_labels, f.weights


def test_context_and_two_targets():
    f = make_feature([[1, 2], [3], [4, 5]], [0.0, 1.0, 1.0])
    assert f.input_ids == [1, 2, E, 3, E, 4, 5, 0]
    assert f.token_type_ids == [0, 0, 1, 1, 2, 2, 2, 0]
    # label at p = token after reading input_ids[:p+1]
    assert f.lm_labels == [-1, -1, 3, E, 4, 5, E, -1]
    assert f.weights == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert f.input_len == 8


def test_fractional_weight_and_zero_weight_tail_trimmed():
    f = make_feature([[1, 2], [3], [4, 5]], [1.0, 0.5, 0.0])
    # the zero-weight last turn contributes only -1 labels, which are trimmed with its inputs
    assert f.input_ids == [1, 2, E, 3, 0, 0, 0, 0]
    assert f.token_type_ids == [0, 0, 1, 1, 0, 0, 0, 0]
    assert f.lm_labels == [-1, -1, 3, E, -1, -1, -1, -1]
    assert f.weights == [0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]


def test_zero_weight_middle_turn_keeps_inputs():
    f = make_feature([[1], [2], [3], [4]], [1.0, 0.0, 1.0, 0.0])
    assert f.input_ids == [1, E, 2, E, 3, 0, 0, 0]
    assert f.lm_labels == [-1, -1, -1, 3, E, -1, -1, -1]
    assert f.token_type_ids == [0, 1, 1, 2, 2, 0, 0, 0]
    # the untrained middle turn carries weight 0 on its (unlabelled) positions
    assert f.weights == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    fields(f)


def test_each_turn_keeps_its_own_weight():
    f = make_feature([[1, 2], [3], [4, 5]], [0.0, 0.5, 2.0])
    assert fields(f) == (
        [1, 2, E, 3, E, 4, 5, 0],
        [0, 0, 1, 1, 2, 2, 2, 0],
        [-1, -1, 3, E, 4, 5, E, -1],
        [0.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 0.0],
    )
    # a zero-weight turn between two targets: its positions stay in, unlabelled
    f = make_feature([[1], [2, 3], [4]], [1.0, 0.0, 0.5])
    assert fields(f) == (
        [1, E, 2, 3, E, 4, 0, 0],
        [0, 1, 1, 1, 2, 2, 0, 0],
        [-1, -1, -1, -1, 4, E, -1, -1],
        [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0],
    )


def test_all_zero_targets_give_no_feature():
    assert make_feature([[1], [2]], [1.0, 0.0]) is None
    assert make_feature([[1]], [1.0]) is None  # a single turn has no target
    assert make_features([[1], [2], [3]], [1.0, 0.0, 0.0], 128) == []


def test_padding_to_multiple_of_eight():
    f = make_feature([[1] * 7, [2]], [0.0, 1.0])
    assert f.input_len == 16  # 7 + eos + 1 = 9 -> 16
    exact = make_feature([[1] * 5, [2]], [0.0, 1.0])
    assert exact.input_len == 8 and exact.input_ids == [1] * 5 + [E, 2, 0]


def test_turn_longer_than_max_len_splits_and_is_skipped():
    feats = make_features([[1], [2], [3, 4, 5, 6, 7], [8], [9]], [1.0] * 5, max_len=4)
    assert [f.input_ids[:3] for f in feats] == [[1, E, 2], [8, E, 9]]
    assert feats[0].lm_labels[:4] == [-1, 2, E, -1]


def test_long_turn_after_single_turn_gives_nothing():
    assert make_features([[1], [2, 3, 4, 5, 6], [7]], [1.0] * 3, max_len=4) == []


def test_sliding_split_overlaps_by_one_turn():
    feats = make_features([[1, 2], [3, 4], [5, 6], [7]], [1.0] * 4, max_len=5)
    assert [f.input_ids for f in feats] == [
        [1, 2, E, 3, 4, 0, 0, 0],
        [3, 4, E, 5, 6, 0, 0, 0],
        [5, 6, E, 7, 0, 0, 0, 0],
    ]
    assert feats[1].lm_labels == [-1, -1, 5, 6, E, -1, -1, -1]


def test_window_of_exactly_max_len_is_not_split():
    # after [1] and [2] the running length is (1+1) + (1+1) = 4 = max_len: not over it, so
    # [3] joins the same feature (which thereby ends up longer than max_len, as published)
    feats = make_features([[1], [2], [3]], [1.0] * 3, max_len=4)
    assert [fields(f)[:3] for f in feats] == [
        ([1, E, 2, E, 3, 0, 0, 0], [0, 1, 1, 2, 2, 0, 0, 0], [-1, 2, E, 3, E, -1, -1, -1])
    ]
    # one more turn: the window (length 6) is over max_len, so it is emitted and restarts
    # from its last turn with length 1+1, and [4] brings it to 4 again
    feats = make_features([[1], [2], [3], [4]], [1.0] * 4, max_len=4)
    assert [f.input_ids for f in feats] == [[1, E, 2, E, 3, 0, 0, 0], [3, E, 4, 0, 0, 0, 0, 0]]


def test_running_length_restarts_at_zero_after_a_long_turn():
    # after the skipped 5-token turn, [1] [2] make exactly max_len again: [3] still joins
    feats = make_features([[9] * 5, [1], [2], [3]], [1.0] * 4, max_len=4)
    assert [f.input_ids for f in feats] == [[1, E, 2, E, 3, 0, 0, 0]]


def test_running_length_after_a_split_counts_the_kept_turn_once():
    # [1,2] [3] -> 3 + 2 = 5 > 4 at [4]: emit, keep [3] (length 2), add [4] -> 4 = max_len,
    # so [5] joins [3] [4]
    feats = make_features([[1, 2], [3], [4], [5]], [1.0] * 4, max_len=4)
    assert [fields(f)[2] for f in feats] == [
        [-1, -1, 3, E, -1, -1, -1, -1],
        [-1, 4, E, 5, E, -1, -1, -1],
    ]
    assert [f.input_ids for f in feats] == [[1, 2, E, 3, 0, 0, 0, 0], [3, E, 4, E, 5, 0, 0, 0]]


def test_weights_follow_their_turns_across_a_split():
    feats = make_features([[1, 2], [3, 4], [5, 6]], [1.0, 0.5, 0.25], max_len=5)
    assert [fields(f)[3] for f in feats] == [
        [0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0],
    ]


def test_split_with_single_collected_turn_emits_none_then_continues():
    feats = make_features([[1, 2], [3]], [1.0, 1.0], max_len=2)
    assert len(feats) == 1 and feats[0].input_ids[:4] == [1, 2, E, 3]


def test_empty_turn_text_is_kept_as_empty_ids():
    # a weight-only turn ("1.0") has no text: it still ends with its eos label
    f = make_feature([[1], [], [2]], [0.0, 1.0, 1.0])
    assert f.input_ids == [1, E, E, 2, 0, 0, 0, 0]
    assert f.token_type_ids == [0, 1, 2, 2, 0, 0, 0, 0]
    assert f.lm_labels == [-1, E, 2, E, -1, -1, -1, -1]


def test_reverse_and_two_turn():
    turns, ws = conversation_turns([[1], [2], [3]], [0.0, 1.0, 0.5], reverse=True, two_turn=False)
    assert turns == [[3], [2], [1]] and ws == [0.5, 1.0, 0.0]
    turns, ws = conversation_turns([[1], [2], [3]], [0.0, 1.0, 0.5], reverse=False, two_turn=True)
    assert turns == [[1], [2]] and ws == [0.0, 1.0]
    turns, ws = conversation_turns([[1], [2], [3]], [0.0, 1.0, 0.5], reverse=True, two_turn=True)
    assert turns == [[3], [2]] and ws == [0.5, 1.0]


def _flat_reference(turns, weights, conversations, max_len, reverse, two_turn):
    """make_features per conversation, concatenated as FeatureChunk does."""
    feats, n_without = [], 0
    for first, count in conversations:
        ts, ws = conversation_turns(
            turns[first : first + count], weights[first : first + count],
            reverse=reverse, two_turn=two_turn,
        )  # fmt: skip
        made = make_features(ts, ws, max_len) if len(ws) >= 2 else []
        n_without += not made
        feats.extend(made)
    return feats, n_without


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("two_turn", [False, True])
def test_flat_features_equal_make_features(reverse, two_turn):
    import random

    import numpy as np

    from lsp_data.features import make_features_flat

    rng = random.Random(5)
    turns, weights, conversations = [], [], []
    for _ in range(400):
        count = rng.choice([0, 1, 2, 3, 5, 9, 20])
        conversations.append((len(turns), count))
        for _ in range(count):
            n = rng.choice([0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 40])
            turns.append([rng.randrange(50257) for _ in range(n)])
            weights.append(rng.choice([0.0, -0.0, 1.0, 1.0, 0.5, 2.0]))
    for max_len in (1, 8, 16, 30, 128):
        expected, n_without = _flat_reference(
            turns, weights, conversations, max_len, reverse, two_turn
        )
        ids = np.asarray([i for t in turns for i in t], np.uint16)
        lengths = np.asarray([len(t) for t in turns], np.int64)
        got = make_features_flat(
            ids, lengths, weights, conversations, max_len, reverse=reverse, two_turn=two_turn
        )
        assert got.n_without_feature == n_without
        assert got.input_len.tolist() == [f.input_len for f in expected]
        for name in ("input_ids", "token_type_ids", "lm_labels", "weights"):
            flat = [v for f in expected for v in getattr(f, name)]
            assert getattr(got, name).tolist() == flat, name
        assert got.input_ids.dtype == np.uint16 and got.lm_labels.dtype == np.int32
        assert np.signbit(got.weights).sum() == 0  # -0.0 weights are stored as 0.0
