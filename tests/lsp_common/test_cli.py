"""lsp_common.cli: one line and an exit status for user errors, booleans written as words."""

from __future__ import annotations

import argparse

import pytest

from lsp_common.cli import UserError, parse_bool, run_cli


class FailedWork(UserError):
    exit_status = 1
    label = "error (--strict)"


def test_user_errors_give_one_line_and_their_status(capsys: pytest.CaptureFixture) -> None:
    def bad_option() -> None:
        raise UserError("--x: must be positive, got -1")

    def bad_record() -> None:
        raise FailedWork("in.tsv:3: no tab")

    assert run_cli("tool", bad_option, "nothing written") == 2
    assert capsys.readouterr().err == "tool: error: --x: must be positive, got -1\n"
    assert run_cli("tool", bad_record, "nothing written") == 1
    assert capsys.readouterr().err == "tool: error (--strict): in.tsv:3: no tab\n"


def test_os_errors_interrupts_and_return_values(capsys: pytest.CaptureFixture) -> None:
    def missing() -> None:
        raise FileNotFoundError(2, "No such file or directory", "in.tsv")

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert run_cli("tool", missing, "") == 1
    assert "tool: error: [Errno 2] No such file or directory: 'in.tsv'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        run_cli("tool", missing, "", report_os_errors=False)
    assert run_cli("tool", interrupted, "out.tsv was not written") == 130
    assert capsys.readouterr().err == "tool: interrupted; out.tsv was not written\n"
    assert run_cli("tool", lambda: 3, "") == 3
    assert run_cli("tool", lambda: None, "") == 0
    assert run_cli("tool", lambda: True, "") == 0  # a truth value is not a status


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("True", True), (" YES ", True), ("1", True), ("on", True), ("t", True)]
    + [("false", False), ("False", False), ("no", False), ("0", False), ("off", False)]
    + [("f", False), (True, True), (False, False)],
)
def test_parse_bool_words(word: str | bool, value: bool) -> None:
    assert parse_bool(word) is value


@pytest.mark.parametrize("word", ["maybe", "2", "truee", "-1", ""])
def test_parse_bool_refuses_other_words(word: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"expected true or false, got '{word}'"):
        parse_bool(word)
