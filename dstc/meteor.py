"""METEOR 1.5 through the real jar (``java -jar meteor-1.5.jar``), all references of a
segment scored together."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from lsp_common.cli import UserError

JAR_ENV = "DSTC_METEOR_JAR"
JAR_NAME = "meteor-1.5.jar"


class MeteorUnavailable(UserError, RuntimeError):
    """Java or the jar is missing, or the jar did not report a score."""

    exit_status = 1
    label = "error: METEOR"


def find_meteor_jar(explicit: str | os.PathLike | None = None) -> Path:
    """The jar named by ``explicit``, else by $DSTC_METEOR_JAR, else the one shipped in the
    ``pycocoevalcap`` package (which also ships the ``data/paraphrase-en.gz`` it needs)."""
    chosen = explicit or os.environ.get(JAR_ENV)
    if chosen:
        jar = Path(chosen)
        if not jar.is_file():
            source = "--meteor_jar" if explicit else f"${JAR_ENV}"
            raise MeteorUnavailable(f"METEOR jar {jar} (from {source}) does not exist")
        return jar
    try:
        spec = importlib.util.find_spec("pycocoevalcap")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        jar = Path(root) / "meteor" / JAR_NAME
        if jar.is_file():
            return jar
    raise MeteorUnavailable(
        f"{JAR_NAME} not found: install pycocoevalcap, or point ${JAR_ENV} or --meteor_jar at the jar"
    )


def find_java(java: str | None = None) -> str:
    found = shutil.which(java or "java")
    if not found:
        raise MeteorUnavailable(f"java executable {java or 'java'!r} not found on PATH")
    return found


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when this process dies (Linux),
    so that a scorer killed with SIGKILL does not leave a JVM running for minutes; None
    elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the death signal was set
            os._exit(1)

    return preexec


def parse_final_score(output: str) -> float:
    for line in output.splitlines():
        if "Final score:" in line:
            return float(line.split()[-1])
    raise MeteorUnavailable("METEOR output has no 'Final score:' line")


def meteor(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    jar: str | os.PathLike | None = None,
    java: str | None = None,
    norm: bool = True,
    lang: str = "en",
    heap: str = "2G",
    timeout: float | None = None,
) -> float:
    """Corpus METEOR of ``hyps`` where ``refs[i]`` are the references of segment ``i``
    (same count for every segment, the jar's ``-r N`` layout)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    n_refs = len(refs[0]) if refs else 0
    if n_refs == 0 or any(len(r) != n_refs for r in refs):
        raise ValueError("every segment needs the same, non-zero number of references")
    jar_path = find_meteor_jar(jar)
    java_exe = find_java(java)
    for text in list(hyps) + [r for seg in refs for r in seg]:
        if "\n" in text or "\r" in text:
            raise ValueError("a hypothesis or reference contains a line break")
    with tempfile.TemporaryDirectory(prefix="dstc_meteor_") as tmp:
        hyp_path = Path(tmp) / "hyp.txt"
        ref_path = Path(tmp) / "refs.txt"
        hyp_path.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        ref_path.write_text("".join(r + "\n" for seg in refs for r in seg), encoding="utf-8")
        cmd = [
            java_exe,
            f"-Xmx{heap}",
            "-jar",
            str(jar_path),
            str(hyp_path),
            str(ref_path),
            "-l",
            lang,
            "-r",
            str(n_refs),
        ]
        if norm:
            cmd.append("-norm")
        try:
            proc = subprocess.run(
                cmd, capture_output=True, timeout=timeout, preexec_fn=die_with_parent()
            )
        except subprocess.TimeoutExpired:
            raise MeteorUnavailable(f"METEOR did not finish within {timeout} s") from None
        out = proc.stdout.decode("utf-8", "replace")
        try:
            return parse_final_score(out)
        except MeteorUnavailable:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
            raise MeteorUnavailable(
                f"METEOR exited with status {proc.returncode} and no score: " + " | ".join(err)
            ) from None
