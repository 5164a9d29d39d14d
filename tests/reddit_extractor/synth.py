"""Synthetic Pushshift months for the extractor tests and the benchmark.

``random_month`` builds a reproducible month with realistic fields (id, link_id,
parent_id, author, body, score, subreddit, created_utc, permalink, num_comments, title,
domain) and the awkward cases real dumps contain: deleted bodies, quotes ('>', '&gt;'),
URLs, markdown, capitals, repetitions, unicode, tabs/newlines in bodies, deep threads,
low and null scores, blocklisted words and subreddits, and a few malformed records.

``write_dump`` writes records as NDJSON in any of the supported compressions.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
from collections.abc import Iterable

import zstandard

SUBREDDITS = ["AskReddit", "pics", "science", "BadPlace", "gaming", "news"]
BLOCKED_SUBREDDIT = "badplace"
BLOCKED_WORDS = ["darn", "heck no"]

WORDS = (
    "the a of to and is in it you that he was for on are with as I his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been "
    "now find any new work part take get place made live where after back little only round "
    "man year came show every good me give our under name very through just form sentence "
    "great think say help low line differ turn cause much mean before move right boy old too "
    "same tell does set three want air well also play small end put home read hand port large"
).split()

ODD_BODIES = [
    "Check https://example.com/x?y=1 for details",
    "see www.HTTPS://foo and HTTP stuff",
    "**bold** and _italic_ and ~~strike~~ text",
    "I SAID NOTHING AT ALL here",
    "no no no way",
    "this is ok ok ok",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u201cquoted\u201d words \U0001f600 emoji",
    "tabs\tinside\tthe body\nand a newline\r\nand more",
    "b/c it is w/o doubt j/k w/ friends",
    "back\\slash \\_escaped\\_ text",
    "#hashtag #another word here",
    "a [link](http://x.y) in markdown",
    "Supercalifragilisticexpialidociousness is too long a word",
    "What the darn thing is this",
    "Well heck no I will not",
    "URL and MENTION literal words",
    "I'll say: it's 12:30, ok?! Yes... !!!!!",
    "   leading and trailing spaces   ",
    "single",
    "&amp; entities &lt;3 fine",
]


def _sentence(rng: random.Random, lo: int = 2, hi: int = 14) -> str:
    words = rng.choices(WORDS, k=rng.randint(lo, hi))
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(["", ".", "!", "?", " ."])


def _b36(n: int) -> str:
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = chars[r] + out
        if n == 0:
            return out


def random_month(
    n_submissions: int = 60, n_comments: int = 600, seed: int = 0, bad_records: bool = True
) -> tuple[list, list]:
    """(submissions, comments): lists of dicts, or of raw strings for malformed lines."""
    rng = random.Random(seed)
    subs: list = []
    for i in range(n_submissions):
        sub = rng.choice(SUBREDDITS)
        sid = _b36(1000 + i)
        title = _sentence(rng)
        if rng.random() < 0.1:
            title = rng.choice(ODD_BODIES)
        subs.append(
            {
                "id": sid,
                "author": f"user{rng.randint(0, 50)}",
                "created_utc": 1293840000 + i * 60,
                "domain": rng.choice(["self." + sub, "i.imgur.com", "YouTube.com"]),
                "num_comments": rng.choice([0, 1, 2, 5, 10, 30, 100]),
                "permalink": f"/r/{sub}/comments/{sid}/some_title/",
                "score": rng.choice([None, 0, 1, 5, 100]),
                "subreddit": sub,
                "title": title,
                "url": f"https://www.reddit.com/r/{sub}/comments/{sid}/",
            }
        )
    comments: list = []
    by_link: dict[str, list[str]] = {}
    for j in range(n_comments):
        s = rng.choice(subs)
        link = "t3_" + s["id"]
        siblings = by_link.setdefault(link, [])
        # Deep threads: most replies answer the latest comment of the thread.
        if siblings and rng.random() < 0.75:
            parent = siblings[-1] if rng.random() < 0.7 else rng.choice(siblings)
        else:
            parent = link
        cid = _b36(50000 + j)
        r = rng.random()
        if r < 0.05:
            body = "[deleted]"
        elif r < 0.08:
            body = "> quoted text\n\nmy answer " + _sentence(rng)
        elif r < 0.10:
            body = "&gt; quoted " + _sentence(rng)
        elif r < 0.35:
            body = rng.choice(ODD_BODIES)
        elif r < 0.38:
            body = " ".join(rng.choices(WORDS, k=rng.randint(31, 40)))
        else:
            body = _sentence(rng)
        comments.append(
            {
                "author": f"user{rng.randint(0, 50)}",
                "body": body,
                "created_utc": 1293840000 + j,
                "id": cid,
                "link_id": link,
                "parent_id": parent,
                "score": rng.choice([None, -3, 0, 1, 1, 2, 7, 40]),
                "subreddit": s["subreddit"],
                "permalink": f"/r/{s['subreddit']}/comments/{s['id']}/x/{cid}/",
            }
        )
        siblings.append("t1_" + cid)
    if bad_records:
        comments.insert(5, "{not json")
        comments.insert(
            9, {"id": "zz1", "link_id": comments[12]["link_id"], "body": "no author field here"}
        )
        comments.insert(
            11,
            {
                "id": "zz2",
                "author": "x",
                "parent_id": "t3_x",
                "link_id": "t3_x",
                "score": 1,
                "body": 12345,
            },
        )
        comments.append("")
        subs.insert(3, "[1, 2")
        subs.insert(4, {"id": "nocount", "title": "missing num_comments"})
        subs.insert(
            6,
            {
                "id": "nulltitle",
                "num_comments": 5,
                "title": None,
                "score": 1,
                "domain": "d",
                "permalink": "/r/x/comments/nulltitle/",
            },
        )
    return subs, comments


def ndjson(records: Iterable) -> bytes:
    """Records as NDJSON bytes; strings are written as they are (malformed lines)."""
    out = io.StringIO()
    for r in records:
        out.write(r if isinstance(r, str) else json.dumps(r))
        out.write("\n")
    return out.getvalue().encode("utf-8")


def compress(data: bytes, ext: str) -> bytes:
    if ext == ".zst":
        return zstandard.ZstdCompressor(level=3).compress(data)
    if ext == ".xz":
        return lzma.compress(data)
    if ext == ".bz2":
        return bz2.compress(data, compresslevel=1)  # 100 kB blocks: truncation tests keep some
    if ext == ".gz":
        return gzip.compress(data)
    return data


def write_dump(folder, kind: str, month: str, records: Iterable, ext: str = ".zst") -> str:
    """Write ``folder/{kind}_{month}{ext}``; returns its path."""
    path = f"{folder}/{kind}_{month}{ext}"
    with open(path, "wb") as fh:
        fh.write(compress(ndjson(records), ext))
    return path


def write_month(folder, month: str, subs: list, comments: list, ext: str = ".zst") -> None:
    write_dump(folder, "RS", month, subs, ext)
    write_dump(folder, "RC", month, comments, ext)
