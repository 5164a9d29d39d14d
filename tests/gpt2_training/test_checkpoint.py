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

    # The process dies inside the deletion of step-2 (made before step-6 is written, to
    # keep the peak at --keep_checkpoints), after part of it is gone.
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
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-4"]
    assert any(n.startswith(".trash-step-2") for n in _names(tmp_path))
    # The resumed run's next save sweeps it.
    ckpt.save_checkpoint(tmp_path, 6, _state(6), keep=2)
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


@pytest.mark.parametrize("keep, expected_peak", [(3, 3), (2, 2), (1, 2)])
def test_a_save_needs_room_for_keep_checkpoints_only(tmp_path, monkeypatch, keep, expected_peak):
    # Counted at the moment the new state file is written: complete checkpoints on disk
    # plus the one being written. keep=1 still keeps the only complete one until the new
    # one is done (a failed save must leave something to resume from).
    peaks = []
    real_save = torch.save

    def counting_save(obj, f, *args, **kwargs):
        peaks.append(len(ckpt.list_checkpoints(tmp_path)) + 1)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", counting_save)
    for step in range(1, 7):
        ckpt.save_checkpoint(tmp_path, step, _state(step), keep=keep)
    assert max(peaks) == expected_peak
    assert len(ckpt.list_checkpoints(tmp_path)) == keep


def test_weights_pruning_keeps_the_newest_and_never_the_only_one(tmp_path):
    for step in (5, 10, 15):
        (tmp_path / f"GP2-pretrain-step-{step}.pkl").write_bytes(b"w")
        (tmp_path / f"GP2-pretrain-step-{step}.pkl.sha256").write_bytes(b"sum")
    (tmp_path / "GP2-pretrain-step-x.pkl").write_bytes(b"not ours")
    deleted = ckpt.prune_weights(tmp_path, 20, keep=2)
    assert [p.name for p in deleted] == ["GP2-pretrain-step-5.pkl", "GP2-pretrain-step-10.pkl"]
    assert sorted(p.name for p in tmp_path.glob("*.sha256")) == ["GP2-pretrain-step-15.pkl.sha256"]
    assert [p.name for p in ckpt.weights_files(tmp_path)] == ["GP2-pretrain-step-15.pkl"]
    assert ckpt.prune_weights(tmp_path, 25, keep=1) == []  # the only one stays until replaced
    assert (tmp_path / "GP2-pretrain-step-x.pkl").exists()


def test_sweep_removes_leftovers_of_a_killed_run_only(tmp_path):
    run = tmp_path / "run"
    ckpt.save_checkpoint(run, 2, _state(2), keep=2)
    real = ["GP2-pretrain-step-2.pkl", "args.json", ".hidden_user_file"]
    for name in real:
        (run / name).write_bytes(b"keep me")
    (run / "hf_model").mkdir()
    (run / "hf_model" / "config.json").write_text("{}")
    leftovers = [
        run / ".GP2-pretrain-step-4.pkl.tmp-1a2b3c4d",
        run / ".hf_model.tmp-9f8e7d6c",
        run / ".trash-hf_model-12345678",
        run / "checkpoints" / ".step-4.tmp-abcdef12",
    ]
    leftovers[0].write_bytes(b"half")
    for folder in leftovers[1:]:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    removed = ckpt.sweep_run_leftovers(run)
    assert sorted(removed) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers)
    assert all((run / name).read_bytes() == b"keep me" for name in real)
    assert (run / "hf_model" / "config.json").exists()
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-2"]


def test_resume_of_a_path_that_does_not_exist_says_so(tmp_path):
    missing = tmp_path / "no_such_run" / "checkpoints" / "step-9"
    with pytest.raises(ckpt.CheckpointError, match=r"step-9: does not exist"):
        ckpt.resolve_resume(str(missing), str(tmp_path))
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint folder"):
        ckpt.load_checkpoint(missing)


def test_disk_use_counts_every_file(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"x" * 500)
    assert ckpt.disk_use(tmp_path) == 1500
    assert ckpt.disk_use_line(tmp_path) == "run folder uses 0.0 MB"
