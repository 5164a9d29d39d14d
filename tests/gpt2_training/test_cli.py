"""gpt2_training.cli: how LSP_train.py ends when it is stopped (Ctrl-C, SIGTERM), and that
it answers --help and option mistakes before importing torch."""

from __future__ import annotations

import os
import signal

import pytest

import LSP_train
from gpt2_training import trainer
from tests.conftest import HEAVY_MODULES, REPO, main_in_child
from tests.gpt2_training.conftest import train_argv


def valid_argv(tmp_path) -> list[str]:
    """Options that pass every check LSP_train.py makes before it starts to train."""
    (tmp_path / "empty.db").mkdir(exist_ok=True)
    return [
        "--model_name_or_path", str(REPO / "configs" / "117M"),
        "--train_input_file", str(tmp_path / "empty.db"),
        "--output_dir", str(tmp_path / "out"),
        "--skip_eval",
    ]  # fmt: skip


def test_help_and_option_mistakes_answer_before_torch_is_imported(tmp_path):
    # torch and transformers take seconds to import: a typo must not wait for them.
    assert main_in_child("LSP_train", "--help") == [0, "", []]
    status, line, loaded = main_in_child(
        "LSP_train", *valid_argv(tmp_path), "--learning_rate", "-1"
    )
    assert (status, loaded) == (2, []) and "--learning_rate" in line, line
    status, line, loaded = main_in_child(
        "LSP_train", *valid_argv(tmp_path), "--train_input_file", str(tmp_path / "missing.db")
    )
    assert (status, loaded) == (2, []) and "no such database folder" in line, line


def test_a_valid_command_goes_on_to_import_the_trainer(tmp_path):
    # The other side of the test above: past the checks the run needs torch, and here it
    # stops at the empty database with a one-line error.
    status, line, loaded = main_in_child("LSP_train", *valid_argv(tmp_path))
    assert (status, loaded) == (1, list(HEAVY_MODULES)) and "empty.db" in line, line


def _stop_at_step(monkeypatch, step: int, stop) -> None:
    original = trainer.train_step

    def stopping(run, progress, stream):
        if progress.global_step + 1 == step:
            stop()
        return original(run, progress, stream)

    monkeypatch.setattr(trainer, "train_step", stopping)


def _keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_run_says_how_to_continue(train_data, tmp_path, capsys, monkeypatch, how):
    stop = _keyboard_interrupt if how == "ctrl-c" else lambda: os.kill(os.getpid(), signal.SIGTERM)
    _stop_at_step(monkeypatch, 3, stop)
    argv = train_argv(
        train_data, tmp_path, "--num_optim_steps", "9", "--valid_step", "2", "--skip_eval"
    )
    assert LSP_train.main(argv) == 1
    err = capsys.readouterr().err
    (run,) = tmp_path.iterdir()
    assert (
        f"LSP_train.py: interrupted; to continue from {run / 'checkpoints' / 'step-2'}, run "
        f"the same command with --resume latest (it looks under --output_dir {tmp_path})"
    ) in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the run


def test_interrupted_before_any_checkpoint_says_there_is_nothing_to_resume(
    train_data, tmp_path, capsys, monkeypatch
):
    _stop_at_step(monkeypatch, 1, _keyboard_interrupt)
    argv = train_argv(train_data, tmp_path, "--num_optim_steps", "9", "--skip_eval")
    assert LSP_train.main(argv) == 1
    err = capsys.readouterr().err
    assert "interrupted; no checkpoint under --output_dir" in err
    assert "nothing to resume" in err
