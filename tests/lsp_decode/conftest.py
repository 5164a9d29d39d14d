"""A tiny model for the chat tests, in the three forms a chat may be pointed at."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.gpt2_training.conftest import TINY

HUB_NAME = "someorg/TinyDialo"


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory) -> dict[str, Path]:
    """A random 2-layer GPT-2 as an HF folder, a config folder + ``.pkl`` state dict (what
    LSP_train.py writes) and a hub name in an offline Hugging Face cache.

    Its ``<|endoftext|>`` embedding is shrunk: with tied embeddings a random model otherwise
    repeats the last context token, which is that ``<|endoftext|>``, so every greedy reply
    would be empty and there would be nothing to stream.
    """
    import torch

    from lsp_data.tokenizer import EOS_ID, load_tokenizer
    from lsp_model.loading import checkpoint_state_dict, load_model, save_hf_folder
    from tests.lsp_model.test_loading import make_hub_cache

    root = tmp_path_factory.mktemp("chat_model")
    (root / "cfg").mkdir()
    (root / "cfg" / "config.json").write_text(
        json.dumps({**TINY, "n_positions": 128, "n_ctx": 128})
    )
    torch.manual_seed(0)
    model = load_model(str(root / "cfg"))
    with torch.no_grad():
        model.transformer.wte.weight[EOS_ID] *= 0.1
    hf = save_hf_folder(model, load_tokenizer(), root / "hf")
    torch.save(checkpoint_state_dict(model), root / "GP2-pretrain-step-1.pkl")
    make_hub_cache(root / "hub", model, HUB_NAME)
    return {
        "hf": hf,
        "config": root / "cfg",
        "pkl": root / "GP2-pretrain-step-1.pkl",
        "hub": root / "hub",
        "root": root,
    }


# Runs the real chat command with a model that takes 40 ms per forward pass, so that a
# streamed reply visibly arrives in pieces (the tiny model writes 12 tokens in ~30 ms).
SLOW_CHAT = (
    "import sys, time\n"
    "from lsp_model.modeling import GPT2LMHeadModel as M\n"
    "forward = M.forward\n"
    "def slow(*args, **kwargs):\n"
    "    time.sleep(float(sys.argv[1]))\n"
    "    return forward(*args, **kwargs)\n"
    "M.forward = slow\n"
    "from lsp_decode.chat import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def chat_command(*args: str, delay: float = 0.04) -> list[str]:
    return [sys.executable, "-c", SLOW_CHAT, str(delay), *args]


def chat_env(hub: Path | None = None) -> dict[str, str]:
    """The environment of a chat child: offline, no hub or Gradio requests, repo importable."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    if hub is not None:
        env["HF_HUB_CACHE"] = str(hub)
    return env


class Terminal:
    """A process on a pseudo-terminal, read and typed into as a person would."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        import pty

        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
        )
        os.close(slave)
        self.screen = ""  # everything shown so far
        self.cursor = 0  # where the next wait_for starts looking
        self.reads: list[tuple[float, str]] = []  # (time, text) of each read

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def read_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                return
            try:
                chunk = os.read(self.master, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                return
            if not chunk:
                return
            self.reads.append((time.monotonic(), chunk))
            self.screen += chunk

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Read until ``text`` shows after the last match; return the screen up to its end."""
        end = time.monotonic() + timeout
        while (found := self.screen.find(text, self.cursor)) < 0:
            if time.monotonic() > end or self.proc.poll() is not None and not self._drain():
                raise AssertionError(f"{text!r} never appeared; the screen:\n{self.screen}")
            self.read_for(0.05)
        start, self.cursor = self.cursor, found + len(text)
        return self.screen[start : self.cursor]

    def _drain(self) -> bool:
        before = len(self.screen)
        self.read_for(0.2)
        return len(self.screen) > before

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code
