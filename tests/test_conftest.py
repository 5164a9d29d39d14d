"""The suite's own rule: under CI=true a skip fails, except for tests marked ``gpu``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CASES = """
import pytest

def test_skipped():
    pytest.skip("tool missing")

@pytest.mark.gpu
def test_gpu_only():
    pytest.skip("no CUDA device")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_passes():
    pass
"""


def run_cases(tmp_path: Path, ci: str | None) -> dict[str, int]:
    (tmp_path / "test_cases.py").write_text(CASES, encoding="utf-8")
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    counts.pop("warning", None)
    counts.pop("warnings", None)
    return counts


def test_skips_are_skips_outside_ci(tmp_path: Path) -> None:
    assert run_cases(tmp_path, None) == {"passed": 1, "skipped": 2, "xfailed": 1}


def test_a_skip_fails_under_ci_unless_marked_gpu(tmp_path: Path) -> None:
    counts = run_cases(tmp_path, "true")
    assert counts == {"failed": 1, "passed": 1, "skipped": 1, "xfailed": 1}
