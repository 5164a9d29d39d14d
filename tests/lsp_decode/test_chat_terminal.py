"""chat.py in a terminal, driven through a pseudo-terminal: type, read the screen."""

from __future__ import annotations

import pytest

from lsp_data.tokenizer import load_tokenizer
from lsp_model.decoding import generate_reply
from lsp_model.loading import load_model
from tests.lsp_decode.conftest import Terminal, chat_command, chat_env

pytestmark = pytest.mark.slow


def say(term: Terminal, text: str) -> tuple[str, int]:
    """Type ``text`` and Enter; return the reply and in how many reads it reached the screen."""
    term.type(text + "\r")
    term.wait_for("bot> ")
    reads_before = len(term.reads)
    reply = term.wait_for("\n").rstrip("\r\n")  # the rest of the reply's line
    pieces = len(term.reads) - reads_before
    term.wait_for("you> ")
    return reply, pieces


def test_two_turns_stream_and_settings_reset_quit(chat_model):
    model = load_model(str(chat_model["config"]), str(chat_model["pkl"]))
    tokenizer = load_tokenizer()
    expected_first = generate_reply(model, tokenizer, ["hello there"], max_new_tokens=12)
    term = Terminal(
        chat_command(
            "--model_name_or_path",
            str(chat_model["config"]),
            "--init_checkpoint",
            str(chat_model["pkl"]),
            "--max_new_tokens",
            "12",
            "--device",
            "cpu",
        ),  # fmt: skip
        chat_env(),
    )
    try:
        banner = term.wait_for("you> ", timeout=120)
        assert "GP2-pretrain-step-1.pkl" in banner and "checkpoint" in banner

        first, pieces = say(term, "hello there")
        assert first == expected_first and first
        # Streamed: the reply reached the screen in several pieces, not as one line.
        assert pieces >= 3, term.reads[-pieces:]

        second, _ = say(term, "how are you ?")
        history = ["hello there", first, "how are you ?"]
        assert second == generate_reply(model, tokenizer, history, max_new_tokens=12)
        assert second != generate_reply(model, tokenizer, ["how are you ?"], max_new_tokens=12)

        term.type("/settings\r")
        shown = term.wait_for("you> ")
        assert "method = greedy" in shown and "max_new_tokens = 12" in shown

        term.type("/settings method=beam num_beams=0\r")
        assert "settings unchanged: num_beams must be >= 1" in term.wait_for("you> ")

        term.type("/reset\r")
        assert "(conversation cleared)" in term.wait_for("you> ")
        fresh, _ = say(term, "how are you ?")
        assert fresh == generate_reply(model, tokenizer, ["how are you ?"], max_new_tokens=12)

        term.type("/quit\r")
        term.wait_for("bye")
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()


def test_ctrl_d_ends_the_chat(chat_model):
    term = Terminal(
        chat_command("--model_name_or_path", str(chat_model["hf"]), "--device", "cpu"),
        chat_env(),
    )
    try:
        term.wait_for("you> ", timeout=120)
        term.type("\x04")  # Ctrl-D on an empty line: end of input
        term.wait_for("bye")
        assert term.proc.wait(timeout=30) == 0
        assert "Traceback" not in term.screen
    finally:
        term.close()
