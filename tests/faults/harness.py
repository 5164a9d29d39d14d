"""Fault-injection helpers: seeded kill points, subprocesses killed with SIGKILL, survivors of
a killed process, read-only and full file systems, and writes patched to fail.

Kill points come from a RNG seeded with ``FAULTS_SEED`` (default 14) and the stage's name, so
a failure is replayed by running the same test with the same seed. ``FAULTS_SOAK=1`` raises
the kill points per stage from 3 to ``FAULTS_SOAK_KILLS`` (default 20).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import glob
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("FAULTS_SOAK", "").strip().lower() not in ("", "0", "false", "no")
SEED = int(os.environ.get("FAULTS_SEED", "14"))
KILLS_PER_STAGE = int(os.environ.get("FAULTS_SOAK_KILLS", "20")) if SOAK else 3

# stage -> outcome -> count; printed at the end of the session (conftest.py), so that a soak
# run states how many kills each stage took and where they landed.
TALLY: dict[str, Counter[str]] = defaultdict(Counter)


def stage_rng(stage: str) -> random.Random:
    return random.Random(f"{SEED}:{stage}")


def kill_delays(stage: str, duration: float, n: int = KILLS_PER_STAGE) -> list[float]:
    """``n`` seeded delays spread over ``duration``: one uniform draw in each of ``n`` equal
    slices, so that start-up, the work and the final writes all get hit."""
    rng = stage_rng(stage)
    return [duration * (i + rng.random()) / n for i in range(n)]


def kill_fraction(stage: str, point: int) -> float:
    """Where kill point ``point`` of ``stage`` lands, as a fraction of the work (seeded)."""
    return stage_rng(f"{stage}:{point}").uniform(0.02, 0.98)


def bytes_under(*patterns: str) -> int:
    """Bytes in the files matching the glob ``patterns`` (0 for none): how far a writer got.
    Tests pass the temporary's pattern and the final name's, so that the kill point does not
    depend on the writer using a temporary at all."""
    total = 0
    for path in {p for pattern in patterns for p in glob.glob(pattern)}:
        with contextlib.suppress(OSError):
            if os.path.isfile(path):
                total += os.path.getsize(path)
    return total


def child_env(**extra: str) -> dict[str, str]:
    # One thread: float32 results of separate processes are then bit-for-bit comparable.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run_ok(
    cmd: Sequence[str], timeout: float = 300, output: Path | None = None
) -> tuple[str, float]:
    """Run ``cmd`` to the end; fails the test unless it exits 0. Returns its standard output
    and how long it took until ``output`` (a path or glob pattern) appeared (default: until it
    ended).

    Kill delays are spread over the time until the output appears: a process may spend a
    while after that tearing down, where a kill tests nothing.
    """
    start = time.monotonic()
    seconds = None
    with (
        open(os.devnull, "rb") as null,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdin=null, stdout=out, stderr=err, env=child_env(), cwd=REPO
        )
        while proc.poll() is None:
            if seconds is None and output is not None and glob.glob(str(output)):
                seconds = time.monotonic() - start
            if time.monotonic() - start > timeout:
                proc.kill()
                proc.wait()
                pytest.fail(f"{cmd[1:3]} still running after {timeout} s")
            time.sleep(0.005)
        if seconds is None:
            seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            pytest.fail(f"{cmd[1:3]} exited {proc.returncode}:\n{err.read().decode()[-3000:]}")
    return stdout, seconds


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (the killed process started one of its own)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (Z: a zombie, already dead), fields[3] the session id
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


@dataclass
class Killed:
    """What one kill did: whether it landed before the process ended by itself, when, and
    which of its processes outlived it (``grace`` seconds after the kill)."""

    landed: bool
    returncode: int
    at: float
    stderr: str
    survivors: list[int] = field(default_factory=list)


def kill_at_point(
    stage: str,
    point: int,
    cmd: Sequence[str],
    *,
    seconds: float,
    total_bytes: int,
    patterns: Sequence[str],
    log: Path,
    grace: float = 5.0,
) -> Killed:
    """Kill point ``point`` of ``stage``: odd points once the files matching ``patterns`` hold
    a seeded share of ``total_bytes`` (the kill must land), even ones after a seeded delay
    within ``seconds`` (the uninterrupted run's duration) and a tenth more."""
    if point % 2:
        share = kill_fraction(stage, point) * total_bytes
        killed = run_killed(
            cmd, when=lambda pid: bytes_under(*patterns) >= share, log=log, grace=grace
        )
        assert killed.landed, f"{stage}: the output never reached the kill point"
        return killed
    delay = kill_delays(stage, seconds * 1.1)[point]
    return run_killed(cmd, delay=delay, log=log, grace=grace)


def run_killed(
    cmd: Sequence[str],
    *,
    delay: float | None = None,
    when: Callable[[int], bool] | None = None,
    log: Path,
    timeout: float = 300,
    grace: float = 5.0,
    env: dict[str, str] | None = None,
) -> Killed:
    """Start ``cmd`` in a session of its own and SIGKILL its main process ``delay`` seconds
    after the start, or as soon as ``when(pid)`` is true (polled every millisecond).

    Only the main process gets the signal, as from the OOM killer or ``kill -9 PID``; its
    worker processes must notice by themselves. Any still alive ``grace`` seconds later are
    reported in ``survivors`` and then killed, so that no test leaves processes behind.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w+b") as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env or child_env(),
            cwd=REPO,
            start_new_session=True,
        )
        landed = False
        try:
            while proc.poll() is None:
                now = time.monotonic() - start
                if (delay is not None and now >= delay) or (when is not None and when(proc.pid)):
                    proc.send_signal(signal.SIGKILL)
                    landed = True
                    break
                if now > timeout:
                    pytest.fail(f"{cmd[1:3]} still running after {timeout} s")
                time.sleep(0.001)
            at = time.monotonic() - start
            proc.wait(timeout=30)
            deadline = time.monotonic() + grace
            survivors = session_members(proc.pid)
            while survivors and time.monotonic() < deadline:
                time.sleep(0.05)
                survivors = session_members(proc.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    # A process that ended by itself before the kill point must have succeeded.
    landed = landed and proc.returncode == -signal.SIGKILL
    if not landed and proc.returncode != 0:
        pytest.fail(f"{cmd[1:3]} failed before the kill ({proc.returncode}):\n{stderr[-3000:]}")
    return Killed(landed, proc.returncode, at, stderr, survivors)


def hidden_entries(root: Path) -> list[Path]:
    """Entries under ``root`` whose name starts with a dot: the temporaries, work folders and
    trash that a killed writer leaves (``.NAME.tmp-*``, ``.NAME.*.tmp``, ``.trash-*``).

    Safe while a writer is still running: os.walk passes over a folder renamed or removed
    mid-scan, where Path.rglob raised FileNotFoundError."""
    found = []
    for folder, dirs, files in os.walk(root):
        found.extend(Path(folder, name) for name in (*dirs, *files) if name.startswith("."))
    return sorted(found)


def visible_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` outside hidden folders, by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[str(rel)] = path.read_bytes()
    return out


# ---- resources: read-only and full file systems ------------------------------------------


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


def _umount(folder: Path) -> None:
    r = subprocess.run(["umount", str(folder)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:  # busy: detach now, the kernel frees it when the last user goes
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def write_refused(folder: Path) -> bool:
    try:
        (folder / ".probe").write_bytes(b"")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make ``folder`` (already holding what it should) read-only for the duration; yields
    how. As root, permissions do not stop writes, so a read-only bind mount is used; where
    ``mount`` is refused the test is skipped with the reason (``failing_writes`` covers the
    same code paths without mounts)."""
    if os.geteuid() != 0:
        mode = folder.stat().st_mode
        os.chmod(folder, 0o555)
        try:
            yield "chmod 0555"
        finally:
            os.chmod(folder, mode)
        return
    r = _mount("--bind", str(folder), str(folder))
    if r.returncode != 0:
        pytest.skip(f"read-only test needs `mount --bind` as root: {r.stderr.strip()}")
    try:
        r = _mount("-o", "remount,bind,ro", str(folder))
        if r.returncode != 0:
            pytest.skip(f"read-only test needs `mount -o remount,bind,ro`: {r.stderr.strip()}")
        assert write_refused(folder)
        yield "read-only bind mount"
    finally:
        _umount(folder)


@contextlib.contextmanager
def tmpfs(folder: Path, size_kib: int) -> Iterator[Callable[[int], None]]:
    """Mount a tmpfs of ``size_kib`` KiB on ``folder`` (a full disk waiting to happen);
    yields ``resize(kib)`` (frees space: ``mount -o remount,size=``). Skips with the reason
    where mounting is refused (``failing_writes`` covers the same code paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    r = _mount("-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder))
    if r.returncode != 0:
        pytest.skip(f"disk-full test needs `mount -t tmpfs` (root): {r.stderr.strip()}")

    def resize(kib: int) -> None:
        r = _mount("-o", f"remount,size={kib}k", str(folder))
        assert r.returncode == 0, r.stderr

    try:
        yield resize
    finally:
        _umount(folder)


def _is_write(mode: str | None, flags: int | None) -> bool:
    if flags is not None:
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
    return any(c in (mode or "r") for c in "wax+")


@contextlib.contextmanager
def failing_writes(under: Path, code: int = errno.ENOSPC) -> Iterator[list[str]]:
    """In this process, every attempt to create, open for writing, rename into or make a
    folder under ``under`` raises ``OSError(code)``, as a full (ENOSPC) or read-only (EROFS)
    file system would; yields the list of paths refused. C-level writers (sqlite, torch's
    zip writer) are reached only through a folder or file the toolkit makes first."""
    under = Path(os.path.realpath(under))
    refused: list[str] = []

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        p = Path(os.path.realpath(os.fsdecode(path)))
        return p == under or under in p.parents

    def refuse(path) -> None:
        refused.append(os.fsdecode(path))
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open
    real_mkdir, real_replace, real_rename = os.mkdir, os.replace, os.rename

    def fake_open(file, mode="r", *args, **kwargs):
        if _is_write(mode, None) and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if _is_write(None, flags) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def fake_replace(src, dst, *args, **kwargs):
        if inside(dst):
            refuse(dst)
        return real_replace(src, dst, *args, **kwargs)

    def fake_rename(src, dst, *args, **kwargs):
        if inside(dst):
            refuse(dst)
        return real_rename(src, dst, *args, **kwargs)

    patches = [
        (builtins, "open", fake_open),
        (io, "open", fake_open),
        (os, "open", fake_os_open),
        (os, "mkdir", fake_mkdir),
        (os, "replace", fake_replace),
        (os, "rename", fake_rename),
    ]
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    for mod, name, fake in patches:
        setattr(mod, name, fake)
    try:
        yield refused
    finally:
        for mod, name, real in saved:
            setattr(mod, name, real)


def assert_clear_error(rc: object, err: str, path: Path | str) -> None:
    """A failed run reported in a line that names ``path``, without a traceback."""
    assert rc not in (0, None) and not isinstance(rc, Path), f"exit {rc!r}:\n{err}"
    assert "Traceback" not in err, err
    assert str(path) in err, f"{path} not named in:\n{err}"


def python(*args: object) -> list[str]:
    return [sys.executable, *(str(a) for a in args)]
