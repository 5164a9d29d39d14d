"""conv's four outputs change as one set: a run killed between two renames never leaves a
mix of old and new files that looks complete, and the rerun writes exactly what an
uninterrupted run writes (docs/REFERENCE.md §9)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from reddit_extractor.conv import CONV_OUTPUTS, conv_complete

from .helpers import PUBLISHED, REDDIT_PY, listdir, run, write_dumps, write_lists
from .test_rules import COMMENTS, MONTH, SUBS

NAMES = [MONTH + ext for ext in CONV_OUTPUTS]
MARKER = NAMES[-1]

# Runs reddit.py with os.replace / os.remove wrapped: after each step that changes a visible
# file of the conv folder it records the folder's state (name -> sha256), and at step
# KILL_AT it SIGKILLs itself, which no cleanup code can see coming.
KILLER = textwrap.dedent(
    """
    import hashlib, json, os, runpy, signal, sys

    conv_dir, kill_at, states, reddit_py = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    real_replace, real_remove = os.replace, os.remove
    steps = 0

    def step(path):
        global steps
        path = os.path.abspath(path)
        if os.path.dirname(path) != conv_dir or os.path.basename(path).startswith("."):
            return
        steps += 1
        state = {}
        for name in sorted(os.listdir(conv_dir)):
            if not name.startswith("."):
                with open(os.path.join(conv_dir, name), "rb") as fh:
                    state[name] = hashlib.sha256(fh.read()).hexdigest()
        with open(states, "a") as fh:
            fh.write(json.dumps(state) + "\\n")
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        step(dst)

    def remove(path, *args, **kwargs):
        real_remove(path, *args, **kwargs)
        step(path)

    os.replace, os.remove = replace, remove
    sys.argv = [reddit_py, *sys.argv[5:]]
    runpy.run_path(reddit_py, run_name="__main__")
    """
)


def digests(conv: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((conv / name).read_bytes()).hexdigest()
        for name in listdir(conv)
        if not name.startswith(".")
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An extracted month with an old complete conv set (other options), and the reference
    outputs of an uninterrupted conv with the published options."""
    tmp = tmp_path_factory.mktemp("set")
    inp = write_dumps(tmp, MONTH, SUBS, COMMENTS)
    words, subs = write_lists(tmp)
    new_args = [*PUBLISHED, "--bl_words", str(words), "--bl_subreddits", str(subs)]
    old = tmp / "old"
    assert run(MONTH, "--task", "extract", "--reddit_input", inp, "--reddit_output", old) == 0
    ref = tmp / "ref"
    shutil.copytree(old, ref)
    assert run(MONTH, "--task", "conv", "--reddit_output", ref, *new_args) == 0
    assert run(MONTH, "--task", "conv", "--reddit_output", old, "--use_title", "1") == 0
    old_set, new_set = digests(old / "conv"), digests(ref / "conv")
    assert sorted(old_set) == sorted(new_set) == sorted(NAMES)
    # every file differs between the two runs, so a mix is visible file by file
    assert all(old_set[n] != new_set[n] for n in NAMES)
    return old, new_args, old_set, new_set, {n: (ref / "conv" / n).read_bytes() for n in NAMES}


def conv_killed_at(out: Path, kill_at: int, new_args: list[str], tmp: Path):
    states = tmp / f"states{kill_at}.jsonl"
    killer = tmp / "killer.py"
    killer.write_text(KILLER)
    r = subprocess.run(
        [
            sys.executable,
            str(killer),
            str((out / "conv").resolve()),
            str(kill_at),
            str(states),
            str(REDDIT_PY),
            MONTH,
            "--task",
            "conv",
            "--reddit_output",
            str(out),
            *new_args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return r, [json.loads(line) for line in states.read_text().splitlines()]


def test_every_intermediate_state_is_old_new_or_incomplete(runs, tmp_path):
    old, new_args, old_set, new_set, _ = runs
    out = tmp_path / "out"
    shutil.copytree(old, out)
    r, states = conv_killed_at(out, 0, new_args, tmp_path)  # 0: never killed
    assert r.returncode == 0, r.stderr
    # the old marker goes first, then the three files, the new marker last
    assert len(states) == 5
    assert [MARKER in s for s in states] == [False, False, False, False, True]
    assert states[-1] == new_set
    mixed = 0
    for state in states:
        if MARKER in state:  # what a reader takes as complete: one run's set, whole
            assert state in (old_set, new_set)
        else:
            mixed += any(state.get(n) == old_set[n] for n in NAMES) and any(
                state.get(n) == new_set[n] for n in NAMES
            )
    assert mixed >= 2  # the renames did pass through mixed sets, all unmarked


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])
def test_kill_between_renames_then_rerun(runs, tmp_path, kill_at):
    old, new_args, old_set, new_set, ref_bytes = runs
    out = tmp_path / "out"
    shutil.copytree(old, out)
    conv = out / "conv"
    r, states = conv_killed_at(out, kill_at, new_args, tmp_path)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = digests(conv)
    assert states[-1] == left
    # killed after the old marker went and (kill_at - 1) files were renamed
    assert [n for n in NAMES if left.get(n) == new_set[n]] == NAMES[: kill_at - 1]
    assert [n for n in NAMES if left.get(n) == old_set[n]] == NAMES[kill_at - 1 : -1]
    assert MARKER not in left and not conv_complete(str(out), MONTH)
    assert any(n.startswith(".") for n in listdir(conv))  # the killed run's work folder
    # the rerun: the same bytes as an uninterrupted run, and the leftovers cleaned away
    assert run(MONTH, "--task", "conv", "--reddit_output", out, *new_args) == 0
    assert listdir(conv) == sorted(NAMES)
    assert {n: (conv / n).read_bytes() for n in NAMES} == ref_bytes
    assert conv_complete(str(out), MONTH)


def test_rename_failure_leaves_set_incomplete(runs, tmp_path, monkeypatch, capsys):
    """A rename that fails (e.g. a full disk, here the second one) is reported in one line,
    and the half-replaced set is not marked complete."""
    old, new_args, old_set, _, ref_bytes = runs
    out = tmp_path / "out"
    shutil.copytree(old, out)
    conv = (out / "conv").resolve()
    real_replace = os.replace
    moved = []

    def failing_replace(src, dst, *args, **kwargs):
        if os.path.dirname(os.path.abspath(dst)) == str(conv):
            if moved:
                raise OSError(28, "No space left on device", src, None, dst)
            moved.append(dst)
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing_replace)
    assert run(MONTH, "--task", "conv", "--reddit_output", out, *new_args) == 2
    err = capsys.readouterr().err
    assert f"cannot write {conv / NAMES[1]}: No space left on device" in err
    assert "Traceback" not in err
    assert not conv_complete(str(out), MONTH)
    assert listdir(conv) == sorted(NAMES[:-1])  # no temporaries left behind
    monkeypatch.setattr(os, "replace", real_replace)
    assert run(MONTH, "--task", "conv", "--reddit_output", out, *new_args) == 0
    assert {n: (conv / n).read_bytes() for n in NAMES} == ref_bytes
