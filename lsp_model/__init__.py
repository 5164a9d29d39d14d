"""The model layer: GPT-2 with DialoGPT's loss (modeling), loading and saving weights
(loading), optimizer and schedules (optim), generation (decoding, mmi).

Import the submodule you need (``from lsp_model.modeling import GPT2LMHeadModel``): this
package imports nothing on its own, so that a light import never pays for torch.
"""
