"""lsp_common.checksums: sha256sum-format records beside files and in folders."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from lsp_common.checksums import (
    ChecksumError,
    parse_sums,
    sidecar_path,
    verify_file,
    verify_folder,
    write_sidecar,
    write_sums,
)


def test_sidecar_round_trip_and_mismatch(tmp_path):
    data = tmp_path / "w.pkl"
    data.write_bytes(b"weights" * 1000)
    record = write_sidecar(data)
    assert record == sidecar_path(data) == tmp_path / "w.pkl.sha256"
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert record.read_text() == f"{digest}  w.pkl\n"
    assert verify_file(data) is True
    data.write_bytes(b"weights" * 999 + b"weighTs")
    with pytest.raises(ChecksumError, match="w.pkl: checksum mismatch with .*w.pkl.sha256"):
        verify_file(data)
    record.unlink()
    assert verify_file(data) is False  # no record: the caller warns
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_folder_sums(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"a")
    (tmp_path / "b.safetensors").write_bytes(b"b")
    assert verify_folder(tmp_path, ["a.safetensors"]) is False
    write_sums(tmp_path, ["b.safetensors", "a.safetensors"])
    lines = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["a.safetensors", "b.safetensors"]
    assert verify_folder(tmp_path, ["a.safetensors", "b.safetensors"]) is True
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=tmp_path, check=True)
    (tmp_path / "c.safetensors").write_bytes(b"c")
    with pytest.raises(ChecksumError, match="c.safetensors: not listed in"):
        verify_folder(tmp_path, ["c.safetensors"])
    (tmp_path / "b.safetensors").write_bytes(b"B")
    with pytest.raises(ChecksumError, match="b.safetensors: checksum mismatch"):
        verify_folder(tmp_path, ["a.safetensors", "b.safetensors"])
    (tmp_path / "b.safetensors").unlink()
    with pytest.raises(ChecksumError, match="b.safetensors: listed in .*SHA256SUMS but missing"):
        verify_folder(tmp_path, ["a.safetensors"])


def test_malformed_records_name_file_and_line(tmp_path):
    good = "0" * 64 + "  a.bin\n"
    assert parse_sums(good + "\n" + "F" * 64 + " *b.bin\n", "SUMS") == {
        "a.bin": "0" * 64,
        "b.bin": "f" * 64,
    }
    with pytest.raises(ChecksumError, match="SUMS:2: not a sha256sum line"):
        parse_sums(good + "abc  b.bin\n", "SUMS")
    with pytest.raises(ChecksumError, match="SUMS: holds no checksum"):
        parse_sums("\n", "SUMS")
    data = tmp_path / "w.pkl"
    data.write_bytes(b"x")
    sidecar_path(data).write_bytes(b"\xff\xfe")
    with pytest.raises(ChecksumError, match="unreadable checksum file"):
        verify_file(data)
    sidecar_path(data).write_text(good + "1" * 64 + "  w.pkl\n")
    with pytest.raises(ChecksumError, match="expected one checksum line, found 2"):
        verify_file(data)
