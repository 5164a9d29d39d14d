"""Multi-process training on CPU (gloo): DDP equals one process, launchers, faults, exact resume."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lsp_data.prepro import run_prepro
from lsp_model.loading import load_model, load_state_dict_file
from tests.conftest import REPO, write_corpus
from tests.gpt2_training.conftest import read_csv, train_argv

pytestmark = pytest.mark.slow

SCRIPT = str(REPO / "LSP_train.py")


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(
    nproc: int,
    argv: list[str],
    *,
    launcher: str = "torchrun",
    timeout: int = 240,
    env: dict[str, str] | None = None,
    script: tuple[str, ...] = (SCRIPT,),
) -> subprocess.CompletedProcess:
    """Start LSP_train.py on ``nproc`` CPU processes with torchrun or torch.distributed.launch."""
    if launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--rdzv_backend=c10d",
            "--rdzv_endpoint=127.0.0.1:0",
        ]
    else:  # the legacy launcher passes --local-rank=K to the script
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.launch",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
        ]
    cmd += [f"--nproc_per_node={nproc}", *script, *argv]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env or _env(), cwd=REPO
    )


def rank_aligned_db(root: Path, world: int, accum: int, micro: int) -> Path:
    """A database of ``world`` chunks of ``accum * micro`` features each.

    Without shuffling, rank r of ``world`` reads chunk r, i.e. exactly one optimizer
    step's worth of batches per epoch, while one process with ``accum * world`` passes
    reads chunks 0..world-1 in order: both see the same batches at every step.
    """
    write_corpus(root / "c.tsv", world * accum * micro, seed=4, max_turns=3, max_words=8)
    db, meta = run_prepro(
        str(root / "c.tsv"),
        max_seq_len=64,
        chunk_size=accum * micro,
        progress=False,
        log=lambda m: None,
    )
    assert meta["n_example"] == world * accum * micro  # one feature per line
    return db


def _argv(train_data, db: Path, out: Path, batch: int, accum: int, steps: int, *extra: str):
    argv = train_argv(
        train_data,
        out,
        "--num_optim_steps",
        str(steps),
        "--valid_step",
        str(steps),
        "--shuffle_data",
        "false",
        "--skip_eval",
        *extra,
    )
    argv[argv.index("--train_input_file") + 1] = str(db)
    argv[argv.index("--train_batch_size") + 1] = str(batch)
    argv[argv.index("--gradient_accumulation_steps") + 1] = str(accum)
    return argv


def _final_weights(out: Path, steps: int) -> dict[str, torch.Tensor]:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return load_state_dict_file(run / f"GP2-pretrain-step-{steps}.pkl")


@pytest.mark.parametrize(
    "world, accum, micro, extra",
    [
        (2, 2, 4, ()),
        (3, 1, 3, ()),
        (2, 2, 2, ("--gradient_checkpointing", "true")),  # recomputation under DDP and no_sync
    ],
)
def test_processes_equal_one_process(train_data, tmp_path, world, accum, micro, extra):
    db = rank_aligned_db(tmp_path, world, accum, micro)
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    steps = 3
    result = torchrun(world, _argv(train_data, db, ddp_out, accum * micro, accum, steps, *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    single_argv = _argv(train_data, db, single_out, world * accum * micro, world * accum, steps)
    single_run = subprocess.run(
        [sys.executable, SCRIPT, *single_argv],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert single_run.returncode == 0, single_run.stderr[-3000:]
    ddp, single = _final_weights(ddp_out, steps), _final_weights(single_out, steps)
    torch.manual_seed(42)
    start = load_model(str(train_data["model"])).state_dict()
    for key in single:
        assert torch.allclose(ddp[key], single[key], atol=1e-6, rtol=0), key
    assert any(not torch.allclose(single[k], start[k], atol=1e-4) for k in single)  # it trained
    (run,) = list(ddp_out.iterdir())  # one run folder, one set of logs
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".txt") == ["train_log.txt"]
    _, rows = read_csv(run / "train_log.txt")
    assert len(rows) == steps and f".{world}gpu." in run.name
    _, single_rows = read_csv(next(single_out.iterdir()) / "train_log.txt")
    # token counts are summed over ranks, loss means averaged: both runs saw the same batches
    assert [r[6] for r in rows] == [r[6] for r in single_rows]
    for r, s in zip(rows, single_rows):
        assert abs(float(r[3]) - float(s[3])) < 1e-5


@pytest.fixture(scope="module")
def uniform_db(tmp_path_factory) -> Path:
    return rank_aligned_db(tmp_path_factory.mktemp("aligned"), 2, 1, 4)


def test_launch_style_local_rank_flag(train_data, uniform_db, tmp_path):
    result = torchrun(2, _argv(train_data, uniform_db, tmp_path, 4, 1, 2), launcher="launch")
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = list(tmp_path.iterdir())
    assert "2gpu" in run.name and (run / "GP2-pretrain-step-2.pkl").is_file()


def test_one_rank_failing_ends_the_job(train_data, uniform_db, tmp_path):
    failing = (str(Path(__file__).with_name("failing_train.py")), "1", "2")  # rank 1, step 2
    start = time.time()
    argv = _argv(train_data, uniform_db, tmp_path, 4, 1, 50)
    result = torchrun(2, argv, timeout=180, script=failing)
    assert result.returncode != 0
    assert time.time() - start < 180
    assert "[rank 1/2]" in result.stderr and "injected failure" in result.stderr


def _children_with_rank(pid: int) -> dict[int, int]:
    """{rank: pid} of the worker processes a launcher started."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for item in environ:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(child)
    return found


def test_killed_worker_ends_the_job(train_data, uniform_db, tmp_path):
    argv = _argv(train_data, uniform_db, tmp_path, 4, 1, 100000)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=127.0.0.1:0",
        "--nproc_per_node=2",
        SCRIPT,
        *argv,
    ]
    proc = subprocess.Popen(
        cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("*/train_log.txt")):
            time.sleep(0.1)
        while (
            time.time() < deadline
            and len(list(tmp_path.glob("*/train_log.txt"))[0].read_text().splitlines()) < 3
        ):
            time.sleep(0.1)
        workers = _children_with_rank(proc.pid)
        assert set(workers) == {0, 1}
        os.kill(workers[1], signal.SIGKILL)
        start = time.time()
        assert proc.wait(timeout=120) != 0
        assert time.time() - start < 120
    finally:
        if proc.poll() is None:
            proc.kill()


def _losses(run: Path) -> list[str]:
    _, rows = read_csv(run / "train_log.txt")
    return [r[3] for r in rows]


def _train_subprocess(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, SCRIPT, *argv],
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_sigkill_then_resume_matches_uninterrupted_run(train_data, tmp_path):
    # All three runs in subprocesses with the same thread count, so float32 results are
    # bit-for-bit comparable.
    steps = 12
    common = (
        "--num_optim_steps",
        str(steps),
        "--valid_step",
        "4",
        "--save_step",
        "2",
        "--keep_checkpoints",
        "2",
    )
    full_out, killed_out = tmp_path / "full", tmp_path / "killed"
    _train_subprocess(train_argv(train_data, full_out, *common))
    (full_run,) = list(full_out.iterdir())
    reference = _losses(full_run)
    assert len(reference) == steps

    proc = subprocess.Popen(
        [sys.executable, SCRIPT, *train_argv(train_data, killed_out, *common)],
        env=_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 180
    while time.time() < deadline and not list(killed_out.glob("*/checkpoints/step-6/meta.json")):
        if proc.poll() is not None:
            pytest.fail(f"training ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    (run,) = list(killed_out.iterdir())
    assert not (run / f"GP2-pretrain-step-{steps}.pkl").exists(), "killed too late to test resume"

    _train_subprocess(train_argv(train_data, killed_out, *common, "--resume", "latest"))
    assert list(killed_out.iterdir()) == [run]  # continued in the same run folder
    assert _losses(run) == reference  # step for step, exactly
    _, eval_rows = read_csv(run / "eval_log.txt")
    assert [int(r[1]) for r in eval_rows] == [4, 8, 12]
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step-10", "step-12"]  # --keep_checkpoints 2


def test_damaged_checkpoint_falls_back_to_previous(train_data, tmp_path, capsys):
    import LSP_train

    common = ("--num_optim_steps", "4", "--valid_step", "4", "--save_step", "2", "--skip_eval")
    run = LSP_train.main(train_argv(train_data, tmp_path, *common))
    newest = run / "checkpoints" / "step-4" / "training_state.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    (run / "checkpoints" / ".step-6.tmp-dead").mkdir()  # an interrupted save
    argv = train_argv(
        train_data, tmp_path, *common, "--resume", str(run / "checkpoints" / "step-4")
    )
    argv[argv.index("--num_optim_steps") + 1] = "5"
    assert LSP_train.main(argv) == run
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "step-2" in err
    _, rows = read_csv(run / "train_log.txt")
    assert [int(r[1]) for r in rows] == [1, 2, 3, 4, 5]  # rows 3-4 retrained after step 2


def test_resume_without_checkpoint_is_a_clear_error(train_data, tmp_path, capsys):
    import LSP_train

    assert LSP_train.main(train_argv(train_data, tmp_path, "--resume", "latest")) == 1
    assert "no complete checkpoint" in capsys.readouterr().err


def test_launch_mistakes_are_refused_before_joining(monkeypatch):
    from gpt2_training.distributed import LaunchError, init_distributed

    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(LaunchError, match="RANK/WORLD_SIZE/MASTER_ADDR are not set"):
        init_distributed(0, "auto")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LaunchError, match="nccl needs CUDA GPUs"):
        init_distributed(0, "nccl")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(LaunchError, match="local rank 2 has no GPU: this node shows 2"):
        init_distributed(-1, "auto")
