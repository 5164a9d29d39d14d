"""GPT-2 dialogue model pieces: tokenizer, model with the toolkit's loss, optimizer, schedules."""

from lsp_model.tokenizer import EOS_ID, EOS_TOKEN, VOCAB_SIZE, load_tokenizer

__all__ = ["EOS_ID", "EOS_TOKEN", "VOCAB_SIZE", "load_tokenizer"]
