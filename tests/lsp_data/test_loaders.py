"""data_loader.py: batch layout, bucketing, dropping, sharding, resume skipping, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_loader import (
    BucketingDataLoader,
    DataError,
    DistributedBucketingDataLoader,
    DynamicBatchingLoader,
)
from lsp_data.db import FeatureDB
from lsp_data.loaders import bucket_batches, token_budget_batches
from lsp_data.prepro import run_prepro
from lsp_data.tokenizer import load_tokenizer
from tests.conftest import write_corpus

E = 50256


def all_features(db: Path) -> dict[tuple, dict]:
    with FeatureDB(db) as d:
        return {tuple(f["input_ids"]): f for f in d.iter_features()}


def test_batches_match_stored_features(small_db):
    feats = all_features(small_db)
    loader = BucketingDataLoader(str(small_db), 4, 64, bucket=2, seed=0)
    n = 0
    for input_ids, position_ids, token_type_ids, labels in loader:
        assert input_ids.dtype == torch.long and input_ids.shape[0] == 4
        assert input_ids.shape == position_ids.shape == token_type_ids.shape == labels.shape
        for row in range(4):
            length = int((position_ids[row] > 0).sum()) + 1
            f = feats[tuple(input_ids[row, :length].tolist())]
            assert labels[row, :length].tolist() == f["lm_labels"]
            assert token_type_ids[row, :length].tolist() == f["token_type_ids"]
            # padding values 0 / 0 / 0 / -1
            assert not input_ids[row, length:].any() and not position_ids[row, length:].any()
            assert not token_type_ids[row, length:].any()
            assert (labels[row, length:] == -1).all()
        lens = (position_ids > 0).sum(1)
        assert lens.tolist() == sorted(lens.tolist(), reverse=True)  # bucket sorted longest first
        n += 1
    assert n > 0


def test_bucket_batches_order_and_incomplete_dropped():
    lens = np.array([5, 9, 1, 7, 3, 8, 2])
    batches = bucket_batches(lens, batch_size=2, bucket_size=4, rng=None)
    # bucket [5,9,1,7] -> sorted 9,7,5,1 -> [1,3],[0,2]; bucket [3,8,2] -> 8,3,2 -> [5,4] (+[6] dropped)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 2], [5, 4]]
    shuffled = bucket_batches(lens, 2, 4, np.random.default_rng(0))
    assert len(shuffled) == 3 and all(len(b) == 2 for b in shuffled)
    for b in shuffled:  # each batch still sorted longest first
        assert lens[b[0]] >= lens[b[1]]


def test_overlong_features_dropped(small_db):
    loader = BucketingDataLoader(str(small_db), 1, 16, seed=0)
    seen = [b[0].shape[1] for b in loader]
    assert seen and max(seen) <= 16
    with FeatureDB(small_db) as d:
        n_long = sum(1 for f in d.iter_features() if f["input_len"] > 16)
    assert loader.n_dropped_long == n_long > 0


def test_epoch_is_reproducible_and_skip_resumes_exactly(small_db):
    loader = BucketingDataLoader(str(small_db), 3, 64, bucket=4, seed=7)
    full = [b[0] for b in loader.iter_epoch(2)]
    again = [b[0] for b in loader.iter_epoch(2)]
    other = [b[0] for b in loader.iter_epoch(3)]
    assert all(torch.equal(a, b) for a, b in zip(full, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(full, other))
    for skip in (1, 5, len(full) - 1):
        rest = [b[0] for b in loader.iter_epoch(2, skip_batches=skip)]
        assert len(rest) == len(full) - skip
        assert all(torch.equal(a, b) for a, b in zip(rest, full[skip:]))


def test_no_shuffle_is_in_order(small_db):
    # Expected order, from the stored features: chunks chunk_0, chunk_1, ...; in each, the
    # features that fit, in stored order, taken bucket by bucket (bucket * batch_size
    # features), each bucket sorted longest first (ties keep stored order), cut into full
    # batches.
    batch_size, bucket, max_len = 2, 3, 48
    expected = []
    with FeatureDB(small_db) as d:
        assert len(d.keys) > 1
        for key in d.keys:
            chunk = d.read_chunk(key)
            fitting = [chunk.feature_dict(i)["input_ids"] for i in range(len(chunk))]
            fitting = [ids for ids in fitting if len(ids) <= max_len]
            for start in range(0, len(fitting), bucket * batch_size):
                group = sorted(fitting[start : start + bucket * batch_size], key=lambda x: -len(x))
                for b in range(0, len(group) - batch_size + 1, batch_size):
                    expected.append(group[b : b + batch_size])
    loader = BucketingDataLoader(str(small_db), batch_size, max_len, bucket, shuffle=False)
    for _ in range(2):  # every epoch alike
        got = []
        for input_ids, position_ids, *_ in loader:
            lengths = (position_ids > 0).sum(1) + 1
            got.append([row[:n].tolist() for row, n in zip(input_ids, lengths)])
        assert got == expected


@pytest.mark.parametrize("world", [2, 3])
def test_distributed_shards_cover_every_chunk_once(small_db, world):
    with FeatureDB(small_db) as d:
        keys = d.keys
    shards = [
        DistributedBucketingDataLoader(r, world, str(small_db), 2, 64).shard() for r in range(world)
    ]
    assert sorted(k for s in shards for k, _, _ in s) == sorted(keys)
    assert all(stride == 1 for s in shards for _, _, stride in s)


def test_distributed_with_fewer_chunks_than_ranks(tmp_path):
    write_corpus(tmp_path / "t.tsv", 40, seed=1)
    folder, _ = run_prepro(str(tmp_path / "t.tsv"), progress=False, log=lambda m: None)
    world = 4
    seen = []
    for rank in range(world):
        loader = DistributedBucketingDataLoader(rank, world, str(folder), 1, 128, seed=0)
        rows = [tuple(b[0][0].tolist()) for b in loader]
        assert rows, f"rank {rank} got no data"
        seen.extend(rows)
    # every feature exactly once across ranks (batch size 1: no drop)
    with FeatureDB(folder) as d:
        stored = sorted(tuple(f["input_ids"]) for f in d.iter_features())
    assert sorted(seen) == stored


def test_empty_epoch_is_an_error_not_a_hang(tmp_path):
    write_corpus(tmp_path / "t.tsv", 3, seed=1)
    folder, _ = run_prepro(str(tmp_path / "t.tsv"), progress=False, log=lambda m: None)
    loader = BucketingDataLoader(str(folder), 1000, 128)
    with pytest.raises(DataError, match="no full batch"):
        list(loader)


def test_weights_batch(small_db):
    loader = BucketingDataLoader(str(small_db), 2, 64, seed=0, with_weights=True)
    batch = next(iter(loader))
    assert len(batch) == 5 and batch[4].dtype == torch.float32
    assert ((batch[4] > 0) <= (batch[3] != -1)).all()


def test_dynamic_batching_loader(tmp_path, capsys):
    tok = load_tokenizer()
    path = tmp_path / "valid.tsv"
    path.write_text("hi EOS there\thello\tyo   man\nno tab line\n" + "a b\tc d\n", encoding="utf-8")
    loader = DynamicBatchingLoader(str(path), tok, True, 2, 128)
    batches = list(loader)
    assert "valid.tsv:2: skipped" in capsys.readouterr().err
    assert len(batches) == 2 == len(loader)  # 3 examples, last partial batch kept
    input_ids, position_ids, token_type_ids, labels, ctx_len, resp_len = batches[0]
    ctx = tok.encode("hi") + [E] + tok.encode("there")
    resp = tok.encode("hello")
    assert input_ids[0, : len(ctx) + len(resp) + 2].tolist() == ctx + [E] + resp + [E]
    assert labels[0, : len(ctx) + len(resp) + 2].tolist() == [-1] * len(ctx) + resp + [E, -1]
    assert ctx_len.tolist() == [len(ctx)] * 2 and resp_len[1] == len(tok.encode("yo man"))
    assert not token_type_ids.any()
    assert len(list(loader)) == 2
    assert "skipped" not in capsys.readouterr().err  # reported once, not at every validation


def test_dynamic_batching_skips_and_names_invalid_utf8(tmp_path, capsys):
    path = tmp_path / "valid.tsv"
    path.write_bytes(b"good one\treply\r\nbad \xff byte\treply\nalso good\tfine\n")
    loader = DynamicBatchingLoader(str(path), load_tokenizer(), True, 4, 128)
    (batch,) = list(loader)
    assert batch[0].shape[0] == 2 and loader.n_skipped_lines == 1
    err = capsys.readouterr().err
    assert "valid.tsv:2: skipped, invalid UTF-8" in err and "1 malformed lines skipped" in err


def test_dynamic_batching_truncation(tmp_path):
    tok = load_tokenizer()
    path = tmp_path / "v.tsv"
    long_ctx = " ".join(["word"] * 20)
    path.write_text(f"{long_ctx}\tshort reply\nhi\t{long_ctx}\n", encoding="utf-8")
    loader = DynamicBatchingLoader(str(path), tok, True, 1, 10)
    (b1, b2) = list(loader)
    assert (
        b1[0].shape[1] == 10 and b1[5].item() == 2 and b1[4].item() == 6
    )  # context cut from start
    assert b2[0].shape[1] == 10 and b2[4].item() == 1 and b2[5].item() == 7  # response cut at end


def test_dynamic_batching_counts_and_reports_dropped_examples(tmp_path):
    # With max_seq_length 10, a context of 20 tokens and a response of 20 cannot be made to
    # fit by cutting one of them: the example is dropped (docs/REFERENCE.md §4); the others are cut.
    tok = load_tokenizer()
    words = " ".join(["word"] * 20)
    path = tmp_path / "v.tsv"
    path.write_text(
        f"{words}\t{words}\thi\nhi\tthere\n{words}\t{words}\nno tab\n", encoding="utf-8"
    )
    messages = []
    loader = DynamicBatchingLoader(str(path), tok, True, 1, 10, log=messages.append)
    assert len(loader) == 2  # 4 examples, 2 of them dropped: one batch each for the other 2
    assert (loader.n_examples, loader.n_dropped, loader.n_skipped_lines) == (4, 2, 1)
    assert messages[0].startswith(f"{path}:4: skipped, ")
    assert messages[1:] == [
        f"{path}: 1 malformed lines skipped",
        f"{path}: 2 of 4 examples dropped: too long to fit in max_seq_length=10 tokens by "
        "cutting the context or the response alone",
    ]
    for _ in range(2):  # counted again at every pass, reported once
        batches = list(loader)
        assert len(batches) == 2 and loader.n_dropped == 2
        assert [b[0].shape[1] for b in batches] == [10, 4]  # context cut; hi<eos>there<eos>
    assert len(messages) == 3
    # everything fits: nothing dropped, nothing reported
    messages.clear()
    loader = DynamicBatchingLoader(str(path), tok, True, 1, 64, log=messages.append)
    assert len(list(loader)) == 4 == len(loader) and loader.n_dropped == 0
    assert not any("dropped" in m for m in messages)


def test_corrupt_chunk_is_a_clear_error(small_db):
    import sqlite3

    from lsp_data.db import DatabaseError

    con = sqlite3.connect(small_db / "db.sqlite")
    con.execute("UPDATE features SET value = ? WHERE key = 'chunk_0'", (b"not an npz",))
    con.commit()
    con.close()
    loader = BucketingDataLoader(str(small_db), 2, 64, shuffle=False)
    with pytest.raises(DatabaseError, match="chunk 'chunk_0' is corrupt"):
        list(loader)
    with pytest.raises(DatabaseError, match="corrupt"):
        list(loader.iter_epoch(0, skip_batches=1))


def test_token_budget_batches_use_every_example_within_the_budget():
    rng = np.random.default_rng(3)
    lens = rng.integers(1, 65, size=500)
    for shuffle in (None, np.random.default_rng(0)):
        batches = token_budget_batches(lens, 256, 100, shuffle, multiple=8)
        used = np.concatenate(batches)
        assert sorted(used.tolist()) == list(range(500))  # every example exactly once
        for b in batches:
            width = -(-int(lens[b].max()) // 8) * 8
            assert len(b) * width <= 256
            assert list(lens[b]) == sorted(lens[b], reverse=True)  # longest first
    # an example longer than the budget forms a batch alone; short ones fill the budget
    assert [len(b) for b in token_budget_batches(np.array([300, 10, 10]), 256, 10, None)] == [1, 2]
    assert [len(b) for b in token_budget_batches(np.array([64] * 9), 256, 100, None)] == [4, 4, 1]
    # the same rng gives the same batches (resume relies on it)
    a = token_budget_batches(lens, 256, 100, np.random.default_rng(5), 8)
    b = token_budget_batches(lens, 256, 100, np.random.default_rng(5), 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def test_token_budget_loader_pads_little_skips_exactly_and_counts_padding(small_db):
    every = {
        tuple(f["input_ids"]) for f in all_features(small_db).values() if len(f["input_ids"]) <= 64
    }
    loader = BucketingDataLoader(
        str(small_db), 4, 64, seed=0, prefetch=2, max_tokens=128, pad_multiple=16
    )
    batches = list(loader.iter_epoch(0))
    seen = set()
    for ids, pos, _, _ in batches:
        assert ids.shape[1] % 16 == 0 and ids.numel() <= 128
        for row, p in zip(ids, pos):
            n = int((p > 0).sum()) + 1
            seen.add(tuple(row[:n].tolist()))
    assert seen == every  # none dropped, unlike the fixed batches' incomplete ones
    real = sum(int((b[1] > 0).sum()) + b[1].shape[0] for b in batches)
    padded = sum(b[0].numel() for b in batches)
    assert loader.n_tokens_padded == padded
    assert loader.padding_share == pytest.approx(1 - loader.n_tokens_real / padded)
    assert loader.n_tokens_real >= real  # stored features' own padding counts as real
    # resume: skipping k batches gives the tail of the epoch
    tail = list(loader.iter_epoch(0, skip_batches=5))
    assert len(tail) == len(batches) - 5
    assert all(torch.equal(x[0], y[0]) for x, y in zip(tail, batches[5:]))


def test_token_budget_must_hold_one_feature(small_db):
    with pytest.raises(DataError, match="cannot hold one feature of 64 tokens"):
        BucketingDataLoader(str(small_db), 4, 64, max_tokens=63)
