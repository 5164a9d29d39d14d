"""gpt2_training.checkpoint: atomic saves, pruning, leftovers of killed runs, verification."""

from __future__ import annotations

import pytest
import torch

from gpt2_training import checkpoint as ckpt


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the raise point runs."""


def _state(step: int) -> dict:
    return {"global_step": step, "weights": torch.full((3,), float(step))}


def _names(run) -> list[str]:
    return sorted(p.name for p in (run / ckpt.CHECKPOINTS).iterdir())


def test_save_keeps_newest_and_loads_back(tmp_path):
    for step in (2, 4, 6, 8):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=2)
    assert _names(tmp_path) == ["step-6", "step-8"]
    state = ckpt.load_checkpoint(tmp_path / "checkpoints" / "step-8")
    assert state["global_step"] == 8 and torch.equal(state["weights"], torch.full((3,), 8.0))


def test_kill_while_pruning_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path, 2, _state(2), keep=2)
    ckpt.save_checkpoint(tmp_path, 4, _state(4), keep=2)

    # The process dies inside the deletion of step-2, after part of it is gone.
    def killed_rmtree(path, ignore_errors=False):
        for f in sorted(path.iterdir()):
            if f.name == ckpt.META_FILE:
                f.unlink()
        raise Killed

    monkeypatch.setattr(ckpt.shutil, "rmtree", killed_rmtree)
    with pytest.raises(Killed):
        ckpt.save_checkpoint(tmp_path, 6, _state(6), keep=2)
    monkeypatch.undo()

    # What is visible as a checkpoint is complete; the half-deleted folder is hidden.
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-4", "step-6"]
    assert any(n.startswith(".trash-step-2") for n in _names(tmp_path))
    # The resumed run's next save sweeps it.
    ckpt.save_checkpoint(tmp_path, 8, _state(8), keep=2)
    assert _names(tmp_path) == ["step-6", "step-8"]


def test_next_save_sweeps_leftovers_of_older_crashes(tmp_path):
    root = tmp_path / ckpt.CHECKPOINTS
    root.mkdir()
    (root / ".step-3.tmp-dead").mkdir()  # save interrupted before rename
    (root / "step-1").mkdir()  # partial: no meta.json
    (root / "step-1" / ckpt.STATE_FILE).write_bytes(b"x")
    (root / ".trash-step-0-dead").mkdir()  # deletion interrupted
    (root / "notes.txt").write_text("a user's file stays")
    ckpt.save_checkpoint(tmp_path, 4, _state(4), keep=3)
    assert _names(tmp_path) == ["notes.txt", "step-4"]


def test_overwriting_the_same_step_replaces_it(tmp_path):
    ckpt.save_checkpoint(tmp_path, 4, _state(4), keep=2)
    ckpt.save_checkpoint(tmp_path, 4, {"global_step": 4, "weights": torch.zeros(3)}, keep=2)
    assert _names(tmp_path) == ["step-4"]
    assert torch.equal(
        ckpt.load_checkpoint(tmp_path / "checkpoints" / "step-4")["weights"], torch.zeros(3)
    )


def test_damaged_and_incomplete_checkpoints_are_refused(tmp_path):
    folder = ckpt.save_checkpoint(tmp_path, 2, _state(2), keep=2)
    state_file = folder / ckpt.STATE_FILE
    data = bytearray(state_file.read_bytes())
    data[-10] ^= 0xFF
    state_file.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        ckpt.load_checkpoint(folder)
    state_file.write_bytes(b"short")
    with pytest.raises(ckpt.CheckpointError, match="bytes, the checkpoint recorded"):
        ckpt.load_checkpoint(folder)
    (folder / ckpt.META_FILE).unlink()
    with pytest.raises(ckpt.CheckpointError, match="incomplete checkpoint"):
        ckpt.load_checkpoint(folder)


def test_resume_latest_falls_back_past_a_damaged_newest(tmp_path):
    run = tmp_path / "run"
    for step in (2, 4):
        ckpt.save_checkpoint(run, step, _state(step), keep=5)
    (run / "checkpoints" / "step-4" / ckpt.STATE_FILE).write_bytes(b"garbage")
    folder, state = ckpt.resolve_resume("latest", str(tmp_path))
    assert folder.name == "step-2" and state["global_step"] == 2
