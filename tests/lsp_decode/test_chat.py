"""The chat's pieces in one process: window, input cap, settings, replies, model kinds, bad input."""

from __future__ import annotations

import io
import socket
from dataclasses import replace

import pytest
import torch

from lsp_data.tokenizer import load_tokenizer
from lsp_decode import chat
from lsp_decode.common import mmi_pick
from lsp_decode.conversation import ChatModel, ChatSettings, parse_setting
from lsp_model.decoding import encode_history, generate_reply
from lsp_model.loading import load_model
from tests.conftest import REPO, main_in_child
from tests.lsp_decode.conftest import HUB_NAME

SETTINGS = ChatSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def bot(chat_model) -> ChatModel:
    return ChatModel(load_model(str(chat_model["hf"])), load_tokenizer())


def test_window_keeps_the_newest_whole_turns(bot):
    tok = bot.tokenizer
    history = [f"turn number {i} of a long chat" for i in range(30)]
    per_turn = len(tok.encode(history[0])) + 1  # 8 tokens and its <|endoftext|>
    assert bot.context_budget(SETTINGS) == 128 - 12  # the model's positions less the reply
    assert bot.context_budget(replace(SETTINGS, max_context_tokens=40)) == 40
    kept = bot.window(history, replace(SETTINGS, max_context_tokens=4 * per_turn))
    assert kept == history[-4:]
    kept = bot.window(history, replace(SETTINGS, max_context_tokens=4 * per_turn - 1))
    assert kept == history[-3:]
    assert bot.window(history, SETTINGS) == history[-(116 // per_turn) :]
    assert bot.window(["a b c d e f"], replace(SETTINGS, max_context_tokens=2)) == ["a b c d e f"]
    with pytest.raises(ValueError, match="leaves no room"):
        bot.context_budget(replace(SETTINGS, max_new_tokens=128))


def test_input_cap(bot):
    assert bot.input_problem("hello", SETTINGS, max_chars=5) is None
    assert "6 characters long; this chat takes at most 5" in bot.input_problem(
        "hello!", SETTINGS, max_chars=5
    )
    assert bot.input_problem("   ", SETTINGS, max_chars=5) == "Type a message first."
    words = " ".join(["hello"] * 30)  # 30 tokens and <|endoftext|>
    assert bot.input_problem(words, replace(SETTINGS, max_context_tokens=31), 1000) is None
    problem = bot.input_problem(words, replace(SETTINGS, max_context_tokens=30), 1000)
    assert "31 tokens long; the model reads at most 30" in problem


def test_parse_setting():
    s = ChatSettings()
    assert parse_setting(s, "top_p=0.5").top_p == 0.5
    assert parse_setting(s, "num_beams=3").num_beams == 3
    assert parse_setting(s, "method=beam").method == "beam"
    assert parse_setting(s, "mmi=on").mmi is True and parse_setting(s, "mmi=0").mmi is False
    assert s.top_p == 1.0  # a new value, the old one unchanged
    with pytest.raises(ValueError, match="num_beams: '2.5' is not an integer"):
        parse_setting(s, "num_beams=2.5")
    with pytest.raises(ValueError, match="mmi: 'maybe' is not on or off"):
        parse_setting(s, "mmi=maybe")
    with pytest.raises(ValueError, match="expected name=value"):
        parse_setting(s, "beams=2")
    with pytest.raises(ValueError, match="expected name=value"):
        parse_setting(s, "top_p")


def test_replies_stream_and_equal_generate_reply(bot):
    history = ["hello there"]
    grown = list(bot.reply(history, SETTINGS))
    final = generate_reply(bot.model, bot.tokenizer, history, max_new_tokens=12)
    assert grown[-1] == final and len(grown) >= 3  # word by word, then the finished reply
    assert all(final.startswith(part) for part in grown)
    beam = replace(SETTINGS, method="beam", num_beams=3)
    assert not beam.streams
    assert list(bot.reply(history, beam)) == [
        generate_reply(
            bot.model, bot.tokenizer, history, method="beam", num_beams=3, max_new_tokens=12
        )  # fmt: skip
    ]
    sample = replace(SETTINGS, method="sample", seed=5)
    first = list(bot.reply(history, sample))[-1]
    assert list(bot.reply(history, sample))[-1] == first  # reseeded before every reply
    assert list(bot.reply(history, replace(sample, seed=6)))[-1] != first
    torch.manual_seed(5)
    assert first == generate_reply(
        bot.model, bot.tokenizer, history, method="sample", max_new_tokens=12
    )


def test_reply_sees_only_the_window(bot, monkeypatch):
    seen = []
    original = bot.model.generate

    def spy(input_ids, **kwargs):
        seen.append(input_ids[0].tolist())
        return original(input_ids, **kwargs)

    monkeypatch.setattr(bot.model, "generate", spy)
    history = ["first turn here", "second", "third turn", "the last one"]
    two = sum(len(bot.tokenizer.encode(t)) + 1 for t in history[-2:])
    for budget, turns in ((two, 2), (two + 1, 2), (two + 2, 3)):  # "second" takes 2 tokens
        list(bot.reply(history, replace(SETTINGS, max_context_tokens=budget)))
        assert seen[-1] == encode_history(bot.tokenizer, history[-turns:])


def test_mmi_reply_is_the_reranked_pick(bot):
    mmi = ChatModel(bot.model, bot.tokenizer, reverse=bot.model)
    settings = replace(SETTINGS, mmi=True, mmi_candidates=4, seed=3)
    assert not settings.streams
    [reply] = list(mmi.reply(["hello there"], settings))
    torch.manual_seed(3)
    budget = replace(settings, max_context_tokens=116)
    assert reply == mmi_pick(bot.model, bot.model, bot.tokenizer, ["hello there"], budget, 4)


def test_reply_error_in_the_generating_thread_reaches_the_reader(bot, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(bot.model, "generate", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(bot.reply(["hello"], SETTINGS))


def run_terminal(bot, lines: list[str], settings=SETTINGS, max_chars=100) -> str:
    feed = iter(lines)

    def read(prompt: str) -> str:
        out.write(prompt)
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    assert chat.TerminalChat(bot, settings, max_chars, read=read, out=out).run() == 0
    return out.getvalue()


def test_terminal_commands_and_refusals(bot):
    screen = run_terminal(
        bot,
        ["", "x" * 101, "/settings mmi=on", "/settings top_p=2 method=sample", "/nope",
         "/settings method=beam", "hello there", "/help", "/exit"],
    )  # fmt: skip
    assert screen.count("bot> ") == 1
    assert "101 characters long; this chat takes at most 100" in screen
    assert "settings unchanged: mmi: start the chat with --mmi_model" in screen
    assert "settings unchanged: top_p must be in (0, 1], got 2.0" in screen
    assert "unknown command /nope" in screen
    assert "method = beam" in screen and "whole reply appears at once" in screen
    beam = generate_reply(bot.model, bot.tokenizer, ["hello there"], method="beam",
                          max_new_tokens=12)  # fmt: skip
    assert f"bot> {beam}\n" in screen
    assert screen.endswith("bye\n")


def test_model_kinds_and_where_they_came_from(chat_model, offline_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(chat_model["hub"]))
    common = ["--device", "cpu"]
    kinds = {
        "hf": ["--model_name_or_path", str(chat_model["hf"])],
        "pkl": [
            "--model_name_or_path",
            str(chat_model["config"]),
            "--init_checkpoint",
            str(chat_model["pkl"]),
        ],  # fmt: skip
        "hub": ["--model_name_or_path", HUB_NAME],
    }
    reference = ChatModel(load_model(str(chat_model["hf"])), load_tokenizer())
    expected = list(reference.reply(["hello there"], SETTINGS))[-1]
    for kind, argv in kinds.items():
        bot = chat.load_chat_model(chat.build_parser().parse_args(argv + common))
        assert list(bot.reply(["hello there"], SETTINGS))[-1] == expected, kind
        if kind == "hf":
            assert bot.origin == f"Hugging Face folder {chat_model['hf']}"
        elif kind == "pkl":
            assert bot.name == "GP2-pretrain-step-1.pkl"
            assert bot.origin.startswith(f"checkpoint {chat_model['pkl']} with the config")
        else:
            assert bot.name == HUB_NAME and "from the local Hugging Face cache" in bot.origin


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("chat.py: error: ")
    return err


def test_bad_input_is_one_line_and_exit_2(chat_model, tmp_path, capsys, monkeypatch):
    assert chat.main(["--model_name_or_path", str(tmp_path / "nope")]) == 2
    assert "does not exist" in one_error_line(capsys)

    not_a_model = tmp_path / "notes.pkl"
    torch.save({"step": 3}, not_a_model)
    argv = ["--model_name_or_path", str(chat_model["config"]), "--init_checkpoint"]
    assert chat.main([*argv, str(not_a_model)]) == 2
    assert "notes.pkl is not a plain state dict" in one_error_line(capsys)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert chat.main([*argv, str(text)]) == 2
    assert "notes.txt" in one_error_line(capsys)

    hf = ["--model_name_or_path", str(chat_model["hf"])]
    assert chat.main([*hf, "--max_new_tokens", "128"]) == 2
    assert "leaves no room for context" in one_error_line(capsys)
    assert chat.main([*hf, "--method", "sample", "--temperature", "0"]) == 2
    assert "temperature must be > 0" in one_error_line(capsys)
    assert chat.main([*hf, "--repetition_penalty", "0"]) == 2
    assert "repetition_penalty must be > 0" in one_error_line(capsys)
    assert chat.main([*hf, "--max_input_chars", "0"]) == 2
    assert "--max_input_chars must be >= 1" in one_error_line(capsys)


def test_help_and_option_mistakes_answer_before_torch_is_imported(tmp_path):
    assert main_in_child("chat", "--help") == [0, "", []]
    model = ["--model_name_or_path", str(tmp_path / "nope")]
    for extra, message in (
        (["--method", "sample", "--temperature", "0"], "temperature must be > 0"),
        (["--max_input_chars", "0"], "--max_input_chars must be >= 1"),
    ):
        status, line, loaded = main_in_child("chat", *model, *extra)
        assert (status, loaded) == (2, []) and message in line, (extra, line)
    # Finding the model needs no torch either (a hub name needs huggingface_hub only) ...
    status, line, loaded = main_in_child("chat", *model)
    assert (status, loaded) == (2, []) and "does not exist" in line, line
    # ... the device check is the first step that does.
    config_folder = ["--model_name_or_path", str(REPO / "configs" / "tiny")]
    status, line, loaded = main_in_child("chat", *config_folder, "--device", "bad")
    assert (status, loaded) == (2, ["torch"]) and "--device bad" in line, line


def test_web_port_in_use_and_gradio_missing(chat_model, capsys, monkeypatch):
    pytest.importorskip("gradio", reason="pip install -e '.[web]'")
    hf = ["--model_name_or_path", str(chat_model["hf"]), "--web"]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert chat.main([*hf, "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in one_error_line(capsys)
    assert chat.main([*hf, "--port", "70000"]) == 2
    assert "--port must be in 1..65535" in one_error_line(capsys)
    assert chat.main([*hf, "--queue_size", "0"]) == 2
    assert "--queue_size must be >= 1" in one_error_line(capsys)
    assert chat.main([*hf, "--host", "no-such-host.invalid"]) == 2
    assert "--host no-such-host.invalid" in one_error_line(capsys)

    real_find_spec = chat.importlib.util.find_spec
    monkeypatch.setattr(
        chat.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gradio" else real_find_spec(name, *a),
    )
    assert chat.main(hf) == 2
    assert "--web needs Gradio, which is not installed: pip install -e '.[web]'" in (
        one_error_line(capsys)
    )


def test_config_without_weights_needs_random_init(chat_model, capsys, caplog):
    config_only = ["--model_name_or_path", str(chat_model["config"]), "--device", "cpu"]
    assert chat.main(config_only) == 2
    err = one_error_line(capsys)
    assert str(chat_model["config"]) in err and "no weights" in err and "--random_init" in err
    bot = chat.load_chat_model(chat.build_parser().parse_args([*config_only, "--random_init"]))
    assert bot.model.config.n_layer == 2
    assert "decoding with random ones (--random_init)" in caplog.text
