"""GPT-2 dialogue model pieces: tokenizer, model with the toolkit's loss, optimizer, schedules."""

from lsp_model.modeling import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
from lsp_model.tokenizer import EOS_ID, EOS_TOKEN, VOCAB_SIZE, load_tokenizer

__all__ = [
    "EOS_ID",
    "EOS_TOKEN",
    "VOCAB_SIZE",
    "GPT2Config",
    "GPT2LMHeadModel",
    "GPT2Tokenizer",
    "load_tokenizer",
]
