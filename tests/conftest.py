"""Shared fixtures: tiny corpora and databases made in temp dirs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# Scripts the tests start in subprocesses (reddit_extractor/src/*.py, dstc/*.py) import the
# toolkit's packages from this checkout, whether or not it is installed (pip install -e .).
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)
# Under CI a skipped test is a failure: a skip there means a feature went untested (a missing
# tool or data file), not that it works. Tests marked ``gpu`` may skip: CI has no GPU.
STRICT_SKIPS = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# The imports that cost seconds: commands check their options, and find models, without them.
HEAVY_MODULES = ("torch", "transformers")
# Code for a child interpreter: which of HEAVY_MODULES it has imported so far.
HEAVY_LOADED = f"[name for name in {HEAVY_MODULES!r} if name in sys.modules]"

# A command's main(argv) in a fresh interpreter: what it returns (or exits with), the last
# line it wrote to stderr, and which heavy modules it had imported by then.
_MAIN_IN_CHILD = f"""
import contextlib, importlib, io, json, sys
main = importlib.import_module(sys.argv[1]).main
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
        status = main(sys.argv[2:])
    except SystemExit as stop:
        status = stop.code
loaded = {HEAVY_LOADED}
print(json.dumps([status, (err.getvalue().strip().splitlines() or [""])[-1], loaded]))
"""


def main_in_child(module: str, *argv: str) -> list:
    """``[status, last stderr line, heavy modules imported]`` of ``module.main(argv)``."""
    proc = subprocess.run(
        [sys.executable, "-c", _MAIN_IN_CHILD, module, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if (
        STRICT_SKIPS
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("gpu") is None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where a skip hides a feature: {reason}"
    return report


WORDS = (
    "hello there how are you doing today fine thanks what about the weather it is "
    "sunny and warm i like tea coffee please tell me more about your day"
).split()


def write_corpus(
    path: Path, n_lines: int, seed: int = 0, max_turns: int = 5, max_words: int = 12
) -> Path:
    """A weighted training tsv of random multi-turn conversations."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        turns = []
        for _ in range(rng.randint(1, max_turns)):
            weight = rng.choice(["0.0", "1.0", "1.0"])
            turns.append(weight + " " + " ".join(rng.choices(WORDS, k=rng.randint(1, max_words))))
        response = "1.0 " + " ".join(rng.choices(WORDS, k=rng.randint(1, max_words)))
        lines.append(" EOS ".join(turns) + "\t" + response)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "train.tsv", 300)


@pytest.fixture
def small_db(corpus: Path) -> Path:
    from lsp_data.prepro import run_prepro

    folder, _ = run_prepro(
        str(corpus), max_seq_len=64, chunk_size=100, progress=False, log=lambda m: None
    )
    return folder


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
