"""LSP_train.py with one rank failing: ``failing_train.py RANK STEP [LSP_train.py options]``.

For fault tests under torchrun, where pytest's monkeypatch cannot reach the workers: it
replaces ``trainer.train_step`` so that rank RANK raises at optimizer step STEP (1-based).
"""

from __future__ import annotations

import sys

from gpt2_training import cli, trainer


def main() -> None:
    rank, step = int(sys.argv.pop(1)), int(sys.argv.pop(1))
    original = trainer.train_step

    def failing(run, progress, stream):  # train_step's signature
        if run.ctx.rank == rank and progress.global_step + 1 == step:
            raise RuntimeError(f"injected failure on rank {rank} at step {step}")
        return original(run, progress, stream)

    trainer.train_step = failing
    cli.run()


if __name__ == "__main__":
    main()
