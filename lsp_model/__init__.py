"""GPT-2 dialogue model pieces: tokenizer, model with the toolkit's loss, optimizer, schedules."""

from lsp_model.decoding import generate_replies, generate_reply
from lsp_model.loading import (
    ModelLoadError,
    checkpoint_state_dict,
    load_model,
    load_state_dict_file,
    normalize_state_dict,
    resolve_model_source,
    save_hf_folder,
)
from lsp_model.modeling import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
from lsp_model.optim import MAX_GRAD_NORM, build_optimizer, lr_at_step, param_groups, set_lr
from lsp_model.tokenizer import EOS_ID, EOS_TOKEN, VOCAB_SIZE, load_tokenizer

__all__ = [
    "EOS_ID",
    "EOS_TOKEN",
    "MAX_GRAD_NORM",
    "VOCAB_SIZE",
    "GPT2Config",
    "GPT2LMHeadModel",
    "GPT2Tokenizer",
    "ModelLoadError",
    "build_optimizer",
    "checkpoint_state_dict",
    "generate_replies",
    "generate_reply",
    "load_model",
    "load_state_dict_file",
    "load_tokenizer",
    "lr_at_step",
    "normalize_state_dict",
    "param_groups",
    "resolve_model_source",
    "save_hf_folder",
    "set_lr",
]
