"""chat.py --web in a real browser: Debian's Chromium driven by Playwright, end to end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from lsp_data.tokenizer import load_tokenizer
from lsp_model.decoding import generate_reply
from lsp_model.loading import load_model
from tests.lsp_decode.conftest import HUB_NAME, chat_command, chat_env

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
pytest.importorskip("gradio", reason="pip install -e '.[web]'")

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_CHARS = 200
# The newest bot message's text each time the chat box changes, to see a reply grow.
WATCH_REPLIES = """() => {
    window.seen = [];
    new MutationObserver(() => {
        const bots = document.querySelectorAll('#chat [data-testid="bot"]');
        const text = bots.length ? bots[bots.length - 1].innerText.trim() : "";
        if (window.seen[window.seen.length - 1] !== text) window.seen.push(text);
    }).observe(document.querySelector("#chat"),
               {subtree: true, childList: true, characterData: true});
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(chat_model, tmp_path_factory):
    """chat.py --web serving the tiny model by its hub name, from an offline cache."""
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    log = tmp_path_factory.mktemp("web") / "server.log"
    port = free_port()
    argv = chat_command(
        "--model_name_or_path", HUB_NAME, "--web", "--port", str(port),
        "--max_new_tokens", "12", "--max_input_chars", str(MAX_CHARS), "--device", "cpu",
        delay=0.05,
    )  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=chat_env(chat_model["hub"])
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while url.rstrip("/") not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the chat page did not start:\n{log.read_text()}")
        time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGINT)  # as a person stops it
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def reference(chat_model):
    """The same weights in this process: what each reply must be."""
    return load_model(str(chat_model["hf"])), load_tokenizer()


def bot_texts(page) -> list[str]:
    return [t.strip() for t in page.locator('#chat [data-testid="bot"]').all_inner_texts()]


def type_message(page, text: str) -> None:
    """Type ``text`` into the message box once the page takes input again (the box is
    disabled while a reply is being made; on a loaded machine that can outlast the reply's
    last word by a moment) and press Enter."""
    page.wait_for_function(
        "() => !document.querySelector('#message textarea').disabled", timeout=30_000
    )
    page.fill("#message textarea", text)
    page.keyboard.press("Enter")


def send(page, text: str, expected: str) -> list[str]:
    """Send ``text``, wait until the last reply reads ``expected``; return its partial texts."""
    page.evaluate("window.seen = []")
    type_message(page, text)
    page.wait_for_function(
        """(want) => {
            const bots = document.querySelectorAll('#chat [data-testid="bot"]');
            return bots.length && bots[bots.length - 1].innerText.trim() === want
                && !document.querySelector('#message textarea').value;
        }""",
        arg=expected,
        timeout=30_000,
    )
    seen = page.evaluate("window.seen")
    return [t for t in seen if t and t != expected and expected.startswith(t)]


def test_chat_page_in_a_browser(server, reference, tmp_path):
    model, tok = reference
    budget = 128 - 12  # the tiny model's positions less max_new_tokens

    def reply(history, **options):
        return generate_reply(
            model, tok, history, max_new_tokens=12, max_context_tokens=budget, **options
        )

    first = reply(["hello there"])
    second = reply(["hello there", first, "how are you ?"])
    assert first and second and " " in first  # words, so the reply streams in pieces
    outside: list[str] = []
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 860},
        )
        try:
            page = context.new_page()
            page.on(
                "request",
                lambda r: None if r.url.startswith(server) else outside.append(r.url),
            )
            page.goto(server)
            page.wait_for_selector("#message textarea")
            header = page.inner_text("#model-info")
            assert HUB_NAME in header and "Hugging Face cache" in header
            page.evaluate(WATCH_REPLIES)

            # Two turns, each reply seen growing before it is complete.
            partial = send(page, "hello there", first)
            assert len(partial) >= 2, page.evaluate("window.seen")
            partial = send(page, "how are you ?", second)
            assert len(partial) >= 2, page.evaluate("window.seen")
            assert bot_texts(page) == [first, second]
            page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'chat.png'}")

            # Reset clears the page and the model's history: the same turn, the same reply.
            page.click("#reset")
            page.wait_for_function(
                "() => !document.querySelector('#chat [data-testid=\"user\"]')", timeout=30_000
            )
            send(page, "how are you ?", reply(["how are you ?"]))
            assert bot_texts(page) == [reply(["how are you ?"])]

            # Sampling with a seed takes effect: the seeded sample, not the greedy reply.
            import torch

            torch.manual_seed(7)
            sampled = reply(["how are you ?", reply(["how are you ?"]), "hello there"],
                            method="sample")  # fmt: skip
            greedy = reply(["how are you ?", reply(["how are you ?"]), "hello there"])
            assert sampled != greedy
            page.locator("#method").get_by_text("sample").click()
            page.fill("#seed input", "7")
            page.keyboard.press("Tab")
            send(page, "hello there", sampled)

            # Over-long input: refused with a visible message, nothing sent.
            type_message(page, "x" * (MAX_CHARS + 1))
            notice = page.locator("#notice")
            notice.get_by_text("Not sent").wait_for(timeout=30_000)
            assert f"{MAX_CHARS + 1} characters" in notice.inner_text()
            assert len(bot_texts(page)) == 2
            assert page.input_value("#message textarea") == "x" * (MAX_CHARS + 1)
        finally:
            context.close()
    assert outside == [], "the page reached beyond the machine"
    assert os.path.getsize(tmp_path / "chat.png") > 10_000
