"""The chat on a CUDA device: replies stream there too (CI has no GPU; this may skip)."""

from __future__ import annotations

import pytest
import torch

from lsp_decode import chat
from lsp_decode.conversation import ChatSettings


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_chat_streams_on_cuda(chat_model):
    args = chat.build_parser().parse_args(
        ["--model_name_or_path", str(chat_model["hf"]), "--device", "cuda"]
    )
    bot = chat.load_chat_model(args)
    assert next(bot.model.parameters()).device.type == "cuda"
    for method in ("greedy", "sample", "beam"):
        grown = list(bot.reply(["hello there"], ChatSettings(method=method, max_new_tokens=12)))
        assert grown[-1] and all(grown[-1].startswith(part) for part in grown), method
        assert len(grown) >= (3 if method != "beam" else 1), method
