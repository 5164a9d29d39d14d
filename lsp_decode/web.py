"""The chat as a web page (python chat.py --web): Gradio, the field's usual model demo.

Gradio is the optional `web` extra (pip install -e '.[web]'); only this module imports it.
The page never reaches beyond the machine: no analytics, no share link, no web fonts.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from lsp_decode.conversation import NOT_STREAMED_NOTE, ChatModel, ChatSettings
from lsp_model.decoding import METHODS

# Gradio reads these when imported; a chat page has no business calling home.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402 - after the environment above

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
SYSTEM_MONO = ["ui-monospace", "monospace"]
CSS = "#chat { min-height: 420px; } #notice p { margin: 0; }"


def check_address(host: str, port: int, queue_size: int) -> None:
    """Refuse a port or queue size the server could not use, before the model loads."""
    if not 1 <= port <= 65535:
        raise ValueError(f"--port must be in 1..65535, got {port}")
    if queue_size < 1:
        raise ValueError(f"--queue_size must be >= 1, got {queue_size}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ValueError(
            f"--host {host}: not an address of this machine ({err.strerror})"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # As the server will: SO_REUSEADDR, so a port left in TIME_WAIT by a previous run
        # counts as free and only a listening server makes it busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ValueError(
                    f"port {port} on {host} is in use (another server?); pick another with --port"
                ) from None
            raise ValueError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def _settings(values: tuple[Any, ...]) -> ChatSettings:
    """The side panel's values, in ChatSettings' field order, as typed settings."""
    kinds = {f.name: type(getattr(ChatSettings(), f.name)) for f in fields(ChatSettings)}
    typed = {}
    for (name, kind), value in zip(kinds.items(), values, strict=True):
        if value is None:
            raise ValueError(f"{name} is empty")
        typed[name] = kind(value)
    return ChatSettings(**typed)


def messages(turns: list[str], partial: str | None = None) -> list[dict[str, str]]:
    """Chat-box messages for the turns (user first), and a reply still being written."""
    shown = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": turn or "(an empty reply)"}
        for i, turn in enumerate(turns)
    ]
    if partial is not None:
        shown.append({"role": "assistant", "content": partial})
    return shown


def build_app(bot: ChatModel, defaults: ChatSettings, max_input_chars: int) -> gr.Blocks:
    """The page: conversation, message box, reset, decoding settings, model and origin."""
    n_positions = int(getattr(bot.model.config, "n_positions", 1024))
    with gr.Blocks(title="DialoGPT chat", analytics_enabled=False) as app:
        gr.Markdown(
            f"## DialoGPT chat\n**Model:** `{bot.name}` · **from:** {bot.origin}",
            elem_id="model-info",
        )
        turns = gr.State([])  # the conversation as the model sees it: user, bot, user, ...
        with gr.Sidebar(label="Decoding settings", open=True, position="right"):
            gr.Markdown(f"Greedy and sampling stream word by word; {NOT_STREAMED_NOTE}.")
            inputs = [
                gr.Radio(list(METHODS), value=defaults.method, label="method", elem_id="method"),
                gr.Number(defaults.num_beams, label="num_beams", precision=0, minimum=1),
                gr.Number(defaults.top_k, label="top_k (0 = all)", precision=0, minimum=0),
                gr.Slider(0.01, 1.0, value=defaults.top_p, step=0.01, label="top_p"),
                gr.Slider(0.05, 3.0, value=defaults.temperature, step=0.05, label="temperature"),
                gr.Slider(
                    0.5,
                    3.0,
                    value=defaults.repetition_penalty,
                    step=0.05,
                    label="repetition_penalty",
                ),  # fmt: skip
                gr.Number(
                    defaults.max_new_tokens,
                    label="max_new_tokens",
                    precision=0,
                    minimum=1,
                    maximum=n_positions - 1,
                ),  # fmt: skip
                gr.Number(
                    defaults.max_context_tokens,
                    label="max_context_tokens",
                    precision=0,
                    minimum=1,
                ),  # fmt: skip
                gr.Number(
                    defaults.mmi_candidates,
                    label="mmi_candidates",
                    precision=0,
                    minimum=1,
                    interactive=bot.reverse is not None,
                ),  # fmt: skip
                gr.Number(defaults.seed, label="seed", precision=0, elem_id="seed"),
                gr.Checkbox(
                    defaults.mmi,
                    label="MMI reranking (needs --mmi_model)",
                    interactive=bot.reverse is not None,
                ),  # fmt: skip
            ]
        # No "share" button: it posts the conversation to Hugging Face Spaces.
        chat = gr.Chatbot(
            label="Conversation", elem_id="chat", height=460, buttons=["copy", "copy_all"]
        )
        notice = gr.Markdown("", elem_id="notice")
        with gr.Row():
            message = gr.Textbox(
                placeholder="Type a message and press Enter",
                show_label=False,
                elem_id="message",
                scale=6,
                autofocus=True,
            )
            send = gr.Button("Send", variant="primary", elem_id="send", scale=1)
            reset = gr.Button("Reset", elem_id="reset", scale=1)

        def respond(
            text: str, history: list[str], *values: Any
        ) -> Iterator[tuple[str, list[str], list[dict], str]]:
            shown = messages(history)
            try:
                settings = _settings(values)
                if settings.mmi and bot.reverse is None:
                    raise ValueError("MMI reranking needs a chat started with --mmi_model")
                settings.check()
                bot.context_budget(settings)
            except (ValueError, TypeError) as err:
                yield text, history, shown, f"⚠️ Not sent: the settings are invalid: {err}"
                return
            problem = bot.input_problem(text or "", settings, max_input_chars)
            if problem is not None:
                yield text, history, shown, f"⚠️ Not sent: {problem}"
                return
            history = [*history, text.strip()]
            note = "" if settings.streams else f"ℹ️ Whole reply at once: {NOT_STREAMED_NOTE}."
            yield "", history, messages(history, "…"), note
            reply = ""
            for reply in bot.reply(history, settings):
                yield "", history, messages(history, reply), note
            yield "", [*history, reply], messages([*history, reply]), note

        event: dict[str, Any] = dict(
            fn=respond,
            inputs=[message, turns, *inputs],
            outputs=[message, turns, chat, notice],
            show_progress="hidden",
        )
        message.submit(**event)
        send.click(**event)
        # Clearing needs no model: it skips the one-at-a-time limit that replies wait for.
        reset.click(
            lambda: ([], [], "", ""),
            outputs=[chat, turns, notice, message],
            concurrency_limit=None,
        )
        # The chat box's own bin icon clears the display; the model's history goes with it.
        chat.clear(lambda: ([], ""), outputs=[turns, notice], concurrency_limit=None)
    return app


def serve(bot: ChatModel, settings: ChatSettings, args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C; replies are made one at a time, the rest queue."""
    app = build_app(bot, settings, args.max_input_chars)
    app.queue(max_size=args.queue_size, default_concurrency_limit=1)
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=False,
        inbrowser=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        footer_links=[],
        theme=theme,
        css=CSS,
    )
    return 0
