"""lsp_common.atomic: a failed or interrupted write never shows under the final name."""

from __future__ import annotations

import pytest

from lsp_common.atomic import (
    OutputError,
    atomic_file,
    atomic_folder,
    atomic_text,
    is_leftover,
    remove_folder,
    write_lines_atomic,
    write_text_atomic,
)


def listdir(folder):
    return sorted(p.name for p in folder.iterdir())


class Killed(BaseException):
    pass


def test_text_and_lines_replace_whole_files(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "first\n")
    write_lines_atomic(target, (f"line {i}" for i in range(3)))
    assert target.read_bytes() == b"line 0\nline 1\nline 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failure_keeps_old_content_and_removes_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old\n")

    def lines():
        yield "new"
        raise Killed

    with pytest.raises(Killed):
        write_lines_atomic(target, lines())
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_file_gives_a_hidden_sibling(tmp_path):
    with atomic_file(tmp_path / "x.bin") as tmp:
        assert tmp.parent == tmp_path and is_leftover(tmp)
        tmp.write_bytes(b"\x00\x01")
        assert not (tmp_path / "x.bin").exists()
    assert (tmp_path / "x.bin").read_bytes() == b"\x00\x01"


def test_folder_replaced_only_when_complete(tmp_path):
    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(Killed), atomic_folder(folder) as tmp:
        (tmp / "b").write_text("2")
        raise Killed
    assert sorted(p.name for p in folder.iterdir()) == ["a"]
    with atomic_folder(folder) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in folder.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_remove_folder_and_leftover_names(tmp_path):
    folder = tmp_path / "step-4"
    (folder / "deep").mkdir(parents=True)
    remove_folder(folder)
    remove_folder(folder)  # already gone: nothing to do
    assert list(tmp_path.iterdir()) == []
    assert is_leftover(tmp_path / ".trash-step-2-0a1b2c3d")
    assert is_leftover(tmp_path / ".train.db.tmp-0a1b2c3d")
    assert not is_leftover(tmp_path / "step-2")
    assert not is_leftover(tmp_path / ".hidden-user-file")


def test_failed_rename_names_the_output_not_the_temporary_file(tmp_path):
    target = tmp_path / "x.tsv"
    with pytest.raises(OutputError, match=rf"^cannot write {target}: it is a folder$"):
        with atomic_text(str(target)) as fh:
            fh.write("data\n")
            target.mkdir()  # appears while the output is being written
    assert listdir(tmp_path) == ["x.tsv"]  # the temporary file is gone
    (tmp_path / "blocker").write_text("")
    with pytest.raises(OutputError, match=r"blocker/z.tsv: a file is in the way of its folder$"):
        with atomic_text(str(tmp_path / "blocker" / "z.tsv")):
            pass


def test_failed_cleanup_does_not_hide_the_write_error(tmp_path, monkeypatch):
    # On a file system remounted read-only after an I/O error, removing the temporary file
    # fails too (EROFS even when it does not exist): the write's own error must surface.
    import errno
    from pathlib import Path

    from lsp_common.atomic import write_text_atomic

    def unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    def no_room(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr("builtins.open", no_room)
    with pytest.raises(OSError) as err:
        write_text_atomic(tmp_path / "out.txt", "x")
    assert err.value.errno == errno.EIO


def test_compressed_text_is_the_same_bytes_every_run(tmp_path, monkeypatch):
    """gzip output names the final file, not the random temporary, and has no time stamp:
    the extractor's outputs are then byte-identical between runs (and after a kill)."""
    import gzip
    import time

    a, b = tmp_path / "a" / "x.tsv.gz", tmp_path / "b" / "x.tsv.gz"
    with atomic_text(a, compress=True) as fh:
        fh.write("one\ttwo\n")
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # a later clock
    with atomic_text(b, compress=True) as fh:
        fh.write("one\ttwo\n")
    assert a.read_bytes() == b.read_bytes()
    assert b".tmp-" not in a.read_bytes() and b"x.tsv\x00" in a.read_bytes()
    assert gzip.decompress(a.read_bytes()) == b"one\ttwo\n"


def test_full_disk_inside_the_block_names_the_output(tmp_path):
    """A write that fails for want of room (or on a read-only file system) is the output's
    error, named by its final path; the block's own errors (an input that is missing) pass
    through as they were."""
    import errno

    target = tmp_path / "out.txt"
    target.write_text("previous\n")
    with pytest.raises(OutputError, match=f"cannot write {target}: No space left on device"):
        with atomic_text(target) as fh:
            fh.write("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OutputError, match=f"cannot write {target}: Read-only file system"):
        with atomic_file(target) as tmp:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp))
    with pytest.raises(FileNotFoundError) as caught:
        with atomic_file(target):
            open(tmp_path / "missing-input.txt")
    assert not isinstance(caught.value, OutputError)
    assert target.read_text() == "previous\n" and listdir(tmp_path) == ["out.txt"]


def test_read_only_folder_reports_the_write_not_the_cleanup(tmp_path, monkeypatch):
    """On a read-only mount, removing the (never created) temporary fails too; the error
    that comes out is still the one naming the output."""
    import errno
    from pathlib import Path

    target = tmp_path / "out.txt"

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(OutputError, match=f"cannot write {target}: Read-only file system"):
        with atomic_file(target) as tmp:
            raise OSError(errno.EROFS, "Read-only file system", str(tmp))
