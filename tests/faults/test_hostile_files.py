"""Hostile and damaged files given to every place that loads a checkpoint, model or database.

A hostile file is a pickle whose unpickling would run code: its ``__reduce__`` creates a
marker file. Each loader must refuse it with a clear error and the marker must never
appear. ``test_the_hostile_files_really_run_code`` shows that they would, read unsafely.
Damaged files (a flipped byte, truncated, missing) must be detected with a clear error.

Hostile files tried: len(HOSTILE) x len(LOADERS) (6 x 8 = 48).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gpt2_training import checkpoint as ckpt
from gpt2_training import cli as train_cli
from lsp_data.db import DatabaseError, FeatureDB
from lsp_data.tokenizer import load_tokenizer
from lsp_decode import cli as decode
from lsp_decode.conversation import load_chat_model
from lsp_demo.chat import sample_conversation
from lsp_demo.console import DemoError
from lsp_model.loading import (
    ModelLoadError,
    checkpoint_state_dict,
    load_model,
    save_hf_folder,
    save_state_dict_file,
)
from tests.gpt2_training.conftest import TINY, train_argv
from tests.gpt2_training.conftest import train_data as train_data  # the fixture


class _Exec:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class _Open:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _System:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _weights() -> dict[str, torch.Tensor]:
    return {"transformer.wte.weight": torch.zeros(4, 2)}


def _torch_bytes(obj: object, zip_format: bool = True) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


# name -> the bytes of a file that runs code (creating ``marker``) when unpickled in full
HOSTILE: dict[str, Callable[[Path], bytes]] = {
    "pickle-protocol0-exec": lambda m: pickle.dumps(_Exec(m), protocol=0),
    "pickle-protocol2-open-among-weights": lambda m: pickle.dumps(
        {**_weights(), "x": _Open(m)}, protocol=2
    ),
    "pickle-protocol4-system": lambda m: pickle.dumps(_System(m), protocol=4),
    "pickle-protocol5-exec": lambda m: pickle.dumps({"state_dict": _Exec(m)}, protocol=5),
    "torch-zip-exec-among-weights": lambda m: _torch_bytes({**_weights(), "x": _Exec(m)}),
    "torch-legacy-system": lambda m: _torch_bytes({"model": _System(m)}, zip_format=False),
}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """A tiny config folder, and its model saved as the toolkit saves it (.pkl, hf_model/)."""
    root = tmp_path_factory.mktemp("hostile_models")
    cfg = root / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps(TINY))
    torch.manual_seed(0)
    model = load_model(cfg)
    pkl = save_state_dict_file(checkpoint_state_dict(model), root / "GP2-pretrain-step-1.pkl")
    hf = save_hf_folder(model, load_tokenizer(), root / "hf_model")
    valid = root / "valid.tsv"
    valid.write_text("hello there EOS how are you\tfine\n")
    return {"cfg": cfg, "pkl": pkl, "hf": hf, "valid": valid}


def _with_sidecar(path: Path) -> Path:
    """A checksum that matches: the refusal must come from the reader, not the checksum."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return path


def _hf_folder_holding(hostile: Path, files: dict[str, Path], where: Path) -> Path:
    """A model folder whose weights file (pytorch_model.bin) is the hostile pickle."""
    folder = where / "hf_hostile"
    folder.mkdir()
    shutil.copy(files["cfg"] / "config.json", folder / "config.json")
    shutil.copy(hostile, folder / "pytorch_model.bin")
    return folder


# Each loader gets the hostile file and must refuse it; it returns the error text shown.
def _load_init_checkpoint(hostile, files, tmp, capsys, caplog) -> str:
    with pytest.raises(ModelLoadError) as err:
        load_model(files["cfg"], _with_sidecar(hostile))
    return str(err.value)


def _train(argv: list[str]) -> object:
    # LSP_train.py points the root logger at this test's captured stderr (basicConfig,
    # force=True); put the handlers back so that later tests do not log into a closed stream.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return train_cli.main(argv)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _train_init_checkpoint(hostile, files, tmp, capsys, caplog) -> str:
    data = files["train_data"]
    argv = train_argv(data, tmp / "out", "--init_checkpoint", str(_with_sidecar(hostile)))
    assert _train([*argv, "--num_optim_steps", "1"]) == 1
    return capsys.readouterr().err


def _train_resume(hostile, files, tmp, capsys, caplog) -> str:
    # A checkpoint folder as save_checkpoint writes it, meta.json matching the hostile state.
    step = tmp / "out" / "GPT2.run" / "checkpoints" / "step-1"
    step.mkdir(parents=True)
    shutil.copy(hostile, step / ckpt.STATE_FILE)
    meta = {
        "global_step": 1,
        "saved_at": 0.0,
        "size": (step / ckpt.STATE_FILE).stat().st_size,
        "sha256": hashlib.sha256((step / ckpt.STATE_FILE).read_bytes()).hexdigest(),
    }
    (step / ckpt.META_FILE).write_text(json.dumps(meta))
    argv = train_argv(files["train_data"], tmp / "out", "--resume", str(step))
    assert _train([*argv, "--num_optim_steps", "2"]) == 1
    return capsys.readouterr().err + caplog.text


def _decode(argv_model: list[str], tmp: Path, capsys) -> str:
    src = tmp / "in.txt"
    src.write_text("hello there\n")
    out = tmp / "hyp.txt"
    argv = [*argv_model, "--input", str(src), "--output", str(out), "--max_new_tokens", "2"]
    assert decode.main(argv) == 2
    assert not out.exists()
    return capsys.readouterr().err


def _decode_init_checkpoint(hostile, files, tmp, capsys, caplog) -> str:
    model = ["--model_name_or_path", str(files["cfg"])]
    return _decode([*model, "--init_checkpoint", str(_with_sidecar(hostile))], tmp, capsys)


def _decode_model_folder(hostile, files, tmp, capsys, caplog) -> str:
    folder = _hf_folder_holding(hostile, files, tmp)
    return _decode(["--model_name_or_path", str(folder)], tmp, capsys)


def _chat_loader(hostile, files, tmp, capsys, caplog) -> str:
    args = argparse.Namespace(
        model_name_or_path=str(files["cfg"]),
        init_checkpoint=str(_with_sidecar(hostile)),
        random_init=False,
        mmi_model=None,
        device="cpu",
        dtype="float32",
    )
    with pytest.raises(ModelLoadError) as err:
        load_chat_model(args)
    return str(err.value)


def _demo_reuse(hostile, files, tmp, capsys, caplog) -> str:
    # A finished demo run whose hf_model/ holds the hostile weights.
    run_dir = tmp / "run"
    run_dir.mkdir()
    _hf_folder_holding(hostile, files, tmp).rename(run_dir / "hf_model")
    with pytest.raises(DemoError) as err:
        sample_conversation(run_dir, files["valid"], tmp / "sample.txt")
    assert not (tmp / "sample.txt").exists()
    return str(err.value)


def _db_reader(hostile, files, tmp, capsys, caplog) -> str:
    # A prepro database whose first chunk's bytes are the hostile pickle.
    db = tmp / "train.db"
    shutil.copytree(files["train_data"]["db"], db)
    with sqlite3.connect(db / "db.sqlite") as con:
        (table,) = con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchone()
        key = con.execute(f"SELECT key FROM {table} ORDER BY rowid LIMIT 1").fetchone()[0]
        con.execute(f"UPDATE {table} SET value = ? WHERE key = ?", (hostile.read_bytes(), key))
    with pytest.raises(DatabaseError) as err, FeatureDB(db) as reader:
        for _ in reader.iter_features():
            pass
    return str(err.value)


LOADERS: dict[str, Callable[..., str]] = {
    "load_model --init_checkpoint": _load_init_checkpoint,
    "LSP_train.py --init_checkpoint": _train_init_checkpoint,
    "LSP_train.py --resume": _train_resume,
    "decode.py --init_checkpoint": _decode_init_checkpoint,
    "decode.py --model_name_or_path": _decode_model_folder,
    "chat loader": _chat_loader,
    "demo reuse": _demo_reuse,
    "db reader": _db_reader,
}


def test_the_hostile_files_really_run_code(tmp_path):
    # Read without protection (as torch.load(weights_only=False) would), each file runs its
    # code: the refusals below are what keeps the marker away.
    for name, build in HOSTILE.items():
        marker = tmp_path / f"{name}.ran"
        data = build(marker)
        if name.startswith("torch"):
            torch.load(io.BytesIO(data), weights_only=False)
        else:
            pickle.loads(data)
        assert marker.exists(), name


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("hostile_kind", HOSTILE)
def test_hostile_file_is_refused_without_running(
    hostile_kind,
    loader,
    model_files,
    train_data,
    tmp_path,
    capsys,
    caplog,
):
    marker = tmp_path / "marker"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(HOSTILE[hostile_kind](marker))
    files = {**model_files, "train_data": train_data}
    message = LOADERS[loader](hostile, files, tmp_path, capsys, caplog)
    assert not marker.exists(), f"{loader} ran the code in {hostile_kind}"
    assert "Traceback" not in message
    assert "weights_only" not in message  # torch's advice to turn the protection off
    if loader == "db reader":
        assert "train.db" in message and "chunk" in message
        # refused by its checksum before it is even decoded (tests/lsp_data/test_db.py
        # covers a database without checksums, refused for the pickle itself)
        assert "SHA-256" in message and "allow_pickle" not in message, message
    else:
        assert "refused to load" in message and "could run code" in message, message
        assert str(tmp_path) in message  # names the file


# ----------------------------------------------------------------------------- damage


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


DAMAGE = {"flipped byte": _flip, "truncated": _truncate, "missing": Path.unlink}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_pkl_is_detected(damage, model_files, tmp_path, capsys):
    pkl = tmp_path / model_files["pkl"].name
    shutil.copy(model_files["pkl"], pkl)
    shutil.copy(model_files["pkl"].with_name(pkl.name + ".sha256"), tmp_path)
    DAMAGE[damage](pkl)
    err = _decode(
        ["--model_name_or_path", str(model_files["cfg"]), "--init_checkpoint", str(pkl)],
        tmp_path,
        capsys,
    )
    expected = "does not exist" if damage == "missing" else "checksum mismatch"
    assert err.count("\n") == 1 and f"{pkl}" in err and expected in err, err


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_hf_model_is_detected(damage, model_files, tmp_path, capsys):
    hf = tmp_path / "hf_model"
    shutil.copytree(model_files["hf"], hf)
    DAMAGE[damage](hf / "model.safetensors")
    err = _decode(["--model_name_or_path", str(hf)], tmp_path, capsys)
    expected = "listed in" if damage == "missing" else "checksum mismatch"
    assert err.count("\n") == 1 and f"{hf / 'model.safetensors'}" in err and expected in err, err
    # training from it is refused too, rather than starting from random weights
    with pytest.raises(ModelLoadError, match=expected):
        load_model(hf)


@pytest.mark.parametrize("damage", [*DAMAGE, "meta.json missing"])
def test_damaged_resumable_checkpoint_is_detected(damage, tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 3, {"model": _weights(), "global_step": 3}, keep=2)
    state = folder / ckpt.STATE_FILE
    if damage == "meta.json missing":
        (folder / ckpt.META_FILE).unlink()
        expected = "incomplete checkpoint"
    else:
        DAMAGE[damage](state)
        expected = {
            "flipped byte": "checksum mismatch",
            "truncated": "bytes, the checkpoint recorded",
            "missing": "is missing",
        }[damage]
    with pytest.raises(ckpt.CheckpointError, match=expected) as err:
        ckpt.load_checkpoint(folder)
    assert str(folder) in str(err.value)
