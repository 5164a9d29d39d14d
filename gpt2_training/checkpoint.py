"""What a run writes to disk and reads back: state-dict .pkl files and resumable checkpoints.

A resumable checkpoint is a folder ``RUN/checkpoints/step-N/`` holding ``training_state.pt``
(model, optimizer, loss scaler, every rank's RNG states and data position) and
``meta.json`` (step, size and SHA-256 of the state file). It is written under a temporary
name and renamed when complete, so a run killed at any moment leaves either the whole
checkpoint or none; a damaged one is detected by its checksum and skipped.
Everything is read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from lsp_common.atomic import atomic_folder, is_leftover, remove_folder
from lsp_common.checksums import sidecar_path
from lsp_model.loading import torch_save_to

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "training_state.pt"
META_FILE = "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or damaged."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_of(folder: Path) -> int:
    try:
        return int(folder.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _sweep_leftovers(root: Path) -> None:
    """Remove what a killed writer can leave: temp folders, trash, ``step-N`` without meta."""
    for entry in root.iterdir():
        if not entry.is_dir():
            continue
        if is_leftover(entry):
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith("step-") and not (entry / META_FILE).is_file():
            logger.warning("removing incomplete checkpoint %s", entry)
            remove_folder(entry)


def save_checkpoint(
    run_dir: str | os.PathLike[str], global_step: int, state: dict[str, Any], keep: int
) -> Path:
    """Write ``RUN/checkpoints/step-N`` atomically, then drop all but the newest ``keep``.

    Only one process may write a run's checkpoints (rank 0), so anything half-written in
    the folder belongs to a run that was killed and is removed here.
    """
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{global_step}"
    # Peak disk: at most ``keep`` complete checkpoints plus the one being written.
    for old in _make_room(list_checkpoints(run_dir), global_step, keep):
        remove_folder(old)
    with atomic_folder(final) as tmp:
        with open(tmp / STATE_FILE, "wb") as f:
            torch_save_to(state, f)
            f.flush()
            os.fsync(f.fileno())
        meta = {
            "global_step": global_step,
            "saved_at": time.time(),
            "size": (tmp / STATE_FILE).stat().st_size,
            "sha256": _sha256(tmp / STATE_FILE),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for old in list_checkpoints(run_dir)[:-keep]:
        remove_folder(old)
    _sweep_leftovers(root)
    logger.info("checkpoint %s saved; %s", final, disk_use_line(run_dir))
    return final


def _make_room(complete: list[Path], new_step: int, keep: int) -> list[Path]:
    """The oldest of ``complete`` (oldest first) to delete before writing step ``new_step``,
    so that ``keep`` remain once it is written: at most ``keep - 1`` others, and never the
    last complete one (a save that then fails would leave nothing to resume from)."""
    others = [p for p in complete if _step_of(p) != new_step]
    excess = len(others) - max(keep - 1, 1)
    return others[: max(excess, 0)]


def weights_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """A run's ``GP2-pretrain-step-N.pkl`` files, oldest step first."""
    found = []
    for path in Path(run_dir).glob("GP2-pretrain-step-*.pkl"):
        try:
            found.append((int(path.name[len("GP2-pretrain-step-") : -len(".pkl")]), path))
        except ValueError:
            continue
    return [path for _, path in sorted(found)]


def prune_weights(run_dir: str | os.PathLike[str], new_step: int, keep: int) -> list[Path]:
    """Before writing ``GP2-pretrain-step-{new_step}.pkl``: delete the oldest .pkl files so
    that ``keep`` remain after it, never the newest one already written. Returns what
    was deleted."""
    others = [p for p in weights_files(run_dir) if p.name != f"GP2-pretrain-step-{new_step}.pkl"]
    doomed = others[: max(len(others) - max(keep - 1, 1), 0)]
    for path in doomed:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)  # its .sha256 goes with it
    return doomed


def sweep_run_leftovers(*folders: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary and trash files and folders a killed run left in ``folders``
    (``.GP2-pretrain-step-N.pkl.tmp-*``, ``.hf_model.tmp-*``, ``.trash-*``) and in their
    ``checkpoints/``. Only one process writes a run folder, so none of them is in use."""
    removed = []
    for folder in folders:
        root = Path(folder)
        for parent in (root, root / CHECKPOINTS):
            if not parent.is_dir():
                continue
            for entry in parent.iterdir():
                if not is_leftover(entry):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    if removed:
        logger.info(
            "removed %d leftover(s) of an interrupted run: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


def disk_use(folder: str | os.PathLike[str]) -> int:
    """Bytes in the files under ``folder`` (files removed meanwhile are skipped)."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def disk_use_line(run_dir: str | os.PathLike[str]) -> str:
    return f"run folder uses {disk_use(run_dir) / 1e6:.1f} MB"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint folders of a run that have their meta.json, oldest step first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / META_FILE).is_file() and _step_of(p) >= 0]
    return sorted(found, key=_step_of)


def load_checkpoint(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify and load a checkpoint folder's training state (weights-only unpickling)."""
    folder = Path(folder)
    meta_path, state_path = folder / META_FILE, folder / STATE_FILE
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    if not meta_path.is_file():
        raise CheckpointError(f"{folder}: incomplete checkpoint (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{meta_path}: unreadable ({err})") from None
    if not state_path.is_file():
        raise CheckpointError(f"{folder}: {STATE_FILE} is missing")
    size = state_path.stat().st_size
    if size != meta.get("size"):
        raise CheckpointError(
            f"{state_path}: {size} bytes, the checkpoint recorded {meta.get('size')}"
        )
    if _sha256(state_path) != meta.get("sha256"):
        raise CheckpointError(f"{state_path}: checksum mismatch, the file is damaged")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "refuse"
        from lsp_model.loading import unpickling_refusal  # torch's advice left out

        raise CheckpointError(unpickling_refusal(state_path, err)) from None
    state["checkpoint"] = str(folder)
    return state


def _candidates(spec: str, output_dir: str | None) -> list[Path]:
    """Checkpoints to try for ``--resume spec``, best first."""
    if spec == "latest":
        if not output_dir or not Path(output_dir).is_dir():
            return []
        found = [
            c for run in Path(output_dir).iterdir() if run.is_dir() for c in list_checkpoints(run)
        ]

        def saved_at(c: Path) -> tuple[float, int]:
            try:
                return json.loads((c / META_FILE).read_text())["saved_at"], _step_of(c)
            except (OSError, ValueError, KeyError):
                return 0.0, _step_of(c)

        return sorted(found, key=saved_at, reverse=True)
    path = Path(spec)
    if (path / CHECKPOINTS).is_dir():  # a run folder: its newest checkpoint first
        return list_checkpoints(path)[::-1]
    if path.name.startswith("step-") and path.parent.name == CHECKPOINTS:
        older = [c for c in list_checkpoints(path.parent.parent) if _step_of(c) < _step_of(path)]
        return [path, *older[::-1]]
    return [path]


def newest_checkpoint(output_dir: str | None) -> Path | None:
    """What ``--resume latest`` would try first under ``output_dir``, if anything."""
    found = _candidates("latest", output_dir)
    return found[0] if found else None


def resolve_resume(spec: str, output_dir: str | None) -> tuple[Path, dict[str, Any]]:
    """Load the checkpoint ``--resume`` means, falling back past damaged ones with a warning."""
    if spec != "latest" and not os.path.exists(spec):
        raise CheckpointError(
            f"--resume {spec}: does not exist (give a checkpoint folder RUN/checkpoints/step-N, "
            "a run folder, or 'latest')"
        )
    candidates = _candidates(spec, output_dir)
    if not candidates:
        where = f"under {output_dir}" if spec == "latest" else spec
        raise CheckpointError(f"--resume {spec}: no complete checkpoint {where}")
    for candidate in candidates:
        try:
            return candidate, load_checkpoint(candidate)
        except CheckpointError as err:
            logger.warning("refusing checkpoint: %s; trying an older one", err)
    raise CheckpointError(f"--resume {spec}: every checkpoint found is incomplete or damaged")
