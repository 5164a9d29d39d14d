"""Atomic writes for files and folders: write under a temporary sibling name, then rename.

A rename within one folder is atomic, so a run killed at any moment leaves either the old
content or the new one under the final name, never a half-written file that looks done.
Temporary names start with a dot and carry a random tag, so concurrent writers of
different targets never collide and leftovers are easy to recognise.

This is the one place the training side (lsp_data, lsp_model, gpt2_training and the
top-level scripts) writes outputs from. ``dstc/`` and ``reddit_extractor/`` keep their own
small helpers because they run as standalone tools with fewer dependencies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

TRASH_PREFIX = ".trash-"


def temp_sibling(path: Path) -> Path:
    """A hidden, randomly tagged sibling name for ``path`` (``.NAME.tmp-1a2b3c4d``), the form
    :func:`is_leftover` recognises."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and the
    previous content of ``path``, if any, is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` with ``text`` (UTF-8, ``\\n`` line ends on every platform)."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return Path(path)


def write_lines_atomic(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Replace ``path`` with ``lines`` (each given without its newline), streamed."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    return Path(path)


def remove_folder(folder: str | os.PathLike[str]) -> None:
    """Delete a folder so that a kill half-way never leaves a partial copy under its name.

    It is first renamed to a hidden ``.trash-*`` sibling (atomic), then removed; what a
    killed process leaves is found with :func:`is_leftover`.
    """
    folder = Path(folder)
    trash = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def replace_folder(tmp: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``tmp`` onto ``folder``, replacing what was there.

    Between the two renames ``folder`` is briefly absent, never partial.
    """
    tmp, folder = Path(tmp), Path(folder)
    if folder.exists():
        old = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, old)
        try:
            os.replace(tmp, folder)
        except BaseException:
            os.replace(old, folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return folder


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``folder``; on success it replaces ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(folder)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, folder)
    finally:
        if tmp.exists():  # only after a failure: on success it was renamed away
            shutil.rmtree(tmp, ignore_errors=True)


def is_leftover(entry: Path) -> bool:
    """Whether ``entry`` is a temporary or trash sibling that a killed writer left behind."""
    name = entry.name
    return name.startswith(TRASH_PREFIX) or (name.startswith(".") and ".tmp-" in name)
