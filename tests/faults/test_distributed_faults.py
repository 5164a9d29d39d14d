"""Faults in a 2-process CPU (gloo) run under torchrun: a rank killed mid-step or while a
checkpoint is written, the launcher's process group killed; then an exact resume.

The ranks run a wrapper of LSP_train.py (written to the test's folder) that can slow each
optimizer step (so a kill lands mid-run, without changing any number) and hold rank 0
inside a checkpoint save, after the state file is written and before it is complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.gpt2_training.conftest import TINY, read_csv
from tests.gpt2_training.test_distributed import (
    _argv,
    _children_with_rank,
    _env,
    rank_aligned_db,
)

STEPS = 10
DEADLINE_S = 60  # the bound for a job to end after a fault

WRAPPER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from gpt2_training import checkpoint, cli, trainer

    step_sleep = float(os.environ.get("FAULT_STEP_SLEEP", "0"))
    hold_at = os.environ.get("FAULT_HOLD_IN_CHECKPOINT")
    train_step, sha256 = trainer.train_step, checkpoint._sha256

    def slow_step(run, progress, stream):
        time.sleep(step_sleep)
        return train_step(run, progress, stream)

    def held_sha256(path):
        # inside save_checkpoint: the state file is written, meta.json is not
        if hold_at and path.parent.name.startswith(f".step-{hold_at}.tmp-"):
            Path(os.environ["FAULT_MARKER"]).write_text(str(os.getpid()))
            time.sleep(600)
        return sha256(path)

    trainer.train_step, checkpoint._sha256 = slow_step, held_sha256
    cli.run()
    """
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dist_faults")
    wrapper = root / "fault_train.py"
    wrapper.write_text(WRAPPER)
    model = root / "tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY))
    db = rank_aligned_db(root, 2, 1, 4)
    # --skip_eval: the validation file is never read
    data = {"model": model, "db": db, "valid": root / "unused.tsv"}
    return {"root": root, "wrapper": wrapper, "db": db, "data": data}


def _job_argv(setup: dict, out: Path, *extra: str) -> list[str]:
    argv = _argv(setup["data"], setup["db"], out, 4, 1, STEPS, "--save_step", "2", *extra)
    argv[argv.index("--valid_step") + 1] = str(STEPS)
    argv += ["--keep_checkpoints", "2"]
    return argv


def _start(setup: dict, argv: list[str], **fault_env: str) -> subprocess.Popen:
    """torchrun with 2 CPU ranks, as the leader of its own process group."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=127.0.0.1:0",
        "--nproc_per_node=2",
        str(setup["wrapper"]),
        *argv,
    ]
    env = dict(_env(), **fault_env)
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _run(setup: dict, argv: list[str]) -> str:
    proc = _start(setup, argv)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _rows(out: Path) -> list[list[str]]:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    _, rows = read_csv(run / "train_log.txt")
    return [r[:7] for r in rows]  # epoch time aside


@pytest.fixture(scope="module")
def reference(setup) -> list[list[str]]:
    out = setup["root"] / "uninterrupted"
    _run(setup, _job_argv(setup, out))
    rows = _rows(out)
    assert len(rows) == STEPS
    return rows


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the job ended early: {proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            pytest.fail("the job did not get there in time")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped running


def _ends_after_fault(proc: subprocess.Popen) -> str:
    start = time.time()
    out, _ = proc.communicate(timeout=DEADLINE_S + 30)
    assert time.time() - start < DEADLINE_S
    assert proc.returncode != 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("where", ["mid-step", "mid-checkpoint"])
def test_killed_rank_ends_the_job_and_resume_is_exact(setup, reference, tmp_path, where):
    out = tmp_path / "out"
    marker = tmp_path / "held"
    if where == "mid-step":
        proc = _start(setup, _job_argv(setup, out), FAULT_STEP_SLEEP="0.5")
        dead_rank = 1
        try:
            _wait_for(lambda: bool(list(out.glob("*/checkpoints/step-4/meta.json"))), proc)
            time.sleep(0.2)  # into the sleep-padded step after the save
            os.kill(_children_with_rank(proc.pid)[dead_rank], signal.SIGKILL)
            log = _ends_after_fault(proc)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc = _start(
            setup, _job_argv(setup, out), FAULT_HOLD_IN_CHECKPOINT="6", FAULT_MARKER=str(marker)
        )
        dead_rank = 0  # the only writer of checkpoints
        try:
            _wait_for(marker.exists, proc)
            assert int(marker.read_text()) == _children_with_rank(proc.pid)[dead_rank]
            os.kill(int(marker.read_text()), signal.SIGKILL)
            log = _ends_after_fault(proc)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        (run,) = out.iterdir()
        assert list((run / "checkpoints").glob(".step-6.tmp-*"))  # killed half-way
        assert not (run / "checkpoints" / "step-6").exists()
    # torchrun's failure report names the rank that died and how
    assert f"rank      : {dead_rank} (local_rank: {dead_rank})" in log, log[-3000:]
    assert "Signal 9 (SIGKILL)" in log

    (run,) = out.iterdir()
    assert not (run / f"GP2-pretrain-step-{STEPS}.pkl").exists(), "killed too late"
    _run(setup, _job_argv(setup, out, "--resume", "latest"))
    assert list(out.iterdir()) == [run]
    assert _rows(out) == reference  # step for step, bit for bit
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_killing_the_launchers_process_group_ends_every_rank(setup, tmp_path):
    out = tmp_path / "out"
    argv = _job_argv(setup, out)
    argv[argv.index("--num_optim_steps") + 1] = "100000"
    proc = _start(setup, argv, FAULT_STEP_SLEEP="0.2")
    ranks: dict[int, int] = {}
    try:
        _wait_for(lambda: bool(list(out.glob("*/checkpoints/step-2/meta.json"))), proc)
        ranks = _children_with_rank(proc.pid)
        assert set(ranks) == {0, 1}
        # torchrun starts the ranks in process groups of their own: this kill reaches
        # only the launcher
        assert all(os.getpgid(pid) != proc.pid for pid in ranks.values())
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + DEADLINE_S
        while any(_alive(pid) for pid in ranks.values()) and time.time() < deadline:
            time.sleep(0.1)
        assert not [r for r, pid in ranks.items() if _alive(pid)], "orphaned ranks train on"
        assert "the launcher (pid" in proc.stdout.read()
    finally:
        for pid in ranks.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_process_leaves_when_its_launcher_is_gone(tmp_path):
    # The watcher alone, without torch.distributed: a launcher starts a worker and dies.
    worker = textwrap.dedent(
        """
        import sys, time
        from gpt2_training.distributed import watch_launcher
        watch_launcher("worker", interval=0.05)
        print("watching", flush=True)
        time.sleep(60)
        """
    )
    launcher = textwrap.dedent(
        f"""
        import subprocess, sys
        worker = subprocess.Popen([sys.executable, "-c", {worker!r}], stdout=subprocess.PIPE)
        print(worker.pid, worker.stdout.readline().decode().strip(), flush=True)
        """
    )
    # the launcher prints the worker's pid once it watches, and exits, leaving it orphaned
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher],
        env=_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_text, state = proc.stdout.readline().split()
    pid = int(pid_text)
    assert state == "watching"
    proc.wait()
    deadline = time.time() + 20
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(pid), "the orphaned worker kept running"
        assert "the launcher (pid" in proc.stderr.read()
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
