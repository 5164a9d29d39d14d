"""The conv pass: turn each split of a month into training instances (docs/REFERENCE.md §8).

Per split, the comments are sorted by (link_id, parent_id, comment key) and every target
comment goes through, in this order: keep keys, leaves only, subreddit blocklist, score,
chain building, min depth, full normalisation and weights, then the ``--clean`` filters.
The output line is ``link_id,parent_id,t1_id<TAB>CONTEXT<TAB>RESPONSE``.

Memory: one split (its submissions and comments) at a time, processed in blocks of
BLOCK_TARGETS targets, plus a bounded cache of normalised texts. With ``--parallel`` the
normalisation (most of the time) is shared out to worker processes forked at the start,
before any split is loaded; they receive texts and send back normalised turns, so the
output does not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import multiprocessing
import os
import re
import shutil
import signal
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import IO

from lsp_common.atomic import (
    atomic_text,
    refuse_folders,
    replace_set,
    work_folder,
    write_text_atomic,
)

from .blocklist import PhraseMatcher, turn_digest
from .errors import UserError
from .extract import split_folder
from .normalize import full_norm
from .stats import Report, write_counts

# Fields kept in memory per comment (from COMMENT_FIELDS, id and author dropped) and per
# submission (from SUBMISSION_FIELDS: only what conv reads).
PARENT, LINK, SCORE, N_CHAR, BODY = range(5)
DOMAIN, PERMALINK, TITLE = range(3)

_TAGS = re.compile(r"[\[\]()]")
_CAPS = re.compile(r"[A-Z]{5,}")
# The outputs of a month, conv/YYYY-MM + each; the last one is written last (conv_complete).
CONV_OUTPUTS = (".tsv", ".log", ".skips.tsv", ".stat.tsv")
# Fewer texts than this are normalised in the main process (shipping them costs more).
MIN_PARALLEL_TEXTS = 2000
# Months whose compressed comment splits are smaller than this are done in one process.
MIN_PARALLEL_BYTES = 1 << 20
# Targets handled per block: bounds the memory of the plan and of the output lines.
BLOCK_TARGETS = 50_000
# Normalised texts remembered across comments (identical bodies are common: "lol", "This.").
TEXT_CACHE_SIZE = 100_000


@dataclass
class ConvOptions:
    month: str
    output_dir: str
    max_len: int = 30
    max_len_type: str = "w"
    min_depth: int = 2
    max_depth: int = 10
    min_score: int = 0
    use_title: int = 1
    leaves_only: int = 0
    clean: bool = False
    bl_words: PhraseMatcher = field(default_factory=PhraseMatcher)
    use_bl_words: bool = False  # --bl_words given (even an empty list changes nothing else)
    bl_subreddits: set[str] | None = None  # None: no --bl_subreddits given
    keep_keys: set[str] | None = None
    discard_keys: set[str] | None = None
    parallel: bool = False
    workers: int = 0
    strict: bool = False


class _MissingSubmission(Exception):
    pass


class TurnCache:
    """Raw text -> normalised, weighted turn, computed in bulk (in worker processes if any).

    Normalisation (NLTK's tokenizer) is most of the conv time, and the same comment comes
    back as context in many chains, so each distinct text is normalised once. Past
    TEXT_CACHE_SIZE entries, only the texts of the current block are kept.
    """

    def __init__(self, opts: ConvOptions, pool=None, workers: int = 1) -> None:
        self.o = opts
        self.pool = pool
        self.workers = workers
        self.map: dict[str, str | None] = {}

    def fill(self, texts: set[str]) -> None:
        todo = [t for t in texts if t not in self.map]
        if len(self.map) + len(todo) > TEXT_CACHE_SIZE:
            keep = texts - set(todo)
            self.map = {t: self.map[t] for t in keep}
        if self.pool is not None and len(todo) >= MIN_PARALLEL_TEXTS:
            step = max(200, len(todo) // (self.workers * 8))
            chunks = [todo[i : i + step] for i in range(0, len(todo), step)]
            done = [t for part in self.pool.map(_weighted_turns, chunks) for t in part]
        else:
            done = weighted_turns(todo, self.o)
        self.map.update(zip(todo, done))


def weighted_turns(texts: list[str], o: ConvOptions) -> list[str | None]:
    """Full normalisation, then (leaves only + clean) the weight: 0.0 for a blocklisted
    word/phrase or a discarded digest, else 1.0."""
    out: list[str | None] = []
    weights = o.leaves_only and o.clean
    for raw in texts:
        try:
            t = full_norm(raw)
        except TimeoutError:
            # NLTK stops a tokenizer run after 5 s (ReDoS guard); such a text is not usable.
            out.append(None)
            continue
        if weights:
            bad = o.bl_words.found(t) or (
                o.discard_keys is not None and turn_digest(t) in o.discard_keys
            )
            t = ("0.0 " if bad else "1.0 ") + t
        out.append(t)
    return out


_OPTS: ConvOptions | None = None  # what forked workers normalise with


def _weighted_turns(texts: list[str]) -> list[str | None]:
    assert _OPTS is not None
    return weighted_turns(texts, _OPTS)


class SplitJob:
    """One split in memory, and the rules to turn its targets into lines."""

    def __init__(
        self, opts: ConvOptions, subs: dict[str, tuple[str, ...]], comms: dict[str, tuple[str, ...]]
    ) -> None:
        self.o = opts
        self.subs = subs
        self.comms = comms

    # -- chain -------------------------------------------------------------------------

    def _too_long(self, c: tuple[str, ...]) -> bool:
        if self.o.max_len_type == "w":
            return len(c[BODY].split()) > self.o.max_len
        if self.o.max_len_type == "c":
            return int(c[N_CHAR]) > self.o.max_len
        return False

    def chain(self, cid: str) -> list[str]:
        """Turn keys, oldest first: 't:'+link_id for a title, comment keys otherwise.

        Walks up from the target with a budget of max_depth comments; an over-long comment
        or an exhausted budget cuts the chain there (the part below is kept).
        """
        keys: list[str] = []
        budget = self.o.max_depth
        comms = self.comms
        while budget > 0:
            c = comms[cid]
            if self._too_long(c):
                break
            keys.append(cid)
            pid = c[PARENT]
            if self.o.use_title and pid.startswith("t3_"):
                if c[LINK] not in self.subs:
                    raise _MissingSubmission(c[LINK])
                keys.append("t:" + c[LINK])
                break
            if pid not in comms:
                break
            cid = pid
            budget -= 1
        keys.reverse()
        return keys

    def raw_text(self, key: str) -> str:
        if key.startswith("t:"):
            return "title: " + self.subs[key[2:]][TITLE]
        return self.comms[key][BODY]

    # -- one target ----------------------------------------------------------------------

    def process(
        self, targets: list[tuple[str, str, str]], turns: TurnCache
    ) -> tuple[list[str], Counter, list[str], int]:
        """Lines for these targets (in order), skip counts, skip log lines, sum of response lengths.

        First the cheap rules pick the targets and their chains, then every text still
        needed is normalised in one go (TurnCache.fill), then the instances are assembled.
        """
        o = self.o
        counts: Counter[str] = Counter()
        plan: list = []  # per target: a skip log line, or (header, info, chain keys)
        for sid, pid, cid in targets:
            subreddit = domain = ""
            sub = self.subs.get(sid)
            if sub is not None:
                parts = sub[PERMALINK].split("/")
                # A permalink without a subreddit part crashes the published tool; here the
                # submission counts as having no subreddit.
                subreddit = parts[2].lower() if len(parts) > 2 else ""
                domain = sub[DOMAIN].lower()
            info = subreddit + "\t" + domain
            if o.bl_subreddits is not None:
                if not subreddit:
                    counts["missing"] += 1
                    plan.append(f"skip\tmissing\t{info}\tN/A\tmissing submission: {sid}")
                    continue
                if subreddit in o.bl_subreddits:
                    counts["bad_subreddit"] += 1
                    plan.append(
                        f"skip\tbad_subreddit\t{info}\tN/A\toffensive subreddit: {subreddit}"
                    )
                    continue
            c = self.comms[cid]
            body = c[BODY]
            if c[SCORE] == "None":
                score = 0
            else:
                try:
                    score = int(c[SCORE])
                except ValueError:
                    counts["bad_score"] += 1
                    plan.append(
                        f"skip\tbad_score\t{info}\t{body}\tscore {c[SCORE]!r} is not an integer"
                    )
                    continue
            if score < o.min_score:
                counts["low_score"] += 1
                plan.append(f"skip\tlow_score\t{info}\t{body}\tscore {score} < {o.min_score}")
                continue
            try:
                keys = self.chain(cid)
            except _MissingSubmission as exc:
                counts["exception"] += 1
                plan.append(f"skip\texception\t{info}\t{body}\tno submission {exc} for the title")
                continue
            except ValueError as exc:  # a non-numeric n_char (shifted fields) with --max_len_type c
                counts["exception"] += 1
                plan.append(f"skip\texception\t{info}\t{body}\t{exc}")
                continue
            if len(keys) < o.min_depth:
                counts["min_depth"] += 1
                raw = "|".join(self.raw_text(k) for k in keys)
                plan.append(
                    f"skip\tmin_depth\t{info}\t{body}\tdepth {len(keys)} < {o.min_depth}: {raw}"
                )
                continue
            plan.append((f"{sid},{pid},{cid}", info, [self.raw_text(k) for k in keys]))

        turns.fill({raw for item in plan if type(item) is tuple for raw in item[2]})
        norm = turns.map
        lines: list[str] = []
        log: list[str] = []
        resp_len = 0
        for item in plan:
            if type(item) is str:
                log.append(item)
                continue
            header, info, raws = item
            chain = [text for text in (norm[r] for r in raws) if text is not None]
            if len(chain) < len(raws):
                counts["tokenizer_timeout"] += 1
                log.append(f"skip\ttokenizer_timeout\t{info}\t{raws[-1]}\ttokenizer time limit")
                continue
            src = " EOS ".join(chain[:-1])
            tgt = chain[-1]
            if o.clean:
                reason, detail = self._filter(src, tgt)
                if reason:
                    counts[reason] += 1
                    log.append(f"skip\t{reason}\t{info}\t{tgt}{detail}")
                    continue
            lines.append(f"{header}\t{src}\t{tgt}")
            resp_len += len(tgt.split())
        return lines, counts, log, resp_len

    def _filter(self, src: str, tgt: str) -> tuple[str, str]:
        """The --clean filters, first failing one wins (reason, log detail)."""
        o = self.o
        if o.use_bl_words and not o.leaves_only and o.bl_words.found(tgt):
            return "offensive", "\tbad word(s)"
        tgt_toks = tgt.split()
        if len(tgt_toks) <= 1:  # only a weight left
            return "emptytarget", ""
        if any(len(w) > 30 for w in tgt_toks):
            return "longword", "\tword too long"
        if len(src.split()) + len(tgt_toks) > 200:
            return "toolong", f"\tsrc+tgt too long, src=[{src}]"
        both = src + " " + tgt
        if "__url__" in both:
            return "url", f"\turl in tgt, or src =[{src}]"
        if _TAGS.search(both):
            return "tags", f"\ttag in tgt (or src: [{src}])"
        if _CAPS.search(both):
            return "allcaps", f"\tall caps in tgt (or src: [{src}])"
        for i in range(2, len(tgt_toks)):
            if tgt_toks[i - 2] == tgt_toks[i] == tgt_toks[i - 1]:
                return "repetitions", "\ttoo many repetitions"
        return "", ""


def _read_cells(
    path: str, width: int, report: Report, reason: str
) -> Iterator[tuple[str, int, list[str]]]:
    """(file name, line number, cells) of an extract file, split as the published conv reads them."""
    name = os.path.basename(path)
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogatepass") as fh:
        for n, line in enumerate(fh, 1):
            cells = line.strip("\n").strip().split("\t")
            if len(cells) < width:
                report.bad(reason, f"{name}:{n}: {len(cells)} fields, expected {width}")
                continue
            yield name, n, cells


def _repeated(report: Report, reason: str, name: str, n: int, key: str) -> None:
    # Later lines win, as in the published tool; the record they replace is counted.
    report.skip(reason, f"skip\t{reason}\t\t\t{key}\t{name}:{n}: {key} repeats an earlier line")


def load_split(folder: str, k: int, report: Report) -> tuple[dict, dict]:
    """Submissions and comments of split k, keyed t3_id / t1_id (later lines win; the
    records replaced are counted as ``duplicate_submission`` / ``duplicate_comment``)."""
    subs: dict[str, tuple[str, ...]] = {}
    comms: dict[str, tuple[str, ...]] = {}
    path = os.path.join(folder, f"rs_sub{k}.tsv.gz")
    try:
        for name, n, cells in _read_cells(path, 6, report, "bad_rs_line"):
            key = "t3_" + cells[0]
            if key in subs:
                _repeated(report, "duplicate_submission", name, n, key)
            subs[key] = tuple(cells[3:6])
        path = os.path.join(folder, f"rc_sub{k}.tsv.gz")
        for name, n, cells in _read_cells(path, 7, report, "bad_rc_line"):
            # Interned: a link id is shared by all the comments of a submission, a parent
            # id by its replies and its own key.
            key = sys.intern("t1_" + cells[0])
            if key in comms:
                _repeated(report, "duplicate_comment", name, n, key)
            comms[key] = (
                sys.intern(cells[2]),
                sys.intern(cells[3]),
                cells[4],
                cells[5],
                cells[6],
            )
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        # A damaged file: extract writes only UTF-8 (surrogatepass), inside a gzip checksum.
        raise UserError(f"cannot read {path}: {exc}; run --task extract again") from None
    return subs, comms


def _worker_count(opts: ConvOptions) -> int:
    if not opts.parallel:
        return 1
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1  # workers must inherit the options (blocklist, keys) without pickling
    return max(1, min(opts.workers or (os.cpu_count() or 1), 32))


def conv_split(
    job: SplitJob, turns: TurnCache, report: Report, out: IO[str], log: IO[str]
) -> tuple[int, int, float]:
    """Write the lines of one split; returns (selected, comments in split, avg response length)."""
    o = job.o
    comms = job.comms
    ordered = sorted((c[LINK], c[PARENT], cid) for cid, c in comms.items())
    parents = {pid for _, pid, _ in ordered} if o.leaves_only else set()
    targets = []
    for t in ordered:
        if o.keep_keys is not None and f"{t[0]}\t{t[2]}\tkeep" not in o.keep_keys:
            report.skip("not_in_keys")
        elif t[2] in parents:
            report.skip("not_leaf")
        else:
            targets.append(t)
    del ordered, parents
    m = 0
    resp_len = 0
    for i in range(0, len(targets), BLOCK_TARGETS):
        lines, counts, log_lines, rl = job.process(targets[i : i + BLOCK_TARGETS], turns)
        if lines:
            out.write("\n".join(lines) + "\n")
        if log_lines:
            log.write("\n".join(log_lines) + "\n")
        report.merge(counts)
        m += len(lines)
        resp_len += rl
    return m, len(comms), (resp_len / m if m else 0.0)


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and reports it in one
    line (otherwise each worker prints a KeyboardInterrupt traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch_parent(interval: float = 0.5) -> None:
    """End this worker when the main process is gone: killed (SIGKILL skips every
    cleanup), it would leave the workers waiting for work forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _worker_init() -> None:
    _ignore_sigint()
    _watch_parent()


@contextlib.contextmanager
def _closing_pool(pool):
    try:
        yield pool
    except BrokenProcessPool:
        raise UserError(
            "a conv worker process died (out of memory?); nothing was written. "
            "Retry with fewer --workers, a smaller --split_size or --parallel False"
        ) from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def conv_complete(output_dir: str, month: str) -> bool:
    """Are the conv outputs of ``month`` a complete set from one run? (Their completion
    marker, the stat file, is removed before any of them is replaced and written last.)"""
    return os.path.isfile(os.path.join(output_dir, "conv", month + CONV_OUTPUTS[-1]))


def conv_month(opts: ConvOptions) -> tuple[int, int]:
    """Run conv over all splits of a month; returns (selected, comments)."""
    folder = split_folder(opts.output_dir, opts.month)
    if not os.path.exists(os.path.join(folder, "rs_sub0.tsv.gz")):
        raise UserError(
            f"no extract output for {opts.month}: {folder}/rs_sub0.tsv.gz is missing "
            f"(run --task extract first)"
        )
    conv_dir = os.path.join(opts.output_dir, "conv")
    base = os.path.join(conv_dir, opts.month)
    # The four outputs change as one set (atomic.replace_set), the stat file last: a month's
    # conv output is complete when YYYY-MM.stat.tsv exists (conv_complete).
    outputs = [base + ext for ext in CONV_OUTPUTS]
    refuse_folders(outputs)
    work = work_folder(conv_dir, opts.month)
    try:
        return _conv_into(opts, folder, work, outputs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _conv_into(opts: ConvOptions, folder: str, work: str, outputs: list[str]) -> tuple[int, int]:
    """Write the outputs in the folder ``work``, then move them onto ``outputs`` as a set;
    returns (selected, comments)."""
    stat_lines = []
    sum_m = sum_n = 0
    global _OPTS
    workers = _worker_count(opts)
    rc_files = glob.glob(os.path.join(glob.escape(folder), "rc_sub*.tsv.gz"))
    if sum(os.path.getsize(p) for p in rc_files) < MIN_PARALLEL_BYTES:
        workers = 1  # a small month: starting workers would cost more than they save
    pool = None
    if workers > 1:
        # Forked now, while the process is small (forked later, a worker would keep the
        # pages of a split alive after the parent has moved on to the next one). They
        # inherit the options (blocklist, keys) and receive only texts to normalise.
        _OPTS = opts
        # Ctrl-C is held back while the workers are forked: between the fork and the start
        # of the pool's manager thread nothing could stop them, and the interpreter would
        # wait for them forever at exit. It is delivered right after.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_init
            )
            pool.submit(int).result()  # the first task forks all the workers
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    turns = TurnCache(opts, pool, workers)
    tmp = [os.path.join(work, os.path.basename(path)) for path in outputs]
    with (
        atomic_text(tmp[0], errors="backslashreplace") as out,
        atomic_text(tmp[1], errors="backslashreplace") as log,
        _closing_pool(pool),
    ):
        report = Report(log, strict=opts.strict)
        k = 0
        while os.path.exists(os.path.join(folder, f"rs_sub{k}.tsv.gz")):
            subs, comms = load_split(folder, k, report)
            m, n, avg = conv_split(SplitJob(opts, subs, comms), turns, report, out, log)
            del subs, comms
            stat_lines.append(f"{opts.month}\t{k}\t{m}\t{n}\t{avg:.2f}\n")
            sum_m += m
            sum_n += n
            k += 1
    stat_lines.append(f"{opts.month}\tall\t{sum_m}\t{sum_n}\t\n")
    write_counts(tmp[2], report.counts)
    write_text_atomic(tmp[3], "".join(stat_lines))
    replace_set(list(zip(tmp, outputs, strict=True)))
    print(
        f"[{opts.month}] conv: selected {sum_m} instances from {sum_n} comments in {k} split(s)",
        file=sys.stderr,
    )
    return sum_m, sum_n
