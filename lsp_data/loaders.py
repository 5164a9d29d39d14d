"""Training and validation batch loaders (docs/REFERENCE.md §4).

``BucketingDataLoader`` reads a prepro database chunk by chunk. Batches are cut with
numpy from the chunk's flat arrays (no per-token Python work) in a background thread,
``prefetch`` batches ahead, so the accelerator is not kept waiting. Shuffling is
derived from ``(seed, epoch, rank, chunk)``, which makes an epoch's batch order
reproducible and lets a resumed run skip exactly the batches it already trained on.
"""

from __future__ import annotations

import math
import queue
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from lsp_data.db import FeatureChunk, FeatureDB
from lsp_data.features import align_turns
from lsp_data.parsing import TURN_SEPARATOR, MalformedLine, parse_pair_line, split_physical_line
from lsp_data.tokenizer import EOS_ID, text_backend

if TYPE_CHECKING:  # torch is imported where batches are made, so the data layer imports light
    import torch


class DataError(RuntimeError):
    """The data cannot produce batches (empty database, batch larger than the shard, ...)."""


def _background(produce: Callable[[], Iterator[Any]], size: int) -> Iterator[Any]:
    """Run ``produce()`` in a thread, ``size`` items ahead of the consumer."""
    if size <= 0:
        yield from produce()
        return
    items: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in produce():
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            items.put(err)

    thread = threading.Thread(target=work, name="batch-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def bucket_batches(
    lens: np.ndarray, batch_size: int, bucket_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Indices of full batches: shuffle, sort each bucket by length (longest first), cut, shuffle.

    Incomplete batches are dropped. With ``rng`` None nothing is shuffled.
    """
    ids = np.arange(len(lens)) if rng is None else rng.permutation(len(lens))
    batches: list[np.ndarray] = []
    for start in range(0, len(ids), bucket_size):
        bucket = ids[start : start + bucket_size]
        bucket = bucket[np.argsort(-lens[bucket], kind="stable")]
        for b in range(0, len(bucket) - batch_size + 1, batch_size):
            batches.append(bucket[b : b + batch_size])
    if rng is not None and batches:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def token_budget_batches(
    lens: np.ndarray,
    max_tokens: int,
    bucket_size: int,
    rng: np.random.Generator | None,
    multiple: int = 1,
) -> list[np.ndarray]:
    """Indices of batches of at most ``max_tokens`` padded tokens: shuffle, sort each bucket
    by length (longest first), cut greedily, shuffle the batches.

    A batch's cost is its row count times its longest row rounded up to ``multiple`` (what
    ``pad_batch`` makes of it). Every example is used: a bucket's last batch may be short,
    and an example longer than the budget forms a batch alone. Sorting within buckets keeps
    padding small; the random cut into buckets keeps the batches' composition random.
    """
    ids = np.arange(len(lens)) if rng is None else rng.permutation(len(lens))
    batches: list[np.ndarray] = []
    for start in range(0, len(ids), bucket_size):
        bucket = ids[start : start + bucket_size]
        bucket = bucket[np.argsort(-lens[bucket], kind="stable")]
        # Longest first, so a batch's width is that of its first row.
        widths = -(-lens[bucket] // multiple) * multiple
        first = 0
        while first < len(bucket):
            rows = max(1, max_tokens // int(widths[first]))
            batches.append(bucket[first : first + rows])
            first += rows
    if rng is not None and batches:
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
    return batches


def pad_batch(
    chunk: FeatureChunk,
    starts: np.ndarray,
    lens: np.ndarray,
    with_weights: bool = False,
    multiple: int = 1,
) -> tuple[torch.Tensor, ...]:
    """(input_ids, position_ids, token_type_ids, labels[, weights]) padded with 0/0/0/-1[/0].

    Row i is the feature whose tokens are ``starts[i]:starts[i]+lens[i]`` in the chunk's
    flat arrays. The width is the longest row rounded up to ``multiple``, so that the
    shapes a compiled model sees repeat.
    """
    import torch

    lens = lens.astype(np.int64)
    width = round_up(int(lens.max()), multiple)
    pos = np.arange(width, dtype=np.int64)
    mask = pos[None, :] < lens[:, None]
    gather = np.where(mask, starts[:, None] + pos[None, :], 0)
    out = [
        np.where(mask, chunk.input_ids[gather], 0),
        np.where(mask, pos[None, :], 0),
        np.where(mask, chunk.token_type_ids[gather], 0),
        np.where(mask, chunk.lm_labels[gather], -1),
    ]
    tensors = [torch.from_numpy(a.astype(np.int64, copy=False)) for a in out]
    if with_weights:
        tensors.append(
            torch.from_numpy(np.where(mask, chunk.weights[gather], 0.0).astype(np.float32))
        )
    return tuple(tensors)


class BucketingDataLoader:
    """Batches from a prepro database, one epoch per iteration.

    Features longer than ``max_seq_len`` are dropped (and counted in ``n_dropped_long``).
    Batches are ``(input_ids, position_ids, token_type_ids, labels)`` of int64 tensors,
    plus float ``weights`` when ``with_weights``.

    Batches hold ``batch_size`` features each (incomplete ones dropped, as the published
    loader), or, with ``max_tokens``, as many features as fit in that many padded tokens
    (``token_budget_batches``; none dropped). ``pad_multiple`` rounds each batch's width up.
    """

    def __init__(
        self,
        db_name: str,
        batch_size: int,
        max_seq_len: int,
        bucket: int = 100,
        shuffle: bool = True,
        *,
        seed: int | None = None,
        prefetch: int = 8,
        pin_memory: bool = False,
        with_weights: bool = False,
        rank: int = 0,
        world_size: int = 1,
        max_tokens: int = 0,
        pad_multiple: int = 1,
    ):
        if batch_size < 1:
            raise DataError(f"batch size must be positive, got {batch_size}")
        if max_tokens and max_tokens < round_up(max_seq_len, pad_multiple):
            raise DataError(
                f"a token budget of {max_tokens} cannot hold one feature of "
                f"{round_up(max_seq_len, pad_multiple)} tokens"
            )
        self.db = FeatureDB(db_name)
        if not self.db.keys:
            raise DataError(f"{db_name}: the database holds no features")
        self.batch_size = batch_size
        self.max_len = max_seq_len
        self.bucket_size = bucket * batch_size
        self.shuffle = shuffle
        self.seed = random.getrandbits(63) if seed is None else seed
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self.with_weights = with_weights
        self.rank, self.world_size = rank, world_size
        self.max_tokens = max_tokens
        self.pad_multiple = pad_multiple
        self.epoch = 0
        self.n_dropped_long = 0
        # Tokens in the batches taken so far: real (the features' lengths) and padded.
        self.n_tokens_real = 0
        self.n_tokens_padded = 0

    @property
    def padding_share(self) -> float:
        """Share of the batches' tokens that are padding, over the batches taken so far."""
        return 1.0 - self.n_tokens_real / self.n_tokens_padded if self.n_tokens_padded else 0.0

    def shard(self) -> list[tuple[str, int, int]]:
        """This rank's share as (chunk key, first feature, feature stride).

        With at least as many chunks as ranks each rank reads whole chunks
        (``keys[rank::world_size]``); otherwise every rank reads every chunk and takes
        every ``world_size``-th feature, so no rank is left without data.
        """
        keys = self.db.keys
        if len(keys) >= self.world_size:
            return [(k, 0, 1) for k in keys[self.rank :: self.world_size]]
        return [(k, self.rank, self.world_size) for k in keys]

    def _rng(self, *parts: int) -> np.random.Generator | None:
        return np.random.default_rng([self.seed, *parts]) if self.shuffle else None

    def _epoch_plan(self, epoch: int) -> list[tuple[int, str, int, int]]:
        plan = [(i, *s) for i, s in enumerate(self.shard())]
        rng = self._rng(epoch, self.rank)
        if rng is not None:
            plan = [plan[i] for i in rng.permutation(len(plan))]
        return plan

    def _chunk_batches(
        self, epoch: int, index: int, key: str, first: int, stride: int, lens_only: bool
    ) -> tuple[FeatureChunk | None, np.ndarray, list[np.ndarray]]:
        if lens_only:  # enough to count batches when skipping: decode just input_len
            chunk, lens = None, self.db.read_lengths(key)
        else:
            chunk = self.db.read_chunk(key)
            lens = chunk.input_len
        candidates = np.arange(first, len(lens), stride)
        keep = candidates[lens[candidates] <= self.max_len]
        if not lens_only:
            self.n_dropped_long += len(candidates) - len(keep)
        rng = self._rng(epoch, self.rank, index)
        if self.max_tokens:
            batches = token_budget_batches(
                lens[keep], self.max_tokens, self.bucket_size, rng, self.pad_multiple
            )
        else:
            batches = bucket_batches(lens[keep], self.batch_size, self.bucket_size, rng)
        return chunk, keep, batches

    def iter_epoch(self, epoch: int, skip_batches: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """The batches of ``epoch``, leaving out its first ``skip_batches``."""

        def produce() -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
            to_skip = skip_batches
            n_batches = 0
            for index, key, first, stride in self._epoch_plan(epoch):
                if to_skip:
                    _, _, counted = self._chunk_batches(epoch, index, key, first, stride, True)
                    if len(counted) <= to_skip:
                        to_skip -= len(counted)
                        n_batches += len(counted)
                        continue
                chunk, keep, batches = self._chunk_batches(epoch, index, key, first, stride, False)
                assert chunk is not None  # read in full when lens_only is false
                starts, lens = chunk.offsets[keep], chunk.input_len[keep]
                for b in batches[to_skip:]:
                    tensors = pad_batch(
                        chunk, starts[b], lens[b], self.with_weights, self.pad_multiple
                    )
                    if self.pin_memory:
                        tensors = tuple(t.pin_memory() for t in tensors)
                    yield int(lens[b].sum()), tensors
                n_batches += len(batches)
                to_skip = 0
            if n_batches == 0:
                what = (
                    f"no feature of at most {self.max_len} tokens"
                    if self.max_tokens
                    else f"no full batch of {self.batch_size} features of at most "
                    f"{self.max_len} tokens"
                )
                raise DataError(
                    f"{self.db.folder}: {what}"
                    + (f" on rank {self.rank} of {self.world_size}" if self.world_size > 1 else "")
                    + "; use a smaller batch or a larger --max_seq_length"
                )

        # Counted as batches are taken, not as they are made ahead of time.
        for n_real, tensors in _background(produce, self.prefetch):
            self.n_tokens_real += n_real
            self.n_tokens_padded += tensors[0].numel()
            yield tensors

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_epoch(epoch)

    def close(self) -> None:
        self.db.close()


class DistributedBucketingDataLoader(BucketingDataLoader):
    """``BucketingDataLoader`` reading rank ``rank``'s share of the database."""

    def __init__(self, rank: int, num_replica: int, *args: Any, **kwargs: Any):
        if not 0 <= rank < num_replica:
            raise DataError(f"rank {rank} is outside 0..{num_replica - 1}")
        super().__init__(*args, rank=rank, world_size=num_replica, **kwargs)


class DynamicBatchingLoader:
    """Validation batches from a raw pair tsv ``CONTEXT<TAB>RESP1[<TAB>RESP2...]``.

    Each response gives one example: input ``context eos response eos`` with labels -1
    over the context, then the response and eos, then -1 (aligned as in prepro). Context
    turns separated by `` EOS `` are joined with the eos token, as in training. Too long:
    cut the context from its start, else the response's end, else drop the example.
    Batches: ``(input_ids, position_ids, token_type_ids, labels, context_len, response_len)``.

    Malformed lines (``n_skipped_lines``) and dropped examples (``n_dropped``) are counted
    at every pass and reported through ``log`` on the first complete one; with the lines
    read (``n_lines``) and the blank ones (``n_blank_lines``) they account for every line.
    ``len()`` is the number of batches, made by a full pass over the file.
    """

    def __init__(
        self,
        corpus_file: str,
        tokenizer: Any,
        normalize_data: bool,
        batch_size: int,
        max_seq_length: int,
        log: Callable[[str], None] | None = None,
    ):
        self.corpus = corpus_file
        self.normalize = normalize_data
        self.bs = batch_size
        self.max_seq_length = max_seq_length
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.backend = text_backend(tokenizer)
        self.n_lines = 0
        self.n_blank_lines = 0
        self.n_skipped_lines = 0
        self.n_dropped = 0
        self.n_examples = 0  # examples read in the last complete pass, dropped ones included
        self._n_batches: int | None = None
        self._reported = False
        self._reported_dropped = False

    def _examples(self) -> Iterator[tuple[str, str]]:
        # Malformed lines are reported on the first pass only, not at every validation.
        report = not self._reported
        self.n_lines = self.n_blank_lines = self.n_skipped_lines = 0
        with open(self.corpus, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                self.n_lines += 1
                try:
                    # As prepro reads the corpus: a bad byte costs its line (counted), not a
                    # silent U+FFFD, and a lone \r ends a line as in text mode.
                    pairs = [
                        parse_pair_line(line, self.normalize)
                        for line in split_physical_line(raw)
                        if line.strip()
                    ]
                except MalformedLine as err:
                    self.n_skipped_lines += 1
                    if report and self.n_skipped_lines <= 5:
                        self.log(f"{self.corpus}:{lineno}: skipped, {err}")
                    continue
                if not pairs:
                    self.n_blank_lines += 1
                for context, responses in pairs:
                    for response in responses:
                        yield context, response
        if report:
            self._reported = True
            if self.n_skipped_lines:
                self.log(f"{self.corpus}: {self.n_skipped_lines} malformed lines skipped")

    def featurize(
        self, context: str, response: str
    ) -> tuple[list[int], list[int], int, int] | None:
        turns = [
            e.ids
            for e in self.backend.encode_batch_fast(
                context.split(TURN_SEPARATOR) + [response], add_special_tokens=False
            )
        ]
        context_ids = [t for ids in turns[:-1] for t in [*ids, EOS_ID]][:-1]
        response_ids = turns[-1]
        total = len(context_ids) + len(response_ids) + 2
        excess = total - self.max_seq_length
        if excess > 0:
            if len(context_ids) > excess:
                context_ids = context_ids[excess:]
            elif self.max_seq_length - len(context_ids) - 2 < 0:
                return None
            else:
                response_ids = response_ids[: self.max_seq_length - len(context_ids) - 2]
        input_ids, _, labels, _ = align_turns([context_ids, response_ids], [0.0, 1.0])
        # The published loader also feeds the eos that closes the response (label -1).
        return input_ids + [EOS_ID], labels + [-1], len(context_ids), len(response_ids)

    def _batch(
        self, feats: list[tuple[list[int], list[int], int, int]]
    ) -> tuple[torch.Tensor, ...]:
        import torch

        width = max(len(f[0]) for f in feats)
        input_ids = torch.zeros(len(feats), width, dtype=torch.long)
        position_ids = torch.zeros(len(feats), width, dtype=torch.long)
        labels = torch.full((len(feats), width), -1, dtype=torch.long)
        for i, (ids, labs, _, _) in enumerate(feats):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            position_ids[i, : len(ids)] = torch.arange(len(ids))
            labels[i, : len(labs)] = torch.tensor(labs)
        token_type_ids = torch.zeros_like(input_ids)
        context_len = torch.tensor([f[2] for f in feats], dtype=torch.long)
        response_len = torch.tensor([f[3] for f in feats], dtype=torch.long)
        return input_ids, position_ids, token_type_ids, labels, context_len, response_len

    def _features(self) -> Iterator[tuple[list[int], list[int], int, int]]:
        report = not self._reported_dropped
        self.n_dropped = n_examples = 0
        for context, response in self._examples():
            n_examples += 1
            feat = self.featurize(context, response)
            if feat is None:
                self.n_dropped += 1
                continue
            yield feat
        self.n_examples = n_examples
        if report:
            self._reported_dropped = True
            if self.n_dropped:
                self.log(
                    f"{self.corpus}: {self.n_dropped} of {n_examples} examples dropped: too "
                    f"long to fit in max_seq_length={self.max_seq_length} tokens by cutting the "
                    "context or the response alone"
                )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        feats = []
        for feat in self._features():
            feats.append(feat)
            if len(feats) == self.bs:
                yield self._batch(feats)
                feats = []
        if feats:  # the published loader dropped this last partial batch
            yield self._batch(feats)

    def __len__(self) -> int:
        # Counts what __iter__ yields: dropped examples make no batch.
        if self._n_batches is None:
            self._n_batches = math.ceil(sum(1 for _ in self._features()) / self.bs)
        return self._n_batches
