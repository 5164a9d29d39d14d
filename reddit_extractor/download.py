"""Resumable download of one dump file over HTTP(S) (urllib, HTTP Range).

The file grows under ``DEST.part``; an interrupted download continues from its size with a
``Range`` request. The size announced by the server is checked before ``DEST.part`` is
renamed to ``DEST``, so a complete-looking ``DEST`` is always complete.
"""

from __future__ import annotations

import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from .errors import DownloadError, UsageError

BLOCK = 1 << 20


def _total_size(resp, offset: int) -> int | None:
    """Full size of the remote file from Content-Range, or Content-Length (+ offset)."""
    cr = resp.headers.get("Content-Range")
    if cr:
        m = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", cr)
        if m:
            return int(m.group(1))
    cl = resp.headers.get("Content-Length")
    if cl is not None and cl.isdigit():
        return int(cl) + offset
    return None


def download(url: str, dest: str, timeout: float = 60.0, quiet: bool = False) -> int:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``); returns the final size."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise UsageError(f"not a valid URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        # urllib would say "unknown url type" or "no host given" only after trying, and the
        # message would read like a network failure.
        raise UsageError(f"not a valid URL {url!r}: expected http://HOST/... or https://HOST/...")
    if os.path.isdir(dest):
        raise UsageError(f"destination {dest!r} is a folder; give the dump's file name")
    if os.path.exists(dest):
        return os.path.getsize(dest)
    part = dest + ".part"
    if os.path.isdir(part):
        raise UsageError(f"cannot download to {part!r}: it is a folder")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"cannot create the folder of {dest!r}: a file is in the way") from None
    except OSError as exc:
        raise DownloadError(
            f"cannot create the folder of {dest!r}: {exc.strerror or exc}"
        ) from None
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        req = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    except ValueError as exc:
        raise UsageError(f"not a valid URL {url!r}: {exc}") from None
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Nothing left to fetch: the part file may already be complete.
            total = _total_size(exc, 0)
            if total == offset:
                os.replace(part, dest)
                return offset
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot download {url}: {reason} (offline? copy the dump into the input folder "
            f"by hand instead)"
        ) from None
    except (ValueError, http.client.InvalidURL) as exc:  # e.g. a malformed host or port
        raise UsageError(f"not a valid URL {url!r}: {exc}") from None
    with resp:
        if offset and resp.status != 206:
            offset = 0  # the server ignored the Range header: start again
        total = _total_size(resp, offset)
        mode = "ab" if offset else "wb"
        done = offset
        try:
            fh = open(part, mode)
        except OSError as exc:
            raise DownloadError(f"cannot write {part!r}: {exc.strerror or exc}") from None
        try:
            with fh:
                while True:
                    block = resp.read(BLOCK)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadError(
                f"download of {url} interrupted at {done} bytes ({exc}); run again to resume"
            ) from None
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise DownloadError(
            f"download of {url} incomplete: {size} of {total} bytes; run again to resume"
        )
    os.replace(part, dest)
    if not quiet:
        print(f"downloaded {url} -> {dest} ({size} bytes)", file=sys.stderr)
    return size
