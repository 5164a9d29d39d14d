#!/usr/bin/env python
"""Train or fine-tune a GPT-2 dialogue model (DialoGPT) on a prepro.py database.

One process:   python LSP_train.py --model_name_or_path configs/117M --train_input_file
                   data/train.128len.db --eval_input_file data/valid.tsv --output_dir models
N GPUs:        torchrun --nproc_per_node=N LSP_train.py ...
               (or python -m torch.distributed.launch --nproc_per_node=N LSP_train.py ...)
Run `python LSP_train.py --help` for every option. The code is in gpt2_training.cli.
"""

from gpt2_training.cli import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
