"""Streaming tsv -> feature database conversion (docs/REFERENCE.md §3), parallel over worker processes.

The corpus is read as bytes in batches of lines; each batch is parsed, tokenized and
turned into features in a worker process, in bulk: its texts are tokenized in one call
(``BatchEncoder.encode_texts``: tiktoken's BPE over GPT-2's vocabulary, else a word cache
over the Rust tokenizer), and its features placed as numpy arrays from turn windows found
on token counts alone (``make_features_flat``). The main process
assigns feature ids in file order and writes chunks as they fill, keeping only a bounded
window of batches in flight, so memory stays flat for any corpus size.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import multiprocessing
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsp_data.db import FeatureChunk, FeatureDBWriter
from lsp_data.features import Feature, conversation_turns, make_features, make_features_flat
from lsp_data.parsing import (
    SKIP_REASONS,
    MalformedLine,
    parse_training_line,
    split_physical_line,
)
from lsp_data.tokenizer import (
    BatchEncoder,
    gpt2_byte_ranks,
    load_fast_bpe,
    load_tokenizer,
    text_backend,
)

BATCH_BYTES = 1 << 19  # a batch: whole lines read as one block of about this size
SHOWN_PER_REASON = 5  # skipped lines printed per reason; all are counted
EXCERPT_CHARS = 80
# More malformed lines than this share of all lines fails the run (nothing is written): such
# a file is not a training tsv (a binary, the wrong file, the wrong format), and a database
# of its few accidental features would only fail later, in the trainer.
MAX_MALFORMED_SHARE = 0.5


class PreproError(RuntimeError):
    """A user-facing failure: bad arguments, a malformed line under --strict, ..."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the run stops, its workers end, nothing is written."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` for the duration of a run (main thread only: Python
    delivers signals there), so that the cleanup that Ctrl-C gets runs for it too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def db_folder_for(corpus: str, max_seq_len: int, reverse: bool, two_turn: bool) -> Path:
    """``data/train.tsv`` -> ``data/train.128len[.reverse][.2turn].db`` (the published naming)."""
    attrs = [f"{max_seq_len}len"]
    if reverse:
        attrs.append("reverse")
    if two_turn:
        attrs.append("2turn")
    return Path(f"{corpus[:-4]}.{'.'.join(attrs)}.db")


@dataclass
class BatchResult:
    chunk: FeatureChunk  # conv_id still 0: ids are assigned in file order by the caller
    n_line: int = 0
    n_line_without_feature: int = 0
    skipped: list[tuple[int, str, str, str]] = field(
        default_factory=list
    )  # line, reason, why, text


_worker_tokenizer: Any = None


def _rust_backend(tokenizer_dir: str | None) -> Any:
    return text_backend(load_tokenizer(tokenizer_dir))


def _init_worker(tokenizer_dir: str | None) -> None:
    # Each worker makes its own encoders (from gpt2_byte_ranks, made before forking). When the
    # parent made them before forking (the Rust tokenizer and tiktoken objects), on a loaded
    # machine prepro outlived a SIGTERM by over 10 s in 2 runs of 3 (cause not pinned down;
    # test_sigterm_stops_prepro_and_its_workers_leaving_nothing).
    global _worker_tokenizer
    _worker_tokenizer = BatchEncoder(
        functools.partial(_rust_backend, tokenizer_dir), load_fast_bpe(tokenizer_dir)
    )


def _init_pool_worker(tokenizer_dir: str | None, parent_pid: int) -> None:
    # The parent owns interruption: Ctrl-C reaches the whole process group and SIGTERM the
    # parent, which then ends the workers itself. A forked worker would otherwise inherit
    # the parent's SIGTERM handler and print a traceback of its own on Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    _init_worker(tokenizer_dir)


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when its parent dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def _excerpt(text: str) -> str:
    text = text.replace("\t", "\\t")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a batch.

    A batch allocates hundreds of thousands of small lists (token ids, features) with no
    reference cycles among them: refcounting frees them all, while the collector's
    repeated scans of the growing heap took half of prepro's time (measured with
    bench/prepro_bench.py).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def process_batch(
    first_lineno: int, block: bytes, max_seq_len: int, reverse: bool, two_turn: bool
) -> BatchResult:
    """Parse, tokenize and featurize a block of whole lines (``\\n``-terminated, but for
    a file's last line), the first of them line number ``first_lineno``."""
    with _gc_paused():
        return _process_batch(first_lineno, block, max_seq_len, reverse, two_turn)


def _process_batch(
    first_lineno: int, block: bytes, max_seq_len: int, reverse: bool, two_turn: bool
) -> BatchResult:
    result = BatchResult(chunk=FeatureChunk.from_features([], []))
    conversations: list[tuple[int, int]] = []  # first text, number of texts
    weights: list[float] = []  # one per text
    texts: list[str] = []
    for lineno, line in _decoded_lines(first_lineno, block, result):
        result.n_line += 1
        try:
            turn_weights, turn_texts = parse_training_line(line)
        except MalformedLine as err:
            result.skipped.append((lineno, err.reason, str(err), _excerpt(line)))
            continue
        conversations.append((len(texts), len(turn_texts)))
        texts.extend(turn_texts)
        weights.extend(turn_weights)

    ids, lengths = _worker_tokenizer.encode_texts(texts)
    flat = make_features_flat(
        ids, lengths, weights, conversations, max_seq_len, reverse=reverse, two_turn=two_turn
    )
    result.n_line_without_feature = flat.n_without_feature
    result.chunk = FeatureChunk(
        conv_id=np.zeros(len(flat.input_len), dtype=np.int64),
        input_len=flat.input_len,
        input_ids=flat.input_ids,
        token_type_ids=flat.token_type_ids,
        lm_labels=flat.lm_labels,
        weights=flat.weights,
    )
    return result


def _decoded_lines(first_lineno: int, block: bytes, result: BatchResult) -> list[tuple[int, str]]:
    """(line number, text) of every logical line of ``block``, as ``split_physical_line``
    reads each physical line; lines that are not UTF-8 are counted and noted in ``result``.

    A block that decodes whole and holds no ``\\r`` (nearly all) is decoded in one call: a
    newline byte never occurs inside a UTF-8 sequence, so its lines are the same."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\r" not in text:
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()  # after the last line's newline
        return list(enumerate(lines, start=first_lineno))
    decoded: list[tuple[int, str]] = []
    raw_lines = block.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()
    for lineno, raw in enumerate(raw_lines, start=first_lineno):
        try:
            decoded.extend((lineno, line) for line in split_physical_line(raw))
        except MalformedLine as err:
            result.n_line += 1
            result.skipped.append((lineno, err.reason, str(err), _excerpt(repr(raw)[2:-1])))
    return decoded


def published_path_features(
    corpus: str | Path,
    encode: Any,
    *,
    max_seq_len: int = 128,
    reverse: bool = False,
    two_turn: bool = False,
) -> Iterator[Feature]:
    """Features of ``corpus`` made as the published prepro made them: one line at a time,
    ``encode(text)`` once per turn, in one process, with the same parsing as ``run_prepro``.

    The reference that ``run_prepro``'s batched, parallel path must match feature by feature
    (tests), and the baseline of ``bench/prepro_bench.py`` (given ``PublishedBPE.encode``).
    """
    with open(corpus, "rb") as f:
        for raw in f:
            try:
                logical_lines = split_physical_line(raw)
            except MalformedLine:
                continue
            for line in logical_lines:
                try:
                    weights, texts = parse_training_line(line)
                except MalformedLine:
                    continue
                turns, ws = conversation_turns(
                    [encode(text) for text in texts], weights, reverse=reverse, two_turn=two_turn
                )
                if len(ws) >= 2:
                    yield from make_features(turns, ws, max_seq_len)


def iter_line_blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Yield (number of the block's first line, whole lines as bytes), reading ``path`` in
    blocks of about ``block_bytes``; a longer line makes a block of its own."""
    with open(path, "rb") as f:
        lineno = 1
        pending: list[bytes] = []  # the start of a line no block has ended yet
        while data := f.read(block_bytes):
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                pending.append(data)
                continue
            block = b"".join([*pending, data[:cut]]) if pending else data[:cut]
            pending = [data[cut:]] if cut < len(data) else []
            yield lineno, block
            lineno += block.count(b"\n")
        if pending:
            yield lineno, b"".join(pending)


class _InProcess:
    """The executor interface, run inline (``--workers 1`` and tiny corpora)."""

    def __init__(self, tokenizer_dir: str | None):
        _init_worker(tokenizer_dir)

    def submit(self, fn: Any, *args: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, cancel_futures: bool = False) -> None:
        pass

    def terminate(self) -> None:
        pass


class _Pool(ProcessPoolExecutor):
    GRACE_S = 5.0  # how long a batch may still run once the run is given up

    def terminate(self) -> None:
        """End the pool after an error or an interruption: queued batches are cancelled,
        running ones (a fraction of a second each) finish, then the workers exit; a worker
        still busy after ``GRACE_S`` is killed.

        Killing the workers at once left, now and then, the pool's result reader waiting
        forever for the rest of a result that a worker was sending when killed, and prepro
        outlived SIGTERM (test_sigterm_stops_prepro_and_its_workers_leaving_nothing)."""
        waiter = threading.Thread(
            target=self.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True
        )
        waiter.start()
        waiter.join(self.GRACE_S)
        if waiter.is_alive():
            # ProcessPoolExecutor has no public way to do this before Python 3.14
            # (terminate_workers); _processes has held the live workers by pid since 3.2.
            for process in list((getattr(self, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    process.terminate()
            waiter.join(self.GRACE_S)


def _executor(workers: int, tokenizer_dir: str | None) -> Any:
    if workers <= 1:
        return _InProcess(tokenizer_dir)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one process per core already
    gpt2_byte_ranks(tokenizer_dir)  # plain Python data, made once: forked workers inherit it
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return _Pool(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=_init_pool_worker,
        initargs=(tokenizer_dir, os.getpid()),
    )


def _refuse_unusable_corpus(
    corpus: str, n_line: int, counts: Counter[str], n_without: int, n_example: int
) -> None:
    """Fail a corpus that is empty, mostly malformed, or gives no feature at all."""
    if n_line == 0:
        raise PreproError(f"{corpus}: the file is empty; nothing written")
    skipped = sum(counts.values())
    if skipped > MAX_MALFORMED_SHARE * n_line:
        reasons = ", ".join(f"{r}: {c}" for r, c in counts.most_common())
        raise PreproError(
            f"{corpus}: {skipped} of {n_line} lines are malformed ({reasons}), more than "
            f"{MAX_MALFORMED_SHARE:.0%}: not a training tsv (CONTEXT<TAB>RESPONSE, UTF-8)? "
            "nothing written"
        )
    if n_example == 0:
        raise PreproError(
            f"{corpus}: no features from {n_line} lines ({skipped} malformed, {n_without} "
            "with fewer than two turns or no weighted target turn); nothing written"
        )


def run_prepro(
    corpus: str,
    *,
    max_seq_len: int = 128,
    chunk_size: int = 65536,
    reverse: bool = False,
    two_turn: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    workers: int = 1,
    tokenizer_dir: str | None = None,
    progress: bool = True,
    log=print,
) -> tuple[Path, dict[str, Any]]:
    """Convert ``corpus`` into a feature database; returns (folder, meta).

    Fails with ``PreproError``, writing nothing, when the corpus gives no feature or more
    than ``MAX_MALFORMED_SHARE`` of its lines are malformed. SIGTERM is handled as Ctrl-C
    (``Terminated``, a KeyboardInterrupt): workers ended, nothing written.
    """
    with _sigterm_as_interrupt():
        return _run_prepro(
            corpus,
            max_seq_len=max_seq_len,
            chunk_size=chunk_size,
            reverse=reverse,
            two_turn=two_turn,
            overwrite=overwrite,
            strict=strict,
            workers=workers,
            tokenizer_dir=tokenizer_dir,
            progress=progress,
            log=log,
        )


def _run_prepro(
    corpus: str,
    *,
    max_seq_len: int,
    chunk_size: int,
    reverse: bool,
    two_turn: bool,
    overwrite: bool,
    strict: bool,
    workers: int,
    tokenizer_dir: str | None,
    progress: bool,
    log: Any,
) -> tuple[Path, dict[str, Any]]:
    corpus_path = Path(corpus)
    if corpus_path.is_dir():
        raise PreproError(f"{corpus}: is a folder; --corpus takes a training tsv file")
    if not corpus_path.is_file():
        raise PreproError(f"{corpus}: no such file")
    if max_seq_len < 1 or chunk_size < 1:
        raise PreproError("--max_seq_len and --chunk_size must be positive")
    out = db_folder_for(corpus, max_seq_len, reverse, two_turn)
    tokenizer = load_tokenizer(tokenizer_dir)
    writer = FeatureDBWriter(out, chunk_size, overwrite=overwrite)
    for stale in writer.stale_temp_folders():
        # Not deleted here: another prepro of the same corpus may be writing it right now.
        log(
            f"note: {stale} was left by an interrupted prepro run; "
            "delete it unless another prepro of this corpus is running"
        )

    counts: Counter[str] = Counter()
    examples: dict[str, list[int]] = {reason: [] for reason in SKIP_REASONS}
    n_line = n_without = 0
    pbar = None
    if progress:
        from tqdm import tqdm

        pbar = tqdm(
            total=corpus_path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"prepro {corpus_path.name}",
            file=sys.stderr,
        )
    executor = _executor(workers, tokenizer_dir)
    window: list[tuple[Future, int]] = []
    max_in_flight = max(2, 2 * workers)

    def collect(future: Future, nbytes: int) -> None:
        nonlocal n_line, n_without
        result: BatchResult = future.result()
        for lineno, reason, why, text in result.skipped:
            if strict:
                raise PreproError(f"{corpus}:{lineno}: {why} ({reason}): {text}")
            counts[reason] += 1
            if len(examples[reason]) < 20:
                examples[reason].append(lineno)
            if counts[reason] <= SHOWN_PER_REASON:
                message = f"{corpus}:{lineno}: skipped, {why} ({reason}): {text}"
                pbar.write(message, file=sys.stderr) if pbar is not None else log(message)
        chunk = result.chunk
        chunk.conv_id = np.arange(writer.n_example, writer.n_example + len(chunk), dtype=np.int64)
        writer.add(chunk)
        n_line += result.n_line
        n_without += result.n_line_without_feature
        if pbar is not None:
            pbar.update(nbytes)

    try:
        for first_lineno, block in iter_line_blocks(corpus_path, BATCH_BYTES):
            future = executor.submit(
                process_batch, first_lineno, block, max_seq_len, reverse, two_turn
            )
            window.append((future, len(block)))
            while len(window) >= max_in_flight:
                collect(*window.pop(0))
        while window:
            collect(*window.pop(0))
        _refuse_unusable_corpus(corpus, n_line, counts, n_without, writer.n_example)
        meta = {
            "max_seq_len": max_seq_len,
            "reverse": reverse,
            "two_turn": two_turn,
            "corpus": str(corpus),
            "n_line": n_line,
            "n_line_skipped": sum(counts.values()),
            "n_line_without_feature": n_without,
            "skipped": {reason: counts[reason] for reason in SKIP_REASONS},
            "skipped_first_lines": {r: v for r, v in examples.items() if v},
        }
        folder = writer.commit(meta, tokenizer)
    except BaseException:
        executor.terminate()
        writer.abort()
        raise
    finally:
        if pbar is not None:
            pbar.close()
    executor.shutdown()
    skipped = sum(counts.values())
    log(
        f"{folder}: {writer.n_example} features in {writer.n_chunk} chunks from {n_line} lines; "
        f"{n_without} lines gave no feature; {skipped} malformed lines skipped"
        + (f" ({', '.join(f'{r}: {c}' for r, c in counts.items())})" if skipped else "")
    )
    return folder, {"n_example": writer.n_example, **meta}
