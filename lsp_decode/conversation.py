"""A conversation with a model, whatever shows it: settings, the context window, replies
that stream as they are made. The terminal (chat.py) and the web page (web.py) both use it."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsp_decode.common import (
    DecodingSettings,
    check_device,
    check_dtype,
    load_for_decoding,
    mmi_pick,
)
from lsp_model.decoding import generate_reply

if TYPE_CHECKING:
    from lsp_model.modeling import GPT2LMHeadModel

STREAMED_METHODS = ("greedy", "sample")
NOT_STREAMED_NOTE = (
    "beam search and MMI reranking choose among whole replies, so they cannot stream token "
    "by token: the whole reply appears at once"
)


@dataclass
class ChatSettings(DecodingSettings):
    """decode.py's settings, plus the sampling seed and whether MMI reranking is on."""

    seed: int = 42
    mmi: bool = False

    def check(self, mmi: bool | None = None) -> None:
        super().check(self.mmi if mmi is None else mmi)

    @property
    def streams(self) -> bool:
        return self.method in STREAMED_METHODS and not self.mmi

    def describe(self) -> str:
        return "\n".join(f"  {f.name} = {_show(getattr(self, f.name))}" for f in fields(self))


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def parse_setting(settings: ChatSettings, assignment: str) -> ChatSettings:
    """``settings`` with one ``name=value`` applied (not yet range-checked)."""
    name, sep, raw = assignment.partition("=")
    name, raw = name.strip(), raw.strip()
    known = {f.name: f for f in fields(settings)}
    if not sep or name not in known:
        raise ValueError(
            f"{assignment!r}: expected name=value with a name among {', '.join(known)}"
        )
    kind = type(getattr(settings, name))
    value: Any
    try:
        if kind is bool:
            if raw.lower() not in ("on", "off", "true", "false", "1", "0"):
                raise ValueError
            value = raw.lower() in ("on", "true", "1")
        elif kind is int:
            value = int(raw)
        elif kind is float:
            value = float(raw)
        else:
            value = raw
    except ValueError:
        want = {bool: "on or off", int: "an integer", float: "a number"}[kind]
        raise ValueError(f"{name}: {raw!r} is not {want}") from None
    return replace(settings, **{name: value})


class ChatModel:
    """A loaded model (and, for MMI, its backward model) that replies to conversations.

    Holds no conversation: the terminal keeps one, the web page one per visitor.
    """

    def __init__(
        self,
        model: GPT2LMHeadModel,
        tokenizer,
        reverse: GPT2LMHeadModel | None = None,
        name: str = "",
        origin: str = "",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.reverse = reverse
        self.name = name
        self.origin = origin

    def context_budget(self, settings: DecodingSettings) -> int:
        """Context tokens a reply may see: --max_context_tokens, and what the model's
        positions leave after --max_new_tokens."""
        n_positions = getattr(self.model.config, "n_positions", None)
        if n_positions is None:
            return settings.max_context_tokens
        if settings.max_new_tokens >= n_positions:
            raise ValueError(
                f"max_new_tokens={settings.max_new_tokens} leaves no room for context in the "
                f"model's {n_positions} positions"
            )
        return min(settings.max_context_tokens, n_positions - settings.max_new_tokens)

    def turn_tokens(self, turn: str) -> int:
        """Tokens ``turn`` takes in the context, its closing <|endoftext|> included."""
        return len(self.tokenizer.encode(turn.strip(), add_special_tokens=False)) + 1

    def window(self, history: Sequence[str], settings: DecodingSettings) -> list[str]:
        """The newest turns that fit the context budget together (at least the last one).

        Whole turns are dropped from the start, so the model never sees half a turn; a last
        turn longer than the budget alone is cut from the left by generate_reply.
        """
        budget = self.context_budget(settings)
        kept: list[str] = []
        used = 0
        for turn in reversed(history):
            used += self.turn_tokens(turn)
            if kept and used > budget:
                break
            kept.append(turn)
        return kept[::-1]

    def input_problem(self, text: str, settings: DecodingSettings, max_chars: int) -> str | None:
        """Why ``text`` cannot be the next user turn, or None when it can."""
        if not text.strip():
            return "Type a message first."
        if len(text) > max_chars:
            return (
                f"Your message is {len(text)} characters long; this chat takes at most "
                f"{max_chars} (--max_input_chars). Shorten it and send it again."
            )
        budget = self.context_budget(settings)
        if self.turn_tokens(text) > budget:
            return (
                f"Your message is {self.turn_tokens(text)} tokens long; the model reads at "
                f"most {budget} tokens of context with max_new_tokens={settings.max_new_tokens}"
                ". Shorten it and send it again."
            )
        return None

    def reply(self, history: Sequence[str], settings: ChatSettings) -> Iterator[str]:
        """The reply to ``history`` (which ends with the user's turn), as it grows.

        Yields the reply so far, stripped; the last value is the finished reply. Greedy
        and sampling yield once per word or so; beam search and MMI reranking once.
        """
        context = self.window(history, settings)
        options = settings.generation_options()
        options["max_context_tokens"] = self.context_budget(settings)
        import torch

        torch.manual_seed(settings.seed)
        if settings.mmi and self.reverse is not None:
            yield mmi_pick(
                self.model,
                self.reverse,
                self.tokenizer,
                context,
                replace(settings, max_context_tokens=options["max_context_tokens"]),
                batch_size=settings.mmi_candidates,
            )
            return
        if not settings.streams:
            yield generate_reply(
                self.model, self.tokenizer, context, method=settings.method, **options
            )
            return
        yield from self._streamed(context, settings.method, options)

    def _streamed(self, context: list[str], method: str, options: dict) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        outcome: dict[str, object] = {}

        def run() -> None:
            try:
                outcome["reply"] = generate_reply(
                    self.model, self.tokenizer, context, method=method, streamer=streamer, **options
                )
            except BaseException as err:  # noqa: BLE001 - handed to the reading thread
                outcome["error"] = err
                streamer.end()  # the reader would otherwise wait for tokens forever

        # generate() runs in a thread and feeds the streamer; this thread reads it.
        worker = threading.Thread(target=run, name="chat-generate", daemon=True)
        worker.start()
        text = ""
        for chunk in streamer:
            text += chunk
            if text.strip():
                yield text.strip()
        worker.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        yield str(outcome["reply"])


# ----------------------------------------------------------------------------- loading


def describe_origin(name: str, checkpoint: str | None, source: Path | None) -> str:
    """Where the weights came from, in words, for the banner and the page header."""
    if checkpoint:
        return f"checkpoint {checkpoint} with the config in {source}"
    if source is not None and not Path(name).expanduser().is_dir():
        return f"hub model {name}, from the local Hugging Face cache ({source})"
    return f"Hugging Face folder {source}"


def load_chat_model(args: argparse.Namespace) -> ChatModel:
    from lsp_model.hub import resolve_model_source

    source = resolve_model_source(args.model_name_or_path)  # a missing model: before torch
    args.device = check_device(args.device)
    dtype = check_dtype(args.dtype, args.device)
    random_init = getattr(args, "random_init", False)
    model, tokenizer = load_for_decoding(
        args.model_name_or_path, args.init_checkpoint, args.device, dtype, random_init
    )
    reverse = None
    if args.mmi_model:
        reverse = load_for_decoding(args.mmi_model, None, args.device, dtype, random_init)[0]
    name = args.model_name_or_path
    if args.init_checkpoint:
        name = Path(args.init_checkpoint).name
    return ChatModel(
        model,
        tokenizer,
        reverse,
        name=name,
        origin=describe_origin(args.model_name_or_path, args.init_checkpoint, source),
    )
