"""Talk to a model: a terminal chat, or a web page with --web.

    python chat.py --model_name_or_path RUN/hf_model
    python chat.py --model_name_or_path configs/117M --init_checkpoint RUN/GP2-pretrain-step-N.pkl
    python chat.py --model_name_or_path microsoft/DialoGPT-small --method sample --top_p 0.9
    python chat.py --model_name_or_path RUN/hf_model --web --port 7860

Each reply continues the conversation so far, joined the DialoGPT way (turn<eos>turn<eos>)
and cut to the model's window by dropping the oldest turns. Greedy and sampled replies are
shown token by token as they are made; beam search and MMI reranking choose among whole
replies, so theirs appear at once. Sampling is reseeded with --seed before every reply: the
same conversation with the same settings gets the same replies.

In the terminal: /settings shows the decoding settings and `/settings name=value ...` changes
them, /reset starts a new conversation, /quit or Ctrl-D ends.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from typing import TextIO

from lsp_data.tokenizer import TokenizerError
from lsp_decode.common import (
    add_decoding_arguments,
    add_model_arguments,
    add_runtime_arguments,
)
from lsp_decode.conversation import (
    NOT_STREAMED_NOTE,
    ChatModel,
    ChatSettings,
    load_chat_model,
    parse_setting,
)
from lsp_model.errors import ModelLoadError

PROG = "chat.py"


# ----------------------------------------------------------------------------- terminal

HELP = """\
  /settings                 show the decoding settings
  /settings name=value ...  change them, e.g. /settings method=sample top_p=0.9 seed=1
  /reset                    forget the conversation
  /quit  (or Ctrl-D)        leave"""


class TerminalChat:
    """The conversation loop: read a line, stream the reply, keep the history."""

    def __init__(
        self,
        bot: ChatModel,
        settings: ChatSettings,
        max_input_chars: int,
        read: Callable[[str], str] = input,
        out: TextIO = sys.stdout,
    ) -> None:
        self.bot = bot
        self.settings = settings
        self.max_input_chars = max_input_chars
        self.read = read
        self.out = out
        self.history: list[str] = []

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def run(self) -> int:
        self.say(f"Chatting with {self.bot.name} ({self.bot.origin}).")
        self.say("Type a message; /settings, /reset, /quit or Ctrl-D.")
        if not self.settings.streams:
            self.say(f"Note: {NOT_STREAMED_NOTE}.")
        while True:
            try:
                line = self.read("you> ")
            except EOFError:
                self.say()
                self.say("bye")
                return 0
            text = line.strip()
            if text.startswith("/"):
                if not self.command(text):
                    return 0
                continue
            problem = self.bot.input_problem(line, self.settings, self.max_input_chars)
            if problem is not None:
                if text:
                    self.say(problem)
                continue
            self.respond(text)

    def respond(self, text: str) -> None:
        self.history.append(text)
        shown = ""
        self.say("bot> ", end="")
        reply = ""
        try:
            for reply in self.bot.reply(self.history, self.settings):
                if reply.startswith(shown):
                    self.say(reply[len(shown) :], end="")
                else:  # the finished text differs from the streamed one: show it whole
                    self.say("\n     " + reply, end="")
                shown = reply
        except ValueError as err:  # a setting the model refuses, e.g. its positions
            self.history.pop()
            self.say(f"\n(no reply: {err})")
            return
        self.say("" if reply else "(an empty reply)")
        self.history.append(reply)

    def command(self, text: str) -> bool:
        """Run a /command; False when the chat should end."""
        name, *rest = text.split()
        if name in ("/quit", "/exit"):
            self.say("bye")
            return False
        if name == "/reset":
            self.history.clear()
            self.say("(conversation cleared)")
        elif name == "/settings":
            self.change_settings(rest)
        elif name == "/help":
            self.say(HELP)
        else:
            self.say(f"unknown command {name}; one of:\n{HELP}")
        return True

    def change_settings(self, assignments: list[str]) -> None:
        new = self.settings
        try:
            for assignment in assignments:
                new = parse_setting(new, assignment)
            if new.mmi and self.bot.reverse is None:
                raise ValueError("mmi: start the chat with --mmi_model to rerank replies")
            new.check()
            self.bot.context_budget(new)
        except ValueError as err:
            self.say(f"settings unchanged: {err}")
            return
        self.settings = new
        self.say("Decoding settings:")
        self.say(new.describe())
        if not new.streams:
            self.say(f"Note: {NOT_STREAMED_NOTE}.")


# ----------------------------------------------------------------------------- command line


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in --help."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=_HelpFormatter)
    add_model_arguments(p)
    add_decoding_arguments(p)
    add_runtime_arguments(p, seed_help="random seed for sampling, set again before every reply")
    p.add_argument(
        "--max_input_chars",
        type=int,
        default=1000,
        help="longest message accepted; a longer one is refused with a message",
    )
    web = p.add_argument_group("web page (needs the `web` extra: pip install -e '.[web]')")
    web.add_argument("--web", action="store_true", help="serve a chat page instead")
    web.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 makes the page reachable from other machines",
    )
    web.add_argument("--port", type=int, default=7860, help="port to listen on")
    web.add_argument(
        "--queue_size",
        type=int,
        default=16,
        help="messages waiting for a reply at most; replies are made one at a time, and "
        "a message beyond the queue is refused (the model's memory is not shared)",
    )
    return p


def _settings_from(args: argparse.Namespace) -> ChatSettings:
    settings = ChatSettings.from_args(args)
    settings.mmi = bool(args.mmi_model)
    return settings


def _error(message: object) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _settings_from(args)
    try:
        settings.check()
        if args.max_input_chars < 1:
            raise ValueError(f"--max_input_chars must be >= 1, got {args.max_input_chars}")
        serve = None
        if args.web:
            if importlib.util.find_spec("gradio") is None:
                raise ValueError(
                    "--web needs Gradio, which is not installed: pip install -e '.[web]'"
                )
            from lsp_decode import web

            web.check_address(args.host, args.port, args.queue_size)
            serve = web.serve
        bot = load_chat_model(args)  # finds the model, then checks --device and --dtype
        bot.context_budget(settings)  # --max_new_tokens against the model's positions
    except (ValueError, OSError, ModelLoadError, TokenizerError) as err:
        return _error(err)
    if serve is not None:
        try:
            return serve(bot, settings, args)
        except (ValueError, OSError) as err:
            return _error(err)
    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:  # not on every platform; plain input() still works
        pass
    try:
        return TerminalChat(bot, settings, args.max_input_chars).run()
    except KeyboardInterrupt:
        print("\nbye", file=sys.stdout)
        return 130


if __name__ == "__main__":
    sys.exit(main())
