"""Fault-injection suite (issue 14): every test here carries the ``faults`` marker, and the
session ends with the kills tried per stage and where they landed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import harness

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not harness.TALLY:
        return
    mode = f"soak, {harness.KILLS_PER_STAGE}" if harness.SOAK else str(harness.KILLS_PER_STAGE)
    terminalreporter.write_sep("-", f"fault injection (seed {harness.SEED}, {mode} per stage)")
    for stage, counts in sorted(harness.TALLY.items()):
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        terminalreporter.write_line(f"{stage}: {detail}")
